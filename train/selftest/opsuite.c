// opsuite.c: the fixtures' cases replayed on a device (see opsuite.h).
#include "train/selftest/opsuite.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/ops.h"       // defines: op_*, op_name, OP_*
#include "autograd/rng.h"       // defines: Rng, rng_seed, rng_normal
#include "kernels/backend.h"    // defines: backend_from_host, backend_to_host

// ---- the ops -------------------------------------------------------------------

static int op_id(const char *name) {
    for (int op = OP_MATMUL; op < OP_COUNT; op++)
        if (strcmp(op_name(op), name) == 0) return op;
    return -1;
}

Tensor *opsuite_build(Graph *g, const FxCase *c, Tensor **x, int n) {
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
    case OP_DISTILL_KL:
        if ((n != 3 && n != 4) || c->n_iattr != 3 || c->n_fattr != 3) return NULL;
        return op_distill_kl(g, x[0], x[1], x[2], n == 4 ? x[3] : NULL,
                             &(DistillKLConfig){ .mode = ia[0], .tail = ia[1], .t2 = ia[2],
                                                 .t_logged = fa[0], .t = fa[1], .beta = fa[2] });
    case OP_TRAJ_LOSS:
        return n == 3 && c->n_iattr == 1 && c->n_fattr == 2 ? op_traj_loss(g, x[0], x[1], x[2], ia[0], fa[0], fa[1]) : NULL;
    case OP_COSINE_LOSS:   return n == 2 || n == 3 ? op_cosine_loss(g, x[0], x[1], n == 3 ? x[2] : NULL) : NULL;
    default:               return NULL;
    }
}

// ---- bounds against PyTorch, on the CPU ---------------------------------------------
// The metric is tolerance.h's (relative, with a floor at 1% of the tensor's
// scale). So k ulps (u = 6e-8) lost on the tensor's scale read as up to
// 100 k u = 6e-6 k.
typedef struct {
    const char *op;
    double fixture;      // against PyTorch; 0: bitwise equal
    Tol out, grad;       // a device against the CPU (test_gpu_parity's cases)
    int in_double;       // every backend keeps what cancels in double: the same bound against PyTorch
} OpBounds;

