// traj_loss.cu: trajectory loss against K candidate trajectories per
// sample; the twin of kernels/cpu/traj_loss.c (see there and op_traj_loss in
// autograd/ops.h for the definition and the gradient). Same saved layout:
// l_bk (B K floats), per sample the chosen k (best), 0 (weighted) or -1
// (masked out), then the count.
//
// Forward: one thread per (b, k) adds its T waypoints in order, in double
// (into a double workspace, and rounded into saved); then one block
// combines the samples, a thread per sample (its K candidates in the CPU's
// order) and a fixed tree over the samples in double. Backward: one thread
// per element of pred, adding its K candidates in order. Indices come from
// multiply-highs (DivMod32), never a division per element. No atomics.
#include "autograd/ops.h"                 // defines: TRAJ_WEIGHTED, TRAJ_BEST
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream, cuda_workspace
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum_f64
#include "kernels/cuda/vec.cuh"           // defines: DivMod32, divmod32, cuda_grid_for_items

// Threads of the block that combines the samples.
#define TRAJ_REDUCE_THREADS 256

namespace {

struct TrajDims {
    int B, K, T, mode;
    double beta, yaw_weight;
};

TrajDims traj_dims(const Tensor *out) {
    const Tensor *targets = out->src[1];
    TrajDims d = { targets->shape[0], targets->shape[1], targets->shape[2], out->iattr[0], out->fattr[0], out->fattr[1] };
    return d;
}

__device__ inline double smooth_l1(double x, double beta) {
    double ax = fabs(x);
    return ax < beta ? 0.5 * x * x / beta : ax - 0.5 * beta;
}

__device__ inline double smooth_l1_slope(double x, double beta) {
    return fabs(x) < beta ? x / beta : (double)((x > 0) - (x < 0));
}

// An angle difference into [-pi, pi).
__device__ inline double wrap_angle(double a) {
    const double pi = 3.14159265358979323846, two_pi = 2.0 * pi;
    return a - two_pi * floor((a + pi) / two_pi);
}

// Difference c (0 x, 1 y, 2 yaw, wrapped) of one waypoint.
__device__ inline double traj_diff(const float *p, const float *tg, int c) {
    double dd = (double)p[c] - tg[c];
    return c == 2 ? wrap_angle(dd) : dd;
}

// Thread (b, k): l_bk over the T waypoints, 0 for a candidate of weight 0.
__global__ void __launch_bounds__(CUDA_BLOCK) traj_candidate_kernel(double *l64, float *l, const float *pred,
                                                                    const float *targets, const float *weights,
                                                                    TrajDims d, DivMod32 per_sample) {
    uint32_t n = (uint32_t)d.B * d.K;
    for (uint32_t bk = blockIdx.x * blockDim.x + threadIdx.x; bk < n; bk += gridDim.x * blockDim.x) {
        uint32_t b = per_sample.div(bk);
        double s = 0;
        if (weights[bk] > 0) {
            for (int t = 0; t < d.T; t++) {
                const float *p = pred + ((size_t)b * d.T + t) * 3, *tg = targets + ((size_t)bk * d.T + t) * 3;
                s += smooth_l1(traj_diff(p, tg, 0), d.beta) + smooth_l1(traj_diff(p, tg, 1), d.beta) +
                     d.yaw_weight * smooth_l1(traj_diff(p, tg, 2), d.beta);
            }
            s /= d.T;
        }
        l64[bk] = s;
        l[bk] = (float)s;
    }
}

// One block: thread b takes sample b (the weighted mean or the best
// candidate, its K candidates in order, as the CPU), then the samples are
// added in a fixed tree in double; the count and the mean.
__global__ void __launch_bounds__(TRAJ_REDUCE_THREADS) traj_reduce_kernel(float *loss, float *chosen, const double *l64,
                                                                          const float *weights, TrajDims d) {
    double total = 0, count = 0;
    for (int b = threadIdx.x; b < d.B; b += blockDim.x) {
        const float *w = weights + (size_t)b * d.K;
        double wsum = 0, lb = 0, best_l = 0;
        int best = -1;
        for (int k = 0; k < d.K; k++) wsum += w[k];
        for (int k = 0; k < d.K; k++) {
            if (!(w[k] > 0)) continue;
            double lk = l64[(size_t)b * d.K + k];
            lb += w[k] * lk;
            if (best < 0 || lk < best_l) { best = k; best_l = lk; }
        }
        if (!(wsum > 0)) { chosen[b] = -1.0f; continue; }
        chosen[b] = d.mode == TRAJ_BEST ? (float)best : 0.0f;
        total += d.mode == TRAJ_BEST ? best_l : lb / wsum;
        count += 1;
    }
    total = block_sum_f64(total);
    count = block_sum_f64(count);
    if (threadIdx.x == 0) {
        chosen[d.B] = (float)count;
        loss[0] = count > 0 ? (float)(total / count) : 0.0f;
    }
}

// Thread (b, t, c): dpred += d(out) / count / T * scale_c * sum_k c_bk sl1'(d).
// The (b, t, c) of an element by multiply-highs (DivMod32), not divisions.
__global__ void __launch_bounds__(CUDA_BLOCK) traj_backward_kernel(float *dpred, const float *pred, const float *targets,
                                                                   const float *weights, const float *chosen,
                                                                   const float *dloss, TrajDims d, DivMod32 per_waypoints,
                                                                   DivMod32 per_time) {
    float count = chosen[d.B];
    if (count == 0.0f) return;               // the loss is the constant 0
    double g = dloss[0] / count / d.T;
    uint32_t n = (uint32_t)d.B * d.T * 3;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        uint32_t b = per_waypoints.div(i), bt = i / 3u, t = per_time.mod(bt);   // i / 3: a constant divisor
        int c = (int)(i - bt * 3u);
        if (chosen[b] < 0) continue;
        const float *w = weights + (size_t)b * d.K;
        double wsum = 0, acc = 0;
        for (int k = 0; k < d.K; k++) wsum += w[k];
        for (int k = 0; k < d.K; k++) {
            double ck = d.mode == TRAJ_BEST ? (double)(k == (int)chosen[b]) : w[k] / wsum;
            if (!(w[k] > 0) || ck == 0) continue;
            acc += ck * smooth_l1_slope(traj_diff(pred + ((size_t)b * d.T + t) * 3,
                                                  targets + (((size_t)b * d.K + k) * d.T + t) * 3, c), d.beta);
        }
        dpred[i] += (float)(g * (c == 2 ? d.yaw_weight : 1.0) * acc);
    }
}

}  // namespace

