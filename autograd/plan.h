// plan.h: the memory planner of the activation arena, in the spirit of
// ggml-alloc. graph_plan (graph.c) calls it once; nothing here runs in the
// step.
//
// A step is a fixed schedule: the forward of every node in tape order, then
// the backward of every node in reverse. Time t = i is node i's forward and
// t = 2n - 1 - i its backward (n nodes). Every buffer the step uses lives
// over an interval of that schedule:
//   - an activation (a node's output), from its forward to its last reader:
//     the forward of its consumers, and the backward of those whose backward
//     reads it (OpDef.bwd_skips says which sources a backward leaves alone);
//     outputs the host reads (sinks, Tensor.keep) live to the end;
//   - what a node saves for its backward, from its forward to its backward;
//   - an activation gradient, from the backward of its latest consumer (its
//     first writer, which assigns it: Tensor.grad_assign) to its own backward.
// Cheap elementwise nodes (OpDef.remat) whose output a later backward reads
// are rematerialised: their output is freed after its last forward reader
// and recomputed, into a second buffer, just before the first backward that
// reads it, so the step does not hold it across the whole backward.
// Buffers whose intervals are disjoint may share memory: each gets an offset
// into one arena, placed largest first at the lowest offset that does not
// overlap a placed buffer live at the same time. Views get no memory (they
// alias their source) and inputs stay in a fixed prefix (a device uploads
// them in one copy).
#pragma once
#include <stddef.h>
#include "autograd/tensor.h"   // defines: Tensor

#define PLAN_NONE ((size_t)-1)

typedef struct PlanSlot {
    size_t data, saved, grad;    // offsets into the arena, PLAN_NONE where the node has none
    size_t remat;                // the rematerialised output's offset, or PLAN_NONE
    int remat_before;            // the tape index whose backward the recomputation precedes, or -1
} PlanSlot;

typedef struct PlanStats {
    size_t arena_bytes;          // the planned arena (after the inputs)
    size_t act_peak, grad_peak;  // the most bytes of activations (+ saved state), of activation gradients, live at once
    size_t act_unshared, grad_unshared;   // one slot each, as without a planner
    int n_remat;                 // nodes rematerialised in backward
} PlanStats;

// train.precision bf16's stored activations, decided before the layout:
// a node's output is stored bf16 (its dtype set to DT_BF16, else back to
// DT_F32) when its op can write bf16 (OpDef.bf16_out) and every reader is
// an op of a bf16 graph (OP_IATTR_BF16 set) that takes that source as bf16
// (OpDef.bf16_in): the operand of a product, which rounds it there anyway,
// or the attention's qkv. A node read through a view, kept for the host,
// or read by any other op stays fp32. Gradients are fp32 whatever the
// dtype. Idempotent (graph_plan and graph_memory both call it). Returns
// the number of nodes stored bf16, or -1 when out of host memory.
int plan_bf16_outputs(Tensor *const *nodes, int n);
// Offsets for every node of the tape nodes[0, n) (slots: n entries).
// Inputs, params and views get PLAN_NONE everywhere. Returns 0, or -1 when
// out of host memory.
int plan_arena(Tensor *const *nodes, int n, PlanSlot *slots, PlanStats *stats);
