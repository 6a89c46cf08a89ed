// distill_kl.cu: token distillation against the teacher's logged top-k; the
// twin of kernels/cpu/distill_kl.c, which derives every formula used here
// (teacher re-tempering and tail, student outcomes, each mode's dL/dp and
// the gradient into the logits). Same definitions, same saved layout, same
// double arithmetic:
//
//   saved (5R + 1 floats): per row the logsumexp of u = logits / T and then
//   the student's tail mass, as doubles (4R floats, 8-byte aligned: the
//   arena aligns each slot to 64 bytes); per row its loss (before T^2),
//   fp32; then the number of counted rows.
//
// One block per row. Thread 0 does the O(k) work (the teacher, sorting the
// ids, the row's loss and dL/dp, the same serial code as the CPU); the
// block's threads share the O(V) passes over the vocab (max, logsumexp and
// tail mass, then the gradient), each thread a fixed strided share added in
// double and combined in a fixed shuffle tree. Membership of a vocab entry
// in the top-k is a binary search in the sorted ids in shared memory. One
// thread then adds the row losses in row order (as the CPU does). No
// atomics: the same inputs give the same bits.
#include "autograd/ops.h"                 // defines: DISTILL_*, DISTILL_KL_MAX_K
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_max, cuda_row_threads

#define DISTILL_P_MIN 1e-30

namespace {

struct DistillDims {
    int R, V, k;
    int mode, tail, t2;
    double a;        // t_logged / T: the re-tempering exponent
    double t, beta;
};

// One row's outcomes, in shared memory: the valid top-k entries in top-k
// order, then the tail.
struct DistillRow {
    int n;                                   // valid entries
    int n_out;                               // outcomes; 0: the row adds nothing
    int id[DISTILL_KL_MAX_K];                // (n) student ids of the valid entries
    int order[DISTILL_KL_MAX_K];             // (n) entry indices sorted by (id, index)
    int sorted_id[DISTILL_KL_MAX_K];         // (n) id[order[s]], for the binary search
    double q[DISTILL_KL_MAX_K + 1];          // (n_out) teacher
    double p[DISTILL_KL_MAX_K + 1];          // (n_out) student
    double g[DISTILL_KL_MAX_K + 1];          // (n_out) dL/dp
};

DistillDims distill_dims(const Tensor *out) {
    const Tensor *logits = out->src[0], *ids = out->src[1];
    DistillDims d;
    d.V = logits->shape[logits->ndim - 1];
    d.R = (int)(logits->numel / (size_t)d.V);
    d.k = ids->shape[ids->ndim - 1];
    d.mode = out->iattr[0];
    d.tail = out->iattr[1];
    d.t2 = out->iattr[2];
    d.t = out->fattr[1];
    d.a = (double)out->fattr[0] / d.t;
    d.beta = out->fattr[2];
    return d;
}

__device__ inline double clamped_log(double x) { return log(x > DISTILL_P_MIN ? x : DISTILL_P_MIN); }

// Sum over the block in double, returned to every thread: a butterfly in
// each warp, then one over the warps' partials (fixed trees, as block_sum).
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

// The teacher side of a row (thread 0): valid entries, their sorted order, q.
__device__ void distill_teacher(DistillRow *row, const int *ids, const float *lp, const DistillDims &d) {
    double *s = row->q;                      // (n_out) the log-weights at T, then q in place
    double mass_all = 0, mass_invalid = 0;
    row->n = 0;
    for (int j = 0; j < d.k; j++) {
        double e = exp((double)lp[j]);
        mass_all += e;
        if (ids[j] < 0 || ids[j] >= d.V) { mass_invalid += e; continue; }
        row->id[row->n] = ids[j];
        s[row->n++] = d.a * (double)lp[j];
    }
    row->n_out = row->n;
    if (d.tail) {
        double r = fmax(0.0, 1.0 - mass_all) + mass_invalid;
        s[row->n_out++] = r > 0 ? d.a * log(r) : -INFINITY;
    }
    double smax = -INFINITY;
    for (int o = 0; o < row->n_out; o++) smax = fmax(smax, s[o]);
    if (smax == -INFINITY) { row->n_out = 0; return; }   // no outcome, or a teacher without mass
    double z = 0;
    for (int o = 0; o < row->n_out; o++) z += row->q[o] = exp(s[o] - smax);   // s is q: read, then written
    for (int o = 0; o < row->n_out; o++) row->q[o] /= z;
    for (int j = 0; j < row->n; j++) {       // insertion sort, stable for equal ids
        int at = j;
        while (at > 0 && row->id[row->order[at - 1]] > row->id[j]) { row->order[at] = row->order[at - 1]; at--; }
        row->order[at] = j;
    }
    for (int j = 0; j < row->n; j++) row->sorted_id[j] = row->id[row->order[j]];
}

// tail = 0 (thread 0): the student over the top-k alone, softmax of their u.
__device__ void distill_student_topk(DistillRow *row, const float *x, const DistillDims &d) {
    double umax = -INFINITY;
    for (int j = 0; j < row->n; j++) umax = fmax(umax, (double)x[row->id[j]] / d.t);
    double z = 0;
    for (int j = 0; j < row->n; j++) z += row->p[j] = exp((double)x[row->id[j]] / d.t - umax);
    for (int j = 0; j < row->n; j++) row->p[j] /= z;
}

// The row's loss over its outcomes (thread 0); fills row->g when want_g.
__device__ double distill_row_loss(DistillRow *row, const DistillDims &d, bool want_g) {
    double loss = 0, b = d.beta;
    for (int o = 0; o < row->n_out; o++) {
        double q = row->q[o], p = row->p[o], g;
        if (d.mode == DISTILL_FORWARD_KL) {
            loss += q * (clamped_log(q) - clamped_log(p));
            g = p > DISTILL_P_MIN ? -q / p : 0.0;
        } else if (d.mode == DISTILL_REVERSE_KL) {
            loss += p * (clamped_log(p) - clamped_log(q));
            g = clamped_log(p) - clamped_log(q) + (p > DISTILL_P_MIN ? 1.0 : 0.0);
        } else {
            double m = b * q + (1 - b) * p;
            loss += b * q * (clamped_log(q) - clamped_log(m)) + (1 - b) * p * (clamped_log(p) - clamped_log(m));
            g = (1 - b) * (clamped_log(p) - clamped_log(m) + (p > DISTILL_P_MIN ? 1.0 : 0.0) -
                           (m > DISTILL_P_MIN ? 1.0 : 0.0));
        }
        if (want_g) row->g[o] = g;
    }
    return loss;
}

// The first sorted entry whose id is >= i (n when none).
__device__ inline int distill_lower_bound(const int *sorted_id, int n, int i) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (sorted_id[mid] < i) lo = mid + 1; else hi = mid;
    }
    return lo;
}

