// sin.c: y = sin(x); dx += cos(x) dy.
#include <math.h>
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"

void sin_forward_cpu(Tensor *out) {
    const float *x = out->src[0]->data;         // (n)
    float *y = out->data;                       // (n)
    ptrdiff_t n = (ptrdiff_t)out->numel;
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t i = 0; i < n; i++) y[i] = sinf(x[i]);
}

void sin_backward_cpu(Tensor *out) {
    Tensor *src = out->src[0];
    if (!src->grad) return;
    const float *x = src->data, *dy = out->grad;   // (n), (n)
    float *dx = src->grad;                         // (n)
    ptrdiff_t n = (ptrdiff_t)out->numel;
    int assign = tensor_grad_assigns(out, 0);
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t i = 0; i < n; i++) dx[i] = (assign ? 0.0f : dx[i]) + cosf(x[i]) * dy[i];
}
