// test_gpu_parity.c: every op's CUDA kernels against its CPU twin.
//
// For each case the same small graph is recorded on DEV_CPU and on DEV_CUDA,
// fed the same fresh random inputs (seeded by test_seed), run forward and
// backward from the same random upstream gradient, and the output and every
// input gradient are compared with the op's tolerance (see "Tolerances").
// A last test runs a whole tiny transformer step (layernorm, linear,
// masked attention, gelu, residuals, cross-entropy and smooth-L1 losses) and
// compares the loss and every parameter gradient, and checks that two CUDA
// runs give the same bits (no atomics anywhere).
//
// Without a CUDA device every test is skipped, with the runtime's reason,
// so the suite reports "skipped", never "passed". DISTIL_PARITY_CPU_ONLY=1
// runs the CPU on both sides instead: it checks this harness (every graph
// records, plans and runs) on a machine without a GPU, and then every
// comparison must hold exactly. kernels/cuda/sim/run.sh goes further: it
// builds the CUDA kernels against a CPU simulator of the runtime and cuBLAS
// and runs this suite on them.
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "autograd/graph.h"     // defines: Graph, graph_*, tensor_*_host*
#include "autograd/ops.h"       // defines: op_*
#include "autograd/optim.h"     // defines: AdamW, adamw_begin, adamw_update, adamw_end
#include "autograd/rng.h"       // defines: Rng, rng_*
#include "kernels/backend.h"    // defines: backend_cuda_device_count, backend_from_host
#ifdef DISTIL_CUDA
#include "kernels/cuda/cuda_ops.h"   // defines: cuda_allow_tf32
#endif
#include "train/selftest/tolerance.h"   // defines: Tol, TOL_*, tol_worst_ratio
#include "tests/test.h"

#define MAX_IN 6

static uint64_t suite_seed;
static Rng rng;
static int cpu_only;            // DISTIL_PARITY_CPU_ONLY: both sides on the CPU
static char skip_reason[256];   // SKIP keeps the pointer, so it must outlive the test

// The device compared against the CPU.
static Device other_device(void) { return cpu_only ? DEV_CPU : DEV_CUDA; }

static int no_gpu(void) {
    if (cpu_only || backend_cuda_device_count() > 0) return 0;
    snprintf(skip_reason, sizeof skip_reason, "no CUDA device: %s", backend_cuda_unavailable_reason());
    return 1;
}
#define NEED_GPU() do { if (no_gpu()) SKIP(skip_reason); } while (0)

// ---- Tolerances ------------------------------------------------------------
// The bounds and their arguments are in train/selftest/tolerance.h, shared
// with `distil selftest`; short names for the cases below.
#define EXACT TOL_EXACT
#define ULP TOL_ULP
#define REDUCE TOL_REDUCE
#define GEMM TOL_GEMM
#define STEP TOL_STEP
#define BF16 TOL_BF16

// Checks got against ref under tol; names the worst element. terms > 0 is
// the atol's scale instead of the largest |ref| (see tol_worst_ratio_at).
static void check_close_at(const char *test, const char *what, const float *ref, const float *got, size_t n, Tol tol,
                           double terms) {
    size_t wi = 0;
    double scale = terms, worst = terms > 0 ? tol_worst_ratio_at(ref, got, n, tol, terms, &wi)
                                            : tol_worst_ratio(ref, got, n, tol, &wi, &scale);
    CHECK(worst <= 1.0, "%s: %s[%zu]: cpu %.9g, cuda %.9g (%.3g x the tolerance rtol %.0e atol %.0e x %.3g)",
          test, what, wi, (double)ref[wi], (double)got[wi], worst, tol.rtol, tol.atol, scale);
}
static void check_close(const char *test, const char *what, const float *ref, const float *got, size_t n, Tol tol) {
    check_close_at(test, what, ref, got, n, tol, 0);
}

// ---- One graph, run on both devices -----------------------------------------
typedef struct {
    const char *name;
    DType dtype;                    // DT_F32, DT_I32 or DT_U8
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    int grad;                       // 1: a parameter whose gradient is compared (f32)
    float scale, offset;            // f32: offset + scale * N(0, 1) (scale 0 means 1)
    int lo, hi;                     // i32: uniform in [lo, hi)
    const float *values;            // f32: these values instead (NAN allowed)
    const int32_t *ivalues;         // i32: these values instead
} ParityInput;

typedef Tensor *(*ParityBuild)(Graph *g, Tensor **in, const void *ctx);

typedef struct {
    size_t out_numel;
    float *out;                     // (out_numel)
    float *grad[MAX_IN];            // (numel of input k) for the inputs with grad
    DType mid_dtype;                // parity_mid's, read after the forward
    size_t mid_numel;
    float *mid;                     // (mid_numel) or NULL
} ParityRun;

// The precision of the products the cases record (graph_set_products):
// DT_BF16 for the bf16 activation cases (parity_bf16).
static DType parity_products = DT_F32;
// A builder of a bf16 case sets it to the node whose stored bf16 output is
// compared bit by bit (run_graph reads it back after the forward).
static Tensor *parity_mid;

static size_t spec_numel(const ParityInput *s) { return shape_numel(s->ndim, s->shape); }

static void *gen_input(const ParityInput *s) {
    size_t n = spec_numel(s);
    if (s->dtype == DT_F32) {
        float *v = malloc(n * sizeof *v);
        float sc = s->scale ? s->scale : 1.0f;
        for (size_t i = 0; i < n; i++) v[i] = s->values ? s->values[i] : s->offset + sc * rng_normal(&rng);
        return v;
    }
    if (s->dtype == DT_I32) {
        int32_t *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = s->ivalues ? s->ivalues[i] : s->lo + (int32_t)rng_below(&rng, (uint64_t)(s->hi - s->lo));
        return v;
    }
    uint8_t *v = malloc(n);
    for (size_t i = 0; i < n; i++) v[i] = (uint8_t)rng_below(&rng, 256);
    return v;
}

static void load_input(Tensor *t, const void *host) {
    if (t->dtype == DT_F32 || t->dtype == DT_BF16) tensor_from_host_f32(t, host);
    else backend_from_host(t->device, t->data, host, t->numel * dtype_size(t->dtype));
}

// Records the graph on dev, loads the inputs, runs forward and backward
// seeded with *seed (drawn on the first call, when *seed is NULL).
static ParityRun run_graph(Device dev, const ParityInput *spec, int n, void *const *host,
                           ParityBuild build, const void *ctx, float **seed) {
    ParityRun r;
    memset(&r, 0, sizeof r);
    Graph *g = graph_new(dev);
    graph_set_products(g, parity_products);
    parity_mid = NULL;
    // Parameters reach the op through a copy (scale by 1, exact), so the op
    // writes activation gradients, poisoned with NaNs before their first
    // writer: a kernel that adds where the contract says assign shows.
    g->poison_grads = 1;
    Tensor *leaf[MAX_IN], *in[MAX_IN];
    for (int k = 0; k < n; k++) {
        leaf[k] = spec[k].grad ? graph_param(g, spec[k].name, spec[k].ndim, spec[k].shape, INIT_ZEROS, 0, 0)
                               : graph_input(g, spec[k].name, spec[k].dtype, spec[k].ndim, spec[k].shape);
        in[k] = spec[k].grad ? op_scale(g, leaf[k], 1.0f) : leaf[k];
    }
    Tensor *out = build(g, in, ctx);
    if (graph_plan(g)) { fprintf(stderr, "test_gpu_parity: graph_plan failed on %s\n", dev == DEV_CUDA ? "CUDA" : "CPU"); exit(1); }
    for (int k = 0; k < n; k++) load_input(leaf[k], host[k]);
    graph_forward(g);
    if (parity_mid) {
        r.mid_dtype = parity_mid->dtype;
        r.mid_numel = parity_mid->numel;
        r.mid = malloc(r.mid_numel * sizeof *r.mid);
        tensor_to_host_f32(parity_mid, r.mid);
    }
    r.out_numel = out->numel;
    r.out = malloc(out->numel * sizeof *r.out);
    tensor_to_host_f32(out, r.out);
    if (!*seed) {
        *seed = malloc(out->numel * sizeof **seed);
        for (size_t i = 0; i < out->numel; i++) (*seed)[i] = rng_normal(&rng);
    }
    graph_zero_grad(g);
    graph_backward_seeded(g, out, *seed);
    for (int k = 0; k < n; k++) {
        if (!spec[k].grad) continue;
        r.grad[k] = malloc(leaf[k]->numel * sizeof *r.grad[k]);
        tensor_grad_to_host(leaf[k], r.grad[k]);
    }
    graph_free(g);
    return r;
}

