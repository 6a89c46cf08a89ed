// test_optim.c: AdamW, clipping, the schedule, the RNG state, and the flat
// layout of parameters and gradients (what the all-reduce and ZeRO build on).
#include <string.h>
#include "autograd/graph.h"
#include "autograd/ops.h"
#include "autograd/optim.h"
#include "autograd/rng.h"
#include "tests/test.h"

static Rng rng;

static Graph *two_param_graph(Tensor **a, Tensor **b) {
    Graph *g = graph_new(DEV_CPU);
    *a = graph_param(g, "a.weight", 2, (int[]){ 3, 5 }, INIT_NORMAL, 1.0f, 1);
    *b = graph_param(g, "b.bias", 1, (int[]){ 7 }, INIT_NORMAL, 1.0f, 0);
    if (graph_plan(g)) exit(1);
    graph_init_params(g, &rng);
    return g;
}

// AdamW against the PyTorch formula evaluated in double: decoupled decay
// p *= 1 - lr*wd, then p -= lr * mhat / (sqrt(vhat) + eps), on gradients
// clipped to norm 1 by the same pass.
static void test_adamw_matches_reference(void) {
    Tensor *a, *b;
    Graph *g = two_param_graph(&a, &b);
    AdamWConfig cfg = { 0.9f, 0.95f, 1e-8f, 0.1f };
    AdamW opt;
    REQUIRE(adamw_init(&opt, g, cfg) == 0, "init");
    size_t n = g->grad_numel;
    double *p = malloc(n * sizeof *p), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    Tensor *ps[2] = { a, b };
    for (int step = 1; step <= 6; step++) {
        float lr = 1e-2f * step;
        double norm = 0;
        for (size_t i = 0; i < n; i++) {
            g->grad_mem[i] = rng_normal(&rng);
            norm += (double)g->grad_mem[i] * g->grad_mem[i];
        }
        double clip = 1.0 / (sqrt(norm) + 1e-6);   // the norm of 22 N(0,1) is well above 1
        for (int k = 0; k < 2; k++) {
            size_t off = ps[k]->grad - g->grad_mem;
            float *data = ps[k]->data;
            double wd = ps[k]->decay ? cfg.weight_decay : 0.0;
            for (size_t i = 0; i < ps[k]->numel; i++) {
                size_t j = off + i;
                if (step == 1) p[j] = data[i];
                double gr = g->grad_mem[j] * clip;
                m[j] = 0.9 * m[j] + 0.1 * gr;
                v[j] = 0.95 * v[j] + 0.05 * gr * gr;
                double mhat = m[j] / (1 - pow(0.9, step)), vhat = v[j] / (1 - pow(0.95, step));
                p[j] = p[j] * (1 - lr * wd) - lr * mhat / (sqrt(vhat) + 1e-8);
            }
        }
        CHECK(adamw_step(&opt, g, lr, 1.0f), "step %d not applied", step);
        CHECK(fabs(opt.step_dev->norm - sqrt(norm)) <= 1e-12 * sqrt(norm), "norm %.17g vs %.17g", opt.step_dev->norm, sqrt(norm));
    }
    // fp32 arithmetic against double over 6 steps of O(lr) updates: the
    // difference is a few fp32 ulps of O(1) weights, so 1e-5 absolute.
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        size_t off = ps[k]->grad - g->grad_mem;
        for (size_t i = 0; i < ps[k]->numel; i++) worst = fmax(worst, fabs(((float *)ps[k]->data)[i] - p[off + i]));
    }
    CHECK(worst < 1e-5, "max |p - p_ref| = %g", worst);
    CHECK(opt.step == 6, "step %ld", opt.step);
    free(p); free(m); free(v);
    adamw_free(&opt);
    graph_free(g);
}

