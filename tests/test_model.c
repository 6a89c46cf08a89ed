// test_model.c: the student's structure: its config round-trips through
// JSON, its trace is causal under both masks and honours the key mask, the
// prefix mask lets image tokens see the later prefix tokens, the trajectory
// head depends on the cameras, the unicycle head integrates as docs/model.md
// says, and end-to-end gradients match finite differences.
#include <string.h>
#include "autograd/graph.h"
#include "autograd/ops.h"
#include "autograd/rng.h"
#include "tests/test.h"
#include "train/model/model.h"

static Rng rng;

static ModelConfig tiny_config(TrajRepr repr) {
    ModelConfig c = {
        .dim = 16, .layers = 2, .heads = 2, .mlp_ratio = 2, .patch = 4,
        .n_cams = 2, .frames = 2, .img_h = 8, .img_w = 8, .hist = 3, .horizon = 5, .hz = 10.0f,
        .traj_repr = repr, .vocab = 11, .max_trace = 6, .feat_dim = 4,
        .img_mean = { 0.5f, 0.5f, 0.5f }, .img_std = { 0.25f, 0.25f, 0.25f },
    };
    return c;
}

// Fill every input with random but valid values; key_mask all ones.
static void fill_inputs(Student *s) {
    uint8_t *px = s->cameras->data;
    for (size_t i = 0; i < s->cameras->numel; i++) px[i] = (uint8_t)rng_below(&rng, 256);
    float *ego = s->ego->data;
    for (size_t i = 0; i < s->ego->numel; i++) ego[i] = rng_normal(&rng);
    for (int b = 0; b < s->B; b++) ((int *)s->command->data)[b] = (int)rng_below(&rng, 4);
    for (size_t i = 0; i < s->trace->numel; i++) ((int *)s->trace->data)[i] = (int)rng_below(&rng, s->cfg.vocab);
    for (size_t i = 0; i < s->key_mask->numel; i++) ((float *)s->key_mask->data)[i] = 1.0f;
    if (s->v0)
        for (size_t i = 0; i < s->v0->numel; i++) ((float *)s->v0->data)[i] = 5.0f;
}

static Graph *build(Student *s, ModelConfig c, int B) {
    Graph *g = graph_new(DEV_CPU);
    *s = student_build(g, &c, B);
    if (graph_plan(g)) exit(1);
    student_fill_constants(s);
    graph_init_params(g, &rng);
    // Larger weights than the init, so every path visibly moves the outputs.
    for (int i = 0; i < g->n_params; i++) {
        float *p = g->params[i]->data;
        for (size_t j = 0; j < g->params[i]->numel; j++) p[j] += 0.2f * rng_normal(&rng);
    }
    fill_inputs(s);
    return g;
}

