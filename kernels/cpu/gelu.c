// gelu.c: the tanh approximation, y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#include <math.h>
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"

#define GELU_SCALE 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_CUBIC 0.044715f

void gelu_forward_cpu(Tensor *out) {
    const float *x = out->src[0]->data;         // (n)
    float *y = out->data;                       // (n)
    ptrdiff_t n = (ptrdiff_t)out->numel;
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t i = 0; i < n; i++) {
        float xi = x[i];
        float u = GELU_SCALE * (xi + GELU_CUBIC * xi * xi * xi);
        y[i] = 0.5f * xi * (1.0f + tanhf(u));
    }
}

void gelu_backward_cpu(Tensor *out) {
    Tensor *src = out->src[0];
    if (!src->grad) return;
    const float *x = src->data, *dy = out->grad;   // (n), (n)
    float *dx = src->grad;                         // (n)
    ptrdiff_t n = (ptrdiff_t)out->numel;
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t i = 0; i < n; i++) {
        float xi = x[i];
        float u = GELU_SCALE * (xi + GELU_CUBIC * xi * xi * xi);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * xi * xi);
        dx[i] += (0.5f * (1.0f + th) + 0.5f * xi * sech2 * du) * dy[i];
    }
}
