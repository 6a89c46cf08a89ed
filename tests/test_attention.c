// test_attention.c: the fused attention op (op_attention, op_attention_prefix
// in autograd/ops.h) beyond the core checks of test_grad_core.c:
// - both mask modes against a double-precision reference written here from
//   ops.h's definition (output, logsumexp, every gradient), at sizes that
//   cross the kernel's query and key tiles, with key masks that leave
//   queries with no key;
// - finite-difference gradient checks in prefix mode;
// - PyTorch scaled_dot_product_attention at T = 83, 512 and 2,931
//   (tests/fixtures/attention_long.bin, scripts/gen_attention_fixtures.py);
// - the saved state: 2 B H T floats, linear in T;
// - the same bits on 1 and 3 threads, and prefix 0 or 1 the same as causal.
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include "train/selftest/fixture.h"   // defines: Fixture, fixture_load, fx_find, fx_floats
#include "tests/gradcheck.h"

static Rng rng;

// ---- the reference ---------------------------------------------------------

typedef struct { int B, T, C, H, mode, n_prefix; } Shape;

static int visible_end(const Shape *s, int i) {
    return s->mode == ATTN_PREFIX && s->n_prefix > i + 1 ? s->n_prefix : i + 1;
}

// Forward and backward in double, straight from ops.h. out (B, T, C), lse
// (B, H, T) (+inf for a query that sees no key), dqkv (B, T, 3C) from
// d(out) = dout.
static void attention_ref(const Shape *s, const float *qkv, const float *mask, const float *dout,
                          double *out, double *lse, double *dqkv) {
    int B = s->B, T = s->T, C = s->C, H = s->H, hs = C / H;
    double scale = 1.0 / sqrt((double)hs);
    double *p = malloc((size_t)T * sizeof *p);
    memset(dqkv, 0, (size_t)B * T * 3 * C * sizeof *dqkv);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * 3 * C + h * hs;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    p[j] = -INFINITY;
                    if (j >= visible_end(s, i) || (mask && mask[b * T + j] == 0)) continue;
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
                    double dot = 0;
                    for (int c = 0; c < hs; c++) dot += (double)q[c] * k[c];
                    p[j] = dot * scale;
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < T; j++) sum += p[j] == -INFINITY ? 0 : exp(p[j] - mx);
                for (int j = 0; j < T; j++) p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx) / sum;
                lse[((size_t)b * H + h) * T + i] = sum > 0 ? mx + log(sum) : INFINITY;
                double *o = out + ((size_t)b * T + i) * C + h * hs;
                const float *g = dout + ((size_t)b * T + i) * C + h * hs;
                double *dq = dqkv + ((size_t)b * T + i) * 3 * C + h * hs;
                for (int c = 0; c < hs; c++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++) acc += p[j] * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + c];
                    o[c] = acc;
                }
                double delta = 0;   // sum_j p_j (dout . v_j) = dout . out
                for (int c = 0; c < hs; c++) delta += g[c] * o[c];
                for (int j = 0; j < T; j++) {
                    if (p[j] == 0) continue;
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs, *v = k + C;
                    double *dk = dqkv + ((size_t)b * T + j) * 3 * C + C + h * hs, *dv = dk + C;
                    double dp = 0;
                    for (int c = 0; c < hs; c++) dp += g[c] * v[c];
                    double ds = p[j] * (dp - delta) * scale;
                    for (int c = 0; c < hs; c++) {
                        dq[c] += ds * k[c];
                        dk[c] += ds * q[c];
                        dv[c] += p[j] * g[c];
                    }
                }
            }
    free(p);
}

static Tensor *record(Graph *g, const Shape *s, Tensor *qkv, Tensor *mask) {
    return s->mode == ATTN_PREFIX ? op_attention_prefix(g, qkv, mask, s->H, s->n_prefix)
                                  : op_attention(g, qkv, mask, s->H);
}