static void free_run(ParityRun *r) {
    free(r->out);
    free(r->mid);
    for (int k = 0; k < MAX_IN; k++) free(r->grad[k]);
}

// Every input's gradient, CPU against the other device, under tol.
static void check_grads(const char *test, const ParityInput *spec, int n, const ParityRun *cpu, const ParityRun *gpu,
                        Tol tol) {
    for (int k = 0; k < n; k++)
        if (spec[k].grad) {
            char what[80];
            snprintf(what, sizeof what, "d%s", spec[k].name);
            check_close(test, what, cpu->grad[k], gpu->grad[k], spec_numel(&spec[k]), tol);
        }
}

// The whole comparison for one case. With over_terms, the output is a sum
// (or mean) whose result may cancel towards zero: its atol is scaled by the
// largest sum of its terms' magnitudes, the same graph run on |inputs| (the
// rounding of a reordered sum is a fraction of the terms it adds, not of
// what is left after they cancel).
static void parity_run(const char *test, const ParityInput *spec, int n, ParityBuild build, const void *ctx,
                       Tol out_tol, Tol grad_tol, int over_terms) {
    void *host[MAX_IN];
    for (int k = 0; k < n; k++) host[k] = gen_input(&spec[k]);
    float *seed = NULL;
    ParityRun cpu = run_graph(DEV_CPU, spec, n, host, build, ctx, &seed);
    ParityRun gpu = run_graph(other_device(), spec, n, host, build, ctx, &seed);
    double terms = 0;
    if (over_terms) {
        void *mag[MAX_IN];
        for (int k = 0; k < n; k++) {
            size_t m = spec_numel(&spec[k]);
            mag[k] = malloc(m * sizeof(float));
            for (size_t i = 0; i < m; i++) ((float *)mag[k])[i] = fabsf(((const float *)host[k])[i]);
        }
        float *mag_seed = seed;     // the same seed; only the outputs are read
        ParityRun abs_run = run_graph(DEV_CPU, spec, n, mag, build, ctx, &mag_seed);
        for (size_t i = 0; i < abs_run.out_numel; i++) terms = fmax(terms, abs_run.out[i]);
        free_run(&abs_run);
        for (int k = 0; k < n; k++) free(mag[k]);
    }
    check_close_at(test, "out", cpu.out, gpu.out, cpu.out_numel, out_tol, terms);
    check_grads(test, spec, n, &cpu, &gpu, grad_tol);
    free_run(&cpu);
    free_run(&gpu);
    free(seed);
    for (int k = 0; k < n; k++) free(host[k]);
}
static void parity(const char *test, const ParityInput *spec, int n, ParityBuild build, const void *ctx,
                   Tol out_tol, Tol grad_tol) {
    parity_run(test, spec, n, build, ctx, out_tol, grad_tol, 0);
}

// A bf16 activation case: the graph recorded with bf16 products, so the
// planner stores the builder's parity_mid bf16 (checked on both sides).
// Each backend rounds its own fp32 value: the stored bits agree except
// where the two fp32 values straddle a rounding boundary (a few in a
// thousand at most; one bf16 ulp apart); a kernel that truncated, or did
// not round what it stores, differs in about half (values tiny against the
// tensor's largest, gelu's tail, may differ by its 1e-5 as in fp32). Then
// the outputs and gradients under TOL_BF16.
static void parity_bf16(const char *test, const ParityInput *spec, int n, ParityBuild build, const void *ctx) {
    void *host[MAX_IN];
    for (int k = 0; k < n; k++) host[k] = gen_input(&spec[k]);
    float *seed = NULL;
    parity_products = DT_BF16;
    ParityRun cpu = run_graph(DEV_CPU, spec, n, host, build, ctx, &seed);
    ParityRun gpu = run_graph(other_device(), spec, n, host, build, ctx, &seed);
    parity_products = DT_F32;
    CHECK(cpu.mid && cpu.mid_dtype == DT_BF16 && gpu.mid && gpu.mid_dtype == DT_BF16,
          "%s: the intermediate is not stored bf16 (%s on the CPU)", test, cpu.mid ? dtype_name(cpu.mid_dtype) : "none");
    if (cpu.mid && gpu.mid) {
        // Values near zero against the tensor's scale S (gelu's tail) may
        // differ by more in fp32 already: within BF16's atol they pass.
        double S = 0;
        for (size_t i = 0; i < cpu.mid_numel; i++) S = fmax(S, fabs(cpu.mid[i]));
        size_t flips = 0, far = 0, at = 0;
        for (size_t i = 0; i < cpu.mid_numel; i++) {
            if (!memcmp(&cpu.mid[i], &gpu.mid[i], sizeof(float))) continue;
            uint16_t a = f32_to_bf16(cpu.mid[i]), b = f32_to_bf16(gpu.mid[i]);
            if (abs((int)a - (int)b) == 1) flips++;
            else if (fabs(cpu.mid[i] - gpu.mid[i]) > 1e-5 * S && !far++) at = i;
        }
        CHECK(far == 0, "%s: %zu stored bf16 values differ by more than one bf16 ulp, first [%zu]: cpu %.9g, cuda %.9g",
              test, far, at, (double)cpu.mid[at], (double)gpu.mid[at]);
        CHECK(flips * 100 <= cpu.mid_numel, "%s: %zu of %zu stored bf16 values one ulp apart (1%% allowed): not "
              "the same rounding", test, flips, cpu.mid_numel);
    }
    check_close(test, "out", cpu.out, gpu.out, cpu.out_numel, BF16);
    check_grads(test, spec, n, &cpu, &gpu, BF16);
    free_run(&cpu);
    free_run(&gpu);
    free(seed);
    for (int k = 0; k < n; k++) free(host[k]);
}

