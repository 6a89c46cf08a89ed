// gelu.cuh: the tanh form of GELU and its derivative on the device, shared
// by gelu.cu and bias_gelu.cu: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// tanhf, not a fast intrinsic, so results stay within a few ulp of the
// CPU's (kernels/cpu/gelu.h).
#pragma once

#define GELU_SCALE 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_CUBIC 0.044715f

__device__ __forceinline__ float gelu_value(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__device__ __forceinline__ float gelu_slope(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * du;
}
