// cuda_common.cuh: error checks, launch shapes and the fixed-order block
// reductions shared by every CUDA file.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#include <cublas_v2.h>

// Checks a runtime call; on failure names the call, file and line, exits 1.
#define CUDA_CHECK(call) do { \
    cudaError_t err_ = (call); \
    if (err_ != cudaSuccess) { \
        fprintf(stderr, "distil: error: CUDA: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, cudaGetErrorString(err_)); \
        exit(1); \
    } } while (0)

// After every kernel launch: the launch's own error (bad configuration).
// Errors inside the kernel surface at the next synchronising call.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// Checks a cuBLAS call the same way.
#define CUBLAS_CHECK(call) do { \
    cublasStatus_t st_ = (call); \
    if (st_ != CUBLAS_STATUS_SUCCESS) { \
        fprintf(stderr, "distil: error: cuBLAS: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, cublasGetStatusString(st_)); \
        exit(1); \
    } } while (0)

// Threads per block of the elementwise and row kernels. The row kernels'
// reductions depend on it (the tree below has a fixed shape for a given
// block size), so it is a constant, not tuned per device: the same inputs
// give the same bits on any GPU.
#define CUDA_BLOCK 256

// Blocks for a grid-stride loop over n elements. Capped so the grid stays
// well inside the limits; the loop covers the rest.
static inline unsigned int cuda_grid_for(size_t n) {
    size_t blocks = (n + CUDA_BLOCK - 1) / CUDA_BLOCK;
    if (blocks == 0) blocks = 1;
    if (blocks > (1u << 20)) blocks = 1u << 20;
    return (unsigned int)blocks;
}

// for (size_t i = <this thread's first>; i < n; i += <all threads>)
#define CUDA_GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n); i += (size_t)gridDim.x * blockDim.x)

// ---- fixed-order reductions -----------------------------------------------
// Butterfly (xor) shuffles: at each step lane i adds lane i^o's value and
// lane i^o adds lane i's, the same two numbers in the other order, and float
// addition is commutative, so every lane ends with the bitwise-same total.
// The combination tree depends only on blockDim, never on timing: no
// atomics, deterministic.
__device__ inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum of v over the block, returned to every thread. blockDim.x must be a
// multiple of 32 (at most 1024), and every thread of the block must call it.
__device__ inline float block_sum(float v) {
    __shared__ float warp_partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();                      // a previous call may still be reading warp_partial
    if (lane == 0) warp_partial[warp] = v;
    __syncthreads();
    v = lane < nwarps ? warp_partial[lane] : 0.0f;
    return warp_sum(v);
}

__device__ inline float block_max(float v) {
    __shared__ float warp_partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) warp_partial[warp] = v;
    __syncthreads();
    v = lane < nwarps ? warp_partial[lane] : -INFINITY;
    return warp_max(v);
}

// The same in double, for the losses that keep their sums in double
// (distill_kl, cosine_loss): shuffles move 64-bit values in two halves.
__device__ inline double block_sum_f64(double v) {
    __shared__ double warp_partial_f64[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) warp_partial_f64[warp] = v;
    __syncthreads();
    v = lane < nwarps ? warp_partial_f64[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline double block_max_f64(double v) {
    __shared__ double warp_partial_f64[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) warp_partial_f64[warp] = v;
    __syncthreads();
    v = lane < nwarps ? warp_partial_f64[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Threads for a kernel that gives one block to each row of C elements: a
// multiple of 32 (block_sum needs whole warps), no more than CUDA_BLOCK.
static inline int cuda_row_threads(size_t C) {
    size_t t = (C + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > CUDA_BLOCK ? CUDA_BLOCK : t);
}
