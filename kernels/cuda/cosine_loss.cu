// cosine_loss.cu: the mean over counted rows of 1 - cos(a_b, b_b); the twin
// of kernels/cpu/cosine_loss.c (see there for the gradient). Same saved
// layout: 1 - cos per row (0 for rows not counted), then the count.
//
// One block per row: a.b, |a|^2 and |b|^2 in double, each thread a fixed
// strided share combined in a fixed shuffle tree (double, because for
// nearly parallel vectors 1 - cos and the gradient's two terms cancel).
// Backward recomputes them the same way rather than reading fp32 state.
// One thread adds the row losses in row order. No atomics.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, cuda_row_threads

#define COSINE_EPS 1e-8

namespace {

// Sum over the block in double, returned to every thread (fixed trees).
__device__ double block_sum_f64(double v) {
    __shared__ double warp_partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) warp_partial[warp] = v;
    __syncthreads();
    v = lane < nwarps ? warp_partial[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline bool cosine_counted(const float *mask, int r) { return !mask || mask[r] != 0.0f; }

// Row r's a.b, |a|^2 and |b|^2, to every thread of the block.
__device__ void cosine_row_sums(const float *ar, const float *br, int D, double *ab, double *aa, double *bb) {
    double sab = 0, saa = 0, sbb = 0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        sab += (double)ar[i] * br[i];
        saa += (double)ar[i] * ar[i];
        sbb += (double)br[i] * br[i];
    }
    *ab = block_sum_f64(sab);
    *aa = block_sum_f64(saa);
    *bb = block_sum_f64(sbb);
}

// Block r: row_loss[r] = 1 - cos (0 when row r is not counted).
__global__ void cosine_row_kernel(float *row_loss, const float *a, const float *b, const float *mask, int D) {
    int r = blockIdx.x;
    if (!cosine_counted(mask, r)) {          // uniform over the block
        if (threadIdx.x == 0) row_loss[r] = 0.0f;
        return;
    }
    double ab, aa, bb;
    cosine_row_sums(a + (size_t)r * D, b + (size_t)r * D, D, &ab, &aa, &bb);
    if (threadIdx.x == 0) row_loss[r] = (float)(1.0 - ab / fmax(sqrt(aa) * sqrt(bb), COSINE_EPS));
}

// One thread: the counted rows added in row order, in double; the count.
__global__ void cosine_reduce_kernel(float *loss, float *row_loss, const float *mask, int B) {
    double total = 0;
    int count = 0;
    for (int r = 0; r < B; r++) {
        if (!cosine_counted(mask, r)) continue;
        total += row_loss[r];
        count++;
    }
    row_loss[B] = (float)count;
    loss[0] = count ? (float)(total / count) : 0.0f;
}

// Block r: da += g (b / den - [not clamped] cos a / |a|^2), db the same with
// a and b swapped, g = -d(out) / count.
__global__ void cosine_backward_kernel(float *da, float *db, const float *a, const float *b, const float *mask,
                                       const float *saved, const float *dloss, int B, int D) {
    int r = blockIdx.x;
    float count = saved[B];
    if (count == 0.0f || !cosine_counted(mask, r)) return;   // uniform over the block
    const float *ar = a + (size_t)r * D, *br = b + (size_t)r * D;
    double ab, aa, bb;
    cosine_row_sums(ar, br, D, &ab, &aa, &bb);
    double g = -dloss[0] / count;
    double prod = sqrt(aa) * sqrt(bb), den = fmax(prod, COSINE_EPS), cos = ab / den;
    bool clamped = !(prod > COSINE_EPS);
    double ka = clamped ? 0.0 : cos / aa, kb = clamped ? 0.0 : cos / bb;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        size_t at = (size_t)r * D + i;
        if (da) da[at] += (float)(g * (br[i] / den - ka * ar[i]));
        if (db) db[at] += (float)(g * (ar[i] / den - kb * br[i]));
    }
}

}  // namespace

extern "C" void cosine_loss_forward_cuda(Tensor *out) {
    const Tensor *ta = out->src[0], *tb = out->src[1], *mask = out->nsrc > 2 ? out->src[2] : nullptr;
    int B = ta->shape[0], D = ta->shape[1];
    const float *mask_data = mask ? (const float *)mask->data : nullptr;   // (B) or NULL
    cosine_row_kernel<<<(unsigned int)B, cuda_row_threads((size_t)D), 0, cuda_compute_stream()>>>(
        out->saved, (const float *)ta->data, (const float *)tb->data, mask_data, D);   // (B), (B, D), (B, D)
    CUDA_CHECK_LAUNCH();
    cosine_reduce_kernel<<<1, 1, 0, cuda_compute_stream()>>>((float *)out->data, out->saved, mask_data, B);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cosine_loss_backward_cuda(Tensor *out) {
    Tensor *ta = out->src[0], *tb = out->src[1];
    const Tensor *mask = out->nsrc > 2 ? out->src[2] : nullptr;
    if (!ta->grad && !tb->grad) return;
    int B = ta->shape[0], D = ta->shape[1];
    cosine_backward_kernel<<<(unsigned int)B, cuda_row_threads((size_t)D), 0, cuda_compute_stream()>>>(
        ta->grad, tb->grad,                                // (B, D) or NULL each
        (const float *)ta->data, (const float *)tb->data,  // (B, D), (B, D)
        mask ? (const float *)mask->data : nullptr,        // (B) or NULL
        out->saved, out->grad, B, D);                      // (B + 1), (1)
    CUDA_CHECK_LAUNCH();
}
