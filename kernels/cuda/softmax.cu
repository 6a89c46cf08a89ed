// softmax.cu: softmax over the last dim, max-subtracted; backward from the
// output y: dx += y * (dy - sum(dy * y)). The twin of kernels/cpu/softmax.c.
//
// Rows of up to SOFTMAX_WARP_MAX floats go one per warp (8 rows per block
// of 256 threads), reduced with the warp's butterfly shuffles alone, no
// shared memory and no __syncthreads; longer rows one per block, reduced
// with the block trees of cuda_common.cuh. Both read and write 128-bit
// packs when C is a multiple of 4. The trees are fixed, so the result is
// deterministic.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, warp_sum, warp_max, block_sum, block_max
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec, store_vec

// Longest row a warp takes (32 lanes x 32 floats each at most).
#define SOFTMAX_WARP_MAX 1024

namespace {

// Reductions over the threads that share a row: a warp (ROW_WARP) or the block.
template <bool ROW_WARP> __device__ __forceinline__ float row_sum(float v) { return ROW_WARP ? warp_sum(v) : block_sum(v); }
template <bool ROW_WARP> __device__ __forceinline__ float row_max(float v) { return ROW_WARP ? warp_max(v) : block_max(v); }

template <bool ROW_WARP, int W>
__global__ void __launch_bounds__(CUDA_BLOCK) softmax_forward_kernel(float *y, const float *x, int rows, int C) {
    using Vf = Vec<float, W>;
    int row = ROW_WARP ? blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32 : blockIdx.x;
    int lane = ROW_WARP ? threadIdx.x & 31 : threadIdx.x, lanes = ROW_WARP ? 32 : blockDim.x;
    if (row >= rows) return;                        // a whole warp (ROW_WARP) or block
    const float *xr = x + (size_t)row * C;          // (C)
    float *yr = y + (size_t)row * C;                // (C)
    float mx = -INFINITY;
    for (int p = lane; p < C / W; p += lanes) {
        Vf v = load_vec<Vf>(xr, (size_t)p);
        for (int j = 0; j < W; j++) mx = fmaxf(mx, v[j]);
    }
    mx = row_max<ROW_WARP>(mx);
    float sum = 0.0f;
    for (int p = lane; p < C / W; p += lanes) {
        Vf v = load_vec<Vf>(xr, (size_t)p);
        for (int j = 0; j < W; j++) sum += v[j] = expf(v[j] - mx);
        store_vec<Vf>(yr, (size_t)p, v);
    }
    float inv = 1.0f / row_sum<ROW_WARP>(sum);      // sum >= 1: the max term is exp(0)
    for (int p = lane; p < C / W; p += lanes) {
        Vf v = load_vec<Vf>(yr, (size_t)p);
        for (int j = 0; j < W; j++) v[j] *= inv;
        store_vec<Vf>(yr, (size_t)p, v);
    }
}

template <bool ROW_WARP, int W>
__global__ void __launch_bounds__(CUDA_BLOCK) softmax_backward_kernel(float *dx, const float *y, const float *dy,
                                                                      int rows, int C) {
    using Vf = Vec<float, W>;
    int row = ROW_WARP ? blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32 : blockIdx.x;
    int lane = ROW_WARP ? threadIdx.x & 31 : threadIdx.x, lanes = ROW_WARP ? 32 : blockDim.x;
    if (row >= rows) return;
    size_t at = (size_t)row * C;
    const float *yr = y + at, *dyr = dy + at;       // (C), (C)
    float *dxr = dx + at;                           // (C)
    float dot = 0.0f;
    for (int p = lane; p < C / W; p += lanes) {
        Vf a = load_vec<Vf>(dyr, (size_t)p), b = load_vec<Vf>(yr, (size_t)p);
        for (int j = 0; j < W; j++) dot += a[j] * b[j];
    }
    dot = row_sum<ROW_WARP>(dot);
    for (int p = lane; p < C / W; p += lanes) {
        Vf a = load_vec<Vf>(dyr, (size_t)p), b = load_vec<Vf>(yr, (size_t)p), d = load_vec<Vf>(dxr, (size_t)p);
        for (int j = 0; j < W; j++) d[j] += b[j] * (a[j] - dot);
        store_vec<Vf>(dxr, (size_t)p, d);
    }
}

}  // namespace

extern "C" void softmax_forward_cuda(Tensor *out) {
    const Tensor *tx = out->src[0];
    int C = tx->shape[tx->ndim - 1], rows = (int)(tx->numel / (size_t)C);
    float *y = (float *)out->data;             // (rows, C)
    const float *x = (const float *)tx->data;  // (rows, C)
    bool w4 = C % 4 == 0 && cuda_aligned16(y) && cuda_aligned16(x);
    cudaStream_t s = cuda_compute_stream();
    if (C <= SOFTMAX_WARP_MAX) {
        unsigned int grid = (unsigned int)((rows + CUDA_BLOCK / 32 - 1) / (CUDA_BLOCK / 32));
        if (w4) softmax_forward_kernel<true, 4><<<grid, CUDA_BLOCK, 0, s>>>(y, x, rows, C);
        else softmax_forward_kernel<true, 1><<<grid, CUDA_BLOCK, 0, s>>>(y, x, rows, C);
    } else {
        int threads = cuda_row_threads((size_t)(w4 ? C / 4 : C));
        if (w4) softmax_forward_kernel<false, 4><<<rows, threads, 0, s>>>(y, x, rows, C);
        else softmax_forward_kernel<false, 1><<<rows, threads, 0, s>>>(y, x, rows, C);
    }
    CUDA_CHECK_LAUNCH();
}

extern "C" void softmax_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *tx = out->src[0];
    if (!tx->grad) return;
    int C = tx->shape[tx->ndim - 1], rows = (int)(tx->numel / (size_t)C);
    const float *y = (const float *)out->data;   // (rows, C)
    bool w4 = C % 4 == 0 && cuda_aligned16(y) && cuda_aligned16(tx->grad) && cuda_aligned16(out->grad);
    cudaStream_t s = cuda_compute_stream();
    if (C <= SOFTMAX_WARP_MAX) {
        unsigned int grid = (unsigned int)((rows + CUDA_BLOCK / 32 - 1) / (CUDA_BLOCK / 32));
        if (w4) softmax_backward_kernel<true, 4><<<grid, CUDA_BLOCK, 0, s>>>(tx->grad, y, out->grad, rows, C);
        else softmax_backward_kernel<true, 1><<<grid, CUDA_BLOCK, 0, s>>>(tx->grad, y, out->grad, rows, C);
    } else {
        int threads = cuda_row_threads((size_t)(w4 ? C / 4 : C));
        if (w4) softmax_backward_kernel<false, 4><<<rows, threads, 0, s>>>(tx->grad, y, out->grad, rows, C);
        else softmax_backward_kernel<false, 1><<<rows, threads, 0, s>>>(tx->grad, y, out->grad, rows, C);
    }
    CUDA_CHECK_LAUNCH();
}
