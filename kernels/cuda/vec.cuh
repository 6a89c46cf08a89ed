// vec.cuh: 128-bit loads and stores (llm.c's Packed128), and division by a
// divisor fixed at launch without a division instruction per element.
//
// A Vec<T, W> is W consecutive T read or written in one access; Pack<T> is
// the 16-byte one (4 floats, 8 bf16): one ld.global.v4 / st.global.v4
// instead of four scalar accesses, which is what lets a memory-bound
// kernel reach the bus's bandwidth. Its address must be 16-byte aligned.
// Activations start on 64-byte boundaries of their arena, but a parameter's
// gradient is packed into the flat gradient buffer at any float offset, so
// every launch checks its pointers (cuda_aligned16) and row lengths, and
// runs with W = 1 when they do not allow packs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_BLOCK, CUDA_GRID_STRIDE

// The simulator checks every vector access's alignment (kernels/cuda/sim).
#ifndef CUDA_SIM_CHECK_ALIGNED
#define CUDA_SIM_CHECK_ALIGNED(p, bytes) ((void)0)
#endif

template <class T, int W> struct alignas(sizeof(T) * W) Vec {
    static constexpr int width = W;
    T v[W];
    __device__ T &operator[](int i) { return v[i]; }
    __device__ const T &operator[](int i) const { return v[i]; }
};
template <class T> using Pack = Vec<T, (int)(16 / sizeof(T))>;

// Vector i of the array at p: elements [i W, (i + 1) W).
template <class V, class T> __device__ __forceinline__ V load_vec(const T *p, size_t i) {
    const V *q = reinterpret_cast<const V *>(p) + i;
    CUDA_SIM_CHECK_ALIGNED(q, sizeof(V));
    return *q;
}
template <class V, class T> __device__ __forceinline__ void store_vec(T *p, size_t i, const V &v) {
    V *q = reinterpret_cast<V *>(p) + i;
    CUDA_SIM_CHECK_ALIGNED(q, sizeof(V));
    *q = v;
}
// The same for a value read once (an upstream gradient, an input consumed
// by this kernel alone): a streaming load that does not keep it in L1/L2
// at the expense of what will be read again (llm.c's load128cs).
template <class V, class T> __device__ __forceinline__ V load_vec_cs(const T *p, size_t i) {
    const V *q = reinterpret_cast<const V *>(p) + i;
    CUDA_SIM_CHECK_ALIGNED(q, sizeof(V));
    if constexpr (sizeof(V) == 16) {
        int4 raw = __ldcs(reinterpret_cast<const int4 *>(q));
        V r;
        memcpy(&r, &raw, sizeof r);
        return r;
    } else {
        return *q;
    }
}

static inline bool cuda_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

// Blocks for a grid-stride loop over `items` (vectors, rows...), CUDA_BLOCK
// threads each. Capped: beyond ~30 blocks per SM of an H100 more blocks
// only add scheduling; the grid-stride loop covers the rest.
static inline unsigned int cuda_grid_for_items(size_t items) {
    size_t blocks = (items + CUDA_BLOCK - 1) / CUDA_BLOCK;
    if (blocks == 0) blocks = 1;
    if (blocks > 4096) blocks = 4096;
    return (unsigned int)blocks;
}

// ---- division by a launch-time constant ------------------------------------------------
// n / d and n % d for 32-bit n < 2^31 with one multiply-high and a shift
// (Granlund and Montgomery; PyTorch's IntDivider): a 64-bit `/` or `%` is
// a ~70-instruction software routine on a GPU, this is three instructions.
// Kernels that index with it check on the host that their element count
// fits (cuda_check_index32).
struct DivMod32 {
    uint32_t d, mul, shift;
    __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, mul) + n) >> shift; }
    __device__ __forceinline__ uint32_t mod(uint32_t n) const { return n - div(n) * d; }
};

static inline DivMod32 divmod32(uint32_t d) {
    DivMod32 r;
    r.d = d;
    r.shift = 0;
    while (r.shift < 32 && (1ull << r.shift) < d) r.shift++;
    r.mul = (uint32_t)(((1ull << 32) * ((1ull << r.shift) - d)) / d + 1);
    return r;
}

// The 32-bit indexing above needs fewer than 2^31 elements per tensor.
static inline void cuda_check_index32(size_t n, const char *what) {
    if (n < (1ull << 31)) return;
    fprintf(stderr, "distil: error: CUDA %s: %zu elements; the CUDA kernels index a tensor in 32 bits "
            "(fewer than 2^31 elements): lower train.micro_batch\n", what, n);
    exit(2);
}
