// gelu.h: the tanh-form GELU and its derivative on 8 floats (gelu.c and
// bias_gelu.c), and the plain scalar versions their reference twins use.
//   gelu(x)  = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
#pragma once
#include <math.h>
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_tanh

#define GELU_SCALE 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_CUBIC 0.044715f

V8_INLINE f32x8 gelu_v8(f32x8 x) {
    f32x8 u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    return 0.5f * x * (1.0f + v8_tanh(u));
}

V8_INLINE f32x8 gelu_grad_v8(f32x8 x) {
    f32x8 u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    f32x8 th = v8_tanh(u);
    f32x8 sech2 = 1.0f - th * th;
    f32x8 du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * du;
}

static inline float gelu_ref(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static inline float gelu_grad_ref(float x) {
    float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * du;
}
