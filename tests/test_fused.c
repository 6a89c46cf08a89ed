// test_fused.c: the vectorised CPU kernels against their plain twins.
//
// - vec.h's exp and gelu.h's gelu and gelu' against double precision over
//   a sweep of every float in their range at a stride: worst error in ulps.
// - The same math in the AVX2 clone and in the baseline build: the same bits
//   (no FMA, fixed sum orders), so a run replays on any x86-64.
// - Every vectorised kernel (gelu, bias_gelu, bias_residual, layernorm, the
//   cache-blocked column sum behind linear's and add's bias gradients)
//   against its *_ref twin, forward and backward, on widths around the
//   8-wide vectors and the 64-wide blocks.
// - Each of them on 1 thread and on 3: the same bits.
// - vec.h's 8-lane bf16 store against tensor.h's f32_to_bf16, bit for bit:
//   ties, NaNs of every sign and payload kind, infinities, denormals, the
//   largest finite floats (which round to infinity), every tail length.
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include "autograd/graph.h"        // defines: Graph, graph_*
#include "autograd/ops.h"          // defines: op_*
#include "autograd/rng.h"          // defines: Rng
#include "kernels/cpu/cpu_ops.h"   // defines: *_forward_cpu, *_ref, cpu_colsum
#include "kernels/cpu/gelu.h"      // defines: gelu_v8, gelu_grad_v8
#include "kernels/cpu/vec.h"       // defines: v8_exp
#include "tests/test.h"

static Rng rng;
static int verbose;   // DISTIL_TEST_VERBOSE=1: each case's worst error

// ---- exp and gelu in ulps -------------------------------------------------

static double ulps(float got, double want) {
    float w = (float)want;
    double ulp = (double)nextafterf(fabsf(w), INFINITY) - fabsf(w);
    return fabs((double)got - want) / ulp;
}
// In ulps of max(|want|, 1), for gelu and gelu': gelu' crosses zero near
// x = -0.75, where any fp32 sum of its two O(0.1) terms keeps only an
// absolute accuracy, and in gelu's negative tail (x < -3, |gelu| < 0.01)
// fp32's rounding of u = c (x + 0.044715 x^3) alone moves exp(-2u) by
// |2u| ulps (~140 at x = -9): the function is ill-conditioned there.
static double ulps_of_one(float got, double want) {
    float w = fmaxf(fabsf((float)want), 1.0f);
    double ulp = (double)nextafterf(w, INFINITY) - w;
    return fabs((double)got - want) / ulp;
}
static double (*sweep_metric)(float, double) = ulps;

// Every 211th float bit pattern with |x| <= lim, both signs: ~10^7 values.
#define SWEEP_STRIDE 211u
#define SWEEP_BATCH 4096

typedef f32x8 (*VecFn)(f32x8);
static f32x8 exp_default(f32x8 x) { return v8_exp(x); }
static f32x8 gelu_default(f32x8 x) { return gelu_v8(x); }
static f32x8 gelu_grad_default(f32x8 x) { return gelu_grad_v8(x); }
// The tanh form in double, through 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)):
// in the negative tail 1 + tanh(u) cancels to 0 even in double.
static double gelu_exact(double x) {
    double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}
static double gelu_grad_exact(double x) {
    double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x), e = exp(-2.0 * u), s = 1.0 / (1.0 + e);
    return s + 2.0 * x * sqrt(2.0 / M_PI) * (1.0 + 3.0 * 0.044715 * x * x) * e * s * s;
}

// The worst error of fn over x[0, n), and where.
static void sweep_batch(VecFn fn, double (*ref)(double), const float *x, int n, double *worst, float *worst_at) {
    float y[SWEEP_BATCH];
    for (int i = 0; i < n; i += 8) {
        int k = n - i < 8 ? n - i : 8;
        v8_store_k(y + i, fn(v8_load_k(x + i, k)), k);
    }
    for (int i = 0; i < n; i++) {
        double e = sweep_metric(y[i], ref(x[i]));
        if (!(e <= *worst)) { *worst = e; *worst_at = x[i]; }
    }
}