static const OpBounds op_bounds[] = {
    // Pure data movement: each value is copied, never rounded. Rounding to
    // nearest even (cast) is exact arithmetic on the bits; the gradient
    // passes through unchanged.
    { "concat", 0, TOL_EXACT, TOL_EXACT }, { "slice", 0, TOL_EXACT, TOL_EXACT },
    { "transpose", 0, TOL_EXACT, TOL_EXACT }, { "cast", 0, TOL_EXACT, TOL_EXACT },
    // One to three fp32 roundings per value: a product, (pixel/255 - mean)
    // / std, libm's sinf/cosf (within ~1 ulp) times d(out). The backward of
    // a broadcast or of a repeated id sums up to 6 such terms, where
    // cancellation costs an ulp or two on the scale: 1e-5 allows ~1.5.
    // Against the CPU, a broadcast's gradient is a reduction in another order.
    { "add", 1e-5, TOL_EXACT, TOL_REDUCE }, { "mul", 1e-5, TOL_EXACT, TOL_REDUCE },
    { "scale", 1e-5, TOL_EXACT, TOL_EXACT }, { "embedding", 1e-5, TOL_EXACT, TOL_EXACT },
    { "patchify", 1e-5, TOL_EXACT, TOL_EXACT }, { "sin", 1e-5, TOL_ULP, TOL_ULP }, { "cos", 1e-5, TOL_ULP, TOL_ULP },
    // Sums of up to 120 terms (dot products of up to 48, and the backward's
    // sums over up to 66 rows), rounding error growing like sqrt(n) u to n u,
    // several ulps on the scale: 1e-4 allows ~16. The backward of a sum or a
    // mean broadcasts d(out) onto zero: one rounding on both devices.
    { "sum", 1e-4, TOL_REDUCE, TOL_EXACT }, { "mean", 1e-4, TOL_REDUCE, TOL_EXACT },
    { "cumsum", 1e-4, TOL_EXACT, TOL_EXACT },
    { "matmul", 1e-4, TOL_GEMM, TOL_GEMM }, { "linear", 1e-4, TOL_GEMM, TOL_GEMM },
    { "cross_entropy", 1e-4, TOL_REDUCE, TOL_REDUCE }, { "smooth_l1", 1e-4, TOL_REDUCE, TOL_REDUCE },
    { "mse", 1e-4, TOL_REDUCE, TOL_REDUCE },
    // dx = y (dy - sum(dy y)): the difference cancels.
    { "softmax", 1e-4, TOL_REDUCE, TOL_REDUCE },
    // In the tails 1 + tanh and 1 - tanh^2 cancel to ~1e-7, so fp32 keeps
    // only ~|x| u of the gradient there (observed ~4 ulps on the scale).
    // bias_gelu is x + bias then gelu: the same, and its bias gradient sums
    // rows of those terms (a reduction in another order on a GPU).
    { "gelu", 1e-4, TOL_ULP, TOL_ULP }, { "bias_gelu", 1e-4, TOL_ULP, TOL_REDUCE },
    // x + (fx + bias): the same two roundings on every device; the
    // gradients of x and fx are d(out) itself, the bias's a sum of up to 8
    // rows of it (a reduction in another order on a GPU).
    { "bias_residual", 1e-5, TOL_EXACT, TOL_REDUCE },
    // x - mean loses log2(|mean| / std) bits, and the cases put the mean at
    // up to 7 std (observed ~5 ulps on the scale); 2e-4 allows ~30.
    { "layernorm", 2e-4, TOL_REDUCE, TOL_REDUCE },
    // QK^T, a masked softmax and PV, and a backward through all three: the
    // longest chain of fp32 roundings here.
    { "attention", 1e-4, TOL_REDUCE, TOL_REDUCE },
    // The distillation losses work in double (saved state included) and
    // round the loss and each gradient to fp32 once, so they differ from
    // the float64 reference by about one rounding of each (6e-8 relative, 2
    // at most). Observed worst: 1.2e-7; 1e-6 is 8x that and far below any
    // error of a wrong term (>= 1e-3). The CUDA twins keep in double what
    // cancels (the teacher, the O(k) student terms, the saved logsumexp) and
    // sum their float exps in double, so the bound holds there too
    // (test_grad_distill asserts it on a GPU).
    { "distill_kl", 1e-6, TOL_ULP, TOL_ULP, 1 }, { "traj_loss", 1e-6, TOL_ULP, TOL_ULP, 1 },
    { "cosine_loss", 1e-6, TOL_ULP, TOL_ULP, 1 },
};
#define N_OP_BOUNDS (int)(sizeof op_bounds / sizeof op_bounds[0])

static const OpBounds *bounds_of(const char *op) {
    for (int i = 0; i < N_OP_BOUNDS; i++)
        if (strcmp(op_bounds[i].op, op) == 0) return &op_bounds[i];
    return NULL;
}

double opsuite_fixture_tol(const char *op) {
    const OpBounds *b = bounds_of(op);
    return b ? b->fixture : -1;
}

int opsuite_parity_tol(const char *op, Tol *out, Tol *grad) {
    const OpBounds *b = bounds_of(op);
    if (!b) return 0;
    *out = b->out;
    *grad = b->grad;
    return 1;
}

// A device's bound against PyTorch: |dev - torch| <= |dev - cpu| + |cpu -
// torch|. The first term is at most rtol * |value| + atol * S, which in the
// fixture metric (divided by at least max(|want|, 1% of S)) is at most
// rtol + 100 atol; the second is the CPU's own bound. The ops the CPU
// computes exactly stay exact, and the ones computed in double keep their bound.
static double device_fixture_tol(const OpBounds *b, Tol parity, Device dev) {
    return dev == DEV_CPU || b->in_double ? b->fixture : b->fixture + parity.rtol + 100 * parity.atol;
}

// ---- comparisons -------------------------------------------------------------------

double tol_worst_ratio(const float *ref, const float *got, size_t n, Tol tol, size_t *at, double *scale) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i])) s = fmax(s, fabs((double)ref[i]));
    if (scale) *scale = s;
    return tol_worst_ratio_at(ref, got, n, tol, s, at);
}

double tol_worst_ratio_at(const float *ref, const float *got, size_t n, Tol tol, double s, size_t *at) {
    double worst = 0;
    *at = 0;
    for (size_t i = 0; i < n; i++) {
        double a = ref[i], b = got[i], ratio;
        if (isnan(a) || isnan(b)) ratio = (isnan(a) && isnan(b)) ? 0 : INFINITY;
        else if (a == b) ratio = 0;                         // equal infinities too
        else {
            double bound = tol.rtol * fmax(fabs(a), fabs(b)) + tol.atol * s;
            ratio = bound > 0 ? fabs(a - b) / bound : INFINITY;
        }
        if (ratio > worst) { worst = ratio; *at = i; }
    }
    return worst;
}

