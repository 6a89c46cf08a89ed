// transpose.cu: swap two axes a0 <= a1, materialised; the twin of
// kernels/cpu/transpose.c. x is viewed as (A, n0, B, n1, C) with
// A = prod(shape[:a0]), B = prod(shape[a0+1:a1]), C = prod(shape[a1+1:]);
// the output is (A, n1, B, n0, C). A permutation: in backward every dx
// element receives exactly one dy element, so threads never share a write.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

struct TransposeDims { size_t A, n0, B, n1, C; };

TransposeDims transpose_dims(const Tensor *out) {
    const Tensor *x = out->src[0];
    int a0 = out->iattr[0], a1 = out->iattr[1];   // a0 <= a1 (shape rule)
    TransposeDims t = { 1, (size_t)x->shape[a0], 1, (size_t)x->shape[a1], 1 };
    for (int d = 0; d < a0; d++) t.A *= (size_t)x->shape[d];
    for (int d = a0 + 1; d < a1; d++) t.B *= (size_t)x->shape[d];
    for (int d = a1 + 1; d < x->ndim; d++) t.C *= (size_t)x->shape[d];
    if (a0 == a1) t.n1 = 1;                       // swapping an axis with itself: a copy
    return t;
}

// dst (A, n1, B, n0, C) = or += src (A, n0, B, n1, C) transposed; one
// thread per dst element (dst writes coalesced, src reads gathered).
__global__ void transpose_kernel(float *dst, const float *src, TransposeDims t, size_t total, bool accumulate) {
    CUDA_GRID_STRIDE(idx, total) {
        size_t c = idx % t.C, r = idx / t.C;
        size_t i = r % t.n0; r /= t.n0;
        size_t b = r % t.B; r /= t.B;
        size_t j = r % t.n1;
        size_t a = r / t.n1;
        float v = src[(((a * t.n0 + i) * t.B + b) * t.n1 + j) * t.C + c];
        dst[idx] = accumulate ? dst[idx] + v : v;
    }
}

}  // namespace

extern "C" void transpose_forward_cuda(Tensor *out) {
    transpose_kernel<<<cuda_grid_for(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)out->src[0]->data, transpose_dims(out), out->numel, false);
    CUDA_CHECK_LAUNCH();
}

extern "C" void transpose_backward_cuda(Tensor *out) {
    Tensor *x = out->src[0];
    if (!x->grad) return;
    // dy is (A, n1, B, n0, C); swapping n0 and n1 back gives dx's layout.
    TransposeDims t = transpose_dims(out), back = { t.A, t.n1, t.B, t.n0, t.C };
    transpose_kernel<<<cuda_grid_for(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        x->grad, out->grad, back, out->numel, true);
    CUDA_CHECK_LAUNCH();
}
