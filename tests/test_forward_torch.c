// test_forward_torch.c: every op's forward values and input gradients
// against PyTorch, from the committed fixture tests/fixtures/ops.bin (made by
// scripts/gen_op_fixtures.py, which says how to regenerate it; CI needs no
// torch). Run from the repo root. DISTIL_TEST_VERBOSE=1 prints each case's
// worst error.
//
// For each case: a fresh CPU tape; float inputs with an expected gradient
// are parameters, the rest inputs; one op constructor; graph_forward and the
// output compared; then graph_zero_grad + graph_backward_seeded with the
// stored upstream gradient d(out), and each input's gradient compared.
//
// ops.bin's format: tests/fixture.h.
#include <float.h>
#include <stdint.h>
#include <string.h>
#include "autograd/graph.h"   // defines: Graph, graph_*
#include "autograd/ops.h"     // defines: op_*, op_name, OP_*
#include "tests/fixture.h"    // defines: Fixture, fixture_load, fx_find, fx_floats
#include "tests/test.h"       // defines: RUN, CHECK, REQUIRE, test_summary

#define FIXTURE_PATH "tests/fixtures/ops.bin"

// ---- tolerances --------------------------------------------------------------
// The reference is float64 math on the same float32 inputs, rounded once.
// An element's error is |got - want| / max(|want|, FLOOR * max|want| over the
// tensor): relative, except that elements far below the tensor's scale (the
// results of cancellation, where fp32 keeps only an absolute accuracy on that
// scale) are judged on 1% of it. So k ulps (u = 6e-8) lost on the tensor's
// scale read as up to 100 k u = 6e-6 k.
#define FLOOR 1e-2

typedef struct {
    const char *op;
    double tol;       // bound on the error above; 0: bitwise equal
} OpTol;

static const OpTol op_tols[] = {
    // Pure data movement: each value is copied, never rounded.
    { "concat", 0 }, { "slice", 0 }, { "transpose", 0 },
    // Rounding to nearest even is exact arithmetic on the bits; the
    // gradient passes through unchanged.
    { "cast", 0 },
    // One to three fp32 roundings per value: a product, (pixel/255 - mean)
    // / std, libm's sinf/cosf (within ~1 ulp) times d(out). The backward of
    // a broadcast or of a repeated id sums up to 6 such terms, where
    // cancellation costs an ulp or two on the scale: 1e-5 allows ~1.5.
    { "add", 1e-5 }, { "mul", 1e-5 }, { "scale", 1e-5 }, { "embedding", 1e-5 },
    { "patchify", 1e-5 }, { "sin", 1e-5 }, { "cos", 1e-5 },
    // Sums of up to 120 terms (dot products of up to 48, and the backward's
    // sums over up to 66 rows), rounding error growing like sqrt(n) u to n u,
    // several ulps on the scale: 1e-4 allows ~16.
    { "sum", 1e-4 }, { "mean", 1e-4 }, { "cumsum", 1e-4 },
    { "matmul", 1e-4 }, { "linear", 1e-4 },
    { "cross_entropy", 1e-4 }, { "smooth_l1", 1e-4 }, { "mse", 1e-4 },
    // dx = y (dy - sum(dy y)): the difference cancels.
    { "softmax", 1e-4 },
    // In the tails 1 + tanh and 1 - tanh^2 cancel to ~1e-7, so fp32 keeps
    // only ~|x| u of the gradient there (observed ~4 ulps on the scale).
    { "gelu", 1e-4 }, { "bias_gelu", 1e-4 },
    // x + (fx + bias): two roundings per value; the bias gradient sums up
    // to 8 rows of d(out).
    { "bias_residual", 1e-5 },
    // x - mean loses log2(|mean| / std) bits, and the cases put the mean at
    // up to 7 std (observed ~5 ulps on the scale); 2e-4 allows ~30.
    { "layernorm", 2e-4 },
    // QK^T, a masked softmax and PV, and a backward through all three: the
    // longest chain of fp32 roundings here.
    { "attention", 1e-4 },
};

