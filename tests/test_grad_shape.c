// test_grad_shape.c: the layout and reduction ops (embedding, concat, slice,
// transpose, a reshape view, sum, mean, cumsum, patchify): finite-difference
// gradient checks, and forward values against plain reference loops written
// here with multi-indices (a different route from the kernels' flat
// (outer, n, inner) arithmetic).
#include <omp.h>
#include <string.h>
#include "tests/gradcheck.h"

static Rng rng;

// Every op here is linear in its float input, so central differences have
// no truncation error whatever the step, and a large step (0.1) shrinks
// what is left: the fp32 rounding of the outputs a probe moves, ~6e-8 *
// |out| * |R| each, divided by 2 eps. The worst case is cumsum, where a probe
// moves up to 5 outputs of a few units: 5e-4 relative over 500 seeds (the
// other ops stay below 1e-4). 5e-3 leaves 10x margin; a wrong index errs by
// a whole R_i, O(1) relative.
#define SHAPE_EPS 1e-1
#define SHAPE_FLOOR 1e-2
#define SHAPE_BOUND 5e-3

// ---- multi-index helpers for the reference loops ---------------------------

static void unravel(const Tensor *t, size_t lin, int *idx) {
    for (int d = t->ndim - 1; d >= 0; d--) { idx[d] = (int)(lin % (size_t)t->shape[d]); lin /= (size_t)t->shape[d]; }
}

static size_t ravel(const Tensor *t, const int *idx) {
    size_t off = 0;
    for (int d = 0; d < t->ndim; d++) off = off * (size_t)t->shape[d] + (size_t)idx[d];
    return off;
}

static float *f32(const Tensor *t) { return (float *)t->data; }

static void fill_normal(Tensor *t) {
    for (size_t i = 0; i < t->numel; i++) f32(t)[i] = rng_normal(&rng);
}

// A planned CPU tape of float inputs x0..x(n-1), op applied by `build`.
static Tensor *forward_graph(Graph *g, int n, const int ndim[], const int shape[][TENSOR_MAX_DIMS],
                             GcBuild build, void *ctx) {
    Tensor *in[GC_MAX_INPUTS];
    char name[16];
    for (int k = 0; k < n; k++) {
        snprintf(name, sizeof name, "x%d", k);
        in[k] = graph_input(g, name, DT_F32, ndim[k], shape[k]);
    }
    Tensor *out = build(g, in, ctx);
    if (graph_plan(g)) { fprintf(stderr, "test_grad_shape: plan failed\n"); exit(1); }
    for (int k = 0; k < n; k++) fill_normal(in[k]);
    graph_forward(g);
    return out;
}

// ---- embedding -------------------------------------------------------------

static Tensor *build_embedding(Graph *g, Tensor **in, void *ctx) { return op_embedding(g, in[0], in[1]); }

// V = 4: ids repeat (2 three times, 0 twice) so the scatter-add must sum
// several rows into one, and -1 and 4 lie outside [0, V).
#define EMB_V 4
static const int emb_ids[10] = { 2, 0, 2, 1, -1, 2, 0, EMB_V, 3, 1 };

static void test_embedding_grad(void) {
    GcInput spec[] = {
        { "ids", DT_I32, 2, { 2, 5 }, 0, .ivalues = emb_ids },
        { "table", DT_F32, 2, { EMB_V, 3 }, 1 },
    };
    GcResult r = gradcheck(spec, 2, build_embedding, NULL, &rng, SHAPE_EPS, SHAPE_FLOOR);
    CHECK_GRAD(r, spec, SHAPE_BOUND);
}

