// attention.c: fused multi-head self-attention in the FlashAttention-2 manner
// (see op_attention in autograd/ops.h): nothing of size T x T is stored.
//
// Forward, one task per (batch, head, tile of ATTN_BQ queries): the keys are
// read in tiles of ATTN_BK; each tile's scores S = Q K^T and the product
// P V go through OpenBLAS sgemm (single-threaded inside the OpenMP region),
// and an online softmax keeps, per query, the running max m and sum l and
// rescales the output rows accumulated so far when m grows. Saved: the
// logsumexp lse = m + log(l) per query, B*H*T floats.
//
// Backward, one task per (batch, head): for each key tile and each query
// tile that sees it, P = exp(S - lse) is recomputed, then
//   dV_j += P^T dO_i,   dP = dO_i V_j^T,   dS = P * (dP - delta_i) * scale,
//   dK_j += dS^T Q_i,   dQ_i += dS K_j,
// with delta_i = rowsum(dO_i * O_i) (= sum_j p_ij dp_ij, FlashAttention-2's
// D_i), computed once per query into the saved scratch. A task owns its
// head's channels of dq, dk and dv, so nothing races and no sum depends on
// the thread count: the bits are the same on 1 or 16 threads.
//
// qkv (B, T, 3C) is read in place: a head's q, k or v rows are hs floats
// every 3C, which sgemm takes as a leading dimension, so nothing is copied.
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "autograd/ops.h"          // defines: ATTN_CAUSAL, ATTN_PREFIX
#include "kernels/cpu/cpu_ops.h"

// Tile sizes. The score tiles live on the stack (two of ATTN_BQ*ATTN_BK
// floats in backward, 128 KiB). Larger tiles make longer sgemms but larger
// masked corners on the causal diagonal. -DATTN_BQ=.. -DATTN_BK=.. builds a
// variant for tests/bench_attention.c.
#ifndef ATTN_BQ
#define ATTN_BQ 64
#endif
#ifndef ATTN_BK
#define ATTN_BK 256
#endif

typedef struct { int B, T, C, H, hs, n_prefix; float scale; } AttnDims;

static AttnDims attn_dims(const Tensor *out) {
    const Tensor *qkv = out->src[0];
    AttnDims d;
    d.B = qkv->shape[0];
    d.T = qkv->shape[1];
    d.C = qkv->shape[2] / 3;
    d.H = out->iattr[0];
    d.hs = d.C / d.H;
    d.n_prefix = out->iattr[1] == ATTN_PREFIX ? out->iattr[2] : 0;
    d.scale = 1.0f / sqrtf((float)d.hs);
    return d;
}

// One past the last key query i may see (ops.h); non-decreasing in i.
static inline int visible_end(const AttnDims *d, int i) {
    return i + 1 > d->n_prefix ? i + 1 : d->n_prefix;
}

// exp(x) for x <= ~0 (scores minus their max or their logsumexp), within
// 2 ulp of expf: x = n ln2 + r, |r| <= ln2/2, e^r by Cephes' degree-6
// polynomial, 2^n put into the exponent bits. Written with selects and no
// calls so that `omp simd` loops around it vectorise (glibc's vector expf
// needs -ffast-math). x < -87 (and -inf, a masked score) gives exactly 0; a
// NaN stays NaN (and takes the lower clamp inside, so no conversion of it
// to int happens).
static inline float exp_nonpos(float x) {
    float xc = x > 88.0f ? 88.0f : (x >= -87.0f ? x : -87.0f);
    float n = xc * 1.44269504088896341f;
    n = (float)(int)(n + (n >= 0.0f ? 0.5f : -0.5f));   // round half away from zero
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;   // ln2 in two parts, so n*ln2 is exact
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int i; float f; } two_n = { .i = ((int)n + 127) << 23 };   // n in [-126, 127]
    float y = x < -87.0f ? 0.0f : p * two_n.f;
    return x == x ? y : x;
}

// The row loops are compiled for AVX-512 and AVX2 too (chosen at load time
// by the CPU), as the build targets plain x86-64 (no -march).
#define ATTN_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