// The threaded 8-wide pass gives, bit for bit, the plain fp32 rule run
// element by element in the kernel's order, whatever the sizes: spans that
// end inside a vector, tails, and a range large enough for every thread.
static void test_flat_pass_bits(void) {
    Graph *g = graph_new(DEV_CPU);
    int sizes[] = { 13, 7, 40009, 3, 1021, 30011 };
    for (int k = 0; k < 6; k++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.%s", k, k % 2 ? "bias" : "weight");
        graph_param(g, name, 1, (int[]){ sizes[k] }, INIT_NORMAL, 1.0f, k % 2 == 0);
    }
    if (graph_plan(g)) exit(1);
    graph_init_params(g, &rng);
    size_t n = g->grad_numel;
    AdamWConfig cfg = { 0.9f, 0.999f, 1e-8f, 0.05f };
    AdamW opt;
    REQUIRE(adamw_init(&opt, g, cfg) == 0, "init");
    float *p = malloc(n * sizeof *p), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    memcpy(p, g->param_mem, n * sizeof *p);
    for (int step = 1; step <= 3; step++) {
        for (size_t i = 0; i < n; i++) g->grad_mem[i] = rng_normal(&rng);
        double sumsq = 0;   // REDUCE_CHUNK partial sums, added in order, as the pass does
        for (size_t c = 0; c * REDUCE_CHUNK < n; c++) {
            double s = 0;
            for (size_t i = c * REDUCE_CHUNK; i < n && i < (c + 1) * REDUCE_CHUNK; i++) s += (double)g->grad_mem[i] * g->grad_mem[i];
            sumsq += s;
        }
        float lr = 1e-3f, clip = (float)(50.0f / (sqrt(sumsq) + 1e-6));
        float bc1 = 1.0f - powf(0.9f, (float)step), bc2 = 1.0f - powf(0.999f, (float)step);
        for (int s = 0; s < g->n_decay_spans; s++) {
            const DecaySpan *sp = &g->decay_spans[s];
            float wd = sp->decay ? cfg.weight_decay : 0.0f;
            for (size_t i = sp->lo; i < sp->hi; i++) {
                float gr = g->grad_mem[i] * (clip / 1.0f);
                m[i] = 0.9f * m[i] + (1.0f - 0.9f) * gr;
                v[i] = 0.999f * v[i] + (1.0f - 0.999f) * gr * gr;
                p[i] -= lr * ((m[i] / bc1) / (sqrtf(v[i] / bc2) + 1e-8f) + wd * p[i]);
            }
        }
        CHECK(adamw_step(&opt, g, lr, 50.0f), "step %d not applied", step);
    }
    CHECK(memcmp(p, g->param_mem, n * sizeof *p) == 0, "weights differ from the plain rule");
    CHECK(memcmp(m, opt.m, n * sizeof *m) == 0 && memcmp(v, opt.v, n * sizeof *v) == 0, "moments differ from the plain rule");
    free(p); free(m); free(v);
    adamw_free(&opt);
    graph_free(g);
}

// A non-finite gradient or loss skips the step inside the pass: no weight
// and no moment moves, the step is not counted, the norm reads NaN.
static void test_nonfinite_skips(void) {
    Tensor *a, *b;
    Graph *g = two_param_graph(&a, &b);
    AdamW opt;
    REQUIRE(adamw_init(&opt, g, (AdamWConfig){ 0.9f, 0.999f, 1e-8f, 0.1f }) == 0, "init");
    for (size_t i = 0; i < g->grad_numel; i++) g->grad_mem[i] = rng_normal(&rng);
    size_t bytes = g->param_numel * sizeof(float);
    float *before = malloc(bytes);
    memcpy(before, g->param_mem, bytes);
    g->grad_mem[5] = NAN;
    CHECK(!adamw_step(&opt, g, 0.1f, 1.0f), "a NaN gradient was applied");
    CHECK(isnan(opt.step_dev->norm) && opt.step == 0, "norm %g, step %ld", opt.step_dev->norm, opt.step);
    g->grad_mem[5] = 1.0f;
    float inf = INFINITY;
    adamw_begin(&opt, 0.1f, 1.0f);
    adamw_add_losses(&opt, (StepLosses){ { &inf } });
    adamw_update(&opt, g, g->reduce_dev, grad_sumsq_partials(g, 0, g->grad_numel));
    AdamWStep out;
    adamw_end(&opt, &out);
    CHECK(!out.applied && !out.loss_finite && isinf(out.losses[0]), "an infinite loss was applied");
    CHECK(memcmp(before, g->param_mem, bytes) == 0, "a skipped step moved a weight");
    for (size_t i = 0; i < g->grad_numel; i++) CHECK(opt.m[i] == 0 && opt.v[i] == 0, "a skipped step moved moment %zu", i);
    CHECK(adamw_step(&opt, g, 0.1f, 1.0f) && opt.step == 1, "the next finite step was not applied");
    free(before);
    adamw_free(&opt);
    graph_free(g);
}

