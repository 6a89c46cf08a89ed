// gelu.h: the tanh-form GELU (PyTorch's approximate="tanh") and its
// derivative on 8 floats (gelu.c and bias_gelu.c), and the plain scalar
// versions their reference twins use.
//   gelu(x)  = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
#pragma once
#include <math.h>
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_exp

#define GELU_SCALE 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_CUBIC 0.044715f

// On 8 lanes, through 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)):
//   gelu(x)  = x / (1 + e),  e = exp(-2u)
//   gelu'(x) = s + 2 x s (1 - s) u',  s = 1 / (1 + e), s (1 - s) = e s^2
// one exp and one division where tanh took a polynomial, an exp and a
// division, and no cancellation in 1 + tanh(u) for negative x (the tanh
// form rounds to 0 from x < -5; this one keeps gelu's tiny tail). Within
// a few ulps of the tanh form's exact value; tests/test_fused.c measures it.
V8_INLINE f32x8 gelu_v8(f32x8 x) {
    f32x8 u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    return x / (1.0f + v8_exp(-2.0f * u));
}

V8_INLINE f32x8 gelu_grad_v8(f32x8 x) {
    f32x8 x2 = x * x;
    f32x8 u = GELU_SCALE * (x + GELU_CUBIC * x2 * x);
    f32x8 e = v8_exp(-2.0f * u);
    f32x8 s = 1.0f / (1.0f + e);
    f32x8 du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x2);
    return s + 2.0f * x * du * (e * s) * s;
}

// The plain scalar twins, the same sigmoid form through libm's expf (the
// tanh form in fp32 loses ~1e-4 of gelu' to 1 - tanh(u)^2 cancelling, more
// than the kernels' own error).
static inline float gelu_ref(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    return x / (1.0f + expf(-2.0f * u));
}

static inline float gelu_grad_ref(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    float e = expf(-2.0f * u), s = 1.0f / (1.0f + e);
    float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
    return s + 2.0f * x * du * (e * s) * s;
}
