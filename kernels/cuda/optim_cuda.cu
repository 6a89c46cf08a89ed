// optim_cuda.cu: AdamW update and gradient sum of squares on the GPU.
#include "kernels/cuda/optim_cuda.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK, CUDA_CHECK_LAUNCH
#include "autograd/graph.h"               // defines: REDUCE_CHUNK

__global__ static void adamw_kernel(float *p, const float *grad, float *m, float *v, size_t n, float beta1,
                                    float beta2, float eps, float lr, float grad_scale, float decay, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + decay * p[i]);
}

extern "C" void adamw_update_cuda(float *p, const float *grad, float *m, float *v, size_t n, float beta1, float beta2,
                                  float eps, float lr, float grad_scale, float decay, float bc1, float bc2) {
    if (n == 0) return;
    unsigned blocks = (unsigned)((n + 255) / 256);
    adamw_kernel<<<blocks, 256, 0, cuda_compute_stream()>>>(p, grad, m, v, n, beta1, beta2, eps, lr, grad_scale, decay, bc1, bc2);
    CUDA_CHECK_LAUNCH();
}

// One block per REDUCE_CHUNK floats, each a tree reduction in double; the
// host adds the chunk sums in order, so the result does not depend on scheduling.
__global__ static void sumsq_kernel(const float *x, size_t n, double *partial) {
    __shared__ double acc[256];
    size_t base = (size_t)blockIdx.x * REDUCE_CHUNK;
    double s = 0;
    for (size_t i = base + threadIdx.x; i < base + REDUCE_CHUNK && i < n; i += blockDim.x) s += (double)x[i] * x[i];
    acc[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) acc[threadIdx.x] += acc[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = acc[0];
}

extern "C" void grad_sumsq_partials_cuda(const float *grad, size_t n, double *partial) {
    if (n == 0) return;
    unsigned blocks = (unsigned)((n + REDUCE_CHUNK - 1) / REDUCE_CHUNK);
    sumsq_kernel<<<blocks, 256, 0, cuda_compute_stream()>>>(grad, n, partial);
    CUDA_CHECK_LAUNCH();
}
