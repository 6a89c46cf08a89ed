// test_grad_core.c: the core CPU kernels (matmul, add, mul, scale, layernorm,
// gelu, bias_gelu, bias_residual, softmax, attention, sin, cos, cast). Finite-difference gradient
// checks for every differentiable op, a check that backward accumulates,
// forward values against double-precision reference loops written here, and
// cast's rounding and pass-through gradient checked directly.
#include <stdint.h>
#include <string.h>
#include "tests/gradcheck.h"

static Rng rng;

// fp32 forward, central differences with eps = 1e-2 on O(1) inputs.
// Truncation: zero for ops linear in each input (matmul, add, mul, scale),
// eps^2 f'''/6 ~ 2e-5 relative for the smooth ones. Rounding: the outputs a
// probe moves carry ~6e-8 relative error each, so L(x +- eps) is off by
// ~1e-6 and the numeric gradient by ~1e-6 / (2 eps) ~ 5e-5 absolute. That
// dominates for small gradients, hence the absolute floor of 3e-2 (typical
// |grad| here is 0.3..3). Worst seen over 400 seeds: 2.5e-3 (layernorm's x,
// whose gradient sums to zero over a row, so single entries are small);
// 1e-2 leaves 4x. A wrong formula gives errors of order 1.
#define GC_EPS 1e-2
#define GC_FLOOR 3e-2
#define GRAD_BOUND 1e-2

// Forward values against double loops: fp32 sums of K O(1) products are off
// by at most ~K * 6e-8 * sum|terms| ~ 2e-5 for K <= 33 (any order, FMA or
// not), typically ~1e-6; layernorm's row offset by 100 adds its fp32 mean's
// rounding (~4e-6 absolute) to every output of that row. Worst seen over 400
// seeds: 1.4e-5 (layernorm), 2e-6 (the rest); 1e-4 (floor 1) leaves 7x.
#define FWD_BOUND 1e-4

// Backward run twice without zeroing must double every input gradient (an
// overwrite instead of += leaves a gap of 1/2). Kernels that add term by term
// into the gradient (attention, OpenBLAS's K blocks) sum in another order on
// top of a nonzero start: a few ulps of the largest entry, so the gap is
// measured against each input's largest gradient. Worst seen over 400
// seeds: 3e-7; 1e-4 leaves 300x and still tells 1/2 apart.
#define ACCUM_BOUND 1e-4

// ---- builders -------------------------------------------------------------

static Tensor *build_matmul(Graph *g, Tensor **in, void *ctx) { return op_matmul(g, in[0], in[1]); }
static Tensor *build_add(Graph *g, Tensor **in, void *ctx) { return op_add(g, in[0], in[1]); }
static Tensor *build_mul(Graph *g, Tensor **in, void *ctx) { return op_mul(g, in[0], in[1]); }
static Tensor *build_scale(Graph *g, Tensor **in, void *ctx) { return op_scale(g, in[0], -1.7f); }
static Tensor *build_layernorm(Graph *g, Tensor **in, void *ctx) { return op_layernorm(g, in[0], in[1], in[2], 1e-5f); }
static Tensor *build_gelu(Graph *g, Tensor **in, void *ctx) { return op_gelu(g, in[0]); }
static Tensor *build_softmax(Graph *g, Tensor **in, void *ctx) { return op_softmax(g, in[0]); }
static Tensor *build_bias_gelu(Graph *g, Tensor **in, void *ctx) { return op_bias_gelu(g, in[0], in[1]); }
static Tensor *build_bias_residual(Graph *g, Tensor **in, void *ctx) { return op_bias_residual(g, in[0], in[1], in[2]); }
static Tensor *build_bias_residual_self(Graph *g, Tensor **in, void *ctx) { return op_bias_residual(g, in[0], in[0], in[1]); }
static Tensor *build_sin(Graph *g, Tensor **in, void *ctx) { return op_sin(g, in[0]); }
static Tensor *build_cos(Graph *g, Tensor **in, void *ctx) { return op_cos(g, in[0]); }
// Two heads; in[1], when given, is the key mask.
static Tensor *build_attention(Graph *g, Tensor **in, void *ctx) { return op_attention(g, in[0], NULL, 2); }
static Tensor *build_attention_masked(Graph *g, Tensor **in, void *ctx) { return op_attention(g, in[0], in[1], 2); }

