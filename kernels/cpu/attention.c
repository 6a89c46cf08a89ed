// attention.c: fused multi-head self-attention in the FlashAttention-2 manner
// (see op_attention in autograd/ops.h): nothing of size T x T is stored.
//
// Forward, one task per (batch, head, tile of ATTN_BQ queries): the keys are
// read in tiles of ATTN_BK (a sequence of at most ATTN_SHORT_T tokens is
// one tile of each); each tile's scores S = Q K^T and the product
// P V go through cpu_sgemm (gemm_f32.h: on the calling thread alone inside
// the OpenMP region),
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
// every 3C, which the products take as a leading dimension, so nothing is copied.
//
// Under train.precision bf16, qkv and out may be stored bf16 (autograd/
// plan.h: the qkv projection writes bf16, the output projection reads
// bf16). The tiles here are the products' fp32, so a bf16 qkv (and, in
// backward, a bf16 out) is widened into fp32 scratch first, and a bf16 out
// is rounded once from fp32 scratch after: the same fp32 math on the same
// values as the CUDA kernel, which widens as it loads. The scratch is the
// size of the fp32 tensors, held only while the op runs (outside the
// planned arena), grown in the first step and then reused.
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/ops.h"          // defines: ATTN_CAUSAL, ATTN_PREFIX
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/gemm_f32.h"   // defines: cpu_sgemm
#include "kernels/cpu/vec.h"       // defines: f32x8, i32x8, v8_exp, v8_select

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
// A sequence this short is one tile of every query and key (T x T fits the
// same buffers): one sgemm of each kind per head. At the demo's 83 tokens
// that replaces a 64-query tile and a 19-query remainder, whose short
// sgemms ran at a fraction of the rate.
#define ATTN_SHORT_T 128
// The most queries in one tile: the per-row running state is sized by it.
#define ATTN_MAX_BQ (ATTN_BQ > ATTN_SHORT_T ? ATTN_BQ : ATTN_SHORT_T)

typedef struct { int B, T, C, H, hs, n_prefix; float scale; int bq, bk; } AttnDims;

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
    // Query and key tile sizes; score tiles have rows bk floats apart.
    int one_tile = d.T <= ATTN_SHORT_T && d.T * d.T <= ATTN_BQ * ATTN_BK;
    d.bq = one_tile ? d.T : ATTN_BQ;
    d.bk = one_tile ? d.T : ATTN_BK;
    return d;
}

// One past the last key query i may see (ops.h); non-decreasing in i.
static inline int visible_end(const AttnDims *d, int i) {
    return i + 1 > d->n_prefix ? i + 1 : d->n_prefix;
}

// exp(x) for x <= ~0 (scores minus their max or their logsumexp) on 8
// lanes: vec.h's v8_exp (within 2 ulp of expf), except that x < -87 (and
// -inf, a masked score) gives exactly 0. A NaN stays NaN.
V8_INLINE f32x8 exp_nonpos8(f32x8 x) {
    return v8_select(x < -87.0f, v8_set1(0.0f), v8_exp(x));
}

// The row loops below are written on vec.h's 8-lane vectors (a scalar loop
// with a mask and an exp in it stayed scalar, and was half the op's time at
// the demo's size), compiled for AVX-512 and AVX2 too (chosen at load time
// by the CPU), as the build targets plain x86-64 (no -march).
// (GCC only, as vec.h's VEC_CLONES: clang, which builds make fuzz, refuses
// a 32-byte vector in the default clone's ABI.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ATTN_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ATTN_VECTOR_CLONES
#endif

static const i32x8 LANE = { 0, 1, 2, 3, 4, 5, 6, 7 };

// Lanes [j, j+8) of a score row that are visible: before `end` (the row's
// visible keys, at most n) and not masked out by the key mask (NULL: none).
V8_INLINE i32x8 visible_lanes(const float *mask, int j, int end) {
    i32x8 seen = LANE + j < end;
    int k = end - j;                               // lanes before the end; none when <= 0
    if (mask && k > 0) seen &= v8_load_k(mask + j, k < 8 ? k : 8) != 0.0f;
    return seen;
}

