// distill_kl.cu: token distillation against the teacher's logged top-k; the
// twin of kernels/cpu/distill_kl.c, which derives every formula used here
// (teacher re-tempering and tail, student outcomes, each mode's dL/dp and
// the gradient into the logits). Same definitions, same saved layout:
//
//   saved (5R + 1 floats): per row the logsumexp of u = logits / T and then
//   the student's tail mass, as doubles (4R floats, 8-byte aligned: the
//   arena aligns each slot to 64 bytes); per row its loss (before T^2),
//   fp32; then the number of counted rows.
//
// One block of CUDA_BLOCK (>= DISTILL_KL_MAX_K) threads per row, and no
// thread works alone:
//   - the teacher: thread j takes top-k entry j; the masses, the max and
//     the normaliser are block reductions (fixed trees, double);
//   - the top-k ids are sorted by (id, entry) with a bitonic sort in shared
//     memory, every thread taking compare-exchanges; membership of a vocab
//     entry is then a binary search in the sorted ids;
//   - the row's loss terms and sum_o g_o p_o: one outcome per thread, summed
//     in a block reduction;
//   - the O(V) passes over the vocab: each thread a strided share, 128-bit
//     loads when V is a multiple of 4, an online (max, sum of exp) pair
//     (one exp per logit) combined in fixed trees;
//   - the row losses: one block of 1024 threads, a fixed tree.
// No atomics: the same inputs give the same bits.
//
// Precision. The O(V) exps are float expf (each within ~2 ulp), summed in
// double: the logsumexp and the tail mass keep ~1e-7 relative error, below
// the fp32 loss's own. In backward the exponent x/T - lse is formed in
// double before the float exp, because x/T and lse are both large and
// close (a float difference would lose ~ulp(lse)). Double where float is
// not enough: the teacher (1 - sum exp(lp) cancels when the top-k hold
// nearly all the mass), the O(k) student probabilities and the loss terms
// (q log(q / p) cancels as p approaches q), the saved lse and tail mass.
#include "autograd/ops.h"                 // defines: DISTILL_*, DISTILL_KL_MAX_K
#include <cfloat>
#include <cstdint>
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_max, block_sum_f64, block_max_f64
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec, store_vec

#define DISTILL_P_MIN 1e-30
// Threads of the one block that adds up the row losses.
#define DISTILL_REDUCE_THREADS 256

static_assert(CUDA_BLOCK >= DISTILL_KL_MAX_K, "one thread per top-k entry");
static_assert((DISTILL_KL_MAX_K & (DISTILL_KL_MAX_K - 1)) == 0, "the bitonic sort pads k to a power of two");

