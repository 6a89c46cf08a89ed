// cross_entropy.cu: mean over counted rows of -log softmax(logits)[target];
// the twin of kernels/cpu/cross_entropy.c. logits [..., V] are R rows of V;
// targets i32 (R). A row counts when its target is not ignore_index and is
// in [0, V) (an out-of-range target is treated as ignored, never read). With
// no counted row the loss is 0 and no gradient flows.
//
// saved (R + 1): logsumexp of each counted row (0 for the others), then the
// count of counted rows, as on the CPU.
//
// Forward: one block per row reads the row once, in 128-bit packs when V is
// a multiple of 4, keeping an online (max, sum of exp) pair per thread
// (Milakov and Gimelshein's online softmax, as llm.c): each element costs
// one expf, and the pairs are combined in the fixed trees of
// cuda_common.cuh (block_max, then the sums rescaled to the block's max and
// block_sum). Then one block of 1024 threads adds the R row losses in a
// fixed tree. fp32 with expf throughout: the CPU sums the exps in double,
// and the two agree within test_gpu_parity's REDUCE bound (1e-5 relative,
// ~sqrt(V) ulp). A row's loss is formed as (max - logit[target]) + log(sum),
// not lse - logit[target]: for a confident row lse and the target logit
// nearly cancel, and the rounded lse would leave an absolute error of
// ulp(lse) in a small loss. No atomics: the same inputs give the same bits.
//
// Backward: one block per row, 128-bit packs, dlogits += g softmax - g
// [v == target]: no division per element.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include <cfloat>
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream, cuda_workspace
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum, block_max, cuda_row_threads
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec, store_vec

// Threads of the one block that adds up the row losses.
#define CE_REDUCE_THREADS 256

namespace {

__device__ inline bool ce_counted(int target, int V, int ignore_index) {
    return target != ignore_index && target >= 0 && target < V;
}

// Block r: lse[r] = log sum_v exp(logits[r, v]), and row_loss[r] =
// lse[r] - logits[r, target]; both 0 when row r does not count.
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) ce_row_kernel(float *lse, float *row_loss, const float *logits,
                                                            const int *targets, int V, int ignore_index) {
    using Vf = Vec<float, W>;
    int r = blockIdx.x, t = targets[r];
    if (!ce_counted(t, V, ignore_index)) {   // uniform over the block
        if (threadIdx.x == 0) { lse[r] = 0.0f; row_loss[r] = 0.0f; }
        return;
    }
    const float *row = logits + (size_t)r * V;   // (V)
    // -FLT_MAX rather than -inf, so a -inf logit adds exp(-inf) = 0, not NaN.
    float m = -FLT_MAX, s = 0.0f;
    for (int p = threadIdx.x; p < V / W; p += blockDim.x) {
        Vf x = load_vec<Vf>(row, (size_t)p);
        for (int j = 0; j < W; j++) {
            if (x[j] > m) { s = s * expf(m - x[j]) + 1.0f; m = x[j]; }
            else s += expf(x[j] - m);
        }
    }
    float mx = block_max(m);
    float log_s = logf(block_sum(s * expf(m - mx)));
    if (threadIdx.x == 0) {
        lse[r] = mx + log_s;
        row_loss[r] = (mx - row[t]) + log_s;
    }
}

// One block: loss = sum of the counted rows' losses / count; lse[R] = count.
__global__ void __launch_bounds__(CE_REDUCE_THREADS) ce_reduce_kernel(float *loss, float *lse, const float *row_loss,
                                                                      const int *targets, int R, int V, int ignore_index) {
    float total = 0.0f, count = 0.0f;
    for (int r = threadIdx.x; r < R; r += blockDim.x) {
        if (!ce_counted(targets[r], V, ignore_index)) continue;
        total += row_loss[r];
        count += 1.0f;   // integers in fp32: exact while R < 2^24
    }
    total = block_sum(total);
    count = block_sum(count);
    if (threadIdx.x == 0) {
        lse[R] = count;
        loss[0] = count > 0.0f ? total / count : 0.0f;
    }
}

// Block r: dlogits[r, v] += g * softmax[r, v] - (v == target) g, g = dloss / count.
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) ce_backward_kernel(float *dlogits, const float *logits, const int *targets,
                                                                 const float *lse, const float *dloss, int R, int V,
                                                                 int ignore_index) {
    using Vf = Vec<float, W>;
    float count = lse[R];
    int r = blockIdx.x, t = targets[r];
    if (count == 0.0f || !ce_counted(t, V, ignore_index)) return;   // uniform over the block
    float g = dloss[0] / count, lse_r = lse[r];
    const float *row = logits + (size_t)r * V;   // (V)
    float *drow = dlogits + (size_t)r * V;       // (V)
    for (int p = threadIdx.x; p < V / W; p += blockDim.x) {
        Vf x = load_vec<Vf>(row, (size_t)p), d = load_vec<Vf>(drow, (size_t)p);
        for (int j = 0; j < W; j++) {
            d[j] += g * expf(x[j] - lse_r);
            if (p * W + j == t) d[j] -= g;   // a second rounding, as the CPU's drow[t] -= g
        }
        store_vec<Vf>(drow, (size_t)p, d);
    }
}

}  // namespace

extern "C" void cross_entropy_forward_cuda(Tensor *out) {
    const Tensor *logits = out->src[0], *targets = out->src[1];
    int V = logits->shape[logits->ndim - 1];
    int R = (int)(logits->numel / (size_t)V);
    int ignore = out->iattr[0];
    float *lse = out->saved;                                         // (R), then the count at [R]
    float *row_loss = (float *)cuda_workspace((size_t)R * sizeof(float));   // (R)
    const float *x = (const float *)logits->data;                    // (R, V)
    const int *tg = (const int *)targets->data;                      // (R)
    cudaStream_t s = cuda_compute_stream();
    if (V % 4 == 0 && cuda_aligned16(x)) ce_row_kernel<4><<<R, cuda_row_threads((size_t)V / 4), 0, s>>>(lse, row_loss, x, tg, V, ignore);
    else ce_row_kernel<1><<<R, cuda_row_threads((size_t)V), 0, s>>>(lse, row_loss, x, tg, V, ignore);
    CUDA_CHECK_LAUNCH();
    ce_reduce_kernel<<<1, CE_REDUCE_THREADS, 0, s>>>((float *)out->data, lse, row_loss, tg, R, V, ignore);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cross_entropy_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *logits = out->src[0];
    const Tensor *targets = out->src[1];
    if (!logits->grad) return;
    int V = logits->shape[logits->ndim - 1];
    int R = (int)(logits->numel / (size_t)V);
    const float *x = (const float *)logits->data;     // (R, V)
    const int *tg = (const int *)targets->data;       // (R)
    cudaStream_t s = cuda_compute_stream();
    if (V % 4 == 0 && cuda_aligned16(x) && cuda_aligned16(logits->grad))
        ce_backward_kernel<4><<<R, cuda_row_threads((size_t)V / 4), 0, s>>>(logits->grad, x, tg, out->saved, out->grad, R, V, out->iattr[0]);
    else
        ce_backward_kernel<1><<<R, cuda_row_threads((size_t)V), 0, s>>>(logits->grad, x, tg, out->saved, out->grad, R, V, out->iattr[0]);
    CUDA_CHECK_LAUNCH();
}
