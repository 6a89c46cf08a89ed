// attention.cu: fused multi-head self-attention in the FlashAttention-2
// manner (see op_attention in autograd/ops.h), the twin of
// kernels/cpu/attention.c. Nothing of size T x T is stored: saved holds the
// logsumexp lse (B, H, T) and a (B, H, T) scratch row, delta.
//
// Three kernels, each block one tile of one head of one sample:
//   forward      a tile of BQ queries; the keys in tiles of BK, staged in
//                shared memory; an online softmax (running max m and sum l
//                per query, the output rows rescaled when m grows). Writes
//                out and lse.
//   backward_dq  a tile of queries: delta_i = dO_i . O_i (written to saved
//                for the next kernel), then over the key tiles it sees
//                P = exp(S - lse), dP = dO V^T, dS = P (dP - delta) scale,
//                dQ += dS K.
//   backward_dkv a tile of keys, over the query tiles that see it:
//                dV += P^T dO, dK += dS^T Q.
// Every gradient float has one writer and every sum a fixed order (warp
// butterflies, loops in index order): no atomics, the same bits each run.
//
// Loads are coalesced: a tile row is hs consecutive floats of qkv (one
// head's channels), read by consecutive threads. Shared rows that threads
// walk across (keys, values) are padded to hs + 1 floats so a column read
// hits 32 different banks. The storage types of qkv (TQ) and of the
// output (TO) are template parameters, float or __nv_bfloat16 (under
// train.precision bf16 both may be stored bf16, autograd/plan.h): loads
// widen to fp32 (load_f32), a bf16 output is rounded once as it is stored
// (store_f32, bf16.cuh's bf16_round: the CPU's bits), and all arithmetic
// is fp32 in shared memory and registers. Gradients are fp32.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include <cstdio>
#include <cstdlib>
#include "autograd/ops.h"                 // defines: ATTN_PREFIX
#include "kernels/cuda/bf16.cuh"          // defines: bf16_round
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, warp_sum, warp_max

// Threads per block: 4 warps, a warp per row in the softmax steps.
#define ATTN_THREADS 128
// Dynamic shared memory per block, the default limit without opting in.
#define ATTN_SMEM_BYTES (48 * 1024)

