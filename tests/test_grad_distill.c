// test_grad_distill.c: the distillation losses (distill_kl, traj_loss,
// cosine_loss). Finite-difference gradient checks of each; the re-tempering
// and tail-bucket arithmetic, best-of-K, the yaw wrap and the cosine clamp
// checked on hand-computable cases; masked rows and samples; and forward
// values and gradients against PyTorch from the committed fixture
// tests/fixtures/losses.bin (scripts/gen_loss_fixtures.py, which documents
// the format; CI needs no torch), on the CPU and, when a GPU is present, on
// the CUDA twins (twice, for the same bits). Run from the repo root;
// DISTIL_TEST_VERBOSE=1 prints each fixture case's worst error.
#include <float.h>
#include <stdint.h>
#include <string.h>
#include "kernels/backend.h"   // defines: backend_from_host, backend_cuda_device_count
#include "train/selftest/fixture.h"   // defines: Fixture, fixture_load, fx_find
#include "train/selftest/opsuite.h"   // defines: opsuite_run, opsuite_fixture_tol, fx_worst_error
#include "tests/gradcheck.h"

static Rng rng;

// Each loss is an O(1..5) scalar computed in double and rounded once to
// fp32 (~6e-8 relative); the gradcheck weighs it by a random R (|R| up to
// ~3), so through the step 2 eps = 2e-2 that is up to ~2e-5 absolute in a
// numeric gradient, ~2e-3 relative to the floor 1e-2 (the gradients are
// 1e-3..1e-1). traj_loss is piecewise quadratic and the test data keep
// every difference >= 0.05 from a kink or a wrap, where central
// differences are exact; cosine_loss is smooth, with truncation error
// (eps/|a|)^2/6 ~ 1e-6 for |a| ~ 4. Worst over 1000 seeds: 1.9e-3; 5e-3
// still fails on any wrong factor, sign or term (errors >= 1e-1).
#define LOSS_EPS 1e-2
#define LOSS_FLOOR 1e-2
#define LOSS_BOUND 5e-3
// Hand-computed values: the kernels work in double and round the loss and
// each gradient to fp32 once (6e-8), from fp32 inputs (log(0.64) etc.
// rounded, 6e-8 relative each). 1e-6 is >10x both.
#define HAND_BOUND 1e-6

static float *f32(const Tensor *t) { return (float *)t->data; }

// ---- distill_kl: gradchecks --------------------------------------------------
// distill_kl's loss reaches ~5 (reverse KL against a small teacher tail,
// times T^2 = 2.56), so its fp32 rounding, through the random weight of the
// gradcheck (|R| up to ~3) and the step, is up to ~6e-8 * 15 / (2 eps): a
// larger step, 2e-2, keeps that ~2e-5 absolute (2e-3 of the floor), while
// the truncation error of the smooth loss in u = logits / 1.6 stays
// ~(eps / T)^2 / 6 ~ 3e-5 relative. 1e-2 is ~3x the worst seen over 1000
// seeds (3.1e-3) and still fails on any wrong term or factor.
#define DISTILL_EPS 2e-2
#define DISTILL_BOUND 1e-2

enum { DK_B = 2, DK_S = 3, DK_R = DK_B * DK_S, DK_V = 9, DK_K = 4 };

typedef struct {
    DistillKLConfig cfg;
    int use_mask;
} DkCase;

static Tensor *build_distill(Graph *g, Tensor **in, void *ctx) {
    const DkCase *c = ctx;
    return op_distill_kl(g, in[0], in[1], in[2], c->use_mask ? in[3] : NULL, &c->cfg);
}

// Teacher top-k per row: the k largest log-probs of a random teacher over 3k
// outcomes at t_logged (so sum exp(lp) < 1 and a tail remains), on distinct
// student ids; entry `invalid_at[r]` (if >= 0) is -1, outside the student
// vocab. Deterministic: its own fixed-seed stream.
static void make_teacher(int *ids, float *lp, int rows, int k, int V, float t_logged, const int *invalid_at) {
    Rng data;
    rng_seed(&data, 7001);
    for (int r = 0; r < rows; r++) {
        double z[3 * DK_K * 4], mx = -INFINITY, s = 0;
        int n = 3 * k;
        for (int i = 0; i < n; i++) { z[i] = 2.0 * rng_normal(&data) / t_logged; mx = fmax(mx, z[i]); }
        for (int i = 0; i < n; i++) s += exp(z[i] - mx);
        for (int j = 0; j < k; j++) {        // selection of the k largest, descending
            int best = 0;
            for (int i = 1; i < n; i++) if (z[i] > z[best]) best = i;
            lp[r * k + j] = (float)(z[best] - mx - log(s));
            z[best] = -INFINITY;
        }
        for (int j = 0; j < k; j++) {        // distinct ids: a partial shuffle of 0..V-1
            int again;
            do {
                ids[r * k + j] = (int)rng_below(&data, (uint64_t)V);
                again = 0;
                for (int l = 0; l < j; l++) again |= ids[r * k + l] == ids[r * k + j];
            } while (again);
        }
        if (invalid_at && invalid_at[r] >= 0) ids[r * k + invalid_at[r]] = -1;
    }
}

