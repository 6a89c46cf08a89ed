// layernorm.c: y = (x - mean) * rstd * gamma + beta over the last dim, with
// rstd = 1 / sqrt(var + eps) and var the biased variance. out->saved holds
// mean (rows floats) then rstd (rows floats) for backward.
#include <math.h>
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"

// gamma/beta elements per thread task in their gradient reduction: each
// thread owns its block of channels, so the sum over rows has no races.
#define LN_BLOCK 64

void layernorm_forward_cpu(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data;                          // (rows, C)
    const float *gamma = out->src[1]->data;             // (C)
    const float *beta = out->src[2]->data;              // (C)
    float *y = out->data;                               // (rows, C)
    int C = tx->shape[tx->ndim - 1];
    ptrdiff_t rows = (ptrdiff_t)(tx->numel / C);
    float *mean = out->saved, *rstd = out->saved + rows; // (rows), (rows)
    float eps = out->fattr[0];
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        // Two passes (mean, then centred squares) in double: no cancellation
        // when |mean| >> std, and the row statistics exact to fp32 for any C.
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += xr[c];
        float m = (float)(sum / C);
        double sq = 0.0;
        for (int c = 0; c < C; c++) { double d = (double)xr[c] - m; sq += d * d; }
        float s = (float)(1.0 / sqrt(sq / C + eps));
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * s * gamma[c] + beta[c];
        mean[r] = m;
        rstd[r] = s;
    }
}

// dx = rstd * (dy*gamma - mean(dy*gamma) - xhat * mean(dy*gamma*xhat)), per row.
static void layernorm_backward_x(Tensor *out, int C, ptrdiff_t rows) {
    Tensor *tx = out->src[0];
    const float *x = tx->data, *dy = out->grad;         // (rows, C), (rows, C)
    const float *gamma = out->src[1]->data;             // (C)
    const float *mean = out->saved, *rstd = out->saved + rows;
    float *dx = tx->grad;                               // (rows, C)
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        float *dxr = dx + r * C;
        float m = mean[r], s = rstd[r];
        float dnorm_mean = 0.0f, dnorm_xhat_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float dnorm = dyr[c] * gamma[c];
            dnorm_mean += dnorm;
            dnorm_xhat_mean += dnorm * (xr[c] - m) * s;
        }
        dnorm_mean /= C;
        dnorm_xhat_mean /= C;
        for (int c = 0; c < C; c++) {
            float xhat = (xr[c] - m) * s;
            dxr[c] += (dyr[c] * gamma[c] - dnorm_mean - xhat * dnorm_xhat_mean) * s;
        }
    }
}

// dgamma += sum_rows dy * xhat, dbeta += sum_rows dy; parallel over channel blocks.
static void layernorm_backward_affine(Tensor *out, int C, ptrdiff_t rows) {
    const float *x = out->src[0]->data, *dy = out->grad;    // (rows, C), (rows, C)
    const float *mean = out->saved, *rstd = out->saved + rows;
    float *dgamma = out->src[1]->grad, *dbeta = out->src[2]->grad;   // (C) or NULL
    int nblocks = (C + LN_BLOCK - 1) / LN_BLOCK;
    #pragma omp parallel for if (out->numel >= 16384)
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * LN_BLOCK, len = C - c0 < LN_BLOCK ? C - c0 : LN_BLOCK;
        float acc_g[LN_BLOCK] = { 0 }, acc_b[LN_BLOCK] = { 0 };
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *xr = x + r * C + c0, *dyr = dy + r * C + c0;
            float m = mean[r], s = rstd[r];
            for (int c = 0; c < len; c++) {
                acc_g[c] += dyr[c] * (xr[c] - m) * s;
                acc_b[c] += dyr[c];
            }
        }
        for (int c = 0; c < len; c++) {
            if (dgamma) dgamma[c0 + c] += acc_g[c];
            if (dbeta) dbeta[c0 + c] += acc_b[c];
        }
    }
}

void layernorm_backward_cpu(Tensor *out) {
    const Tensor *tx = out->src[0];
    int C = tx->shape[tx->ndim - 1];
    ptrdiff_t rows = (ptrdiff_t)(tx->numel / C);
    if (tx->grad) layernorm_backward_x(out, C, rows);
    if (out->src[1]->grad || out->src[2]->grad) layernorm_backward_affine(out, C, rows);
}