// ---- Builders -----------------------------------------------------------------
static Tensor *build_matmul(Graph *g, Tensor **in, const void *ctx) { return op_matmul(g, in[0], in[1]); }
static Tensor *build_matmul_self(Graph *g, Tensor **in, const void *ctx) { return op_matmul(g, in[0], in[0]); }
static Tensor *build_linear(Graph *g, Tensor **in, const void *ctx) { return op_linear(g, in[0], in[1], ctx ? in[2] : NULL); }
static Tensor *build_add(Graph *g, Tensor **in, const void *ctx) { return op_add(g, in[0], in[1]); }
static Tensor *build_add_self(Graph *g, Tensor **in, const void *ctx) { return op_add(g, in[0], in[0]); }
static Tensor *build_mul(Graph *g, Tensor **in, const void *ctx) { return op_mul(g, in[0], in[1]); }
static Tensor *build_mul_self(Graph *g, Tensor **in, const void *ctx) { return op_mul(g, in[0], in[0]); }
static Tensor *build_scale(Graph *g, Tensor **in, const void *ctx) { return op_scale(g, in[0], -1.7f); }
static Tensor *build_layernorm(Graph *g, Tensor **in, const void *ctx) { return op_layernorm(g, in[0], in[1], in[2], 1e-5f); }
// x also passes around the layernorm: one of dx's writers adds to the other's.
static Tensor *build_layernorm_residual(Graph *g, Tensor **in, const void *ctx) {
    return op_add(g, op_layernorm(g, in[0], in[1], in[2], 1e-5f), in[0]);
}
static Tensor *build_gelu(Graph *g, Tensor **in, const void *ctx) { return op_gelu(g, in[0]); }
static Tensor *build_softmax(Graph *g, Tensor **in, const void *ctx) { return op_softmax(g, in[0]); }
static Tensor *build_bias_gelu(Graph *g, Tensor **in, const void *ctx) { return op_bias_gelu(g, in[0], in[1]); }
static Tensor *build_bias_residual(Graph *g, Tensor **in, const void *ctx) {
    return op_bias_residual(g, in[0], in[1], in[2]);
}
static Tensor *build_bias_residual_self(Graph *g, Tensor **in, const void *ctx) {
    return op_bias_residual(g, in[0], in[0], in[1]);
}
static Tensor *build_attention(Graph *g, Tensor **in, const void *ctx) {
    return op_attention(g, in[0], ctx ? in[1] : NULL, 3);
}
// Attention with a mask mode: heads, mode, n_prefix, and whether in[1] is a key mask.
typedef struct { int heads, mode, n_prefix, masked; } AttnCase;
static Tensor *build_attention_mode(Graph *g, Tensor **in, const void *ctx) {
    const AttnCase *a = ctx;
    Tensor *mask = a->masked ? in[1] : NULL;
    return a->mode == ATTN_PREFIX ? op_attention_prefix(g, in[0], mask, a->heads, a->n_prefix)
                                  : op_attention(g, in[0], mask, a->heads);
}
static Tensor *build_embedding(Graph *g, Tensor **in, const void *ctx) { return op_embedding(g, in[0], in[1]); }
static Tensor *build_concat(Graph *g, Tensor **in, const void *ctx) { return op_concat(g, in, 3, 1); }
static Tensor *build_concat_self(Graph *g, Tensor **in, const void *ctx) {
    return op_concat(g, (Tensor *[]){ in[0], in[0] }, 2, -1);
}
static Tensor *build_slice(Graph *g, Tensor **in, const void *ctx) { return op_slice(g, in[0], 1, 2, 5); }
static Tensor *build_transpose(Graph *g, Tensor **in, const void *ctx) {
    const int *axes = ctx;
    return op_transpose(g, in[0], axes[0], axes[1]);
}
static Tensor *build_sum(Graph *g, Tensor **in, const void *ctx) { return op_sum(g, in[0], *(const int *)ctx); }
static Tensor *build_mean(Graph *g, Tensor **in, const void *ctx) { return op_mean(g, in[0], *(const int *)ctx); }
static Tensor *build_patchify(Graph *g, Tensor **in, const void *ctx) {
    const float mean[3] = { 0.485f, 0.456f, 0.406f }, std[3] = { 0.229f, 0.224f, 0.225f };
    return op_patchify(g, in[0], 4, mean, std);
}
static Tensor *build_sin(Graph *g, Tensor **in, const void *ctx) { return op_sin(g, in[0]); }
static Tensor *build_cos(Graph *g, Tensor **in, const void *ctx) { return op_cos(g, in[0]); }
static Tensor *build_cumsum(Graph *g, Tensor **in, const void *ctx) { return op_cumsum(g, in[0], *(const int *)ctx); }
static Tensor *build_cross_entropy(Graph *g, Tensor **in, const void *ctx) {
    return op_cross_entropy(g, in[0], in[1], *(const int *)ctx);
}
static Tensor *build_smooth_l1(Graph *g, Tensor **in, const void *ctx) {
    return op_smooth_l1(g, in[0], in[1], ctx ? in[2] : NULL, ctx ? 0.5f : 1.0f);
}
static Tensor *build_mse(Graph *g, Tensor **in, const void *ctx) { return op_mse(g, in[0], in[1], ctx ? in[2] : NULL); }
// f32 -> bf16 -> f32: both directions, and the gradient through both.
static Tensor *build_cast(Graph *g, Tensor **in, const void *ctx) {
    return op_cast(g, op_cast(g, in[0], DT_BF16), DT_F32);
}

// bf16 activation chains (parity_bf16): the stored intermediate, then the
// product (or attention) that reads it.
static Tensor *build_bf16_layernorm_linear(Graph *g, Tensor **in, const void *ctx) {
    parity_mid = op_layernorm(g, in[0], in[1], in[2], 1e-5f);
    return op_linear(g, parity_mid, in[3], NULL);
}
static Tensor *build_bf16_gelu_linear(Graph *g, Tensor **in, const void *ctx) {
    parity_mid = op_bias_gelu(g, in[0], in[1]);
    return op_linear(g, parity_mid, in[2], NULL);
}
static Tensor *build_bf16_layernorm_matmul(Graph *g, Tensor **in, const void *ctx) {
    parity_mid = op_layernorm(g, in[0], in[1], in[2], 1e-5f);
    return op_matmul(g, parity_mid, in[3]);
}
// ln -> qkv linear -> attention -> linear, with the qkv projection's bf16
// output (ctx NULL) or the attention's (ctx non-NULL) compared bit by bit.
static Tensor *build_bf16_attention(Graph *g, Tensor **in, const void *ctx) {
    Tensor *qkv = op_linear(g, op_layernorm(g, in[0], in[1], in[2], 1e-5f), in[3], in[4]);
    Tensor *att = op_attention(g, qkv, NULL, 2);
    parity_mid = ctx ? att : qkv;
    return op_linear(g, att, in[5], NULL);
}

// ---- Per-op tests -----------------------------------------------------------
static void test_matmul(void) {
    NEED_GPU();
    ParityInput plain[] = { { "a", DT_F32, 2, { 6, 8 }, 1 }, { "b", DT_F32, 2, { 8, 5 }, 1 } };
    parity("matmul [M,K]@[K,N]", plain, 2, build_matmul, NULL, GEMM, GEMM);
    ParityInput shared[] = { { "a", DT_F32, 3, { 3, 6, 8 }, 1 }, { "b", DT_F32, 2, { 8, 5 }, 1 } };
    parity("matmul [B,M,K]@[K,N]", shared, 2, build_matmul, NULL, GEMM, GEMM);
    ParityInput batched[] = { { "a", DT_F32, 3, { 3, 6, 8 }, 1 }, { "b", DT_F32, 3, { 3, 8, 5 }, 1 } };
    parity("matmul [B,M,K]@[B,K,N]", batched, 2, build_matmul, NULL, GEMM, GEMM);
    // a @ a: both products accumulate into one gradient.
    ParityInput self[] = { { "a", DT_F32, 2, { 7, 7 }, 1 } };
    parity("matmul a@a", self, 1, build_matmul_self, NULL, GEMM, GEMM);
}

static void test_linear(void) {
    NEED_GPU();
    ParityInput spec[] = {
        { "x", DT_F32, 3, { 2, 5, 16 }, 1 },
        { "w", DT_F32, 2, { 12, 16 }, 1 },
        { "b", DT_F32, 1, { 12 }, 1 },
    };
    parity("linear with bias", spec, 3, build_linear, (void *)1, GEMM, GEMM);
    parity("linear without bias", spec, 2, build_linear, NULL, GEMM, GEMM);
}

