// gradcheck.h: finite-difference gradient checks for one op at a time.
//
// The op's output `out` is reduced to L = sum_i R_i * out_i with fixed random
// weights R (computed in double on the host), so the check does not depend on
// any other op. The analytic gradient comes from graph_backward_seeded(out, R);
// the numeric one from central differences (L(x+eps) - L(x-eps)) / 2 eps on
// up to GC_MAX_PROBES elements of each differentiable input.
//
// Each differentiable input reaches the op through a copy (op_scale by 1),
// so the op's backward writes activation gradients, which it must assign
// (Tensor.grad_assign): the graph poisons them with NaNs first
// (poison_grads), and a kernel that adds instead fails the check.
#pragma once
#include <string.h>
#include "autograd/graph.h"   // defines: Graph, graph_*
#include "autograd/ops.h"     // defines: op_*
#include "autograd/rng.h"     // defines: Rng
#include "tests/test.h"

#define GC_MAX_INPUTS 6
#define GC_MAX_PROBES 160

typedef struct {
    const char *name;
    DType dtype;           // DT_F32 (data or differentiable), DT_I32, DT_U8
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    int diff;              // 1: check d(L)/d(this) (f32 only)
    float scale;           // f32: values ~ scale * N(0,1) (0 means 1)
    float offset;          // f32: added to every value (e.g. keep a std positive)
    int int_max;           // i32: values uniform in [0, int_max); u8: ignored
    const float *values;   // optional fixed f32 values
    const int *ivalues;    // optional fixed i32 values
} GcInput;

typedef Tensor *(*GcBuild)(Graph *g, Tensor **in, void *ctx);

typedef struct {
    double max_rel_err;     // worst |analytic - numeric| / max(|a|, |n|, floor)
    int worst_input;
    size_t worst_index;
    double worst_analytic, worst_numeric;
} GcResult;

static double gc_weighted_sum(Graph *g, Tensor *out, const double *R, float *host) {
    graph_forward(g);
    tensor_to_host_f32(out, host);
    double s = 0;
    for (size_t i = 0; i < out->numel; i++) s += R[i] * (double)host[i];
    return s;
}

// Builds the graph, fills the inputs, checks every differentiable input.
// Returns the result; `eps` is the finite-difference step and `floor` the
// absolute floor of the relative error (for gradients near zero).
static GcResult gradcheck(const GcInput *spec, int n, GcBuild build, void *ctx, Rng *rng, double eps, double floor) {
    GcResult res = { 0, -1, 0, 0, 0 };
    Graph *g = graph_new(DEV_CPU);
    g->poison_grads = 1;
    Tensor *leaf[GC_MAX_INPUTS], *in[GC_MAX_INPUTS];
    for (int k = 0; k < n; k++) {
        if (spec[k].diff) {
            leaf[k] = graph_param(g, spec[k].name, spec[k].ndim, spec[k].shape, INIT_ZEROS, 0, 0);
            in[k] = op_scale(g, leaf[k], 1.0f);   // exact: the op sees the same values
        } else {
            leaf[k] = in[k] = graph_input(g, spec[k].name, spec[k].dtype, spec[k].ndim, spec[k].shape);
        }
    }
    Tensor *out = build(g, in, ctx);
    if (graph_plan(g)) { fprintf(stderr, "gradcheck: plan failed\n"); exit(1); }
    for (int k = 0; k < n; k++) {
        Tensor *t = leaf[k];
        if (spec[k].dtype == DT_F32) {
            float *v = (float *)t->data;
            float sc = spec[k].scale ? spec[k].scale : 1.0f;
            for (size_t i = 0; i < t->numel; i++)
                v[i] = spec[k].values ? spec[k].values[i] : spec[k].offset + sc * rng_normal(rng);
        } else if (spec[k].dtype == DT_I32) {
            int *v = (int *)t->data;
            for (size_t i = 0; i < t->numel; i++)
                v[i] = spec[k].ivalues ? spec[k].ivalues[i] : (int)rng_below(rng, (uint64_t)spec[k].int_max);
        } else if (spec[k].dtype == DT_U8) {
            uint8_t *v = (uint8_t *)t->data;
            for (size_t i = 0; i < t->numel; i++) v[i] = (uint8_t)rng_below(rng, 256);
        }
    }
    double *R = malloc(out->numel * sizeof *R);
    float *Rf = malloc(out->numel * sizeof *Rf);
    float *host = malloc(out->numel * sizeof *host);
    for (size_t i = 0; i < out->numel; i++) { Rf[i] = rng_normal(rng); R[i] = Rf[i]; }

    graph_forward(g);
    graph_zero_grad(g);
    graph_backward_seeded(g, out, Rf);

    for (int k = 0; k < n; k++) {
        if (!spec[k].diff) continue;
        Tensor *t = leaf[k];
        float *x = (float *)t->data;
        size_t probes = t->numel < GC_MAX_PROBES ? t->numel : GC_MAX_PROBES;
        for (size_t p = 0; p < probes; p++) {
            size_t i = t->numel <= GC_MAX_PROBES ? p : (size_t)rng_below(rng, t->numel);
            float saved = x[i];
            x[i] = saved + (float)eps;
            double lp = gc_weighted_sum(g, out, R, host);
            x[i] = saved - (float)eps;
            double lm = gc_weighted_sum(g, out, R, host);
            x[i] = saved;
            // Use the exact float steps actually taken.
            double step = (double)(float)(saved + (float)eps) - (double)(float)(saved - (float)eps);
            double numeric = (lp - lm) / step;
            double analytic = t->grad[i];
            double err = test_rel_err(analytic, numeric, floor);
            if (err > res.max_rel_err || res.worst_input < 0) {
                res.max_rel_err = err; res.worst_input = k; res.worst_index = i;
                res.worst_analytic = analytic; res.worst_numeric = numeric;
            }
        }
    }
    free(R); free(Rf); free(host);
    graph_free(g);
    return res;
}

// CHECK that an op's gradcheck is within `bound`, naming the worst element.
#define CHECK_GRAD(res, spec, bound) \
    CHECK((res).max_rel_err <= (bound), "max rel err %.3g > %.3g at %s[%zu]: analytic %.6g numeric %.6g", \
          (res).max_rel_err, (double)(bound), (res).worst_input >= 0 ? (spec)[(res).worst_input].name : "-", \
          (res).worst_index, (res).worst_analytic, (res).worst_numeric)
