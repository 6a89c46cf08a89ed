// regression.cuh: the masked, weighted mean shared by smooth_l1.cu and
// mse.cu, templated on the per-element loss l(d) and its slope l'(d):
//   loss = sum_i w_i l(pred_i - target_i) / sum_i w_i, 0 when sum_i w_i == 0,
// w_i = mask[i / inner] (mask a prefix of pred's shape) or 1 without a mask.
// Elements of weight 0 are skipped, so a masked-out NaN target cannot poison
// the loss (as on the CPU). Gradients: pred += g_i, target -= g_i,
// g_i = dloss * w_i * l'(d_i) / sum w.
//
// fp32 reductions in a fixed order: REG_PARTIALS blocks (a count that
// depends only on the element count, never on the GPU) each add a
// grid-stride share in a fixed tree, and one block adds their partials,
// again in a fixed tree. No atomics: the same inputs give the same bits.
// An element's mask index is a multiply-high (DivMod32), not a division.
#pragma once
#include "autograd/tensor.h"              // defines: Tensor
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream, cuda_workspace
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE, block_sum
#include "kernels/cuda/vec.cuh"           // defines: DivMod32, divmod32, cuda_check_index32

// At most this many first-pass blocks (each CUDA_BLOCK threads).
#define REG_MAX_PARTIALS 256

struct RegressionArgs {
    const float *pred, *target;   // (numel)
    const float *mask;            // (numel / inner) or NULL
    size_t numel, inner;          // inner: elements per mask value
    DivMod32 per_mask;            // division by inner
};

inline RegressionArgs regression_args(const Tensor *out) {
    const Tensor *pred = out->src[0], *mask = out->nsrc > 2 ? out->src[2] : nullptr;
    RegressionArgs a;
    a.pred = (const float *)pred->data;
    a.target = (const float *)out->src[1]->data;
    a.mask = mask ? (const float *)mask->data : nullptr;
    a.numel = pred->numel;
    a.inner = mask ? pred->numel / mask->numel : 1;
    cuda_check_index32(a.numel, "regression loss");
    a.per_mask = divmod32((uint32_t)a.inner);
    return a;
}

inline unsigned int regression_partials(size_t numel) {
    size_t blocks = (numel + CUDA_BLOCK - 1) / CUDA_BLOCK;
    return (unsigned int)(blocks < 1 ? 1 : blocks > REG_MAX_PARTIALS ? REG_MAX_PARTIALS : blocks);
}

__device__ inline float regression_weight(const RegressionArgs &a, size_t i) {
    return a.mask ? a.mask[a.per_mask.div((uint32_t)i)] : 1.0f;
}

// sum_i w_i over the numel elements: sum(mask) * inner, or numel. Called by
// every thread of one block.
__device__ inline float regression_weight_total(const RegressionArgs &a) {
    if (!a.mask) return (float)a.numel;
    size_t m = a.numel / a.inner;
    float s = 0.0f;
    for (size_t j = threadIdx.x; j < m; j += blockDim.x) s += a.mask[j];
    return block_sum(s) * (float)a.inner;
}

// Pass 1: partial[block] = sum of w_i l(d_i) over this block's grid-stride share.
template <typename Loss>
__global__ void __launch_bounds__(CUDA_BLOCK) regression_partial_kernel(float *partial, RegressionArgs a, Loss loss) {
    float s = 0.0f;
    CUDA_GRID_STRIDE(i, a.numel) {
        float w = regression_weight(a, i);
        if (w == 0.0f) continue;
        s += w * loss.value(a.pred[i] - a.target[i]);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Pass 2, one block: out = sum(partial) / sum w, or 0.
static __global__ void __launch_bounds__(CUDA_BLOCK) regression_finish_kernel(float *out, const float *partial, int n_partial, RegressionArgs a) {
    float s = 0.0f;
    for (int b = threadIdx.x; b < n_partial; b += blockDim.x) s += partial[b];
    s = block_sum(s);
    float total_w = regression_weight_total(a);
    if (threadIdx.x == 0) out[0] = total_w == 0.0f ? 0.0f : s / total_w;
}

// One block: *total = sum w (backward has no saved state to read it from).
static __global__ void __launch_bounds__(CUDA_BLOCK) regression_weight_total_kernel(float *total, RegressionArgs a) {
    float t = regression_weight_total(a);
    if (threadIdx.x == 0) *total = t;
}

template <typename Loss>
__global__ void __launch_bounds__(CUDA_BLOCK) regression_backward_kernel(float *dpred, float *dtarget, const float *dloss, const float *total_w,
                                           RegressionArgs a, Loss loss) {
    float tw = *total_w;
    if (tw == 0.0f) return;   // the loss is the constant 0
    float g = dloss[0] / tw;
    CUDA_GRID_STRIDE(i, a.numel) {
        float w = regression_weight(a, i);
        if (w == 0.0f) continue;
        float gi = g * w * loss.slope(a.pred[i] - a.target[i]);
        // pred and target may be one tensor: the same thread does both, in order.
        if (dpred) dpred[i] += gi;
        if (dtarget) dtarget[i] -= gi;
    }
}

template <typename Loss>
void regression_forward(Tensor *out, Loss loss) {
    RegressionArgs a = regression_args(out);
    unsigned int n_partial = regression_partials(a.numel);
    float *partial = (float *)cuda_workspace(n_partial * sizeof(float));   // (n_partial)
    regression_partial_kernel<Loss><<<n_partial, CUDA_BLOCK, 0, cuda_compute_stream()>>>(partial, a, loss);
    CUDA_CHECK_LAUNCH();
    regression_finish_kernel<<<1, CUDA_BLOCK, 0, cuda_compute_stream()>>>((float *)out->data, partial, (int)n_partial, a);
    CUDA_CHECK_LAUNCH();
}

template <typename Loss>
void regression_backward(Tensor *out, Loss loss) {
    float *dpred = out->src[0]->grad, *dtarget = out->src[1]->grad;   // (numel) or NULL
    if (!dpred && !dtarget) return;
    RegressionArgs a = regression_args(out);
    float *total_w = (float *)cuda_workspace(sizeof(float));          // (1)
    regression_weight_total_kernel<<<1, CUDA_BLOCK, 0, cuda_compute_stream()>>>(total_w, a);
    CUDA_CHECK_LAUNCH();
    regression_backward_kernel<Loss><<<cuda_grid_for(a.numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        dpred, dtarget, out->grad, total_w, a, loss);
    CUDA_CHECK_LAUNCH();
}
