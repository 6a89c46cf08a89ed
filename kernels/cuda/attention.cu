// attention.cu: fused causal multi-head self-attention (see op_attention in
// autograd/ops.h), the twin of kernels/cpu/attention.c. Correctness first:
// plain fp32 loops, one block per (batch, head, row), no tensor cores.
//
// qkv (B, T, 3C): q, k, v of head h are channels h*hs + [0, hs) of each
// third. probs (B, H, T, T) in out->saved: row i holds query i's
// probabilities over keys j <= i (zeros elsewhere and where masked).
//
// Backward, with dp_ij = dO_i . v_j and ds_ij = p_ij (dp_ij - D_i) * scale:
//   dq_i = sum_j ds_ij k_j,   dk_j = sum_i ds_ij q_i,   dv_j = sum_i p_ij dO_i,
// where D_i = sum_j p_ij dp_ij = dO_i . O_i (O the output), as on the CPU,
// so no scratch row is needed. Kernel 1 gives each query row its own block
// (dq), kernel 2 each key row (dk, dv): every gradient float has one writer,
// each sum runs in a fixed order, and there are no atomics.
#include "kernels/cuda/cuda_ops.h"
#include <cstdio>
#include <cstdlib>
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum, block_max

// Threads per block: the key loop is strided over them, the head-size loop too.
#define ATTN_THREADS 128

namespace {

struct AttnDims { int B, T, C, H, hs; float scale; };

AttnDims attn_dims(const Tensor *out) {
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

__device__ inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// Block (b, h, i): query row i. Dynamic shared memory: p (T floats).
__global__ void attention_forward_kernel(float *y, float *probs, const float *qkv, const float *key_mask, AttnDims d) {
    extern __shared__ float p[];                         // (T) this row's scores, then probabilities
    int i = blockIdx.x % d.T, h = (blockIdx.x / d.T) % d.H, b = blockIdx.x / (d.T * d.H);
    size_t stride = 3 * (size_t)d.C;                     // between consecutive t of qkv
    const float *base = qkv + (size_t)b * d.T * stride + (size_t)h * d.hs;
    const float *q = base + i * stride, *k = base + d.C, *v = base + 2 * (size_t)d.C;
    const float *mask = key_mask ? key_mask + (size_t)b * d.T : nullptr;   // (T) or NULL
    float *prow = probs + (size_t)blockIdx.x * d.T;      // (T); blockIdx.x == (b*H + h)*T + i
    float *o = y + ((size_t)b * d.T + i) * d.C + (size_t)h * d.hs;        // (hs)

    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        float s = (mask && mask[j] == 0.0f) ? -INFINITY : d.scale * dot(q, k + j * stride, d.hs);
        p[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx);            // every thread, same value: the branch below is uniform
    if (mx == -INFINITY) {         // no allowed key: zeros out (and zero gradient)
        for (int j = threadIdx.x; j < d.T; j += blockDim.x) prow[j] = 0.0f;
        for (int c = threadIdx.x; c < d.hs; c += blockDim.x) o[c] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        float e = p[j] == -INFINITY ? 0.0f : expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum);   // sum >= 1: the max term is exp(0); block_sum also syncs p
    for (int j = threadIdx.x; j < d.T; j += blockDim.x) {
        float pj = j <= i ? p[j] * inv : 0.0f;
        if (j <= i) p[j] = pj;
        prow[j] = pj;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < d.hs; c += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j <= i; j++)
            if (p[j] != 0.0f) acc += p[j] * v[j * stride + c];
        o[c] = acc;
    }
}

// Block (b, h, i): dq_i += scale * sum_j p_ij (dp_ij - D_i) k_j. Shared: ds (T floats).
__global__ void attention_backward_q_kernel(float *dqkv, const float *qkv, const float *y, const float *dy,
                                            const float *probs, AttnDims d) {
    extern __shared__ float ds[];                        // (T) this row's ds_ij, j <= i
    int i = blockIdx.x % d.T, h = (blockIdx.x / d.T) % d.H, b = blockIdx.x / (d.T * d.H);
    size_t stride = 3 * (size_t)d.C;
    size_t off = (size_t)b * d.T * stride + (size_t)h * d.hs;
    const float *k = qkv + off + d.C, *v = qkv + off + 2 * (size_t)d.C;
    float *dq = dqkv + off + i * stride;                 // (hs)
    size_t row = ((size_t)b * d.T + i) * d.C + (size_t)h * d.hs;
    const float *dy_i = dy + row, *o_i = y + row;        // (hs), (hs)
    const float *prow = probs + (size_t)blockIdx.x * d.T;
    float D = dot(dy_i, o_i, d.hs);                      // every thread, same order: same value
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        float pj = prow[j];
        // masked or underflowed: contributes nothing (skipped as on the CPU)
        ds[j] = pj == 0.0f ? 0.0f : pj * (dot(dy_i, v + j * stride, d.hs) - D) * d.scale;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < d.hs; c += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j <= i; j++) acc += ds[j] * k[j * stride + c];
        dq[c] += acc;
    }
}

