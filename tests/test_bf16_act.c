// test_bf16_act.c: train.precision bf16's stored activations (autograd/plan.h
// plan_bf16_outputs) on the CPU.
//
// - The planner: in the student recorded with bf16 products, the outputs
//   that only products (and the attention) read are bf16, ln_f's (read by
//   slices) and everything else fp32, and the planned activation bytes
//   drop while the gradient bytes do not (gradients stay fp32).
// - Storing a product's operand bf16 changes no result: a chain run with
//   the operand stored bf16 and with it kept fp32 (graph_keep stops the
//   marking) gives the same bits, forward and every gradient, since the
//   product rounds an fp32 operand to the same bits.
// - A bf16 output is the fp32 kernel's value rounded once: its bits equal
//   f32_to_bf16 of the same op's fp32 output, and it is within half a bf16
//   ulp (plus fp32's error) of a double-precision reference.
// - The product reading a bf16 operand, against a double product of the
//   rounded operands (test_gemm_bf16's bound: 1e-5 of the sum of |terms|).
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "autograd/graph.h"     // defines: Graph, graph_*, tensor_*_host*
#include "autograd/ops.h"       // defines: op_*
#include "autograd/rng.h"       // defines: Rng, rng_*
#include "tests/test.h"
#include "train/model/model.h"  // defines: ModelConfig, Student, student_build

static Rng rng;

static float bf(float x) { return bf16_to_f32(f32_to_bf16(x)); }

// ---- the planner on the student ---------------------------------------------

static ModelConfig tiny_student(void) {
    ModelConfig c = {
        .dim = 16, .layers = 2, .heads = 2, .mlp_ratio = 2, .patch = 4,
        .n_cams = 2, .frames = 2, .img_h = 8, .img_w = 8, .hist = 3, .horizon = 5, .hz = 10.0f,
        .traj_repr = TRAJ_XYYAW, .vocab = 11, .max_trace = 6, .feat_dim = 4,
        .img_mean = { 0.5f, 0.5f, 0.5f }, .img_std = { 0.25f, 0.25f, 0.25f },
    };
    return c;
}

// Whether the planner should store t bf16 in the student recorded with bf16
// products: the block layernorms (ln_f feeds slices: fp32) and the MLP's GELU.
static int expect_bf16(const Tensor *t) {
    switch (t->op) {
    case OP_LAYERNORM: return strcmp(t->src[1]->name, "ln_f.weight") != 0;
    case OP_BIAS_GELU: return 1;
    default: return 0;
    }
}

static void test_plan_student(void) {
    ModelConfig c = tiny_student();
    GraphMemory mem[2];
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        Graph *g = graph_new(DEV_CPU);
        if (bf16) graph_set_products(g, DT_BF16);
        Student s = student_build(g, &c, 2);
        (void)s;
        mem[bf16] = graph_memory(g);
        REQUIRE(graph_plan(g) == 0, "graph_plan");
        int n_bf16 = 0, n_ln_f = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const Tensor *t = g->nodes[i];
            int want = bf16 && expect_bf16(t);
            n_bf16 += t->dtype == DT_BF16;
            if (t->op == OP_LAYERNORM && !strcmp(t->src[1]->name, "ln_f.weight")) n_ln_f++;
            CHECK((t->dtype == DT_BF16) == want, "%s graph: node %d (%s, weight %s) is %s, expected %s",
                  bf16 ? "bf16" : "fp32", i, op_name(t->op), t->nsrc > 1 ? t->src[1]->name : "-", dtype_name(t->dtype),
                  want ? "bf16" : "not bf16");
        }
        CHECK(n_ln_f == 1, "ln_f found %d times", n_ln_f);
        // 2 layers: ln1, ln2 and bias_gelu per block.
        if (bf16) CHECK(n_bf16 == 2 * 3, "%d bf16 nodes, expected 6", n_bf16);
        // graph_memory plans the same dtypes and bytes as graph_plan.
        CHECK(mem[bf16].arena == g->act_bytes, "graph_memory %zu bytes, graph_plan %zu", mem[bf16].arena, g->act_bytes);
        graph_free(g);
    }
    printf("  activations at their peak: fp32 %zu bytes, bf16 %zu; activation gradients %zu and %zu\n",
           mem[0].act_peak, mem[1].act_peak, mem[0].grad_peak, mem[1].grad_peak);
    CHECK(mem[1].act_peak < mem[0].act_peak, "bf16 activations %zu bytes, fp32 %zu: no saving", mem[1].act_peak, mem[0].act_peak);
    CHECK(mem[1].grad_peak == mem[0].grad_peak, "activation gradients: bf16 %zu bytes, fp32 %zu (gradients are fp32)",
          mem[1].grad_peak, mem[0].grad_peak);
}