static void test_distill_kl_gradcheck(void) {
    static const int invalid_at[DK_R] = { 1, -1, 3, 0, -1, 2 };
    static const float mask[DK_R] = { 1, 1, 0, 1, 1, 1 };    // row 2 ignored
    int ids[DK_R * DK_K];
    float lp[DK_R * DK_K];
    make_teacher(ids, lp, DK_R, DK_K, DK_V, 0.7f, invalid_at);
    static const char *modes[] = { "forward KL", "reverse KL", "JSD" };
    for (int mode = 0; mode < 3; mode++)
        for (int tail = 0; tail < 2; tail++)
            for (int t2 = 0; t2 < 2; t2++) {
                DkCase c = { { .t_logged = 0.7f, .t = 1.6f, .mode = mode, .beta = 0.3f, .tail = tail, .t2 = t2 }, 1 };
                GcInput spec[] = {
                    { "logits", DT_F32, 3, { DK_B, DK_S, DK_V }, 1, .scale = 2.0f },
                    { "topk_ids", DT_I32, 3, { DK_B, DK_S, DK_K }, 0, .ivalues = ids },
                    { "topk_logprobs", DT_F32, 3, { DK_B, DK_S, DK_K }, 0, .values = lp },
                    { "mask", DT_F32, 2, { DK_B, DK_S }, 0, .values = mask },
                };
                GcResult r = gradcheck(spec, 4, build_distill, &c, &rng, DISTILL_EPS, LOSS_FLOOR);
                if (r.max_rel_err > DISTILL_BOUND) fprintf(stderr, "  %s, tail %d, t2 %d:\n", modes[mode], tail, t2);
                CHECK_GRAD(r, spec, DISTILL_BOUND);
            }
}

// A duplicated id (ops.h: each entry its own outcome) and no mask.
static void test_distill_kl_duplicate_ids(void) {
    int ids[DK_R * DK_K];
    float lp[DK_R * DK_K];
    make_teacher(ids, lp, DK_R, DK_K, DK_V, 1.0f, NULL);
    ids[1] = ids[0];
    ids[DK_K + 3] = ids[DK_K + 1];
    for (int mode = 0; mode < 3; mode++)
        for (int tail = 0; tail < 2; tail++) {
            DkCase c = { { .t_logged = 1.0f, .t = 0.8f, .mode = mode, .beta = 0.6f, .tail = tail, .t2 = 1 }, 0 };
            GcInput spec[] = {
                { "logits", DT_F32, 2, { DK_R, DK_V }, 1, .scale = 1.5f },
                { "topk_ids", DT_I32, 2, { DK_R, DK_K }, 0, .ivalues = ids },
                { "topk_logprobs", DT_F32, 2, { DK_R, DK_K }, 0, .values = lp },
            };
            GcResult r = gradcheck(spec, 3, build_distill, &c, &rng, DISTILL_EPS, LOSS_FLOOR);
            if (r.max_rel_err > DISTILL_BOUND) fprintf(stderr, "  mode %d, tail %d:\n", mode, tail);
            CHECK_GRAD(r, spec, DISTILL_BOUND);
        }
}

// ---- distill_kl: the arithmetic by hand ---------------------------------------

// One row of V logits against k top-k entries; returns the loss and leaves
// d(loss)/d(logits) in dlogits (NULL: not wanted). Backward runs twice
// without zeroing and must give exactly twice the gradient: it accumulates.
static double distill_one(const DistillKLConfig *cfg, const float *logits, int V, const int *ids, const float *lp, int k,
                          float *dlogits) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_param(g, "logits", 2, (int[]){ 1, V }, INIT_ZEROS, 0, 0);
    Tensor *ti = graph_input(g, "ids", DT_I32, 2, (int[]){ 1, k });
    Tensor *tl = graph_input(g, "lp", DT_F32, 2, (int[]){ 1, k });
    Tensor *loss = op_distill_kl(g, x, ti, tl, NULL, cfg);
    if (graph_plan(g)) { fprintf(stderr, "plan failed\n"); exit(1); }
    memcpy(x->data, logits, V * sizeof(float));
    memcpy(ti->data, ids, k * sizeof(int));
    memcpy(tl->data, lp, k * sizeof(float));
    graph_forward(g);
    double value = f32(loss)[0];
    if (dlogits) {
        graph_zero_grad(g);
        graph_backward(g, loss);
        memcpy(dlogits, x->grad, V * sizeof(float));
        graph_backward(g, loss);
        for (int i = 0; i < V; i++)
            CHECK(x->grad[i] == 2.0f * dlogits[i], "backward does not accumulate: grad[%d] %g after two, %g after one",
                  i, x->grad[i], dlogits[i]);
    }
    graph_free(g);
    return value;
}