static void test_embedding_forward(void) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *ids = graph_input(g, "ids", DT_I32, 2, (int[]){ 2, 5 });
    Tensor *table = graph_input(g, "table", DT_F32, 2, (int[]){ EMB_V, 3 });
    Tensor *out = op_embedding(g, ids, table);
    REQUIRE(graph_plan(g) == 0, "plan failed");
    memcpy(ids->data, emb_ids, sizeof emb_ids);
    fill_normal(table);
    graph_forward(g);
    for (int i = 0; i < 10; i++)
        for (int d = 0; d < 3; d++) {
            int id = emb_ids[i];
            float want = (id >= 0 && id < EMB_V) ? f32(table)[id * 3 + d] : 0.0f;
            CHECK(f32(out)[i * 3 + d] == want, "row %d (id %d) col %d: %g, want %g", i, id, d, f32(out)[i * 3 + d], want);
        }
    graph_free(g);
}

// The scatter-add gives bit-identical table grads on 1 and 3 threads (3 on
// this 2-core machine splits D unevenly), and matches a double reference.
static void test_embedding_backward_deterministic(void) {
    enum { N = 4096, V = 16, D = 64 };          // N*D = 262144 floats: the parallel path
    Graph *g = graph_new(DEV_CPU);
    Tensor *ids = graph_input(g, "ids", DT_I32, 1, (int[]){ N });
    Tensor *table = graph_param(g, "table", 2, (int[]){ V, D }, INIT_ZEROS, 0, 0);
    Tensor *out = op_embedding(g, ids, table);
    REQUIRE(graph_plan(g) == 0, "plan failed");
    int *id = ids->data;
    for (int i = 0; i < N; i++) id[i] = (int)rng_below(&rng, V + 2) - 1;   // some -1 and V
    fill_normal(table);
    float *seed = malloc(N * D * sizeof *seed), *grad1 = malloc(V * D * sizeof *grad1);
    double *ref = calloc(V * D, sizeof *ref);
    for (int i = 0; i < N * D; i++) seed[i] = rng_normal(&rng);
    int threads = omp_get_max_threads();
    graph_forward(g);
    omp_set_num_threads(1);
    graph_zero_grad(g);
    graph_backward_seeded(g, out, seed);
    memcpy(grad1, table->grad, V * D * sizeof *grad1);
    omp_set_num_threads(3);
    graph_zero_grad(g);
    graph_backward_seeded(g, out, seed);
    omp_set_num_threads(threads);
    CHECK(memcmp(grad1, table->grad, V * D * sizeof *grad1) == 0, "table grad differs between 1 and 3 threads");
    for (int i = 0; i < N; i++)
        if (id[i] >= 0 && id[i] < V)
            for (int d = 0; d < D; d++) ref[id[i] * D + d] += seed[i * D + d];
    // Each float sums ~N/(V+2) ~ 230 O(1) terms in fp32: its rounding error
    // is at most ~230 * 6e-8 * (running sum ~15) ~ 2e-4; 1e-3 leaves margin.
    double worst = 0;
    for (int i = 0; i < V * D; i++) worst = fmax(worst, fabs(table->grad[i] - ref[i]));
    CHECK(worst < 1e-3, "table grad off the double reference by %g", worst);
    free(seed); free(grad1); free(ref);
    graph_free(g);
}

// ---- concat, slice, transpose ---------------------------------------------

typedef struct { int n, axis, axis1, start, len; } ShapeCase;

static Tensor *build_concat(Graph *g, Tensor **in, void *ctx) {
    const ShapeCase *c = ctx;
    return op_concat(g, in, c->n, c->axis);
}

// out's element at idx comes from the input whose range along the axis holds idx[axis].
static void check_concat_forward(const ShapeCase *c, const int ndim[], const int shape[][TENSOR_MAX_DIMS]) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *out = forward_graph(g, c->n, ndim, shape, build_concat, (void *)c);
    int axis = op_axis(c->axis, out->ndim), idx[TENSOR_MAX_DIMS];
    for (size_t i = 0; i < out->numel; i++) {
        unravel(out, i, idx);
        int s = 0;
        while (idx[axis] >= out->src[s]->shape[axis]) idx[axis] -= out->src[s++]->shape[axis];
        float want = f32(out->src[s])[ravel(out->src[s], idx)];
        if (f32(out)[i] != want) { CHECK(0, "concat out[%zu] = %g, want %g (input %d)", i, f32(out)[i], want, s); break; }
    }
    graph_free(g);
}