// Only parameters flagged decay are decayed: with zero gradients, a decayed
// weight shrinks by exactly (1 - lr*wd) and a bias does not move.
static void test_decay_flag(void) {
    Tensor *a, *b;
    Graph *g = two_param_graph(&a, &b);
    AdamW opt;
    REQUIRE(adamw_init(&opt, g, (AdamWConfig){ 0.9f, 0.999f, 1e-8f, 0.5f }) == 0, "init");
    float a0 = ((float *)a->data)[0], b0 = ((float *)b->data)[0];
    graph_zero_grad(g);
    adamw_step(&opt, g, 0.1f, 0.0f);
    CHECK(fabsf(((float *)a->data)[0] - a0 * 0.95f) <= 1e-6f * fabsf(a0) + 1e-7f, "decayed %g -> %g", a0, ((float *)a->data)[0]);
    CHECK(((float *)b->data)[0] == b0, "bias moved %g -> %g", b0, ((float *)b->data)[0]);
    adamw_free(&opt);
    graph_free(g);
}

// Two optimizers holding the two halves of the flat range (as ZeRO-1 shards
// do) update exactly like one holding all of it, wherever the cut falls
// (here inside a tensor).
static void test_shards_equal_full(void) {
    Tensor *a1, *b1, *a2, *b2;
    Graph *g1 = two_param_graph(&a1, &b1), *g2 = two_param_graph(&a2, &b2);
    memcpy(g2->param_mem, g1->param_mem, g1->param_numel * sizeof(float));
    AdamW full, lo_half, hi_half;
    AdamWConfig cfg = { 0.9f, 0.99f, 1e-8f, 0.01f };
    size_t cut = 4;
    REQUIRE(adamw_init(&full, g1, cfg) == 0, "init");
    REQUIRE(adamw_init_range(&lo_half, g2, cfg, 0, cut) == 0 && adamw_init_range(&hi_half, g2, cfg, cut, g2->grad_numel) == 0,
            "init shards");
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < g1->grad_numel; i++) g1->grad_mem[i] = g2->grad_mem[i] = rng_normal(&rng);
        // No clipping: each shard's pass would see only its own norm.
        adamw_step(&full, g1, 1e-2f, 0.0f);
        adamw_step(&hi_half, g2, 1e-2f, 0.0f);
        adamw_step(&lo_half, g2, 1e-2f, 0.0f);
    }
    CHECK(memcmp(g1->param_mem, g2->param_mem, g1->param_numel * sizeof(float)) == 0, "sharded update differs");
    CHECK(lo_half.step == 3 && hi_half.step == 3, "shard steps %ld, %ld", lo_half.step, hi_half.step);
    adamw_free(&full); adamw_free(&lo_half); adamw_free(&hi_half);
    graph_free(g1); graph_free(g2);
}

static void test_clip(void) {
    Tensor *a, *b;
    Graph *g = two_param_graph(&a, &b);
    double ref = 0;
    for (size_t i = 0; i < g->grad_numel; i++) {
        g->grad_mem[i] = 3.0f * rng_normal(&rng);
        ref += (double)g->grad_mem[i] * g->grad_mem[i];
    }
    ref = sqrt(ref);
    double norm = grad_global_norm(g);
    CHECK(fabs(norm - ref) <= 1e-9 * ref, "norm %.12g vs %.12g", norm, ref);
    float s = grad_clip_scale(norm, 1.0f);
    CHECK(fabs(norm * s - 1.0) < 1e-5, "clipped norm %g", norm * s);
    CHECK(grad_clip_scale(0.5, 1.0f) == 1.0f, "no clip below max");
    CHECK(grad_clip_scale(norm, 0.0f) == 1.0f, "max 0 means off");
    graph_free(g);
}

