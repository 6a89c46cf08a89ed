// layernorm.c: y = (x - mean) * rstd * gamma + beta over the last dim, with
// rstd = 1 / sqrt(var + eps) and var the biased variance. out->saved holds
// mean (rows floats) then rstd (rows floats) for backward.
//
// The kernels run 8 floats at a time in fp32 (vec.h). The statistics take
// two passes: the mean, then the centred sums sum(d) and sum(d^2) with
// d = x - mean, from which the corrected two-pass formula (Chan, Golub and
// LeVeque) gives mean + sum(d)/C and (sum(d^2) - sum(d)^2/C) / C: no
// cancellation when |mean| >> std, and the first pass's rounding removed
// from the mean. *_ref are the plain twins, in double (tests/test_fused.c).
// Under train.precision bf16 y may be stored bf16 (plan.h): the same fp32
// values, rounded once as they are stored.
#include <math.h>
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_*, VEC_CLONES

static const i32x8 lane_index = { 0, 1, 2, 3, 4, 5, 6, 7 };

// y16 non-NULL: the row goes there as bf16 instead of to y.
VEC_CLONES static void layernorm_row(float *y, uint16_t *y16, float *mean, float *rstd, const float *x,
                                     const float *gamma, const float *beta, ptrdiff_t C, float eps) {
    f32x8 sum = v8_set1(0.0f);
    for (ptrdiff_t c = 0; c < C; c += 8) sum += v8_load_k(x + c, C - c < 8 ? C - c : 8);   // tails pad with 0
    float m = v8_hsum(sum) / (float)C;
    f32x8 sd = v8_set1(0.0f), sd2 = v8_set1(0.0f);
    for (ptrdiff_t c = 0; c < C; c += 8) {
        ptrdiff_t k = C - c < 8 ? C - c : 8;
        f32x8 d = v8_load_k(x + c, k) - m;
        d = v8_select(lane_index < (int32_t)k, d, v8_set1(0.0f));
        sd += d;
        sd2 += d * d;
    }
    float s1 = v8_hsum(sd), s2 = v8_hsum(sd2);
    float var = (s2 - s1 * s1 / (float)C) / (float)C;
    m += s1 / (float)C;
    float s = 1.0f / sqrtf((var > 0.0f ? var : 0.0f) + eps);
    for (ptrdiff_t c = 0; c < C; c += 8) {
        ptrdiff_t k = C - c < 8 ? C - c : 8;
        f32x8 v = (v8_load_k(x + c, k) - m) * s * v8_load_k(gamma + c, k) + v8_load_k(beta + c, k);
        if (y16) v8_store_bf16_k(y16 + c, v, k);
        else v8_store_k(y + c, v, k);
    }
    *mean = m;
    *rstd = s;
}

void layernorm_forward_cpu(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data;                          // (rows, C)
    const float *gamma = out->src[1]->data;             // (C)
    const float *beta = out->src[2]->data;              // (C)
    int bf16 = out->dtype == DT_BF16;
    float *y = bf16 ? NULL : out->data;                 // (rows, C) fp32...
    uint16_t *y16 = bf16 ? out->data : NULL;            // ...or bf16
    ptrdiff_t C = tx->shape[tx->ndim - 1], rows = (ptrdiff_t)tx->numel / C;
    float *mean = out->saved, *rstd = out->saved + rows; // (rows), (rows)
    float eps = out->fattr[0];
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++)
        layernorm_row(y ? y + r * C : NULL, y16 ? y16 + r * C : NULL, mean + r, rstd + r, x + r * C, gamma, beta, C, eps);
}

// dx (+)= rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)) for one row.
VEC_CLONES static void layernorm_grad_row(float *dx, const float *x, const float *dy, const float *gamma,
                                          float m, float s, ptrdiff_t C, int assign) {
    f32x8 a = v8_set1(0.0f), b = v8_set1(0.0f);
    for (ptrdiff_t c = 0; c < C; c += 8) {
        ptrdiff_t k = C - c < 8 ? C - c : 8;   // dy pads with 0, so the tail adds nothing
        f32x8 dnorm = v8_load_k(dy + c, k) * v8_load_k(gamma + c, k);
        a += dnorm;
        b += dnorm * ((v8_load_k(x + c, k) - m) * s);
    }
    float dnorm_mean = v8_hsum(a) / (float)C, dnorm_xhat_mean = v8_hsum(b) / (float)C;
    for (ptrdiff_t c = 0; c < C; c += 8) {
        ptrdiff_t k = C - c < 8 ? C - c : 8;
        f32x8 xhat = (v8_load_k(x + c, k) - m) * s;
        f32x8 g = (v8_load_k(dy + c, k) * v8_load_k(gamma + c, k) - dnorm_mean - xhat * dnorm_xhat_mean) * s;
        v8_put_k(dx + c, g, k, assign);
    }
}