// ---- chains of ops, run with the planner's dtypes ------------------------------

// x [R, C] input; p0 [C] (gamma or bias), p1 [C] (beta), w [O, C]; the
// chains record mid = op(x) and out = product(mid).
enum { R = 6, C = 40, O = 12 };
typedef enum { CHAIN_LN_LINEAR, CHAIN_GELU_LINEAR, CHAIN_LN_MATMUL } Chain;
static const char *const chain_names[] = { "layernorm -> linear", "bias_gelu -> linear", "layernorm -> matmul" };

typedef struct {
    float x[R * C], p0[C], p1[C], w[O * C], seed[R * O];
} ChainInputs;

typedef struct {
    DType mid_dtype;
    float mid[R * C];                           // the op's output, as stored (bf16 values when bf16)
    float out[R * O];
    float dx[R * C], dp0[C], dp1[C], dw[O * C];
} ChainRun;

static void random_inputs(ChainInputs *in) {
    for (int i = 0; i < R * C; i++) in->x[i] = 0.5f + 1.5f * rng_normal(&rng);
    for (int i = 0; i < C; i++) { in->p0[i] = 1.0f + 0.3f * rng_normal(&rng); in->p1[i] = 0.3f * rng_normal(&rng); }
    for (int i = 0; i < O * C; i++) in->w[i] = 0.3f * rng_normal(&rng);
    for (int i = 0; i < R * O; i++) in->seed[i] = rng_normal(&rng);
}

// Runs chain ch forward and backward; products bf16 or not; keep_mid: the
// host reads mid, so the planner leaves it fp32.
static void run_chain(Chain ch, const ChainInputs *in, int bf16, int keep_mid, ChainRun *r) {
    Graph *g = graph_new(DEV_CPU);
    if (bf16) graph_set_products(g, DT_BF16);
    // x reaches the ops through a copy so that it has a gradient buffer.
    Tensor *x0 = graph_param(g, "x", 2, (int[]){ R, C }, INIT_ZEROS, 0, 0);
    Tensor *p0 = graph_param(g, "p0", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    Tensor *p1 = graph_param(g, "p1", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    int matmul = ch == CHAIN_LN_MATMUL;
    Tensor *w = graph_param(g, "w", 2, matmul ? (int[]){ C, O } : (int[]){ O, C }, INIT_ZEROS, 0, 0);
    Tensor *x = op_scale(g, x0, 1.0f);
    Tensor *mid = ch == CHAIN_GELU_LINEAR ? op_bias_gelu(g, x, p0) : op_layernorm(g, x, p0, p1, 1e-5f);
    Tensor *out = matmul ? op_matmul(g, mid, w) : op_linear(g, mid, w, NULL);
    if (keep_mid) graph_keep(mid);
    if (graph_plan(g)) { fprintf(stderr, "test_bf16_act: graph_plan failed\n"); exit(1); }
    tensor_from_host_f32(x0, in->x);
    tensor_from_host_f32(p0, in->p0);
    tensor_from_host_f32(p1, in->p1);
    if (matmul) {   // the same weights, transposed: w [C, O]
        float wt[C * O];
        for (int o = 0; o < O; o++)
            for (int c = 0; c < C; c++) wt[c * O + o] = in->w[o * C + c];
        tensor_from_host_f32(w, wt);
    } else {
        tensor_from_host_f32(w, in->w);
    }
    graph_forward(g);
    r->mid_dtype = mid->dtype;
    tensor_to_host_f32(mid, r->mid);
    tensor_to_host_f32(out, r->out);
    graph_zero_grad(g);
    graph_backward_seeded(g, out, in->seed);
    tensor_grad_to_host(x0, r->dx);
    tensor_grad_to_host(p0, r->dp0);
    tensor_grad_to_host(p1, r->dp1);
    float dw[O * C];
    tensor_grad_to_host(w, dw);
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++) r->dw[o * C + c] = matmul ? dw[c * O + o] : dw[o * C + c];
    graph_free(g);
}

static int same_bits(const float *a, const float *b, int n, int *at) {
    for (int i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a)) { *at = i; return 0; }
    return 1;
}

// The double-precision twins of layernorm and bias_gelu.
static double mid_ref(Chain ch, const ChainInputs *in, int r, int c) {
    const float *x = in->x + r * C;
    if (ch == CHAIN_GELU_LINEAR) {
        double v = (double)x[c] + in->p0[c], u = sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v);
        return 0.5 * v * (1.0 + tanh(u));
    }
    double m = 0, var = 0;
    for (int k = 0; k < C; k++) m += x[k];
    m /= C;
    for (int k = 0; k < C; k++) var += (x[k] - m) * (x[k] - m);
    var /= C;
    return (x[c] - m) / sqrt(var + 1e-5) * in->p0[c] + in->p1[c];
}

