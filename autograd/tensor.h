// tensor.h: the node of the graph. A tensor is a shape, a dtype, a device tag
// and pointers into the graph's arenas; the op that produced it and its
// sources make it a node of the tape.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 4
#define TENSOR_MAX_SRC 4
#define TENSOR_NAME_LEN 64

typedef enum { DT_F32 = 0, DT_BF16, DT_I32, DT_U8, DT_COUNT } DType;
typedef enum { DEV_CPU = 0, DEV_CUDA, DEV_COUNT } Device;

// Parameter initialisations, applied by graph_init_params().
typedef enum { INIT_ZEROS = 0, INIT_ONES, INIT_NORMAL, INIT_UNIFORM } InitKind;

typedef struct Tensor Tensor;
struct Tensor {
    int id;                          // position on the tape
    int op;                          // OP_INPUT, OP_PARAM or an op id (ops.h)
    int ndim;
    int shape[TENSOR_MAX_DIMS];      // shape[0] is the outermost dim
    size_t numel;
    DType dtype;
    Device device;

    void *data;                      // into the activation or parameter arena
    void *host;                      // inputs: where the host writes them (graph_input_host)
    float *grad;                     // fp32, into a gradient arena; NULL when no grad flows
    float *saved;                    // what backward needs (op-specific), into the activation arena
    size_t saved_numel;              // floats

    Tensor *src[TENSOR_MAX_SRC];
    int nsrc;
    int iattr[8];                    // op attributes: axes, head counts, indices...
    float fattr[8];                  // op attributes: scales, eps, deltas...

    int requires_grad;
    int view;                        // 1: data and grad alias src[0] (reshape)
    // The first writer of a gradient assigns it, later ones add: no
    // gradient buffer is zeroed before backward. graph_backward sets, just
    // before this node's backward runs, bit i when src[i]'s gradient holds
    // nothing yet in this backward (tensor_grad_assigns); a kernel then
    // writes src[i]->grad with = instead of +=, everywhere (zeros where it
    // has nothing to add). Parameter gradients always accumulate.
    unsigned grad_assign;
    int grad_written;                // graph_backward's: this gradient holds a value in the current backward
    int keep;                        // the host reads it after the step: its data lives to the end (graph_keep)

    // parameters only
    int decay;                       // AdamW weight decay applies
    InitKind init;
    float init_scale;                // std for INIT_NORMAL, bound for INIT_UNIFORM
    int grad_ready_after;            // tape index whose backward completes this grad

    char name[TENSOR_NAME_LEN];
};

// Whether out's backward assigns (1) or adds into (0) src[i]'s gradient.
static inline int tensor_grad_assigns(const Tensor *out, int i) { return (int)((out->grad_assign >> i) & 1u); }

size_t dtype_size(DType dt);
const char *dtype_name(DType dt);
size_t shape_numel(int ndim, const int *shape);
int tensor_same_shape(const Tensor *a, const Tensor *b);
// "f32[2,3,4]" into buf; returns buf.
char *tensor_describe(const Tensor *t, char *buf, size_t len);

// fp32 <-> bf16, round to nearest even (NaN kept a quiet NaN). Branch-free,
// so that a loop of it vectorises (the bf16 product's packers).
static inline uint16_t f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    uint32_t rounded = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16, quiet = (v.u >> 16) | 0x40u;
    return (uint16_t)((v.u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}
static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