static void test_config_json_round_trip(void) {
    ModelConfig a = tiny_config(TRAJ_ACCEL_CURVATURE), b;
    // Floats that 6 or 7 digits would not carry back exactly.
    a.hz = 1.0f / 3.0f;
    a.img_mean[1] = 0.48500001f;
    a.img_std[2] = 0x1.fffffep-3f;
    a.attention = ATTN_PREFIX;
    char *text = model_config_to_json(&a), err[256];
    REQUIRE(text, "to_json");
    int rc = model_config_from_json(text, &b, err, sizeof err);
    CHECK(rc == 0, "from_json: %s", err);
    CHECK(model_config_diff(&a, &b) == NULL, "round trip differs: %s", model_config_diff(&a, &b));
    CHECK(b.hz == a.hz && !memcmp(b.img_mean, a.img_mean, sizeof a.img_mean) && !memcmp(b.img_std, a.img_std, sizeof a.img_std),
          "floats: %s", text);
    // Counts stay integers and fp32 values reals, as Python's json.loads sees them.
    json_t *o = jsonio_parse(text, strlen(text), err, sizeof err);
    REQUIRE(o, "parse: %s", err);
    CHECK(json_is_integer(json_object_get(o, "dim")) && json_is_real(json_object_get(o, "hz")) &&
          json_is_real(json_object_get(o, "layernorm_eps")), "types: %s", text);
    json_decref(o);
    b.dim = 32;
    const char *diff = model_config_diff(&a, &b);
    CHECK(diff && strstr(diff, "model.dim"), "diff should name model.dim: %s", diff ? diff : "(none)");
    CHECK(model_config_from_json("{\"dim\": 8}", &b, err, sizeof err) != 0 && strstr(err, "\"layers\" is missing"),
          "an incomplete config must fail: %s", err);
    // Every field in its range: the recipe key's it comes from (model.dim: 8..65536).
    CHECK(model_config_from_json("{\"dim\": 4}", &b, err, sizeof err) != 0 && strstr(err, "\"dim\" = 4 is out of range [8, 65536]"),
          "dim 4: %s", err);
    CHECK(model_config_from_json("{\"dim\": \"4\"}", &b, err, sizeof err) != 0 && strstr(err, "\"dim\": expected an integer"),
          "a string dim: %s", err);
    // A key given twice is refused, not "last one wins", at its line and column.
    char twice[4096];
    snprintf(twice, sizeof twice, "{\"dim\": 8,\n%s", text + 1);
    CHECK(model_config_from_json(twice, &b, err, sizeof err) != 0 && strstr(err, "line 2, column 5: duplicate object key"),
          "dim twice: %s", err);
    // A config written before the "attention" key is a causal student; the
    // mask alone makes two configs differ; a mask of another name is refused.
    o = jsonio_parse(text, strlen(text), err, sizeof err);
    REQUIRE(o && json_is_string(json_object_get(o, "attention")), "no attention in %s", text);
    json_object_del(o, "attention");
    CHECK(model_config_from_object(o, &b, err, sizeof err) == 0 && b.attention == ATTN_CAUSAL, "no key: %s", err);
    diff = model_config_diff(&a, &b);
    CHECK(diff && strstr(diff, "model.attention is prefix in the checkpoint and causal here"), "diff: %s", diff ? diff : "(none)");
    json_object_set_new(o, "attention", json_string("bidirectional"));
    CHECK(model_config_from_object(o, &b, err, sizeof err) != 0 && strstr(err, "expected prefix or causal"), "bad mask: %s", err);
    json_decref(o);
    free(text);
}

static int logits_equal(const float *a, const float *b, int from, int to, int B, int L, int V) {
    for (int i = 0; i < B; i++)
        for (int t = from; t < to; t++)
            if (memcmp(a + ((size_t)i * L + t) * V, b + ((size_t)i * L + t) * V, V * sizeof(float))) return 0;
    return 1;
}

// LM position i predicts trace token i from tokens < i. Changing token j
// leaves positions 0..j exactly as they were (causal) and changes position
// j+1; a masked-out trace position's
// token changes nothing the action token sees. The same under both masks.
static void check_causal_and_mask(AttnMode mode) {
    Student s;
    ModelConfig c = tiny_config(TRAJ_XYYAW);
    c.attention = mode;
    Graph *g = build(&s, c, 2);
    int L = s.cfg.max_trace, V = s.cfg.vocab, B = 2;
    graph_forward(g);
    size_t n = s.lm_logits->numel;
    float *before = malloc(n * sizeof(float)), *traj = malloc(s.traj->numel * sizeof(float));
    memcpy(before, s.lm_logits->data, n * sizeof(float));
    memcpy(traj, s.traj->data, s.traj->numel * sizeof(float));
    int j = 3;
    int *tok = s.trace->data;
    tok[j] = (tok[j] + 1) % V;
    tok[L + j] = (tok[L + j] + 1) % V;
    graph_forward(g);
    CHECK(logits_equal(before, s.lm_logits->data, 0, j + 1, B, L, V), "positions up to %d changed", j);
    CHECK(!logits_equal(before, s.lm_logits->data, j + 1, j + 2, B, L, V), "position %d did not change", j + 1);
    // Mask out the last two trace positions: their tokens no longer matter.
    for (int b = 0; b < B; b++)
        for (int t = L - 2; t < L; t++) ((float *)s.key_mask->data)[b * s.seq_len + s.n_img_tokens + 2 + t] = 0.0f;
    graph_forward(g);
    memcpy(traj, s.traj->data, s.traj->numel * sizeof(float));
    tok[L - 1] = (tok[L - 1] + 3) % V;
    graph_forward(g);
    CHECK(memcmp(traj, s.traj->data, s.traj->numel * sizeof(float)) == 0, "a masked trace token moved the trajectory");
    free(before);
    free(traj);
    graph_free(g);
}