namespace {

struct AttnDims { int B, T, C, H, hs, n_prefix; float scale; };

AttnDims attn_dims(const Tensor *out) {
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
__device__ __host__ inline int visible_end(const AttnDims &d, int i) { return i + 1 > d.n_prefix ? i + 1 : d.n_prefix; }

__device__ inline float load_f32(float x) { return x; }
__device__ inline float load_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline void store_f32(float *p, float v) { *p = v; }
__device__ inline void store_f32(__nv_bfloat16 *p, float v) { *p = bf16_round(v); }

// rows (n, hs) of a (T, ld) matrix from row r0 into shared dst (n, dst_ld),
// zeros past T. Consecutive threads read consecutive channels.
template <typename T>
__device__ void load_rows(float *dst, int dst_ld, const T *src, size_t ld, int r0, int n, int T_len, int hs) {
    for (int idx = threadIdx.x; idx < n * hs; idx += blockDim.x) {
        int r = idx / hs, c = idx % hs;
        dst[r * dst_ld + c] = r0 + r < T_len ? load_f32(src[(size_t)(r0 + r) * ld + c]) : 0.0f;
    }
}

// Tile edge (BQ = BK = tile) and shared floats for each kernel.
struct Tiles { int tile; size_t smem; };

size_t fwd_floats(int t, int hs) { return (size_t)t * hs * 3 + (size_t)t * (hs + 1) + (size_t)t * t + 3 * (size_t)t; }
size_t dq_floats(int t, int hs) { return (size_t)t * hs * 3 + 2 * (size_t)t * (hs + 1) + 2 * (size_t)t * t + 2 * (size_t)t; }
size_t dkv_floats(int t, int hs) { return (size_t)t * hs * 4 + 2 * (size_t)t * (hs + 1) + 2 * (size_t)t * t + 2 * (size_t)t; }

// The largest tile of 64, 32, 16 or 8 whose shared memory fits; a head too
// wide for even 8 is refused in one line.
Tiles pick_tiles(size_t (*floats)(int, int), int hs, const char *kernel) {
    for (int t = 64; t >= 8; t /= 2) {
        size_t bytes = floats(t, hs) * sizeof(float);
        if (bytes <= ATTN_SMEM_BYTES) return Tiles{ t, bytes };
    }
    fprintf(stderr, "distil: error: attention (%s): head size %d needs more than %d bytes of shared memory per block; "
            "use more heads or a smaller model.dim\n", kernel, hs, ATTN_SMEM_BYTES);
    exit(2);
}

// ---- forward ------------------------------------------------------------------

// Block (query tile, h, b). Shared: q (BQ, hs), k (BK, hs+1), v (BK, hs),
// s (BQ, BK), o (BQ, hs), m, l, corr (BQ each).
template <typename TQ, typename TO>
__global__ void attention_forward_kernel(TO *y, float *lse, const TQ *qkv, const float *key_mask, AttnDims d, int tile) {
    extern __shared__ float smem[];
    const int BQ = tile, BK = tile, hs = d.hs, ks = hs + 1;
    float *q = smem, *k = q + BQ * hs, *v = k + BK * ks, *s = v + BK * hs, *o = s + BQ * BK;
    float *m = o + BQ * hs, *l = m + BQ, *corr = l + BQ;
    const int i0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
    const int nq = min(BQ, d.T - i0);
    const size_t ld = 3 * (size_t)d.C;
    const TQ *head = qkv + (size_t)b * d.T * ld + (size_t)h * hs;   // q rows of (b, h); k at + C, v at + 2C
    const float *mask = key_mask ? key_mask + (size_t)b * d.T : nullptr;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;

    load_rows(q, hs, head, ld, i0, BQ, d.T, hs);
    for (int idx = threadIdx.x; idx < BQ * hs; idx += blockDim.x) o[idx] = 0.0f;
    for (int r = threadIdx.x; r < BQ; r += blockDim.x) { m[r] = -INFINITY; l[r] = 0.0f; }
    const int kv_end = visible_end(d, i0 + nq - 1);
    for (int j0 = 0; j0 < kv_end; j0 += BK) {
        __syncthreads();                                              // the previous tile is consumed
        load_rows(k, ks, head + d.C, ld, j0, BK, d.T, hs);
        load_rows(v, hs, head + 2 * (size_t)d.C, ld, j0, BK, d.T, hs);
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x) {
            int r = idx / BK, j = idx % BK, key = j0 + j;
            float acc = -INFINITY;
            if (r < nq && key < visible_end(d, i0 + r) && (!mask || mask[key] != 0.0f)) {
                acc = 0.0f;
                for (int c = 0; c < hs; c++) acc += q[r * hs + c] * k[j * ks + c];
                acc *= d.scale;
            }
            s[idx] = acc;
        }
        __syncthreads();
        for (int r = warp; r < BQ; r += nwarps) {                    // a warp per row: max, exp, sum
            float mx = m[r];
            for (int j = lane; j < BK; j += 32) mx = fmaxf(mx, s[r * BK + j]);
            mx = warp_max(mx);
            float sum = 0.0f;
            for (int j = lane; j < BK; j += 32) {
                float p = mx == -INFINITY ? 0.0f : expf(s[r * BK + j] - mx);   // exp(-inf) = 0: masked
                s[r * BK + j] = p;
                sum += p;
            }
            sum = warp_sum(sum);
            if (lane == 0) {
                float c = m[r] == -INFINITY ? 0.0f : expf(m[r] - mx);
                corr[r] = c;
                l[r] = l[r] * c + sum;
                m[r] = mx;
            }
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * hs; idx += blockDim.x) {
            int r = idx / hs, c = idx % hs;
            float acc = o[idx] * corr[r];
            for (int j = 0; j < BK; j++) acc += s[r * BK + j] * v[j * hs + c];
            o[idx] = acc;
        }
    }
    __syncthreads();
    float *lse_bh = lse + ((size_t)b * d.H + h) * d.T;
    for (int idx = threadIdx.x; idx < nq * hs; idx += blockDim.x) {
        int r = idx / hs, c = idx % hs;
        // No visible key: l = 0, out 0 (o is 0) and lse +inf (P = 0 in backward).
        store_f32(&y[((size_t)b * d.T + i0 + r) * d.C + (size_t)h * hs + c], l[r] > 0.0f ? o[idx] / l[r] : 0.0f);
        if (c == 0) lse_bh[i0 + r] = l[r] > 0.0f ? m[r] + logf(l[r]) : INFINITY;
    }
}

// ---- backward ------------------------------------------------------------------

// p (BQ, BK) = exp(scale q k^T - lse) where query i0+r sees key j0+j, else
// 0; dp (BQ, BK) = dO v^T. q and dO rows hs apart unless given, k and v
// rows ks apart.
__device__ void probs_and_dprobs(float *p, float *dp, const float *q, int q_ld, const float *dO, int dO_ld,
                                 const float *k, const float *v, int ks, const float *lse, const float *mask,
                                 const AttnDims &d, int i0, int j0, int BQ, int BK) {
    for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x) {
        int r = idx / BK, j = idx % BK, query = i0 + r, key = j0 + j;
        float pv = 0.0f, dpv = 0.0f;
        if (query < d.T && key < d.T && key < visible_end(d, query) && (!mask || mask[key] != 0.0f)) {
            float sc = 0.0f, g = 0.0f;
            for (int c = 0; c < d.hs; c++) {
                sc += q[r * q_ld + c] * k[j * ks + c];
                g += dO[r * dO_ld + c] * v[j * ks + c];
            }
            pv = expf(sc * d.scale - lse[r]);   // lse = +inf (no key) cannot occur here: the key is visible
            dpv = g;
        }
        p[idx] = pv;
        dp[idx] = dpv;
    }
}