// Worst |got - ref| over the tensor's largest |ref|. fp32 sums of up to
// 600 terms, in blocks through sgemm, against double: the error is a few
// ulps of the largest terms, ~1e-6 of the scale (worst seen over 28 seeds:
// 9.1e-7); 1e-5 leaves 10x, and a wrong mask or tile edge gives O(1).
#define REF_BOUND 1e-5

static double err_vs_ref(const float *got, const double *ref, size_t n) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]) / fmax(scale, 1e-30);
        if (!(e <= worst)) worst = e;   // NaN propagates to the CHECK
    }
    return worst;
}

// Forward, lse and gradients against the reference; what the reference
// makes exactly zero (queries with no key, masked keys) must be zero.
static void check_against_ref(const Shape *s, const float *mask_values) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *qkv = graph_param(g, "qkv", 3, (int[]){ s->B, s->T, 3 * s->C }, INIT_ZEROS, 0, 0);
    Tensor *mask = mask_values ? graph_input(g, "key_mask", DT_F32, 2, (int[]){ s->B, s->T }) : NULL;
    Tensor *y = record(g, s, qkv, mask);
    REQUIRE(graph_plan(g) == 0, "plan");
    float *x = qkv->data;
    for (size_t i = 0; i < qkv->numel; i++) x[i] = rng_normal(&rng);
    if (mask) memcpy(mask->data, mask_values, (size_t)s->B * s->T * sizeof(float));
    float *dout = malloc(y->numel * sizeof *dout);
    for (size_t i = 0; i < y->numel; i++) dout[i] = rng_normal(&rng);
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward_seeded(g, y, dout);

    size_t n_lse = (size_t)s->B * s->H * s->T;
    double *out = malloc(y->numel * sizeof *out), *lse = malloc(n_lse * sizeof *lse);
    double *dqkv = malloc(qkv->numel * sizeof *dqkv);
    attention_ref(s, qkv->data, mask_values, dout, out, lse, dqkv);
    char what[96];
    snprintf(what, sizeof what, "%s n_prefix=%d B=%d T=%d C=%d H=%d mask=%d", s->mode == ATTN_PREFIX ? "prefix" : "causal",
             s->n_prefix, s->B, s->T, s->C, s->H, mask != NULL);
    double e = err_vs_ref(y->data, out, y->numel);
    CHECK(e <= REF_BOUND, "%s: output err %.3g", what, e);
    if (getenv("DISTIL_TEST_VERBOSE")) printf("    %s: output err %.3g\n", what, e);
    e = err_vs_ref(qkv->grad, dqkv, qkv->numel);
    CHECK(e <= REF_BOUND, "%s: d(qkv) err %.3g", what, e);
    if (getenv("DISTIL_TEST_VERBOSE")) printf("    %s: d(qkv) err %.3g\n", what, e);
    int inf_mismatch = 0;
    float *got_lse = malloc(n_lse * sizeof *got_lse);
    memcpy(got_lse, y->saved, n_lse * sizeof *got_lse);
    for (size_t i = 0; i < n_lse; i++) {
        inf_mismatch += isinf(lse[i]) != isinf(got_lse[i]);
        if (isinf(lse[i])) lse[i] = got_lse[i] = 0;
    }
    CHECK(inf_mismatch == 0, "%s: %d queries disagree on seeing no key (lse +inf)", what, inf_mismatch);
    e = err_vs_ref(got_lse, lse, n_lse);
    CHECK(e <= REF_BOUND, "%s: lse err %.3g", what, e);
    int leaks = 0;
    const float *yv = y->data;
    for (size_t i = 0; i < y->numel; i++) leaks += out[i] == 0 && yv[i] != 0;
    for (size_t i = 0; i < qkv->numel; i++) leaks += dqkv[i] == 0 && qkv->grad[i] != 0;
    CHECK(leaks == 0, "%s: %d outputs or gradients are nonzero where the reference has exact zeros", what, leaks);
    free(got_lse);
    free(out); free(lse); free(dqkv); free(dout);
    graph_free(g);
}

