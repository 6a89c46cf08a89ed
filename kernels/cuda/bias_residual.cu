// bias_residual.cu: y = x + (fx + bias), a residual around a linear layer
// recorded without its bias; the twin of kernels/cpu/bias_residual.c.
// Backward: dy added to dx and to dfx (two launches in stream order, so
// x + x adds twice), and summed over rows into db with axis.cu's fixed-tree
// reduction (deterministic).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/axis.cuh"          // defines: cuda_reduce_axis
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

__global__ void bias_residual_forward_kernel(float *y, const float *x, const float *fx, const float *b, size_t n, int C) {
    CUDA_GRID_STRIDE(i, n) y[i] = x[i] + (fx[i] + b[i % C]);
}

// dst (n) += src (n)
__global__ void accumulate_kernel(float *dst, const float *src, size_t n) {
    CUDA_GRID_STRIDE(i, n) dst[i] += src[i];
}

void accumulate(float *dst, const float *src, size_t n) {
    accumulate_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(dst, src, n);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

extern "C" void bias_residual_forward_cuda(Tensor *out) {
    const Tensor *x = out->src[0];
    int C = x->shape[x->ndim - 1];
    size_t n = out->numel;
    bias_residual_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)x->data, (const float *)out->src[1]->data,
        (const float *)out->src[2]->data, n, C);
    CUDA_CHECK_LAUNCH();
}

extern "C" void bias_residual_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *x = out->src[0], *fx = out->src[1], *bias = out->src[2];
    int C = x->shape[x->ndim - 1];
    size_t n = out->numel;
    const float *dy = out->grad;   // (rows, C)
    if (x->grad) accumulate(x->grad, dy, n);
    if (fx->grad) accumulate(fx->grad, dy, n);
    if (bias->grad) cuda_reduce_axis(bias->grad, dy, nullptr, 1, n / C, (size_t)C, 1.0f, true);   // db (C) += sum_rows dy
}