// train.precision bf16: layernorm, bias_gelu, the qkv linear and the
// attention store bf16 outputs; the products and the attention read them as
// they are (autograd/plan.h). Widths that take the
// layernorm's warp-per-row kernel (32) and its block-per-row one (30).
static void test_bf16_activations(void) {
    NEED_GPU();
    for (int wide = 0; wide <= 1; wide++) {
        int Cw = wide ? 32 : 30;
        ParityInput ln[] = {
            { "x", DT_F32, 3, { 2, 5, Cw }, 1, 1.5f, 0.5f },
            { "gamma", DT_F32, 1, { Cw }, 1, 0.3f, 1.0f },
            { "beta", DT_F32, 1, { Cw }, 1, 0.3f },
            { "w", DT_F32, 2, { 12, Cw }, 1, 0.3f },
        };
        parity_bf16(wide ? "bf16 layernorm (warp rows) -> linear" : "bf16 layernorm (block rows) -> linear", ln, 4,
                    build_bf16_layernorm_linear, NULL);
        ParityInput lm[] = {
            { "x", DT_F32, 3, { 2, 5, Cw }, 1, 1.5f, 0.5f },
            { "gamma", DT_F32, 1, { Cw }, 1, 0.3f, 1.0f },
            { "beta", DT_F32, 1, { Cw }, 1, 0.3f },
            { "w", DT_F32, 2, { Cw, 7 }, 1, 0.3f },
        };
        parity_bf16("bf16 layernorm -> matmul", lm, 4, build_bf16_layernorm_matmul, NULL);
        ParityInput gl[] = {
            { "x", DT_F32, 3, { 2, 5, Cw }, 1 },
            { "b", DT_F32, 1, { Cw }, 1 },
            { "w", DT_F32, 2, { 12, Cw }, 1, 0.3f },
        };
        parity_bf16("bf16 bias_gelu -> linear", gl, 3, build_bf16_gelu_linear, NULL);
    }
    // The attention block: qkv written bf16 by its projection, read bf16 by
    // the attention, whose bf16 output the next projection reads.
    enum { AB = 2, AT = 9, AC = 16 };
    ParityInput att[] = {
        { "x", DT_F32, 3, { AB, AT, AC }, 1 },
        { "gamma", DT_F32, 1, { AC }, 1, 0.3f, 1.0f },
        { "beta", DT_F32, 1, { AC }, 1, 0.3f },
        { "w_qkv", DT_F32, 2, { 3 * AC, AC }, 1, 0.5f },
        { "b_qkv", DT_F32, 1, { 3 * AC }, 1, 0.1f },
        { "w_proj", DT_F32, 2, { AC, AC }, 1, 0.3f },
    };
    parity_bf16("bf16 qkv linear output -> attention", att, 6, build_bf16_attention, NULL);
    parity_bf16("bf16 attention output -> linear", att, 6, build_bf16_attention, (void *)1);
}

static void test_add(void) {
    NEED_GPU();
    ParityInput same[] = { { "a", DT_F32, 3, { 3, 5, 4 }, 1 }, { "b", DT_F32, 3, { 3, 5, 4 }, 1 } };
    parity("add same shape", same, 2, build_add, NULL, EXACT, EXACT);
    // db sums dy over the broadcast rows: a reduction.
    ParityInput bcast[] = { { "a", DT_F32, 3, { 3, 5, 4 }, 1 }, { "b", DT_F32, 2, { 5, 4 }, 1 } };
    parity("add broadcast [5,4]", bcast, 2, build_add, NULL, EXACT, REDUCE);
    ParityInput bcast1[] = { { "a", DT_F32, 3, { 3, 5, 40 }, 1 }, { "b", DT_F32, 1, { 40 }, 1 } };
    parity("add broadcast [40]", bcast1, 2, build_add, NULL, EXACT, REDUCE);
    ParityInput self[] = { { "a", DT_F32, 2, { 4, 6 }, 1 } };
    parity("add a+a", self, 1, build_add_self, NULL, EXACT, EXACT);
}

static void test_mul(void) {
    NEED_GPU();
    ParityInput same[] = { { "a", DT_F32, 3, { 3, 5, 4 }, 1 }, { "b", DT_F32, 3, { 3, 5, 4 }, 1 } };
    parity("mul same shape", same, 2, build_mul, NULL, EXACT, EXACT);
    ParityInput bcast[] = { { "a", DT_F32, 3, { 3, 5, 40 }, 1 }, { "b", DT_F32, 1, { 40 }, 1 } };
    parity("mul broadcast [40]", bcast, 2, build_mul, NULL, EXACT, REDUCE);
    // a * a: da = dy * a + dy * a, two roundings on both sides, but an FMA
    // may fuse the second: ULP.
    ParityInput self[] = { { "a", DT_F32, 2, { 4, 6 }, 1 } };
    parity("mul a*a", self, 1, build_mul_self, NULL, EXACT, ULP);
}

static void test_scale(void) {
    NEED_GPU();
    ParityInput spec[] = { { "a", DT_F32, 3, { 3, 5, 4 }, 1 } };
    parity("scale", spec, 1, build_scale, NULL, EXACT, EXACT);
}

static void test_layernorm(void) {
    NEED_GPU();
    // An offset mean and a non-unit std, so the centring matters.
    ParityInput spec[] = {
        { "x", DT_F32, 3, { 3, 5, 48 }, 1, 1.5f, 2.0f },
        { "gamma", DT_F32, 1, { 48 }, 1, 0.2f, 1.0f },
        { "beta", DT_F32, 1, { 48 }, 1, 0.2f },
    };
    parity("layernorm", spec, 3, build_layernorm, NULL, REDUCE, REDUCE);
    parity("layernorm + x", spec, 3, build_layernorm_residual, NULL, REDUCE, REDUCE);
    // The CUDA kernels by row length: a warp per row holding 1, 4 or 8
    // 128-bit packs per lane (48 is the case above: 12 packs, 1 per lane),
    // and a block per row when C is not a multiple of 4 or is over 1024.
    static const int widths[] = { 512, 768, 37, 1028 };
    for (int i = 0; i < 4; i++) {
        int C = widths[i];
        ParityInput wide[] = {
            { "x", DT_F32, 2, { 6, C }, 1, 1.5f, 2.0f },
            { "gamma", DT_F32, 1, { C }, 1, 0.2f, 1.0f },
            { "beta", DT_F32, 1, { C }, 1, 0.2f },
        };
        char name[48];
        snprintf(name, sizeof name, "layernorm C=%d", C);
        parity(name, wide, 3, build_layernorm, NULL, REDUCE, REDUCE);
    }
}

static void test_gelu(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 2, { 7, 33 }, 1, 2.5f } };
    parity("gelu", spec, 1, build_gelu, NULL, ULP, ULP);
    // A multiple of 4 floats: map.cuh's 128-bit packs, no tail.
    ParityInput packed[] = { { "x", DT_F32, 2, { 6, 32 }, 1, 2.5f } };
    parity("gelu 128-bit", packed, 1, build_gelu, NULL, ULP, ULP);
}

static void test_bias_gelu(void) {
    NEED_GPU();
    // 70 columns: past one 64-wide CPU block and two 32-wide GPU ones.
    ParityInput spec[] = { { "x", DT_F32, 3, { 3, 7, 70 }, 1, 2.5f }, { "bias", DT_F32, 1, { 70 }, 1, 0.5f } };
    // The bias gradient sums 21 rows of elementwise terms: a reduction.
    parity("bias_gelu", spec, 2, build_bias_gelu, NULL, ULP, REDUCE);
    // 64 columns: the 128-bit path (4 floats a load, the bias column by a multiply-high).
    ParityInput packed[] = { { "x", DT_F32, 3, { 3, 5, 64 }, 1, 2.5f }, { "bias", DT_F32, 1, { 64 }, 1, 0.5f } };
    parity("bias_gelu 128-bit", packed, 2, build_bias_gelu, NULL, ULP, REDUCE);
}

static void test_bias_residual(void) {
    NEED_GPU();
    ParityInput spec[] = {
        { "x", DT_F32, 3, { 3, 7, 70 }, 1 }, { "fx", DT_F32, 3, { 3, 7, 70 }, 1 }, { "bias", DT_F32, 1, { 70 }, 1 },
    };
    // x + (fx + b): the same two roundings on both sides; dx and dfx are dy
    // itself, db a sum over 21 rows.
    parity("bias_residual", spec, 3, build_bias_residual, NULL, EXACT, REDUCE);
    // x + (x + b): x's gradient receives dy twice.
    ParityInput self[] = { { "x", DT_F32, 2, { 9, 40 }, 1 }, { "bias", DT_F32, 1, { 40 }, 1 } };
    parity("bias_residual x+x", self, 2, build_bias_residual_self, NULL, EXACT, REDUCE);
    // 64 columns: the 128-bit path.
    ParityInput packed[] = {
        { "x", DT_F32, 3, { 3, 5, 64 }, 1 }, { "fx", DT_F32, 3, { 3, 5, 64 }, 1 }, { "bias", DT_F32, 1, { 64 }, 1 },
    };
    parity("bias_residual 128-bit", packed, 3, build_bias_residual, NULL, EXACT, REDUCE);
}

static void test_softmax(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 3, { 4, 6, 37 }, 1, 3.0f } };
    parity("softmax", spec, 1, build_softmax, NULL, REDUCE, REDUCE);
}

