// bf16.cuh: fp32 -> bf16 rounding with the CPU's bits (autograd/tensor.h's
// f32_to_bf16): round to nearest even, and a NaN kept a quiet NaN with its
// sign and top payload bits, where __float2bfloat16_rn returns the
// canonical NaN. Used wherever a CUDA kernel rounds to bf16, so that the
// CPU and the GPU store the same bits.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>

__device__ __forceinline__ __nv_bfloat16 bf16_round(float f) {
    uint32_t u = __float_as_uint(f);
    __nv_bfloat16_raw raw;
    if ((u & 0x7fffffffu) > 0x7f800000u) raw.x = (uint16_t)((u >> 16) | 0x40);
    else raw.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return __nv_bfloat16(raw);
}
