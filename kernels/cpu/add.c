// add.c: y = a + b, b of a's shape or of a's trailing dims (broadcast over
// a's leading dims). b's gradient sums dy over the broadcast rows with the
// cache-blocked column sum (colsum.c), so it does not depend on the thread
// count.
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_*, VEC_CLONES

// Floats per parallel task in the elementwise loops (a multiple of 8).
#define ADD_SPAN 4096

// y (n) = a (n) + b (n)
VEC_CLONES static void add_span(float *y, const float *a, const float *b, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t k = n - i < 8 ? n - i : 8;
        v8_store_k(y + i, v8_load_k(a + i, k) + v8_load_k(b + i, k), k);
    }
}

// dst (n) = src (n) (assign) or += src
VEC_CLONES static void put_span(float *dst, const float *src, ptrdiff_t n, int assign) {
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t k = n - i < 8 ? n - i : 8;
        v8_put_k(dst + i, v8_load_k(src + i, k), k, assign);
    }
}

void add_forward_cpu(Tensor *out) {
    const float *a = out->src[0]->data;         // (rows, nb)
    const float *b = out->src[1]->data;         // (nb)
    float *y = out->data;                       // (rows, nb)
    ptrdiff_t n = (ptrdiff_t)out->numel, nb = (ptrdiff_t)out->src[1]->numel, rows = n / nb;
    if (nb == n) {   // same shapes: spans, not one row
        ptrdiff_t spans = (n + ADD_SPAN - 1) / ADD_SPAN;
        #pragma omp parallel for if (n >= 16384)
        for (ptrdiff_t s = 0; s < spans; s++) {
            ptrdiff_t i = s * ADD_SPAN;
            add_span(y + i, a + i, b + i, n - i < ADD_SPAN ? n - i : ADD_SPAN);
        }
        return;
    }
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) add_span(y + r * nb, a + r * nb, b, nb);
}

static void put(float *dst, const float *src, ptrdiff_t n, int assign) {
    ptrdiff_t spans = (n + ADD_SPAN - 1) / ADD_SPAN;
    #pragma omp parallel for if (n >= 65536)
    for (ptrdiff_t s = 0; s < spans; s++) {
        ptrdiff_t i = s * ADD_SPAN;
        put_span(dst + i, src + i, n - i < ADD_SPAN ? n - i : ADD_SPAN, assign);
    }
}

void add_backward_cpu(Tensor *out) {
    Tensor *ta = out->src[0], *tb = out->src[1];
    const float *dy = out->grad;                // (rows, nb)
    ptrdiff_t n = (ptrdiff_t)out->numel, nb = (ptrdiff_t)tb->numel;
    // a and b may be one tensor (x + x): the two updates run one after the
    // other, the first assigning (tensor_grad_assigns), the second adding.
    if (ta->grad) put(ta->grad, dy, n, tensor_grad_assigns(out, 0));
    if (!tb->grad) return;
    if (nb == n) put(tb->grad, dy, n, tensor_grad_assigns(out, 1));
    else cpu_colsum(tb->grad, dy, n / nb, nb, tensor_grad_assigns(out, 1));   // db (nb) (+)= sum_rows dy
}