static double sweep(VecFn fn, double (*ref)(double), float lim, float *worst_at) {
    float x[SWEEP_BATCH];
    double worst = 0;
    int n = 0;
    for (uint64_t u = 0; u < 0x80000000u; u += SWEEP_STRIDE)
        for (uint32_t sign = 0; sign < 2; sign++) {
            uint32_t bits = (uint32_t)u | sign << 31;
            float v;
            memcpy(&v, &bits, sizeof v);
            if (!(fabsf(v) <= lim)) continue;
            x[n++] = v;
            if (n == SWEEP_BATCH) { sweep_batch(fn, ref, x, n, &worst, worst_at); n = 0; }
        }
    sweep_batch(fn, ref, x, n, &worst, worst_at);
    return worst;
}

// Measured: exp 0.96 ulps. 1.5 leaves room without hiding a wrong
// coefficient (~10^3+).
static void test_exp_gelu_ulps(void) {
    float at = 0;
    double e = sweep(exp_default, exp, 87.0f, &at);
    CHECK(e <= 1.5, "v8_exp: %.3g ulps at %.9g", e, at);
    // gelu and gelu' through sigmoid(2u) (gelu.h) against the tanh form in
    // double, |x| <= 12, in ulps of max(|want|, 1): measured 1.53 and 1.71.
    sweep_metric = ulps_of_one;
    e = sweep(gelu_default, gelu_exact, 12.0f, &at);
    if (verbose) printf("    gelu_v8: %.3g ulps of max(|gelu|, 1) at %.9g\n", e, at);
    CHECK(e <= 4.0, "gelu_v8: %.3g ulps of max(|gelu|, 1) at %.9g", e, at);
    e = sweep(gelu_grad_default, gelu_grad_exact, 12.0f, &at);
    sweep_metric = ulps;
    if (verbose) printf("    gelu_grad_v8: %.3g ulps of max(|gelu'|, 1) at %.9g\n", e, at);
    CHECK(e <= 4.0, "gelu_grad_v8: %.3g ulps of max(|gelu'|, 1) at %.9g", e, at);
    // Edges: NaN propagates, the ends clamp.
    float in[8] = { NAN, INFINITY, -INFINITY, 0.0f, 30.0f, -30.0f, 1e-30f, -1e-30f }, out[8];
    v8_store(out, v8_exp(v8_load(in)));
    CHECK(isnan(out[0]) && isinf(out[1]) == 0 && out[2] == expf(-87.3f) && out[3] == 1.0f,
          "exp edges: exp(nan) %g, exp(inf) %g (clamped), exp(-inf) %g, exp(0) %g", out[0], out[1], out[2], out[3]);
}

// ---- the AVX2 clone gives the baseline's bits -------------------------------

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target("arch=x86-64-v3"))) static void math_avx2(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 8) {
        f32x8 v = v8_load(x + i);
        v8_store(y + 3 * i, gelu_grad_v8(v));
        v8_store(y + 3 * i + 8, v8_exp(v));
        v8_store(y + 3 * i + 16, gelu_v8(v));
    }
}
#endif

static void math_default(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 8) {
        f32x8 v = v8_load(x + i);
        v8_store(y + 3 * i, gelu_grad_v8(v));
        v8_store(y + 3 * i + 8, v8_exp(v));
        v8_store(y + 3 * i + 16, gelu_v8(v));
    }
}

static void test_clone_bits(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    if (!__builtin_cpu_supports("avx2")) SKIP("this CPU has no AVX2: only the baseline clone runs here");
    enum { N = 1 << 14 };
    float *x = malloc(N * sizeof *x), *a = malloc(3 * N * sizeof *a), *b = malloc(3 * N * sizeof *b);
    for (int i = 0; i < N; i++) x[i] = 12.0f * rng_normal(&rng);
    math_default(a, x, N);
    math_avx2(b, x, N);
    CHECK(memcmp(a, b, 3 * N * sizeof *a) == 0, "the AVX2 and baseline builds of exp/gelu/gelu' differ");
    free(x); free(a); free(b);
#else
    SKIP("not x86-64 GCC: no clones");
#endif
}