// ---- backward accumulates -----------------------------------------------

// Builds the op on params (diff) and inputs, fills them like gradcheck, runs
// backward twice from the same seed without zeroing, and returns the worst
// gap between the second gradient and twice the first, relative to the
// largest gradient of the same input.
static double accumulate_err(const GcInput *spec, int n, GcBuild build, void *ctx) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *in[GC_MAX_INPUTS];
    for (int k = 0; k < n; k++)
        in[k] = spec[k].diff ? graph_param(g, spec[k].name, spec[k].ndim, spec[k].shape, INIT_ZEROS, 0, 0)
                             : graph_input(g, spec[k].name, spec[k].dtype, spec[k].ndim, spec[k].shape);
    Tensor *out = build(g, in, ctx);
    if (graph_plan(g)) { fprintf(stderr, "accumulate_err: plan failed\n"); exit(1); }
    for (int k = 0; k < n; k++) {
        float *v = in[k]->data;
        float sc = spec[k].scale ? spec[k].scale : 1.0f;
        for (size_t i = 0; i < in[k]->numel; i++) v[i] = spec[k].values ? spec[k].values[i] : spec[k].offset + sc * rng_normal(&rng);
    }
    float *seed = malloc(out->numel * sizeof *seed);
    for (size_t i = 0; i < out->numel; i++) seed[i] = rng_normal(&rng);
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward_seeded(g, out, seed);
    double worst = 0;
    float *first[GC_MAX_INPUTS] = { 0 };
    for (int k = 0; k < n; k++) {
        if (!spec[k].diff) continue;
        first[k] = malloc(in[k]->numel * sizeof(float));
        memcpy(first[k], in[k]->grad, in[k]->numel * sizeof(float));
    }
    graph_backward_seeded(g, out, seed);
    for (int k = 0; k < n; k++) {
        if (!spec[k].diff) continue;
        double gap = 0, largest = 0;
        for (size_t i = 0; i < in[k]->numel; i++) {
            gap = fmax(gap, fabs(in[k]->grad[i] - 2.0 * first[k][i]));
            largest = fmax(largest, fabs(2.0 * first[k][i]));
        }
        double e = largest > 0 ? gap / largest : gap;
        if (!(e <= worst)) worst = e;   // NaN propagates to the CHECK
        free(first[k]);
    }
    free(seed);
    graph_free(g);
    return worst;
}

// Gradcheck plus the accumulation check for one op configuration.
#define CHECK_OP(spec, n, build, ctx) do { \
    GcResult r_ = gradcheck(spec, n, build, ctx, &rng, GC_EPS, GC_FLOOR); \
    CHECK_GRAD(r_, spec, GRAD_BOUND); \
    double acc_ = accumulate_err(spec, n, build, ctx); \
    CHECK(acc_ <= ACCUM_BOUND, "backward does not accumulate: rel gap %.3g", acc_); \
    } while (0)

// ---- gradient checks --------------------------------------------------------

static void test_matmul_grad(void) {
    GcInput shared[] = {
        { "a", DT_F32, 3, { 2, 3, 4 }, 1 },
        { "b", DT_F32, 2, { 4, 5 }, 1 },
    };
    CHECK_OP(shared, 2, build_matmul, NULL);
    GcInput plain[] = {
        { "a", DT_F32, 2, { 3, 4 }, 1 },
        { "b", DT_F32, 2, { 4, 5 }, 1 },
    };
    CHECK_OP(plain, 2, build_matmul, NULL);
    GcInput batched[] = {
        { "a", DT_F32, 3, { 3, 2, 4 }, 1 },
        { "b", DT_F32, 3, { 3, 4, 5 }, 1 },
    };
    CHECK_OP(batched, 2, build_matmul, NULL);
}

