// cast.cu: storage dtype between f32 and bf16; the twin of kernels/cpu/cast.c.
// The conversion is tensor.h's f32_to_bf16 bit for bit (round to nearest
// even, a NaN kept a quiet NaN with its sign and top payload bits), written
// out here rather than __float2bfloat16_rn, whose NaN result is canonical:
// the CPU and the GPU then store the same bf16 bits for every input.
// Gradients are fp32 on both sides, so backward passes them through.
#include "kernels/cuda/cuda_ops.h"
#include <cstdint>
#include <cuda_bf16.h>
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK, CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

__device__ inline __nv_bfloat16 to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    __nv_bfloat16_raw raw;
    if ((u & 0x7fffffffu) > 0x7f800000u) raw.x = (uint16_t)((u >> 16) | 0x40);
    else raw.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return __nv_bfloat16(raw);
}

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *y, const float *x, size_t n) {
    CUDA_GRID_STRIDE(i, n) y[i] = to_bf16(x[i]);
}

__global__ void bf16_to_f32_kernel(float *y, const __nv_bfloat16 *x, size_t n) {
    CUDA_GRID_STRIDE(i, n) y[i] = __bfloat162float(x[i]);   // exact: bf16 is a truncated f32
}

__global__ void accumulate_kernel(float *dx, const float *dy, size_t n) {
    CUDA_GRID_STRIDE(i, n) dx[i] += dy[i];
}

}  // namespace

extern "C" void cast_forward_cuda(Tensor *out) {
    const Tensor *src = out->src[0];
    size_t n = out->numel;
    if (src->dtype == out->dtype) {   // a copy (tensor.h's dtype_size has C linkage only; the two sizes are known)
        size_t elem = out->dtype == DT_BF16 ? sizeof(__nv_bfloat16) : sizeof(float);
        CUDA_CHECK(cudaMemcpyAsync(out->data, src->data, n * elem, cudaMemcpyDeviceToDevice, cuda_compute_stream()));
        return;
    }
    if (out->dtype == DT_BF16)
        f32_to_bf16_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            (__nv_bfloat16 *)out->data, (const float *)src->data, n);
    else
        bf16_to_f32_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            (float *)out->data, (const __nv_bfloat16 *)src->data, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cast_backward_cuda(Tensor *out) {
    float *dx = out->src[0]->grad;   // (n)
    if (!dx) return;
    size_t n = out->numel;
    accumulate_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_compute_stream()>>>(dx, out->grad, n);
    CUDA_CHECK_LAUNCH();
}
