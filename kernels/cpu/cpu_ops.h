// cpu_ops.h: the CPU kernels, one pair per op (see autograd/ops.h for what
// each op computes). Each file kernels/cpu/<op>.c defines its pair; the
// kernels read out->src[...] and out->iattr/fattr, write out->data (forward)
// and accumulate into src[i]->grad where it is non-NULL (backward).
// fp32 storage on the CPU, except op_cast, the i32/u8 inputs and, under
// train.precision bf16, the outputs the planner stores bf16 (plan.h).
#pragma once
#include <stddef.h>
#include "autograd/tensor.h"   // defines: Tensor

#define CPU_KERNEL_PAIR(op) \
    void op##_forward_cpu(Tensor *out); \
    void op##_backward_cpu(Tensor *out);

CPU_KERNEL_PAIR(matmul)
CPU_KERNEL_PAIR(linear)
CPU_KERNEL_PAIR(add)
CPU_KERNEL_PAIR(mul)
CPU_KERNEL_PAIR(scale)
CPU_KERNEL_PAIR(layernorm)
CPU_KERNEL_PAIR(gelu)
CPU_KERNEL_PAIR(softmax)
CPU_KERNEL_PAIR(attention)
CPU_KERNEL_PAIR(embedding)
CPU_KERNEL_PAIR(concat)
CPU_KERNEL_PAIR(slice)
CPU_KERNEL_PAIR(transpose)
CPU_KERNEL_PAIR(sum)
CPU_KERNEL_PAIR(mean)
CPU_KERNEL_PAIR(patchify)
CPU_KERNEL_PAIR(sin)
CPU_KERNEL_PAIR(cos)
CPU_KERNEL_PAIR(cumsum)
CPU_KERNEL_PAIR(cross_entropy)
CPU_KERNEL_PAIR(smooth_l1)
CPU_KERNEL_PAIR(mse)
CPU_KERNEL_PAIR(cast)
CPU_KERNEL_PAIR(distill_kl)
CPU_KERNEL_PAIR(traj_loss)
CPU_KERNEL_PAIR(cosine_loss)
CPU_KERNEL_PAIR(bias_gelu)
CPU_KERNEL_PAIR(bias_residual)

// Plain reference twins of the vectorised kernels: scalar loops, libm, the
// same contract; tests/test_fused.c checks the fast ones against them.
#define CPU_KERNEL_REF(op) \
    void op##_forward_ref(Tensor *out); \
    void op##_backward_ref(Tensor *out);

CPU_KERNEL_REF(gelu)
CPU_KERNEL_REF(bias_gelu)
CPU_KERNEL_REF(bias_residual)
CPU_KERNEL_REF(layernorm)

// Helpers shared by the kernels.
// The assign/accumulate contract (tensor_grad_assigns) for a kernel that
// adds into src[i]'s gradient in part or in scattered order: zeroes it
// first when this backward assigns it. Returns src[i]->grad (may be NULL).
float *cpu_grad_begin(Tensor *out, int i);
// For sources an op sends no gradient (masks, targets, teacher values)
// that still have a gradient buffer: zero it when this backward is its
// first writer, so the contract holds. src[from..nsrc) only.
void cpu_grad_none(Tensor *out, int from);
// Columns per task in the reductions over rows (bias and gamma/beta
// gradients): 64 floats of accumulators, eight 8-wide vectors.
#define BIAS_BLOCK 64
// y (cols) (+)= sum over rows of x (rows, cols), cache-blocked, in row order
// for every column whatever the thread count (colsum.c); assign: = instead
// of +=. _ref: its twin.
void cpu_colsum(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols, int assign);
void cpu_colsum_ref(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols, int assign);
// Split x's shape around `axis`: outer = prod(shape[:axis]), n = shape[axis],
// inner = prod(shape[axis+1:]).
void cpu_axis_split(const Tensor *x, int axis, size_t *outer, size_t *n, size_t *inner);
// Reductions along the middle axis of x (outer, n, inner) (axis.c, used by sum
// and mean). y (outer, inner) = scale * sum over n, accumulated in double.
void cpu_reduce_axis(const float *x, float *y, size_t outer, size_t n, size_t inner, double scale);
// dx (outer, n, inner) += scale * dy (outer, inner), broadcast over n.
void cpu_broadcast_axis_add(const float *dy, float *dx, size_t outer, size_t n, size_t inner, float scale);
// The sum of n floats in double, the same for any thread count.
double cpu_sum_all(const float *x, size_t n);

// Scratch the CPU kernels keep between calls, one buffer per use: at least
// `bytes`, 64-byte aligned, grown in the first step and then reused, so the
// training step allocates nothing. Ops run one at a time, so a slot is
// never in use twice; code called inside a parallel region keeps its own
// (gemm_f32.c's per-thread scratch).
typedef enum {
    CPU_SCRATCH_BF16_PACK,   // gemm_bf16.c: packed or rounded operands
    CPU_SCRATCH_BF16_SUMS,   // gemm_bf16.c: fp32 sums of a product with a bf16 output
    CPU_SCRATCH_ATTN_QKV,    // attention.c: a bf16 qkv widened
    CPU_SCRATCH_ATTN_OUT,    // attention.c: its output before rounding, or a bf16 one widened
    CPU_SCRATCH_COUNT
} CpuScratch;
void *cpu_scratch(CpuScratch slot, size_t bytes);
