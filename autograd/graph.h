// graph.h: the tape and its arenas.
//
// A step is recorded once: graph_input/graph_param and the op constructors in
// ops.h append nodes to the tape in topological order and infer shapes, but
// compute nothing. graph_plan() then lays every buffer out in three
// allocations (parameters, parameter gradients, and one arena for the
// inputs, activations, saved state and activation gradients, placed by
// the memory planner, plan.h); parameters, their gradients and the
// optimizer's moments share one flat layout (docs/autograd.md). After that
// the same tape is replayed each step with
// graph_forward/graph_backward, and nothing is allocated inside the step.
#pragma once
#include "autograd/plan.h"     // defines: PlanStats
#include "autograd/tensor.h"   // defines: Tensor, DType, Device

typedef struct Rng Rng;

// Floats per partial sum in reductions over the gradient buffer.
#define REDUCE_CHUNK 65536

// Called during backward once a parameter's gradient is complete (the
// gradient all-reduce, train/dist/, starts a bucket from here).
typedef void (*GradReadyFn)(void *ctx, Tensor *param);

// A run of the flat trainable range [lo, hi) whose parameters all have the
// same weight-decay flag: AdamW walks these runs, not the tensors.
typedef struct DecaySpan {
    size_t lo, hi;
    int decay;
} DecaySpan;

typedef struct Graph {
    Tensor **nodes;                  // the tape, topological order
    int n_nodes, cap_nodes;
    Tensor **params;                 // in creation order
    int n_params, cap_params;
    // Every parameter in the order of the flat layout: first the
    // n_grad_params with a gradient, in the order backward completes them,
    // then the frozen ones in creation order.
    Tensor **flat_order;
    int n_grad_params;
    Device device;
    // DT_F32, or DT_BF16 for train.precision bf16: the operands of every
    // matrix product recorded after graph_set_products are rounded to bf16
    // (ops.h's OP_IATTR_BF16), the sums and results stay fp32.
    DType products;

    // Arenas, filled by graph_plan(). The flat layout: parameter i of flat_order
    // starts where the ones before it end, no padding; [0, grad_numel) is
    // the trainable prefix, whose gradients (and AdamW's moments) have the
    // same offsets in their own buffers.
    float *param_mem;  size_t param_numel;     // fp32 master weights, every parameter
    float *grad_mem;   size_t grad_numel;      // gradients of the trainable prefix
    DecaySpan *decay_spans;                    // cover [0, grad_numel) in order
    int n_decay_spans;
    // Inputs (first, each its own slot), then the planned arena
    // (autograd/plan.h): activations, saved state and activation
    // gradients, placed by liveness so that buffers never live at the same
    // time share memory.
    void *act_mem;    size_t act_bytes;
    size_t input_bytes;                        // the inputs' prefix of act_mem
    // A device tape's host mirror of that prefix, laid out the same, where
    // the host writes a batch (graph_input_host) before graph_upload_inputs;
    // pinned when the backend can. NULL on the CPU: inputs are written in place.
    void *input_host_mem;
    int input_host_pinned;
    PlanStats plan;                            // what the planner made of the arena
    // Nodes whose output is recomputed in backward (plan.h), in the order
    // backward reaches them.
    struct GraphRemat { Tensor *t; void *fwd, *bwd; int before; } *remat;
    int n_remat;
    // Partial sums for reductions over the gradient buffer (the norm), one
    // per REDUCE_CHUNK floats: on the graph's device, and a host mirror.
    double *reduce_dev, *reduce_host;
    size_t reduce_len;
    float *seed_one;                           // [1] 1.0f on the graph's device: graph_backward's seed
    int planned;
    struct Graph *param_owner;                 // non-NULL: parameters live in that graph

    // Tests: fill each activation gradient with NaN bytes just before its
    // first writer runs, so a backward kernel that adds where the contract
    // says assign (Tensor.grad_assign) shows.
    int poison_grads;
    int profile;                               // DISTIL_PROFILE: time each node (profile.h)

    GradReadyFn grad_ready;
    void *grad_ready_ctx;
} Graph;