// A key mask: each key kept with probability keep; sample 1 (when B > 1)
// also loses its first `lead` keys, so its first queries see nothing in
// causal mode.
static float *random_mask(int B, int T, float keep, int lead) {
    float *m = malloc((size_t)B * T * sizeof *m);
    for (int i = 0; i < B * T; i++) m[i] = rng_uniform(&rng) < keep;
    for (int j = 0; j < lead && B > 1; j++) m[T + j] = 0;
    return m;
}

static void test_causal_vs_ref(void) {
    // T = 300 crosses the query tiles (64) and a key tile (256).
    Shape s = { 2, 300, 16, 2, ATTN_CAUSAL, 0 };
    check_against_ref(&s, NULL);
    float *m = random_mask(2, 300, 0.8f, 3);
    check_against_ref(&s, m);
    free(m);
    Shape odd = { 1, 45, 24, 3, ATTN_CAUSAL, 0 };   // one partial tile, odd head size 8
    check_against_ref(&odd, NULL);
}

static void test_prefix_vs_ref(void) {
    Shape s = { 2, 300, 16, 2, ATTN_PREFIX, 70 };  // the prefix ends inside the second query tile
    check_against_ref(&s, NULL);
    float *m = random_mask(2, 300, 0.8f, 3);
    check_against_ref(&s, m);
    free(m);
    Shape wide = { 1, 600, 8, 2, ATTN_PREFIX, 290 };   // past the first key tile
    check_against_ref(&wide, NULL);
    Shape full = { 2, 70, 16, 4, ATTN_PREFIX, 70 };   // all bidirectional
    m = random_mask(2, 70, 0.5f, 0);
    check_against_ref(&full, m);
    free(m);
    // The model's layout at a small size: an unmasked prefix, a trace padded
    // at its end (padded keys are also masked for every later query), the
    // action query last.
    enum { T = 83, P = 66, L = 16 };
    Shape model = { 2, T, 16, 2, ATTN_PREFIX, P };
    float mask[2 * T];
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < T; j++) mask[b * T + j] = !(j >= P + (b ? 9 : 16) && j < P + L);
    check_against_ref(&model, mask);
}

// ---- finite differences -------------------------------------------------------

// As in test_grad_core.c (its comment derives them): central differences,
// eps 1e-2, absolute floor 3e-2, bound 1e-2.
#define GC_EPS 1e-2
#define GC_FLOOR 3e-2
#define GRAD_BOUND 1e-2

static Tensor *build_prefix(Graph *g, Tensor **in, void *ctx) {
    return op_attention_prefix(g, in[0], NULL, 2, *(const int *)ctx);
}
static Tensor *build_prefix_masked(Graph *g, Tensor **in, void *ctx) {
    return op_attention_prefix(g, in[0], in[1], 2, *(const int *)ctx);
}

static void test_prefix_gradcheck(void) {
    static const float mask9[18] = { 1, 1, 0, 1, 1, 1, 0, 1, 1,
                                     0, 1, 1, 1, 1, 1, 1, 0, 0 };
    GcInput small[] = {
        { "qkv", DT_F32, 3, { 2, 9, 24 }, 1 },   // C = 12, 2 heads of 6
        { "key_mask", DT_F32, 2, { 2, 9 }, 0, .values = mask9 },
    };
    int n_prefix = 4;
    GcResult r = gradcheck(small, 1, build_prefix, &n_prefix, &rng, GC_EPS, GC_FLOOR);
    CHECK_GRAD(r, small, GRAD_BOUND);
    r = gradcheck(small, 2, build_prefix_masked, &n_prefix, &rng, GC_EPS, GC_FLOOR);
    CHECK_GRAD(r, small, GRAD_BOUND);
    // Across a query tile, the prefix ending just past it.
    GcInput tiles[] = { { "qkv", DT_F32, 3, { 1, 90, 24 }, 1 } };
    n_prefix = 66;
    r = gradcheck(tiles, 1, build_prefix, &n_prefix, &rng, GC_EPS, GC_FLOOR);
    CHECK_GRAD(r, tiles, GRAD_BOUND);
}