static double op_tol(const char *op) {
    for (size_t i = 0; i < sizeof op_tols / sizeof op_tols[0]; i++)
        if (strcmp(op_tols[i].op, op) == 0) return op_tols[i].tol;
    return -1;
}

static int verbose;

// CHECKs got (n floats) against want; what names the tensor in messages.
static void compare_f32(const char *what, const float *got, const float *want, size_t n, double tol) {
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(want[i])) scale = fmax(scale, fabs(want[i]));
    double floor = fmax(FLOOR * scale, FLT_MIN);
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double err;
        if (got[i] == want[i]) err = 0;             // also equal infinities
        else if (tol == 0 || !isfinite(got[i]) || !isfinite(want[i])) err = INFINITY;
        else err = fabs((double)got[i] - want[i]) / fmax(fabs(want[i]), floor);
        if (err > worst || isnan(got[i])) { worst = isnan(got[i]) ? INFINITY : err; at = i; }
    }
    if (verbose) printf("    %-34s worst err %.3g (tol %.3g)\n", what, worst, tol);
    CHECK(worst <= tol, "%s: err %.3g > %.3g at [%zu]: got %.9g, want %.9g", what, worst, tol, at, got[at], want[at]);
}

// ---- building and running one case ------------------------------------------

static int n_role(const FxCase *c, const char *roles) {
    int n = 0;
    for (int i = 0; i < c->n_tensors; i++) n += strchr(roles, c->t[i].role) != NULL;
    return n;
}

static int op_id(const char *name) {
    for (int op = OP_MATMUL; op < OP_COUNT; op++)
        if (strcmp(op_name(op), name) == 0) return op;
    return -1;
}

// The op under test, applied to the case's inputs x[0..n) and attributes;
// NULL when the number of inputs does not fit the op.
static Tensor *build(Graph *g, const FxCase *c, Tensor **x, int n) {
    const int *ia = c->iattr;
    const float *fa = c->fattr;
    Tensor *opt = n > 2 ? x[2] : NULL;
    switch (op_id(c->op)) {
    case OP_MATMUL:        return n == 2 ? op_matmul(g, x[0], x[1]) : NULL;
    case OP_LINEAR:        return n == 2 || n == 3 ? op_linear(g, x[0], x[1], opt) : NULL;
    case OP_ADD:           return n == 2 ? op_add(g, x[0], x[1]) : NULL;
    case OP_MUL:           return n == 2 ? op_mul(g, x[0], x[1]) : NULL;
    case OP_SCALE:         return n == 1 ? op_scale(g, x[0], fa[0]) : NULL;
    case OP_LAYERNORM:     return n == 3 ? op_layernorm(g, x[0], x[1], x[2], fa[0]) : NULL;
    case OP_GELU:          return n == 1 ? op_gelu(g, x[0]) : NULL;
    case OP_BIAS_GELU:     return n == 2 ? op_bias_gelu(g, x[0], x[1]) : NULL;
    case OP_BIAS_RESIDUAL: return n == 3 ? op_bias_residual(g, x[0], x[1], x[2]) : NULL;
    case OP_SOFTMAX:       return n == 1 ? op_softmax(g, x[0]) : NULL;
    case OP_ATTENTION:
        if (n != 1 && n != 2) return NULL;
        return ia[1] == ATTN_PREFIX ? op_attention_prefix(g, x[0], n == 2 ? x[1] : NULL, ia[0], ia[2])
                                    : op_attention(g, x[0], n == 2 ? x[1] : NULL, ia[0]);
    case OP_EMBEDDING:     return n == 2 ? op_embedding(g, x[0], x[1]) : NULL;
    case OP_CONCAT:        return n >= 1 && n <= TENSOR_MAX_SRC ? op_concat(g, x, n, ia[0]) : NULL;
    case OP_SLICE:         return n == 1 ? op_slice(g, x[0], ia[0], ia[1], ia[2]) : NULL;
    case OP_TRANSPOSE:     return n == 1 ? op_transpose(g, x[0], ia[0], ia[1]) : NULL;
    case OP_SUM:           return n == 1 ? op_sum(g, x[0], ia[0]) : NULL;
    case OP_MEAN:          return n == 1 ? op_mean(g, x[0], ia[0]) : NULL;
    case OP_PATCHIFY:      return n == 1 ? op_patchify(g, x[0], ia[0], fa, fa + 3) : NULL;
    case OP_SIN:           return n == 1 ? op_sin(g, x[0]) : NULL;
    case OP_COS:           return n == 1 ? op_cos(g, x[0]) : NULL;
    case OP_CUMSUM:        return n == 1 ? op_cumsum(g, x[0], ia[0]) : NULL;
    case OP_CROSS_ENTROPY: return n == 2 ? op_cross_entropy(g, x[0], x[1], ia[0]) : NULL;
    case OP_SMOOTH_L1:     return n == 2 || n == 3 ? op_smooth_l1(g, x[0], x[1], opt, fa[0]) : NULL;
    case OP_MSE:           return n == 2 || n == 3 ? op_mse(g, x[0], x[1], opt) : NULL;
    case OP_CAST:          return n == 1 ? op_cast(g, x[0], (DType)ia[0]) : NULL;
    default:               return NULL;
    }
}

