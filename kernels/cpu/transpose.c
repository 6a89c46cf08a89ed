// transpose.c: swap two axes a0 < a1, materialised. x is viewed as
// (A, n0, B, n1, C) with A = prod(shape[:a0]), B = prod(shape[a0+1:a1]),
// C = prod(shape[a1+1:]); the output is (A, n1, B, n0, C). It is a
// permutation, so in backward every dx element receives exactly one dy
// element and the threads never share a write.
#include "kernels/cpu/cpu_ops.h"

// Below this many floats a parallel region costs more than it saves.
#define TRANSPOSE_PAR_MIN 16384

typedef struct { ptrdiff_t A, n0, B, n1, C; } TransposeDims;

static TransposeDims transpose_dims(const Tensor *out) {
    const Tensor *x = out->src[0];
    int a0 = out->iattr[0], a1 = out->iattr[1];   // a0 <= a1 (shape rule)
    TransposeDims t = { 1, x->shape[a0], 1, x->shape[a1], 1 };
    for (int d = 0; d < a0; d++) t.A *= x->shape[d];
    for (int d = a0 + 1; d < a1; d++) t.B *= x->shape[d];
    for (int d = a1 + 1; d < x->ndim; d++) t.C *= x->shape[d];
    if (a0 == a1) t.n1 = 1;                       // swapping an axis with itself: a copy
    return t;
}

// dst (A, n1, B, n0, C) = or += src (A, n0, B, n1, C) transposed.
static void transpose_copy(const float *src, float *dst, TransposeDims t, int accumulate, int parallel) {
    #pragma omp parallel for collapse(2) if (parallel)
    for (ptrdiff_t a = 0; a < t.A; a++)
        for (ptrdiff_t j = 0; j < t.n1; j++)
            for (ptrdiff_t b = 0; b < t.B; b++)
                for (ptrdiff_t i = 0; i < t.n0; i++) {
                    const float *s = src + (((a * t.n0 + i) * t.B + b) * t.n1 + j) * t.C;
                    float *d = dst + (((a * t.n1 + j) * t.B + b) * t.n0 + i) * t.C;
                    if (accumulate) for (ptrdiff_t c = 0; c < t.C; c++) d[c] += s[c];
                    else for (ptrdiff_t c = 0; c < t.C; c++) d[c] = s[c];
                }
}

void transpose_forward_cpu(Tensor *out) {
    transpose_copy(out->src[0]->data, out->data, transpose_dims(out), 0, out->numel >= TRANSPOSE_PAR_MIN);
}

void transpose_backward_cpu(Tensor *out) {
    Tensor *x = out->src[0];
    if (!x->grad) return;
    // dy is (A, n1, B, n0, C); swapping n0 and n1 back gives dx's layout.
    TransposeDims t = transpose_dims(out), back = { t.A, t.n1, t.B, t.n0, t.C };
    transpose_copy(out->grad, x->grad, back, !tensor_grad_assigns(out, 0), out->numel >= TRANSPOSE_PAR_MIN);
}