static void test_add_mul_grad(void) {
    GcInput same[] = {
        { "a", DT_F32, 3, { 2, 3, 4 }, 1 },
        { "b", DT_F32, 3, { 2, 3, 4 }, 1 },
    };
    GcInput bcast_row[] = {        // b over a's two leading dims
        { "a", DT_F32, 3, { 2, 3, 70 }, 1 },   // 70 > one 64-wide reduction block
        { "b", DT_F32, 1, { 70 }, 1 },
    };
    GcInput bcast_mat[] = {        // b over a's first dim
        { "a", DT_F32, 3, { 4, 3, 5 }, 1 },
        { "b", DT_F32, 2, { 3, 5 }, 1 },
    };
    CHECK_OP(same, 2, build_add, NULL);
    CHECK_OP(bcast_row, 2, build_add, NULL);
    CHECK_OP(bcast_mat, 2, build_add, NULL);
    CHECK_OP(same, 2, build_mul, NULL);
    CHECK_OP(bcast_row, 2, build_mul, NULL);
    CHECK_OP(bcast_mat, 2, build_mul, NULL);
}

static void test_scale_grad(void) {
    GcInput spec[] = { { "a", DT_F32, 2, { 3, 7 }, 1 } };
    CHECK_OP(spec, 1, build_scale, NULL);
}

static void test_layernorm_grad(void) {
    GcInput spec[] = {
        { "x", DT_F32, 3, { 2, 3, 8 }, 1, 1.0f, 0.5f },
        { "gamma", DT_F32, 1, { 8 }, 1, 0.3f, 1.0f },
        { "beta", DT_F32, 1, { 8 }, 1 },
    };
    CHECK_OP(spec, 3, build_layernorm, NULL);
    // x alone differentiable: the affine reduction is skipped, x's path not.
    spec[1].diff = spec[2].diff = 0;
    CHECK_OP(spec, 3, build_layernorm, NULL);
}

static void test_pointwise_grad(void) {
    GcInput spec[] = { { "x", DT_F32, 2, { 5, 9 }, 1, 1.5f } };
    CHECK_OP(spec, 1, build_gelu, NULL);
    CHECK_OP(spec, 1, build_sin, NULL);
    CHECK_OP(spec, 1, build_cos, NULL);
    CHECK_OP(spec, 1, build_softmax, NULL);
}

// The fused bias ops: 70 columns (past one 64-wide block, with a tail of 6),
// and each source alone differentiable, so every path of the kernels runs.
static void test_bias_fused_grad(void) {
    GcInput gelu[] = {
        { "x", DT_F32, 3, { 2, 3, 70 }, 1, 1.5f },
        { "bias", DT_F32, 1, { 70 }, 1, 0.5f },
    };
    CHECK_OP(gelu, 2, build_bias_gelu, NULL);
    gelu[1].diff = 0;
    CHECK_OP(gelu, 2, build_bias_gelu, NULL);
    gelu[0].diff = 0, gelu[1].diff = 1;
    CHECK_OP(gelu, 2, build_bias_gelu, NULL);
    GcInput res[] = {
        { "x", DT_F32, 3, { 2, 3, 70 }, 1 },
        { "fx", DT_F32, 3, { 2, 3, 70 }, 1 },
        { "bias", DT_F32, 1, { 70 }, 1 },
    };
    CHECK_OP(res, 3, build_bias_residual, NULL);
    res[2].diff = 0;
    CHECK_OP(res, 3, build_bias_residual, NULL);
    res[0].diff = 0, res[2].diff = 1;
    CHECK_OP(res, 3, build_bias_residual, NULL);
    GcInput self[] = {   // x + (x + b)
        { "x", DT_F32, 2, { 4, 9 }, 1 },
        { "bias", DT_F32, 1, { 9 }, 1 },
    };
    CHECK_OP(self, 2, build_bias_residual_self, NULL);
}

// T = 6; batch 0 masks key 0, so its query 0 has no allowed key (zero output
// and gradient), and key 3; batch 1 masks key 2 only.
static const float attn_mask6[12] = { 0, 1, 1, 0, 1, 1,
                                      1, 1, 0, 1, 1, 1 };

static void test_attention_grad(void) {
    GcInput spec[] = {
        { "qkv", DT_F32, 3, { 2, 6, 24 }, 1 },   // C = 8, 2 heads of 4
        { "key_mask", DT_F32, 2, { 2, 6 }, 0, .values = attn_mask6 },
    };
    CHECK_OP(spec, 1, build_attention, NULL);
    CHECK_OP(spec, 2, build_attention_masked, NULL);
}

// ---- forward values against double references ---------------------------