// logits = T log(p): then softmax(logits / T) = p exactly (up to fp32).
static void logits_for(float *logits, const double *p, int V, float t) {
    for (int i = 0; i < V; i++) logits[i] = (float)(t * log(p[i]));
}

static double kl(const double *q, const double *p, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += q[i] * log(q[i] / p[i]);
    return s;
}

// k = 2, lp = log(0.64), log(0.16) logged at t_logged = 1, read at T = 2:
// re-tempering takes square roots (0.8, 0.4), the tail's raw mass
// 1 - 0.64 - 0.16 = 0.2 becomes sqrt(0.2), and then all three renormalise.
// Without the tail: (0.8, 0.4) / 1.2 = (2/3, 1/3). A student equal to
// that teacher has loss 0 and no gradient in every mode; another student
// gives KL by hand.
static void test_distill_kl_retemper_and_tail(void) {
    const int ids[2] = { 0, 1 };
    const float lp[2] = { logf(0.64f), logf(0.16f) };
    float logits[3], d[3];
    double z = 0.8 + 0.4 + sqrt(0.2);
    double q_tail[3] = { 0.8 / z, 0.4 / z, sqrt(0.2) / z }, q_notail[2] = { 2.0 / 3, 1.0 / 3 };
    for (int mode = 0; mode < 3; mode++) {
        DistillKLConfig cfg = { .t_logged = 1.0f, .t = 2.0f, .mode = mode, .beta = 0.4f, .tail = 1, .t2 = 0 };
        logits_for(logits, q_tail, 3, cfg.t);
        double loss = distill_one(&cfg, logits, 3, ids, lp, 2, d);
        CHECK(fabs(loss) < HAND_BOUND, "mode %d, tail: student = teacher gives loss %g", mode, loss);
        for (int i = 0; i < 3; i++) CHECK(fabs(d[i]) < HAND_BOUND, "mode %d, tail: grad[%d] = %g", mode, i, d[i]);
        cfg.tail = 0;
        double p3[3] = { q_notail[0] * 0.5, q_notail[1] * 0.5, 0.5 };   // the third id is outside the top-k
        logits_for(logits, p3, 3, cfg.t);
        loss = distill_one(&cfg, logits, 3, ids, lp, 2, d);
        CHECK(fabs(loss) < HAND_BOUND, "mode %d, no tail: student = teacher gives loss %g", mode, loss);
        for (int i = 0; i < 3; i++) CHECK(fabs(d[i]) < HAND_BOUND, "mode %d, no tail: grad[%d] = %g", mode, i, d[i]);
    }
    // Student (0.5, 0.3, 0.2): forward KL with the tail over all three;
    // without it over (0.5, 0.3) / 0.8. Reverse KL swaps the arguments.
    double p[3] = { 0.5, 0.3, 0.2 }, p_renorm[2] = { 0.625, 0.375 };
    logits_for(logits, p, 3, 2.0f);
    struct { int mode, tail; double want; } hand[] = {
        { DISTILL_FORWARD_KL, 1, kl(q_tail, p, 3) },
        { DISTILL_FORWARD_KL, 0, kl(q_notail, p_renorm, 2) },
        { DISTILL_REVERSE_KL, 1, kl(p, q_tail, 3) },
        { DISTILL_REVERSE_KL, 0, kl(p_renorm, q_notail, 2) },
    };
    for (size_t h = 0; h < sizeof hand / sizeof hand[0]; h++) {
        DistillKLConfig cfg = { .t_logged = 1.0f, .t = 2.0f, .mode = hand[h].mode, .tail = hand[h].tail };
        double loss = distill_one(&cfg, logits, 3, ids, lp, 2, NULL);
        CHECK(test_rel_err(loss, hand[h].want, 1e-3) < HAND_BOUND, "mode %d tail %d: loss %.9g, want %.9g",
              hand[h].mode, hand[h].tail, loss, hand[h].want);
    }
    // JSD(beta) by hand, with the tail: m = beta q + (1 - beta) p.
    double beta = 0.25, m[3], want = 0;
    for (int i = 0; i < 3; i++) m[i] = beta * q_tail[i] + (1 - beta) * p[i];
    want = beta * kl(q_tail, m, 3) + (1 - beta) * kl(p, m, 3);
    DistillKLConfig jsd = { .t_logged = 1.0f, .t = 2.0f, .mode = DISTILL_JSD, .beta = (float)beta, .tail = 1 };
    double loss = distill_one(&jsd, logits, 3, ids, lp, 2, NULL);
    CHECK(test_rel_err(loss, want, 1e-3) < HAND_BOUND, "JSD: loss %.9g, want %.9g", loss, want);
}

