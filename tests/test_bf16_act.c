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
// - The attention chain layernorm -> qkv linear (bf16 output) -> attention
//   (bf16 qkv in, bf16 out) -> linear: the qkv linear's bf16 output and the
//   attention's output against double references computed from the stored
//   bf16 values; and the attention's kernels on bf16 qkv, forward and
//   backward, against the same reference.
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

// Half a bf16 ulp at x: the most a correct rounding of x moves it.
static double half_bf16_ulp(double x) { return ldexp(1.0, ilogb(x == 0 ? 1e-30 : x) - 8); }

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
// products: the block layernorms (ln_f feeds slices: fp32), the MLP's GELU,
// the attention's output and the qkv projection that feeds it.
static int expect_bf16(const Tensor *t) {
    switch (t->op) {
    case OP_LAYERNORM: return strcmp(t->src[1]->name, "ln_f.weight") != 0;
    case OP_BIAS_GELU: return 1;
    case OP_ATTENTION: return 1;
    case OP_LINEAR: return strstr(t->src[1]->name, "attn.qkv.weight") != NULL;
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
        // 2 layers: ln1, ln2, bias_gelu, attention, qkv linear per block.
        if (bf16) CHECK(n_bf16 == 2 * 5, "%d bf16 nodes, expected 10", n_bf16);
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
            double ref = mid_ref(ch, &in, r, c);
            worst = fmax(worst, fabs(stored.mid[r * C + c] - ref) / (half_bf16_ulp(ref) + 1e-5 * fabs(ref) + 1e-6));
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

// ---- the attention chain ------------------------------------------------------

enum { AB = 2, AT = 9, AC = 16, AH = 2, AHS = AC / AH };   // batch, tokens, channels, heads

// Causal attention in double from the stored (bf16) qkv, ops.h's
// definition: out (AB, AT, AC); and d(qkv) from dout, with delta =
// rowsum(dout * out_stored) as the kernels take it (from the stored output).
static void attention_ref(const float *qkv, const float *dout, const float *out_stored, double *out, double *dqkv) {
    double p[AT], scale = 1.0 / sqrt((double)AHS);
    memset(dqkv, 0, sizeof(double) * AB * AT * 3 * AC);
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < AH; h++)
            for (int i = 0; i < AT; i++) {
                const float *q = qkv + ((size_t)b * AT + i) * 3 * AC + h * AHS;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((size_t)b * AT + j) * 3 * AC + AC + h * AHS;
                    double dot = 0;
                    for (int c = 0; c < AHS; c++) dot += (double)q[c] * k[c];
                    p[j] = dot * scale;
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= i; j++) sum += exp(p[j] - mx);
                for (int j = 0; j <= i; j++) p[j] = exp(p[j] - mx) / sum;
                size_t row = ((size_t)b * AT + i) * AC + h * AHS;
                double delta = 0;
                for (int c = 0; c < AHS; c++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += p[j] * qkv[((size_t)b * AT + j) * 3 * AC + 2 * AC + h * AHS + c];
                    out[row + c] = acc;
                    delta += (double)dout[row + c] * out_stored[row + c];
                }
                double *dq = dqkv + ((size_t)b * AT + i) * 3 * AC + h * AHS;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((size_t)b * AT + j) * 3 * AC + AC + h * AHS, *v = k + AC;
                    double *dk = dqkv + ((size_t)b * AT + j) * 3 * AC + AC + h * AHS, *dv = dk + AC;
                    double dp = 0;
                    for (int c = 0; c < AHS; c++) dp += (double)dout[row + c] * v[c];
                    double ds = p[j] * (dp - delta) * scale;
                    for (int c = 0; c < AHS; c++) {
                        dq[c] += ds * k[c];
                        dk[c] += ds * q[c];
                        dv[c] += p[j] * dout[row + c];
                    }
                }
            }
}

// A bf16 output against its double reference: the worst |got - ref| over
// (half a bf16 ulp of ref + 1e-5 of the tensor's largest |ref|, fp32's sums).
static double worst_vs_bf16_bound(const float *got, const double *ref, int n) {
    double scale = 0, worst = 0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - ref[i]) / (half_bf16_ulp(ref[i]) + 1e-5 * scale));
    return worst;
}

// Worst |got - ref| over the tensor's largest |ref|.
static double err_vs_ref(const float *got, const double *ref, size_t n) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]) / fmax(scale, 1e-30);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