namespace {

struct DistillDims {
    int R, V, k;
    int mode, tail, t2;
    double a;        // t_logged / T: the re-tempering exponent
    double t, beta;
};

// One row's outcomes, in shared memory, indexed by top-k entry j (an
// invalid entry is no outcome), the tail at [k].
struct DistillRow {
    int n;                                      // valid entries
    int n_out;                                  // 0: no outcome has mass, the row adds nothing
    int id[DISTILL_KL_MAX_K];                   // (k) student id of entry j, -1 when invalid
    unsigned long long key[DISTILL_KL_MAX_K];   // sort keys (id << 32 | j); invalid: all ones
    double q[DISTILL_KL_MAX_K + 1];             // teacher (log-weights first)
    double p[DISTILL_KL_MAX_K + 1];             // student
    double g[DISTILL_KL_MAX_K + 1];             // dL/dp
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

__device__ inline int sorted_id(const DistillRow &row, int s) { return (int)(row.key[s] >> 32); }
__device__ inline int sorted_entry(const DistillRow &row, int s) { return (int)(row.key[s] & 0xffffffffu); }

// Bitonic sort of key[0, n_pad) ascending, n_pad a power of two; every
// thread of the block takes part (the loops are uniform).
__device__ void bitonic_sort(unsigned long long *key, int n_pad) {
    for (int size = 2; size <= n_pad; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n_pad; i += blockDim.x) {
                int j = i ^ stride;
                if (j <= i) continue;
                bool ascending = (i & size) == 0;
                unsigned long long a = key[i], b = key[j];
                if ((a > b) == ascending) { key[i] = b; key[j] = a; }
            }
            __syncthreads();
        }
}

// The teacher side of a row (every thread): valid entries, their sort by
// (id, entry), q. Leaves row.n_out = 0 when no outcome has mass.
__device__ void distill_teacher(DistillRow &row, const int *ids, const float *lp, const DistillDims &d) {
    double mass_all = 0, mass_invalid = 0, valid = 0;
    int n_pad = 1;
    while (n_pad < d.k) n_pad <<= 1;
    for (int j = threadIdx.x; j < n_pad; j += blockDim.x) {
        if (j >= d.k) { row.key[j] = ~0ull; continue; }
        double e = exp((double)lp[j]);
        mass_all += e;
        bool ok = ids[j] >= 0 && ids[j] < d.V;
        row.id[j] = ok ? ids[j] : -1;
        row.key[j] = ok ? ((unsigned long long)ids[j] << 32 | (unsigned int)j) : ~0ull;
        row.q[j] = ok ? d.a * (double)lp[j] : -INFINITY;   // the log-weight at T
        if (ok) valid += 1; else mass_invalid += e;
    }
    mass_all = block_sum_f64(mass_all);
    mass_invalid = block_sum_f64(mass_invalid);
    valid = block_sum_f64(valid);
    double s_tail = -INFINITY;
    if (d.tail) {
        double r = fmax(0.0, 1.0 - mass_all) + mass_invalid;
        if (r > 0) s_tail = d.a * log(r);
    }
    double smax = s_tail;
    for (int j = threadIdx.x; j < d.k; j += blockDim.x) smax = fmax(smax, row.q[j]);
    smax = block_max_f64(smax);
    if (smax == -INFINITY) {                    // no outcome, or a teacher without mass
        if (threadIdx.x == 0) row.n_out = 0;
        __syncthreads();
        return;
    }
    double z = 0;
    for (int j = threadIdx.x; j < d.k; j += blockDim.x) z += row.q[j] = exp(row.q[j] - smax);   // invalid: exp(-inf) = 0
    double e_tail = d.tail ? exp(s_tail - smax) : 0.0;
    z = block_sum_f64(z) + e_tail;
    for (int j = threadIdx.x; j < d.k; j += blockDim.x) row.q[j] /= z;
    if (threadIdx.x == 0) {
        row.q[d.k] = e_tail / z;
        row.n = (int)valid;
        row.n_out = 1;
    }
    bitonic_sort(row.key, n_pad);
    __syncthreads();                            // row is complete (k = 1 sorts nothing)
}

// The first sorted entry whose id is >= i (n when none).
__device__ inline int distill_lower_bound(const DistillRow &row, int n, int i) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (sorted_id(row, mid) < i) lo = mid + 1; else hi = mid;
    }
    return lo;
}

__device__ inline bool distill_member(const DistillRow &row, int i) {
    int s = distill_lower_bound(row, row.n, i);
    return s < row.n && sorted_id(row, s) == i;
}

// tail = 0 (every thread): the student over the top-k alone, softmax of their u.
__device__ void distill_student_topk(DistillRow &row, const float *x, const DistillDims &d) {
    double umax = -INFINITY;
    for (int j = threadIdx.x; j < d.k; j += blockDim.x)
        if (row.id[j] >= 0) umax = fmax(umax, (double)x[row.id[j]] / d.t);
    umax = block_max_f64(umax);
    double z = 0;
    for (int j = threadIdx.x; j < d.k; j += blockDim.x)
        z += row.p[j] = row.id[j] >= 0 ? exp((double)x[row.id[j]] / d.t - umax) : 0.0;
    z = block_sum_f64(z);
    for (int j = threadIdx.x; j < d.k; j += blockDim.x) row.p[j] /= z;
    if (threadIdx.x == 0) row.p[d.k] = 0.0;     // no tail outcome
    __syncthreads();
}