double fx_worst_error(const float *got, const float *want, size_t n, int exact, size_t *at) {
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(want[i])) scale = fmax(scale, fabs((double)want[i]));
    double floor = fmax(FX_FLOOR * scale, FLT_MIN);
    double worst = 0;
    *at = 0;
    for (size_t i = 0; i < n; i++) {
        double err;
        if (got[i] == want[i] || (isnan(got[i]) && isnan(want[i]))) err = 0;   // equal infinities too
        else if (exact || !isfinite(got[i]) || !isfinite(want[i])) err = INFINITY;
        else err = fabs((double)got[i] - want[i]) / fmax(fabs(want[i]), floor);
        if (err > worst) { worst = err; *at = i; }
    }
    return worst;
}

// ---- running a case --------------------------------------------------------------------

// d(out) for a case without one (opsuite_large's): normals drawn from a
// stream fixed by the case's name, the same on every device.
static float *synthetic_seed(const FxCase *c, size_t n) {
    uint64_t h = 1469598103934665603ull;   // FNV-1a of the name
    for (const char *p = c->name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    Rng r;
    rng_seed(&r, h);
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; v && i < n; i++) v[i] = rng_normal(&r);
    return v;
}

int opsuite_run(const FxCase *c, Device dev, OpGradMode mode, OpRun *run) {
    memset(run, 0, sizeof *run);
    Graph *g = graph_new(dev);
    g->poison_grads = mode == OPSUITE_ASSIGN;
    // leaf: where the case's values go and the gradients are read; x: what the op reads.
    Tensor *leaf[FX_MAX_TENSORS], *x[FX_MAX_TENSORS];
    int n = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const FxTensor *t = &c->t[i];
        if (t->role != 'i' && t->role != 'p') continue;
        run->in[n] = t;
        leaf[n] = t->role == 'p' ? graph_param(g, t->name, t->ndim, t->shape, INIT_ZEROS, 0, 0)
                                 : graph_input(g, t->name, t->dtype, t->ndim, t->shape);
        x[n] = t->role == 'p' && mode == OPSUITE_ASSIGN ? op_scale(g, leaf[n], 1.0f) : leaf[n];
        n++;
    }
    run->n_in = n;
    // A case without an expected output is judged against the CPU only:
    // every 'p' input takes a gradient, from a synthetic d(out).
    const FxTensor *want = fx_find(c, 'o', NULL), *dout = fx_find(c, 'u', NULL);
    Tensor *out = opsuite_build(g, c, x, n);
    if (!out || graph_plan(g)) {
        snprintf(run->err, sizeof run->err, "cannot build op %s from %d inputs (the fixture and this distil disagree)", c->op, n);
        graph_free(g);
        return -1;
    }
    int same_shape = !want || (out->ndim == want->ndim && out->dtype == want->dtype);
    for (int d = 0; want && same_shape && d < out->ndim; d++) same_shape = out->shape[d] == want->shape[d];
    if (!same_shape) {
        char desc[96];
        snprintf(run->err, sizeof run->err, "op %s gives %s, the reference has %d dims and dtype %s", c->op,
                 tensor_describe(out, desc, sizeof desc), want->ndim, dtype_name(want->dtype));
        graph_free(g);
        return -1;
    }
    // Raw bytes in (f32, i32 and u8 alike), through the backend on any device.
    for (int k = 0; k < n; k++)
        backend_from_host(dev, leaf[k]->data, run->in[k]->data, run->in[k]->numel * dtype_size(run->in[k]->dtype));
    graph_forward(g);
    run->out_dtype = out->dtype;
    run->out_numel = out->numel;
    if (out->dtype == DT_BF16) {
        run->out_bf16 = malloc((out->numel ? out->numel : 1) * sizeof *run->out_bf16);
        if (run->out_bf16) backend_to_host(dev, run->out_bf16, out->data, out->numel * sizeof *run->out_bf16);
    } else {
        run->out_f32 = malloc((out->numel ? out->numel : 1) * sizeof *run->out_f32);
        if (run->out_f32) tensor_to_host_f32(out, run->out_f32);
    }
    int backward = out->requires_grad && (want ? dout && fx_count(c, "g") > 0 : fx_count(c, "p") > 0);
    if (backward) {
        float *seed = dout ? fx_floats(dout) : synthetic_seed(c, out->numel);
        graph_zero_grad(g);
        if (seed) graph_backward_seeded(g, out, seed);
        free(seed);
        for (int k = 0; k < n; k++) {
            if (run->in[k]->role != 'p' || (want && !fx_find(c, 'g', run->in[k]->name))) continue;
            run->grad[k] = malloc((leaf[k]->numel ? leaf[k]->numel : 1) * sizeof(float));
            if (run->grad[k]) tensor_grad_to_host(leaf[k], run->grad[k]);
        }
    }
    graph_free(g);
    if ((!run->out_f32 && !run->out_bf16)) { snprintf(run->err, sizeof run->err, "out of memory"); return -1; }
    return 0;
}

