// concat.cu: n (<= 4) tensors joined along one axis, the twin of
// kernels/cpu/concat.c. Around that axis input s is (outer, n_s, inner) and
// the output (outer, n_out, inner); input s fills axis positions
// [off_s, off_s + n_s) of each outer slice.
//
// One launch per input, over that input's elements, in both directions: an
// input may appear twice (concat(x, x)), and separate launches in stream
// order keep its two gradient updates from racing.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

// Element i of input s (outer, n_s, inner) <-> its place in the output.
__device__ inline size_t concat_out_index(size_t i, size_t n_s, size_t off, size_t n_out, size_t inner) {
    size_t run = n_s * inner;                     // one outer slice of the input
    size_t o = i / run, r = i % run;
    return (o * n_out + off) * inner + r;
}

// forward: y[place(i)] = x[i]; backward: dx[i] += dy[place(i)].
__global__ void concat_forward_kernel(float *y, const float *x, size_t total, size_t n_s, size_t off,
                                      size_t n_out, size_t inner) {
    CUDA_GRID_STRIDE(i, total) y[concat_out_index(i, n_s, off, n_out, inner)] = x[i];
}

__global__ void concat_backward_kernel(float *dx, const float *dy, size_t total, size_t n_s, size_t off,
                                       size_t n_out, size_t inner) {
    CUDA_GRID_STRIDE(i, total) dx[i] += dy[concat_out_index(i, n_s, off, n_out, inner)];
}

// inner = prod(out->shape[axis+1:]), n_out = out->shape[axis].
void concat_split(const Tensor *out, size_t *n_out, size_t *inner) {
    int axis = out->iattr[0];
    size_t in = 1;
    for (int d = axis + 1; d < out->ndim; d++) in *= (size_t)out->shape[d];
    *n_out = (size_t)out->shape[axis];
    *inner = in;
}

}  // namespace

extern "C" void concat_forward_cuda(Tensor *out) {
    size_t n_out, inner, off = 0;
    concat_split(out, &n_out, &inner);
    for (int s = 0; s < out->nsrc; s++) {
        const Tensor *x = out->src[s];
        size_t n_s = (size_t)x->shape[out->iattr[0]];
        concat_forward_kernel<<<cuda_grid_for(x->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            (float *)out->data,            // (outer, n_out, inner)
            (const float *)x->data,        // (outer, n_s, inner)
            x->numel, n_s, off, n_out, inner);
        CUDA_CHECK_LAUNCH();
        off += n_s;
    }
}

extern "C" void concat_backward_cuda(Tensor *out) {
    size_t n_out, inner, off = 0;
    concat_split(out, &n_out, &inner);
    for (int s = 0; s < out->nsrc; s++) {
        Tensor *x = out->src[s];
        size_t n_s = (size_t)x->shape[out->iattr[0]];
        if (x->grad) {
            concat_backward_kernel<<<cuda_grid_for(x->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
                x->grad, out->grad, x->numel, n_s, off, n_out, inner);
            CUDA_CHECK_LAUNCH();
        }
        off += n_s;
    }
}
