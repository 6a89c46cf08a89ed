// bias_residual.cu: y = x + (fx + bias), a residual around a linear layer
// recorded without its bias; the twin of kernels/cpu/bias_residual.c.
// x, fx [..., C] viewed as (rows, C), bias (C). Forward in 128-bit packs
// with the bias column by a multiply-high (no division per element).
// Backward: dy assigned or added to dx and to dfx through map.cuh (two
// launches in stream order, so x + x adds twice), and summed over rows
// into db with axis.cu's fixed-tree reduction (deterministic).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin
#include "kernels/cuda/axis.cuh"          // defines: cuda_reduce_axis
#include "kernels/cuda/map.cuh"           // defines: cuda_map, Vec, DivMod32

namespace {

// y (n) = x + (fx + b[i % C]), W floats per access; cols is C / W.
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) bias_residual_forward_kernel(float *y, const float *x, const float *fx,
                                                                           const float *b, uint32_t vecs, DivMod32 cols) {
    using V = Vec<float, W>;
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < vecs; p += gridDim.x * blockDim.x) {
        V xv = load_vec_cs<V>(x, p), fv = load_vec_cs<V>(fx, p), bv = load_vec<V>(b, cols.mod(p));
        V out;
        for (int j = 0; j < W; j++) out[j] = xv[j] + (fv[j] + bv[j]);
        store_vec<V>(y, p, out);
    }
}

struct Identity {
    __device__ float operator()(float v) const { return v; }
};

}  // namespace

extern "C" void bias_residual_forward_cuda(Tensor *out) {
    const Tensor *x = out->src[0];
    int C = x->shape[x->ndim - 1];
    size_t n = out->numel;
    if (n == 0) return;
    cuda_check_index32(n, "bias_residual");
    float *y = (float *)out->data;
    const float *xd = (const float *)x->data, *fd = (const float *)out->src[1]->data, *bd = (const float *)out->src[2]->data;
    bool vec = C % 4 == 0 && cuda_aligned16(y) && cuda_aligned16(xd) && cuda_aligned16(fd) && cuda_aligned16(bd);
    int w = vec ? 4 : 1;
    uint32_t vecs = (uint32_t)(n / w);
    DivMod32 cols = divmod32((uint32_t)(C / w));
    unsigned int grid = cuda_grid_for_items(vecs);
    cudaStream_t s = cuda_compute_stream();
    if (vec) bias_residual_forward_kernel<4><<<grid, CUDA_BLOCK, 0, s>>>(y, xd, fd, bd, vecs, cols);
    else bias_residual_forward_kernel<1><<<grid, CUDA_BLOCK, 0, s>>>(y, xd, fd, bd, vecs, cols);
    CUDA_CHECK_LAUNCH();
}

extern "C" void bias_residual_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0x7u);   // every write below assigns or adds itself
    Tensor *x = out->src[0], *fx = out->src[1], *bias = out->src[2];
    int C = x->shape[x->ndim - 1];
    size_t n = out->numel;
    const float *dy[1] = { out->grad };   // (rows, C)
    if (x->grad) cuda_map(x->grad, dy, n, !tensor_grad_assigns(out, 0), Identity{});
    if (fx->grad) cuda_map(fx->grad, dy, n, !tensor_grad_assigns(out, 1), Identity{});
    if (bias->grad)   // db (C) = or += sum_rows dy
        cuda_reduce_axis(bias->grad, out->grad, nullptr, 1, n / C, (size_t)C, 1.0f, !tensor_grad_assigns(out, 2));
}
