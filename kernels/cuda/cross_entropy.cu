// cross_entropy.cu: mean over counted rows of -log softmax(logits)[target];
// the twin of kernels/cpu/cross_entropy.c. logits [..., V] are R rows of V;
// targets i32 (R). A row counts when its target is not ignore_index and is
// in [0, V) (an out-of-range target is treated as ignored, never read). With
// no counted row the loss is 0 and no gradient flows.
//
// saved (R + 1): logsumexp of each counted row (0 for the others), then the
// count of counted rows, as on the CPU. The loss is reduced in fp32: one
// block per row for the logsumexp and the row's loss, then one block adds
// the R row losses in a fixed tree; no atomics, deterministic. A row's loss
// is formed as (max - logit[target]) + log(sum), not lse - logit[target]:
// for a confident row lse and the target logit nearly cancel, and the
// rounded lse would leave an absolute error of ulp(lse) in a small loss
// (the CPU works in double instead).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream, cuda_workspace
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE, block_sum, block_max

// Threads of the one block that adds up the row losses.
#define CE_REDUCE_THREADS 1024

namespace {

__device__ inline bool ce_counted(int target, int V, int ignore_index) {
    return target != ignore_index && target >= 0 && target < V;
}

// Block r: lse[r] = log sum_v exp(logits[r, v]), max-subtracted, and
// row_loss[r] = lse[r] - logits[r, target]; both 0 when row r does not count.
__global__ void ce_row_kernel(float *lse, float *row_loss, const float *logits, const int *targets,
                              int V, int ignore_index) {
    size_t r = blockIdx.x;
    int t = targets[r];
    if (!ce_counted(t, V, ignore_index)) {   // uniform over the block
        if (threadIdx.x == 0) { lse[r] = 0.0f; row_loss[r] = 0.0f; }
        return;
    }
    const float *row = logits + r * V;   // (V)
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, row[v]);
    mx = block_max(mx);
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(row[v] - mx);
    float log_s = logf(block_sum(s));
    if (threadIdx.x == 0) {
        lse[r] = mx + log_s;
        row_loss[r] = (mx - row[t]) + log_s;
    }
}

// One block: loss = sum of the counted rows' losses / count; lse[R] = count.
__global__ void ce_reduce_kernel(float *loss, float *lse, const float *row_loss, const int *targets,
                                 size_t R, int V, int ignore_index) {
    float total = 0.0f, count = 0.0f;
    for (size_t r = threadIdx.x; r < R; r += blockDim.x) {
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

// dlogits[r, v] += g * softmax[r, v] - (v == target) g, g = dloss / count.
__global__ void ce_backward_kernel(float *dlogits, const float *logits, const int *targets, const float *lse,
                                   const float *dloss, size_t total, size_t R, int V, int ignore_index) {
    float count = lse[R];
    if (count == 0.0f) return;   // every target ignored: the loss is the constant 0
    float g = dloss[0] / count;
    CUDA_GRID_STRIDE(i, total) {
        size_t r = i / V;
        int v = (int)(i % V), t = targets[r];
        if (!ce_counted(t, V, ignore_index)) continue;
        float d = dlogits[i] + g * expf(logits[i] - lse[r]);
        if (v == t) d -= g;   // a second rounding, as the CPU's drow[t] -= g
        dlogits[i] = d;
    }
}

}  // namespace

extern "C" void cross_entropy_forward_cuda(Tensor *out) {
    const Tensor *logits = out->src[0], *targets = out->src[1];
    int V = logits->shape[logits->ndim - 1];
    size_t R = logits->numel / (size_t)V;
    int ignore = out->iattr[0];
    float *lse = out->saved;                                         // (R), then the count at [R]
    float *row_loss = (float *)cuda_workspace(R * sizeof(float));    // (R)
    ce_row_kernel<<<(unsigned int)R, cuda_row_threads(V), 0, cuda_compute_stream()>>>(
        lse, row_loss, (const float *)logits->data, (const int *)targets->data, V, ignore);
    CUDA_CHECK_LAUNCH();
    ce_reduce_kernel<<<1, CE_REDUCE_THREADS, 0, cuda_compute_stream()>>>(
        (float *)out->data, lse, row_loss, (const int *)targets->data, R, V, ignore);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cross_entropy_backward_cuda(Tensor *out) {
    Tensor *logits = out->src[0];
    const Tensor *targets = out->src[1];
    if (!logits->grad) return;
    int V = logits->shape[logits->ndim - 1];
    size_t R = logits->numel / (size_t)V;
    ce_backward_kernel<<<cuda_grid_for(logits->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        logits->grad,                      // (R, V)
        (const float *)logits->data,       // (R, V)
        (const int *)targets->data,        // (R)
        out->saved,                        // (R + 1)
        out->grad,                         // (1)
        logits->numel, R, V, out->iattr[0]);
    CUDA_CHECK_LAUNCH();
}