static void check_chain(Chain ch) {
    const char *name = chain_names[ch];
    ChainInputs in;
    random_inputs(&in);
    static ChainRun stored, kept, fp32;
    run_chain(ch, &in, 1, 0, &stored);
    run_chain(ch, &in, 1, 1, &kept);
    run_chain(ch, &in, 0, 0, &fp32);
    REQUIRE(stored.mid_dtype == DT_BF16, "%s: the op's output is %s in a bf16 graph", name, dtype_name(stored.mid_dtype));
    REQUIRE(kept.mid_dtype == DT_F32 && fp32.mid_dtype == DT_F32, "%s: kept or fp32 output not fp32", name);
    int at = 0;
    // Stored bf16 or kept fp32 and rounded in the product: the same bits.
    CHECK(same_bits(stored.out, kept.out, R * O, &at), "%s: out[%d] %.9g stored bf16, %.9g kept fp32", name, at,
          (double)stored.out[at], (double)kept.out[at]);
    CHECK(same_bits(stored.dx, kept.dx, R * C, &at), "%s: dx[%d] %.9g vs %.9g", name, at, (double)stored.dx[at], (double)kept.dx[at]);
    CHECK(same_bits(stored.dp0, kept.dp0, C, &at), "%s: dp0[%d] differs", name, at);
    CHECK(same_bits(stored.dp1, kept.dp1, C, &at), "%s: dp1[%d] differs", name, at);
    CHECK(same_bits(stored.dw, kept.dw, O * C, &at), "%s: dw[%d] %.9g vs %.9g (the product of dy and bf16 x)", name, at,
          (double)stored.dw[at], (double)kept.dw[at]);
    // The bf16 output: the fp32 kernel's value rounded once...
    for (int i = 0; i < R * C; i++)
        if (stored.mid[i] != bf(fp32.mid[i])) {
            CHECK(0, "%s: mid[%d] stored %.9g, the fp32 kernel's %.9g rounds to %.9g", name, i, (double)stored.mid[i],
                  (double)fp32.mid[i], (double)bf(fp32.mid[i]));
            break;
        }
    // ...within half a bf16 ulp of the double reference (and fp32's 1e-5).
    double worst = 0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            double ref = mid_ref(ch, &in, r, c), half_ulp = ldexp(1.0, ilogb(ref == 0 ? 1e-30 : ref) - 8);
            worst = fmax(worst, fabs(stored.mid[r * C + c] - ref) / (half_ulp + 1e-5 * fabs(ref) + 1e-6));
        }
    CHECK(worst <= 1.0, "%s: the bf16 output is %.3g x (half a bf16 ulp + 1e-5) from the double reference", name, worst);
    // The product of the bf16 operand, against double: out = mid . bf(w)^T,
    // and dw = seed^T . mid (dy rounded too, as the product rounds it).
    double worst_out = 0, worst_dw = 0;
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) {
            double ref = 0, mag = 0;
            for (int c = 0; c < C; c++) {
                double t = (double)stored.mid[r * C + c] * bf(in.w[o * C + c]);
                ref += t;
                mag += fabs(t);
            }
            worst_out = fmax(worst_out, fabs(stored.out[r * O + o] - ref) / (1e-5 * mag + 1e-30));
        }
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++) {
            double ref = 0, mag = 0;
            for (int r = 0; r < R; r++) {
                double t = (double)bf(in.seed[r * O + o]) * stored.mid[r * C + c];
                ref += t;
                mag += fabs(t);
            }
            worst_dw = fmax(worst_dw, fabs(stored.dw[o * C + c] - ref) / (1e-5 * mag + 1e-30));
        }
    CHECK(worst_out <= 1.0 && worst_dw <= 1.0, "%s: out %.3g x, dw %.3g x the bound from the double product", name,
          worst_out, worst_dw);
    printf("  %s: bf16 output %.2f x its bound, out %.2f x, dw %.2f x\n", name, worst, worst_out, worst_dw);
}

static void test_layernorm_linear(void) { check_chain(CHAIN_LN_LINEAR); }
static void test_bias_gelu_linear(void) { check_chain(CHAIN_GELU_LINEAR); }
static void test_layernorm_matmul(void) { check_chain(CHAIN_LN_MATMUL); }

int main(void) {
    rng_seed(&rng, test_seed("test_bf16_act"));
    RUN(test_plan_student);
    RUN(test_layernorm_linear);
    RUN(test_bias_gelu_linear);
    RUN(test_layernorm_matmul);
    return test_summary();
}
