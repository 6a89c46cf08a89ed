// bias_gelu.c: y = gelu(x + bias), the bias add of a linear layer fused into
// its GELU: one pass over the product instead of a bias pass before the
// matrix product and a GELU pass after it. Backward computes
// dz = gelu'(x + bias) dy once and sends it to both x and the bias; the
// bias's sum over rows is taken in the same pass, column block by column
// block (BIAS_BLOCK columns of accumulators held while the rows stream past),
// so it is deterministic for any thread count. *_ref: the plain twin.
// Under train.precision bf16 y may be stored bf16 (plan.h): the same fp32
// values, rounded once as they are stored; backward reads x, fp32.
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/gelu.h"   // defines: gelu_v8, gelu_grad_v8, gelu_ref, gelu_grad_ref

// y16 non-NULL: the row goes there as bf16 instead of to y.
VEC_CLONES static void bias_gelu_row(float *y, uint16_t *y16, const float *x, const float *b, ptrdiff_t C) {
    for (ptrdiff_t c = 0; c < C; c += 8) {
        ptrdiff_t k = C - c < 8 ? C - c : 8;
        f32x8 v = gelu_v8(v8_load_k(x + c, k) + v8_load_k(b + c, k));
        if (y16) v8_store_bf16_k(y16 + c, v, k);
        else v8_store_k(y + c, v, k);
    }
}

void bias_gelu_forward_cpu(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data;                  // (rows, C)
    const float *b = out->src[1]->data;         // (C)
    int bf16 = out->dtype == DT_BF16;
    float *y = bf16 ? NULL : out->data;         // (rows, C) fp32...
    uint16_t *y16 = bf16 ? out->data : NULL;    // ...or bf16
    ptrdiff_t C = tx->shape[tx->ndim - 1], rows = (ptrdiff_t)tx->numel / C;
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) bias_gelu_row(y ? y + r * C : NULL, y16 ? y16 + r * C : NULL, x + r * C, b, C);
}

// Columns [c0, c0 + w) of every row: dx (+)= dz (when dx), db (+)= sum_rows dz
// (= where set_dx, set_db: the assign/accumulate contract).
VEC_CLONES static void bias_gelu_grad_block(float *dx, float *db, const float *x, const float *b, const float *dy,
                                            ptrdiff_t rows, ptrdiff_t C, ptrdiff_t c0, ptrdiff_t w, int set_dx, int set_db) {
    f32x8 acc[BIAS_BLOCK / 8], bias[BIAS_BLOCK / 8];
    for (ptrdiff_t j = 0; j < w; j += 8) {
        acc[j / 8] = v8_set1(0.0f);
        bias[j / 8] = v8_load_k(b + c0 + j, w - j < 8 ? w - j : 8);
    }
    for (ptrdiff_t r = 0; r < rows; r++) {
        ptrdiff_t at = r * C + c0;
        for (ptrdiff_t j = 0; j < w; j += 8) {
            ptrdiff_t k = w - j < 8 ? w - j : 8;
            f32x8 dz = gelu_grad_v8(v8_load_k(x + at + j, k) + bias[j / 8]) * v8_load_k(dy + at + j, k);
            acc[j / 8] += dz;
            if (dx) v8_put_k(dx + at + j, dz, k, set_dx);
        }
    }
    for (ptrdiff_t j = 0; j < w; j += 8) v8_put_k(db + c0 + j, acc[j / 8], w - j < 8 ? w - j : 8, set_db);
}

// Every column of a row, when the bias takes no gradient.
VEC_CLONES static void bias_gelu_grad_row(float *dx, const float *x, const float *b, const float *dy, ptrdiff_t C,
                                          int set_dx) {
    for (ptrdiff_t c = 0; c < C; c += 8) {
        ptrdiff_t k = C - c < 8 ? C - c : 8;
        f32x8 dz = gelu_grad_v8(v8_load_k(x + c, k) + v8_load_k(b + c, k)) * v8_load_k(dy + c, k);
        v8_put_k(dx + c, dz, k, set_dx);
    }
}

void bias_gelu_backward_cpu(Tensor *out) {
    Tensor *tx = out->src[0], *tb = out->src[1];
    const float *x = tx->data, *b = tb->data, *dy = out->grad;   // (rows, C), (C), (rows, C)
    float *dx = tx->grad, *db = tb->grad;                        // (rows, C) or NULL, (C) or NULL
    ptrdiff_t C = tx->shape[tx->ndim - 1], rows = (ptrdiff_t)tx->numel / C;
    int set_dx = tensor_grad_assigns(out, 0), set_db = tensor_grad_assigns(out, 1);
    if (db) {
        ptrdiff_t blocks = (C + BIAS_BLOCK - 1) / BIAS_BLOCK;
        #pragma omp parallel for if (out->numel >= 16384)
        for (ptrdiff_t blk = 0; blk < blocks; blk++) {
            ptrdiff_t c0 = blk * BIAS_BLOCK;
            bias_gelu_grad_block(dx, db, x, b, dy, rows, C, c0, C - c0 < BIAS_BLOCK ? C - c0 : BIAS_BLOCK, set_dx, set_db);
        }
    } else if (dx) {
        #pragma omp parallel for if (out->numel >= 16384)
        for (ptrdiff_t r = 0; r < rows; r++) bias_gelu_grad_row(dx + r * C, x + r * C, b, dy + r * C, C, set_dx);
    }
}

void bias_gelu_forward_ref(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data, *b = out->src[1]->data;
    float *y = out->data;
    size_t C = (size_t)tx->shape[tx->ndim - 1];
    for (size_t i = 0; i < tx->numel; i++) y[i] = gelu_ref(x[i] + b[i % C]);
}

void bias_gelu_backward_ref(Tensor *out) {
    Tensor *tx = out->src[0], *tb = out->src[1];
    const float *x = tx->data, *b = tb->data, *dy = out->grad;
    size_t C = (size_t)tx->shape[tx->ndim - 1];
    if (tb->grad && tensor_grad_assigns(out, 1))
        for (size_t c = 0; c < C; c++) tb->grad[c] = 0.0f;
    for (size_t i = 0; i < tx->numel; i++) {
        float dz = gelu_grad_ref(x[i] + b[i % C]) * dy[i];
        if (tx->grad) tx->grad[i] = (tensor_grad_assigns(out, 0) ? 0.0f : tx->grad[i]) + dz;
        if (tb->grad) tb->grad[i % C] += dz;
    }
}
