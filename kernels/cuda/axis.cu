// axis.cu: reductions along one axis (see axis.cuh), the twin of
// kernels/cpu/axis.c.
//
// A block owns tx adjacent outputs (tx adjacent columns k of one outer
// slice, so its loads are coalesced) and ty = CUDA_BLOCK / tx lanes walk the
// n rows: lane y sums rows y, y + ty, y + 2ty, ... serially, then the ty
// lane sums are added in a fixed binary tree through shared memory. With
// inner == 1 (a sum over the last axis, or over everything) tx is 1 and the
// whole block reduces one output.
#include "kernels/cuda/axis.cuh"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_BLOCK, CUDA_GRID_STRIDE

namespace {

__global__ void reduce_axis_kernel(float *dst, const float *src, const float *src2,
                                   size_t n, size_t inner, int tx, size_t tiles,
                                   float scale, bool accumulate) {
    __shared__ float lane_sum[CUDA_BLOCK];
    int ty = CUDA_BLOCK / tx;
    int x = threadIdx.x % tx, y = threadIdx.x / tx;
    size_t o = blockIdx.x / tiles, k = (blockIdx.x % tiles) * tx + x;
    float acc = 0.0f;
    if (k < inner) {
        const float *col = src + o * n * inner + k;              // (n) with stride inner
        const float *col2 = src2 ? src2 + o * n * inner + k : nullptr;
        for (size_t j = y; j < n; j += ty)
            acc += col2 ? col[j * inner] * col2[j * inner] : col[j * inner];
    }
    lane_sum[threadIdx.x] = acc;
    __syncthreads();
    for (int s = ty / 2; s > 0; s >>= 1) {
        if (y < s) lane_sum[threadIdx.x] += lane_sum[threadIdx.x + s * tx];
        __syncthreads();
    }
    if (y == 0 && k < inner) {
        float r = scale * lane_sum[x];
        float *d = dst + o * inner + k;
        *d = accumulate ? *d + r : r;
    }
}

__global__ void broadcast_axis_add_kernel(const float *dy, float *dx, size_t n, size_t inner,
                                          size_t total, float scale) {
    CUDA_GRID_STRIDE(i, total) {
        size_t o = i / (n * inner), k = i % inner;
        dx[i] += scale * dy[o * inner + k];
    }
}

}  // namespace

void cuda_reduce_axis(float *dst, const float *src, const float *src2,
                      size_t outer, size_t n, size_t inner, float scale, bool accumulate) {
    if (outer == 0 || inner == 0) return;
    int tx = 1;                                   // a power of two <= 32, so ty is one too
    while (tx < 32 && (size_t)tx < inner) tx *= 2;
    size_t tiles = (inner + tx - 1) / tx;
    reduce_axis_kernel<<<(unsigned int)(outer * tiles), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        dst, src, src2, n, inner, tx, tiles, scale, accumulate);
    CUDA_CHECK_LAUNCH();
}

void cuda_broadcast_axis_add(const float *dy, float *dx, size_t outer, size_t n, size_t inner, float scale) {
    size_t total = outer * n * inner;
    if (total == 0) return;
    broadcast_axis_add_kernel<<<cuda_grid_for(total), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        dy, dx, n, inner, total, scale);
    CUDA_CHECK_LAUNCH();
}
