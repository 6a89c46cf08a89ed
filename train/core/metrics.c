// metrics.c: see metrics.h and docs/metrics.md.
#include "train/core/metrics.h"
#include "train/model/model.h"   // defines: EGO_SCALE_*
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double ade_range(const float *a, const float *b, int n) {
    double s = 0;
    for (int t = 0; t < n; t++) s += hypot((double)a[t * 3] - b[t * 3], (double)a[t * 3 + 1] - b[t * 3 + 1]);
    return n > 0 ? s / n : 0;
}

static int steps_within(double seconds, float hz, int T) {
    int n = (int)lround(seconds * hz);
    return n < 1 ? 1 : (n > T ? T : n);
}

void traj_metrics_add(TrajMetrics *m, const float *pred, const float *gt, const float *teacher,
                      const float *w, int K, int T, float hz) {
    int n1 = steps_within(1.0, hz, T), n3 = steps_within(3.0, hz, T);
    if (gt) {
        m->n_gt += 1;
        m->ade_gt += ade_range(pred, gt, T);
        m->ade_gt_1s += ade_range(pred, gt, n1);
        m->ade_gt_3s += ade_range(pred, gt, n3);
        m->fde_gt += hypot((double)pred[(T - 1) * 3] - gt[(T - 1) * 3], (double)pred[(T - 1) * 3 + 1] - gt[(T - 1) * 3 + 1]);
    }
    if (!teacher) return;
    m->n_teacher += 1;
    double best = INFINITY;
    for (int k = 0; k < K; k++) {
        const float *tk = teacher + (size_t)k * T * 3;
        double ade = ade_range(pred, tk, T);
        m->ade_teacher += w[k] * ade;
        m->ade_teacher_1s += w[k] * ade_range(pred, tk, n1);
        m->ade_teacher_3s += w[k] * ade_range(pred, tk, n3);
        m->fde_teacher += w[k] * hypot((double)pred[(T - 1) * 3] - tk[(T - 1) * 3], (double)pred[(T - 1) * 3 + 1] - tk[(T - 1) * 3 + 1]);
        if (ade < best) best = ade;
    }
    m->min_ade_teacher += best;
}

double traj_metric(const TrajMetrics *m, const char *name) {
    struct { const char *name; double sum; double n; } f[] = {
        { "ade_gt", m->ade_gt, m->n_gt }, { "ade_gt_1s", m->ade_gt_1s, m->n_gt },
        { "ade_gt_3s", m->ade_gt_3s, m->n_gt }, { "fde_gt", m->fde_gt, m->n_gt },
        { "ade_teacher", m->ade_teacher, m->n_teacher }, { "ade_teacher_1s", m->ade_teacher_1s, m->n_teacher },
        { "ade_teacher_3s", m->ade_teacher_3s, m->n_teacher }, { "fde_teacher", m->fde_teacher, m->n_teacher },
        { "min_ade_teacher", m->min_ade_teacher, m->n_teacher },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!strcmp(f[i].name, name)) return f[i].n > 0 ? f[i].sum / f[i].n : NAN;
    return NAN;
}

json_t *traj_metrics_object(const TrajMetrics *m, int with_min) {
    static const char *names[] = { "ade_gt", "ade_gt_1s", "ade_gt_3s", "fde_gt", "ade_teacher",
                                   "ade_teacher_1s", "ade_teacher_3s", "fde_teacher", "min_ade_teacher" };
    int n = with_min ? 9 : 8;
    json_t *o = json_object();
    for (int i = 0; o && i < n; i++)
        if (json_object_set_new(o, names[i], jsonio_real(traj_metric(m, names[i])))) { json_decref(o); o = NULL; }
    return o;
}

void teacher_mean_strided(const float *plans, size_t stride, const float *w, int K, int n, float *out) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += (double)w[k] * plans[(size_t)k * stride + i];
        out[i] = (float)s;
    }
}

void teacher_mean_traj(const float *teacher, const float *w, int K, int T, float *out) {
    teacher_mean_strided(teacher, (size_t)T * 3, w, K, T * 3, out);
}

void baseline_constant_velocity(const float *history, int Th, int T, float hz, float *out) {
    float vx = 0, vy = 0;
    if (Th >= 2) {
        const float *a = history + (Th - 2) * 4, *b = history + (Th - 1) * 4;
        vx = (b[0] - a[0]) * hz;
        vy = (b[1] - a[1]) * hz;
    } else {
        vx = history[3];
    }
    float yaw = (vx != 0 || vy != 0) ? atan2f(vy, vx) : 0.0f;
    for (int t = 0; t < T; t++) {
        float dt = (t + 1) / hz;
        out[t * 3] = vx * dt;
        out[t * 3 + 1] = vy * dt;
        out[t * 3 + 2] = yaw;
    }
}

// Features: the history rows scaled to O(1), a one-hot command, a bias.
static void ego_features(const EgoOnly *e, const float *history, int command, double *x) {
    static const float scale[4] = { EGO_SCALE_X, EGO_SCALE_Y, EGO_SCALE_YAW, EGO_SCALE_SPEED };
    for (int i = 0; i < e->Th * 4; i++) x[i] = history[i] * scale[i % 4];
    for (int c = 0; c < 4; c++) x[e->Th * 4 + c] = command == c;
    x[e->Th * 4 + 4] = 1.0;
}

