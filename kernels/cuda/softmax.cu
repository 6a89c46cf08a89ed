// softmax.cu: softmax over the last dim, max-subtracted; backward from the
// output y: dx += y * (dy - sum(dy * y)). The twin of kernels/cpu/softmax.c.
// One block per row; the row's max and sums go through the fixed-tree block
// reductions of cuda_common.cuh, so the result is deterministic.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum, block_max

namespace {

__global__ void softmax_forward_kernel(float *y, const float *x, int C) {
    const float *xr = x + (size_t)blockIdx.x * C;   // (C)
    float *yr = y + (size_t)blockIdx.x * C;         // (C)
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) mx = fmaxf(mx, xr[c]);
    mx = block_max(mx);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float e = expf(xr[c] - mx);
        yr[c] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum);   // sum >= 1: the max term is exp(0)
    for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] *= inv;
}

__global__ void softmax_backward_kernel(float *dx, const float *y, const float *dy, int C) {
    size_t row = (size_t)blockIdx.x * C;
    const float *yr = y + row, *dyr = dy + row;     // (C), (C)
    float *dxr = dx + row;                          // (C)
    float dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += dyr[c] * yr[c];
    dot = block_sum(dot);
    for (int c = threadIdx.x; c < C; c += blockDim.x) dxr[c] += yr[c] * (dyr[c] - dot);
}

}  // namespace

extern "C" void softmax_forward_cuda(Tensor *out) {
    const Tensor *tx = out->src[0];
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    softmax_forward_kernel<<<(unsigned int)rows, cuda_row_threads(C), 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)tx->data, C);
    CUDA_CHECK_LAUNCH();
}

extern "C" void softmax_backward_cuda(Tensor *out) {
    Tensor *tx = out->src[0];
    if (!tx->grad) return;
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    softmax_backward_kernel<<<(unsigned int)rows, cuda_row_threads(C), 0, cuda_compute_stream()>>>(
        tx->grad, (const float *)out->data, out->grad, C);
    CUDA_CHECK_LAUNCH();
}