void opsuite_run_free(OpRun *run) {
    free(run->out_f32);
    free(run->out_bf16);
    for (int k = 0; k < FX_MAX_TENSORS; k++) free(run->grad[k]);
    memset(run, 0, sizeof *run);
}

// ---- judging --------------------------------------------------------------------------

int opsuite_record(OpSuiteResult *res, const OpCheck *c) {
    res->checks++;
    int failed = !(c->excess <= 1.0);
    if (failed) {
        res->failed++;
        // Each failing op once in the list.
        size_t len = strlen(res->failed_ops), oplen = strlen(c->op);
        int listed = 0;
        for (const char *p = res->failed_ops; (p = strstr(p, c->op)) != NULL; p += oplen)
            if ((p == res->failed_ops || p[-1] == ' ') && (p[oplen] == ',' || p[oplen] == 0)) listed = 1;
        if (!listed && len + oplen + 3 < sizeof res->failed_ops)
            snprintf(res->failed_ops + len, sizeof res->failed_ops - len, "%s%s", len ? ", " : "", c->op);
    }
    int worst_failed = !(res->worst.excess <= 1.0);
    // A failure outranks any pass; among equals, the larger excess.
    if (res->checks == 1 || (failed && !worst_failed) || (failed == worst_failed && !(c->excess <= res->worst.excess)))
        res->worst = *c;
    return failed;
}

char *opsuite_describe(const OpCheck *c, char *buf, size_t n) {
    char where[256], bound[96], ref[96] = "";
    // A fixture case names its op, case and element; the student's checks
    // name the step and the figure.
    if (c->case_name[0]) snprintf(where, sizeof where, "op %s, case %s: %s[%zu] =", c->op, c->case_name, c->what, c->index);
    else snprintf(where, sizeof where, "%s: %s", c->op, c->what);
    if (c->against) snprintf(ref, sizeof ref, " against %s's %.9g", c->against, c->want);
    if (c->rule) snprintf(bound, sizeof bound, "%s", c->rule);
    else if (c->tolerance == 0) snprintf(bound, sizeof bound, "must be equal");
    else if (c->tolerance == 1.0 && c->against && strcmp(c->against, "the CPU") == 0) snprintf(bound, sizeof bound, "%.3g x the tolerance", c->error);
    else snprintf(bound, sizeof bound, "error %.3g, tolerance %.3g", c->error, c->tolerance);
    snprintf(buf, n, "%s %.9g%s (%s)", where, c->got, ref, bound);
    return buf;
}

static void start_check(OpCheck *k, const FxCase *c, const char *what, const char *against) {
    memset(k, 0, sizeof *k);
    snprintf(k->op, sizeof k->op, "%s", c->op);
    snprintf(k->case_name, sizeof k->case_name, "%s", c->name);
    snprintf(k->what, sizeof k->what, "%s", what);
    k->against = against;
}

static void print_check(const OpCheck *k, const char *device) {
    char line[400];
    printf("  %s %-4s %s\n", device, k->excess <= 1.0 ? "ok" : "FAIL", opsuite_describe(k, line, sizeof line));
    fflush(stdout);   // progress, on a slow device
}

// got (n floats) against the fixture tensor want, bound tol (0: exact).
static void check_vs_torch(OpSuiteResult *res, const FxCase *c, const char *what, const float *got,
                           const FxTensor *want, double tol, int verbose, const char *device) {
    OpCheck k;
    start_check(&k, c, what, "PyTorch");
    float *w = fx_floats(want);
    if (!w) return;
    k.error = fx_worst_error(got, w, want->numel, tol == 0, &k.index);
    k.tolerance = tol;
    k.got = want->numel ? got[k.index] : 0;
    k.want = want->numel ? w[k.index] : 0;
    k.excess = k.error == 0 ? 0 : tol > 0 ? k.error / tol : INFINITY;
    free(w);
    opsuite_record(res, &k);
    if (verbose) print_check(&k, device);
}

