// attention.c: fused causal multi-head self-attention (see op_attention in
// autograd/ops.h). One task per (batch, head); a task owns its head's
// channels of q, k, v and out for its batch element, so nothing races.
//
// Backward needs sum_j p_j dp_j for each query (dp = dO . v_j); that equals
// dO . O (O = sum_j p_j v_j is the output), so it is read from out->data and
// no scratch row is needed (FlashAttention-2's D_i = rowsum(dO * O)).
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "kernels/cpu/cpu_ops.h"

typedef struct { int B, T, C, H, hs; float scale; } AttnDims;

static AttnDims attn_dims(const Tensor *out) {
    const Tensor *qkv = out->src[0];
    AttnDims d;
    d.B = qkv->shape[0];
    d.T = qkv->shape[1];
    d.C = qkv->shape[2] / 3;
    d.H = out->iattr[0];
    d.hs = d.C / d.H;
    d.scale = 1.0f / sqrtf((float)d.hs);
    return d;
}

// omp simd: lets the compiler reorder the sum into vector lanes (it may not
// without permission), ~4-8x on the head-size dot products.
static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float alpha, const float *x, float *y, int n) {
    #pragma omp simd
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

// One query row: p (T) gets the probabilities over keys (zeros where not
// allowed), o (hs) the weighted sum of values. q, k, v point at this head's
// channels; k and v rows are 3C apart. mask (T) is NULL or this batch's row.
static void attn_row_forward(const float *q, const float *k, const float *v, const float *mask,
                             int t, AttnDims d, float *p, float *o) {
    size_t stride = 3 * (size_t)d.C;
    float mx = -INFINITY;
    for (int j = 0; j <= t; j++) {
        if (mask && mask[j] == 0.0f) { p[j] = 0.0f; continue; }
        p[j] = d.scale * dot(q, k + j * stride, d.hs);
        mx = p[j] > mx ? p[j] : mx;
    }
    for (int j = t + 1; j < d.T; j++) p[j] = 0.0f;
    memset(o, 0, d.hs * sizeof *o);
    if (mx == -INFINITY) {   // no allowed key: zeros out (and zero gradient)
        for (int j = 0; j <= t; j++) p[j] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int j = 0; j <= t; j++) {
        if (mask && mask[j] == 0.0f) continue;
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    float inv = 1.0f / sum;   // sum >= 1: the max term is exp(0)
    for (int j = 0; j <= t; j++) {
        if (p[j] == 0.0f) continue;
        p[j] *= inv;
        axpy(p[j], v + j * stride, o, d.hs);
    }
}

void attention_forward_cpu(Tensor *out) {
    AttnDims d = attn_dims(out);
    const float *qkv = out->src[0]->data;                               // (B, T, 3C)
    const float *key_mask = out->nsrc > 1 ? out->src[1]->data : NULL;   // (B, T) or NULL
    float *y = out->data;                                               // (B, T, C)
    float *probs = out->saved;                                          // (B, H, T, T)
    size_t stride = 3 * (size_t)d.C;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++) {
            const float *base = qkv + (size_t)b * d.T * stride + (size_t)h * d.hs;
            const float *mask = key_mask ? key_mask + (size_t)b * d.T : NULL;
            float *pbh = probs + ((size_t)b * d.H + h) * d.T * d.T;     // (T, T)
            for (int t = 0; t < d.T; t++)
                attn_row_forward(base + t * stride, base + d.C, base + 2 * (size_t)d.C, mask, t, d,
                                 pbh + (size_t)t * d.T, y + ((size_t)b * d.T + t) * d.C + (size_t)h * d.hs);
        }
}

void attention_backward_cpu(Tensor *out) {
    Tensor *tqkv = out->src[0];
    if (!tqkv->grad) return;
    AttnDims d = attn_dims(out);
    const float *qkv = tqkv->data;              // (B, T, 3C)
    float *dqkv = tqkv->grad;                   // (B, T, 3C)
    const float *y = out->data, *dy = out->grad;   // (B, T, C), (B, T, C)
    const float *probs = out->saved;            // (B, H, T, T)
    size_t stride = 3 * (size_t)d.C;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++) {
            size_t off = (size_t)b * d.T * stride + (size_t)h * d.hs;
            const float *q = qkv + off, *k = q + d.C, *v = q + 2 * (size_t)d.C;
            float *dq = dqkv + off, *dk = dq + d.C, *dv = dq + 2 * (size_t)d.C;
            const float *pbh = probs + ((size_t)b * d.H + h) * d.T * d.T;   // (T, T)
            for (int t = 0; t < d.T; t++) {
                size_t row = ((size_t)b * d.T + t) * d.C + (size_t)h * d.hs;
                const float *dy_t = dy + row, *o_t = y + row, *p = pbh + (size_t)t * d.T;
                float p_dp = dot(dy_t, o_t, d.hs);   // sum_j p_j dp_j, see the header
                for (int j = 0; j <= t; j++) {
                    if (p[j] == 0.0f) continue;   // masked, or underflowed: contributes nothing
                    float dp = dot(dy_t, v + j * stride, d.hs);
                    float ds = p[j] * (dp - p_dp) * d.scale;
                    axpy(p[j], dy_t, dv + j * stride, d.hs);
                    axpy(ds, k + j * stride, dq + t * stride, d.hs);
                    axpy(ds, q + t * stride, dk + j * stride, d.hs);
                }
            }
        }
}
