// traj_loss.cu: trajectory loss against K candidate trajectories per
// sample; the twin of kernels/cpu/traj_loss.c (see there and op_traj_loss in
// autograd/ops.h for the definition and the gradient). Same saved layout:
// l_bk (B K floats), per sample the chosen k (best), 0 (weighted) or -1
// (masked out), then the count.
//
// Forward: one thread per (b, k) adds its T waypoints in order, in double
// (into a double workspace, and rounded into saved); then one thread
// combines the samples in the CPU's order (B K values: trivial), so the
// loss has the CPU's bits whenever the l_bk do. Backward: one thread per
// element of pred, adding its K candidates in order. No atomics.
#include "autograd/ops.h"                 // defines: TRAJ_WEIGHTED, TRAJ_BEST
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream, cuda_workspace
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE, cuda_grid_for

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
__global__ void traj_candidate_kernel(double *l64, float *l, const float *pred, const float *targets,
                                      const float *weights, TrajDims d) {
    CUDA_GRID_STRIDE(bk, (size_t)d.B * d.K) {
        size_t b = bk / d.K;
        double s = 0;
        if (weights[bk] > 0) {
            for (int t = 0; t < d.T; t++) {
                const float *p = pred + (b * d.T + t) * 3, *tg = targets + (bk * d.T + t) * 3;
                s += smooth_l1(traj_diff(p, tg, 0), d.beta) + smooth_l1(traj_diff(p, tg, 1), d.beta) +
                     d.yaw_weight * smooth_l1(traj_diff(p, tg, 2), d.beta);
            }
            s /= d.T;
        }
        l64[bk] = s;
        l[bk] = (float)s;
    }
}

// One thread: per sample the weighted mean or the best candidate, then the
// mean over counted samples, in the CPU's order.
__global__ void traj_reduce_kernel(float *loss, float *chosen, const double *l64, const float *weights, TrajDims d) {
    double total = 0;
    int count = 0;
    for (int b = 0; b < d.B; b++) {
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
        count++;
    }
    chosen[d.B] = (float)count;
    loss[0] = count ? (float)(total / count) : 0.0f;
}

// Thread (b, t, c): dpred += d(out) / count / T * scale_c * sum_k c_bk sl1'(d).
__global__ void traj_backward_kernel(float *dpred, const float *pred, const float *targets, const float *weights,
                                     const float *chosen, const float *dloss, TrajDims d) {
    float count = chosen[d.B];
    if (count == 0.0f) return;               // the loss is the constant 0
    double g = dloss[0] / count / d.T;
    CUDA_GRID_STRIDE(i, (size_t)d.B * d.T * 3) {
        size_t b = i / ((size_t)d.T * 3), t = (i / 3) % d.T;
        int c = (int)(i % 3);
        if (chosen[b] < 0) continue;
        const float *w = weights + b * d.K;
        double wsum = 0, acc = 0;
        for (int k = 0; k < d.K; k++) wsum += w[k];
        for (int k = 0; k < d.K; k++) {
            double ck = d.mode == TRAJ_BEST ? (double)(k == (int)chosen[b]) : w[k] / wsum;
            if (!(w[k] > 0) || ck == 0) continue;
            acc += ck * smooth_l1_slope(traj_diff(pred + (b * d.T + t) * 3, targets + ((b * d.K + k) * d.T + t) * 3, c), d.beta);
        }
        dpred[i] += (float)(g * (c == 2 ? d.yaw_weight : 1.0) * acc);
    }
}

}  // namespace

extern "C" void traj_loss_forward_cuda(Tensor *out) {
    TrajDims d = traj_dims(out);
    size_t BK = (size_t)d.B * d.K;
    float *l = out->saved;                                    // (B, K)
    double *l64 = (double *)cuda_workspace(BK * sizeof(double));   // (B, K)
    const float *weights = (const float *)out->src[2]->data;  // (B, K)
    traj_candidate_kernel<<<cuda_grid_for(BK), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        l64, l, (const float *)out->src[0]->data, (const float *)out->src[1]->data, weights, d);
    CUDA_CHECK_LAUNCH();
    traj_reduce_kernel<<<1, 1, 0, cuda_compute_stream()>>>((float *)out->data, l + BK, l64, weights, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void traj_loss_backward_cuda(Tensor *out) {
    Tensor *pred = out->src[0];
    if (!pred->grad) return;
    TrajDims d = traj_dims(out);
    traj_backward_kernel<<<cuda_grid_for(pred->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        pred->grad,                                    // (B, T, 3)
        (const float *)pred->data,                     // (B, T, 3)
        (const float *)out->src[1]->data,              // (B, K, T, 3)
        (const float *)out->src[2]->data,              // (B, K)
        out->saved + (size_t)d.B * d.K,                // (B + 1): chosen k, then the count
        out->grad, d);                                 // (1)
    CUDA_CHECK_LAUNCH();
}