// ---- kernels against their plain twins ---------------------------------------

typedef enum { K_GELU, K_BIAS_GELU, K_BIAS_RESIDUAL, K_LAYERNORM, K_LINEAR_BIAS, K_ADD_BCAST, K_COUNT } Kernel;
static const char *kernel_name[K_COUNT] = { "gelu", "bias_gelu", "bias_residual", "layernorm", "linear bias", "add broadcast" };

typedef struct {
    Graph *g;
    Tensor *in[3], *out;
    int n_in;
} Case;

// The op on params x [rows, C] (and bias, fx or gamma/beta [C]).
static Case build(Kernel k, int rows, int C) {
    Case c = { graph_new(DEV_CPU), { 0 }, NULL, 0 };
    Graph *g = c.g;
    Tensor *x = graph_param(g, "x", 2, (int[]){ rows, C }, INIT_ZEROS, 0, 0);
    Tensor *v = graph_param(g, "v", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    c.in[0] = x, c.in[1] = v, c.n_in = 2;
    switch (k) {
    case K_GELU: c.out = op_gelu(g, x), c.n_in = 1; break;
    case K_BIAS_GELU: c.out = op_bias_gelu(g, x, v); break;
    case K_BIAS_RESIDUAL:
        c.in[2] = graph_param(g, "fx", 2, (int[]){ rows, C }, INIT_ZEROS, 0, 0);
        c.out = op_bias_residual(g, x, c.in[2], v), c.n_in = 3;
        break;
    case K_LAYERNORM:
        c.in[2] = graph_param(g, "beta", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
        c.out = op_layernorm(g, x, v, c.in[2], 1e-5f), c.n_in = 3;
        break;
    case K_LINEAR_BIAS: {   // the bias gradient is the column sum of d(out)
        Tensor *w = graph_param(g, "w", 2, (int[]){ C, C }, INIT_ZEROS, 0, 0);
        c.out = op_linear(g, x, w, v);
        break;
    }
    default: c.out = op_add(g, x, v); break;
    }
    if (graph_plan(g)) { fprintf(stderr, "test_fused: plan failed\n"); exit(1); }
    for (int p = 0; p < g->n_params; p++) {
        float *d = g->params[p]->data;
        for (size_t i = 0; i < g->params[p]->numel; i++) d[i] = 1.5f * rng_normal(&rng);
    }
    if (k == K_LAYERNORM)   // rows far from zero: the statistics must not cancel
        for (int r = 0; r < rows; r++) ((float *)x->data)[(size_t)r * C] += 40.0f;
    return c;
}

// out (numel) then every input's gradient, concatenated.
static size_t result_len(const Case *c) {
    size_t n = c->out->numel;
    for (int i = 0; i < c->n_in; i++) n += c->in[i]->numel;
    return n;
}

static void collect(const Case *c, float *dst) {
    memcpy(dst, c->out->data, c->out->numel * sizeof *dst);
    dst += c->out->numel;
    for (int i = 0; i < c->n_in; i++) {
        memcpy(dst, c->in[i]->grad, c->in[i]->numel * sizeof *dst);
        dst += c->in[i]->numel;
    }
}

// Forward and backward through the graph (the fast kernels), seeded with seed.
static void run_fast(Case *c, const float *seed) {
    graph_forward(c->g);
    graph_zero_grad(c->g);
    graph_backward_seeded(c->g, c->out, seed);
}

// The same through the twin; d(out) is already in out->grad.
static void run_ref(Kernel k, Case *c) {
    Tensor *o = c->out;
    graph_zero_grad(c->g);
    switch (k) {
    case K_GELU: gelu_forward_ref(o); gelu_backward_ref(o); break;
    case K_BIAS_GELU: bias_gelu_forward_ref(o); bias_gelu_backward_ref(o); break;
    case K_BIAS_RESIDUAL: bias_residual_forward_ref(o); bias_residual_backward_ref(o); break;
    case K_LAYERNORM: layernorm_forward_ref(o); layernorm_backward_ref(o); break;
    case K_LINEAR_BIAS: {   // only the bias path has a twin: x's and w's grads come from OpenBLAS either way
        Tensor *x = c->in[0], *b = c->in[1];
        int rows = x->shape[0], C = x->shape[1];
        linear_forward_cpu(o);
        graph_zero_grad(c->g);
        linear_backward_cpu(o);
        memset(b->grad, 0, C * sizeof(float));
        cpu_colsum_ref(b->grad, o->grad, rows, C, 0);
        break;
    }
    default: {
        Tensor *x = c->in[0], *b = c->in[1];
        int rows = x->shape[0], C = x->shape[1];
        for (size_t i = 0; i < o->numel; i++) ((float *)o->data)[i] = ((float *)x->data)[i] + ((float *)b->data)[i % C];
        for (size_t i = 0; i < o->numel; i++) x->grad[i] += o->grad[i];
        cpu_colsum_ref(b->grad, o->grad, rows, C, 0);
    }
    }
}

// The vectorised kernels round as the twins do except where the math
// differs: vec.h's exp (within 2 ulps of libm's), sums of 8 lanes against
// a serial sum, and layernorm's fp32 statistics against the twin's double
// ones. Errors are judged on the scale of each tensor (1% of its largest
// value as the floor, as tests/test_forward_torch.c does), where 1e-5 is
// ~17 ulps. gelu: a few ulps of exp, amplified where gelu' crosses zero, and
// bias_gelu's bias gradient sums 37 such terms (worst seen over 30 seeds:
// 9e-6): 5e-5. layernorm: dgamma and dbeta sum 37 rows of fp32 terms
// against the twin's double xhat, and the rows carry a +40 outlier (worst
// seen: 5e-5): 2e-4, as the PyTorch fixture test allows. Column sums run in
// the same order on both sides: exact.
static double tolerance(Kernel k) {
    switch (k) {
    case K_BIAS_RESIDUAL: case K_ADD_BCAST: case K_LINEAR_BIAS: return 0;
    case K_LAYERNORM: return 2e-4;
    default: return 5e-5;
    }
}

static double compare(const char *what, const float *got, const float *want, size_t n, double tol) {
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = got[i] == want[i] ? 0 : fabs((double)got[i] - want[i]) / fmax(fabs(want[i]), 1e-2 * scale);
        if (!(e <= worst)) { worst = e; at = i; }
    }
    CHECK(worst <= tol, "%s: err %.3g > %.3g at [%zu]: got %.9g, want %.9g", what, worst, tol, at, got[at], want[at]);
    return worst;
}

// Each tensor of a result (out, then each input's gradient) on its own scale.
static double compare_case(const char *what, const Case *c, const float *got, const float *want, double tol) {
    size_t at = 0;
    char name[192];
    snprintf(name, sizeof name, "%s: out", what);
    double worst = compare(name, got, want, c->out->numel, tol);
    at += c->out->numel;
    for (int i = 0; i < c->n_in; i++) {
        snprintf(name, sizeof name, "%s: d%s", what, c->in[i]->name);
        worst = fmax(worst, compare(name, got + at, want + at, c->in[i]->numel, tol));
        at += c->in[i]->numel;
    }
    return worst;
}

static const int widths[] = { 1, 7, 8, 13, 64, 70, 130 };

static void test_kernels_vs_twins(void) {
    for (int k = 0; k < K_COUNT; k++)
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
            int C = widths[w], rows = 37;
            if (k == K_LAYERNORM && C == 1) continue;   // a one-channel layernorm is beta: nothing to check
            Case c = build((Kernel)k, rows, C);
            float *seed = malloc(c.out->numel * sizeof *seed);
            for (size_t i = 0; i < c.out->numel; i++) seed[i] = rng_normal(&rng);
            size_t len = result_len(&c);
            float *fast = malloc(len * sizeof *fast), *ref = malloc(len * sizeof *ref);
            run_fast(&c, seed);
            collect(&c, fast);
            run_ref((Kernel)k, &c);
            collect(&c, ref);
            char what[96];
            snprintf(what, sizeof what, "%s C=%d", kernel_name[k], C);
            double e = compare_case(what, &c, fast, ref, tolerance((Kernel)k));
            if (verbose) printf("    %-24s worst err %.3g\n", what, e);
            free(seed); free(fast); free(ref);
            graph_free(c.g);
        }
}

