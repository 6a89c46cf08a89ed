// map.cuh: elementwise kernels from a functor, y = f(x0, x1) over n floats
// (assigned, or added into y), with 128-bit loads and stores. Used by
// scale, sin, cos, cast's gradient and mul's same-shape case.
//
// Each thread walks whole 4-float packs in a grid-stride loop (no division
// per element; the index is a running sum), the inputs read with streaming
// loads; the n % 4 floats after the last pack go to the first threads of
// block 0. When a pointer is not 16-byte aligned the same kernel runs with
// one float per access (W = 1).
#pragma once
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_BLOCK, CUDA_CHECK_LAUNCH
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec_cs, store_vec, cuda_grid_for_items

template <int NIN> struct MapArgs {
    float *y;                 // (n)
    const float *x[NIN];      // (n) each
    size_t n;
};

template <class F> __device__ __forceinline__ float map_call(const F &f, const float (&v)[1]) { return f(v[0]); }
template <class F> __device__ __forceinline__ float map_call(const F &f, const float (&v)[2]) { return f(v[0], v[1]); }

template <bool ACC, int W, int NIN, class F>
__global__ void __launch_bounds__(CUDA_BLOCK) map_kernel(MapArgs<NIN> a, F f) {
    using V = Vec<float, W>;
    size_t vecs = a.n / W;
    CUDA_GRID_STRIDE(p, vecs) {
        V in[NIN];
        for (int k = 0; k < NIN; k++) in[k] = load_vec_cs<V>(a.x[k], p);
        V out = {};
        if constexpr (ACC) out = load_vec<V>(a.y, p);
        for (int j = 0; j < W; j++) {
            float v[NIN];
            for (int k = 0; k < NIN; k++) v[k] = in[k][j];
            float r = map_call(f, v);
            out[j] = ACC ? out[j] + r : r;
        }
        store_vec<V>(a.y, p, out);
    }
    for (size_t i = vecs * W + threadIdx.x; blockIdx.x == 0 && i < a.n; i += blockDim.x) {
        float v[NIN];
        for (int k = 0; k < NIN; k++) v[k] = a.x[k][i];
        float r = map_call(f, v);
        a.y[i] = ACC ? a.y[i] + r : r;
    }
}

// y (n) = f(x...) (accumulate = false) or y += f(x...), on the compute stream.
template <int NIN, class F> void cuda_map(float *y, const float *const (&x)[NIN], size_t n, bool accumulate, F f) {
    if (n == 0) return;
    MapArgs<NIN> a;
    a.y = y;
    a.n = n;
    bool aligned = cuda_aligned16(y);
    for (int k = 0; k < NIN; k++) { a.x[k] = x[k]; aligned = aligned && cuda_aligned16(x[k]); }
    cudaStream_t s = cuda_compute_stream();
    if (aligned) {
        unsigned int grid = cuda_grid_for_items(n / 4);
        if (accumulate) map_kernel<true, 4, NIN, F><<<grid, CUDA_BLOCK, 0, s>>>(a, f);
        else map_kernel<false, 4, NIN, F><<<grid, CUDA_BLOCK, 0, s>>>(a, f);
    } else {
        unsigned int grid = cuda_grid_for_items(n);
        if (accumulate) map_kernel<true, 1, NIN, F><<<grid, CUDA_BLOCK, 0, s>>>(a, f);
        else map_kernel<false, 1, NIN, F><<<grid, CUDA_BLOCK, 0, s>>>(a, f);
    }
    CUDA_CHECK_LAUNCH();
}

// y (rows, nb) = or += f(x (rows, nb), b (nb)) with b broadcast over the
// rows. The column of a pack is its index modulo nb/W (DivMod32: a
// multiply-high, not a division); W = 4 when nb is a multiple of 4 and the
// pointers are aligned, else 1.
template <bool ACC, int W, class F>
__global__ void __launch_bounds__(CUDA_BLOCK) map_broadcast_kernel(float *y, const float *x, const float *b, size_t n,
                                                                   DivMod32 cols, F f) {
    using V = Vec<float, W>;
    uint32_t vecs = (uint32_t)(n / W);
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < vecs; p += gridDim.x * blockDim.x) {
        V xv = load_vec_cs<V>(x, p), bv = load_vec<V>(b, cols.mod(p));
        V out = {};
        if constexpr (ACC) out = load_vec<V>(y, p);
        for (int j = 0; j < W; j++) {
            float r = f(xv[j], bv[j]);
            out[j] = ACC ? out[j] + r : r;
        }
        store_vec<V>(y, p, out);
    }
}

