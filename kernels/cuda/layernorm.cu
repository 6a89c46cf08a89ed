// layernorm.cu: y = (x - mean) * rstd * gamma + beta over the last dim, with
// rstd = 1 / sqrt(var + eps) and var the biased variance; the twin of
// kernels/cpu/layernorm.c. out->saved holds mean (rows floats) then rstd
// (rows floats) for backward, as on the CPU.
//
// Rows of at most 1024 channels, a multiple of 4, with aligned pointers
// (every layernorm of the students): a warp per row, the row held in
// registers as 128-bit packs (N per lane), its sums by butterfly shuffles,
// so x is read once and y written once; dx is assigned or added in its own
// store. Other rows: one block per row, the fixed-tree block_sum. dgamma
// and dbeta sum over rows: one block per 32 channels, 8 lanes per channel
// walking the rows, then a fixed tree, assigned or added at the end. No
// atomics anywhere: the bits depend only on the shapes. Under
// train.precision bf16 y may be stored bf16 (autograd/plan.h): the forward
// kernels' output type is a template parameter, the math fp32 either way,
// rounded once with bf16.cuh's bf16_round (the CPU's bits).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/bf16.cuh"          // defines: bf16_round
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum, warp_sum
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec, store_vec, cuda_aligned16

// The affine-grad kernel's tile: AFFINE_COLS channels by AFFINE_LANES row lanes.
#define AFFINE_COLS 32
#define AFFINE_LANES (CUDA_BLOCK / AFFINE_COLS)

namespace {

using F4 = Vec<float, 4>;

// An output value as stored: fp32 as it is, bf16 rounded to nearest even.
template <typename OutT> __device__ __forceinline__ OutT to_out(float v);
template <> __device__ __forceinline__ float to_out<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 to_out<__nv_bfloat16>(float v) { return bf16_round(v); }

// ---- a warp per row: C = 4 * packs, packs <= 32 * N --------------------------

template <int N, typename OutT>
__global__ void __launch_bounds__(CUDA_BLOCK) layernorm_forward_warp(OutT *y, float *mean, float *rstd, const float *x,
                                                                     const float *gamma, const float *beta,
                                                                     uint32_t rows, int C, float eps) {
    uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;             // the whole warp: rows are warp-uniform
    int packs = C / 4;
    const float *xr = x + (size_t)row * C;
    F4 v[N];
    float s = 0.0f;
    for (int k = 0; k < N; k++) {
        int p = (int)lane + 32 * k;
        v[k] = p < packs ? load_vec<F4>(xr, p) : F4{};   // x is read again (the residual, backward): cached
        for (int j = 0; j < 4; j++) s += v[k][j];
    }
    // Two passes over the registers (mean, then centred squares): no
    // cancellation when |mean| >> std.
    float m = warp_sum(s) / C, q = 0.0f;
    for (int k = 0; k < N; k++)
        if ((int)lane + 32 * k < packs)
            for (int j = 0; j < 4; j++) { float d = v[k][j] - m; q += d * d; }
    float rs = 1.0f / sqrtf(warp_sum(q) / C + eps);
    OutT *yr = y + (size_t)row * C;
    for (int k = 0; k < N; k++) {
        int p = (int)lane + 32 * k;
        if (p >= packs) continue;
        F4 g = load_vec<F4>(gamma, p), b = load_vec<F4>(beta, p);
        Vec<OutT, 4> out;
        for (int j = 0; j < 4; j++) out[j] = to_out<OutT>((v[k][j] - m) * rs * g[j] + b[j]);
        store_vec<Vec<OutT, 4>>(yr, p, out);
    }
    if (lane == 0) { mean[row] = m; rstd[row] = rs; }
}

// dx (=, or += when ACC) rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)), a warp per row.
template <int N, bool ACC>
__global__ void __launch_bounds__(CUDA_BLOCK) layernorm_backward_x_warp(float *dx, const float *x, const float *dy,
                                                                        const float *gamma, const float *mean,
                                                                        const float *rstd, uint32_t rows, int C) {
    uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int packs = C / 4;
    const float *xr = x + (size_t)row * C, *dyr = dy + (size_t)row * C;
    float m = mean[row], s = rstd[row];
    F4 xhat[N], dn[N];
    float dn_sum = 0.0f, dn_xhat_sum = 0.0f;
    for (int k = 0; k < N; k++) {
        int p = (int)lane + 32 * k;
        if (p >= packs) { xhat[k] = F4{}; dn[k] = F4{}; continue; }
        F4 xv = load_vec<F4>(xr, p), dv = load_vec<F4>(dyr, p), g = load_vec<F4>(gamma, p);
        for (int j = 0; j < 4; j++) {
            xhat[k][j] = (xv[j] - m) * s;
            dn[k][j] = dv[j] * g[j];
            dn_sum += dn[k][j];
            dn_xhat_sum += dn[k][j] * xhat[k][j];
        }
    }
    float dn_mean = warp_sum(dn_sum) / C, dn_xhat_mean = warp_sum(dn_xhat_sum) / C;
    float *dxr = dx + (size_t)row * C;
    for (int k = 0; k < N; k++) {
        int p = (int)lane + 32 * k;
        if (p >= packs) continue;
        F4 out = {};
        if constexpr (ACC) out = load_vec<F4>(dxr, p);
        for (int j = 0; j < 4; j++) out[j] += (dn[k][j] - dn_mean - xhat[k][j] * dn_xhat_mean) * s;
        store_vec<F4>(dxr, p, out);
    }
}

// ---- a block per row: any C ----------------------------------------------------

template <typename OutT>
__global__ void layernorm_forward_kernel(OutT *y, float *mean, float *rstd, const float *x,
                                         const float *gamma, const float *beta, int C, float eps) {
    size_t r = blockIdx.x;
    const float *xr = x + r * C;   // (C)
    OutT *yr = y + r * C;          // (C)
    // Two passes (mean, then centred squares): no cancellation when |mean| >> std.
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    float m = block_sum(s) / C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = xr[c] - m; v += d * d; }
    float rs = 1.0f / sqrtf(block_sum(v) / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] = to_out<OutT>((xr[c] - m) * rs * gamma[c] + beta[c]);
    if (threadIdx.x == 0) { mean[r] = m; rstd[r] = rs; }
}