// One query row of a score tile s (n keys, the first `limit` visible by
// position; mask (n) is NULL or the key mask from the tile's first key):
// masks, takes the new running max, overwrites s with exp(s - max), and
// updates the running (m, l). Returns the factor the row's output so far
// must be scaled by (0 while nothing was seen, 1 when the max held).
ATTN_VECTOR_CLONES
static float online_softmax_row(float *s, const float *mask, int n, int limit, float *m, float *l) {
    float mx = *m;
    int nan = 0;
    #pragma omp simd reduction(max:mx) reduction(|:nan)
    for (int j = 0; j < n; j++) {
        int seen = j < limit && (!mask || mask[j] != 0.0f);
        s[j] = seen ? s[j] : -INFINITY;
        mx = s[j] > mx ? s[j] : mx;
        nan |= s[j] != s[j];
    }
    // Nothing visible yet: P row 0, state unchanged. (A NaN score goes on,
    // so that the output is NaN and the step is seen to be non-finite.)
    if (mx == -INFINITY && !nan) {
        memset(s, 0, (size_t)n * sizeof *s);
        return 1.0f;
    }
    float sum = 0.0f;
    #pragma omp simd reduction(+:sum)
    for (int j = 0; j < n; j++) {
        s[j] = exp_nonpos(s[j] - mx);
        sum += s[j];
    }
    float corr = *m == -INFINITY ? 0.0f : expf(*m - mx);
    *l = *l * corr + sum;
    *m = mx;
    return corr;
}

// Backward's probabilities for one query row: s (n scores) becomes
// exp(s - lse) where visible, 0 elsewhere.
ATTN_VECTOR_CLONES
static void probs_row(float *s, const float *mask, int n, int limit, float lse) {
    #pragma omp simd
    for (int j = 0; j < n; j++) {
        int seen = j < limit && (!mask || mask[j] != 0.0f);
        s[j] = seen ? exp_nonpos(s[j] - lse) : 0.0f;
    }
}

// dS = P * (dP - delta) * scale, in place in dp.
ATTN_VECTOR_CLONES
static void dscores_row(const float *p, float *dp, int n, float delta, float scale) {
    #pragma omp simd
    for (int j = 0; j < n; j++) dp[j] = p[j] * (dp[j] - delta) * scale;
}

static inline int min_int(int a, int b) { return a < b ? a : b; }

// Queries [i0, i0+nq) of head h of batch b.
static void forward_query_tile(const AttnDims *d, const float *qkv, const float *key_mask, float *y, float *lse,
                               int b, int h, int i0, int nq) {
    float s[ATTN_BQ * ATTN_BK];                                  // (nq, nk), rows ATTN_BK apart
    float m[ATTN_BQ], l[ATTN_BQ];
    size_t ld = 3 * (size_t)d->C;                               // between rows of qkv
    const float *q = qkv + ((size_t)b * d->T + i0) * ld + (size_t)h * d->hs;      // (nq, hs), ld
    const float *k = qkv + (size_t)b * d->T * ld + d->C + (size_t)h * d->hs;     // (T, hs), ld
    const float *v = k + d->C;                                                    // (T, hs), ld
    const float *mask = key_mask ? key_mask + (size_t)b * d->T : NULL;           // (T) or NULL
    float *o = y + ((size_t)b * d->T + i0) * d->C + (size_t)h * d->hs;           // (nq, hs), ld C
    for (int r = 0; r < nq; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(o + (size_t)r * d->C, 0, (size_t)d->hs * sizeof *o);
    }
    int kv_end = visible_end(d, i0 + nq - 1);                   // no row of the tile sees past it
    for (int j0 = 0; j0 < kv_end; j0 += ATTN_BK) {
        int nk = min_int(ATTN_BK, kv_end - j0);
        // s (nq, nk) = scale * q . k[j0 : j0+nk]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d->hs, d->scale,
                    q, (int)ld, k + j0 * ld, (int)ld, 0.0f, s, ATTN_BK);
        for (int r = 0; r < nq; r++) {
            float corr = online_softmax_row(s + r * ATTN_BK, mask ? mask + j0 : NULL, nk,
                                            visible_end(d, i0 + r) - j0, &m[r], &l[r]);
            if (corr != 1.0f) {
                float *orow = o + (size_t)r * d->C;
                for (int c = 0; c < d->hs; c++) orow[c] *= corr;
            }
        }
        // o (nq, hs) += p (nq, nk) . v[j0 : j0+nk]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d->hs, nk, 1.0f,
                    s, ATTN_BK, v + j0 * ld, (int)ld, 1.0f, o, d->C);
    }
    for (int r = 0; r < nq; r++) {
        float *orow = o + (size_t)r * d->C;
        if (l[r] == 0.0f) {                  // no visible key: zeros (already), and no gradient
            lse[i0 + r] = INFINITY;
            continue;
        }
        float inv = 1.0f / l[r];             // l >= 1: the max term is exp(0)
        for (int c = 0; c < d->hs; c++) orow[c] *= inv;
        lse[i0 + r] = m[r] + logf(l[r]);
    }
}