// Graph inputs filled with N(0, 1) values (the values of a mask set after).
static Tensor *input(Graph *g, const char *name, int ndim, const int *shape) {
    return graph_input(g, name, DT_F32, ndim, shape);
}

static void fill_normal(Tensor *t) {
    float *v = t->data;
    for (size_t i = 0; i < t->numel; i++) v[i] = rng_normal(&rng);
}

static double worst_vs_ref(const float *got, const double *ref, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = test_rel_err(got[i], ref[i], 1.0);
        if (!(e <= worst)) worst = e;   // a NaN makes it NaN, which fails the CHECK
    }
    return worst;
}

// c[i] (M, N) = a[i] (M, K) @ b (K, N) or b[i], in double.
static void matmul_ref(const float *a, const float *b, double *c, int B, int M, int K, int N, int b_batched) {
    for (int i = 0; i < B; i++) {
        const float *bi = b + (b_batched ? (size_t)i * K * N : 0);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int k = 0; k < K; k++) s += (double)a[((size_t)i * M + m) * K + k] * bi[(size_t)k * N + n];
                c[((size_t)i * M + m) * N + n] = s;
            }
    }
}

static void check_matmul_fwd(int B, int M, int K, int N, int a_ndim, int b_batched) {
    Graph *g = graph_new(DEV_CPU);
    int ashape[3] = { B, M, K }, bshape[3] = { B, K, N };
    Tensor *a = input(g, "a", a_ndim, a_ndim == 3 ? ashape : ashape + 1);
    Tensor *b = input(g, "b", b_batched ? 3 : 2, b_batched ? bshape : bshape + 1);
    Tensor *c = op_matmul(g, a, b);
    REQUIRE(graph_plan(g) == 0, "plan");
    fill_normal(a);
    fill_normal(b);
    graph_forward(g);
    double *ref = malloc(c->numel * sizeof *ref);
    matmul_ref(a->data, b->data, ref, a_ndim == 3 ? B : 1, M, K, N, b_batched);
    double e = worst_vs_ref(c->data, ref, c->numel);
    CHECK(e <= FWD_BOUND, "matmul B=%d M=%d K=%d N=%d batched b=%d: rel err %.3g", B, M, K, N, b_batched, e);
    free(ref);
    graph_free(g);
}

static void test_matmul_forward(void) {
    check_matmul_fwd(3, 5, 17, 6, 3, 0);
    check_matmul_fwd(3, 5, 17, 6, 3, 1);
    check_matmul_fwd(1, 9, 31, 4, 2, 0);
}

// Broadcast semantics: y[r, j] = a[r, j] op b[j] for b of a's trailing dims.
static void test_add_mul_forward(void) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *a = input(g, "a", 3, (int[]){ 3, 4, 5 });
    Tensor *b = input(g, "b", 2, (int[]){ 4, 5 });
    Tensor *s = op_add(g, a, b), *p = op_mul(g, a, b);
    REQUIRE(graph_plan(g) == 0, "plan");
    fill_normal(a);
    fill_normal(b);
    graph_forward(g);
    const float *av = a->data, *bv = b->data, *sv = s->data, *pv = p->data;
    int bad = 0;
    for (size_t i = 0; i < a->numel; i++) {
        // One fp32 operation each: the same rounding as the kernel, so exact.
        bad += sv[i] != av[i] + bv[i % 20];
        bad += pv[i] != av[i] * bv[i % 20];
    }
    CHECK(bad == 0, "%d broadcast add/mul values differ", bad);
    graph_free(g);
}

