// lab/distill_kl.cu: the fused KD loss's variants (see lab.cuh).
//   forward v1: one block per row; thread 0 alone builds the teacher, sorts
//               the top-k ids (insertion sort) and forms the row's loss
//               while the other threads wait; the vocab pass in double exp
//           v2: every thread takes part (a top-k entry each, a bitonic sort,
//               block reductions), float exp in the vocab pass, 128-bit
//               loads (the trainer's, kernels/cuda/distill_kl.cu)
// Both are checked against the CPU twin (kernels/cpu/distill_kl.c); the
// trainer's backward too.
#include <vector>
#include "autograd/ops.h"                 // defines: DISTILL_*, DISTILL_KL_MAX_K
extern "C" {
#include "kernels/cpu/cpu_ops.h"          // defines: distill_kl_forward_cpu, distill_kl_backward_cpu
}
#include "kernels/cuda/cuda_ops.h"        // defines: distill_kl_forward_cuda, distill_kl_backward_cuda
#include "kernels/cuda/lab/lab.cuh"

#define DISTILL_P_MIN 1e-30

namespace v1 {

struct DistillDims {
    int R, V, k;
    int mode, tail, t2;
    double a;
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

}  // namespace v1

namespace {

struct Case {
    int R, V, k, mode, tail;
};

// The op's tensors over host or device buffers.
struct Op {
    Tensor logits, ids, lp, out;
};

Op make_op(const Case &c, void *x, void *ids, void *lp, void *out, void *saved, void *dx, void *seed, Device dev) {
    Op o;
    int ls[2] = { c.R, c.V }, ks[2] = { c.R, c.k }, os[1] = { 1 };
    o.logits = lab_tensor(x, DT_F32, 2, ls);
    o.ids = lab_tensor(ids, DT_I32, 2, ks);
    o.lp = lab_tensor(lp, DT_F32, 2, ks);
    o.out = lab_tensor(out, DT_F32, 1, os);
    o.logits.device = o.ids.device = o.lp.device = o.out.device = dev;
    o.logits.grad = (float *)dx;
    o.out.src[0] = &o.logits; o.out.src[1] = &o.ids; o.out.src[2] = &o.lp; o.out.nsrc = 3;
    o.out.iattr[0] = c.mode; o.out.iattr[1] = c.tail; o.out.iattr[2] = 1;
    o.out.fattr[0] = 0.7f; o.out.fattr[1] = 1.6f; o.out.fattr[2] = 0.3f;
    o.out.saved = (float *)saved;
    o.out.grad = (float *)seed;
    return o;
}

void run(Lab &lab, const Case &c, int reps) {
    printf(" R = %d rows, V = %d, k = %d, mode %d, tail %d\n", c.R, c.V, c.k, c.mode, c.tail);
    size_t nx = (size_t)c.R * c.V, nk = (size_t)c.R * c.k, nsaved = 5 * (size_t)c.R + 1;
    std::vector<float> x(nx), lp(nk), saved(nsaved + 1, 0.0f), dx(nx, 0.0f), out(1), seed(1, 1.0f);
    std::vector<int> ids(nk);
    for (auto &v : x) v = 2.0f * lab_normal(lab);
    for (int r = 0; r < c.R; r++)
        for (int j = 0; j < c.k; j++) {
            unsigned h = (unsigned)((r * 131 + j) * 2654435761u);
            ids[(size_t)r * c.k + j] = j == 3 ? -1 : (int)(h % (unsigned)c.V);   // entry 3 outside the vocab
            lp[(size_t)r * c.k + j] = -1.0f - 0.2f * (float)j;
        }
    // The reference: the CPU twin.
    Op cpu = make_op(c, x.data(), ids.data(), lp.data(), out.data(), saved.data(), dx.data(), seed.data(), DEV_CPU);
    distill_kl_forward_cpu(&cpu.out);
    distill_kl_backward_cpu(&cpu.out);
    std::vector<float> ref_rows(saved.begin() + 4 * c.R, saved.begin() + 5 * c.R), ref_dx = dx;
    float ref_loss = out[0];

    float *d_x = lab_upload(x), *d_lp = lab_upload(lp), *d_saved = lab_upload(std::vector<float>(nsaved + 1, 0.0f));
    float *d_out = lab_upload(std::vector<float>(1, 0.0f)), *d_dx = lab_upload(std::vector<float>(nx, 0.0f));
    float *d_seed = lab_upload(seed);
    int *d_ids = lab_upload(ids);
    Op gpu = make_op(c, d_x, d_ids, d_lp, d_out, d_saved, d_dx, d_seed, DEV_CUDA);
    v1::DistillDims d = { c.R, c.V, c.k, c.mode, c.tail, 1, 0.7 / 1.6, 1.6, 0.3 };
    double *lse = (double *)d_saved, *p_tail = lse + c.R;
    float *row_loss = (float *)(p_tail + c.R);
    cudaStream_t s = cuda_compute_stream();
    int threads = cuda_row_threads((size_t)c.V);

    v1::distill_row_kernel<<<c.R, threads, 0, s>>>(lse, p_tail, row_loss, d_x, d_ids, d_lp, nullptr, d);
    CUDA_CHECK_LAUNCH();
    lab_compare(lab, "forward v1 (thread 0 alone; row losses)", ref_rows, lab_download(row_loss, c.R), 1e-5, 1e-7);
    distill_kl_forward_cuda(&gpu.out);
    lab_compare(lab, "forward v2 (the trainer's; row losses)", ref_rows, lab_download(row_loss, c.R), 1e-5, 1e-7);
    lab_compare(lab, "forward v2: the loss", std::vector<float>(1, ref_loss), lab_download(d_out, 1), 1e-5, 0);
    distill_kl_backward_cuda(&gpu.out);
    lab_compare(lab, "backward v2 (the trainer's)", ref_dx, lab_download(d_dx, nx), 1e-5, 1e-8);

    if (!lab.check_only) {
        double bytes = (double)nx * sizeof(float);
        lab_report("forward v1", lab_time_ms([&] {
            v1::distill_row_kernel<<<c.R, threads, 0, s>>>(lse, p_tail, row_loss, d_x, d_ids, d_lp, nullptr, d);
        }, reps), bytes);
        lab_report("forward v2 (the trainer's)", lab_time_ms([&] { distill_kl_forward_cuda(&gpu.out); }, reps), bytes);
        lab_report("backward v2 (the trainer's)", lab_time_ms([&] { distill_kl_backward_cuda(&gpu.out); }, reps), 3 * bytes);
    }
    for (void *p : { (void *)d_x, (void *)d_lp, (void *)d_saved, (void *)d_out, (void *)d_dx, (void *)d_seed, (void *)d_ids })
        CUDA_CHECK(cudaFree(p));
}

}  // namespace

int main(int argc, char **argv) {
    Lab lab = lab_open(argc, argv, "lab/distill_kl");
    for (int mode = 0; mode < 3; mode++)
        for (int tail = 0; tail < 2; tail++) run(lab, Case{ 6, mode == 1 ? 37 : 40, 8, mode, tail }, 0);
    if (!lab.check_only) {
        run(lab, Case{ 4096, 1024, 8, DISTILL_FORWARD_KL, 1 }, 50);     // the demo's top-k, a from_logs vocabulary
        run(lab, Case{ 1024, 32768, 32, DISTILL_FORWARD_KL, 1 }, 20);   // urban4's top-k, a teacher-sized vocabulary
        run(lab, Case{ 1024, 32768, 256, DISTILL_JSD, 0 }, 20);         // the largest top-k
    }
    return lab_close(lab, "lab/distill_kl");
}