// At T = t_logged the teacher is the logged distribution itself, the tail
// holding 1 - sum exp(lp). An entry outside the student vocab (id -1) adds
// its mass to the tail; without the tail it is dropped.
static void test_distill_kl_tail_mass(void) {
    float logits[3], d[3];
    const int ids[2] = { 0, 1 };
    const float lp[2] = { logf(0.64f), logf(0.16f) };
    double teacher[3] = { 0.64, 0.16, 0.2 };
    logits_for(logits, teacher, 3, 1.3f);
    DistillKLConfig cfg = { .t_logged = 1.3f, .t = 1.3f, .mode = DISTILL_FORWARD_KL, .tail = 1 };
    double loss = distill_one(&cfg, logits, 3, ids, lp, 2, d);
    CHECK(fabs(loss) < HAND_BOUND, "tail = 1 - sum exp(lp): loss %g", loss);
    // ids {0, -1}, lp {log 0.5, log 0.3}: tail = (1 - 0.8) + 0.3 = 0.5, so
    // the teacher is (0.5, 0.5) over (id 0, tail); a uniform student over 2.
    const int ids_inv[2] = { 0, -1 };
    const float lp_inv[2] = { logf(0.5f), logf(0.3f) };
    const float uniform[2] = { 0.25f, 0.25f };
    loss = distill_one(&cfg, uniform, 2, ids_inv, lp_inv, 2, d);
    CHECK(fabs(loss) < HAND_BOUND, "invalid id into the tail: loss %g", loss);
    // The same student against (0.5 -> 1.0 after dropping the invalid entry).
    cfg.tail = 0;
    loss = distill_one(&cfg, uniform, 2, ids_inv, lp_inv, 2, d);
    CHECK(fabs(loss) < HAND_BOUND && d[0] == 0 && d[1] == 0, "one valid entry, no tail: loss %g grads %g %g", loss,
          d[0], d[1]);
    // Id 7 >= V = 2 is outside [0, V) too: the same as -1.
    const int ids_big[2] = { 0, 7 };
    cfg.tail = 1;
    loss = distill_one(&cfg, uniform, 2, ids_big, lp_inv, 2, d);
    CHECK(fabs(loss) < HAND_BOUND, "id >= V into the tail: loss %g", loss);
}

// t2 multiplies loss and gradient by T^2, nothing else.
static void test_distill_kl_t2(void) {
    int ids[DK_K];
    float lp[DK_K], logits[DK_V], d0[DK_V], d1[DK_V];
    make_teacher(ids, lp, 1, DK_K, DK_V, 0.7f, NULL);
    for (int i = 0; i < DK_V; i++) logits[i] = rng_normal(&rng);
    for (int mode = 0; mode < 3; mode++) {
        DistillKLConfig cfg = { .t_logged = 0.7f, .t = 2.5f, .mode = mode, .beta = 0.5f, .tail = 1, .t2 = 0 };
        double l0 = distill_one(&cfg, logits, DK_V, ids, lp, DK_K, d0);
        cfg.t2 = 1;
        double l1 = distill_one(&cfg, logits, DK_V, ids, lp, DK_K, d1);
        // Both sides are one double computation rounded to fp32: 2 roundings.
        CHECK(test_rel_err(l1, 6.25 * l0, 1e-6) < HAND_BOUND, "mode %d: t2 loss %.9g, 6.25 x %.9g", mode, l1, l0);
        for (int i = 0; i < DK_V; i++)
            CHECK(test_rel_err(d1[i], 6.25 * d0[i], 1e-6) < HAND_BOUND, "mode %d: t2 grad[%d] %g vs 6.25 x %g", mode, i,
                  d1[i], d0[i]);
    }
}