// dgamma (+)= sum_rows dy * xhat, dbeta (+)= sum_rows dy over columns
// [c0, c0 + w): the rows stream past BIAS_BLOCK columns of accumulators.
VEC_CLONES static void layernorm_affine_block(float *dgamma, float *dbeta, const float *x, const float *dy,
                                              const float *mean, const float *rstd, ptrdiff_t rows, ptrdiff_t C,
                                              ptrdiff_t c0, ptrdiff_t w, int set_gamma, int set_beta) {
    f32x8 acc_g[BIAS_BLOCK / 8], acc_b[BIAS_BLOCK / 8];
    for (ptrdiff_t j = 0; j < w; j += 8) acc_g[j / 8] = acc_b[j / 8] = v8_set1(0.0f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * C + c0, *dyr = dy + r * C + c0;
        float m = mean[r], s = rstd[r];
        for (ptrdiff_t j = 0; j < w; j += 8) {
            ptrdiff_t k = w - j < 8 ? w - j : 8;
            f32x8 g = v8_load_k(dyr + j, k);
            acc_g[j / 8] += g * ((v8_load_k(xr + j, k) - m) * s);
            acc_b[j / 8] += g;
        }
    }
    for (ptrdiff_t j = 0; j < w; j += 8) {
        ptrdiff_t k = w - j < 8 ? w - j : 8;
        if (dgamma) v8_put_k(dgamma + c0 + j, acc_g[j / 8], k, set_gamma);
        if (dbeta) v8_put_k(dbeta + c0 + j, acc_b[j / 8], k, set_beta);
    }
}

void layernorm_backward_cpu(Tensor *out) {
    Tensor *tx = out->src[0];
    const float *x = tx->data, *dy = out->grad;         // (rows, C), (rows, C)
    const float *gamma = out->src[1]->data;             // (C)
    float *dgamma = out->src[1]->grad, *dbeta = out->src[2]->grad;   // (C) or NULL
    ptrdiff_t C = tx->shape[tx->ndim - 1], rows = (ptrdiff_t)tx->numel / C;
    const float *mean = out->saved, *rstd = out->saved + rows;
    if (tx->grad) {
        float *dx = tx->grad;                           // (rows, C)
        int assign = tensor_grad_assigns(out, 0);
        #pragma omp parallel for if (out->numel >= 16384)
        for (ptrdiff_t r = 0; r < rows; r++)
            layernorm_grad_row(dx + r * C, x + r * C, dy + r * C, gamma, mean[r], rstd[r], C, assign);
    }
    if (dgamma || dbeta) {
        ptrdiff_t blocks = (C + BIAS_BLOCK - 1) / BIAS_BLOCK;
        #pragma omp parallel for if (out->numel >= 16384)
        for (ptrdiff_t blk = 0; blk < blocks; blk++) {
            ptrdiff_t c0 = blk * BIAS_BLOCK;
            layernorm_affine_block(dgamma, dbeta, x, dy, mean, rstd, rows, C, c0, C - c0 < BIAS_BLOCK ? C - c0 : BIAS_BLOCK,
                                   tensor_grad_assigns(out, 1), tensor_grad_assigns(out, 2));
        }
    }
}

// ---- the plain twins: scalar loops, statistics in double ------------------

void layernorm_forward_ref(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data, *gamma = out->src[1]->data, *beta = out->src[2]->data;
    float *y = out->data;
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    float *mean = out->saved, *rstd = out->saved + rows;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double sum = 0.0, sq = 0.0;
        for (int c = 0; c < C; c++) sum += xr[c];
        double m = sum / C;
        for (int c = 0; c < C; c++) sq += (xr[c] - m) * (xr[c] - m);
        double s = 1.0 / sqrt(sq / C + out->fattr[0]);
        for (int c = 0; c < C; c++) y[r * C + c] = (float)((xr[c] - m) * s * gamma[c] + beta[c]);
        mean[r] = (float)m;
        rstd[r] = (float)s;
    }
}

void layernorm_backward_ref(Tensor *out) {
    Tensor *tx = out->src[0], *tg = out->src[1], *tb = out->src[2];
    const float *x = tx->data, *dy = out->grad, *gamma = tg->data;
    int C = tx->shape[tx->ndim - 1];
    size_t rows = tx->numel / C;
    const float *mean = out->saved, *rstd = out->saved + rows;
    for (int c = 0; c < C; c++) {
        if (tg->grad && tensor_grad_assigns(out, 1)) tg->grad[c] = 0.0f;
        if (tb->grad && tensor_grad_assigns(out, 2)) tb->grad[c] = 0.0f;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        double a = 0, b = 0;
        for (int c = 0; c < C; c++) {
            double xhat = (xr[c] - mean[r]) * (double)rstd[r];
            a += (double)dyr[c] * gamma[c];
            b += (double)dyr[c] * gamma[c] * xhat;
            if (tg->grad) tg->grad[c] += (float)(dyr[c] * xhat);
            if (tb->grad) tb->grad[c] += dyr[c];
        }
        if (!tx->grad) continue;
        for (int c = 0; c < C; c++) {
            double xhat = (xr[c] - mean[r]) * (double)rstd[r];
            float g = (float)((dyr[c] * (double)gamma[c] - a / C - xhat * b / C) * rstd[r]);
            tx->grad[r * C + c] = (tensor_grad_assigns(out, 0) ? 0.0f : tx->grad[r * C + c]) + g;
        }
    }
}
