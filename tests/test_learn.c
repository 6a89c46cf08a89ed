// test_learn.c: end-to-end learning with the tape, the ops and AdamW:
// a tiny MLP on a toy classification, a tiny transformer LM on a copy task,
// and the arena-and-replay path against freshly recorded graphs.
#include <string.h>
#include "autograd/graph.h"
#include "autograd/ops.h"
#include "autograd/optim.h"
#include "autograd/rng.h"
#include "tests/test.h"
#include "tests/tiny_models.h"

static Rng rng;

static float train_step(Graph *g, AdamW *opt, Tensor *loss, float lr, float clip) {
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward(g, loss);
    adamw_step(opt, g, lr, clip);
    return *(float *)loss->data;
}

// XOR of quadrants: class = (x0 * x1 > 0). Not linearly separable, so it
// needs the hidden layer; a 2-32-32-2 GELU MLP gets it to < 0.1 nats in
// 400 full-batch AdamW steps (chance is 0.69).
static void test_mlp_learns_xor(void) {
    enum { N = 256, H = 32 };
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_input(g, "x", DT_F32, 2, (int[]){ N, 2 });
    Tensor *y = graph_input(g, "y", DT_I32, 1, (int[]){ N });
    Tensor *w1 = graph_param(g, "l1.weight", 2, (int[]){ H, 2 }, INIT_NORMAL, 0.7f, 1);
    Tensor *b1 = graph_param(g, "l1.bias", 1, (int[]){ H }, INIT_ZEROS, 0, 0);
    Tensor *w2 = graph_param(g, "l2.weight", 2, (int[]){ H, H }, INIT_NORMAL, 0.18f, 1);
    Tensor *b2 = graph_param(g, "l2.bias", 1, (int[]){ H }, INIT_ZEROS, 0, 0);
    Tensor *w3 = graph_param(g, "l3.weight", 2, (int[]){ 2, H }, INIT_NORMAL, 0.18f, 1);
    Tensor *h = op_gelu(g, op_linear(g, x, w1, b1));
    h = op_gelu(g, op_linear(g, h, w2, b2));
    Tensor *loss = op_cross_entropy(g, op_linear(g, h, w3, NULL), y, -1);
    REQUIRE(graph_plan(g) == 0, "plan");
    graph_init_params(g, &rng);
    float *xs = x->data;
    int *ys = y->data;
    for (int i = 0; i < N; i++) {
        xs[2 * i] = 2 * rng_uniform(&rng) - 1;
        xs[2 * i + 1] = 2 * rng_uniform(&rng) - 1;
        ys[i] = xs[2 * i] * xs[2 * i + 1] > 0;
    }
    AdamW opt;
    REQUIRE(adamw_init(&opt, g, (AdamWConfig){ 0.9f, 0.999f, 1e-8f, 0.0f }) == 0, "init");
    float first = 0, last = 0;
    for (int s = 0; s < 400; s++) {
        last = train_step(g, &opt, loss, 2e-2f, 1.0f);
        if (s == 0) first = last;
    }
    printf("  mlp: loss %.4f -> %.4f\n", first, last);
    CHECK(last < 0.1f, "final loss %.4f (start %.4f)", last, first);
    adamw_free(&opt);
    graph_free(g);
}

// Fill a copy task: target[t] = ids[t - 1], position 0 ignored. Solving it
// needs attention to the previous position.
static void fill_copy_batch(TinyLM *m, int B, int T, int V) {
    int *ids = m->ids->data, *tg = m->targets->data;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = (int)rng_below(&rng, V);
            tg[b * T + t] = t == 0 ? -1 : ids[b * T + t - 1];
        }
}

// One pre-norm block, C = 32, 2 heads, V = 8: from ln(8) = 2.08 nats to
// < 0.15 in 300 steps of fresh batches of 16 sequences of 8 tokens.
static void test_transformer_learns_copy(void) {
    enum { B = 16, T = 8, V = 8, C = 32 };
    Graph *g = graph_new(DEV_CPU);
    TinyLM m = tiny_lm(g, B, T, V, C, 2);
    REQUIRE(graph_plan(g) == 0, "plan");
    graph_init_params(g, &rng);
    AdamW opt;
    REQUIRE(adamw_init(&opt, g, (AdamWConfig){ 0.9f, 0.98f, 1e-8f, 0.01f }) == 0, "init");
    float first = 0, recent = 0;
    for (int s = 0; s < 300; s++) {
        fill_copy_batch(&m, B, T, V);
        float l = train_step(g, &opt, m.loss, lr_schedule(s, 20, 300, 1e-2f, 1e-3f), 1.0f);
        if (s == 0) first = l;
        if (s >= 290) recent += l / 10;   // mean of the last 10 batches
    }
    printf("  transformer: loss %.4f -> %.4f\n", first, recent);
    CHECK(recent < 0.15f, "final loss %.4f (start %.4f)", recent, first);
    adamw_free(&opt);
    graph_free(g);
}