// A masked row is never read (NaN logits there change nothing) and takes no
// gradient; with every row masked the loss is 0 and no gradient flows.
static void test_distill_kl_masked_rows(void) {
    int ids[2 * DK_K];
    float lp[2 * DK_K];
    make_teacher(ids, lp, 2, DK_K, DK_V, 1.0f, NULL);
    for (int all = 0; all < 2; all++) {
        Graph *g = graph_new(DEV_CPU);
        Tensor *x = graph_param(g, "logits", 2, (int[]){ 2, DK_V }, INIT_ZEROS, 0, 0);
        Tensor *ti = graph_input(g, "ids", DT_I32, 2, (int[]){ 2, DK_K });
        Tensor *tl = graph_input(g, "lp", DT_F32, 2, (int[]){ 2, DK_K });
        Tensor *mask = graph_input(g, "mask", DT_F32, 1, (int[]){ 2 });
        DistillKLConfig cfg = { .t_logged = 1.0f, .t = 1.0f, .mode = DISTILL_REVERSE_KL, .tail = 1, .t2 = 1 };
        Tensor *loss = op_distill_kl(g, x, ti, tl, mask, &cfg);
        REQUIRE(graph_plan(g) == 0, "plan failed");
        for (int i = 0; i < DK_V; i++) { f32(x)[i] = rng_normal(&rng); f32(x)[DK_V + i] = NAN; }
        memcpy(ti->data, ids, sizeof ids);
        memcpy(tl->data, lp, sizeof lp);
        f32(mask)[0] = all ? 0.0f : 1.0f;
        f32(mask)[1] = 0.0f;
        graph_forward(g);
        graph_zero_grad(g);
        graph_backward(g, loss);
        CHECK(isfinite(f32(loss)[0]) && (!all || f32(loss)[0] == 0.0f), "all masked %d: loss %g", all, f32(loss)[0]);
        double mag0 = 0, mag1 = 0;
        for (int i = 0; i < DK_V; i++) { mag0 += fabs(x->grad[i]); mag1 += fabs(x->grad[DK_V + i]); }
        CHECK(mag1 == 0, "masked row has gradient %g", mag1);
        CHECK(all ? mag0 == 0 : mag0 > 0, "all masked %d: row 0 gradient %g", all, mag0);
        graph_free(g);
    }
}

// ---- traj_loss ------------------------------------------------------------

enum { TJ_B = 4, TJ_K = 3, TJ_T = 3 };

typedef struct { int mode; float beta, yaw_weight; } TjCase;

static Tensor *build_traj(Graph *g, Tensor **in, void *ctx) {
    const TjCase *c = ctx;
    return op_traj_loss(g, in[0], in[1], in[2], c->mode, c->beta, c->yaw_weight);
}

// pred ~ N(0, 2); target = pred - d, with every |d| at least 0.05 from beta
// (the smooth-L1 kink), each yaw difference in (-pi + 0.2, pi - 0.2) and
// the target yaw shifted by a whole turn (-1, 0 or +1), so the loss sees a
// wrapped angle and no probe crosses a wrap. Candidate k's differences are
// scaled by scale[b][k], which puts the best-of-K far from ties (checked).
static void make_traj(float *pred, float *targets, float beta) {
    static const float scale[TJ_B][TJ_K] = { { 1.0f, 1.8f, 0.5f }, { 0.4f, 1.0f, 2.0f }, { 1, 1, 1 }, { 2.0f, 0.6f, 1.2f } };
    Rng data;
    rng_seed(&data, 7002);
    for (int i = 0; i < TJ_B * TJ_T * 3; i++) pred[i] = 2.0f * rng_normal(&data);
    for (int b = 0; b < TJ_B; b++)
        for (int k = 0; k < TJ_K; k++)
            for (int t = 0; t < TJ_T; t++)
                for (int c = 0; c < 3; c++) {
                    double dd = rng_normal(&data) * scale[b][k];
                    while (fabs(fabs(dd) - beta) < 0.05) dd += dd > 0 ? 0.1 : -0.1;
                    if (c == 2) dd = fmax(-M_PI + 0.2, fmin(M_PI - 0.2, dd)) + 2 * M_PI * ((int)rng_below(&data, 3) - 1);
                    targets[(((b * TJ_K + k) * TJ_T) + t) * 3 + c] = (float)(pred[(b * TJ_T + t) * 3 + c] - dd);
                }
}

// Sample 0 weights all three, sample 1 excludes its smallest l (weight 0),
// sample 2 is masked out (all zero), sample 3 all three.
static const float traj_weights[TJ_B * TJ_K] = { 0.2f, 0.5f, 0.3f, 0, 1, 2, 0, 0, 0, 1, 1, 0.5f };

// The gap between the best and second-best l_bk of each counted sample,
// read from saved state after a forward; a probe moves an l_bk by at most
// eps (1 + yaw_weight) / T < 0.01.
static double traj_best_gap(const float *pred, const float *targets, float beta, float yaw_weight) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *p = graph_input(g, "pred", DT_F32, 3, (int[]){ TJ_B, TJ_T, 3 });
    Tensor *tg = graph_input(g, "targets", DT_F32, 4, (int[]){ TJ_B, TJ_K, TJ_T, 3 });
    Tensor *w = graph_input(g, "weights", DT_F32, 2, (int[]){ TJ_B, TJ_K });
    Tensor *loss = op_traj_loss(g, p, tg, w, TRAJ_BEST, beta, yaw_weight);
    if (graph_plan(g)) { fprintf(stderr, "plan failed\n"); exit(1); }
    memcpy(p->data, pred, p->numel * sizeof(float));
    memcpy(tg->data, targets, tg->numel * sizeof(float));
    memcpy(w->data, traj_weights, sizeof traj_weights);
    graph_forward(g);
    double gap = INFINITY;
    for (int b = 0; b < TJ_B; b++) {
        double best = INFINITY, second = INFINITY;
        for (int k = 0; k < TJ_K; k++) {
            if (!(traj_weights[b * TJ_K + k] > 0)) continue;
            double l = loss->saved[b * TJ_K + k];
            if (l < best) { second = best; best = l; } else if (l < second) second = l;
        }
        if (isfinite(second)) gap = fmin(gap, second - best);
    }
    graph_free(g);
    return gap;
}

