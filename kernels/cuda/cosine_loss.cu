// cosine_loss.cu: the mean over counted rows of 1 - cos(a_b, b_b); the twin
// of kernels/cpu/cosine_loss.c (see there for the gradient). Same saved
// layout: 1 - cos per row (0 for rows not counted), then the count.
//
// One block per row: a.b, |a|^2 and |b|^2 in double, each thread a fixed
// strided share of 128-bit packs (when D is a multiple of 4), combined in
// the fixed trees of cuda_common.cuh. Double, because for nearly parallel
// vectors 1 - cos and the gradient's two terms cancel. Backward recomputes
// the sums the same way rather than reading fp32 state. One block of 1024
// threads adds the row losses in a fixed tree. No atomics.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum_f64, cuda_row_threads
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec, store_vec

#define COSINE_EPS 1e-8
// Threads of the one block that adds up the row losses.
#define COSINE_REDUCE_THREADS 256

namespace {

__device__ inline bool cosine_counted(const float *mask, int r) { return !mask || mask[r] != 0.0f; }

// Row r's a.b, |a|^2 and |b|^2, to every thread of the block.
template <int W>
__device__ void cosine_row_sums(const float *ar, const float *br, int D, double *ab, double *aa, double *bb) {
    using Vf = Vec<float, W>;
    double sab = 0, saa = 0, sbb = 0;
    for (int p = threadIdx.x; p < D / W; p += blockDim.x) {
        Vf av = load_vec<Vf>(ar, (size_t)p), bv = load_vec<Vf>(br, (size_t)p);
        for (int j = 0; j < W; j++) {
            sab += (double)av[j] * bv[j];
            saa += (double)av[j] * av[j];
            sbb += (double)bv[j] * bv[j];
        }
    }
    *ab = block_sum_f64(sab);
    *aa = block_sum_f64(saa);
    *bb = block_sum_f64(sbb);
}

// Block r: row_loss[r] = 1 - cos (0 when row r is not counted).
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) cosine_row_kernel(float *row_loss, const float *a, const float *b,
                                                                const float *mask, int D) {
    int r = blockIdx.x;
    if (!cosine_counted(mask, r)) {          // uniform over the block
        if (threadIdx.x == 0) row_loss[r] = 0.0f;
        return;
    }
    double ab, aa, bb;
    cosine_row_sums<W>(a + (size_t)r * D, b + (size_t)r * D, D, &ab, &aa, &bb);
    if (threadIdx.x == 0) row_loss[r] = (float)(1.0 - ab / fmax(sqrt(aa) * sqrt(bb), COSINE_EPS));
}

// One block: the counted rows' losses added in double in a fixed tree; the count.
__global__ void __launch_bounds__(COSINE_REDUCE_THREADS) cosine_reduce_kernel(float *loss, float *row_loss,
                                                                              const float *mask, int B) {
    double total = 0, count = 0;
    for (int r = threadIdx.x; r < B; r += blockDim.x) {
        if (!cosine_counted(mask, r)) continue;
        total += row_loss[r];
        count += 1;
    }
    total = block_sum_f64(total);
    count = block_sum_f64(count);
    if (threadIdx.x == 0) {
        row_loss[B] = (float)count;
        loss[0] = count > 0 ? (float)(total / count) : 0.0f;
    }
}

// Block r: da += g (b / den - [not clamped] cos a / |a|^2), db the same with
// a and b swapped, g = -d(out) / count. a and b may be one tensor: each
// thread updates da, then db, of its own pack.
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) cosine_backward_kernel(float *da, float *db, const float *a, const float *b,
                                                                     const float *mask, const float *saved,
                                                                     const float *dloss, int B, int D) {
    using Vf = Vec<float, W>;
    int r = blockIdx.x;
    float count = saved[B];
    if (count == 0.0f || !cosine_counted(mask, r)) return;   // uniform over the block
    size_t row = (size_t)r * D;
    const float *ar = a + row, *br = b + row;                // (D), (D)
    double ab, aa, bb;
    cosine_row_sums<W>(ar, br, D, &ab, &aa, &bb);
    double g = -dloss[0] / count;
    double prod = sqrt(aa) * sqrt(bb), den = fmax(prod, COSINE_EPS), cos = ab / den;
    bool clamped = !(prod > COSINE_EPS);
    double ka = clamped ? 0.0 : cos / aa, kb = clamped ? 0.0 : cos / bb;
    for (int p = threadIdx.x; p < D / W; p += blockDim.x) {
        Vf av = load_vec<Vf>(ar, (size_t)p), bv = load_vec<Vf>(br, (size_t)p);
        if (da) {
            Vf d = load_vec<Vf>(da + row, (size_t)p);
            for (int j = 0; j < W; j++) d[j] += (float)(g * (bv[j] / den - ka * av[j]));
            store_vec<Vf>(da + row, (size_t)p, d);
        }
        if (db) {
            Vf d = load_vec<Vf>(db + row, (size_t)p);
            for (int j = 0; j < W; j++) d[j] += (float)(g * (av[j] / den - kb * bv[j]));
            store_vec<Vf>(db + row, (size_t)p, d);
        }
    }
}

}  // namespace

extern "C" void cosine_loss_forward_cuda(Tensor *out) {
    const Tensor *ta = out->src[0], *tb = out->src[1], *mask = out->nsrc > 2 ? out->src[2] : nullptr;
    int B = ta->shape[0], D = ta->shape[1];
    const float *mask_data = mask ? (const float *)mask->data : nullptr;   // (B) or NULL
    const float *a = (const float *)ta->data, *b = (const float *)tb->data;   // (B, D), (B, D)
    cudaStream_t s = cuda_compute_stream();
    if (D % 4 == 0 && cuda_aligned16(a) && cuda_aligned16(b)) cosine_row_kernel<4><<<B, cuda_row_threads((size_t)D / 4), 0, s>>>(out->saved, a, b, mask_data, D);
    else cosine_row_kernel<1><<<B, cuda_row_threads((size_t)D), 0, s>>>(out->saved, a, b, mask_data, D);
    CUDA_CHECK_LAUNCH();
    cosine_reduce_kernel<<<1, COSINE_REDUCE_THREADS, 0, s>>>((float *)out->data, out->saved, mask_data, B);   // saved: (B + 1)
    CUDA_CHECK_LAUNCH();
}

extern "C" void cosine_loss_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *ta = out->src[0], *tb = out->src[1];
    const Tensor *mask = out->nsrc > 2 ? out->src[2] : nullptr;
    if (!ta->grad && !tb->grad) return;
    int B = ta->shape[0], D = ta->shape[1];
    const float *a = (const float *)ta->data, *b = (const float *)tb->data;   // (B, D), (B, D)
    const float *mask_data = mask ? (const float *)mask->data : nullptr;      // (B) or NULL
    cudaStream_t s = cuda_compute_stream();
    bool w4 = D % 4 == 0 && cuda_aligned16(a) && cuda_aligned16(b) && (!ta->grad || cuda_aligned16(ta->grad)) &&
              (!tb->grad || cuda_aligned16(tb->grad));
    if (w4)
        cosine_backward_kernel<4><<<B, cuda_row_threads((size_t)D / 4), 0, s>>>(ta->grad, tb->grad, a, b, mask_data, out->saved, out->grad, B, D);
    else
        cosine_backward_kernel<1><<<B, cuda_row_threads((size_t)D), 0, s>>>(ta->grad, tb->grad, a, b, mask_data, out->saved, out->grad, B, D);
    CUDA_CHECK_LAUNCH();
}