static void test_causal_and_mask(void) {
    check_causal_and_mask(ATTN_CAUSAL);
    check_causal_and_mask(ATTN_PREFIX);
}

// The first block's attention node: its output (B, S, D) starts with image
// token 0 of sample 0.
static const Tensor *first_attention(const Graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_ATTENTION) return g->nodes[i];
    return NULL;
}

// Under the prefix mask the first image token sees the command token after
// it (docs/model.md); under the causal one it does not. Every block records
// the mask with n_prefix = image tokens + 2.
static void test_prefix_sees_both_ways(void) {
    for (int mode = ATTN_CAUSAL; mode <= ATTN_PREFIX; mode++) {
        Student s;
        ModelConfig c = tiny_config(TRAJ_XYYAW);
        c.attention = (AttnMode)mode;
        Graph *g = build(&s, c, 1);
        int blocks = 0, right = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const Tensor *t = g->nodes[i];
            if (t->op != OP_ATTENTION) continue;
            blocks++;
            right += t->iattr[1] == mode && t->iattr[2] == (mode == ATTN_PREFIX ? s.n_img_tokens + 2 : 0);
        }
        CHECK(blocks == c.layers && right == blocks, "mode %d: %d of %d attention nodes have the mask", mode, right, blocks);
        const Tensor *att = first_attention(g);
        REQUIRE(att, "no attention node");
        int D = c.dim;
        float before[64];
        graph_forward(g);
        memcpy(before, att->data, (size_t)D * sizeof(float));
        int *cmd = s.command->data;
        cmd[0] = (cmd[0] + 1) % 4;
        graph_forward(g);
        int moved = memcmp(before, att->data, (size_t)D * sizeof(float)) != 0;
        CHECK(moved == (mode == ATTN_PREFIX), "mode %d: image token 0 %s the command", mode, moved ? "sees" : "does not see");
        graph_free(g);
    }
}

// The trajectory reads the cameras: one changed pixel of the second
// camera's newest frame moves it.
static void test_traj_sees_cameras(void) {
    Student s;
    Graph *g = build(&s, tiny_config(TRAJ_XYYAW), 1);
    graph_forward(g);
    float before[5 * 3];
    memcpy(before, s.traj->data, sizeof before);
    uint8_t *px = s.cameras->data;
    size_t frame = 8 * 8 * 3;
    px[3 * frame + 10] ^= 0x80;   // camera 1, frame 1 (cams*frames order)
    graph_forward(g);
    CHECK(memcmp(before, s.traj->data, sizeof before) != 0, "trajectory ignores the cameras");
    graph_free(g);
}

// accel_curvature: with the head's weights zero and its bias (a_u, k_u), the
// output is the unicycle of docs/model.md with a = 3 a_u, k = 0.1 k_u.
static void test_unicycle_head(void) {
    Student s;
    Graph *g = build(&s, tiny_config(TRAJ_ACCEL_CURVATURE), 1);
    Tensor *w = graph_find_param(g, "traj_head.weight"), *b = graph_find_param(g, "traj_head.bias");
    REQUIRE(w && b, "traj head params");
    memset(w->data, 0, w->numel * sizeof(float));
    float *bias = b->data;
    int T = s.cfg.horizon;
    for (int t = 0; t < T; t++) { bias[2 * t] = 0.5f; bias[2 * t + 1] = 0.2f + 0.1f * t; }
    graph_forward(g);
    double dt = 0.1, v = 5.0, yaw = 0, x = 0, y = 0, worst = 0;
    const float *out = s.traj->data;
    for (int t = 0; t < T; t++) {
        double a = 3.0 * 0.5, k = 0.1 * (0.2 + 0.1 * t);
        v += dt * a;
        yaw += dt * v * k;
        x += dt * v * cos(yaw);
        y += dt * v * sin(yaw);
        worst = fmax(worst, fabs(out[t * 3] - x) + fabs(out[t * 3 + 1] - y) + fabs(out[t * 3 + 2] - yaw));
    }
    // fp32 cumulative sums of O(1) terms over 5 steps: ~1e-6.
    CHECK(worst < 1e-5, "unicycle differs by %g", worst);
    graph_free(g);
}