// One outcome's loss term; *g = dL/dp.
__device__ inline double distill_term(double q, double p, const DistillDims &d, double *g) {
    double b = d.beta;
    if (d.mode == DISTILL_FORWARD_KL) {
        *g = p > DISTILL_P_MIN ? -q / p : 0.0;
        return q * (clamped_log(q) - clamped_log(p));
    }
    if (d.mode == DISTILL_REVERSE_KL) {
        *g = clamped_log(p) - clamped_log(q) + (p > DISTILL_P_MIN ? 1.0 : 0.0);
        return p * (clamped_log(p) - clamped_log(q));
    }
    double m = b * q + (1 - b) * p;
    *g = (1 - b) * (clamped_log(p) - clamped_log(m) + (p > DISTILL_P_MIN ? 1.0 : 0.0) - (m > DISTILL_P_MIN ? 1.0 : 0.0));
    return b * q * (clamped_log(q) - clamped_log(m)) + (1 - b) * p * (clamped_log(p) - clamped_log(m));
}

// The row's loss over its outcomes (every thread gets it); fills row.g.
__device__ double distill_row_loss(DistillRow &row, const DistillDims &d) {
    double loss = 0;
    for (int o = threadIdx.x; o <= d.k; o += blockDim.x) {
        bool outcome = o < d.k ? row.id[o] >= 0 : d.tail != 0;
        if (outcome) loss += distill_term(row.q[o], row.p[o], d, &row.g[o]);
        else row.g[o] = 0.0;
    }
    return block_sum_f64(loss);
}

__device__ inline bool distill_counted(const float *mask, int r) { return !mask || mask[r] != 0.0f; }

// Block r: lse, p_tail and the loss of row r (zeros when it is not counted).
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) distill_row_kernel(double *lse, double *p_tail, float *row_loss,
                                                                 const float *logits, const int *ids, const float *lp,
                                                                 const float *mask, DistillDims d) {
    using Vf = Vec<float, W>;
    __shared__ DistillRow row;
    int r = blockIdx.x;
    if (!distill_counted(mask, r)) {            // uniform over the block
        if (threadIdx.x == 0) { lse[r] = p_tail[r] = 0.0; row_loss[r] = 0.0f; }
        return;
    }
    const float *x = logits + (size_t)r * d.V;  // (V)
    distill_teacher(row, ids + (size_t)r * d.k, lp + (size_t)r * d.k, d);
    if (row.n_out == 0) {
        if (threadIdx.x == 0) { lse[r] = p_tail[r] = 0.0; row_loss[r] = 0.0f; }
        return;
    }
    double row_lse = 0.0;
    if (d.tail) {
        // One pass for the logsumexp of u and the mass off the top-k: an
        // online max per thread, the sums rescaled when it grows.
        float inv_t = (float)(1.0 / d.t), m = -FLT_MAX;
        double sum = 0, sum_tail = 0;
        for (int pk = threadIdx.x; pk < d.V / W; pk += blockDim.x) {
            Vf xv = load_vec<Vf>(x, (size_t)pk);
            for (int j = 0; j < W; j++) {
                if (xv[j] > m) {
                    double c = expf((m - xv[j]) * inv_t);
                    sum *= c;
                    sum_tail *= c;
                    m = xv[j];
                }
                double e = expf((xv[j] - m) * inv_t);
                sum += e;
                if (!distill_member(row, pk * W + j)) sum_tail += e;
            }
        }
        float xmax = block_max(m);
        double c = expf((m - xmax) * inv_t);
        sum = block_sum_f64(sum * c);
        sum_tail = block_sum_f64(sum_tail * c);
        row_lse = (double)xmax / d.t + log(sum);
        for (int j = threadIdx.x; j < d.k; j += blockDim.x)
            row.p[j] = row.id[j] >= 0 ? exp((double)x[row.id[j]] / d.t - row_lse) : 0.0;
        if (threadIdx.x == 0) {
            row.p[d.k] = sum_tail / sum;
            lse[r] = row_lse;
            p_tail[r] = row.p[d.k];
        }
        __syncthreads();
    } else {
        distill_student_topk(row, x, d);
        if (threadIdx.x == 0) lse[r] = p_tail[r] = 0.0;
    }
    double loss = distill_row_loss(row, d);
    if (threadIdx.x == 0) row_loss[r] = (float)loss;
}

