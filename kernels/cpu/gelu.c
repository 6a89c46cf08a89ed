// gelu.c: y = gelu(x), the tanh form computed through sigmoid(2u) (gelu.h),
// 8 floats at a time with vec.h's exp; gelu_*_ref are the plain loops over
// libm's expf it is checked against (tests/test_fused.c).
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/gelu.h"   // defines: gelu_v8, gelu_grad_v8, gelu_ref, gelu_grad_ref

// Floats per parallel task: a multiple of 8, so only the last one has a tail.
#define GELU_SPAN 4096

VEC_CLONES static void gelu_span(float *y, const float *x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t k = n - i < 8 ? n - i : 8;
        v8_store_k(y + i, gelu_v8(v8_load_k(x + i, k)), k);
    }
}

VEC_CLONES static void gelu_grad_span(float *dx, const float *x, const float *dy, ptrdiff_t n, int assign) {
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t k = n - i < 8 ? n - i : 8;
        v8_put_k(dx + i, gelu_grad_v8(v8_load_k(x + i, k)) * v8_load_k(dy + i, k), k, assign);
    }
}

void gelu_forward_cpu(Tensor *out) {
    const float *x = out->src[0]->data;         // (n)
    float *y = out->data;                       // (n)
    ptrdiff_t n = (ptrdiff_t)out->numel, spans = (n + GELU_SPAN - 1) / GELU_SPAN;
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t s = 0; s < spans; s++) {
        ptrdiff_t i = s * GELU_SPAN;
        gelu_span(y + i, x + i, n - i < GELU_SPAN ? n - i : GELU_SPAN);
    }
}

void gelu_backward_cpu(Tensor *out) {
    Tensor *src = out->src[0];
    if (!src->grad) return;
    const float *x = src->data, *dy = out->grad;   // (n), (n)
    float *dx = src->grad;                         // (n)
    ptrdiff_t n = (ptrdiff_t)out->numel, spans = (n + GELU_SPAN - 1) / GELU_SPAN;
    int assign = tensor_grad_assigns(out, 0);
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t s = 0; s < spans; s++) {
        ptrdiff_t i = s * GELU_SPAN;
        gelu_grad_span(dx + i, x + i, dy + i, n - i < GELU_SPAN ? n - i : GELU_SPAN, assign);
    }
}

void gelu_forward_ref(Tensor *out) {
    const float *x = out->src[0]->data;
    float *y = out->data;
    for (size_t i = 0; i < out->numel; i++) y[i] = gelu_ref(x[i]);
}

void gelu_backward_ref(Tensor *out) {
    Tensor *src = out->src[0];
    if (!src->grad) return;
    const float *x = src->data, *dy = out->grad;
    int assign = tensor_grad_assigns(out, 0);
    for (size_t i = 0; i < out->numel; i++) src->grad[i] = (assign ? 0.0f : src->grad[i]) + gelu_grad_ref(x[i]) * dy[i];
}