// Block (query tile, h, b). Shared: q, dO, dq (BQ, hs), k, v (BK, hs+1),
// p, ds (BQ, BK), lse, delta (BQ).
template <typename TQ, typename TO>
__global__ void attention_backward_dq_kernel(float *dqkv, float *delta, const TQ *qkv, const TO *y, const float *dy,
                                             const float *lse, const float *key_mask, AttnDims d, int tile) {
    extern __shared__ float smem[];
    const int BQ = tile, BK = tile, hs = d.hs, ks = hs + 1;
    float *q = smem, *dO = q + BQ * hs, *dq = dO + BQ * hs, *k = dq + BQ * hs, *v = k + BK * ks;
    float *p = v + BK * ks, *ds = p + BQ * BK, *lse_s = ds + BQ * BK, *delta_s = lse_s + BQ;
    const int i0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
    const int nq = min(BQ, d.T - i0);
    const size_t ld = 3 * (size_t)d.C;
    const TQ *head = qkv + (size_t)b * d.T * ld + (size_t)h * hs;
    const TO *y_bh = y + (size_t)b * d.T * d.C + (size_t)h * hs;
    const float *dy_bh = dy + (size_t)b * d.T * d.C + (size_t)h * hs;
    const size_t bh = ((size_t)b * d.H + h) * d.T;
    const float *mask = key_mask ? key_mask + (size_t)b * d.T : nullptr;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;

    load_rows(q, hs, head, ld, i0, BQ, d.T, hs);
    load_rows(dO, hs, dy_bh, d.C, i0, BQ, d.T, hs);
    for (int idx = threadIdx.x; idx < BQ * hs; idx += blockDim.x) dq[idx] = 0.0f;
    for (int r = warp; r < BQ; r += nwarps) {                        // delta = dO . O, a warp per row
        float acc = 0.0f;
        if (r < nq)
            for (int c = lane; c < hs; c += 32) acc += load_f32(dy_bh[(size_t)(i0 + r) * d.C + c]) * load_f32(y_bh[(size_t)(i0 + r) * d.C + c]);
        acc = warp_sum(acc);
        if (lane == 0) {
            delta_s[r] = acc;
            lse_s[r] = r < nq ? lse[bh + i0 + r] : INFINITY;
            if (r < nq) delta[bh + i0 + r] = acc;                    // for backward_dkv
        }
    }
    const int kv_end = visible_end(d, i0 + nq - 1);
    for (int j0 = 0; j0 < kv_end; j0 += BK) {
        __syncthreads();
        load_rows(k, ks, head + d.C, ld, j0, BK, d.T, hs);
        load_rows(v, ks, head + 2 * (size_t)d.C, ld, j0, BK, d.T, hs);
        __syncthreads();
        probs_and_dprobs(p, ds, q, hs, dO, hs, k, v, ks, lse_s, mask, d, i0, j0, BQ, BK);
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x)
            ds[idx] = p[idx] * (ds[idx] - delta_s[idx / BK]) * d.scale;
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * hs; idx += blockDim.x) {
            int r = idx / hs, c = idx % hs;
            float acc = dq[idx];
            for (int j = 0; j < BK; j++) acc += ds[r * BK + j] * k[j * ks + c];
            dq[idx] = acc;
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nq * hs; idx += blockDim.x) {
        int r = idx / hs, c = idx % hs;
        dqkv[((size_t)b * d.T + i0 + r) * ld + (size_t)h * hs + c] += dq[idx];
    }
}