// One query row of a score tile s (n keys, the first `limit` visible by
// position; mask (n) is NULL or the key mask from the tile's first key):
// masks, takes the new running max, overwrites s with exp(s - max), and
// updates the running (m, l). Returns the factor the row's output so far
// must be scaled by (0 while nothing was seen, 1 when the max held).
ATTN_VECTOR_CLONES
static float online_softmax_row(float *s, const float *mask, int n, int limit, float *m, float *l) {
    int end = limit < n ? limit : n;
    f32x8 vmx = v8_set1(*m);
    i32x8 vnan = { 0 };
    for (int j = 0; j < n; j += 8) {
        int k = n - j < 8 ? n - j : 8;
        f32x8 v = v8_select(visible_lanes(mask, j, end), v8_load_k(s + j, k), v8_set1(-INFINITY));
        v8_store_k(s + j, v, k);
        vmx = v8_select(v > vmx, v, vmx);          // a NaN is never taken as the max...
        vnan |= v != v;                            // ...but noted
    }
    float mx = vmx[0];
    int nan = vnan[0];
    for (int q = 1; q < 8; q++) {
        mx = vmx[q] > mx ? vmx[q] : mx;
        nan |= vnan[q];
    }
    // Nothing visible yet: P row 0, state unchanged. (A NaN score goes on,
    // so that the output is NaN and the step is seen to be non-finite.)
    if (mx == -INFINITY && !nan) {
        memset(s, 0, (size_t)n * sizeof *s);
        return 1.0f;
    }
    f32x8 vsum = v8_set1(0.0f);
    for (int j = 0; j < n; j += 8) {
        int k = n - j < 8 ? n - j : 8;
        f32x8 e = exp_nonpos8(v8_load_k(s + j, k) - mx);
        v8_store_k(s + j, e, k);
        vsum += v8_select(LANE < k, e, v8_set1(0.0f));
    }
    float corr = *m == -INFINITY ? 0.0f : expf(*m - mx);
    *l = *l * corr + v8_hsum(vsum);
    *m = mx;
    return corr;
}