// d(sum R * outputs)/d(param) against central differences, for a few
// elements of several parameters through the whole student (both heads).
static void test_end_to_end_gradient(void) {
    Student s;
    ModelConfig c = tiny_config(TRAJ_ACCEL_CURVATURE);
    Graph *g = graph_new(DEV_CPU);
    s = student_build(g, &c, 1);
    Tensor *lm_sum = op_sum(g, op_mul(g, s.lm_logits, graph_input(g, "r1", DT_F32, 3, s.lm_logits->shape)), OP_ALL);
    Tensor *tr_sum = op_sum(g, op_mul(g, s.traj, graph_input(g, "r2", DT_F32, 3, s.traj->shape)), OP_ALL);
    Tensor *loss = op_add(g, lm_sum, tr_sum);
    REQUIRE(graph_plan(g) == 0, "plan");
    student_fill_constants(&s);
    graph_init_params(g, &rng);
    for (int i = 0; i < g->n_params; i++) {
        float *p = g->params[i]->data;
        for (size_t j = 0; j < g->params[i]->numel; j++) p[j] += 0.1f * rng_normal(&rng);
    }
    fill_inputs(&s);
    for (int i = 0; i < g->n_nodes; i++) {
        Tensor *t = g->nodes[i];
        if (!strcmp(t->name, "r1") || !strcmp(t->name, "r2"))
            for (size_t j = 0; j < t->numel; j++) ((float *)t->data)[j] = rng_normal(&rng);
    }
    graph_forward(g);
    graph_zero_grad(g);
    graph_backward(g, loss);
    const char *names[] = { "patch_embed.weight", "cam_emb", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc.bias",
                            "tok_emb", "traj_head.weight", "ln_f.weight", "ego_embed.weight" };
    double worst = 0;
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        Tensor *p = graph_find_param(g, names[n]);
        REQUIRE(p, "param %s", names[n]);
        for (int probe = 0; probe < 4; probe++) {
            size_t i = (size_t)rng_below(&rng, p->numel);
            float *x = p->data, saved = x[i];
            // eps 1e-2 on O(0.1) weights; the whole network in fp32: the
            // truncation error is O(eps^2) and the rounding ~1e-6 |L| / eps.
            x[i] = saved + 1e-2f;
            graph_forward(g);
            double lp = *(float *)loss->data;
            x[i] = saved - 1e-2f;
            graph_forward(g);
            double lm = *(float *)loss->data;
            x[i] = saved;
            double numeric = (lp - lm) / 2e-2, analytic = p->grad[i];
            double err = test_rel_err(analytic, numeric, 5e-2);
            if (err > worst) worst = err;
            CHECK(err < 3e-2, "%s[%zu]: analytic %g numeric %g", names[n], i, analytic, numeric);
        }
    }
    printf("  worst relative error %.3g\n", worst);
    graph_free(g);
}

int main(void) {
    rng_seed(&rng, test_seed("test_model"));
    RUN(test_config_json_round_trip);
    RUN(test_causal_and_mask);
    RUN(test_prefix_sees_both_ways);
    RUN(test_traj_sees_cameras);
    RUN(test_unicycle_head);
    RUN(test_end_to_end_gradient);
    return test_summary();
}