__device__ inline bool distill_counted(const float *mask, int r) { return !mask || mask[r] != 0.0f; }

// Block r: lse, p_tail and the loss of row r (zeros when it is not counted).
__global__ void distill_row_kernel(double *lse, double *p_tail, float *row_loss, const float *logits, const int *ids,
                                   const float *lp, const float *mask, DistillDims d) {
    __shared__ DistillRow row;
    __shared__ double s_lse;
    int r = blockIdx.x;
    if (!distill_counted(mask, r)) {         // uniform over the block
        if (threadIdx.x == 0) { lse[r] = p_tail[r] = 0.0; row_loss[r] = 0.0f; }
        return;
    }
    const float *x = logits + (size_t)r * d.V;   // (V)
    if (threadIdx.x == 0) distill_teacher(&row, ids + (size_t)r * d.k, lp + (size_t)r * d.k, d);
    __syncthreads();
    if (row.n_out == 0) {
        if (threadIdx.x == 0) { lse[r] = p_tail[r] = 0.0; row_loss[r] = 0.0f; }
        return;
    }
    if (d.tail) {
        // One pass for the logsumexp of u and the mass off the top-k.
        float xmax = -INFINITY;
        for (int i = threadIdx.x; i < d.V; i += blockDim.x) xmax = fmaxf(xmax, x[i]);
        xmax = block_max(xmax);
        double sum = 0, sum_tail = 0;
        for (int i = threadIdx.x; i < d.V; i += blockDim.x) {
            double e = exp(((double)x[i] - xmax) / d.t);
            sum += e;
            int s = distill_lower_bound(row.sorted_id, row.n, i);
            if (s == row.n || row.sorted_id[s] != i) sum_tail += e;
        }
        sum = block_sum_f64(sum);
        sum_tail = block_sum_f64(sum_tail);
        if (threadIdx.x == 0) {
            s_lse = (double)xmax / d.t + log(sum);
            for (int j = 0; j < row.n; j++) row.p[j] = exp((double)x[row.id[j]] / d.t - s_lse);
            row.p[row.n] = sum_tail / sum;
            lse[r] = s_lse;
            p_tail[r] = row.p[row.n];
        }
    } else if (threadIdx.x == 0) {
        distill_student_topk(&row, x, d);
        lse[r] = p_tail[r] = 0.0;
    }
    if (threadIdx.x == 0) row_loss[r] = (float)distill_row_loss(&row, d, false);
}

// One thread: the counted rows' losses added in row order, in double (the
// CPU's order, so the same row losses give the same bits); saved count.
__global__ void distill_reduce_kernel(float *loss, float *row_loss, const float *mask, DistillDims d) {
    double total = 0;
    int count = 0;
    for (int r = 0; r < d.R; r++) {
        if (!distill_counted(mask, r)) continue;
        total += row_loss[r];
        count++;
    }
    row_loss[d.R] = (float)count;
    double scale = d.t2 ? d.t * d.t : 1.0;
    loss[0] = count ? (float)(scale * total / count) : 0.0f;
}

