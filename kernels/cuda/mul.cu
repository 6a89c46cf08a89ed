// mul.cu: y = a * b, b of a's shape or of a's trailing dims (broadcast over
// a's leading dims); the twin of kernels/cpu/mul.c. b's gradient sums
// a * dy over the broadcast rows with the fixed-tree reduction of axis.cu.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/axis.cuh"          // defines: cuda_reduce_axis
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

__global__ void mul_forward_kernel(float *y, const float *a, const float *b, size_t n, size_t nb) {
    CUDA_GRID_STRIDE(i, n) y[i] = a[i] * b[i % nb];
}

// dx (n) += dy (n) * other (i % n_other): da with other = b, and db (same
// shape as a) with other = a.
__global__ void mul_backward_kernel(float *dx, const float *dy, const float *other, size_t n, size_t n_other) {
    CUDA_GRID_STRIDE(i, n) dx[i] += dy[i] * other[i % n_other];
}

}  // namespace

extern "C" void mul_forward_cuda(Tensor *out) {
    size_t n = out->numel, nb = out->src[1]->numel;
    mul_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data,                 // (rows, nb)
        (const float *)out->src[0]->data,   // (rows, nb)
        (const float *)out->src[1]->data,   // (nb)
        n, nb);
    CUDA_CHECK_LAUNCH();
}

extern "C" void mul_backward_cuda(Tensor *out) {
    Tensor *ta = out->src[0], *tb = out->src[1];
    const float *a = (const float *)ta->data, *b = (const float *)tb->data;   // (rows, nb), (nb)
    const float *dy = out->grad;                                              // (rows, nb)
    size_t n = out->numel, nb = tb->numel;
    // a and b may be one tensor (x * x): separate launches in stream order.
    if (ta->grad) {
        mul_backward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(ta->grad, dy, b, n, nb);
        CUDA_CHECK_LAUNCH();
    }
    if (!tb->grad) return;
    if (nb == n) {
        mul_backward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(tb->grad, dy, a, n, n);
        CUDA_CHECK_LAUNCH();
        return;
    }
    cuda_reduce_axis(tb->grad, dy, a, 1, n / nb, nb, 1.0f, true);   // db (nb) += sum_rows dy * a
}