static void test_layernorm_forward(void) {
    enum { R = 7, C = 33 };
    const float eps = 1e-5f;
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = input(g, "x", 2, (int[]){ R, C });
    Tensor *gm = input(g, "gamma", 1, (int[]){ C });
    Tensor *bt = input(g, "beta", 1, (int[]){ C });
    Tensor *y = op_layernorm(g, x, gm, bt, eps);
    REQUIRE(graph_plan(g) == 0, "plan");
    fill_normal(x);
    fill_normal(gm);
    fill_normal(bt);
    float *xv = x->data;
    for (int i = 0; i < C; i++) xv[i] += 100.0f;   // row 0 far from zero: the variance must not cancel
    graph_forward(g);
    double ref[R * C], mean_ref[R], rstd_ref[R];
    const float *gv = gm->data, *bv = bt->data;
    for (int r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += xv[r * C + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xv[r * C + c] - m) * (xv[r * C + c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + eps);
        mean_ref[r] = m;
        rstd_ref[r] = s;
        for (int c = 0; c < C; c++) ref[r * C + c] = (xv[r * C + c] - m) * s * gv[c] + bv[c];
    }
    double e = worst_vs_ref(y->data, ref, R * C);
    CHECK(e <= FWD_BOUND, "layernorm output: rel err %.3g", e);
    e = worst_vs_ref(y->saved, mean_ref, R);
    CHECK(e <= FWD_BOUND, "layernorm saved mean: rel err %.3g", e);
    e = worst_vs_ref(y->saved + R, rstd_ref, R);
    CHECK(e <= FWD_BOUND, "layernorm saved rstd: rel err %.3g", e);
    graph_free(g);
}

static void test_softmax_forward(void) {
    enum { R = 6, C = 29 };
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = input(g, "x", 2, (int[]){ R, C });
    Tensor *y = op_softmax(g, x);
    REQUIRE(graph_plan(g) == 0, "plan");
    fill_normal(x);
    float *xv = x->data;
    for (int c = 0; c < C; c++) xv[c] = 100.0f + 10.0f * xv[c];   // exp would overflow without the max shift
    graph_forward(g);
    double ref[R * C];
    for (int r = 0; r < R; r++) {
        double mx = xv[r * C], sum = 0;
        for (int c = 1; c < C; c++) mx = fmax(mx, xv[r * C + c]);
        for (int c = 0; c < C; c++) sum += exp(xv[r * C + c] - mx);
        for (int c = 0; c < C; c++) ref[r * C + c] = exp(xv[r * C + c] - mx) / sum;
    }
    double e = worst_vs_ref(y->data, ref, R * C);
    CHECK(e <= FWD_BOUND, "softmax: rel err %.3g", e);
    graph_free(g);
}

// Attention in double, straight from the definition in ops.h (causal): out
// (B, T, C), lse (B, H, T), +inf for a query that sees no key.
static void attention_ref(const float *qkv, const float *mask, int B, int T, int C, int H, double *out, double *lse) {
    int hs = C / H;
    double scale = 1.0 / sqrt((double)hs);
    double *w = malloc(T * sizeof *w);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * 3 * C + h * hs;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    w[j] = -INFINITY;
                    if (j > i || (mask && mask[b * T + j] == 0)) continue;
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
                    double s = 0;
                    for (int d = 0; d < hs; d++) s += (double)q[d] * k[d];
                    w[j] = s * scale;
                    mx = fmax(mx, w[j]);
                }
                for (int j = 0; j < T; j++) sum += w[j] == -INFINITY ? 0 : exp(w[j] - mx);
                lse[((size_t)b * H + h) * T + i] = sum > 0 ? mx + log(sum) : INFINITY;
                double *o = out + ((size_t)b * T + i) * C + h * hs;
                for (int d = 0; d < hs; d++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        if (sum > 0 && w[j] != -INFINITY)
                            acc += exp(w[j] - mx) / sum * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + d];
                    o[d] = acc;
                }
            }
    free(w);
}