static void test_attention(void) {
    NEED_GPU();
    enum { B = 2, T = 7, C = 12 };   // 3 heads of 4 channels
    // Batch 0 keeps every key; batch 1 masks keys 0, 1 and 4, so its
    // queries 0 and 1 have no allowed key and must output zeros.
    static const float mask[B * T] = { 1, 1, 1, 1, 1, 1, 1,
                                       0, 0, 1, 1, 0, 1, 1 };
    ParityInput spec[] = {
        { "qkv", DT_F32, 3, { B, T, 3 * C }, 1 },
        { "key_mask", DT_F32, 2, { B, T }, 0, 0, 0, 0, 0, mask },
    };
    parity("attention causal", spec, 1, build_attention, NULL, REDUCE, REDUCE);
    parity("attention masked", spec, 2, build_attention, (void *)1, REDUCE, REDUCE);
}

// The tiled kernels at lengths that cross their tiles (64 queries and keys
// at head size 8; 32 forward and 16 backward at head size 64), both mask
// modes, keys masked at the start (queries that see nothing in causal mode)
// and at a padded tail.
static void test_attention_tiles(void) {
    NEED_GPU();
    enum { B = 2, T = 70, C = 16 };
    float mask[B * T];
    for (int b = 0; b < B; b++)
        for (int j = 0; j < T; j++) mask[b * T + j] = !(j >= 60 + 4 * b && j < T - 1) && !(b == 1 && j < 3);
    ParityInput spec[] = {
        { "qkv", DT_F32, 3, { B, T, 3 * C }, 1 },
        { "key_mask", DT_F32, 2, { B, T }, 0, 0, 0, 0, 0, mask },
    };
    AttnCase causal = { 2, ATTN_CAUSAL, 0, 1 }, prefix = { 2, ATTN_PREFIX, 66, 1 }, all = { 2, ATTN_PREFIX, T, 0 };
    parity("attention tiles causal", spec, 2, build_attention_mode, &causal, REDUCE, REDUCE);
    parity("attention tiles prefix", spec, 2, build_attention_mode, &prefix, REDUCE, REDUCE);
    parity("attention tiles bidirectional", spec, 1, build_attention_mode, &all, REDUCE, REDUCE);
    enum { TW = 40, CW = 128 };
    float mask_w[TW];
    for (int j = 0; j < TW; j++) mask_w[j] = j < 33 || j == TW - 1;
    ParityInput wide[] = {
        { "qkv", DT_F32, 3, { 1, TW, 3 * CW }, 1 },
        { "key_mask", DT_F32, 2, { 1, TW }, 0, 0, 0, 0, 0, mask_w },
    };
    AttnCase wide_prefix = { 2, ATTN_PREFIX, 20, 1 };
    parity("attention head size 64 prefix", wide, 2, build_attention_mode, &wide_prefix, REDUCE, REDUCE);
}

static void test_embedding(void) {
    NEED_GPU();
    // Ids in [-1, V]: -1 and V are out of range (zero rows, no gradient);
    // repeats make the scatter-add sum several rows per table row.
    ParityInput spec[] = {
        { "ids", DT_I32, 2, { 3, 9 }, 0, 0, 0, -1, 8 },
        { "table", DT_F32, 2, { 7, 5 }, 1 },
    };
    parity("embedding", spec, 2, build_embedding, NULL, EXACT, EXACT);
}

static void test_concat(void) {
    NEED_GPU();
    ParityInput spec[] = {
        { "x0", DT_F32, 3, { 2, 3, 4 }, 1 },
        { "x1", DT_F32, 3, { 2, 1, 4 }, 1 },
        { "x2", DT_F32, 3, { 2, 5, 4 }, 1 },
    };
    parity("concat axis 1", spec, 3, build_concat, NULL, EXACT, EXACT);
    // concat(x, x): two gradient updates of one tensor.
    ParityInput self[] = { { "x", DT_F32, 2, { 3, 4 }, 1 } };
    parity("concat x,x", self, 1, build_concat_self, NULL, EXACT, EXACT);
}

static void test_slice(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 3, { 4, 9, 3 }, 1 } };
    parity("slice", spec, 1, build_slice, NULL, EXACT, EXACT);
}

static void test_transpose(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 4, { 2, 3, 4, 5 }, 1 } };
    static const int axes[][2] = { { 1, 3 }, { 0, 2 }, { 2, -1 }, { 1, 1 } };
    for (int i = 0; i < 4; i++) parity("transpose", spec, 1, build_transpose, axes[i], EXACT, EXACT);
}

static void test_sum_mean(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 3, { 3, 50, 4 }, 1 } };
    static const int axes[] = { 0, 1, 2, -1, OP_ALL };
    // Up to 600 terms of either sign: the whole-tensor sum can cancel to
    // ~0.02 while each order's rounding is ~1e-6 of the terms, so the atol
    // is judged on the sum of |x| (parity_run's over_terms). The backward
    // broadcasts dy (times 1/n for the mean) onto zero: one rounding on both
    // sides.
    for (int i = 0; i < 5; i++) {
        parity_run("sum", spec, 1, build_sum, &axes[i], REDUCE, EXACT, 1);
        parity_run("mean", spec, 1, build_mean, &axes[i], REDUCE, EXACT, 1);
    }
}

static void test_patchify(void) {
    NEED_GPU();
    ParityInput spec[] = { { "img", DT_U8, 4, { 2, 8, 12, 3 } } };
    parity("patchify", spec, 1, build_patchify, NULL, EXACT, EXACT);
}

static void test_sin_cos(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 2, { 5, 31 }, 1, 3.0f } };
    parity("sin", spec, 1, build_sin, NULL, ULP, ULP);
    parity("cos", spec, 1, build_cos, NULL, ULP, ULP);
}

static void test_cumsum(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 3, { 3, 7, 4 }, 1 } };
    static const int axes[] = { 0, 1, -1 };
    for (int i = 0; i < 3; i++) parity("cumsum", spec, 1, build_cumsum, &axes[i], EXACT, EXACT);
}

static void test_cross_entropy(void) {
    NEED_GPU();
    // Targets in [-1, V]: -1 is ignore_index, V is out of range (ignored too).
    ParityInput spec[] = {
        { "logits", DT_F32, 3, { 3, 5, 11 }, 1, 2.0f },
        { "targets", DT_I32, 2, { 3, 5 }, 0, 0, 0, -1, 12 },
    };
    static const int ignore_minus1 = -1, ignore_3 = 3, ignore_all = -1;
    parity("cross_entropy ignore -1", spec, 2, build_cross_entropy, &ignore_minus1, REDUCE, REDUCE);
    parity("cross_entropy ignore 3", spec, 2, build_cross_entropy, &ignore_3, REDUCE, REDUCE);
    // Every target ignored: the loss is 0 and no gradient flows.
    ParityInput none[] = {
        { "logits", DT_F32, 2, { 4, 6 }, 1 },
        { "targets", DT_I32, 1, { 4 }, 0, 0, 0, -1, 0 },
    };
    parity("cross_entropy all ignored", none, 2, build_cross_entropy, &ignore_all, EXACT, EXACT);
}