static void test_traj_loss_gradcheck(void) {
    float pred[TJ_B * TJ_T * 3], targets[TJ_B * TJ_K * TJ_T * 3];
    const float betas[2] = { 0.5f, 0.0f };       // smooth-L1, and plain L1
    for (int bi = 0; bi < 2; bi++) {
        make_traj(pred, targets, betas[bi]);
        REQUIRE(traj_best_gap(pred, targets, betas[bi], 2.0f) > 0.05, "test data: best-of-K too close to a tie");
        for (int mode = 0; mode < 2; mode++) {
            TjCase c = { mode, betas[bi], 2.0f };
            GcInput spec[] = {
                { "pred", DT_F32, 3, { TJ_B, TJ_T, 3 }, 1, .values = pred },
                { "targets", DT_F32, 4, { TJ_B, TJ_K, TJ_T, 3 }, 0, .values = targets },
                { "weights", DT_F32, 2, { TJ_B, TJ_K }, 0, .values = traj_weights },
            };
            GcResult r = gradcheck(spec, 3, build_traj, &c, &rng, LOSS_EPS, LOSS_FLOOR);
            if (r.max_rel_err > LOSS_BOUND) fprintf(stderr, "  mode %d, beta %g:\n", mode, betas[bi]);
            CHECK_GRAD(r, spec, LOSS_BOUND);
        }
    }
}

// B = 2, K = 2, T = 1, beta = 1, yaw_weight = 0.5. Sample 0: pred (0, 0, 3),
// candidates (0.5, -2, -3) and (-0.5, -2, -3): dx = -/+0.5 -> 0.125 each,
// dy = 2 -> 2 - 0.5 = 1.5, dyaw = 6 wraps to 6 - 2 pi -> 0.5 (6 - 2 pi)^2 *
// 0.5. Equal l: best-of-K takes k = 0. Sample 1 has zero weights: masked.
static void test_traj_loss_by_hand(void) {
    const float pred[6] = { 0, 0, 3, 9, 9, 9 };
    const float targets[12] = { 0.5f, -2, -3, -0.5f, -2, -3, 0, 0, 0, 0, 0, 0 };
    const float weights[4] = { 1, 3, 0, 0 };
    double wrapped = 6.0 - 2 * M_PI, l = 0.125 + 1.5 + 0.5 * (0.5 * wrapped * wrapped);
    for (int mode = 0; mode < 2; mode++) {
        Graph *g = graph_new(DEV_CPU);
        Tensor *p = graph_param(g, "pred", 3, (int[]){ 2, 1, 3 }, INIT_ZEROS, 0, 0);
        Tensor *tg = graph_input(g, "targets", DT_F32, 4, (int[]){ 2, 2, 1, 3 });
        Tensor *w = graph_input(g, "weights", DT_F32, 2, (int[]){ 2, 2 });
        Tensor *loss = op_traj_loss(g, p, tg, w, mode, 1.0f, 0.5f);
        REQUIRE(graph_plan(g) == 0, "plan failed");
        memcpy(p->data, pred, sizeof pred);
        memcpy(tg->data, targets, sizeof targets);
        memcpy(w->data, weights, sizeof weights);
        graph_forward(g);
        CHECK(test_rel_err(f32(loss)[0], l, 1e-3) < HAND_BOUND, "mode %d: loss %.9g, want %.9g", mode, f32(loss)[0], l);
        // After l_bk (2 x 2): best-of-K breaks the tie to k = 0; weighted stores 0.
        const float *chosen = loss->saved + 4;
        CHECK(chosen[0] == 0.0f && chosen[1] == -1.0f && chosen[2] == 1.0f,
              "mode %d: chosen %g %g, count %g", mode, chosen[0], chosen[1], chosen[2]);
        graph_zero_grad(g);
        graph_backward(g, loss);
        // d/dx: weighted (1 * -0.5 + 3 * 0.5) / 4 = 0.25; best: k = 0 alone, -0.5.
        // d/dy = sign(2) = 1. d/dyaw = 0.5 * wrapped (slope of the wrap 1).
        double want[6] = { mode == TRAJ_BEST ? -0.5 : 0.25, 1.0, 0.5 * wrapped, 0, 0, 0 };
        for (int i = 0; i < 6; i++)
            CHECK(fabs(p->grad[i] - want[i]) < HAND_BOUND, "mode %d: grad[%d] %.9g, want %.9g", mode, i, p->grad[i], want[i]);
        graph_free(g);
    }
}