// Block (key tile, h, b). Shared: dk, dv (BK, hs), k, v (BK, hs+1), q, dO
// (BQ, hs), p, ds (BQ, BK), lse, delta (BQ).
template <typename TQ>
__global__ void attention_backward_dkv_kernel(float *dqkv, const TQ *qkv, const float *dy, const float *lse,
                                              const float *delta, const float *key_mask, AttnDims d, int tile) {
    extern __shared__ float smem[];
    const int BQ = tile, BK = tile, hs = d.hs, ks = hs + 1;
    float *dk = smem, *dv = dk + BK * hs, *k = dv + BK * hs, *v = k + BK * ks, *q = v + BK * ks, *dO = q + BQ * hs;
    float *p = dO + BQ * hs, *ds = p + BQ * BK, *lse_s = ds + BQ * BK, *delta_s = lse_s + BQ;
    const int j0 = blockIdx.x * BK, h = blockIdx.y, b = blockIdx.z;
    const int nk = min(BK, d.T - j0);
    const size_t ld = 3 * (size_t)d.C;
    const TQ *head = qkv + (size_t)b * d.T * ld + (size_t)h * hs;
    const float *dy_bh = dy + (size_t)b * d.T * d.C + (size_t)h * hs;
    const size_t bh = ((size_t)b * d.H + h) * d.T;
    const float *mask = key_mask ? key_mask + (size_t)b * d.T : nullptr;

    load_rows(k, ks, head + d.C, ld, j0, BK, d.T, hs);
    load_rows(v, ks, head + 2 * (size_t)d.C, ld, j0, BK, d.T, hs);
    for (int idx = threadIdx.x; idx < BK * hs; idx += blockDim.x) dk[idx] = dv[idx] = 0.0f;
    // Queries before j0 see these keys only when j0 is in the prefix. Start
    // at a multiple of BQ, as backward_dq's tiles do (not needed for
    // correctness: rows that see nothing add zeros).
    const int first_query = j0 < d.n_prefix ? 0 : j0 / BQ * BQ;
    for (int i0 = first_query; i0 < d.T; i0 += BQ) {
        __syncthreads();
        load_rows(q, hs, head, ld, i0, BQ, d.T, hs);
        load_rows(dO, hs, dy_bh, d.C, i0, BQ, d.T, hs);
        for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
            bool in = i0 + r < d.T;
            lse_s[r] = in ? lse[bh + i0 + r] : INFINITY;
            delta_s[r] = in ? delta[bh + i0 + r] : 0.0f;
        }
        __syncthreads();
        probs_and_dprobs(p, ds, q, hs, dO, hs, k, v, ks, lse_s, mask, d, i0, j0, BQ, BK);
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x)
            ds[idx] = p[idx] * (ds[idx] - delta_s[idx / BK]) * d.scale;
        __syncthreads();
        for (int idx = threadIdx.x; idx < BK * hs; idx += blockDim.x) {
            int j = idx / hs, c = idx % hs;
            float acc_k = dk[idx], acc_v = dv[idx];
            for (int r = 0; r < BQ; r++) {
                acc_v += p[r * BK + j] * dO[r * hs + c];
                acc_k += ds[r * BK + j] * q[r * hs + c];
            }
            dk[idx] = acc_k;
            dv[idx] = acc_v;
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nk * hs; idx += blockDim.x) {
        int j = idx / hs, c = idx % hs;
        size_t at = ((size_t)b * d.T + j0 + j) * ld + (size_t)h * hs + c;
        dqkv[at + d.C] += dk[idx];
        dqkv[at + 2 * (size_t)d.C] += dv[idx];
    }
}