static void test_regression(void) {
    NEED_GPU();
    enum { B = 4, T = 6 };
    // Mask [B, T] over pred [B, T, 3]: zeros drop whole waypoints.
    static float mask[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = (i % 5 == 2) ? 0.0f : 0.5f + 0.25f * (float)(i % 3);
    // A NaN target where the mask is 0 must not reach the loss or any grad.
    static float target[B * T * 3];
    for (int i = 0; i < B * T * 3; i++) target[i] = (float)sin(1.3 * i);
    target[2 * 3 + 1] = NAN;   // waypoint 2: mask 0
    ParityInput spec[] = {
        { "pred", DT_F32, 3, { B, T, 3 }, 1 },
        { "target", DT_F32, 3, { B, T, 3 }, 1, 0, 0, 0, 0, target },
        { "mask", DT_F32, 2, { B, T }, 0, 0, 0, 0, 0, mask },
    };
    parity("smooth_l1 masked", spec, 3, build_smooth_l1, (void *)1, REDUCE, REDUCE);
    parity("mse masked", spec, 3, build_mse, (void *)1, REDUCE, REDUCE);
    ParityInput plain[] = { { "pred", DT_F32, 2, { 40, 3 }, 1 }, { "target", DT_F32, 2, { 40, 3 }, 1 } };
    parity("smooth_l1", plain, 2, build_smooth_l1, NULL, REDUCE, REDUCE);
    parity("mse", plain, 2, build_mse, NULL, REDUCE, REDUCE);
    // An all-zero mask: the loss is 0 and no gradient flows.
    static const float zeros[B * T];
    ParityInput masked_out[] = {
        { "pred", DT_F32, 3, { B, T, 3 }, 1 },
        { "target", DT_F32, 3, { B, T, 3 }, 1 },
        { "mask", DT_F32, 2, { B, T }, 0, 0, 0, 0, 0, zeros },
    };
    parity("mse all masked", masked_out, 3, build_mse, (void *)1, EXACT, EXACT);
}

static void test_cast(void) {
    NEED_GPU();
    ParityInput spec[] = { { "x", DT_F32, 2, { 9, 13 }, 1, 100.0f } };
    parity("cast random", spec, 1, build_cast, NULL, EXACT, EXACT);
    // Rounding ties (to even), the overflow to inf, signed zero, a subnormal,
    // infinities and NaN: the bf16 bits must match tensor.h's f32_to_bf16.
    static const float special[12] = { 0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, -2.5f,
                                       3.3961776e38f, 1e-40f, INFINITY, -INFINITY, NAN, 65504.0f };
    ParityInput fixed[] = { { "x", DT_F32, 1, { 12 }, 1, 0, 0, 0, 0, special } };
    parity("cast special values", fixed, 1, build_cast, NULL, EXACT, EXACT);
}

// ---- The distillation losses ---------------------------------------------------------
typedef struct { DistillKLConfig cfg; int use_mask; } DistillCase;

static Tensor *build_distill_kl(Graph *g, Tensor **in, const void *ctx) {
    const DistillCase *c = ctx;
    return op_distill_kl(g, in[0], in[1], in[2], c->use_mask ? in[3] : NULL, &c->cfg);
}

static void test_distill_kl(void) {
    NEED_GPU();
    enum { B = 2, S = 3, R = B * S, K = 5 };
    static const float mask[R] = { 1, 0, 1, 1, 1, 1 };   // row 1 ignored
    static const char *modes[] = { "forward KL", "reverse KL", "JSD" };
    for (int mode = 0; mode < 3; mode++)
        for (int tail = 0; tail < 2; tail++) {
            // V = 37: the vocab passes read one float at a time; V = 40: 128-bit packs.
            int V = (mode + tail) % 2 ? 37 : 40;
            // Ids in [-1, V] (-1 and V are outside the student vocab), with a
            // duplicate in row 0 and a row of nothing but invalid ids (row 3).
            int32_t ids[R * K];
            float lp[R * K];
            for (int r = 0; r < R; r++)
                for (int j = 0; j < K; j++) {
                    ids[r * K + j] = r == 3 ? -1 : (int32_t)rng_below(&rng, (uint64_t)V + 2) - 1;
                    lp[r * K + j] = -1.0f - 0.6f * (float)j - 0.3f * fabsf(rng_normal(&rng));   // a descending top-k, mass < 1
                }
            ids[1] = ids[0] < 0 ? 4 : ids[0];
            ids[0] = ids[1];
            DistillCase c = { { .t_logged = 0.7f, .t = 1.6f, .mode = mode, .beta = 0.3f, .tail = tail, .t2 = tail }, mode != 1 };
            ParityInput spec[] = {
                { "logits", DT_F32, 3, { B, S, V }, 1, 2.0f },
                { "topk_ids", DT_I32, 3, { B, S, K }, .ivalues = ids },
                { "topk_logprobs", DT_F32, 3, { B, S, K }, .values = lp },
                { "mask", DT_F32, 2, { B, S }, .values = mask },
            };
            char name[96];
            snprintf(name, sizeof name, "distill_kl V=%d %s tail %d%s", V, modes[mode], tail, c.use_mask ? " masked" : "");
            parity(name, spec, c.use_mask ? 4 : 3, build_distill_kl, &c, REDUCE, REDUCE);
        }
}

typedef struct { int mode; float beta; } TrajCase;

static Tensor *build_traj_loss(Graph *g, Tensor **in, const void *ctx) {
    const TrajCase *c = ctx;
    return op_traj_loss(g, in[0], in[1], in[2], c->mode, c->beta, 0.5f);
}

static void test_traj_loss(void) {
    NEED_GPU();
    enum { B = 4, K = 3, T = 6 };
    // Candidate weights >= 0; sample 2 has none (masked out).
    static const float weights[B * K] = { 0.5f, 0.3f, 0.2f, 1, 0, 0, 0, 0, 0, 0.1f, 0, 0.9f };
    static const TrajCase cases[] = { { TRAJ_WEIGHTED, 1.0f }, { TRAJ_BEST, 1.0f }, { TRAJ_WEIGHTED, 0.0f }, { TRAJ_BEST, 0.5f } };
    for (int i = 0; i < 4; i++) {
        ParityInput spec[] = {
            { "pred", DT_F32, 3, { B, T, 3 }, 1 },
            { "targets", DT_F32, 4, { B, K, T, 3 }, 0, 1.5f },
            { "weights", DT_F32, 2, { B, K }, .values = weights },
        };
        parity(cases[i].mode == TRAJ_BEST ? "traj_loss best" : "traj_loss weighted", spec, 3, build_traj_loss, &cases[i], REDUCE, REDUCE);
    }
}

static Tensor *build_cosine_loss(Graph *g, Tensor **in, const void *ctx) {
    return op_cosine_loss(g, in[0], in[1], ctx ? in[2] : NULL);
}

static void test_cosine_loss(void) {
    NEED_GPU();
    enum { B = 5 };
    static const float mask[B] = { 1, 1, 0, 1, 1 };
    static const int dims[2] = { 37, 40 };   // one float per access; 128-bit packs
    for (int di = 0; di < 2; di++) {
        ParityInput spec[] = {
            { "a", DT_F32, 2, { B, dims[di] }, 1 },
            { "b", DT_F32, 2, { B, dims[di] }, 1 },
            { "mask", DT_F32, 1, { B }, .values = mask },
        };
        parity("cosine_loss masked", spec, 3, build_cosine_loss, (void *)1, REDUCE, REDUCE);
        parity("cosine_loss", spec, 2, build_cosine_loss, NULL, REDUCE, REDUCE);
    }
}

// ---- A whole transformer step --------------------------------------------------
enum { BLK_B = 2, BLK_T = 8, BLK_C = 16, BLK_H = 4, BLK_V = 10 };

typedef struct {
    Tensor *x, *key_mask, *targets, *waypoints, *loss;
} BlockGraph;

// A pre-norm block over x [B, T, C] with a key mask, then two heads: token
// logits [B, T, V] with cross-entropy, and waypoints [B, T, 3] with a
// masked smooth-L1; loss = ce + 0.5 * smooth_l1.
static BlockGraph build_block(Graph *g) {
    BlockGraph m;
    int C = BLK_C;
#define P(name, nd, ...) graph_param(g, name, nd, (int[]){ __VA_ARGS__ }, INIT_ZEROS, 0, 0)
    m.x = P("x", 3, BLK_B, BLK_T, C);
    m.key_mask = graph_input(g, "key_mask", DT_F32, 2, (int[]){ BLK_B, BLK_T });
    m.targets = graph_input(g, "targets", DT_I32, 2, (int[]){ BLK_B, BLK_T });
    m.waypoints = graph_input(g, "waypoints", DT_F32, 3, (int[]){ BLK_B, BLK_T, 3 });
    Tensor *ln1_g = P("ln1.g", 1, C), *ln1_b = P("ln1.b", 1, C);
    Tensor *qkv_w = P("qkv.w", 2, 3 * C, C), *qkv_b = P("qkv.b", 1, 3 * C);
    Tensor *proj_w = P("proj.w", 2, C, C), *proj_b = P("proj.b", 1, C);
    Tensor *ln2_g = P("ln2.g", 1, C), *ln2_b = P("ln2.b", 1, C);
    Tensor *fc_w = P("fc.w", 2, 4 * C, C), *fc_b = P("fc.b", 1, 4 * C);
    Tensor *out_w = P("out.w", 2, C, 4 * C), *out_b = P("out.b", 1, C);
    Tensor *lnf_g = P("lnf.g", 1, C), *lnf_b = P("lnf.b", 1, C);
    Tensor *head_w = P("head.w", 2, BLK_V, C);
    Tensor *wp_w = P("wp.w", 2, 3, C), *wp_b = P("wp.b", 1, 3);
#undef P
    Tensor *h = op_layernorm(g, m.x, ln1_g, ln1_b, 1e-5f);
    h = op_attention(g, op_linear(g, h, qkv_w, qkv_b), m.key_mask, BLK_H);   // (B, T, C)
    Tensor *x = op_residual(g, m.x, op_linear(g, h, proj_w, proj_b));
    h = op_gelu(g, op_linear(g, op_layernorm(g, x, ln2_g, ln2_b, 1e-5f), fc_w, fc_b));   // (B, T, 4C)
    x = op_residual(g, x, op_linear(g, h, out_w, out_b));
    x = op_layernorm(g, x, lnf_g, lnf_b, 1e-5f);
    Tensor *ce = op_cross_entropy(g, op_linear(g, x, head_w, NULL), m.targets, -1);
    Tensor *wp = op_smooth_l1(g, op_linear(g, x, wp_w, wp_b), m.waypoints, m.key_mask, 1.0f);
    m.loss = op_add(g, ce, op_scale(g, wp, 0.5f));
    return m;
}

typedef struct {
    float loss;
    int n_params;
    size_t numel[32];
    float *grad[32];
} BlockRun;

// Parameter i's values come from a stream derived from (seed, i), so both
// devices get the same ones without storing them: gains near 1, the rest
// small normals scaled like an initialisation (1/sqrt(fan_in)).
static void fill_param(Tensor *p, int i, uint64_t seed) {
    Rng r;
    rng_derive(&r, seed, 1, (uint64_t)i);
    size_t n = p->numel;
    float *v = malloc(n * sizeof *v);
    int gain = strstr(p->name, ".g") != NULL;
    float sc = p->ndim == 2 ? 1.0f / sqrtf((float)p->shape[1]) : 0.1f;
    if (strcmp(p->name, "x") == 0) sc = 1.0f;
    for (size_t j = 0; j < n; j++) v[j] = (gain ? 1.0f : 0.0f) + sc * rng_normal(&r);
    tensor_from_host_f32(p, v);
    free(v);
}

static BlockRun run_block(Device dev, uint64_t seed) {
    BlockRun res;
    memset(&res, 0, sizeof res);
    Graph *g = graph_new(dev);
    BlockGraph m = build_block(g);
    if (graph_plan(g)) { fprintf(stderr, "test_gpu_parity: block graph_plan failed\n"); exit(1); }
    for (int i = 0; i < g->n_params; i++) fill_param(g->params[i], i, seed);
    Rng r;
    rng_derive(&r, seed, 2, 0);
    float mask[BLK_B * BLK_T], wp[BLK_B * BLK_T * 3];
    int32_t targets[BLK_B * BLK_T];
    for (int i = 0; i < BLK_B * BLK_T; i++) {
        mask[i] = (i == BLK_T + 1 || i == BLK_T + 4) ? 0.0f : 1.0f;   // batch 1 drops keys 1 and 4
        targets[i] = (int32_t)rng_below(&r, BLK_V + 1) - 1;           // -1 (ignored) .. V-1
    }
    for (int i = 0; i < BLK_B * BLK_T * 3; i++) wp[i] = rng_normal(&r);
    tensor_from_host_f32(m.key_mask, mask);
    tensor_from_host_f32(m.waypoints, wp);
    backend_from_host(dev, m.targets->data, targets, sizeof targets);
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward(g, m.loss);
    tensor_to_host_f32(m.loss, &res.loss);
    res.n_params = g->n_params;
    for (int i = 0; i < g->n_params; i++) {
        res.numel[i] = g->params[i]->numel;
        res.grad[i] = malloc(res.numel[i] * sizeof(float));
        tensor_grad_to_host(g->params[i], res.grad[i]);
    }
    graph_free(g);
    return res;
}

static void test_transformer_step(void) {
    NEED_GPU();
#ifdef DISTIL_CUDA
    CHECK(cuda_allow_tf32() == 0, "TF32 must be off by default (the tolerances assume fp32 products)");
#endif
    uint64_t seed = rng_u64(&rng);
    BlockRun cpu = run_block(DEV_CPU, seed);
    BlockRun gpu = run_block(other_device(), seed);
    BlockRun again = run_block(other_device(), seed);
    // Names for the messages, in creation order (build_block).
    static const char *names[] = { "x", "ln1.g", "ln1.b", "qkv.w", "qkv.b", "proj.w", "proj.b", "ln2.g", "ln2.b",
                                   "fc.w", "fc.b", "out.w", "out.b", "lnf.g", "lnf.b", "head.w", "wp.w", "wp.b" };
    REQUIRE(cpu.n_params == (int)(sizeof names / sizeof *names), "build_block has %d parameters", cpu.n_params);
    // A step whose loss or gradients vanish would compare zeros with zeros.
    CHECK(isfinite(cpu.loss) && cpu.loss > 0.1f, "transformer step: cpu loss %g (expected ~log V + smooth-L1)", (double)cpu.loss);
    check_close("transformer step", "loss", &cpu.loss, &gpu.loss, 1, STEP);
    for (int i = 0; i < cpu.n_params; i++) {
        char what[64];
        snprintf(what, sizeof what, "d%s", names[i]);
        size_t nonzero = 0;
        for (size_t j = 0; j < cpu.numel[i]; j++) nonzero += cpu.grad[i][j] != 0.0f;
        CHECK(nonzero > 0, "transformer step: %s: the cpu gradient is all zeros", what);
        check_close("transformer step", what, cpu.grad[i], gpu.grad[i], cpu.numel[i], STEP);
        // Run to run, the device must repeat itself bit for bit.
        CHECK(memcmp(gpu.grad[i], again.grad[i], cpu.numel[i] * sizeof(float)) == 0,
              "transformer step: d%s differs between two identical runs (a nondeterministic kernel)", names[i]);
    }
    CHECK(memcmp(&gpu.loss, &again.loss, sizeof(float)) == 0, "transformer step: the loss differs between two identical runs");
    for (int i = 0; i < cpu.n_params; i++) { free(cpu.grad[i]); free(gpu.grad[i]); free(again.grad[i]); }
}

// The optimizer's one pass (adamw_flat_cuda) against its CPU twin
// (adamw_flat_cpu) over three steps of a flat range whose decay spans end
// inside 4-float vectors, from the same partial sums (the norm's own
// reduction order differs by design; the partials are computed once on the
// host and given to both): the same norm and verdict bit for bit, the
// weights and moments within ULP (nvcc may contract the rule into FMAs; the
// simulator does not, and there they agree exactly). The step's loss
// figures add up on the device, and a non-finite one skips the update.
static void test_adamw_flat(void) {
    NEED_GPU();
    uint64_t seed = rng_u64(&rng);
    Device devs[2] = { DEV_CPU, other_device() };
    Graph *g[2];
    AdamW opt[2];
    AdamWConfig cfg = { 0.9f, 0.999f, 1e-8f, 0.05f };
    int sizes[] = { 13, 7, 70001, 3, 1021 };
    for (int d = 0; d < 2; d++) {
        g[d] = graph_new(devs[d]);
        for (int k = 0; k < 5; k++) {
            char name[32];
            snprintf(name, sizeof name, "p%d", k);
            graph_param(g[d], name, 1, (int[]){ sizes[k] }, INIT_ZEROS, 0, k % 2 == 0);
        }
        REQUIRE(graph_plan(g[d]) == 0, "plan");
        for (int i = 0; i < g[d]->n_params; i++) fill_param(g[d]->params[i], i, seed);
        REQUIRE(adamw_init(&opt[d], g[d], cfg) == 0, "adamw_init");
    }
    size_t n = g[0]->grad_numel, chunks = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    float *grad = malloc(n * sizeof *grad), *got[2][3];
    double *partial = calloc(chunks, sizeof *partial);
    float loss_host[2] = { 0.75f, 0.25f };
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 3; k++) got[d][k] = malloc(n * sizeof(float));
    for (int step = 1; step <= 4; step++) {
        Rng r;
        rng_derive(&r, seed, 3, (uint64_t)step);
        for (size_t i = 0; i < n; i++) grad[i] = rng_normal(&r);
        if (step == 3) loss_host[0] = NAN;   // this step is skipped on both sides
        else loss_host[0] = 0.75f * (float)step;
        for (size_t i = 0; i < n; i++) partial[i / REDUCE_CHUNK] += (double)grad[i] * grad[i];
        AdamWStep out[2];
        for (int d = 0; d < 2; d++) {
            float *loss_dev = backend_alloc(devs[d], sizeof loss_host);
            REQUIRE(loss_dev, "alloc");
            backend_from_host(devs[d], loss_dev, loss_host, sizeof loss_host);
            backend_from_host(devs[d], g[d]->grad_mem, grad, n * sizeof *grad);
            backend_from_host(devs[d], g[d]->reduce_dev, partial, chunks * sizeof *partial);
            adamw_begin(&opt[d], 1e-2f, 40.0f);
            adamw_add_losses(&opt[d], (StepLosses){ { loss_dev, NULL, loss_dev + 1, NULL, NULL } });
            adamw_add_losses(&opt[d], (StepLosses){ { loss_dev, NULL, loss_dev + 1, NULL, NULL } });
            adamw_update(&opt[d], g[d], g[d]->reduce_dev, chunks);
            adamw_end(&opt[d], &out[d]);
            backend_to_host(devs[d], got[d][0], g[d]->param_mem, n * sizeof(float));
            backend_to_host(devs[d], got[d][1], opt[d].m, n * sizeof(float));
            backend_to_host(devs[d], got[d][2], opt[d].v, n * sizeof(float));
            backend_free(devs[d], loss_dev);
        }
        CHECK(out[0].applied == (step != 3) && out[1].applied == out[0].applied, "step %d: applied %d (cpu) %d (device)",
              step, out[0].applied, out[1].applied);
        CHECK(memcmp(&out[0].norm, &out[1].norm, sizeof out[0].norm) == 0 || (isnan(out[0].norm) && isnan(out[1].norm)),
              "step %d: norm %.17g (cpu) %.17g (device)", step, out[0].norm, out[1].norm);
        CHECK(memcmp(out[0].losses + 1, out[1].losses + 1, 4 * sizeof(double)) == 0 && out[0].losses[2] == 0.5 &&
              out[0].losses[1] == 0 && (step == 3 ? isnan(out[1].losses[0]) : out[0].losses[0] == 1.5 * step &&
              out[1].losses[0] == out[0].losses[0]),
              "step %d: loss sums %g %g (cpu) %g %g (device)", step, out[0].losses[0], out[0].losses[2], out[1].losses[0], out[1].losses[2]);
        static const char *what[3] = { "weights", "m", "v" };
        for (int k = 0; k < 3; k++) check_close("adamw flat", what[k], got[0][k], got[1][k], n, ULP);
        memset(partial, 0, chunks * sizeof *partial);
    }
    CHECK(opt[0].step == 3 && opt[1].step == 3, "updates counted: %ld (cpu) %ld (device)", opt[0].step, opt[1].step);
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < 3; k++) free(got[d][k]);
        adamw_free(&opt[d]);
        graph_free(g[d]);
    }
    free(grad);
    free(partial);
}