// Forward and the saved logsumexp against the reference, then the
// no-gradient promises: a query with no allowed key and a masked key get
// exactly zero gradient.
static void check_attention(int B, int T, int C, int H, const float *mask_values) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *qkv = graph_param(g, "qkv", 3, (int[]){ B, T, 3 * C }, INIT_ZEROS, 0, 0);
    Tensor *mask = mask_values ? input(g, "key_mask", 2, (int[]){ B, T }) : NULL;
    Tensor *y = op_attention(g, qkv, mask, H);
    REQUIRE(graph_plan(g) == 0, "plan");
    fill_normal(qkv);
    if (mask) memcpy(mask->data, mask_values, (size_t)B * T * sizeof(float));
    graph_forward(g);
    size_t n_lse = (size_t)B * H * T;
    double *ref = malloc(y->numel * sizeof *ref), *lse_ref = malloc(n_lse * sizeof *lse_ref);
    attention_ref(qkv->data, mask_values, B, T, C, H, ref, lse_ref);
    double e = worst_vs_ref(y->data, ref, y->numel);
    CHECK(e <= FWD_BOUND, "attention B=%d T=%d C=%d H=%d mask=%d: output rel err %.3g", B, T, C, H, mask != NULL, e);
    float *lse = malloc(n_lse * sizeof *lse);
    memcpy(lse, y->saved, n_lse * sizeof *lse);
    int lse_inf_mismatch = 0;
    for (size_t i = 0; i < n_lse; i++) {
        lse_inf_mismatch += lse_ref[i] != lse[i] && (isinf(lse_ref[i]) || isinf(lse[i]));
        if (isinf(lse_ref[i])) lse_ref[i] = lse[i] = 0;   // compared just above
    }
    CHECK(lse_inf_mismatch == 0, "%d queries with no key do not have lse = +inf", lse_inf_mismatch);
    e = worst_vs_ref(lse, lse_ref, n_lse);
    free(lse);
    CHECK(e <= FWD_BOUND, "attention B=%d T=%d C=%d H=%d mask=%d: logsumexp rel err %.3g", B, T, C, H, mask != NULL, e);

    float *seed = malloc(y->numel * sizeof *seed);
    for (size_t i = 0; i < y->numel; i++) seed[i] = rng_normal(&rng);
    graph_zero_grad(g);
    graph_backward_seeded(g, y, seed);
    int leaks = 0;
    const float *yv = y->data;
    for (int b = 0; b < B && mask_values; b++) {
        int first_kept = 0;
        while (first_kept < T && mask_values[b * T + first_kept] == 0) first_kept++;
        for (int t = 0; t < T; t++) {
            const float *dq = qkv->grad + ((size_t)b * T + t) * 3 * C;
            int masked_key = mask_values[b * T + t] == 0, no_key = t < first_kept;
            for (int c = 0; c < C; c++) {
                leaks += no_key && (dq[c] != 0.0f || yv[((size_t)b * T + t) * C + c] != 0.0f);
                leaks += masked_key && (dq[C + c] != 0.0f || dq[2 * C + c] != 0.0f);
            }
        }
    }
    CHECK(leaks == 0, "%d gradients or outputs of masked queries/keys are nonzero", leaks);
    free(seed);
    free(ref);
    free(lse_ref);
    graph_free(g);
}

