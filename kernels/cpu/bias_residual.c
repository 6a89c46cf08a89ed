// bias_residual.c: y = x + (fx + bias), a residual connection around a
// linear layer whose bias add is fused into it: one pass instead of a bias
// pass before the matrix product and an add after it. Backward sends dy to
// x and fx unchanged and sums it over rows into the bias, all in one pass,
// column block by column block (deterministic for any thread count).
// *_ref: the plain twin.
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_*, VEC_CLONES

VEC_CLONES static void bias_residual_row(float *y, const float *x, const float *fx, const float *b, ptrdiff_t C) {
    for (ptrdiff_t c = 0; c < C; c += 8) {
        ptrdiff_t k = C - c < 8 ? C - c : 8;
        v8_store_k(y + c, v8_load_k(x + c, k) + (v8_load_k(fx + c, k) + v8_load_k(b + c, k)), k);
    }
}

void bias_residual_forward_cpu(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data, *fx = out->src[1]->data;   // (rows, C), (rows, C)
    const float *b = out->src[2]->data;                   // (C)
    float *y = out->data;                                 // (rows, C)
    ptrdiff_t C = tx->shape[tx->ndim - 1], rows = (ptrdiff_t)tx->numel / C;
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) bias_residual_row(y + r * C, x + r * C, fx + r * C, b, C);
}

// Columns [c0, c0 + w) of every row: dx (+)= dy and dfx (+)= dy for those
// that are non-NULL, db (+)= the column sums; set[i]: src[i] is assigned
// (the assign/accumulate contract). dx and dfx may be one buffer (x + x):
// dx is written first, so the second write adds.
VEC_CLONES static void bias_residual_grad_block(float *dx, float *dfx, float *db, const float *dy, ptrdiff_t rows,
                                                ptrdiff_t C, ptrdiff_t c0, ptrdiff_t w, const int *set) {
    f32x8 acc[BIAS_BLOCK / 8];
    for (ptrdiff_t j = 0; j < w; j += 8) acc[j / 8] = v8_set1(0.0f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        ptrdiff_t at = r * C + c0;
        for (ptrdiff_t j = 0; j < w; j += 8) {
            ptrdiff_t k = w - j < 8 ? w - j : 8;
            f32x8 g = v8_load_k(dy + at + j, k);
            acc[j / 8] += g;
            if (dx) v8_put_k(dx + at + j, g, k, set[0]);
            if (dfx) v8_put_k(dfx + at + j, g, k, set[1]);
        }
    }
    for (ptrdiff_t j = 0; j < w; j += 8) v8_put_k(db + c0 + j, acc[j / 8], w - j < 8 ? w - j : 8, set[2]);
}

// n floats, when the bias takes no gradient.
VEC_CLONES static void bias_residual_grad_span(float *dx, float *dfx, const float *dy, ptrdiff_t n, const int *set) {
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t k = n - i < 8 ? n - i : 8;
        f32x8 g = v8_load_k(dy + i, k);
        if (dx) v8_put_k(dx + i, g, k, set[0]);
        if (dfx) v8_put_k(dfx + i, g, k, set[1]);
    }
}

void bias_residual_backward_cpu(Tensor *out) {
    Tensor *tx = out->src[0], *tfx = out->src[1], *tb = out->src[2];
    const float *dy = out->grad;                          // (rows, C)
    float *dx = tx->grad, *dfx = tfx->grad, *db = tb->grad;   // (rows, C), (rows, C), (C), each or NULL
    ptrdiff_t C = tx->shape[tx->ndim - 1], rows = (ptrdiff_t)tx->numel / C;
    int set[3] = { tensor_grad_assigns(out, 0), tensor_grad_assigns(out, 1), tensor_grad_assigns(out, 2) };
    if (db) {
        ptrdiff_t blocks = (C + BIAS_BLOCK - 1) / BIAS_BLOCK;
        #pragma omp parallel for if (out->numel >= 16384)
        for (ptrdiff_t blk = 0; blk < blocks; blk++) {
            ptrdiff_t c0 = blk * BIAS_BLOCK;
            bias_residual_grad_block(dx, dfx, db, dy, rows, C, c0, C - c0 < BIAS_BLOCK ? C - c0 : BIAS_BLOCK, set);
        }
    } else if (dx || dfx) {
        #pragma omp parallel for if (out->numel >= 16384)
        for (ptrdiff_t r = 0; r < rows; r++)
            bias_residual_grad_span(dx ? dx + r * C : NULL, dfx ? dfx + r * C : NULL, dy + r * C, C, set);
    }
}

void bias_residual_forward_ref(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data, *fx = out->src[1]->data, *b = out->src[2]->data;
    float *y = out->data;
    size_t C = (size_t)tx->shape[tx->ndim - 1];
    for (size_t i = 0; i < tx->numel; i++) y[i] = x[i] + (fx[i] + b[i % C]);
}

void bias_residual_backward_ref(Tensor *out) {
    Tensor *tx = out->src[0], *tfx = out->src[1], *tb = out->src[2];
    const float *dy = out->grad;
    size_t C = (size_t)tx->shape[tx->ndim - 1];
    if (tb->grad && tensor_grad_assigns(out, 2))
        for (size_t c = 0; c < C; c++) tb->grad[c] = 0.0f;
    for (size_t i = 0; i < tx->numel; i++) {
        if (tx->grad) tx->grad[i] = (tensor_grad_assigns(out, 0) ? 0.0f : tx->grad[i]) + dy[i];
        if (tfx->grad) tfx->grad[i] = (tensor_grad_assigns(out, 1) ? 0.0f : tfx->grad[i]) + dy[i];
        if (tb->grad) tb->grad[i % C] += dy[i];
    }
}