// ---- cosine_loss ------------------------------------------------------------

static Tensor *build_cosine(Graph *g, Tensor **in, void *ctx) {
    return op_cosine_loss(g, in[0], in[1], ctx ? in[2] : NULL);
}

static void test_cosine_loss_gradcheck(void) {
    static const float mask[4] = { 1, 0, 1, 1 };
    for (int masked = 0; masked < 2; masked++) {
        GcInput spec[] = {
            { "a", DT_F32, 2, { 4, 16 }, 1 },
            { "b", DT_F32, 2, { 4, 16 }, 1, .scale = 0.5f, .offset = 0.3f },
            { "mask", DT_F32, 1, { 4 }, 0, .values = mask },
        };
        GcResult r = gradcheck(spec, masked ? 3 : 2, build_cosine, masked ? (void *)1 : NULL, &rng, LOSS_EPS, LOSS_FLOOR);
        CHECK_GRAD(r, spec, LOSS_BOUND);
    }
}

// Row 0: a = (1, 0, 0), b = (1, 1, 0): cos = 1/sqrt(2). Row 1: a = 0, so
// |a||b| < 1e-8 and cos = a.b / 1e-8 = 0: loss 1. Mean: (2 - 1/sqrt 2) / 2.
// d loss/d a_0 = -(b / (|a||b|) - cos a / |a|^2) / 2 = -(0, 1/sqrt 2, 0) / 2;
// d loss/d b_0 = -(a / (|a||b|) - cos b / |b|^2) / 2 = -(1/(2 sqrt 2), -1/(2 sqrt 2), 0) / 2.
// Row 1 is clamped: d/da_1 = -b_1 / 1e-8 / 2, d/db_1 = -a_1 / 1e-8 / 2 = 0.
static void test_cosine_loss_by_hand(void) {
    const float a[6] = { 1, 0, 0, 0, 0, 0 }, b[6] = { 1, 1, 0, 1e-9f, 0, 0 };
    Graph *g = graph_new(DEV_CPU);
    Tensor *ta = graph_param(g, "a", 2, (int[]){ 2, 3 }, INIT_ZEROS, 0, 0);
    Tensor *tb = graph_param(g, "b", 2, (int[]){ 2, 3 }, INIT_ZEROS, 0, 0);
    Tensor *loss = op_cosine_loss(g, ta, tb, NULL);
    REQUIRE(graph_plan(g) == 0, "plan failed");
    memcpy(ta->data, a, sizeof a);
    memcpy(tb->data, b, sizeof b);
    graph_forward(g);
    double r2 = sqrt(2.0), want = (2 - 1 / r2) / 2;
    CHECK(test_rel_err(f32(loss)[0], want, 1e-3) < HAND_BOUND, "loss %.9g, want %.9g", f32(loss)[0], want);
    graph_zero_grad(g);
    graph_backward(g, loss);
    double want_da[6] = { 0, -0.5 / r2, 0, -0.5 * 1e-9 / 1e-8, 0, 0 };
    double want_db[6] = { -0.25 / r2, 0.25 / r2, 0, 0, 0, 0 };
    for (int i = 0; i < 6; i++) {
        CHECK(fabs(ta->grad[i] - want_da[i]) < HAND_BOUND, "da[%d] %.9g, want %.9g", i, ta->grad[i], want_da[i]);
        CHECK(fabs(tb->grad[i] - want_db[i]) < HAND_BOUND, "db[%d] %.9g, want %.9g", i, tb->grad[i], want_db[i]);
    }
    graph_free(g);
}

// ---- against PyTorch: tests/fixtures/losses.bin --------------------------------
// The format is scripts/gen_op_fixtures.py's (train/selftest/fixture.h reads
// it); the replay is opsuite_run's and the bound opsuite_fixture_tol's (1e-6,
// argued in train/selftest/opsuite.c), as `distil selftest` uses them.

#define FIXTURE_PATH "tests/fixtures/losses.bin"

static int verbose;   // DISTIL_TEST_VERBOSE=1: each case's worst error