static void test_attention_forward(void) {
    check_attention(2, 6, 8, 2, NULL);
    check_attention(2, 6, 8, 2, attn_mask6);
    // Odd sizes, more heads, a longer masked prefix.
    enum { B = 2, T = 37 };
    float mask[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = rng_uniform(&rng) < 0.8f;
    mask[0] = mask[1] = mask[2] = 0;
    check_attention(B, T, 32, 4, mask);
}

// ---- threaded reductions ----------------------------------------------------

// Broadcast and affine gradients sum over rows; at this size the kernels take
// their OpenMP path (>= 16384 elements), where each thread owns a block of
// the summed elements. Compared with double sums, each entry normalised by
// the sum of the absolute values of its terms: fp32 recursive summation of
// n terms is off by at most (n - 1) u of that (u = 2^-24), and each term
// carries a few u of its own (xhat from fp32 mean and rstd), so 2 n u is a
// rigorous margin that does not depend on cancellation.
enum { BIG_ROWS = 256, BIG_C = 130 };

static double sum_err(const float *got, const double *ref, const double *abs_sum, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / fmax(abs_sum[i], 1e-30);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

static void test_threaded_reductions(void) {
    const double bound = 2.0 * BIG_ROWS * ldexp(1.0, -24);
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_param(g, "x", 2, (int[]){ BIG_ROWS, BIG_C }, INIT_ZEROS, 0, 0);
    Tensor *b = graph_param(g, "b", 1, (int[]){ BIG_C }, INIT_ZEROS, 0, 0);
    Tensor *gm = graph_param(g, "gamma", 1, (int[]){ BIG_C }, INIT_ZEROS, 0, 0);
    Tensor *bt = graph_param(g, "beta", 1, (int[]){ BIG_C }, INIT_ZEROS, 0, 0);
    // Three outputs from one graph: add and mul share b; seeding one at a
    // time keeps each gradient separate.
    Tensor *outs[3] = { op_add(g, x, b), op_mul(g, x, b), op_layernorm(g, x, gm, bt, 1e-5f) };
    REQUIRE(graph_plan(g) == 0, "plan");
    fill_normal(x); fill_normal(b); fill_normal(gm); fill_normal(bt);
    graph_forward(g);
    size_t n = (size_t)BIG_ROWS * BIG_C;
    float *seed = malloc(n * sizeof *seed);
    const float *xv = x->data, *mean = outs[2]->saved, *rstd = outs[2]->saved + BIG_ROWS;
    double ref[BIG_C], abs_sum[BIG_C], ref_b[BIG_C], abs_b[BIG_C];
    const char *what[3] = { "add db", "mul db", "layernorm dgamma" };
    for (int o = 0; o < 3; o++) {
        for (size_t i = 0; i < n; i++) seed[i] = rng_normal(&rng);
        graph_zero_grad(g);
        graph_backward_seeded(g, outs[o], seed);
        for (int c = 0; c < BIG_C; c++) {
            ref[c] = abs_sum[c] = ref_b[c] = abs_b[c] = 0;
            for (int r = 0; r < BIG_ROWS; r++) {
                double dy = seed[r * BIG_C + c], xv_rc = xv[r * BIG_C + c];
                double term = o == 0 ? dy : o == 1 ? dy * xv_rc : dy * (xv_rc - mean[r]) * rstd[r];
                ref[c] += term;
                abs_sum[c] += fabs(term);
                ref_b[c] += dy;
                abs_b[c] += fabs(dy);
            }
        }
        double e = sum_err(o < 2 ? b->grad : gm->grad, ref, abs_sum, BIG_C);
        CHECK(e <= bound, "%s: err %.3g > %.3g of the absolute sum", what[o], e, bound);
        if (o == 2) {
            e = sum_err(bt->grad, ref_b, abs_b, BIG_C);
            CHECK(e <= bound, "layernorm dbeta: err %.3g > %.3g of the absolute sum", e, bound);
        }
    }
    free(seed);
    graph_free(g);
}

// ---- cast -----------------------------------------------------------------

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// Round to nearest even, computed differently from tensor.h: pick the nearer
// of the two bf16 neighbours in double, ties to the even mantissa.
static uint16_t bf16_ref(float f) {
    uint32_t u = f32_bits(f);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double dlo = fabs((double)f - bits_f32((uint32_t)lo << 16));
    double dhi = fabs((double)bits_f32((uint32_t)hi << 16) - (double)f);
    if (isinf(bits_f32((uint32_t)hi << 16)))   // past FLT_MAX: the halfway point is 2^128
        dhi = fabs(ldexp(1.0, 128) * (f < 0 ? -1 : 1) - (double)f);
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1) ? hi : lo;
}

// Runs f32 values through cast(f32 -> bf16) and returns the bf16 bits.
static void cast_to_bf16(const float *x, uint16_t *bits, int n) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *in = input(g, "x", 1, &n);
    Tensor *out = op_cast(g, in, DT_BF16);
    if (graph_plan(g)) { fprintf(stderr, "cast_to_bf16: plan failed\n"); exit(1); }
    memcpy(in->data, x, n * sizeof *x);
    graph_forward(g);
    memcpy(bits, out->data, n * sizeof *bits);
    graph_free(g);
}