static void test_concat(void) {
    // Two inputs along the middle axis.
    ShapeCase mid = { 2, 1 };
    GcInput spec2[] = {
        { "a", DT_F32, 3, { 2, 3, 4 }, 1 },
        { "b", DT_F32, 3, { 2, 2, 4 }, 1 },
    };
    GcResult r = gradcheck(spec2, 2, build_concat, &mid, &rng, SHAPE_EPS, SHAPE_FLOOR);
    CHECK_GRAD(r, spec2, SHAPE_BOUND);
    check_concat_forward(&mid, (int[]){ 3, 3 }, (int[][TENSOR_MAX_DIMS]){ { 2, 3, 4 }, { 2, 2, 4 } });
    // Three inputs along the last axis, given as -1.
    ShapeCase last = { 3, -1 };
    GcInput spec3[] = {
        { "a", DT_F32, 3, { 2, 3, 2 }, 1 },
        { "b", DT_F32, 3, { 2, 3, 1 }, 1 },
        { "c", DT_F32, 3, { 2, 3, 3 }, 1 },
    };
    r = gradcheck(spec3, 3, build_concat, &last, &rng, SHAPE_EPS, SHAPE_FLOOR);
    CHECK_GRAD(r, spec3, SHAPE_BOUND);
    check_concat_forward(&last, (int[]){ 3, 3, 3 }, (int[][TENSOR_MAX_DIMS]){ { 2, 3, 2 }, { 2, 3, 1 }, { 2, 3, 3 } });
}

static Tensor *build_slice(Graph *g, Tensor **in, void *ctx) {
    const ShapeCase *c = ctx;
    return op_slice(g, in[0], c->axis, c->start, c->len);
}

static void test_slice(void) {
    ShapeCase cases[] = { { 1, 1, 0, 1, 3 }, { 1, 0, 0, 2, 1 }, { 1, -1, 0, 0, 2 } };
    for (int k = 0; k < 3; k++) {
        GcInput spec[] = { { "x", DT_F32, 3, { 3, 5, 4 }, 1 } };
        GcResult r = gradcheck(spec, 1, build_slice, &cases[k], &rng, SHAPE_EPS, SHAPE_FLOOR);
        CHECK_GRAD(r, spec, SHAPE_BOUND);
        Graph *g = graph_new(DEV_CPU);
        Tensor *out = forward_graph(g, 1, (int[]){ 3 }, (int[][TENSOR_MAX_DIMS]){ { 3, 5, 4 } }, build_slice, &cases[k]);
        int axis = op_axis(cases[k].axis, 3), idx[TENSOR_MAX_DIMS];
        for (size_t i = 0; i < out->numel; i++) {
            unravel(out, i, idx);
            idx[axis] += cases[k].start;
            float want = f32(out->src[0])[ravel(out->src[0], idx)];
            if (f32(out)[i] != want) { CHECK(0, "case %d: slice out[%zu] = %g, want %g", k, i, f32(out)[i], want); break; }
        }
        graph_free(g);
    }
}

static Tensor *build_transpose(Graph *g, Tensor **in, void *ctx) {
    const ShapeCase *c = ctx;
    return op_transpose(g, in[0], c->axis, c->axis1);
}