// Block (b, h, j): key row j. dk_j += sum_{i >= j} ds_ij q_i, dv_j += sum_{i >= j} p_ij dO_i.
// Shared: ds (T floats), indexed by i.
__global__ void attention_backward_kv_kernel(float *dqkv, const float *qkv, const float *y, const float *dy,
                                             const float *probs, AttnDims d) {
    extern __shared__ float ds[];                        // (T) ds_ij for this key j, i >= j
    int j = blockIdx.x % d.T, bh = blockIdx.x / d.T, h = bh % d.H, b = bh / d.H;
    size_t stride = 3 * (size_t)d.C;
    size_t off = (size_t)b * d.T * stride + (size_t)h * d.hs;
    const float *q = qkv + off, *v_j = qkv + off + 2 * (size_t)d.C + j * stride;
    float *dk = dqkv + off + d.C + j * stride, *dv = dqkv + off + 2 * (size_t)d.C + j * stride;   // (hs), (hs)
    const float *pbh = probs + (size_t)bh * d.T * d.T;   // (T, T)
    const float *dy_bh = dy + (size_t)b * d.T * d.C + (size_t)h * d.hs;   // row i at + i*C
    const float *y_bh = y + (size_t)b * d.T * d.C + (size_t)h * d.hs;
    for (int i = j + threadIdx.x; i < d.T; i += blockDim.x) {
        float pij = pbh[(size_t)i * d.T + j];
        if (pij == 0.0f) { ds[i] = 0.0f; continue; }
        const float *dy_i = dy_bh + (size_t)i * d.C;
        float D = dot(dy_i, y_bh + (size_t)i * d.C, d.hs);
        ds[i] = pij * (dot(dy_i, v_j, d.hs) - D) * d.scale;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < d.hs; c += blockDim.x) {
        float acc_k = 0.0f, acc_v = 0.0f;
        for (int i = j; i < d.T; i++) {
            float pij = pbh[(size_t)i * d.T + j];
            if (pij == 0.0f) continue;
            acc_k += ds[i] * q[i * stride + c];
            acc_v += pij * dy_bh[(size_t)i * d.C + c];
        }
        dk[c] += acc_k;
        dv[c] += acc_v;
    }
}

// Dynamic shared memory for one row of T floats; the default per-block
// limit (48 KiB) allows T up to 12288, far above any recipe's sequence.
size_t row_smem(const AttnDims &d) {
    size_t bytes = (size_t)d.T * sizeof(float);
    if (bytes > 48 * 1024) {
        fprintf(stderr, "distil: error: attention: T=%d needs %zu bytes of shared memory per block (48 KiB max); "
                "shorten the sequence\n", d.T, bytes);
        exit(2);
    }
    return bytes;
}

}  // namespace

extern "C" void attention_forward_cuda(Tensor *out) {
    AttnDims d = attn_dims(out);
    const float *key_mask = out->nsrc > 1 ? (const float *)out->src[1]->data : nullptr;   // (B, T) or NULL
    unsigned int blocks = (unsigned int)((size_t)d.B * d.H * d.T);
    attention_forward_kernel<<<blocks, ATTN_THREADS, row_smem(d), cuda_compute_stream()>>>(
        (float *)out->data,                 // (B, T, C)
        out->saved,                         // (B, H, T, T)
        (const float *)out->src[0]->data,   // (B, T, 3C)
        key_mask, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void attention_backward_cuda(Tensor *out) {
    Tensor *tqkv = out->src[0];
    if (!tqkv->grad) return;   // the mask takes no gradient
    AttnDims d = attn_dims(out);
    unsigned int blocks = (unsigned int)((size_t)d.B * d.H * d.T);
    const float *qkv = (const float *)tqkv->data, *y = (const float *)out->data;   // (B, T, 3C), (B, T, C)
    // dq, dk and dv are disjoint channel ranges of tqkv->grad: the two
    // kernels never write the same float.
    attention_backward_q_kernel<<<blocks, ATTN_THREADS, row_smem(d), cuda_compute_stream()>>>(
        tqkv->grad, qkv, y, out->grad, out->saved, d);
    CUDA_CHECK_LAUNCH();
    attention_backward_kv_kernel<<<blocks, ATTN_THREADS, row_smem(d), cuda_compute_stream()>>>(
        tqkv->grad, qkv, y, out->grad, out->saved, d);
    CUDA_CHECK_LAUNCH();
}
