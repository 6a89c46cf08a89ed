// slice.cu: x[..., start:start+len, ...] along one axis, the twin of
// kernels/cpu/slice.c. Around that axis x is (outer, n, inner) and the
// output (outer, len, inner). Backward adds dy into the slice of dx; the
// map is one-to-one, so no two threads write the same float.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

// Output element i (outer, len, inner) -> its element of x (outer, n, inner).
__device__ inline size_t slice_src_index(size_t i, size_t n, size_t start, size_t len, size_t inner) {
    size_t run = len * inner;
    size_t o = i / run, r = i % run;
    return (o * n + start) * inner + r;
}

__global__ void slice_forward_kernel(float *y, const float *x, size_t total, size_t n, size_t start,
                                     size_t len, size_t inner) {
    CUDA_GRID_STRIDE(i, total) y[i] = x[slice_src_index(i, n, start, len, inner)];
}

__global__ void slice_backward_kernel(float *dx, const float *dy, size_t total, size_t n, size_t start,
                                      size_t len, size_t inner) {
    CUDA_GRID_STRIDE(i, total) dx[slice_src_index(i, n, start, len, inner)] += dy[i];
}

// n = x->shape[axis], inner = prod(x->shape[axis+1:]).
void slice_split(const Tensor *out, size_t *n, size_t *inner) {
    const Tensor *x = out->src[0];
    int axis = out->iattr[0];
    size_t in = 1;
    for (int d = axis + 1; d < x->ndim; d++) in *= (size_t)x->shape[d];
    *n = (size_t)x->shape[axis];
    *inner = in;
}

}  // namespace

extern "C" void slice_forward_cuda(Tensor *out) {
    size_t n, inner;
    slice_split(out, &n, &inner);
    slice_forward_kernel<<<cuda_grid_for(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data,                 // (outer, len, inner)
        (const float *)out->src[0]->data,   // (outer, n, inner)
        out->numel, n, (size_t)out->iattr[1], (size_t)out->iattr[2], inner);
    CUDA_CHECK_LAUNCH();
}

extern "C" void slice_backward_cuda(Tensor *out) {
    Tensor *x = out->src[0];
    if (!x->grad) return;
    size_t n, inner;
    slice_split(out, &n, &inner);
    slice_backward_kernel<<<cuda_grid_for(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        x->grad, out->grad, out->numel, n, (size_t)out->iattr[1], (size_t)out->iattr[2], inner);
    CUDA_CHECK_LAUNCH();
}