Graph *graph_new(Device device);
// The precision of the matrix products recorded from now on (DT_F32, the
// default, or DT_BF16).
void graph_set_products(Graph *g, DType dt);
void graph_free(Graph *g);

// Leaves. Shapes are given outermost first; ndim <= 4.
Tensor *graph_input(Graph *g, const char *name, DType dt, int ndim, const int *shape);
Tensor *graph_param(Graph *g, const char *name, int ndim, const int *shape,
                    InitKind init, float init_scale, int decay);
// The host reads t after the step (a loss component, an output): the
// planner keeps its data to the end instead of reusing it. Call before
// graph_plan(); sinks (nodes nothing consumes) are kept anyway.
void graph_keep(Tensor *t);
// Look a parameter up by name; NULL if absent.
Tensor *graph_find_param(Graph *g, const char *name);
// Mark a parameter frozen (no gradient). Call before graph_plan().
void graph_freeze(Tensor *param);

// Internal to ops.c: append a node produced by op `op` from `nsrc` sources.
Tensor *graph_node(Graph *g, int op, Tensor **src, int nsrc);

// Use `owner`'s parameters instead of allocating new ones (an eval graph of
// another batch size, a fresh recording of the same model). The two graphs
// must have created the same parameters in the same order; returns 0 or -1.
int graph_share_params(Graph *g, Graph *owner);

// Allocate the arenas. Returns 0, or -1 with a message on stderr.
int graph_plan(Graph *g);

// The bytes graph_plan() lays out, computed by the same planner (plan.h)
// without allocating the arenas (`distil recipe check --memory` sizes a
// recipe that would not fit here); tests/test_train.c checks the two agree.
typedef struct GraphMemory {
    int ok;                 // 0 when the host had no memory to plan with
    size_t params;          // fp32 master weights
    size_t grads;           // parameter gradients (trainable parameters only)
    size_t inputs;          // the inputs, a fixed prefix of the arena
    size_t act_peak;        // op outputs and saved state live at once, at most
    size_t grad_peak;       // activation gradients live at once, at most
    size_t arena;           // the one arena of inputs, activations and their gradients (g->act_bytes)
    size_t unshared;        // that arena's size if no buffer were reused
    int n_remat;            // outputs recomputed in backward
} GraphMemory;
GraphMemory graph_memory(const Graph *g);
// Initialise parameters from their InitKind with rng.
void graph_init_params(Graph *g, Rng *rng);

// Where the host writes input t: t->data on a CPU tape, its slot of the
// host mirror on a device tape. Inputs written there reach the device at
// the next graph_upload_inputs.
static inline void *graph_input_host(const Tensor *t) { return t->host; }
// Copy every input's host mirror to the device, ordered after the device
// work already queued (which may still read the previous inputs) and before
// any queued after. Returns once the mirror may be written again. A no-op
// on the CPU.
void graph_upload_inputs(Graph *g);
// The same without the host's wait (backend_upload_queued), so a captured
// step can hold it: the mirror may be written again only once the device
// work queued after it has run. Whether the mirror is page-locked, which
// a capture of the copy needs, is g->input_host_pinned.
void graph_upload_inputs_queued(Graph *g);

void graph_forward(Graph *g);
// Seeds d(loss)=1 (loss must have one element) and walks the tape
// backwards. The first writer of each activation gradient assigns it
// (Tensor.grad_assign), so none is zeroed; a gradient nothing wrote holds
// no value. Parameter grads accumulate: call graph_zero_grad() before the
// first micro-step of a step. Backward reuses the memory of activations it
// is done with: run graph_forward again before another backward.
void graph_backward(Graph *g, Tensor *loss);
// The same from any tensor, with d(out) = seed (out->numel floats, host).
void graph_backward_seeded(Graph *g, Tensor *out, const float *seed);
void graph_zero_grad(Graph *g);

// Number of parameter floats (g->param_numel once planned).
size_t graph_param_numel(const Graph *g);
void graph_print(const Graph *g);

// Host copies, for tests and checkpoints (work on any device).
void tensor_to_host_f32(const Tensor *t, float *dst);
void tensor_from_host_f32(Tensor *t, const float *src);
void tensor_grad_to_host(const Tensor *t, float *dst);
