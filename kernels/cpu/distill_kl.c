// distill_kl.c: token distillation against the teacher's logged top-k (see
// op_distill_kl in autograd/ops.h for the definition). Per row of R:
//
//   Teacher q over the outcomes o: the valid top-k entries j (id_j in
//   [0, V)) and, with tail = 1, the tail. Log-probs logged at t_logged are
//   z/t_logged up to a constant, so at T the weight of j is
//   exp(lp_j * a), a = t_logged / T; the tail's raw mass
//   r = max(0, 1 - sum_{all j} exp(lp_j)) + sum_{invalid j} exp(lp_j) is
//   re-tempered the same way (r^a). q is their softmax (computed from the
//   log-weights, max-subtracted).
//   Student p. u = logits / T, pi = softmax(u). tail = 1: p_j = pi[id_j],
//   p_tail = the sum of pi over the ids not among the valid top-k, summed
//   directly in double (1 - sum_j p_j would cancel when the top-k hold
//   nearly all the mass). tail = 0: p_j = softmax over the top-k's own u,
//   which is pi[id_j] / sum_l pi[id_l] without ever forming pi.
//   A duplicated id stays two outcomes, each with pi[id].
//
//   The loss of a row and g_o = dL/dp_o, with C(x) = max(x, 1e-30) inside
//   every log (the derivative of the clamped expression, so 0 where a clamp
//   is active):
//     forward KL: sum q (log C(q) - log C(p));   g = -q / p
//     reverse KL: sum p (log C(p) - log C(q));   g = log C(p) - log C(q) + 1
//     JSD: beta sum q (log C(q) - log C(m)) + (1 - beta) sum p (log C(p) - log C(m)),
//          m = beta q + (1 - beta) p:             g = (1 - beta) (log C(p) - log C(m))
//     (JSD's g: d/dp of beta q log m contributes -beta (1-beta) q / m, of
//     (1-beta) p log p gives (1-beta)(log p + 1), of -(1-beta) p log m gives
//     -(1-beta) log m - (1-beta)^2 p / m; the 1/m terms add to
//     -(1-beta) (beta q + (1-beta) p) / m = -(1-beta), cancelling the +1.)
//
//   Gradient into u. Let S_o be the vocab entries of outcome o, so
//   p_o = sum_{i in S_o} pi_i, and d pi_l / d u_i = pi_l ([l = i] - pi_i):
//     tail = 1: d p_o / d u_i = pi_i [i in S_o] - p_o pi_i, so
//       dL/du_i = pi_i (G_i - sum_o g_o p_o),
//       G_i = sum of g_j over the entries j with id_j = i, or g_tail when i
//       is no top-k id.
//     tail = 0: p~_j = p_j / P, P = sum_l p_l. With c_i the number of
//       entries whose id is i, dP/du_i = pi_i (c_i - P) and
//       d p~_j / d u_i = (pi_i / P) ([i = id_j] - p~_j c_i), so
//       dL/du_i = (pi_i / P) (G_i - c_i sum_l g_l p~_l)
//               = sum over the entries j with id_j = i of p~_j (g_j - sum_l g_l p~_l)
//       (pi_i / P = p~_j for any such j), and 0 off the top-k.
//   dL/dlogits = dL/du / T, times T^2 with t2, times d(out) / count.
//
// saved (5R + 1 floats): per row, as doubles (4R floats; the arena is
// 64-byte aligned), the logsumexp of u and then the student's tail mass (both
// tail = 1 only, else 0); then per row its loss (before T^2), fp32; then the
// number of counted rows. Doubles because the backward rebuilds pi and
// g_tail - sum_o g_o p_o from them, and that difference can cancel to a few
// percent of its terms: fp32 would leave ~1e-5 relative error there. Rows
// with mask 0 are skipped entirely, so a NaN there cannot reach the loss.
#include <math.h>
#include "autograd/ops.h"          // defines: DistillKLConfig's modes, DISTILL_KL_MAX_K
#include "kernels/cpu/cpu_ops.h"

// Below this many logits a parallel region costs more than it saves.
#define DISTILL_PAR_MIN 16384
// The clamp inside every log.
#define DISTILL_P_MIN 1e-30

typedef struct {
    int R, V, k;
    int mode, tail, t2;
    double a;        // t_logged / T: the re-tempering exponent
    double t, beta;
} DistillDims;

// One row's outcomes: the valid top-k entries in top-k order, then the tail.
typedef struct {
    int n;                                   // valid entries
    int n_out;                               // outcomes: n, plus 1 with the tail; 0: the row adds nothing
    int id[DISTILL_KL_MAX_K];                // (n) student ids of the valid entries
    int order[DISTILL_KL_MAX_K];             // (n) entry indices sorted by (id, index)
    double q[DISTILL_KL_MAX_K + 1];          // (n_out) teacher
    double p[DISTILL_KL_MAX_K + 1];          // (n_out) student
    double g[DISTILL_KL_MAX_K + 1];          // (n_out) dL/dp
} DistillRow;