// bf16 bits against the fixture's: every one equal.
static void check_bits_vs(OpSuiteResult *res, const FxCase *c, const uint16_t *got, const uint16_t *want_bits,
                          const uint8_t *want_bytes, size_t n, const char *against, int verbose, const char *device) {
    OpCheck k;
    start_check(&k, c, "out", against);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t w;
        if (want_bits) w = want_bits[i];
        else memcpy(&w, want_bytes + 2 * i, 2);
        if (got[i] != w && bad++ == 0) {
            k.index = i;
            k.got = bf16_to_f32(got[i]);
            k.want = bf16_to_f32(w);
        }
    }
    k.error = bad ? INFINITY : 0;
    k.excess = k.error;
    opsuite_record(res, &k);
    if (verbose) print_check(&k, device);
}

static void check_vs_cpu(OpSuiteResult *res, const FxCase *c, const char *what, const float *cpu, const float *got,
                         size_t n, Tol tol, int verbose, const char *device) {
    OpCheck k;
    start_check(&k, c, what, "the CPU");
    k.error = tol_worst_ratio(cpu, got, n, tol, &k.index, NULL);
    k.tolerance = 1.0;
    k.excess = k.error;
    k.got = n ? got[k.index] : 0;
    k.want = n ? cpu[k.index] : 0;
    opsuite_record(res, &k);
    if (verbose) print_check(&k, device);
}

static void case_failed(OpSuiteResult *res, const FxCase *c, const char *why) {
    OpCheck k;
    start_check(&k, c, "build", "PyTorch");
    k.error = k.excess = INFINITY;
    opsuite_record(res, &k);
    if (!res->error[0]) snprintf(res->error, sizeof res->error, "case %s: %s", c->name, why);
}

void opsuite_check_fixture(const Fixture *fx, Device dev, int verbose, OpSuiteResult *res) {
    const char *device = dev == DEV_CPU ? "cpu " : "cuda";
    for (int i = 0; i < fx->n_cases; i++) {
        const FxCase *c = &fx->cases[i];
        const OpBounds *b = bounds_of(c->op);
        if (!b) { case_failed(res, c, "no bound for this op"); continue; }
        Tol out_tol = b->out, grad_tol = b->grad;
        OpRun run, cpu;
        if (opsuite_run(c, dev, OPSUITE_ASSIGN, &run)) { case_failed(res, c, run.err); continue; }
        int vs_cpu = dev != DEV_CPU;
        if (vs_cpu && opsuite_run(c, DEV_CPU, OPSUITE_ASSIGN, &cpu)) { case_failed(res, c, cpu.err); opsuite_run_free(&run); continue; }
        res->cases++;
        const FxTensor *want = fx_find(c, 'o', NULL);
        if (run.out_bf16) {
            if (want) check_bits_vs(res, c, run.out_bf16, NULL, want->data, run.out_numel, "PyTorch", verbose, device);
            if (vs_cpu) check_bits_vs(res, c, run.out_bf16, cpu.out_bf16, NULL, run.out_numel, "the CPU", verbose, device);
        } else {
            if (want) check_vs_torch(res, c, "out", run.out_f32, want, device_fixture_tol(b, out_tol, dev), verbose, device);
            if (vs_cpu) check_vs_cpu(res, c, "out", cpu.out_f32, run.out_f32, run.out_numel, out_tol, verbose, device);
        }
        for (int k = 0; k < run.n_in; k++) {
            if (!run.grad[k]) continue;
            char what[72];
            snprintf(what, sizeof what, "d%s", run.in[k]->name);
            const FxTensor *wg = fx_find(c, 'g', run.in[k]->name);
            if (wg) check_vs_torch(res, c, what, run.grad[k], wg, device_fixture_tol(b, grad_tol, dev), verbose, device);
            if (vs_cpu && cpu.grad[k])
                check_vs_cpu(res, c, what, cpu.grad[k], run.grad[k], run.in[k]->numel, grad_tol, verbose, device);
        }
        opsuite_run_free(&run);
        if (vs_cpu) opsuite_run_free(&cpu);
    }
}