static void test_transpose(void) {
    // Inner axes (a strided last-dim run), the two outer ones, first with
    // last (given as -1), and an axis with itself (a copy).
    ShapeCase cases[] = { { 1, 1, 3 }, { 1, 0, 1 }, { 1, 0, -1 }, { 1, 2, 2 } };
    for (int k = 0; k < 4; k++) {
        GcInput spec[] = { { "x", DT_F32, 4, { 2, 3, 4, 5 }, 1 } };
        GcResult r = gradcheck(spec, 1, build_transpose, &cases[k], &rng, SHAPE_EPS, SHAPE_FLOOR);
        CHECK_GRAD(r, spec, SHAPE_BOUND);
        Graph *g = graph_new(DEV_CPU);
        Tensor *out = forward_graph(g, 1, (int[]){ 4 }, (int[][TENSOR_MAX_DIMS]){ { 2, 3, 4, 5 } }, build_transpose, &cases[k]);
        int a0 = op_axis(cases[k].axis, 4), a1 = op_axis(cases[k].axis1, 4), idx[TENSOR_MAX_DIMS];
        for (size_t i = 0; i < out->numel; i++) {
            unravel(out, i, idx);
            int t = idx[a0]; idx[a0] = idx[a1]; idx[a1] = t;
            float want = f32(out->src[0])[ravel(out->src[0], idx)];
            if (f32(out)[i] != want) { CHECK(0, "case %d: transpose out[%zu] = %g, want %g", k, i, f32(out)[i], want); break; }
        }
        graph_free(g);
    }
}

// ---- a reshape view feeding other ops ---------------------------------------

// x [2, 3, 4] -> reshape [6, 4] -> transpose -> [4, 6] -> reshape [4, 2, 3]
// -> cumsum over the middle axis: the views alias data and grads, so the
// gradient must still land in x's layout.
static Tensor *build_reshape_chain(Graph *g, Tensor **in, void *ctx) {
    Tensor *flat = op_reshape(g, in[0], 2, (int[]){ 6, 4 });
    Tensor *tr = op_transpose(g, flat, 0, 1);
    Tensor *cube = op_reshape(g, tr, 3, (int[]){ 4, 2, 3 });
    return op_cumsum(g, cube, 1);
}

static void test_reshape_view(void) {
    GcInput spec[] = { { "x", DT_F32, 3, { 2, 3, 4 }, 1 } };
    GcResult r = gradcheck(spec, 1, build_reshape_chain, NULL, &rng, SHAPE_EPS, SHAPE_FLOOR);
    CHECK_GRAD(r, spec, SHAPE_BOUND);
    Graph *g = graph_new(DEV_CPU);
    Tensor *out = forward_graph(g, 1, (int[]){ 3 }, (int[][TENSOR_MAX_DIMS]){ { 2, 3, 4 } }, build_reshape_chain, NULL);
    const float *x = f32(out->src[0]->src[0]->src[0]->src[0]);   // cumsum <- reshape <- transpose <- reshape <- x
    for (int a = 0; a < 4; a++)
        for (int c = 0; c < 3; c++) {
            double run = 0;
            for (int b = 0; b < 2; b++) {
                // cube[a, b, c] = tr[a, b*3 + c] = flat[b*3 + c, a] = x (flat) [(b*3 + c)*4 + a]
                run += x[(b * 3 + c) * 4 + a];
                float got = f32(out)[(a * 2 + b) * 3 + c];
                // two fp32 terms: one rounding of the sum, 6e-8 relative.
                CHECK(fabs(got - run) <= 1e-6 * fmax(1.0, fabs(run)), "out[%d,%d,%d] = %g, want %g", a, b, c, got, run);
            }
        }
    graph_free(g);
}

// ---- sum, mean ---------------------------------------------------------------

static Tensor *build_sum(Graph *g, Tensor **in, void *ctx) { return op_sum(g, in[0], ((ShapeCase *)ctx)->axis); }
static Tensor *build_mean(Graph *g, Tensor **in, void *ctx) { return op_mean(g, in[0], ((ShapeCase *)ctx)->axis); }