// The block's forward captured into a CUDA Graph and replayed: the same
// loss as the tape run eagerly, on inputs changed between replays (the
// graph reads its buffers when it runs, not when it was captured), and
// bitwise the same on two replays. Every op's launches must be capturable:
// no allocation, download or wait while the capture runs.
static void test_forward_capture(void) {
    NEED_GPU();
    if (cpu_only) SKIP("a CUDA Graph needs the CUDA backend");
    uint64_t seed = rng_u64(&rng);
    Graph *g = graph_new(DEV_CUDA);
    BlockGraph m = build_block(g);
    REQUIRE(graph_plan(g) == 0, "plan");
    for (int i = 0; i < g->n_params; i++) fill_param(g->params[i], i, seed);
    float mask[BLK_B * BLK_T], wp[BLK_B * BLK_T * 3];
    int32_t targets[BLK_B * BLK_T];
    for (int i = 0; i < BLK_B * BLK_T; i++) { mask[i] = 1.0f; targets[i] = i % BLK_V; }
    for (int i = 0; i < BLK_B * BLK_T * 3; i++) wp[i] = 0.1f * (float)i;
    tensor_from_host_f32(m.key_mask, mask);
    tensor_from_host_f32(m.waypoints, wp);
    backend_from_host(DEV_CUDA, m.targets->data, targets, sizeof targets);
    graph_forward(g);   // eager first: every workspace reaches its size
    float eager, replay, again;
    tensor_to_host_f32(m.loss, &eager);
    backend_capture_begin(DEV_CUDA);
    graph_forward(g);
    BackendCapture *cap = backend_capture_end(DEV_CUDA);
    REQUIRE(cap, "the forward could not be captured");
    CHECK(backend_capture_nodes(cap) >= 10, "the captured forward has %zu nodes", backend_capture_nodes(cap));
    backend_capture_launch(cap);
    tensor_to_host_f32(m.loss, &replay);
    CHECK(memcmp(&eager, &replay, sizeof eager) == 0, "replay: loss %.9g, eager %.9g", (double)replay, (double)eager);
    // New waypoints: the replay must see them.
    for (int i = 0; i < BLK_B * BLK_T * 3; i++) wp[i] = -0.2f * (float)i;
    tensor_from_host_f32(m.waypoints, wp);
    backend_capture_launch(cap);
    tensor_to_host_f32(m.loss, &replay);
    backend_capture_launch(cap);
    tensor_to_host_f32(m.loss, &again);
    graph_forward(g);
    tensor_to_host_f32(m.loss, &eager);
    CHECK(memcmp(&eager, &replay, sizeof eager) == 0, "replay on new inputs: loss %.9g, eager %.9g", (double)replay, (double)eager);
    CHECK(memcmp(&again, &replay, sizeof again) == 0, "two replays: %.9g, %.9g", (double)replay, (double)again);
    backend_capture_free(cap);
    graph_free(g);
}

