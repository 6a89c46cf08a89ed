// bias_gelu.cu: y = gelu(x + bias), the tanh form; the twin of
// kernels/cpu/bias_gelu.c. x [..., C] viewed as (rows, C), bias (C).
// Backward: dx += gelu'(x + bias) dy elementwise, and db sums the same
// product over rows with one block per BIAS_COLS columns, BIAS_LANES lanes
// walking the rows, then a fixed tree (no atomics: the bits depend only on
// the shapes).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

#define GELU_SCALE 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_CUBIC 0.044715f
#define BIAS_COLS 32
#define BIAS_LANES (CUDA_BLOCK / BIAS_COLS)

namespace {

__device__ inline float gelu(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__device__ inline float gelu_grad(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * du;
}

__global__ void bias_gelu_forward_kernel(float *y, const float *x, const float *b, size_t n, int C) {
    CUDA_GRID_STRIDE(i, n) y[i] = gelu(x[i] + b[i % C]);
}

__global__ void bias_gelu_backward_x_kernel(float *dx, const float *x, const float *b, const float *dy, size_t n, int C) {
    CUDA_GRID_STRIDE(i, n) dx[i] += gelu_grad(x[i] + b[i % C]) * dy[i];
}

// db (C) += sum_rows gelu'(x + b) dy
__global__ void bias_gelu_backward_bias_kernel(float *db, const float *x, const float *b, const float *dy,
                                               size_t rows, int C) {
    __shared__ float lane_sum[BIAS_LANES][BIAS_COLS];
    int col = threadIdx.x % BIAS_COLS, lane = threadIdx.x / BIAS_COLS;
    int c = blockIdx.x * BIAS_COLS + col;
    float acc = 0.0f;
    if (c < C)
        for (size_t r = lane; r < rows; r += BIAS_LANES) acc += gelu_grad(x[r * C + c] + b[c]) * dy[r * C + c];
    lane_sum[lane][col] = acc;
    __syncthreads();
    for (int s = BIAS_LANES / 2; s > 0; s >>= 1) {
        if (lane < s) lane_sum[lane][col] += lane_sum[lane + s][col];
        __syncthreads();
    }
    if (lane == 0 && c < C) db[c] += lane_sum[0][col];
}

}  // namespace

extern "C" void bias_gelu_forward_cuda(Tensor *out) {
    const Tensor *x = out->src[0];
    int C = x->shape[x->ndim - 1];
    size_t n = out->numel;
    bias_gelu_forward_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)x->data, (const float *)out->src[1]->data, n, C);
    CUDA_CHECK_LAUNCH();
}

extern "C" void bias_gelu_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *x = out->src[0], *bias = out->src[1];
    int C = x->shape[x->ndim - 1];
    size_t n = out->numel, rows = n / C;
    const float *xd = (const float *)x->data, *bd = (const float *)bias->data;   // (rows, C), (C)
    if (x->grad) {
        bias_gelu_backward_x_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            x->grad, xd, bd, out->grad, n, C);
        CUDA_CHECK_LAUNCH();
    }
    if (bias->grad) {
        unsigned int blocks = (unsigned int)((C + BIAS_COLS - 1) / BIAS_COLS);
        bias_gelu_backward_bias_kernel<<<blocks, CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            bias->grad, xd, bd, out->grad, rows, C);
        CUDA_CHECK_LAUNCH();
    }
}