// Forward against a double loop: out[j] sums the x elements whose index
// without the reduced axis ravels to j.
static void check_reduce_forward(GcBuild build, ShapeCase *c, int is_mean) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *out = forward_graph(g, 1, (int[]){ 3 }, (int[][TENSOR_MAX_DIMS]){ { 3, 4, 5 } }, build, c);
    const Tensor *x = out->src[0];
    double ref[60] = { 0 };
    int idx[TENSOR_MAX_DIMS];
    int axis = c->axis == OP_ALL ? -1 : op_axis(c->axis, 3);
    for (size_t i = 0; i < x->numel; i++) {
        unravel(x, i, idx);
        size_t j = 0;
        for (int d = 0; d < 3; d++)
            if (d != axis && axis >= 0) j = j * (size_t)x->shape[d] + (size_t)idx[d];
        ref[j] += f32(x)[i];
    }
    double n = axis < 0 ? (double)x->numel : (double)x->shape[axis];
    for (size_t j = 0; j < out->numel; j++) {
        double want = is_mean ? ref[j] / n : ref[j];
        // Summed in double and rounded once: 6e-8 relative; the floor 1
        // covers sums that cancel to near 0.
        CHECK(fabs(f32(out)[j] - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s axis %d: out[%zu] = %g, want %g",
              is_mean ? "mean" : "sum", c->axis, j, f32(out)[j], want);
    }
    graph_free(g);
}

static void test_sum_mean(void) {
    ShapeCase cases[] = { { 1, 1 }, { 1, -1 }, { 1, 0 }, { 1, OP_ALL } };
    for (int k = 0; k < 4; k++) {
        GcInput spec[] = { { "x", DT_F32, 3, { 3, 4, 5 }, 1 } };
        GcResult r = gradcheck(spec, 1, build_sum, &cases[k], &rng, SHAPE_EPS, SHAPE_FLOOR);
        CHECK_GRAD(r, spec, SHAPE_BOUND);
        r = gradcheck(spec, 1, build_mean, &cases[k], &rng, SHAPE_EPS, SHAPE_FLOOR);
        CHECK_GRAD(r, spec, SHAPE_BOUND);
        check_reduce_forward(build_sum, &cases[k], 0);
        check_reduce_forward(build_mean, &cases[k], 1);
    }
}

// The full reduction is bit-identical on 1 and 3 threads (fixed blocks).
static void test_sum_all_thread_independent(void) {
    enum { N = 100003 };                        // above the parallel threshold, not a multiple of the blocks
    ShapeCase all = { 1, OP_ALL };
    Graph *g = graph_new(DEV_CPU);
    Tensor *out = forward_graph(g, 1, (int[]){ 1 }, (int[][TENSOR_MAX_DIMS]){ { N } }, build_sum, &all);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    graph_forward(g);
    float one = f32(out)[0];
    omp_set_num_threads(3);
    graph_forward(g);
    omp_set_num_threads(threads);
    CHECK(memcmp(&one, out->data, sizeof one) == 0, "sum differs: %.9g on 1 thread, %.9g on 3", one, f32(out)[0]);
    double ref = 0;
    for (int i = 0; i < N; i++) ref += f32(out->src[0])[i];
    // The double sum rounded once to fp32; |sum| ~ 300, the floor 1 covers a near-0 sum.
    CHECK(fabs(one - ref) <= 1e-6 * fmax(1.0, fabs(ref)), "sum %g, want %g", one, ref);
    graph_free(g);
}

// ---- cumsum -------------------------------------------------------------------

static Tensor *build_cumsum(Graph *g, Tensor **in, void *ctx) { return op_cumsum(g, in[0], ((ShapeCase *)ctx)->axis); }