// The arena-and-replay path (one recording, replayed every step) against a
// fresh recording each step with the parameters and optimizer state carried
// over: the same bits, step after step. Both sides run the same kernels on
// the same inputs, so any difference would mean stale state in the arena.
static void test_replay_bit_identical(void) {
    enum { B = 4, T = 8, V = 8, C = 32, STEPS = 4 };
    AdamWConfig cfg = { 0.9f, 0.98f, 1e-8f, 0.01f };
    Graph *g = graph_new(DEV_CPU);
    TinyLM m = tiny_lm(g, B, T, V, C, 2);
    REQUIRE(graph_plan(g) == 0, "plan");
    graph_init_params(g, &rng);
    AdamW opt;
    REQUIRE(adamw_init(&opt, g, cfg) == 0, "init");

    // The fresh side starts from the same weights.
    float *params = malloc(g->param_numel * sizeof(float));
    memcpy(params, g->param_mem, g->param_numel * sizeof(float));
    float *m_state = calloc(g->grad_numel, sizeof(float)), *v_state = calloc(g->grad_numel, sizeof(float));
    int *ids = malloc(B * T * sizeof(int)), *tg = malloc(B * T * sizeof(int));

    for (int s = 0; s < STEPS; s++) {
        fill_copy_batch(&m, B, T, V);
        memcpy(ids, m.ids->data, B * T * sizeof(int));
        memcpy(tg, m.targets->data, B * T * sizeof(int));
        float replay_loss = train_step(g, &opt, m.loss, 1e-2f, 1.0f);

        Graph *f = graph_new(DEV_CPU);
        TinyLM fm = tiny_lm(f, B, T, V, C, 2);
        REQUIRE(graph_plan(f) == 0, "plan fresh");
        REQUIRE(f->param_numel == g->param_numel && f->grad_numel == g->grad_numel, "same layout");
        memcpy(f->param_mem, params, f->param_numel * sizeof(float));
        memcpy(fm.ids->data, ids, B * T * sizeof(int));
        memcpy(fm.targets->data, tg, B * T * sizeof(int));
        AdamW fo;
        REQUIRE(adamw_init(&fo, f, cfg) == 0, "init fresh");
        memcpy(fo.m, m_state, f->grad_numel * sizeof(float));
        memcpy(fo.v, v_state, f->grad_numel * sizeof(float));
        fo.step = s;
        float fresh_loss = train_step(f, &fo, fm.loss, 1e-2f, 1.0f);

        CHECK(memcmp(&replay_loss, &fresh_loss, sizeof(float)) == 0, "step %d: loss %.9g vs %.9g", s, replay_loss, fresh_loss);
        CHECK(memcmp(g->param_mem, f->param_mem, g->param_numel * sizeof(float)) == 0, "step %d: weights differ", s);
        CHECK(memcmp(g->grad_mem, f->grad_mem, g->grad_numel * sizeof(float)) == 0, "step %d: grads differ", s);
        memcpy(params, f->param_mem, f->param_numel * sizeof(float));
        memcpy(m_state, fo.m, f->grad_numel * sizeof(float));
        memcpy(v_state, fo.v, f->grad_numel * sizeof(float));
        adamw_free(&fo);
        graph_free(f);
    }
    free(params); free(m_state); free(v_state); free(ids); free(tg);
    adamw_free(&opt);
    graph_free(g);
}

// An eval graph of another batch size sharing the training graph's weights
// sees every update without a copy.
static void test_shared_params(void) {
    Graph *train = graph_new(DEV_CPU), *eval = graph_new(DEV_CPU);
    TinyLM tm = tiny_lm(train, 4, 8, 8, 16, 2);
    TinyLM em = tiny_lm(eval, 2, 8, 8, 16, 2);
    REQUIRE(graph_plan(train) == 0, "plan train");
    REQUIRE(graph_share_params(eval, train) == 0, "share");
    REQUIRE(graph_plan(eval) == 0, "plan eval");
    graph_init_params(train, &rng);
    CHECK(eval->params[0]->data == train->params[0]->data, "eval weights should alias the training weights");
    fill_copy_batch(&tm, 4, 8, 8);
    memcpy(em.ids->data, tm.ids->data, 2 * 8 * sizeof(int));
    memcpy(em.targets->data, tm.targets->data, 2 * 8 * sizeof(int));
    graph_forward(train);
    graph_forward(eval);
    // The first two sequences' logits: same weights, same rows; only the
    // batch size differs, which may change BLAS blocking, so allow fp32
    // rounding (1e-5 of O(1) logits).
    double worst = 0;
    for (int i = 0; i < 2 * 8 * 8; i++)
        worst = fmax(worst, fabs(((float *)tm.logits->data)[i] - ((float *)em.logits->data)[i]));
    CHECK(worst < 1e-5, "eval logits differ from training logits by %g", worst);
    graph_free(eval);
    graph_free(train);
}

int main(void) {
    rng_seed(&rng, test_seed("test_learn"));
    RUN(test_mlp_learns_xor);
    RUN(test_transformer_learns_copy);
    RUN(test_replay_bit_identical);
    RUN(test_shared_params);
    return test_summary();
}