// Runs case c on a graph of `dev` (the gradients written as `mode` says),
// checks the loss and the gradients against torch, and leaves them (loss,
// then each gradient in input order) in result[0..cap); returns how many
// floats it wrote.
static size_t fx_run_case(const FxCase *c, Device dev, OpGradMode mode, float *result, size_t cap) {
    OpRun run;
    if (opsuite_run(c, dev, mode, &run)) { CHECK(0, "%s: %s", c->name, run.err); return 0; }
    const double bound = opsuite_fixture_tol(c->op);
    const FxTensor *want = fx_find(c, 'o', NULL);
    size_t at = 0, used = 0;
    if (!run.out_f32 || run.out_numel != 1 || bound < 0) {
        CHECK(0, "%s: op %s gives no [1] loss, or has no bound", c->name, c->op);
        opsuite_run_free(&run);
        return 0;
    }
    float w;
    memcpy(&w, want->data, 4);
    result[used++] = run.out_f32[0];
    double err = fx_worst_error(run.out_f32, &w, 1, 0, &at);
    if (verbose) printf("    %-32s loss err %.3g\n", c->name, err);
    CHECK(err <= bound, "%s: loss %.9g, torch %.9g (err %.3g)", c->name, run.out_f32[0], w, err);
    for (int k = 0; k < run.n_in; k++) {
        if (run.in[k]->role != 'p') continue;
        const FxTensor *wg = fx_find(c, 'g', run.in[k]->name);
        if (!wg || !run.grad[k] || wg->numel != run.in[k]->numel || used + wg->numel > cap) {
            CHECK(0, "%s: no expected gradient for %s, or too large", c->name, run.in[k]->name);
            continue;
        }
        float *want_g = fx_floats(wg);
        memcpy(result + used, run.grad[k], wg->numel * sizeof(float));
        used += wg->numel;
        err = fx_worst_error(run.grad[k], want_g, wg->numel, 0, &at);
        if (verbose) printf("    %-32s d%s err %.3g\n", c->name, run.in[k]->name, err);
        CHECK(err <= bound, "%s: d%s[%zu] %.9g, torch %.9g (err %.3g)", c->name, run.in[k]->name, at, run.grad[k][at],
              want_g[at], err);
        free(want_g);
    }
    opsuite_run_free(&run);
    return used;
}

static Fixture *fixture;       // loaded once by main

#define FX_RESULT_CAP 4096   // floats: the loss and the gradients of the largest case

static void test_against_torch(void) {
    REQUIRE(fixture && fixture->n_cases > 0, "no fixture (%s)", FIXTURE_PATH);
    static const char *ops[3] = { "distill_kl", "traj_loss", "cosine_loss" };
    int per_op[3] = { 0, 0, 0 };
    float *result = malloc(FX_RESULT_CAP * sizeof *result);
    for (int i = 0; i < fixture->n_cases; i++) {
        for (int o = 0; o < 3; o++) per_op[o] += strcmp(fixture->cases[i].op, ops[o]) == 0;
        // Assigned (as behind any op) and added (as into a parameter's gradient).
        fx_run_case(&fixture->cases[i], DEV_CPU, OPSUITE_ASSIGN, result, FX_RESULT_CAP);
        fx_run_case(&fixture->cases[i], DEV_CPU, OPSUITE_ACCUMULATE, result, FX_RESULT_CAP);
    }
    for (int o = 0; o < 3; o++) CHECK(per_op[o] > 0, "%s has no case for %s", FIXTURE_PATH, ops[o]);
    free(result);
}

// The CUDA twins against the same torch values and bound (their arithmetic
// is the CPU's, in double; only the order of the double sums over the vocab
// or D differs), and run twice for the same bits (no atomics). Skipped
// without a GPU.
static void test_cuda_against_torch(void) {
    static char reason[200];
    if (backend_cuda_device_count() == 0) {
        snprintf(reason, sizeof reason, "no CUDA device (%s)", backend_cuda_unavailable_reason());
        SKIP(reason);
    }
    REQUIRE(fixture && fixture->n_cases > 0, "no fixture (%s)", FIXTURE_PATH);
    float *first = malloc(FX_RESULT_CAP * sizeof *first), *again = malloc(FX_RESULT_CAP * sizeof *again);
    for (int i = 0; i < fixture->n_cases; i++) {
        size_t n = fx_run_case(&fixture->cases[i], DEV_CUDA, OPSUITE_ACCUMULATE, first, FX_RESULT_CAP);
        size_t m = fx_run_case(&fixture->cases[i], DEV_CUDA, OPSUITE_ACCUMULATE, again, FX_RESULT_CAP);
        CHECK(n == m && memcmp(first, again, n * sizeof *first) == 0, "%s: two CUDA runs differ", fixture->cases[i].name);
    }
    free(first);
    free(again);
}

int main(void) {
    const char *v = getenv("DISTIL_TEST_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    rng_seed(&rng, test_seed("test_grad_distill"));
    RUN(test_distill_kl_gradcheck);
    RUN(test_distill_kl_duplicate_ids);
    RUN(test_distill_kl_retemper_and_tail);
    RUN(test_distill_kl_tail_mass);
    RUN(test_distill_kl_t2);
    RUN(test_distill_kl_masked_rows);
    RUN(test_traj_loss_gradcheck);
    RUN(test_traj_loss_by_hand);
    RUN(test_cosine_loss_gradcheck);
    RUN(test_cosine_loss_by_hand);
    fixture = fixture_load(FIXTURE_PATH, "scripts/gen_loss_fixtures.py");
    RUN(test_against_torch);
    RUN(test_cuda_against_torch);
    fixture_free(fixture);
    return test_summary();
}
