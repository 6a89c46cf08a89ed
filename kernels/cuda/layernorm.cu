// layernorm.cu: y = (x - mean) * rstd * gamma + beta over the last dim, with
// rstd = 1 / sqrt(var + eps) and var the biased variance; the twin of
// kernels/cpu/layernorm.c. out->saved holds mean (rows floats) then rstd
// (rows floats) for backward, as on the CPU.
//
// One block per row for the forward and for dx; the row sums use the
// fixed-tree block_sum. dgamma and dbeta sum over rows: one block per 32
// channels, 8 lanes per channel walking the rows, then a fixed tree, so no
// atomics anywhere and the bits depend only on the shapes.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum

// The affine-grad kernel's tile: AFFINE_COLS channels by AFFINE_LANES row lanes.
#define AFFINE_COLS 32
#define AFFINE_LANES (CUDA_BLOCK / AFFINE_COLS)

namespace {

__global__ void layernorm_forward_kernel(float *y, float *mean, float *rstd, const float *x,
                                         const float *gamma, const float *beta, int C, float eps) {
    size_t r = blockIdx.x;
    const float *xr = x + r * C;   // (C)
    float *yr = y + r * C;         // (C)
    // Two passes (mean, then centred squares): no cancellation when |mean| >> std.
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    float m = block_sum(s) / C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = xr[c] - m; v += d * d; }
    float rs = 1.0f / sqrtf(block_sum(v) / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] = (xr[c] - m) * rs * gamma[c] + beta[c];
    if (threadIdx.x == 0) { mean[r] = m; rstd[r] = rs; }
}

// dx += rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)), per row.
__global__ void layernorm_backward_x_kernel(float *dx, const float *x, const float *dy, const float *gamma,
                                            const float *mean, const float *rstd, int C) {
    size_t r = blockIdx.x;
    const float *xr = x + r * C, *dyr = dy + r * C;   // (C), (C)
    float *dxr = dx + r * C;                          // (C)
    float m = mean[r], s = rstd[r];
    float dnorm_sum = 0.0f, dnorm_xhat_sum = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float dnorm = dyr[c] * gamma[c];
        dnorm_sum += dnorm;
        dnorm_xhat_sum += dnorm * (xr[c] - m) * s;
    }
    float dnorm_mean = block_sum(dnorm_sum) / C;
    float dnorm_xhat_mean = block_sum(dnorm_xhat_sum) / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (xr[c] - m) * s;
        dxr[c] += (dyr[c] * gamma[c] - dnorm_mean - xhat * dnorm_xhat_mean) * s;
    }
}

// dgamma (C) += sum_rows dy * xhat, dbeta (C) += sum_rows dy; either may be NULL.
__global__ void layernorm_backward_affine_kernel(float *dgamma, float *dbeta, const float *x, const float *dy,
                                                 const float *mean, const float *rstd, size_t rows, int C) {
    __shared__ float lane_g[AFFINE_LANES][AFFINE_COLS], lane_b[AFFINE_LANES][AFFINE_COLS];
    int col = threadIdx.x % AFFINE_COLS, lane = threadIdx.x / AFFINE_COLS;
    int c = blockIdx.x * AFFINE_COLS + col;
    float acc_g = 0.0f, acc_b = 0.0f;
    if (c < C)
        for (size_t r = lane; r < rows; r += AFFINE_LANES) {
            float d = dy[r * C + c];
            acc_g += d * (x[r * C + c] - mean[r]) * rstd[r];
            acc_b += d;
        }
    lane_g[lane][col] = acc_g;
    lane_b[lane][col] = acc_b;
    __syncthreads();
    for (int s = AFFINE_LANES / 2; s > 0; s >>= 1) {
        if (lane < s) { lane_g[lane][col] += lane_g[lane + s][col]; lane_b[lane][col] += lane_b[lane + s][col]; }
        __syncthreads();
    }
    if (lane == 0 && c < C) {
        if (dgamma) dgamma[c] += lane_g[0][col];
        if (dbeta) dbeta[c] += lane_b[0][col];
    }
}

}  // namespace

extern "C" void layernorm_forward_cuda(Tensor *out) {
    const Tensor *tx = out->src[0];
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    float *mean = out->saved, *rstd = out->saved + rows;   // (rows), (rows)
    layernorm_forward_kernel<<<(unsigned int)rows, cuda_row_threads(C), 0, cuda_compute_stream()>>>(
        (float *)out->data, mean, rstd, (const float *)tx->data,
        (const float *)out->src[1]->data, (const float *)out->src[2]->data, C, out->fattr[0]);
    CUDA_CHECK_LAUNCH();
}

extern "C" void layernorm_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *tx = out->src[0];
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    const float *x = (const float *)tx->data, *dy = out->grad;   // (rows, C), (rows, C)
    const float *mean = out->saved, *rstd = out->saved + rows;   // (rows), (rows)
    if (tx->grad) {
        layernorm_backward_x_kernel<<<(unsigned int)rows, cuda_row_threads(C), 0, cuda_compute_stream()>>>(
            tx->grad, x, dy, (const float *)out->src[1]->data, mean, rstd, C);
        CUDA_CHECK_LAUNCH();
    }
    float *dgamma = out->src[1]->grad, *dbeta = out->src[2]->grad;   // (C) or NULL
    if (!dgamma && !dbeta) return;
    unsigned int blocks = (unsigned int)((C + AFFINE_COLS - 1) / AFFINE_COLS);
    layernorm_backward_affine_kernel<<<blocks, CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        dgamma, dbeta, x, dy, mean, rstd, rows, C);
    CUDA_CHECK_LAUNCH();
}