int main(void) {
    const char *env = getenv("DISTIL_PARITY_CPU_ONLY");
    cpu_only = env && strcmp(env, "0") != 0;
    suite_seed = test_seed("test_gpu_parity");
    rng_seed(&rng, suite_seed);
    if (cpu_only) printf("test_gpu_parity: DISTIL_PARITY_CPU_ONLY: the CPU on both sides (a harness check)\n");
    RUN(test_matmul);
    RUN(test_linear);
    RUN(test_bf16_activations);
    RUN(test_add);
    RUN(test_mul);
    RUN(test_scale);
    RUN(test_layernorm);
    RUN(test_gelu);
    RUN(test_bias_gelu);
    RUN(test_bias_residual);
    RUN(test_softmax);
    RUN(test_attention);
    RUN(test_attention_tiles);
    RUN(test_embedding);
    RUN(test_concat);
    RUN(test_slice);
    RUN(test_transpose);
    RUN(test_sum_mean);
    RUN(test_patchify);
    RUN(test_sin_cos);
    RUN(test_cumsum);
    RUN(test_cross_entropy);
    RUN(test_regression);
    RUN(test_cast);
    RUN(test_distill_kl);
    RUN(test_traj_loss);
    RUN(test_cosine_loss);
    RUN(test_transformer_step);
    RUN(test_adamw_flat);
    RUN(test_forward_capture);
    return test_summary();
}