// Large enough for every kernel's parallel loop (>= 16384 elements). Not
// linear: OpenBLAS's own products split differently by thread count; its
// bias gradient is the column sum that add's broadcast gradient runs too.
static void test_thread_count_bits(void) {
    int saved = omp_get_max_threads();
    for (int k = 0; k < K_COUNT; k++) {
        if (k == K_LINEAR_BIAS) continue;
        Case c = build((Kernel)k, 300, 130);
        float *seed = malloc(c.out->numel * sizeof *seed);
        for (size_t i = 0; i < c.out->numel; i++) seed[i] = rng_normal(&rng);
        size_t len = result_len(&c);
        float *one = malloc(len * sizeof *one), *three = malloc(len * sizeof *three);
        omp_set_num_threads(1);
        run_fast(&c, seed);
        collect(&c, one);
        omp_set_num_threads(3);
        run_fast(&c, seed);
        collect(&c, three);
        CHECK(memcmp(one, three, len * sizeof *one) == 0, "%s: 1 and 3 threads give different bits", kernel_name[k]);
        free(seed); free(one); free(three);
        graph_free(c.g);
    }
    omp_set_num_threads(saved);
}

static void test_bf16_store_bits(void) {
    enum { N = 1 << 12 };
    static const uint32_t special[] = {
        0x3f808000u, 0x3f818000u, 0x3f807fffu, 0xbf808000u,   // ties to even, just under a tie, negative
        0x7f800000u, 0xff800000u, 0x7f7fffffu, 0xff7fffffu,   // infinities; the largest finite (-> inf)
        0x7fc00000u, 0xffc00001u, 0x7f800001u, 0xff80ffffu,   // quiet and signalling NaNs with payloads
        0x00000001u, 0x807fffffu, 0x00008000u, 0x00018000u,   // denormals and their ties
        0x00000000u, 0x80000000u,
    };
    uint32_t bits[N];
    int n_special = (int)(sizeof special / sizeof *special);
    for (int i = 0; i < N; i++) {
        float f = 100.0f * rng_normal(&rng);
        memcpy(&bits[i], &f, sizeof f);
        if (i % 7 == 0) bits[i] = special[(i / 7) % n_special];
        if (i % 11 == 0) bits[i] ^= (uint32_t)(i * 2654435761u) & 0x0000ffffu;   // the rounded-off half
    }
    int bad = 0;
    for (int i = 0; i + 8 <= N; i += 8)
        for (int k = 1; k <= 8; k++) {
            f32x8 v;
            memcpy(&v, &bits[i], sizeof v);
            uint16_t out[8] = { 0x5555, 0x5555, 0x5555, 0x5555, 0x5555, 0x5555, 0x5555, 0x5555 };
            v8_store_bf16_k(out, v, k);
            for (int j = 0; j < 8; j++) {
                float f;
                memcpy(&f, &bits[i + j], sizeof f);
                uint16_t want = j < k ? f32_to_bf16(f) : 0x5555;
                if (out[j] != want && bad++ < 5)
                    CHECK(0, "bits 0x%08x, k %d, lane %d: stored 0x%04x, f32_to_bf16 0x%04x", bits[i + j], k, j, out[j], want);
            }
        }
    CHECK(bad == 0, "%d lanes differ from f32_to_bf16", bad);
}

int main(void) {
    const char *v = getenv("DISTIL_TEST_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    rng_seed(&rng, test_seed("test_fused"));
    RUN(test_exp_gelu_ulps);
    RUN(test_clone_bits);
    RUN(test_kernels_vs_twins);
    RUN(test_thread_count_bits);
    RUN(test_bf16_store_bits);
    return test_summary();
}