static void test_cumsum(void) {
    ShapeCase cases[] = { { 1, 0 }, { 1, -1 }, { 1, 1 } };
    for (int k = 0; k < 3; k++) {
        GcInput spec[] = { { "x", DT_F32, 3, { 4, 3, 5 }, 1 } };
        GcResult r = gradcheck(spec, 1, build_cumsum, &cases[k], &rng, SHAPE_EPS, SHAPE_FLOOR);
        CHECK_GRAD(r, spec, SHAPE_BOUND);
        Graph *g = graph_new(DEV_CPU);
        Tensor *out = forward_graph(g, 1, (int[]){ 3 }, (int[][TENSOR_MAX_DIMS]){ { 4, 3, 5 } }, build_cumsum, &cases[k]);
        const Tensor *x = out->src[0];
        int axis = op_axis(cases[k].axis, 3), idx[TENSOR_MAX_DIMS];
        for (size_t i = 0; i < out->numel; i++) {
            unravel(out, i, idx);
            int upto = idx[axis];
            double want = 0;
            for (idx[axis] = 0; idx[axis] <= upto; idx[axis]++) want += f32(x)[ravel(x, idx)];
            // At most 5 O(1) terms, summed in double, rounded once.
            CHECK(fabs(f32(out)[i] - want) <= 1e-6 * fmax(1.0, fabs(want)), "axis %d: out[%zu] = %g, want %g",
                  cases[k].axis, i, f32(out)[i], want);
        }
        graph_free(g);
    }
}

// ---- patchify ------------------------------------------------------------------

static void test_patchify_forward(void) {
    enum { B = 2, H = 8, W = 12, P = 4 };
    const float mean[3] = { 0.485f, 0.456f, 0.406f }, std[3] = { 0.229f, 0.224f, 0.225f };
    Graph *g = graph_new(DEV_CPU);
    Tensor *img = graph_input(g, "img", DT_U8, 4, (int[]){ B, H, W, 3 });
    Tensor *out = op_patchify(g, img, P, mean, std);
    REQUIRE(graph_plan(g) == 0, "plan failed");
    CHECK(out->ndim == 3 && out->shape[0] == B && out->shape[1] == (H / P) * (W / P) && out->shape[2] == P * P * 3,
          "shape [%d, %d, %d]", out->shape[0], out->shape[1], out->shape[2]);
    CHECK(!out->requires_grad, "patchify output takes a gradient");
    uint8_t *px = img->data;
    for (size_t i = 0; i < img->numel; i++) px[i] = (uint8_t)rng_below(&rng, 256);
    graph_forward(g);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < H / P; py++)
            for (int qx = 0; qx < W / P; qx++)
                for (int dy = 0; dy < P; dy++)
                    for (int dx = 0; dx < P; dx++)
                        for (int c = 0; c < 3; c++) {
                            int y = py * P + dy, x = qx * P + dx;
                            double want = (px[((b * H + y) * W + x) * 3 + c] / 255.0 - mean[c]) / std[c];
                            size_t at = ((size_t)(b * (H / P) * (W / P) + py * (W / P) + qx) * P * P + dy * P + dx) * 3 + c;
                            // The kernel rounds the same double value to fp32 once:
                            // half an ulp, 2^-24 relative; 1.2e-7 allows one ulp.
                            if (test_rel_err(f32(out)[at], want, 1e-30) > 1.2e-7 && !bad++)
                                CHECK(0, "b %d patch (%d,%d) (%d,%d,%d): %g, want %g", b, py, qx, dy, dx, c, f32(out)[at], want);
                        }
    CHECK(bad == 0, "%d values differ", bad);
    graph_free(g);
}

int main(void) {
    rng_seed(&rng, test_seed("test_grad_shape"));
    RUN(test_embedding_grad);
    RUN(test_embedding_forward);
    RUN(test_embedding_backward_deterministic);
    RUN(test_concat);
    RUN(test_slice);
    RUN(test_transpose);
    RUN(test_reshape_view);
    RUN(test_sum_mean);
    RUN(test_sum_all_thread_independent);
    RUN(test_cumsum);
    RUN(test_patchify_forward);
    return test_summary();
}