void attention_forward_cpu(Tensor *out) {
    AttnDims d = attn_dims(out);
    const float *qkv = out->src[0]->data;                               // (B, T, 3C)
    const float *key_mask = out->nsrc > 1 ? out->src[1]->data : NULL;   // (B, T) or NULL
    float *y = out->data;                                               // (B, T, C)
    float *lse = out->saved;                                            // (B, H, T)
    int n_tiles = (d.T + ATTN_BQ - 1) / ATTN_BQ;
    // Causal tiles differ in work (a late tile sees more keys): dynamic.
    #pragma omp parallel for collapse(3) schedule(dynamic)
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++)
            for (int t = 0; t < n_tiles; t++) {
                int i0 = t * ATTN_BQ;
                forward_query_tile(&d, qkv, key_mask, y, lse + ((size_t)b * d.H + h) * d.T, b, h, i0,
                                   min_int(ATTN_BQ, d.T - i0));
            }
}

// The whole backward of head h of batch b; delta (T) is its scratch row.
static void backward_head(const AttnDims *d, const float *qkv, const float *key_mask, const float *y, const float *dy,
                          const float *lse, float *delta, float *dqkv, int b, int h) {
    float p[ATTN_BQ * ATTN_BK], ds[ATTN_BQ * ATTN_BK];         // (nq, nk) each, rows ATTN_BK apart
    size_t ld = 3 * (size_t)d->C;
    size_t head = (size_t)b * d->T * ld + (size_t)h * d->hs;
    const float *q = qkv + head, *k = q + d->C, *v = q + 2 * (size_t)d->C;      // (T, hs) each, ld
    float *dq = dqkv + head, *dk = dq + d->C, *dv = dq + 2 * (size_t)d->C;      // (T, hs) each, ld
    const float *o = y + (size_t)b * d->T * d->C + (size_t)h * d->hs;           // (T, hs), ld C
    const float *dO = dy + (size_t)b * d->T * d->C + (size_t)h * d->hs;         // (T, hs), ld C
    const float *mask = key_mask ? key_mask + (size_t)b * d->T : NULL;          // (T) or NULL
    for (int i = 0; i < d->T; i++) {
        const float *oi = o + (size_t)i * d->C, *gi = dO + (size_t)i * d->C;
        float acc = 0.0f;
        #pragma omp simd reduction(+:acc)
        for (int c = 0; c < d->hs; c++) acc += gi[c] * oi[c];
        delta[i] = acc;
    }
    for (int j0 = 0; j0 < d->T; j0 += ATTN_BK) {
        int nk = min_int(ATTN_BK, d->T - j0);
        // The first query that sees key j0: every query when j0 is in the prefix.
        int first_query = j0 < d->n_prefix ? 0 : j0;
        for (int i0 = first_query; i0 < d->T; i0 += ATTN_BQ) {
            int nq = min_int(ATTN_BQ, d->T - i0);
            // p (nq, nk) = exp(scale * q_i . k_j^T - lse_i), visible entries only
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d->hs, d->scale,
                        q + i0 * ld, (int)ld, k + j0 * ld, (int)ld, 0.0f, p, ATTN_BK);
            for (int r = 0; r < nq; r++)
                probs_row(p + r * ATTN_BK, mask ? mask + j0 : NULL, nk, visible_end(d, i0 + r) - j0, lse[i0 + r]);
            // dv_j (nk, hs) += p^T . dO_i
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d->hs, nq, 1.0f,
                        p, ATTN_BK, dO + (size_t)i0 * d->C, d->C, 1.0f, dv + j0 * ld, (int)ld);
            // ds (nq, nk) = dO_i . v_j^T, then p * (ds - delta_i) * scale
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d->hs, 1.0f,
                        dO + (size_t)i0 * d->C, d->C, v + j0 * ld, (int)ld, 0.0f, ds, ATTN_BK);
            for (int r = 0; r < nq; r++)
                dscores_row(p + r * ATTN_BK, ds + r * ATTN_BK, nk, delta[i0 + r], d->scale);
            // dk_j (nk, hs) += ds^T . q_i;  dq_i (nq, hs) += ds . k_j
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d->hs, nq, 1.0f,
                        ds, ATTN_BK, q + i0 * ld, (int)ld, 1.0f, dk + j0 * ld, (int)ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d->hs, nk, 1.0f,
                        ds, ATTN_BK, k + j0 * ld, (int)ld, 1.0f, dq + i0 * ld, (int)ld);
        }
    }
}

void attention_backward_cpu(Tensor *out) {
    Tensor *tqkv = out->src[0];
    cpu_grad_none(out, 1);                 // the key mask takes no gradient
    if (!cpu_grad_begin(out, 0)) return;   // adds key tile by key tile: zero first when assigning
    AttnDims d = attn_dims(out);
    const float *key_mask = out->nsrc > 1 ? out->src[1]->data : NULL;   // (B, T) or NULL
    size_t BHT = (size_t)d.B * d.H * d.T;
    float *lse = out->saved, *delta = out->saved + BHT;                 // (B, H, T) each
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++) {
            size_t row = ((size_t)b * d.H + h) * d.T;
            backward_head(&d, tqkv->data, key_mask, out->data, out->grad, lse + row, delta + row, tqkv->grad, b, h);
        }
}
