// scale.cu: y = s * a, s = fattr[0]; the twin of kernels/cpu/scale.c.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

// y (n) = or += s * x (n)
__global__ void scale_kernel(float *y, const float *x, float s, size_t n, bool accumulate) {
    CUDA_GRID_STRIDE(i, n) y[i] = accumulate ? y[i] + s * x[i] : s * x[i];
}

}  // namespace

extern "C" void scale_forward_cuda(Tensor *out) {
    size_t n = out->numel;
    scale_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)out->src[0]->data, out->fattr[0], n, false);
    CUDA_CHECK_LAUNCH();
}

extern "C" void scale_backward_cuda(Tensor *out) {
    float *da = out->src[0]->grad;   // (n)
    if (!da) return;
    size_t n = out->numel;
    scale_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(da, out->grad, out->fattr[0], n, true);
    CUDA_CHECK_LAUNCH();
}