static void check_output(const FxCase *c, Tensor *out, const FxTensor *want, double tol) {
    char what[160];
    snprintf(what, sizeof what, "%s: out", c->name);
    if (want->dtype == DT_BF16) {
        // Compare the stored bit patterns: rounding must match exactly.
        const uint16_t *got = out->data;
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < out->numel; i++) {
            uint16_t w;
            memcpy(&w, want->data + 2 * i, 2);
            if (got[i] != w && bad++ == 0) first = i;
        }
        uint16_t w0 = 0;
        if (bad) memcpy(&w0, want->data + 2 * first, 2);
        if (verbose) printf("    %-34s %zu of %zu bf16 values differ\n", what, bad, out->numel);
        CHECK(bad == 0, "%s: %zu bf16 values differ; first at [%zu]: got 0x%04x, want 0x%04x", what, bad, first,
              bad ? got[first] : 0, w0);
        return;
    }
    float *got = malloc(out->numel * sizeof *got), *w = fx_floats(want);
    tensor_to_host_f32(out, got);
    compare_f32(what, got, w, out->numel, tol);
    free(got);
    free(w);
}

static void run_case(const FxCase *c, double tol) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *x[FX_MAX_TENSORS];
    const FxTensor *xf[FX_MAX_TENSORS];
    int n = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const FxTensor *t = &c->t[i];
        if (t->role != 'i' && t->role != 'p') continue;
        xf[n] = t;
        x[n++] = t->role == 'p' ? graph_param(g, t->name, t->ndim, t->shape, INIT_ZEROS, 0, 0)
                                : graph_input(g, t->name, t->dtype, t->ndim, t->shape);
    }
    const FxTensor *want = fx_find(c, 'o', NULL), *dout = fx_find(c, 'u', NULL);
    Tensor *out = build(g, c, x, n);
    if (!out || !want || graph_plan(g)) {
        CHECK(0, "%s: cannot build op %s from %d inputs (fixture and test disagree)", c->name, c->op, n);
        graph_free(g);
        return;
    }
    // CPU tape: the arenas are host memory, filled with the raw bytes.
    for (int k = 0; k < n; k++) memcpy(x[k]->data, xf[k]->data, xf[k]->numel * dtype_size(xf[k]->dtype));

    int same_shape = out->ndim == want->ndim && out->dtype == want->dtype;
    for (int d = 0; same_shape && d < out->ndim; d++) same_shape = out->shape[d] == want->shape[d];
    char desc[96];
    CHECK(same_shape, "%s: output is %s, the reference has %d dims and dtype %s", c->name,
          tensor_describe(out, desc, sizeof desc), want->ndim, dtype_name(want->dtype));
    if (!same_shape) { graph_free(g); return; }

    graph_forward(g);
    check_output(c, out, want, tol);

    int n_grads = n_role(c, "g");
    CHECK(n_grads == n_role(c, "p"), "%s: fixture has %d params but %d expected grads", c->name, n_role(c, "p"), n_grads);
    if (n_grads && dout) {
        CHECK(out->requires_grad, "%s: output takes no gradient", c->name);
        float *seed = fx_floats(dout);
        graph_zero_grad(g);
        graph_backward_seeded(g, out, seed);
        free(seed);
        for (int k = 0; k < n; k++) {
            const FxTensor *wg = fx_find(c, 'g', xf[k]->name);
            if (xf[k]->role != 'p' || !wg) continue;
            float *got = malloc(x[k]->numel * sizeof *got), *w = fx_floats(wg);
            tensor_grad_to_host(x[k], got);
            char what[160];
            snprintf(what, sizeof what, "%s: d%s", c->name, xf[k]->name);
            compare_f32(what, got, w, x[k]->numel, tol);
            free(got);
            free(w);
        }
    }
    graph_free(g);
}