// One block: the counted rows' losses added in double in a fixed tree;
// the count into saved; the mean (times T^2) into the output.
__global__ void __launch_bounds__(DISTILL_REDUCE_THREADS) distill_reduce_kernel(float *loss, float *row_loss,
                                                                                const float *mask, DistillDims d) {
    double total = 0, count = 0;
    for (int r = threadIdx.x; r < d.R; r += blockDim.x) {
        if (!distill_counted(mask, r)) continue;
        total += row_loss[r];
        count += 1;
    }
    total = block_sum_f64(total);
    count = block_sum_f64(count);
    if (threadIdx.x == 0) {
        row_loss[d.R] = (float)count;
        double scale = d.t2 ? d.t * d.t : 1.0;
        loss[0] = count > 0 ? (float)(scale * total / count) : 0.0f;
    }
}

// Block r: dlogits[r] += coef dL/du, coef = d(out) [T^2] / count / T.
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) distill_backward_kernel(float *dlogits, const float *logits, const int *ids,
                                                                      const float *lp, const float *mask, const double *lse,
                                                                      const double *p_tail, const float *row_loss,
                                                                      const float *dloss, DistillDims d) {
    using Vf = Vec<float, W>;
    __shared__ DistillRow row;
    int r = blockIdx.x;
    float count = row_loss[d.R];
    if (count == 0.0f || !distill_counted(mask, r)) return;   // uniform over the block
    double coef = dloss[0] * (d.t2 ? d.t * d.t : 1.0) / count / d.t;
    const float *x = logits + (size_t)r * d.V;   // (V)
    float *dx = dlogits + (size_t)r * d.V;       // (V)
    distill_teacher(row, ids + (size_t)r * d.k, lp + (size_t)r * d.k, d);
    if (row.n_out == 0) return;
    double lse_r = lse[r];
    if (d.tail) {
        for (int j = threadIdx.x; j < d.k; j += blockDim.x)
            row.p[j] = row.id[j] >= 0 ? exp((double)x[row.id[j]] / d.t - lse_r) : 0.0;
        if (threadIdx.x == 0) row.p[d.k] = p_tail[r];
        __syncthreads();
    } else {
        distill_student_topk(row, x, d);
    }
    distill_row_loss(row, d);                    // fills row.g
    double gp = 0;                               // sum_o g_o p_o
    for (int o = threadIdx.x; o <= d.k; o += blockDim.x) gp += row.g[o] * row.p[o];
    gp = block_sum_f64(gp);                      // also the barrier after row.g
    if (!d.tail) {
        // The gradient lives on the top-k ids alone. The leader of each run
        // of equal ids in sorted order adds the run's entries one by one in
        // entry order, as the CPU does (duplicates add up, never race).
        for (int s = threadIdx.x; s < row.n; s += blockDim.x) {
            int id = sorted_id(row, s);
            if (s > 0 && sorted_id(row, s - 1) == id) continue;
            for (int u = s; u < row.n && sorted_id(row, u) == id; u++) {
                int j = sorted_entry(row, u);
                dx[id] += (float)(coef * row.p[j] * (row.g[j] - gp));
            }
        }
        return;
    }
    // tail = 1: dL/du_i = pi_i (G_i - gp), G_i = sum of g over the entries
    // with id i (sorted order, as the CPU's walk), or g_tail off the top-k.
    double g_tail = row.g[d.k], inv_t = 1.0 / d.t;
    for (int pk = threadIdx.x; pk < d.V / W; pk += blockDim.x) {
        Vf xv = load_vec<Vf>(x, (size_t)pk), dv = load_vec<Vf>(dx, (size_t)pk);
        for (int j = 0; j < W; j++) {
            int i = pk * W + j;
            double G = g_tail;
            int s = distill_lower_bound(row, row.n, i);
            if (s < row.n && sorted_id(row, s) == i) {
                G = 0;
                for (; s < row.n && sorted_id(row, s) == i; s++) G += row.g[sorted_entry(row, s)];
            }
            float pi = expf((float)((double)xv[j] * inv_t - lse_r));
            dv[j] += (float)(coef * pi * (G - gp));
        }
        store_vec<Vf>(dx, (size_t)pk, dv);
    }
}

}  // namespace