static void test_cast_rounding(void) {
    const float chosen[] = {
        1.0f,
        bits_f32(0x3F808000),   // 1 + 2^-8: halfway, odd neighbour above -> down to even 0x3F80
        bits_f32(0x3F818000),   // halfway between 0x3F81 and 0x3F82 -> up to even 0x3F82
        bits_f32(0x3F808001),   // just above halfway -> 0x3F81
        bits_f32(0x3F807FFF),   // just below halfway -> 0x3F80
        bits_f32(0xBF818000),   // negative tie -> 0xBF82
        bits_f32(0x7F7FFFFF),   // FLT_MAX rounds past the largest bf16 -> +inf
        INFINITY, -INFINITY, 0.0f, -0.0f,
        bits_f32(0x00018000),   // subnormal tie -> 0x0002
        3.14159265f, -1e-20f, 65504.0f,
    };
    const uint16_t expect[] = { 0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x3F80, 0xBF82, 0x7F80, 0x7F80, 0xFF80,
                                0x0000, 0x8000, 0x0002, bf16_ref(3.14159265f), bf16_ref(-1e-20f), bf16_ref(65504.0f) };
    enum { N = sizeof chosen / sizeof chosen[0] };
    uint16_t got[N];
    cast_to_bf16(chosen, got, N);
    for (int i = 0; i < N; i++)
        CHECK(got[i] == expect[i] && got[i] == bf16_ref(chosen[i]), "cast(%a) = 0x%04X, want 0x%04X", chosen[i], got[i], expect[i]);

    float nan_in = NAN;
    uint16_t nan_out;
    cast_to_bf16(&nan_in, &nan_out, 1);
    CHECK(isnan(bf16_to_f32(nan_out)), "NaN cast to 0x%04X, not a NaN", nan_out);

    // Random values of every magnitude: the kernel agrees with the reference.
    enum { M = 4096 };
    float *x = malloc(M * sizeof *x);
    uint16_t *bits = malloc(M * sizeof *bits);
    for (int i = 0; i < M; i++) {
        x[i] = bits_f32((uint32_t)rng_u64(&rng));
        if (isnan(x[i])) x[i] = 1.5f;
    }
    cast_to_bf16(x, bits, M);
    int bad = 0;
    for (int i = 0; i < M; i++) bad += bits[i] != bf16_ref(x[i]);
    CHECK(bad == 0, "%d of %d random values rounded differently from the reference", bad, M);
    free(x);
    free(bits);
}

// Every non-NaN bf16 value survives bf16 -> f32 -> bf16 bit for bit.
static void test_cast_round_trip(void) {
    int n = 65536;
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_input(g, "x", DT_BF16, 1, &n);
    Tensor *wide = op_cast(g, x, DT_F32);
    Tensor *back = op_cast(g, wide, DT_BF16);
    REQUIRE(graph_plan(g) == 0, "plan");
    uint16_t *xv = x->data;
    for (int i = 0; i < n; i++) xv[i] = (uint16_t)i;
    graph_forward(g);
    const uint16_t *bv = back->data;
    const float *wv = wide->data;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(bf16_to_f32((uint16_t)i))) { bad += !isnan(wv[i]); continue; }
        bad += bv[i] != (uint16_t)i || f32_bits(wv[i]) != (uint32_t)i << 16;
    }
    CHECK(bad == 0, "%d bf16 values did not survive the round trip", bad);
    graph_free(g);
}

// The gradient passes through both casts unchanged, and accumulates.
static void test_cast_grad(void) {
    int n = 1000;
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_param(g, "x", 1, &n, INIT_ZEROS, 0, 0);
    Tensor *y = op_cast(g, op_cast(g, x, DT_BF16), DT_F32);
    REQUIRE(graph_plan(g) == 0, "plan");
    fill_normal(x);
    float *seed = malloc(n * sizeof *seed);
    for (int i = 0; i < n; i++) seed[i] = rng_normal(&rng);
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward_seeded(g, y, seed);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += x->grad[i] != seed[i];   // a copy: exact
    CHECK(bad == 0, "%d gradients changed passing through cast", bad);
    graph_backward_seeded(g, y, seed);
    bad = 0;
    for (int i = 0; i < n; i++) bad += x->grad[i] != 2.0f * seed[i];   // s + s is exactly 2s
    CHECK(bad == 0, "%d gradients did not accumulate through cast", bad);
    free(seed);
    graph_free(g);
}

int main(void) {
    rng_seed(&rng, test_seed("test_grad_core"));
    RUN(test_matmul_grad);
    RUN(test_add_mul_grad);
    RUN(test_scale_grad);
    RUN(test_layernorm_grad);
    RUN(test_pointwise_grad);
    RUN(test_bias_fused_grad);
    RUN(test_attention_grad);
    RUN(test_matmul_forward);
    RUN(test_add_mul_forward);
    RUN(test_layernorm_forward);
    RUN(test_softmax_forward);
    RUN(test_attention_forward);
    RUN(test_threaded_reductions);
    RUN(test_cast_rounding);
    RUN(test_cast_round_trip);
    RUN(test_cast_grad);
    return test_summary();
}