// Block r: dlogits[r] += coef dL/du, coef = d(out) [T^2] / count / T.
__global__ void distill_backward_kernel(float *dlogits, const float *logits, const int *ids, const float *lp,
                                        const float *mask, const double *lse, const double *p_tail,
                                        const float *row_loss, const float *dloss, DistillDims d) {
    __shared__ DistillRow row;
    __shared__ double s_gp;
    int r = blockIdx.x;
    float count = row_loss[d.R];
    if (count == 0.0f || !distill_counted(mask, r)) return;   // uniform over the block
    double coef = dloss[0] * (d.t2 ? d.t * d.t : 1.0) / count / d.t;
    const float *x = logits + (size_t)r * d.V;   // (V)
    float *dx = dlogits + (size_t)r * d.V;       // (V)
    if (threadIdx.x == 0) {
        distill_teacher(&row, ids + (size_t)r * d.k, lp + (size_t)r * d.k, d);
        if (row.n_out > 0) {
            if (d.tail) {
                for (int j = 0; j < row.n; j++) row.p[j] = exp((double)x[row.id[j]] / d.t - lse[r]);
                row.p[row.n] = p_tail[r];
            } else {
                distill_student_topk(&row, x, d);
            }
            distill_row_loss(&row, d, true);
            double gp = 0;                       // sum_o g_o p_o
            for (int o = 0; o < row.n_out; o++) gp += row.g[o] * row.p[o];
            s_gp = gp;
            // tail = 0: the gradient lives on the top-k ids alone; one
            // thread adds it entry by entry, as the CPU (duplicates add up).
            if (!d.tail)
                for (int j = 0; j < row.n; j++) dx[row.id[j]] += (float)(coef * row.p[j] * (row.g[j] - gp));
        }
    }
    __syncthreads();
    if (row.n_out == 0 || !d.tail) return;
    // tail = 1: dL/du_i = pi_i (G_i - gp), G_i = sum of g over the entries
    // with id i (sorted order, as the CPU's walk), or g_tail off the top-k.
    double lse_r = lse[r], gp = s_gp, g_tail = row.g[row.n];
    for (int i = threadIdx.x; i < d.V; i += blockDim.x) {
        double G = g_tail;
        int s = distill_lower_bound(row.sorted_id, row.n, i);
        if (s < row.n && row.sorted_id[s] == i) {
            G = 0;
            for (; s < row.n && row.sorted_id[s] == i; s++) G += row.g[row.order[s]];
        }
        double pi = exp((double)x[i] / d.t - lse_r);
        dx[i] += (float)(coef * pi * (G - gp));
    }
}

}  // namespace

extern "C" void distill_kl_forward_cuda(Tensor *out) {
    DistillDims d = distill_dims(out);
    const Tensor *mask = out->nsrc > 3 ? out->src[3] : nullptr;
    double *lse = (double *)out->saved, *p_tail = lse + d.R;   // (R), (R)
    float *row_loss = (float *)(p_tail + d.R);                 // (R), then the count at [R]
    const float *mask_data = mask ? (const float *)mask->data : nullptr;
    distill_row_kernel<<<(unsigned int)d.R, cuda_row_threads((size_t)d.V), 0, cuda_compute_stream()>>>(
        lse, p_tail, row_loss,
        (const float *)out->src[0]->data,    // (R, V)
        (const int *)out->src[1]->data,      // (R, k)
        (const float *)out->src[2]->data,    // (R, k)
        mask_data, d);                       // (R) or NULL
    CUDA_CHECK_LAUNCH();
    distill_reduce_kernel<<<1, 1, 0, cuda_compute_stream()>>>((float *)out->data, row_loss, mask_data, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void distill_kl_backward_cuda(Tensor *out) {
    Tensor *logits = out->src[0];
    if (!logits->grad) return;
    DistillDims d = distill_dims(out);
    const Tensor *mask = out->nsrc > 3 ? out->src[3] : nullptr;
    const double *lse = (const double *)out->saved, *p_tail = lse + d.R;
    distill_backward_kernel<<<(unsigned int)d.R, cuda_row_threads((size_t)d.V), 0, cuda_compute_stream()>>>(
        logits->grad,                        // (R, V)
        (const float *)logits->data,         // (R, V)
        (const int *)out->src[1]->data,      // (R, k)
        (const float *)out->src[2]->data,    // (R, k)
        mask ? (const float *)mask->data : nullptr,
        lse, p_tail, (const float *)(p_tail + d.R),   // (R), (R), (R + 1)
        out->grad, d);                       // (1)
    CUDA_CHECK_LAUNCH();
}