extern "C" void distill_kl_forward_cuda(Tensor *out) {
    DistillDims d = distill_dims(out);
    const Tensor *mask = out->nsrc > 3 ? out->src[3] : nullptr;
    double *lse = (double *)out->saved, *p_tail = lse + d.R;   // (R), (R)
    float *row_loss = (float *)(p_tail + d.R);                 // (R), then the count at [R]
    const float *mask_data = mask ? (const float *)mask->data : nullptr;   // (R) or NULL
    const float *logits = (const float *)out->src[0]->data;   // (R, V)
    const int *ids = (const int *)out->src[1]->data;          // (R, k)
    const float *lp = (const float *)out->src[2]->data;       // (R, k)
    cudaStream_t s = cuda_compute_stream();
    if (d.V % 4 == 0 && cuda_aligned16(logits))
        distill_row_kernel<4><<<d.R, CUDA_BLOCK, 0, s>>>(lse, p_tail, row_loss, logits, ids, lp, mask_data, d);
    else
        distill_row_kernel<1><<<d.R, CUDA_BLOCK, 0, s>>>(lse, p_tail, row_loss, logits, ids, lp, mask_data, d);
    CUDA_CHECK_LAUNCH();
    distill_reduce_kernel<<<1, DISTILL_REDUCE_THREADS, 0, s>>>((float *)out->data, row_loss, mask_data, d);
    CUDA_CHECK_LAUNCH();
}

extern "C" void distill_kl_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *logits = out->src[0];
    if (!logits->grad) return;
    DistillDims d = distill_dims(out);
    const Tensor *mask = out->nsrc > 3 ? out->src[3] : nullptr;
    const double *lse = (const double *)out->saved, *p_tail = lse + d.R;   // (R), (R)
    const float *row_loss = (const float *)(p_tail + d.R);                 // (R + 1)
    const float *mask_data = mask ? (const float *)mask->data : nullptr;
    const float *x = (const float *)logits->data;             // (R, V)
    const int *ids = (const int *)out->src[1]->data;          // (R, k)
    const float *lp = (const float *)out->src[2]->data;       // (R, k)
    cudaStream_t s = cuda_compute_stream();
    if (d.V % 4 == 0 && cuda_aligned16(x) && cuda_aligned16(logits->grad))
        distill_backward_kernel<4><<<d.R, CUDA_BLOCK, 0, s>>>(logits->grad, x, ids, lp, mask_data, lse, p_tail, row_loss, out->grad, d);
    else
        distill_backward_kernel<1><<<d.R, CUDA_BLOCK, 0, s>>>(logits->grad, x, ids, lp, mask_data, lse, p_tail, row_loss, out->grad, d);
    CUDA_CHECK_LAUNCH();
}
