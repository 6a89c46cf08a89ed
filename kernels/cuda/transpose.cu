// transpose.cu: swap two axes a0 <= a1, materialised; the twin of
// kernels/cpu/transpose.c. x is viewed as (A, n0, B, n1, C) with
// A = prod(shape[:a0]), B = prod(shape[a0+1:a1]), C = prod(shape[a1+1:]);
// the output is (A, n1, B, n0, C). A permutation: in backward every dx
// element receives exactly one dy element, so threads never share a write.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH
#include "kernels/cuda/vec.cuh"           // defines: Vec, DivMod32, cuda_grid_for_items

namespace {

struct TransposeDims { size_t A, n0, B, n1, C; };

TransposeDims transpose_dims(const Tensor *out) {
    const Tensor *x = out->src[0];
    int a0 = out->iattr[0], a1 = out->iattr[1];   // a0 <= a1 (shape rule)
    TransposeDims t = { 1, (size_t)x->shape[a0], 1, (size_t)x->shape[a1], 1 };
    for (int d = 0; d < a0; d++) t.A *= (size_t)x->shape[d];
    for (int d = a0 + 1; d < a1; d++) t.B *= (size_t)x->shape[d];
    for (int d = a1 + 1; d < x->ndim; d++) t.C *= (size_t)x->shape[d];
    if (a0 == a1) t.n1 = 1;                       // swapping an axis with itself: a copy
    return t;
}

// The index arithmetic of one launch: dst's element position -> (c, i, b,
// j, a) by multiply-highs (DivMod32), in units of W-float vectors along C.
struct TransposeMap {
    DivMod32 C, n0, B, n1;
    uint32_t vecs;
};

// dst (A, n1, B, n0, C) = or += src (A, n0, B, n1, C) transposed; one
// thread per dst vector (dst writes coalesced, src reads gathered); W = 4
// when C is a multiple of 4, so a vector stays inside one run of C.
template <bool ACC, int W>
__global__ void __launch_bounds__(CUDA_BLOCK) transpose_kernel(float *dst, const float *src, TransposeMap m) {
    using Vf = Vec<float, W>;
    for (uint32_t q = blockIdx.x * blockDim.x + threadIdx.x; q < m.vecs; q += gridDim.x * blockDim.x) {
        uint32_t r = m.C.div(q), c = q - r * m.C.d;
        uint32_t r2 = m.n0.div(r), i = r - r2 * m.n0.d;
        uint32_t r3 = m.B.div(r2), b = r2 - r3 * m.B.d;
        uint32_t a = m.n1.div(r3), j = r3 - a * m.n1.d;
        Vf v = load_vec<Vf>(src, ((((size_t)a * m.n0.d + i) * m.B.d + b) * m.n1.d + j) * m.C.d + c);
        if constexpr (ACC) {
            Vf d = load_vec<Vf>(dst, q);
            for (int k = 0; k < W; k++) d[k] += v[k];
            v = d;
        }
        store_vec<Vf>(dst, q, v);
    }
}

void transpose_launch(float *dst, const float *src, TransposeDims t, size_t total, bool accumulate) {
    cuda_check_index32(total, "transpose");
    int w = t.C % 4 == 0 && cuda_aligned16(dst) && cuda_aligned16(src) ? 4 : 1;
    TransposeMap m = { divmod32((uint32_t)(t.C / w)), divmod32((uint32_t)t.n0), divmod32((uint32_t)t.B),
                       divmod32((uint32_t)t.n1), (uint32_t)(total / w) };
    unsigned int grid = cuda_grid_for_items(m.vecs);
    cudaStream_t s = cuda_compute_stream();
    if (w == 4 && accumulate) transpose_kernel<true, 4><<<grid, CUDA_BLOCK, 0, s>>>(dst, src, m);
    else if (w == 4) transpose_kernel<false, 4><<<grid, CUDA_BLOCK, 0, s>>>(dst, src, m);
    else if (accumulate) transpose_kernel<true, 1><<<grid, CUDA_BLOCK, 0, s>>>(dst, src, m);
    else transpose_kernel<false, 1><<<grid, CUDA_BLOCK, 0, s>>>(dst, src, m);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

extern "C" void transpose_forward_cuda(Tensor *out) {
    transpose_launch((float *)out->data, (const float *)out->src[0]->data, transpose_dims(out), out->numel, false);
}

extern "C" void transpose_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *x = out->src[0];
    if (!x->grad) return;
    // dy is (A, n1, B, n0, C); swapping n0 and n1 back gives dx's layout.
    TransposeDims t = transpose_dims(out), back = { t.A, t.n1, t.B, t.n0, t.C };
    transpose_launch(x->grad, out->grad, back, out->numel, true);
}