extern "C" void traj_loss_forward_cuda(Tensor *out) {
    TrajDims d = traj_dims(out);
    size_t BK = (size_t)d.B * d.K;
    cuda_check_index32(BK * d.T * 3, "traj_loss");
    float *l = out->saved;                                    // (B, K)
    double *l64 = (double *)cuda_workspace(BK * sizeof(double));   // (B, K)
    const float *weights = (const float *)out->src[2]->data;  // (B, K)
    cudaStream_t s = cuda_compute_stream();
    traj_candidate_kernel<<<cuda_grid_for_items(BK), CUDA_BLOCK, 0, s>>>(
        l64, l, (const float *)out->src[0]->data, (const float *)out->src[1]->data, weights, d, divmod32((uint32_t)d.K));
    CUDA_CHECK_LAUNCH();
    traj_reduce_kernel<<<1, TRAJ_REDUCE_THREADS, 0, s>>>((float *)out->data, l + BK, l64, weights, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void traj_loss_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *pred = out->src[0];
    if (!pred->grad) return;
    TrajDims d = traj_dims(out);
    traj_backward_kernel<<<cuda_grid_for_items(pred->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        pred->grad,                                    // (B, T, 3)
        (const float *)pred->data,                     // (B, T, 3)
        (const float *)out->src[1]->data,              // (B, K, T, 3)
        (const float *)out->src[2]->data,              // (B, K)
        out->saved + (size_t)d.B * d.K,                // (B + 1): chosen k, then the count
        out->grad, d,                                  // (1)
        divmod32((uint32_t)d.T * 3), divmod32((uint32_t)d.T));
    CUDA_CHECK_LAUNCH();
}