// ---- PyTorch fixtures ------------------------------------------------------------

// scripts/gen_attention_fixtures.py's input generator.
static float seeded_uniform(uint64_t seed, uint64_t n) {
    uint64_t z = seed + (n + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return 2.0f * ((float)(z >> 40) / 16777216.0f * 2.0f - 1.0f);
}

// Against float64 torch on the same float32 inputs: fp32 sums of up to
// 2,931 terms; error ~ sqrt(T) ulps of the largest terms (worst seen:
// 7.2e-7 of the scale, at T = 512). 2e-5 leaves ~25x.
#define FIXTURE_BOUND 2e-5

static double err_vs_fixture(const float *got, const float *want, size_t n) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / fmax(scale, 1e-30);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

static void replay_case(const FxCase *c) {
    const int *ia = c->iattr;
    Shape s = { ia[3], ia[4], ia[5], ia[0], ia[1], ia[2] };
    uint64_t seed = (uint64_t)ia[6];
    const FxTensor *fmask = fx_find(c, 'i', "key_mask"), *frows = fx_find(c, 'i', "rows");
    const FxTensor *fout = fx_find(c, 'o', "out"), *fgrad = fx_find(c, 'g', "qkv");
    REQUIRE(c->n_iattr == 7 && fmask && frows && fout && fgrad, "%s: malformed case", c->name);
    int R = frows->shape[0];
    Graph *g = graph_new(DEV_CPU);
    Tensor *qkv = graph_param(g, "qkv", 3, (int[]){ s.B, s.T, 3 * s.C }, INIT_ZEROS, 0, 0);
    Tensor *mask = graph_input(g, "key_mask", DT_F32, 2, (int[]){ s.B, s.T });
    Tensor *y = record(g, &s, qkv, mask);
    REQUIRE(graph_plan(g) == 0, "plan");
    float *x = qkv->data, *m = mask->data;
    for (size_t i = 0; i < qkv->numel; i++) x[i] = seeded_uniform(seed, i);
    for (size_t i = 0; i < mask->numel; i++) m[i] = fmask->data[i];
    float *dout = malloc(y->numel * sizeof *dout);
    for (size_t i = 0; i < y->numel; i++) dout[i] = seeded_uniform(seed + 1, i);
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward_seeded(g, y, dout);
    // Gather the stored rows.
    float *out_rows = malloc((size_t)s.B * R * s.C * sizeof *out_rows);
    float *grad_rows = malloc((size_t)s.B * R * 3 * s.C * sizeof *grad_rows);
    int rows[4096];
    REQUIRE(R <= 4096, "%s: %d rows", c->name, R);
    memcpy(rows, frows->data, (size_t)R * sizeof *rows);
    for (int b = 0; b < s.B; b++)
        for (int r = 0; r < R; r++) {
            memcpy(out_rows + ((size_t)b * R + r) * s.C, (float *)y->data + ((size_t)b * s.T + rows[r]) * s.C,
                   (size_t)s.C * sizeof(float));
            memcpy(grad_rows + ((size_t)b * R + r) * 3 * s.C, qkv->grad + ((size_t)b * s.T + rows[r]) * 3 * s.C,
                   (size_t)3 * s.C * sizeof(float));
        }
    float *want = fx_floats(fout);
    double e = err_vs_fixture(out_rows, want, fout->numel);
    CHECK(e <= FIXTURE_BOUND, "%s: output err %.3g", c->name, e);
    if (getenv("DISTIL_TEST_VERBOSE")) printf("    %s: %d rows, output err %.3g\n", c->name, R, e);
    free(want);
    want = fx_floats(fgrad);
    e = err_vs_fixture(grad_rows, want, fgrad->numel);
    CHECK(e <= FIXTURE_BOUND, "%s: d(qkv) err %.3g", c->name, e);
    if (getenv("DISTIL_TEST_VERBOSE")) printf("    %s: %d rows, grad err %.3g\n", c->name, R, e);
    free(want);
    free(out_rows); free(grad_rows); free(dout);
    graph_free(g);
}

static void test_torch_sdpa_fixtures(void) {
    Fixture *fx = fixture_load("tests/fixtures/attention_long.bin", "scripts/gen_attention_fixtures.py");
    REQUIRE(fx, "cannot load the fixture");
    int lengths_seen[3] = { 0 };
    for (int i = 0; i < fx->n_cases; i++) {
        const FxCase *c = &fx->cases[i];
        REQUIRE(strcmp(c->op, "attention") == 0, "%s: op %s", c->name, c->op);
        replay_case(c);
        int T = c->iattr[4];
        lengths_seen[0] += T == 83;
        lengths_seen[1] += T == 512;
        lengths_seen[2] += T == 2931;
    }
    CHECK(lengths_seen[0] == 2 && lengths_seen[1] == 2 && lengths_seen[2] == 2,
          "expected both masks at T = 83, 512 and 2931; got %d, %d, %d cases", lengths_seen[0], lengths_seen[1], lengths_seen[2]);
    fixture_free(fx);
}

// ---- memory and determinism ------------------------------------------------------

// What backward keeps is 2 B H T floats whatever T: the urban4 student's
// attention (8 heads, C = 512) at the three lengths, recorded, not planned.
static void test_saved_state_linear_in_T(void) {
    static const int lengths[] = { 83, 512, 2931 };
    for (int k = 0; k < 3; k++) {
        int T = lengths[k];
        Graph *g = graph_new(DEV_CPU);
        Tensor *qkv = graph_input(g, "qkv", DT_F32, 3, (int[]){ 1, T, 3 * 512 });
        Tensor *mask = graph_input(g, "key_mask", DT_F32, 2, (int[]){ 1, T });
        Tensor *y = op_attention_prefix(g, qkv, mask, 8, T * 3 / 4);
        Tensor *yc = op_attention(g, qkv, mask, 8);
        CHECK(y->saved_numel == 2 * 8 * (size_t)T && yc->saved_numel == y->saved_numel,
              "T=%d: saved %zu and %zu floats, want %d", T, y->saved_numel, yc->saved_numel, 2 * 8 * T);
        graph_free(g);
    }
}

typedef struct { float *out, *lse, *grad; } RunBits;

static RunBits run_bits(const Shape *s, const float *qkv_values, const float *mask_values, const float *dout) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *qkv = graph_param(g, "qkv", 3, (int[]){ s->B, s->T, 3 * s->C }, INIT_ZEROS, 0, 0);
    Tensor *mask = graph_input(g, "key_mask", DT_F32, 2, (int[]){ s->B, s->T });
    Tensor *y = record(g, s, qkv, mask);
    RunBits r = { 0 };
    if (graph_plan(g)) return r;
    memcpy(qkv->data, qkv_values, qkv->numel * sizeof(float));
    memcpy(mask->data, mask_values, mask->numel * sizeof(float));
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward_seeded(g, y, dout);
    size_t n_lse = (size_t)s->B * s->H * s->T;
    r.out = malloc(y->numel * sizeof(float));
    r.lse = malloc(n_lse * sizeof(float));
    r.grad = malloc(qkv->numel * sizeof(float));
    memcpy(r.out, y->data, y->numel * sizeof(float));
    memcpy(r.lse, y->saved, n_lse * sizeof(float));
    memcpy(r.grad, qkv->grad, qkv->numel * sizeof(float));
    graph_free(g);
    return r;
}