static void test_schedule(void) {
    float max = 1e-3f, min = 1e-5f;
    CHECK(fabsf(lr_schedule(0, 10, 110, max, min) - max / 10) < 1e-9f, "first warmup step");
    CHECK(fabsf(lr_schedule(9, 10, 110, max, min) - max) < 1e-9f, "end of warmup");
    CHECK(fabsf(lr_schedule(10, 10, 110, max, min) - max) < 1e-9f, "peak");
    CHECK(fabsf(lr_schedule(60, 10, 110, max, min) - (max + min) / 2) < 1e-8f, "cosine midpoint %g", lr_schedule(60, 10, 110, max, min));
    CHECK(fabsf(lr_schedule(110, 10, 110, max, min) - min) < 1e-9f, "end");
    CHECK(fabsf(lr_schedule(500, 10, 110, max, min) - min) < 1e-9f, "held after the end");
    for (long s = 10; s < 110; s++)
        CHECK(lr_schedule(s + 1, 10, 110, max, min) <= lr_schedule(s, 10, 110, max, min), "not decreasing at %ld", s);
}

// A saved RNG state (a plain struct copy) replays the same stream,
// including the pending spare normal.
static void test_rng_state(void) {
    Rng r;
    rng_seed(&r, 42);
    rng_normal(&r);   // leaves a spare
    Rng saved = r;
    float x[8], y[8];
    for (int i = 0; i < 8; i++) x[i] = i % 2 ? rng_normal(&r) : rng_uniform(&r);
    r = saved;
    for (int i = 0; i < 8; i++) y[i] = i % 2 ? rng_normal(&r) : rng_uniform(&r);
    CHECK(memcmp(x, y, sizeof x) == 0, "restored stream differs");
    Rng d1, d2, d3;
    rng_derive(&d1, 7, 1, 2); rng_derive(&d2, 7, 1, 2); rng_derive(&d3, 7, 2, 1);
    CHECK(rng_u64(&d1) == rng_u64(&d2), "derive not deterministic");
    CHECK(rng_u64(&d1) != rng_u64(&d3), "derive ignores its arguments' order");
    // Uniform mean and normal variance, loosely: 1e5 draws give a standard
    // error of ~1e-3 on the mean and ~4.5e-3 on the variance; 5 sigma bounds.
    double su = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < 100000; i++) { su += rng_uniform(&r); double z = rng_normal(&r); sn += z; sn2 += z * z; }
    CHECK(fabs(su / 1e5 - 0.5) < 5e-3, "uniform mean %g", su / 1e5);
    CHECK(fabs(sn2 / 1e5 - 1.0) < 2.5e-2, "normal variance %g", sn2 / 1e5);
}

typedef struct { Graph *g; int calls; int in_order; size_t next_off; float *final; } ReadyLog;

static void on_ready(void *ctx, Tensor *p) {
    ReadyLog *log = ctx;
    size_t off = p->grad - log->g->grad_mem;
    if (off != log->next_off) log->in_order = 0;
    log->next_off = off + p->numel;
    log->calls++;
    // Snapshot the gradient now; it must already be final.
    memcpy(log->final + off, p->grad, p->numel * sizeof(float));
}

// Gradients are one contiguous buffer in the order backward completes
// them: the last layer's first. grad_ready fires in buffer order, and each
// gradient is already final when it fires.
static void test_grad_layout(void) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_input(g, "x", DT_F32, 2, (int[]){ 4, 6 });
    Tensor *w1 = graph_param(g, "l1.weight", 2, (int[]){ 8, 6 }, INIT_NORMAL, 0.3f, 1);
    Tensor *b1 = graph_param(g, "l1.bias", 1, (int[]){ 8 }, INIT_NORMAL, 0.1f, 0);
    Tensor *w2 = graph_param(g, "l2.weight", 2, (int[]){ 3, 8 }, INIT_NORMAL, 0.3f, 1);
    Tensor *h = op_linear(g, x, w1, b1);
    Tensor *y = op_linear(g, h, w2, NULL);
    Tensor *loss = op_sum(g, op_mul(g, y, y), OP_ALL);
    REQUIRE(graph_plan(g) == 0, "plan");
    graph_init_params(g, &rng);
    for (size_t i = 0; i < x->numel; i++) ((float *)x->data)[i] = rng_normal(&rng);
    CHECK(w2->grad == g->grad_mem, "l2.weight's grad should come first");
    CHECK(w1->grad > b1->grad || b1->grad > w1->grad, "distinct");
    CHECK(g->grad_numel == w1->numel + b1->numel + w2->numel, "contiguous, no padding");
    ReadyLog log = { g, 0, 1, 0, calloc(g->grad_numel, sizeof(float)) };
    g->grad_ready = on_ready;
    g->grad_ready_ctx = &log;
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward(g, loss);
    CHECK(log.calls == 3, "%d callbacks", log.calls);
    CHECK(log.in_order, "callbacks out of buffer order");
    CHECK(memcmp(log.final, g->grad_mem, g->grad_numel * sizeof(float)) == 0, "a gradient changed after its callback");
    free(log.final);
    graph_free(g);
}

