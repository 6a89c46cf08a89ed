// bias_gelu.cu: y = gelu(x + bias), the tanh form (gelu.cuh); the twin of
// kernels/cpu/bias_gelu.c. x [..., C] viewed as (rows, C), bias (C).
// Forward through map.cuh's broadcast map (128-bit packs, the bias column
// by a multiply-high, no division per element). Backward: dx = or +=
// gelu'(x + bias) dy in the same manner, and db sums the same product over
// rows with one block per BIAS_COLS columns, BIAS_LANES lanes walking the
// rows, then a fixed tree (no atomics: the bits depend only on the shapes).
// Under train.precision bf16 y may be stored bf16 (autograd/plan.h): the
// same fp32 value rounded once with bf16.cuh's bf16_round (the CPU's bits);
// backward reads x, fp32 either way.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/bf16.cuh"          // defines: bf16_round
#include "kernels/cuda/gelu.cuh"          // defines: gelu_value, gelu_slope
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin
#include "kernels/cuda/map.cuh"           // defines: cuda_map_broadcast, Vec, DivMod32

#define BIAS_COLS 32
#define BIAS_LANES (CUDA_BLOCK / BIAS_COLS)

namespace {

struct BiasGelu {
    __device__ float operator()(float x, float b) const { return gelu_value(x + b); }
};

// y (n) bf16 = bf16_round(gelu(x + b[i % C])); cols is C.
__global__ void __launch_bounds__(CUDA_BLOCK) bias_gelu_bf16_kernel(__nv_bfloat16 *y, const float *x, const float *b,
                                                                    uint32_t n, DivMod32 cols) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = bf16_round(gelu_value(x[i] + b[cols.mod(i)]));
}

// dx (n) = or += gelu'(x + b[i % C]) dy, W floats per access; cols is C / W.
template <bool ACC, int W>
__global__ void __launch_bounds__(CUDA_BLOCK) bias_gelu_backward_x_kernel(float *dx, const float *x, const float *b,
                                                                          const float *dy, uint32_t vecs, DivMod32 cols) {
    using V = Vec<float, W>;
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < vecs; p += gridDim.x * blockDim.x) {
        V xv = load_vec_cs<V>(x, p), gv = load_vec_cs<V>(dy, p), bv = load_vec<V>(b, cols.mod(p));
        V out = {};
        if constexpr (ACC) out = load_vec<V>(dx, p);
        for (int j = 0; j < W; j++) {
            float r = gelu_slope(xv[j] + bv[j]) * gv[j];
            out[j] = ACC ? out[j] + r : r;
        }
        store_vec<V>(dx, p, out);
    }
}

// db (C) = or += sum_rows gelu'(x + b) dy
__global__ void __launch_bounds__(CUDA_BLOCK) bias_gelu_backward_bias_kernel(float *db, const float *x, const float *b,
                                                                             const float *dy, size_t rows, int C, bool acc) {
    __shared__ float lane_sum[BIAS_LANES][BIAS_COLS];
    int col = threadIdx.x % BIAS_COLS, lane = threadIdx.x / BIAS_COLS;
    int c = blockIdx.x * BIAS_COLS + col;
    float sum = 0.0f;
    if (c < C)
        for (size_t r = lane; r < rows; r += BIAS_LANES) sum += gelu_slope(x[r * C + c] + b[c]) * dy[r * C + c];
    lane_sum[lane][col] = sum;
    __syncthreads();
    for (int s = BIAS_LANES / 2; s > 0; s >>= 1) {
        if (lane < s) lane_sum[lane][col] += lane_sum[lane + s][col];
        __syncthreads();
    }
    if (lane == 0 && c < C) db[c] = acc ? db[c] + lane_sum[0][col] : lane_sum[0][col];
}

void backward_x(float *dx, const float *x, const float *b, const float *dy, size_t n, int C, bool acc) {
    cuda_check_index32(n, "bias_gelu");
    bool vec = C % 4 == 0 && cuda_aligned16(dx) && cuda_aligned16(x) && cuda_aligned16(b) && cuda_aligned16(dy);
    int w = vec ? 4 : 1;
    uint32_t vecs = (uint32_t)(n / w);
    DivMod32 cols = divmod32((uint32_t)(C / w));
    unsigned int grid = cuda_grid_for_items(vecs);
    cudaStream_t s = cuda_compute_stream();
    if (vec && acc) bias_gelu_backward_x_kernel<true, 4><<<grid, CUDA_BLOCK, 0, s>>>(dx, x, b, dy, vecs, cols);
    else if (vec) bias_gelu_backward_x_kernel<false, 4><<<grid, CUDA_BLOCK, 0, s>>>(dx, x, b, dy, vecs, cols);
    else if (acc) bias_gelu_backward_x_kernel<true, 1><<<grid, CUDA_BLOCK, 0, s>>>(dx, x, b, dy, vecs, cols);
    else bias_gelu_backward_x_kernel<false, 1><<<grid, CUDA_BLOCK, 0, s>>>(dx, x, b, dy, vecs, cols);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

extern "C" void bias_gelu_forward_cuda(Tensor *out) {
    const Tensor *x = out->src[0];
    int C = x->shape[x->ndim - 1];
    if (out->dtype == DT_BF16) {
        cuda_check_index32(out->numel, "bias_gelu");
        bias_gelu_bf16_kernel<<<cuda_grid_for_items(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            (__nv_bfloat16 *)out->data, (const float *)x->data, (const float *)out->src[1]->data, (uint32_t)out->numel,
            divmod32((uint32_t)C));
        CUDA_CHECK_LAUNCH();
        return;
    }
    cuda_map_broadcast((float *)out->data, (const float *)x->data, (const float *)out->src[1]->data, out->numel,
                       (size_t)C, false, BiasGelu{});
}

extern "C" void bias_gelu_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0x3u);   // both kernels assign or add themselves
    Tensor *x = out->src[0], *bias = out->src[1];
    int C = x->shape[x->ndim - 1];
    size_t n = out->numel, rows = n / C;
    const float *xd = (const float *)x->data, *bd = (const float *)bias->data;   // (rows, C), (C)
    if (x->grad) backward_x(x->grad, xd, bd, out->grad, n, C, !tensor_grad_assigns(out, 0));
    if (bias->grad) {
        unsigned int blocks = (unsigned int)((C + BIAS_COLS - 1) / BIAS_COLS);
        bias_gelu_backward_bias_kernel<<<blocks, CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            bias->grad, xd, bd, out->grad, rows, C, !tensor_grad_assigns(out, 1));
        CUDA_CHECK_LAUNCH();
    }
}
