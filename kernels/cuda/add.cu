// add.cu: y = a + b, b of a's shape or of a's trailing dims (broadcast over
// a's leading dims); the twin of kernels/cpu/add.c. b's gradient sums dy
// over the broadcast rows with the fixed-tree reduction of axis.cu, so it is
// deterministic.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/axis.cuh"          // defines: cuda_reduce_axis
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

__global__ void add_forward_kernel(float *y, const float *a, const float *b, size_t n, size_t nb) {
    CUDA_GRID_STRIDE(i, n) y[i] = a[i] + b[i % nb];
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

extern "C" void add_forward_cuda(Tensor *out) {
    size_t n = out->numel, nb = out->src[1]->numel;
    add_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data,                 // (rows, nb)
        (const float *)out->src[0]->data,   // (rows, nb)
        (const float *)out->src[1]->data,   // (nb)
        n, nb);
    CUDA_CHECK_LAUNCH();
}

extern "C" void add_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *ta = out->src[0], *tb = out->src[1];
    const float *dy = out->grad;            // (rows, nb)
    size_t n = out->numel, nb = tb->numel;
    // a and b may be one tensor (x + x): two launches in stream order, each
    // accumulating, so neither update is lost.
    if (ta->grad) accumulate(ta->grad, dy, n);
    if (!tb->grad) return;
    if (nb == n) accumulate(tb->grad, dy, n);
    else cuda_reduce_axis(tb->grad, dy, nullptr, 1, n / nb, nb, 1.0f, true);   // db (nb) += sum_rows dy
}