// y (n) = or += f(x (n), b[i % nb]), on the compute stream.
template <class F> void cuda_map_broadcast(float *y, const float *x, const float *b, size_t n, size_t nb, bool accumulate, F f) {
    if (n == 0) return;
    cuda_check_index32(n, "broadcast");
    bool vec = nb % 4 == 0 && cuda_aligned16(y) && cuda_aligned16(x) && cuda_aligned16(b);
    int w = vec ? 4 : 1;
    DivMod32 cols = divmod32((uint32_t)(nb / w));
    unsigned int grid = cuda_grid_for_items(n / w);
    cudaStream_t s = cuda_compute_stream();
    if (vec && accumulate) map_broadcast_kernel<true, 4, F><<<grid, CUDA_BLOCK, 0, s>>>(y, x, b, n, cols, f);
    else if (vec) map_broadcast_kernel<false, 4, F><<<grid, CUDA_BLOCK, 0, s>>>(y, x, b, n, cols, f);
    else if (accumulate) map_broadcast_kernel<true, 1, F><<<grid, CUDA_BLOCK, 0, s>>>(y, x, b, n, cols, f);
    else map_broadcast_kernel<false, 1, F><<<grid, CUDA_BLOCK, 0, s>>>(y, x, b, n, cols, f);
    CUDA_CHECK_LAUNCH();
}

// A strided block copy (concat, slice): for r < rows, c < cols,
//   dst[r * dst_stride + c] = or += src[r * src_stride + c].
// Flat over the rows * cols elements, the row by a multiply-high
// (DivMod32); W = 4 when cols and both strides are multiples of 4 and both
// pointers aligned, so a vector never straddles two rows.
template <bool ACC, int W>
__global__ void __launch_bounds__(CUDA_BLOCK) copy_rows_kernel(float *dst, uint32_t dst_stride, const float *src,
                                                               uint32_t src_stride, uint32_t vecs, DivMod32 cols) {
    using V = Vec<float, W>;
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < vecs; p += gridDim.x * blockDim.x) {
        uint32_t r = cols.div(p), c = p - r * cols.d;   // in vectors
        V v = load_vec<V>(src, (size_t)r * (src_stride / W) + c);
        size_t at = (size_t)r * (dst_stride / W) + c;
        if constexpr (ACC) {
            V d = load_vec<V>(dst, at);
            for (int j = 0; j < W; j++) d[j] += v[j];
            v = d;
        }
        store_vec<V>(dst, at, v);
    }
}

static inline void cuda_copy_rows(float *dst, size_t dst_stride, const float *src, size_t src_stride,
                                  size_t rows, size_t cols, bool accumulate) {
    size_t total = rows * cols;
    if (total == 0) return;
    cuda_check_index32(rows * (dst_stride > src_stride ? dst_stride : src_stride), "copy");
    bool vec = cols % 4 == 0 && dst_stride % 4 == 0 && src_stride % 4 == 0 && cuda_aligned16(dst) && cuda_aligned16(src);
    int w = vec ? 4 : 1;
    uint32_t vecs = (uint32_t)(total / w);
    DivMod32 c = divmod32((uint32_t)(cols / w));
    unsigned int grid = cuda_grid_for_items(vecs);
    cudaStream_t s = cuda_compute_stream();
    uint32_t ds = (uint32_t)dst_stride, ss = (uint32_t)src_stride;
    if (vec && accumulate) copy_rows_kernel<true, 4><<<grid, CUDA_BLOCK, 0, s>>>(dst, ds, src, ss, vecs, c);
    else if (vec) copy_rows_kernel<false, 4><<<grid, CUDA_BLOCK, 0, s>>>(dst, ds, src, ss, vecs, c);
    else if (accumulate) copy_rows_kernel<true, 1><<<grid, CUDA_BLOCK, 0, s>>>(dst, ds, src, ss, vecs, c);
    else copy_rows_kernel<false, 1><<<grid, CUDA_BLOCK, 0, s>>>(dst, ds, src, ss, vecs, c);
    CUDA_CHECK_LAUNCH();
}
