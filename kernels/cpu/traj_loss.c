// traj_loss.c: trajectory loss against K candidate trajectories per sample
// (op_traj_loss in autograd/ops.h). pred [B, T, 3] (x, y, yaw), targets
// [B, K, T, 3], weights [B, K]:
//   l_bk = 1/T sum_t sl1(dx) + sl1(dy) + yaw_weight sl1(wrap(dyaw)),
//   d = pred - target, sl1 the smooth-L1 of beta, wrap into [-pi, pi).
//   weighted: l_b = sum_k w_bk l_bk / sum_k w_bk; best: l_b = l_bk* with k*
//   the smallest l_bk among the k with w_bk > 0 (ties: lowest k).
//   loss = mean of l_b over the samples whose weights sum > 0.
// Gradient (pred only): wrap has slope 1 away from its jumps, so
//   d l_bk / d pred[b,t,c] = 1/T sl1'(d_c) (times yaw_weight for yaw),
//   sl1'(d) = d / beta if |d| < beta, else sign(d);
// and dL/dpred[b] = d(out) / count * sum_k c_bk d l_bk / d pred[b], with
// c_bk = w_bk / sum_k w_bk (weighted) or [k = k*] (best).
// Candidates of weight 0 are never read (their l_bk is stored as 0), so
// padding with NaN targets cannot reach the loss.
//
// saved (B K + B + 1): l_bk; per sample the chosen k (best) or 0
// (weighted), -1 when masked out; then the count of counted samples.
#include <math.h>
#include "autograd/ops.h"          // defines: TRAJ_WEIGHTED, TRAJ_BEST
#include "kernels/cpu/cpu_ops.h"

typedef struct {
    int B, K, T, mode;
    double beta, yaw_weight;
} TrajDims;

static TrajDims traj_dims(const Tensor *out) {
    const Tensor *targets = out->src[1];
    TrajDims d = { targets->shape[0], targets->shape[1], targets->shape[2], out->iattr[0], out->fattr[0], out->fattr[1] };
    return d;
}

static double smooth_l1(double x, double beta) {
    double ax = fabs(x);
    return ax < beta ? 0.5 * x * x / beta : ax - 0.5 * beta;
}

static double smooth_l1_slope(double x, double beta) {
    return fabs(x) < beta ? x / beta : (x > 0) - (x < 0);
}

// An angle difference into [-pi, pi).
static double wrap_angle(double a) {
    const double two_pi = 2.0 * M_PI;
    return a - two_pi * floor((a + M_PI) / two_pi);
}

// The three per-waypoint differences of candidate k, yaw wrapped.
static void traj_diff(const float *p, const float *tg, double dd[3]) {
    dd[0] = (double)p[0] - tg[0];
    dd[1] = (double)p[1] - tg[1];
    dd[2] = wrap_angle((double)p[2] - tg[2]);
}

// l_bk: pred_b (T, 3) against target_bk (T, 3).
static double traj_candidate_loss(const float *pred_b, const float *target_bk, const TrajDims *d) {
    double s = 0;
    for (int t = 0; t < d->T; t++) {
        double dd[3];
        traj_diff(pred_b + 3 * t, target_bk + 3 * t, dd);
        s += smooth_l1(dd[0], d->beta) + smooth_l1(dd[1], d->beta) + d->yaw_weight * smooth_l1(dd[2], d->beta);
    }
    return s / d->T;
}

static double traj_weight_sum(const float *w_b, int K) {
    double s = 0;
    for (int k = 0; k < K; k++) s += w_b[k];
    return s;
}

void traj_loss_forward_cpu(Tensor *out) {
    TrajDims d = traj_dims(out);
    const float *pred = out->src[0]->data;        // (B, T, 3)
    const float *targets = out->src[1]->data;     // (B, K, T, 3)
    const float *weights = out->src[2]->data;     // (B, K)
    float *l = out->saved;                        // (B, K)
    float *chosen = l + (size_t)d.B * d.K;        // (B), then the count at [B]
    // Serial: B K T is a few thousand waypoints, and the order is fixed.
    double total = 0;
    int count = 0;
    for (int b = 0; b < d.B; b++) {
        const float *w = weights + (size_t)b * d.K;
        double wsum = traj_weight_sum(w, d.K), lb = 0, best_l = 0;
        int best = -1;
        for (int k = 0; k < d.K; k++) {
            size_t bk = (size_t)b * d.K + k;
            double lk = w[k] > 0 ? traj_candidate_loss(pred + (size_t)b * d.T * 3, targets + bk * d.T * 3, &d) : 0.0;
            l[bk] = (float)lk;
            if (!(w[k] > 0)) continue;
            lb += w[k] * lk;
            if (best < 0 || lk < best_l) { best = k; best_l = lk; }
        }
        if (!(wsum > 0)) { chosen[b] = -1.0f; continue; }
        chosen[b] = d.mode == TRAJ_BEST ? (float)best : 0.0f;
        total += d.mode == TRAJ_BEST ? best_l : lb / wsum;
        count++;
    }
    chosen[d.B] = (float)count;
    ((float *)out->data)[0] = count ? (float)(total / count) : 0.0f;
}

void traj_loss_backward_cpu(Tensor *out) {
    Tensor *pred_t = out->src[0];
    cpu_grad_none(out, 1);                 // targets and weights take no gradient
    if (!cpu_grad_begin(out, 0)) return;   // masked samples add nothing: zero first when assigning
    TrajDims d = traj_dims(out);
    const float *pred = pred_t->data;             // (B, T, 3)
    const float *targets = out->src[1]->data;     // (B, K, T, 3)
    const float *weights = out->src[2]->data;     // (B, K)
    const float *chosen = out->saved + (size_t)d.B * d.K;   // (B), then the count at [B]
    float count = chosen[d.B];
    if (count == 0.0f) return;                    // the loss is the constant 0
    float *dpred = pred_t->grad;                  // (B, T, 3)
    double g = ((const float *)out->grad)[0] / count / d.T;
    double slope_scale[3] = { 1.0, 1.0, d.yaw_weight };
    for (int b = 0; b < d.B; b++) {
        if (chosen[b] < 0) continue;
        const float *w = weights + (size_t)b * d.K;
        double wsum = traj_weight_sum(w, d.K);
        for (int t = 0; t < d.T; t++) {
            size_t at = ((size_t)b * d.T + t) * 3;
            double acc[3] = { 0, 0, 0 };          // sum_k c_bk sl1'(d_c)
            for (int k = 0; k < d.K; k++) {
                double c = d.mode == TRAJ_BEST ? (k == (int)chosen[b]) : w[k] / wsum;
                if (!(w[k] > 0) || c == 0) continue;
                double dd[3];
                traj_diff(pred + at, targets + (((size_t)b * d.K + k) * d.T + t) * 3, dd);
                for (int c3 = 0; c3 < 3; c3++) acc[c3] += c * smooth_l1_slope(dd[c3], d.beta);
            }
            for (int c3 = 0; c3 < 3; c3++) dpred[at + c3] += (float)(g * slope_scale[c3] * acc[c3]);
        }
    }
}
