// axis.cu: reductions along one axis (see axis.cuh), the twin of
// kernels/cpu/axis.c.
//
// A block owns tx adjacent outputs (tx adjacent columns k of one outer
// slice, so its loads are coalesced) and ty = CUDA_BLOCK / tx lanes walk the
// n rows: lane y sums rows y, y + ty, y + 2ty, ... serially, then the ty
// lane sums are added in a fixed binary tree through shared memory. With
// inner == 1 (a sum over the last axis, or over everything) tx is 1 and the
// whole block reduces one output. The broadcast back walks dx with no
// division per element (DivMod32) and 128-bit accesses where inner allows.
#include "kernels/cuda/axis.cuh"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_BLOCK
#include "kernels/cuda/vec.cuh"           // defines: Vec, DivMod32, cuda_grid_for_items

namespace {

__global__ void __launch_bounds__(CUDA_BLOCK) reduce_axis_kernel(float *dst, const float *src, const float *src2,
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

// dx (outer, n, inner) += scale * dy (outer, inner): element i's dy index
// is (i / (n inner)) inner + i % inner, by multiply-highs (DivMod32), W
// elements at a time when inner is a multiple of W (then a vector shares
// its o and has consecutive k).
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) broadcast_axis_add_kernel(const float *dy, float *dx, size_t total,
                                                                        DivMod32 slice, DivMod32 inner, float scale) {
    using V = Vec<float, W>;
    uint32_t vecs = (uint32_t)(total / W);
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < vecs; p += gridDim.x * blockDim.x) {
        uint32_t i = p * W;
        uint32_t at = slice.div(i) * inner.d + inner.mod(i);   // (o, k) in dy
        V d = load_vec<V>(dx, p), g = load_vec<V>(dy + at, 0);
        for (int j = 0; j < W; j++) d[j] += scale * g[j];
        store_vec<V>(dx, p, d);
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
    cuda_check_index32(total, "broadcast gradient");
    DivMod32 slice = divmod32((uint32_t)(n * inner)), in = divmod32((uint32_t)inner);
    cudaStream_t s = cuda_compute_stream();
    if (inner % 4 == 0 && cuda_aligned16(dx) && cuda_aligned16(dy))
        broadcast_axis_add_kernel<4><<<cuda_grid_for_items(total / 4), CUDA_BLOCK, 0, s>>>(dy, dx, total, slice, in, scale);
    else
        broadcast_axis_add_kernel<1><<<cuda_grid_for_items(total), CUDA_BLOCK, 0, s>>>(dy, dx, total, slice, in, scale);
    CUDA_CHECK_LAUNCH();
}
