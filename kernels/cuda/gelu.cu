// gelu.cu: the tanh approximation, y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
// the twin of kernels/cpu/gelu.c. tanhf, not a fast intrinsic, so the
// result stays within a few ulp of the CPU's.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

#define GELU_SCALE 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_CUBIC 0.044715f

namespace {

__global__ void gelu_forward_kernel(float *y, const float *x, size_t n) {
    CUDA_GRID_STRIDE(i, n) {
        float xi = x[i];
        float u = GELU_SCALE * (xi + GELU_CUBIC * xi * xi * xi);
        y[i] = 0.5f * xi * (1.0f + tanhf(u));
    }
}

__global__ void gelu_backward_kernel(float *dx, const float *x, const float *dy, size_t n) {
    CUDA_GRID_STRIDE(i, n) {
        float xi = x[i];
        float u = GELU_SCALE * (xi + GELU_CUBIC * xi * xi * xi);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * xi * xi);
        dx[i] += (0.5f * (1.0f + th) + 0.5f * xi * sech2 * du) * dy[i];
    }
}

}  // namespace

extern "C" void gelu_forward_cuda(Tensor *out) {
    size_t n = out->numel;
    gelu_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)out->src[0]->data, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void gelu_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *src = out->src[0];
    if (!src->grad) return;
    size_t n = out->numel;
    gelu_backward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        src->grad, (const float *)src->data, out->grad, n);
    CUDA_CHECK_LAUNCH();
}