// ---- one test per op -----------------------------------------------------------

static Fixture *fixture;   // loaded once by main

static void check_op(const char *op) {
    REQUIRE(fixture, "no fixture (%s)", FIXTURE_PATH);
    double tol = op_tol(op);
    REQUIRE(tol >= 0, "no tolerance for op %s", op);
    int n = 0;
    for (int i = 0; i < fixture->n_cases; i++) {
        if (strcmp(fixture->cases[i].op, op) != 0) continue;
        if (verbose) printf("  %s\n", fixture->cases[i].name);
        run_case(&fixture->cases[i], tol);
        n++;
    }
    CHECK(n > 0, "%s has no case for op %s", FIXTURE_PATH, op);
}

#define OP_TEST(op) static void test_##op(void) { check_op(#op); }
OP_TEST(matmul) OP_TEST(linear) OP_TEST(add) OP_TEST(mul) OP_TEST(scale)
OP_TEST(layernorm) OP_TEST(gelu) OP_TEST(softmax) OP_TEST(attention)
OP_TEST(embedding) OP_TEST(concat) OP_TEST(slice) OP_TEST(transpose)
OP_TEST(sum) OP_TEST(mean) OP_TEST(patchify) OP_TEST(sin) OP_TEST(cos)
OP_TEST(cumsum) OP_TEST(cross_entropy) OP_TEST(smooth_l1) OP_TEST(mse) OP_TEST(cast)
OP_TEST(bias_gelu) OP_TEST(bias_residual)

// Every case in the file belongs to an op tested above (a renamed op would
// otherwise drop its cases silently).
static void test_fixture_covers_ops(void) {
    REQUIRE(fixture, "no fixture (%s)", FIXTURE_PATH);
    for (int i = 0; i < fixture->n_cases; i++)
        CHECK(op_id(fixture->cases[i].op) >= 0 && op_tol(fixture->cases[i].op) >= 0,
              "case %s: unknown op %s", fixture->cases[i].name, fixture->cases[i].op);
}

int main(void) {
    const char *v = getenv("DISTIL_TEST_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    fixture = fixture_load(FIXTURE_PATH, "scripts/gen_op_fixtures.py");
    RUN(test_fixture_covers_ops);
    RUN(test_matmul); RUN(test_linear); RUN(test_add); RUN(test_mul); RUN(test_scale);
    RUN(test_layernorm); RUN(test_gelu); RUN(test_softmax); RUN(test_attention);
    RUN(test_embedding); RUN(test_concat); RUN(test_slice); RUN(test_transpose);
    RUN(test_sum); RUN(test_mean); RUN(test_patchify); RUN(test_sin); RUN(test_cos);
    RUN(test_cumsum); RUN(test_cross_entropy); RUN(test_smooth_l1); RUN(test_mse); RUN(test_cast);
    RUN(test_bias_gelu); RUN(test_bias_residual);
    fixture_free(fixture);
    return test_summary();
}