// dx (=, or += when acc) rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)), per row.
__global__ void layernorm_backward_x_kernel(float *dx, const float *x, const float *dy, const float *gamma,
                                            const float *mean, const float *rstd, int C, bool acc) {
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
        dxr[c] = (acc ? dxr[c] : 0.0f) + (dyr[c] * gamma[c] - dnorm_mean - xhat * dnorm_xhat_mean) * s;
    }
}

// dgamma (C) (+)= sum_rows dy * xhat, dbeta (C) (+)= sum_rows dy (+= when
// add_g, add_b); either may be NULL.
__global__ void layernorm_backward_affine_kernel(float *dgamma, float *dbeta, const float *x, const float *dy,
                                                 const float *mean, const float *rstd, size_t rows, int C,
                                                 bool add_g, bool add_b) {
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
        if (dgamma) dgamma[c] = (add_g ? dgamma[c] : 0.0f) + lane_g[0][col];
        if (dbeta) dbeta[c] = (add_b ? dbeta[c] : 0.0f) + lane_b[0][col];
    }
}


// Packs per lane for the warp-per-row kernels (1, 2, 4 or 8), or 0 when the
// rows need the block-per-row ones (C not a multiple of 4, over 1024, or a
// pointer not 16-byte aligned).
static int warp_packs(int C, const void *const *ptrs, int n) {
    if (C % 4 != 0 || C > 1024) return 0;
    for (int i = 0; i < n; i++)
        if (ptrs[i] && !cuda_aligned16(ptrs[i])) return 0;
    int per_lane = (C / 4 + 31) / 32;
    return per_lane <= 1 ? 1 : per_lane <= 2 ? 2 : per_lane <= 4 ? 4 : 8;
}

static unsigned int warp_blocks(size_t rows) { return (unsigned int)((rows + CUDA_BLOCK / 32 - 1) / (CUDA_BLOCK / 32)); }

}  // namespace