// One flat layout: each trainable parameter sits at the same offset in the
// parameter buffer as its gradient in the gradient buffer, the frozen ones
// come after, nothing is padded, and the decay spans cover the trainable
// prefix with each parameter's own flag.
static void test_flat_layout(void) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_input(g, "x", DT_F32, 2, (int[]){ 4, 6 });
    Tensor *w1 = graph_param(g, "l1.weight", 2, (int[]){ 8, 6 }, INIT_NORMAL, 0.3f, 1);
    Tensor *b1 = graph_param(g, "l1.bias", 1, (int[]){ 8 }, INIT_NORMAL, 0.1f, 0);
    Tensor *w2 = graph_param(g, "l2.weight", 2, (int[]){ 3, 8 }, INIT_NORMAL, 0.3f, 1);
    Tensor *b2 = graph_param(g, "l2.bias", 1, (int[]){ 3 }, INIT_NORMAL, 0.1f, 0);
    Tensor *y = op_linear(g, op_linear(g, x, w1, b1), w2, b2);
    op_sum(g, op_mul(g, y, y), OP_ALL);
    graph_freeze(b2);
    REQUIRE(graph_plan(g) == 0, "plan");
    Tensor *trainable[3] = { w1, b1, w2 };
    for (int i = 0; i < 3; i++) {
        Tensor *t = trainable[i];
        CHECK((float *)t->data - g->param_mem == t->grad - g->grad_mem, "%s: parameter and gradient offsets differ", t->name);
    }
    CHECK(g->grad_numel == w1->numel + b1->numel + w2->numel, "trainable prefix of %zu floats", g->grad_numel);
    CHECK(b2->grad == NULL && (float *)b2->data == g->param_mem + g->grad_numel, "the frozen parameter should follow them");
    CHECK(g->param_numel == g->grad_numel + b2->numel && g->param_numel == graph_param_numel(g), "padding in the layout");
    size_t at = 0;
    for (int i = 0; i < g->n_decay_spans; i++) {
        const DecaySpan *s = &g->decay_spans[i];
        CHECK(s->lo == at && s->hi > s->lo, "span %d is [%zu, %zu) after %zu", i, s->lo, s->hi, at);
        CHECK(i == 0 || s->decay != g->decay_spans[i - 1].decay, "spans %d and %d should be one", i - 1, i);
        at = s->hi;
        for (int k = 0; k < 3; k++) {
            size_t off = trainable[k]->grad - g->grad_mem;
            if (off >= s->lo && off < s->hi)
                CHECK(off + trainable[k]->numel <= s->hi && s->decay == trainable[k]->decay, "%s in span %d", trainable[k]->name, i);
        }
    }
    CHECK(at == g->grad_numel, "the spans cover %zu of %zu floats", at, g->grad_numel);
    // l2.weight completes first, then l1's weight and bias at the same node:
    // a span with decay, then one without.
    CHECK(g->n_decay_spans == 2, "%d spans", g->n_decay_spans);
    graph_free(g);
}

int main(void) {
    rng_seed(&rng, test_seed("test_optim"));
    RUN(test_adamw_matches_reference);
    RUN(test_flat_pass_bits);
    RUN(test_nonfinite_skips);
    RUN(test_decay_flag);
    RUN(test_shards_equal_full);
    RUN(test_clip);
    RUN(test_schedule);
    RUN(test_rng_state);
    RUN(test_grad_layout);
    RUN(test_flat_layout);
    return test_summary();
}