static DistillDims distill_dims(const Tensor *out) {
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

static int distill_counted(const Tensor *out, int r) {
    const Tensor *mask = out->nsrc > 3 ? out->src[3] : NULL;
    return !mask || ((const float *)mask->data)[r] != 0.0f;
}

static double clamped_log(double x) { return log(x > DISTILL_P_MIN ? x : DISTILL_P_MIN); }

// The teacher side of a row: valid entries, their sorted order, and q.
static void distill_teacher(DistillRow *row, const int *ids, const float *lp, const DistillDims *d) {
    double *s = row->q;                      // (n_out) the log-weights at T, then q in place
    double mass_all = 0, mass_invalid = 0;
    row->n = 0;
    for (int j = 0; j < d->k; j++) {
        double e = exp((double)lp[j]);
        mass_all += e;
        if (ids[j] < 0 || ids[j] >= d->V) { mass_invalid += e; continue; }
        row->id[row->n] = ids[j];
        s[row->n++] = d->a * (double)lp[j];
    }
    row->n_out = row->n;
    if (d->tail) {
        double r = fmax(0.0, 1.0 - mass_all) + mass_invalid;
        s[row->n_out++] = r > 0 ? d->a * log(r) : -INFINITY;
    }
    double smax = -INFINITY;
    for (int o = 0; o < row->n_out; o++) smax = fmax(smax, s[o]);
    if (smax == -INFINITY) { row->n_out = 0; return; }   // no outcome, or a teacher without mass
    double z = 0;
    for (int o = 0; o < row->n_out; o++) z += row->q[o] = exp(s[o] - smax);   // s is q: read, then written
    for (int o = 0; o < row->n_out; o++) row->q[o] /= z;
    // Insertion sort: k is small, and equal ids keep their top-k order.
    for (int j = 0; j < row->n; j++) {
        int at = j;
        while (at > 0 && row->id[row->order[at - 1]] > row->id[j]) { row->order[at] = row->order[at - 1]; at--; }
        row->order[at] = j;
    }
}

// tail = 0: the student over the top-k alone, softmax of their u.
static void distill_student_topk(DistillRow *row, const float *logits, const DistillDims *d) {
    double umax = -INFINITY;
    for (int j = 0; j < row->n; j++) umax = fmax(umax, (double)logits[row->id[j]] / d->t);
    double z = 0;
    for (int j = 0; j < row->n; j++) z += row->p[j] = exp((double)logits[row->id[j]] / d->t - umax);
    for (int j = 0; j < row->n; j++) row->p[j] /= z;
}

// tail = 1: one pass over the vocab for the logsumexp of u and the tail mass
// (a merge walk against the sorted ids skips the top-k). Returns lse.
static double distill_student_full(DistillRow *row, const float *logits, const DistillDims *d, double *p_tail) {
    float xmax = logits[0];                  // max of u = max of logits / T (T > 0)
    for (int i = 1; i < d->V; i++) xmax = logits[i] > xmax ? logits[i] : xmax;
    double sum = 0, sum_tail = 0;
    int s = 0;                               // next sorted entry
    for (int i = 0; i < d->V; i++) {
        double e = exp(((double)logits[i] - xmax) / d->t);
        sum += e;
        while (s < row->n && row->id[row->order[s]] < i) s++;
        if (s < row->n && row->id[row->order[s]] == i) continue;
        sum_tail += e;
    }
    double lse = (double)xmax / d->t + log(sum);
    for (int j = 0; j < row->n; j++) row->p[j] = exp((double)logits[row->id[j]] / d->t - lse);
    row->p[row->n] = *p_tail = sum_tail / sum;
    return lse;
}

// The row's loss over its outcomes; fills row->g = dL/dp when want_g.
static double distill_row_loss(DistillRow *row, const DistillDims *d, int want_g) {
    double loss = 0, b = d->beta;
    for (int o = 0; o < row->n_out; o++) {
        double q = row->q[o], p = row->p[o], g;
        if (d->mode == DISTILL_FORWARD_KL) {
            loss += q * (clamped_log(q) - clamped_log(p));
            g = p > DISTILL_P_MIN ? -q / p : 0.0;
        } else if (d->mode == DISTILL_REVERSE_KL) {
            loss += p * (clamped_log(p) - clamped_log(q));
            g = clamped_log(p) - clamped_log(q) + (p > DISTILL_P_MIN ? 1.0 : 0.0);
        } else {
            double m = b * q + (1 - b) * p;
            loss += b * q * (clamped_log(q) - clamped_log(m)) + (1 - b) * p * (clamped_log(p) - clamped_log(m));
            // The exact derivative with the clamps: the +1 of p log p and the
            // -1 of the 1/m terms (see the top) each vanish under their clamp.
            g = (1 - b) * (clamped_log(p) - clamped_log(m) + (p > DISTILL_P_MIN ? 1.0 : 0.0) - (m > DISTILL_P_MIN ? 1.0 : 0.0));
        }
        if (want_g) row->g[o] = g;
    }
    return loss;
}

void distill_kl_forward_cpu(Tensor *out) {
    DistillDims d = distill_dims(out);
    const float *logits = out->src[0]->data;          // (R, V)
    const int *ids = out->src[1]->data;               // (R, k)
    const float *lp = out->src[2]->data;              // (R, k)
    double *lse = (double *)out->saved, *p_tail = lse + d.R;   // (R), (R)
    float *row_loss = (float *)(p_tail + d.R);                 // (R), then the count at [R]
    #pragma omp parallel for schedule(static) if ((size_t)d.R * d.V >= DISTILL_PAR_MIN)
    for (int r = 0; r < d.R; r++) {
        lse[r] = p_tail[r] = 0.0;
        row_loss[r] = 0.0f;
        if (!distill_counted(out, r)) continue;
        DistillRow row;
        distill_teacher(&row, ids + (size_t)r * d.k, lp + (size_t)r * d.k, &d);
        if (row.n_out == 0) continue;
        const float *x = logits + (size_t)r * d.V;
        if (d.tail) {
            lse[r] = distill_student_full(&row, x, &d, &p_tail[r]);
        } else {
            distill_student_topk(&row, x, &d);
        }
        row_loss[r] = (float)distill_row_loss(&row, &d, 0);
    }
    // Rows added in order, in double: the same loss on any thread count.
    double total = 0;
    int count = 0;
    for (int r = 0; r < d.R; r++) {
        if (!distill_counted(out, r)) continue;
        total += row_loss[r];
        count++;
    }
    row_loss[d.R] = (float)count;
    double scale = d.t2 ? d.t * d.t : 1.0;
    ((float *)out->data)[0] = count ? (float)(scale * total / count) : 0.0f;
}

// tail = 1: dL/dx_i += coef pi_i (G_i - gp) over the whole row.
static void distill_grad_full(const DistillRow *row, const float *x, float *dx, double lse, double gp, double coef,
                              const DistillDims *d) {
    double g_tail = row->g[row->n];
    int s = 0;
    for (int i = 0; i < d->V; i++) {
        double G = g_tail;
        while (s < row->n && row->id[row->order[s]] < i) s++;
        if (s < row->n && row->id[row->order[s]] == i) {
            G = 0;
            for (int e = s; e < row->n && row->id[row->order[e]] == i; e++) G += row->g[row->order[e]];
        }
        double pi = exp((double)x[i] / d->t - lse);
        dx[i] += (float)(coef * pi * (G - gp));
    }
}

void distill_kl_backward_cpu(Tensor *out) {
    Tensor *logits_t = out->src[0];
    cpu_grad_none(out, 1);                 // teacher values and the mask take no gradient
    if (!cpu_grad_begin(out, 0)) return;   // masked rows add nothing: zero first when assigning
    DistillDims d = distill_dims(out);
    const double *lse = (const double *)out->saved, *p_tail = lse + d.R;   // (R), (R)
    float count = ((const float *)(p_tail + d.R))[d.R];
    if (count == 0.0f) return;                        // the loss is the constant 0
    const float *logits = logits_t->data;             // (R, V)
    const int *ids = out->src[1]->data;               // (R, k)
    const float *lp = out->src[2]->data;              // (R, k)
    float *dlogits = logits_t->grad;                  // (R, V)
    // d(out) * [T^2] / count from the mean, and 1 / T from u = logits / T.
    double coef = ((const float *)out->grad)[0] * (d.t2 ? d.t * d.t : 1.0) / count / d.t;
    #pragma omp parallel for schedule(static) if ((size_t)d.R * d.V >= DISTILL_PAR_MIN)
    for (int r = 0; r < d.R; r++) {
        if (!distill_counted(out, r)) continue;
        DistillRow row;
        distill_teacher(&row, ids + (size_t)r * d.k, lp + (size_t)r * d.k, &d);
        if (row.n_out == 0) continue;
        const float *x = logits + (size_t)r * d.V;
        float *dx = dlogits + (size_t)r * d.V;
        if (d.tail) {
            for (int j = 0; j < row.n; j++) row.p[j] = exp((double)x[row.id[j]] / d.t - lse[r]);
            row.p[row.n] = p_tail[r];
        } else {
            distill_student_topk(&row, x, &d);
        }
        distill_row_loss(&row, &d, 1);
        double gp = 0;                                // sum_o g_o p_o
        for (int o = 0; o < row.n_out; o++) gp += row.g[o] * row.p[o];
        if (d.tail) { distill_grad_full(&row, x, dx, lse[r], gp, coef, &d); continue; }
        for (int j = 0; j < row.n; j++) dx[row.id[j]] += (float)(coef * row.p[j] * (row.g[j] - gp));
    }
}