dim3 tile_grid(const AttnDims &d, int tile) { return dim3((unsigned int)((d.T + tile - 1) / tile), (unsigned int)d.H, (unsigned int)d.B); }

template <typename TQ, typename TO>
void forward(Tensor *out, const AttnDims &d, const float *key_mask) {
    Tiles t = pick_tiles(fwd_floats, d.hs, "forward");
    attention_forward_kernel<TQ, TO><<<tile_grid(d, t.tile), ATTN_THREADS, t.smem, cuda_compute_stream()>>>(
        (TO *)out->data,                 // (B, T, C)
        out->saved,                      // lse (B, H, T)
        (const TQ *)out->src[0]->data,   // (B, T, 3C)
        key_mask, d, t.tile);
    CUDA_CHECK_LAUNCH();
}

// dq, dk and dv are disjoint channel ranges of tqkv->grad: the two
// kernels never write the same float. backward_dkv reads the delta that
// backward_dq writes (same stream, so in order).
template <typename TQ, typename TO>
void backward(Tensor *out, const AttnDims &d, const float *key_mask) {
    Tensor *tqkv = out->src[0];
    const TQ *qkv = (const TQ *)tqkv->data;                                        // (B, T, 3C)
    const TO *y = (const TO *)out->data;                                           // (B, T, C)
    float *lse = out->saved, *delta = out->saved + (size_t)d.B * d.H * d.T;       // (B, H, T) each
    Tiles tq = pick_tiles(dq_floats, d.hs, "backward dq");
    attention_backward_dq_kernel<TQ, TO><<<tile_grid(d, tq.tile), ATTN_THREADS, tq.smem, cuda_compute_stream()>>>(
        tqkv->grad, delta, qkv, y, out->grad, lse, key_mask, d, tq.tile);
    CUDA_CHECK_LAUNCH();
    Tiles tkv = pick_tiles(dkv_floats, d.hs, "backward dkv");
    attention_backward_dkv_kernel<TQ><<<tile_grid(d, tkv.tile), ATTN_THREADS, tkv.smem, cuda_compute_stream()>>>(
        tqkv->grad, qkv, out->grad, lse, delta, key_mask, d, tkv.tile);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

extern "C" void attention_forward_cuda(Tensor *out) {
    AttnDims d = attn_dims(out);
    const float *key_mask = out->nsrc > 1 ? (const float *)out->src[1]->data : nullptr;   // (B, T) or NULL
    bool q16 = out->src[0]->dtype == DT_BF16, o16 = out->dtype == DT_BF16;              // as stored (plan.h)
    if (!q16 && !o16) forward<float, float>(out, d, key_mask);
    else if (q16 && o16) forward<__nv_bfloat16, __nv_bfloat16>(out, d, key_mask);
    else if (q16) forward<__nv_bfloat16, float>(out, d, key_mask);
    else forward<float, __nv_bfloat16>(out, d, key_mask);
}

extern "C" void attention_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    if (!out->src[0]->grad) return;   // the mask takes no gradient
    AttnDims d = attn_dims(out);
    const float *key_mask = out->nsrc > 1 ? (const float *)out->src[1]->data : nullptr;
    bool q16 = out->src[0]->dtype == DT_BF16, o16 = out->dtype == DT_BF16;
    if (!q16 && !o16) backward<float, float>(out, d, key_mask);
    else if (q16 && o16) backward<__nv_bfloat16, __nv_bfloat16>(out, d, key_mask);
    else if (q16) backward<__nv_bfloat16, float>(out, d, key_mask);
    else backward<float, __nv_bfloat16>(out, d, key_mask);
}