static int same_bits(RunBits a, RunBits b, const Shape *s) {
    size_t n_out = (size_t)s->B * s->T * s->C, n_lse = (size_t)s->B * s->H * s->T;
    return a.out && b.out && !memcmp(a.out, b.out, n_out * sizeof(float)) && !memcmp(a.lse, b.lse, n_lse * sizeof(float)) &&
           !memcmp(a.grad, b.grad, 3 * n_out * sizeof(float));
}

static void free_bits(RunBits r) { free(r.out); free(r.lse); free(r.grad); }

static void test_deterministic(void) {
    Shape s = { 2, 200, 32, 4, ATTN_PREFIX, 90 };
    size_t n = (size_t)s.B * s.T * 3 * s.C;
    float *x = malloc(n * sizeof *x), *dout = malloc(n / 3 * sizeof *dout);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&rng);
    for (size_t i = 0; i < n / 3; i++) dout[i] = rng_normal(&rng);
    float *mask = random_mask(s.B, s.T, 0.9f, 2);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    RunBits one = run_bits(&s, x, mask, dout);
    omp_set_num_threads(3);
    RunBits three = run_bits(&s, x, mask, dout);
    omp_set_num_threads(threads);
    CHECK(same_bits(one, three, &s), "1 and 3 threads give different bits");
    // n_prefix 0 and 1 see exactly what causal sees: the same bits.
    Shape causal = s, p0 = s, p1 = s;
    causal.mode = ATTN_CAUSAL; causal.n_prefix = 0;
    p0.n_prefix = 0;
    p1.n_prefix = 1;
    RunBits rc = run_bits(&causal, x, mask, dout), r0 = run_bits(&p0, x, mask, dout), r1 = run_bits(&p1, x, mask, dout);
    CHECK(same_bits(rc, r0, &s) && same_bits(rc, r1, &s), "prefix 0 or 1 differs from causal");
    free_bits(one); free_bits(three); free_bits(rc); free_bits(r0); free_bits(r1);
    free(x); free(dout); free(mask);
}