static void test_attention_chain(void) {
    enum { NQ = AB * AT * 3 * AC, NO = AB * AT * AC };
    Graph *g = graph_new(DEV_CPU);
    graph_set_products(g, DT_BF16);
    Tensor *x0 = graph_param(g, "x", 3, (int[]){ AB, AT, AC }, INIT_NORMAL, 1.0f, 0);
    Tensor *gamma = graph_param(g, "gamma", 1, (int[]){ AC }, INIT_ONES, 0, 0);
    Tensor *beta = graph_param(g, "beta", 1, (int[]){ AC }, INIT_ZEROS, 0, 0);
    Tensor *wq = graph_param(g, "attn.qkv.weight", 2, (int[]){ 3 * AC, AC }, INIT_NORMAL, 0.5f, 0);
    Tensor *bq = graph_param(g, "attn.qkv.bias", 1, (int[]){ 3 * AC }, INIT_NORMAL, 0.1f, 0);
    Tensor *wp = graph_param(g, "proj.weight", 2, (int[]){ AC, AC }, INIT_NORMAL, 0.3f, 0);
    Tensor *ln = op_layernorm(g, op_scale(g, x0, 1.0f), gamma, beta, 1e-5f);
    Tensor *qkv = op_linear(g, ln, wq, bq);
    Tensor *att = op_attention(g, qkv, NULL, AH);
    Tensor *out = op_linear(g, att, wp, NULL);
    REQUIRE(graph_plan(g) == 0, "graph_plan");
    REQUIRE(ln->dtype == DT_BF16 && qkv->dtype == DT_BF16 && att->dtype == DT_BF16 && out->dtype == DT_F32,
            "dtypes: layernorm %s, qkv %s, attention %s, out %s", dtype_name(ln->dtype), dtype_name(qkv->dtype),
            dtype_name(att->dtype), dtype_name(out->dtype));
    graph_init_params(g, &rng);
    static float ln_v[AB * AT * AC], qkv_v[NQ], att_v[NO], wq_v[3 * AC * AC], bq_v[3 * AC];
    graph_forward(g);   // (the activations are read now: backward reuses their memory)
    tensor_to_host_f32(ln, ln_v);
    tensor_to_host_f32(qkv, qkv_v);
    tensor_to_host_f32(att, att_v);
    tensor_to_host_f32(wq, wq_v);
    tensor_to_host_f32(bq, bq_v);
    // The qkv linear's bf16 output: round(fp32 sum + bias) of the bf16
    // layernorm output and the rounded weight, within half a bf16 ulp (and
    // the sum's fp32 error, 1e-5 of its terms) of double.
    double worst_qkv = 0;
    for (int r = 0; r < AB * AT; r++)
        for (int o = 0; o < 3 * AC; o++) {
            double ref = bq_v[o], mag = fabs(bq_v[o]);
            for (int c = 0; c < AC; c++) {
                double t = (double)ln_v[r * AC + c] * bf(wq_v[o * AC + c]);
                ref += t;
                mag += fabs(t);
            }
            worst_qkv = fmax(worst_qkv, fabs(qkv_v[r * 3 * AC + o] - ref) / (half_bf16_ulp(ref) + 1e-5 * mag + 1e-30));
        }
    CHECK(worst_qkv <= 1.0, "the qkv linear's bf16 output is %.3g x (half a bf16 ulp + 1e-5) from double", worst_qkv);
    // The attention on the stored bf16 q, k, v: its bf16 output within half
    // a bf16 ulp (+ test_attention's 1e-5 of the scale for fp32's sums).
    static double out_ref[NO], dqkv_ref[NQ];
    static float no_grad[NO];
    attention_ref(qkv_v, no_grad, att_v, out_ref, dqkv_ref);
    double worst_att = worst_vs_bf16_bound(att_v, out_ref, NO);
    CHECK(worst_att <= 1.0, "the attention's bf16 output is %.3g x (half a bf16 ulp + 1e-5) from double", worst_att);
    printf("  qkv %.2f x its bound, attention out %.2f x\n", worst_qkv, worst_att);
    graph_free(g);
}

// The attention's kernels on bf16 qkv and a bf16 output, called directly
// (a graph's backward reuses the gradient buffers, so d(qkv) could not be
// read after it): forward and backward against the double reference from
// the same bf16 values, the backward's delta from the stored output as
// the kernel takes it. d(qkv) is fp32 math on the same inputs: within
// test_attention's 1e-5 of the scale.
static void test_attention_kernel_bf16(void) {
    enum { NQ = AB * AT * 3 * AC, NO = AB * AT * AC };
    static uint16_t qkv16[NQ], out16[NO];
    static float qkv_v[NQ], out_v[NO], dout[NO], dqkv[NQ], saved[2 * AB * AH * AT];
    static double out_ref[NO], dqkv_ref[NQ];
    for (int i = 0; i < NQ; i++) { qkv16[i] = f32_to_bf16(rng_normal(&rng)); qkv_v[i] = bf16_to_f32(qkv16[i]); }
    for (int i = 0; i < NO; i++) dout[i] = rng_normal(&rng);
    Tensor qkv = { .ndim = 3, .shape = { AB, AT, 3 * AC }, .numel = NQ, .dtype = DT_BF16, .data = qkv16, .grad = dqkv,
                   .requires_grad = 1 };
    Tensor out = { .op = OP_ATTENTION, .ndim = 3, .shape = { AB, AT, AC }, .numel = NO, .dtype = DT_BF16, .data = out16,
                   .grad = dout, .saved = saved, .src = { &qkv }, .nsrc = 1, .requires_grad = 1, .grad_assign = 1 };
    out.iattr[0] = AH;
    out.iattr[1] = ATTN_CAUSAL;
    out.iattr[OP_IATTR_BF16] = 1;
    for (int i = 0; i < NQ; i++) dqkv[i] = NAN;   // assigned, not added to
    op_table[OP_ATTENTION].forward[DEV_CPU](&out);
    op_table[OP_ATTENTION].backward[DEV_CPU](&out);
    for (int i = 0; i < NO; i++) out_v[i] = bf16_to_f32(out16[i]);
    attention_ref(qkv_v, dout, out_v, out_ref, dqkv_ref);
    double worst_out = worst_vs_bf16_bound(out_v, out_ref, NO);
    double e_dqkv = err_vs_ref(dqkv, dqkv_ref, NQ);
    CHECK(worst_out <= 1.0, "the bf16 output is %.3g x (half a bf16 ulp + 1e-5 of the scale) from double", worst_out);
    CHECK(e_dqkv <= 1e-5, "d(qkv) is %.3g of the scale from double (1e-5 allowed)", e_dqkv);
    printf("  out %.2f x its bound, d(qkv) %.3g of the scale\n", worst_out, e_dqkv);
}

int main(void) {
    rng_seed(&rng, test_seed("test_bf16_act"));
    RUN(test_plan_student);
    RUN(test_layernorm_linear);
    RUN(test_bias_gelu_linear);
    RUN(test_layernorm_matmul);
    RUN(test_attention_chain);
    RUN(test_attention_kernel_bf16);
    return test_summary();
}