// Backward's probabilities for one query row: s (n scores) becomes
// exp(s - lse) where visible, 0 elsewhere.
ATTN_VECTOR_CLONES
static void probs_row(float *s, const float *mask, int n, int limit, float lse) {
    int end = limit < n ? limit : n;
    for (int j = 0; j < n; j += 8) {
        int k = n - j < 8 ? n - j : 8;
        f32x8 p = exp_nonpos8(v8_load_k(s + j, k) - lse);
        v8_store_k(s + j, v8_select(visible_lanes(mask, j, end), p, v8_set1(0.0f)), k);
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
    float s[ATTN_BQ * ATTN_BK];                                  // (nq, nk), rows d->bk apart
    float m[ATTN_MAX_BQ], l[ATTN_MAX_BQ];
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
    for (int j0 = 0; j0 < kv_end; j0 += d->bk) {
        int nk = min_int(d->bk, kv_end - j0);
        // s (nq, nk) = scale * q . k[j0 : j0+nk]^T
        cpu_sgemm(0, 1, nq, nk, d->hs, d->scale,
                  q, (int)ld, k + j0 * ld, (int)ld, 0.0f, s, d->bk);
        for (int r = 0; r < nq; r++) {
            float corr = online_softmax_row(s + (size_t)r * d->bk, mask ? mask + j0 : NULL, nk,
                                            visible_end(d, i0 + r) - j0, &m[r], &l[r]);
            if (corr != 1.0f) {
                float *orow = o + (size_t)r * d->C;
                for (int c = 0; c < d->hs; c++) orow[c] *= corr;
            }
        }
        // o (nq, hs) += p (nq, nk) . v[j0 : j0+nk]
        cpu_sgemm(0, 0, nq, d->hs, nk, 1.0f,
                  s, d->bk, v + j0 * ld, (int)ld, 1.0f, o, d->C);
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

// t's values as fp32: its own data, or (bf16) widened into scratch `which`.
static const float *as_f32(const Tensor *t, CpuScratch which) {
    if (t->dtype != DT_BF16) return t->data;
    float *w = cpu_scratch(which, t->numel * sizeof(float));
    const uint16_t *h = t->data;
    #pragma omp parallel for if (t->numel > 65536)
    for (size_t i = 0; i < t->numel; i++) w[i] = bf16_to_f32(h[i]);
    return w;
}

void attention_forward_cpu(Tensor *out) {
    AttnDims d = attn_dims(out);
    const float *qkv = as_f32(out->src[0], CPU_SCRATCH_ATTN_QKV);      // (B, T, 3C)
    const float *key_mask = out->nsrc > 1 ? out->src[1]->data : NULL;   // (B, T) or NULL
    int out16 = out->dtype == DT_BF16;
    float *y = out16 ? cpu_scratch(CPU_SCRATCH_ATTN_OUT, out->numel * sizeof(float)) : out->data;   // (B, T, C)
    float *lse = out->saved;                                            // (B, H, T)
    int n_tiles = (d.T + d.bq - 1) / d.bq;
    // Causal tiles differ in work (a late tile sees more keys): dynamic.
    #pragma omp parallel for collapse(3) schedule(dynamic)
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++)
            for (int t = 0; t < n_tiles; t++) {
                int i0 = t * d.bq;
                forward_query_tile(&d, qkv, key_mask, y, lse + ((size_t)b * d.H + h) * d.T, b, h, i0,
                                   min_int(d.bq, d.T - i0));
            }
    if (out16) {   // rounded once, as stored
        uint16_t *y16 = out->data;
        #pragma omp parallel for if (out->numel > 65536)
        for (size_t i = 0; i < out->numel; i++) y16[i] = f32_to_bf16(y[i]);
    }
}

// The whole backward of head h of batch b; delta (T) is its scratch row.
// beta 1: dqkv is added into (zeroed first when assigned); 0: the sequence
// is one tile, each of dq, dk and dv is written by one sgemm, which assigns.
static void backward_head(const AttnDims *d, const float *qkv, const float *key_mask, const float *y, const float *dy,
                          const float *lse, float *delta, float *dqkv, int b, int h, float beta) {
    float p[ATTN_BQ * ATTN_BK], ds[ATTN_BQ * ATTN_BK];         // (nq, nk) each, rows bk apart
    const int bq = d->bq, bk = d->bk;
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
    for (int j0 = 0; j0 < d->T; j0 += bk) {
        int nk = min_int(bk, d->T - j0);
        // The first query that sees key j0: every query when j0 is in the prefix.
        int first_query = j0 < d->n_prefix ? 0 : j0;
        for (int i0 = first_query; i0 < d->T; i0 += bq) {
            int nq = min_int(bq, d->T - i0);
            // p (nq, nk) = exp(scale * q_i . k_j^T - lse_i), visible entries only
            cpu_sgemm(0, 1, nq, nk, d->hs, d->scale,
                      q + i0 * ld, (int)ld, k + j0 * ld, (int)ld, 0.0f, p, bk);
            for (int r = 0; r < nq; r++)
                probs_row(p + (size_t)r * bk, mask ? mask + j0 : NULL, nk, visible_end(d, i0 + r) - j0, lse[i0 + r]);
            // dv_j (nk, hs) += p^T . dO_i
            cpu_sgemm(1, 0, nk, d->hs, nq, 1.0f,
                      p, bk, dO + (size_t)i0 * d->C, d->C, beta, dv + j0 * ld, (int)ld);
            // ds (nq, nk) = dO_i . v_j^T, then p * (ds - delta_i) * scale
            cpu_sgemm(0, 1, nq, nk, d->hs, 1.0f,
                      dO + (size_t)i0 * d->C, d->C, v + j0 * ld, (int)ld, 0.0f, ds, bk);
            for (int r = 0; r < nq; r++)
                dscores_row(p + (size_t)r * bk, ds + (size_t)r * bk, nk, delta[i0 + r], d->scale);
            // dk_j (nk, hs) += ds^T . q_i;  dq_i (nq, hs) += ds . k_j
            cpu_sgemm(1, 0, nk, d->hs, nq, 1.0f,
                      ds, bk, q + i0 * ld, (int)ld, beta, dk + j0 * ld, (int)ld);
            cpu_sgemm(0, 0, nq, d->hs, nk, 1.0f,
                      ds, bk, k + j0 * ld, (int)ld, beta, dq + i0 * ld, (int)ld);
        }
    }
}

void attention_backward_cpu(Tensor *out) {
    Tensor *tqkv = out->src[0];
    cpu_grad_none(out, 1);                 // the key mask takes no gradient
    if (!tqkv->grad) return;
    AttnDims d = attn_dims(out);
    // Several tiles add into dqkv tile by tile: zero it first when assigning.
    // One tile writes each element once: assign straight away.
    float beta = 1.0f;
    if (d.bq == d.T && d.bk == d.T && tensor_grad_assigns(out, 0)) beta = 0.0f;
    else cpu_grad_begin(out, 0);
    const float *key_mask = out->nsrc > 1 ? out->src[1]->data : NULL;   // (B, T) or NULL
    size_t BHT = (size_t)d.B * d.H * d.T;
    float *lse = out->saved, *delta = out->saved + BHT;                 // (B, H, T) each
    const float *qkv = as_f32(tqkv, CPU_SCRATCH_ATTN_QKV);              // (B, T, 3C), as stored
    const float *y = as_f32(out, CPU_SCRATCH_ATTN_OUT);                 // (B, T, C), as stored
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++) {
            size_t row = ((size_t)b * d.H + h) * d.T;
            backward_head(&d, qkv, key_mask, y, out->grad, lse + row, delta + row, tqkv->grad, b, h, beta);
        }
}