// A NaN query stays NaN in its output (the trainer then skips the step as
// non-finite); the other rows stay finite.
static void test_nan_propagates(void) {
    enum { T = 5, C = 8 };
    Graph *g = graph_new(DEV_CPU);
    Tensor *qkv = graph_input(g, "qkv", DT_F32, 3, (int[]){ 1, T, 3 * C });
    Tensor *y = op_attention_prefix(g, qkv, NULL, 2, 2);
    REQUIRE(graph_plan(g) == 0, "plan");
    float *x = qkv->data;
    for (size_t i = 0; i < qkv->numel; i++) x[i] = rng_normal(&rng);
    for (int c = 0; c < C; c++) x[3 * 3 * C + c] = NAN;   // query 3, every channel
    graph_forward(g);
    const float *out = y->data;
    int nan_rows = 0, finite_rows = 0;
    for (int t = 0; t < T; t++) {
        int all_nan = 1, all_finite = 1;
        for (int c = 0; c < C; c++) { all_nan &= isnan(out[t * C + c]); all_finite &= isfinite(out[t * C + c]); }
        nan_rows += all_nan;
        finite_rows += all_finite;
    }
    CHECK(nan_rows == 1 && finite_rows == T - 1 && isnan(out[3 * C]), "%d NaN rows, %d finite rows", nan_rows, finite_rows);
    graph_free(g);
}

int main(void) {
    rng_seed(&rng, test_seed("test_attention"));
    RUN(test_causal_vs_ref);
    RUN(test_prefix_vs_ref);
    RUN(test_prefix_gradcheck);
    RUN(test_torch_sdpa_fixtures);
    RUN(test_saved_state_linear_in_T);
    RUN(test_deterministic);
    RUN(test_nan_propagates);
    return test_summary();
}