template <typename OutT>
static void forward(OutT *y, float *mean, float *rstd, const float *x, const float *gamma, const float *beta, size_t rows,
                    int C, float eps) {
    cudaStream_t st = cuda_compute_stream();
    const void *ptrs[] = { y, x, gamma, beta };
    int n = warp_packs(C, ptrs, 4);
    if (n) cuda_check_index32(rows * 32, "layernorm");
    unsigned int wb = warp_blocks(rows);
    uint32_t r32 = (uint32_t)rows;
    if (n == 1) layernorm_forward_warp<1, OutT><<<wb, CUDA_BLOCK, 0, st>>>(y, mean, rstd, x, gamma, beta, r32, C, eps);
    else if (n == 2) layernorm_forward_warp<2, OutT><<<wb, CUDA_BLOCK, 0, st>>>(y, mean, rstd, x, gamma, beta, r32, C, eps);
    else if (n == 4) layernorm_forward_warp<4, OutT><<<wb, CUDA_BLOCK, 0, st>>>(y, mean, rstd, x, gamma, beta, r32, C, eps);
    else if (n == 8) layernorm_forward_warp<8, OutT><<<wb, CUDA_BLOCK, 0, st>>>(y, mean, rstd, x, gamma, beta, r32, C, eps);
    else layernorm_forward_kernel<OutT><<<(unsigned int)rows, cuda_row_threads(C), 0, st>>>(y, mean, rstd, x, gamma, beta, C, eps);
    CUDA_CHECK_LAUNCH();
}

extern "C" void layernorm_forward_cuda(Tensor *out) {
    const Tensor *tx = out->src[0];
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    if (rows == 0) return;
    float *mean = out->saved, *rstd = out->saved + rows;   // (rows), (rows)
    const float *x = (const float *)tx->data, *gamma = (const float *)out->src[1]->data,
                *beta = (const float *)out->src[2]->data;
    if (out->dtype == DT_BF16) forward((__nv_bfloat16 *)out->data, mean, rstd, x, gamma, beta, rows, C, out->fattr[0]);   // (rows, C)
    else forward((float *)out->data, mean, rstd, x, gamma, beta, rows, C, out->fattr[0]);                                 // (rows, C)
}

template <int N>
static void backward_x_warp(bool acc, unsigned int blocks, cudaStream_t st, float *dx, const float *x, const float *dy,
                            const float *gamma, const float *mean, const float *rstd, uint32_t rows, int C) {
    if (acc) layernorm_backward_x_warp<N, true><<<blocks, CUDA_BLOCK, 0, st>>>(dx, x, dy, gamma, mean, rstd, rows, C);
    else layernorm_backward_x_warp<N, false><<<blocks, CUDA_BLOCK, 0, st>>>(dx, x, dy, gamma, mean, rstd, rows, C);
}

extern "C" void layernorm_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0x7u);   // every write below assigns or adds itself
    Tensor *tx = out->src[0];
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    if (rows == 0) return;
    const float *x = (const float *)tx->data, *dy = out->grad;   // (rows, C), (rows, C)
    const float *gamma = (const float *)out->src[1]->data;       // (C)
    const float *mean = out->saved, *rstd = out->saved + rows;   // (rows), (rows)
    cudaStream_t st = cuda_compute_stream();
    if (tx->grad) {
        bool acc = !tensor_grad_assigns(out, 0);
        const void *ptrs[] = { tx->grad, x, dy, gamma };
        int n = warp_packs(C, ptrs, 4);
        unsigned int wb = warp_blocks(rows);
        uint32_t r32 = (uint32_t)rows;
        if (n) cuda_check_index32(rows * 32, "layernorm");
        if (n == 1) backward_x_warp<1>(acc, wb, st, tx->grad, x, dy, gamma, mean, rstd, r32, C);
        else if (n == 2) backward_x_warp<2>(acc, wb, st, tx->grad, x, dy, gamma, mean, rstd, r32, C);
        else if (n == 4) backward_x_warp<4>(acc, wb, st, tx->grad, x, dy, gamma, mean, rstd, r32, C);
        else if (n == 8) backward_x_warp<8>(acc, wb, st, tx->grad, x, dy, gamma, mean, rstd, r32, C);
        else layernorm_backward_x_kernel<<<(unsigned int)rows, cuda_row_threads(C), 0, st>>>(tx->grad, x, dy, gamma, mean,
                                                                                               rstd, C, acc);
        CUDA_CHECK_LAUNCH();
    }
    float *dgamma = out->src[1]->grad, *dbeta = out->src[2]->grad;   // (C) or NULL
    if (!dgamma && !dbeta) return;
    unsigned int blocks = (unsigned int)((C + AFFINE_COLS - 1) / AFFINE_COLS);
    layernorm_backward_affine_kernel<<<blocks, CUDA_BLOCK, 0, st>>>(
        dgamma, dbeta, x, dy, mean, rstd, rows, C, !tensor_grad_assigns(out, 1), !tensor_grad_assigns(out, 2));
    CUDA_CHECK_LAUNCH();
}