int ego_only_init(EgoOnly *e, int Th, int T) {
    memset(e, 0, sizeof *e);
    e->Th = Th;
    e->T = T;
    e->n_feat = Th * 4 + 5;
    e->xtx = calloc((size_t)e->n_feat * e->n_feat, sizeof(double));
    e->xty = calloc((size_t)e->n_feat * T * 3, sizeof(double));
    e->coef = calloc((size_t)e->n_feat * T * 3, sizeof(float));
    return e->xtx && e->xty && e->coef ? 0 : -1;
}

void ego_only_add(EgoOnly *e, const float *history, int command, const float *target) {
    int F = e->n_feat, O = e->T * 3;
    double x[F];
    ego_features(e, history, command, x);
    for (int i = 0; i < F; i++) {
        for (int j = 0; j < F; j++) e->xtx[i * F + j] += x[i] * x[j];
        for (int o = 0; o < O; o++) e->xty[i * O + o] += x[i] * target[o];
    }
    e->n_fit++;
}

// Cholesky solve of (A + lambda * mean(diag) I) X = B, A (F, F), B (F, O).
int ego_only_fit(EgoOnly *e, double lambda) {
    int F = e->n_feat, O = e->T * 3;
    if (e->n_fit == 0) return -1;
    double *L = malloc((size_t)F * F * sizeof *L), *y = malloc((size_t)F * sizeof *y);
    if (!L || !y) { free(L); free(y); return -1; }
    double diag = 0;
    for (int i = 0; i < F; i++) diag += e->xtx[i * F + i];
    double ridge = lambda * diag / F + 1e-9;
    memcpy(L, e->xtx, (size_t)F * F * sizeof *L);
    for (int i = 0; i < F; i++) L[i * F + i] += ridge;
    for (int j = 0; j < F; j++) {
        double d = L[j * F + j];
        for (int k = 0; k < j; k++) d -= L[j * F + k] * L[j * F + k];
        if (d <= 0) { free(L); free(y); return -1; }
        L[j * F + j] = sqrt(d);
        for (int i = j + 1; i < F; i++) {
            double s = L[i * F + j];
            for (int k = 0; k < j; k++) s -= L[i * F + k] * L[j * F + k];
            L[i * F + j] = s / L[j * F + j];
        }
    }
    for (int o = 0; o < O; o++) {
        for (int i = 0; i < F; i++) {          // L y = b
            double s = e->xty[i * O + o];
            for (int k = 0; k < i; k++) s -= L[i * F + k] * y[k];
            y[i] = s / L[i * F + i];
        }
        for (int i = F - 1; i >= 0; i--) {     // L^T x = y
            double s = y[i];
            for (int k = i + 1; k < F; k++) s -= L[k * F + i] * y[k];
            y[i] = s / L[i * F + i];
        }
        for (int i = 0; i < F; i++) e->coef[i * O + o] = (float)y[i];
    }
    free(L);
    free(y);
    return 0;
}

void ego_only_predict(const EgoOnly *e, const float *history, int command, float *out) {
    int F = e->n_feat, O = e->T * 3;
    double x[F];
    ego_features(e, history, command, x);
    for (int o = 0; o < O; o++) {
        double s = 0;
        for (int i = 0; i < F; i++) s += x[i] * e->coef[i * O + o];
        out[o] = (float)s;
    }
}

void ego_only_free(EgoOnly *e) {
    free(e->xtx);
    free(e->xty);
    free(e->coef);
    memset(e, 0, sizeof *e);
}

void trace_metrics_add(TraceMetrics *m, const float *logits, int V, int target, const int32_t *topk_ids,
                       const float *topk_logprobs, int k, float t_logged, int majority_token) {
    int argmax = 0;
    double mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) { mx = logits[i]; argmax = i; }
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(logits[i] - mx);
    double lse = mx + log(z);
    m->positions += 1;
    m->correct += argmax == target;
    m->majority_correct += majority_token == target;
    // Teacher at temperature 1: q_j ∝ exp(lp_j * t_logged); the tail holds
    // the logged mass outside the top-k (and entries outside the vocabulary).
    double q[64], p[64], raw_mass = 0, tail_q = 0, p_in = 0;
    int n = k < 63 ? k : 63;
    for (int j = 0; j < n; j++) raw_mass += exp(topk_logprobs[j]);
    double tail_raw = raw_mass < 1 ? 1 - raw_mass : 0;
    double qsum = 0;
    for (int j = 0; j < n; j++) {
        double qj = exp(topk_logprobs[j] * t_logged);
        if (topk_ids[j] < 0 || topk_ids[j] >= V) { tail_raw += exp(topk_logprobs[j]); q[j] = 0; p[j] = 0; continue; }
        q[j] = qj;
        p[j] = exp(logits[topk_ids[j]] - lse);
        p_in += p[j];
        qsum += qj;
    }
    tail_q = pow(tail_raw, t_logged);
    qsum += tail_q;
    double kl = 0;
    for (int j = 0; j < n; j++)
        if (q[j] > 0) kl += q[j] / qsum * (log(q[j] / qsum) - log(fmax(p[j], 1e-30)));
    if (tail_q > 0) kl += tail_q / qsum * (log(tail_q / qsum) - log(fmax(1 - p_in, 1e-30)));
    m->kl_sum += kl;
}
