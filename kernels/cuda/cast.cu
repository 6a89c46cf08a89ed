// cast.cu: storage dtype between f32 and bf16; the twin of kernels/cpu/cast.c.
// The conversion is tensor.h's f32_to_bf16 bit for bit (round to nearest
// even, a NaN kept a quiet NaN with its sign and top payload bits), written
// out here rather than __float2bfloat16_rn, whose NaN result is canonical:
// the CPU and the GPU then store the same bf16 bits for every input.
// Gradients are fp32 on both sides, so backward passes them through.
//
// Four elements per access: 16 bytes of fp32 against 8 bytes of bf16, in a
// grid-stride loop (no division per element); W = 1 when a pointer is not
// aligned for that.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include <cstdint>
#include <cuda_bf16.h>
#include "kernels/cuda/bf16.cuh"          // defines: bf16_round
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK, CUDA_CHECK_LAUNCH
#include "kernels/cuda/map.cuh"           // defines: cuda_map
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec_cs, store_vec

namespace {

template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) f32_to_bf16_kernel(__nv_bfloat16 *y, const float *x, size_t n) {
    size_t vecs = n / W;
    CUDA_GRID_STRIDE(p, vecs) {
        Vec<float, W> in = load_vec_cs<Vec<float, W>>(x, p);
        Vec<__nv_bfloat16, W> out;
        for (int j = 0; j < W; j++) out[j] = bf16_round(in[j]);
        store_vec<Vec<__nv_bfloat16, W>>(y, p, out);
    }
    for (size_t i = vecs * W + threadIdx.x; blockIdx.x == 0 && i < n; i += blockDim.x) y[i] = bf16_round(x[i]);
}

template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) bf16_to_f32_kernel(float *y, const __nv_bfloat16 *x, size_t n) {
    size_t vecs = n / W;
    CUDA_GRID_STRIDE(p, vecs) {
        Vec<__nv_bfloat16, W> in = load_vec_cs<Vec<__nv_bfloat16, W>>(x, p);
        Vec<float, W> out;
        for (int j = 0; j < W; j++) out[j] = __bfloat162float(in[j]);   // exact: bf16 is a truncated f32
        store_vec<Vec<float, W>>(y, p, out);
    }
    for (size_t i = vecs * W + threadIdx.x; blockIdx.x == 0 && i < n; i += blockDim.x) y[i] = __bfloat162float(x[i]);
}

struct Identity {
    __device__ float operator()(float x) const { return x; }
};

}  // namespace

extern "C" void cast_forward_cuda(Tensor *out) {
    const Tensor *src = out->src[0];
    size_t n = out->numel;
    cudaStream_t s = cuda_compute_stream();
    if (src->dtype == out->dtype) {   // a copy (tensor.h's dtype_size has C linkage only; the two sizes are known)
        size_t elem = out->dtype == DT_BF16 ? sizeof(__nv_bfloat16) : sizeof(float);
        CUDA_CHECK(cudaMemcpyAsync(out->data, src->data, n * elem, cudaMemcpyDeviceToDevice, s));
        return;
    }
    bool aligned = cuda_aligned16(out->data) && cuda_aligned16(src->data);
    unsigned int grid = cuda_grid_for_items(aligned ? n / 4 : n);
    if (out->dtype == DT_BF16) {
        __nv_bfloat16 *y = (__nv_bfloat16 *)out->data;   // (n)
        const float *x = (const float *)src->data;       // (n)
        if (aligned) f32_to_bf16_kernel<4><<<grid, CUDA_BLOCK, 0, s>>>(y, x, n);
        else f32_to_bf16_kernel<1><<<grid, CUDA_BLOCK, 0, s>>>(y, x, n);
    } else {
        float *y = (float *)out->data;                             // (n)
        const __nv_bfloat16 *x = (const __nv_bfloat16 *)src->data; // (n)
        if (aligned) bf16_to_f32_kernel<4><<<grid, CUDA_BLOCK, 0, s>>>(y, x, n);
        else bf16_to_f32_kernel<1><<<grid, CUDA_BLOCK, 0, s>>>(y, x, n);
    }
    CUDA_CHECK_LAUNCH();
}

extern "C" void cast_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    float *dx = out->src[0]->grad;   // (n)
    if (!dx) return;
    const float *dy[1] = { out->grad };
    cuda_map(dx, dy, out->numel, true, Identity{});
}
