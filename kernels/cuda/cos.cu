// cos.cu: y = cos(x); dx -= sin(x) dy; the twin of kernels/cpu/cos.c.
// The accurate cosf (a few ulp, full range reduction), not the __cosf
// intrinsic, whose error grows with |x| (positional encodings reach |x| ~ 1e3).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

__global__ void cos_forward_kernel(float *y, const float *x, size_t n) {
    CUDA_GRID_STRIDE(i, n) y[i] = cosf(x[i]);
}

__global__ void cos_backward_kernel(float *dx, const float *x, const float *dy, size_t n) {
    CUDA_GRID_STRIDE(i, n) dx[i] -= sinf(x[i]) * dy[i];
}

}  // namespace

extern "C" void cos_forward_cuda(Tensor *out) {
    size_t n = out->numel;
    cos_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)out->src[0]->data, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cos_backward_cuda(Tensor *out) {
    Tensor *src = out->src[0];
    if (!src->grad) return;
    size_t n = out->numel;
    cos_backward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        src->grad, (const float *)src->data, out->grad, n);
    CUDA_CHECK_LAUNCH();
}
