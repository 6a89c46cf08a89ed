// test_train.c: the training loop on real synthetic shards: the loss falls,
// a non-finite batch is skipped without touching the weights or the
// optimizer, too many in a row stop the run, and the vocabulary remap.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autograd/ops.h"   // defines: OP_ATTENTION, ATTN_*
#include "data/synth/synth.h"
#include "tests/test.h"
#include "tests/tiny_recipe.h"   // defines: tiny_recipe_load
#include "train/formats/safetensors.h"
#include "train/core/memory.h"
#include "train/core/state.h"

static char dir[256];

static int make_shards(void) {
    snprintf(dir, sizeof dir, "/tmp/distil_test_train_%d", (int)getpid());
    char *args[] = { "--out", dir, "--shards", "2", "--samples-per-shard", "64", "--seed", "5",
                     "--preset", "demo", "--eval-shards", "1", "--eval-samples-per-shard", "32" };
    return logs_synth_main(14, args);
}

// tests/tiny.yaml on this test's shards, at micro-batch 8 x 2 for 40 steps
// at a constant learning rate.
static int load_recipe_sets(Recipe *r, char **extra, int n_extra) {
    char *sets[TINY_MAX_SETS] = { "train.steps=40", "train.batch_size=16", "train.min_lr=3.0e-3", "train.max_bad_steps=2" };
    int n = 4;
    for (int i = 0; i < n_extra && n < TINY_MAX_SETS; i++) sets[n++] = extra[i];
    return tiny_recipe_load(r, dir, 1, sets, n);
}

static int load_recipe(Recipe *r, const char *extra_key, const char *extra_value) {
    char extra[400];
    char *sets[1] = { extra };
    if (!extra_key) return load_recipe_sets(r, NULL, 0);
    snprintf(extra, sizeof extra, "%s=%s", extra_key, extra_value);
    return load_recipe_sets(r, sets, 1);
}

// 40 steps of 16 samples: the total loss (token KL + CE + trajectory)
// falls by more than a third from its first 5 steps to its last 5. A broken
// gradient anywhere in the student leaves it flat or rising.
static void test_loss_falls(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, NULL, NULL) == 0, "recipe");
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    REQUIRE(rc == 0, "open");
    double first = 0, last = 0;
    for (long s = 0; s < 40; s++) {
        StepStats ss;
        REQUIRE(train_step(&ts, s, &ss) == STEP_OK, "step %ld", s);
        double l = ss.loss;
        if (s < 5) first += l / 5;
        if (s >= 35) last += l / 5;
    }
    printf("  loss %.4f -> %.4f\n", first, last);
    CHECK(last < first * 0.67, "loss %.4f -> %.4f", first, last);
    train_state_close(&ts);
    recipe_free(&r);
}

// train.precision bf16 against fp32 from the same initial weights and
// batches (the same recipe and seed): 40 steps of the tiny student, the
// per-step total loss compared. bf16 rounds every matrix product's
// operands (2^-9 relative each), so the two runs part by rounding that
// training then carries along: each step's loss stays within 2% of fp32's,
// and the mean of the last 5 steps within 1% (measured: 0.14% and 0.06%,
// a >10x margin; a wrong bf16 product, such as a dropped transpose or
// operands left unrounded, is off by far more or does not learn). The bf16 run must
// differ from fp32 (the rounding really happens) and learn as fp32 does.
static void test_bf16_follows_fp32(void) {
    double loss[2][40];
    for (int run = 0; run < 2; run++) {
        Recipe r;
        REQUIRE(load_recipe(&r, "train.precision", run ? "bf16" : "fp32") == 0, "recipe");
        TrainState ts;
        REQUIRE(train_state_open(&ts, &r) == 0, "open");
        for (long s = 0; s < 40; s++) {
            StepStats ss;
            REQUIRE(train_step(&ts, s, &ss) == STEP_OK, "%s step %ld", run ? "bf16" : "fp32", s);
            loss[run][s] = ss.loss / ss.micro;
        }
        train_state_close(&ts);
        recipe_free(&r);
    }
    double worst = 0, last[2] = { 0, 0 };
    long worst_at = 0;
    int differ = 0;
    for (long s = 0; s < 40; s++) {
        double rel = fabs(loss[1][s] - loss[0][s]) / loss[0][s];
        if (rel > worst) { worst = rel; worst_at = s; }
        differ |= loss[1][s] != loss[0][s];
        if (s >= 35) for (int run = 0; run < 2; run++) last[run] += loss[run][s] / 5;
    }
    double last_rel = fabs(last[1] - last[0]) / last[0];
    printf("  fp32 %.4f -> %.4f, bf16 %.4f -> %.4f; largest step difference %.2f%% (step %ld), last 5 steps %.2f%%\n",
           loss[0][0], last[0], loss[1][0], last[1], 100 * worst, worst_at, 100 * last_rel);
    CHECK(differ, "the bf16 run's losses equal fp32's bit for bit: nothing was rounded");
    CHECK(worst <= 0.02, "step %ld: bf16 loss %.5f, fp32 %.5f (%.2f%% apart; 2%% allowed)", worst_at, loss[1][worst_at],
          loss[0][worst_at], 100 * worst);
    CHECK(last_rel <= 0.01, "the last 5 steps: bf16 %.5f, fp32 %.5f (%.2f%% apart; 1%% allowed)", last[1], last[0], 100 * last_rel);
    CHECK(last[1] < loss[1][0] * 0.67, "bf16 does not learn: %.4f -> %.4f", loss[1][0], last[1]);
}

typedef struct { long at_call, calls; } NanHook;

static void inject_nan(void *ctx, TrainState *ts) {
    NanHook *h = ctx;
    if (h->calls++ == h->at_call) ((float *)ts->model.obj.topk_logprobs->data)[3] = NAN;
}

// A NaN in a teacher log-prob makes the loss non-finite: that step is
// skipped, and the weights and both AdamW moments keep their exact bits.
static void test_nan_step_skipped(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, NULL, NULL) == 0, "recipe");
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    REQUIRE(rc == 0, "open");
    NanHook hook = { .at_call = 2 * ts.data.accum + 1 };   // the second micro-batch of step 2
    ts.hooks.after_inputs = inject_nan;
    ts.hooks.ctx = &hook;
    StepStats ss;
    for (long s = 0; s < 2; s++) REQUIRE(train_step(&ts, s, &ss) == STEP_OK, "step %ld", s);
    void *params = malloc(ts.model.g->param_numel * sizeof(float));
    float *m = malloc(ts.optim.adamw.n * sizeof(float)), *v = malloc(ts.optim.adamw.n * sizeof(float));
    memcpy(params, ts.model.g->param_mem, ts.model.g->param_numel * sizeof(float));
    memcpy(m, ts.optim.adamw.m, ts.optim.adamw.n * sizeof(float));
    memcpy(v, ts.optim.adamw.v, ts.optim.adamw.n * sizeof(float));
    long opt_step = ts.optim.adamw.step;
    CHECK(train_step(&ts, 2, &ss) == STEP_SKIPPED, "the NaN step was not skipped");
    CHECK(memcmp(params, ts.model.g->param_mem, ts.model.g->param_numel * sizeof(float)) == 0, "weights changed by a skipped step");
    CHECK(memcmp(m, ts.optim.adamw.m, ts.optim.adamw.n * sizeof(float)) == 0 && memcmp(v, ts.optim.adamw.v, ts.optim.adamw.n * sizeof(float)) == 0,
          "optimizer moments changed by a skipped step");
    CHECK(ts.optim.adamw.step == opt_step, "optimizer step advanced");
    CHECK(ts.optim.bad_total == 1, "bad steps %ld", ts.optim.bad_total);
    CHECK(train_step(&ts, 3, &ss) == STEP_OK, "training did not resume after the skip");
    CHECK(memcmp(params, ts.model.g->param_mem, ts.model.g->param_numel * sizeof(float)) != 0, "the next good step did not update");
    free(params); free(m); free(v);
    train_state_close(&ts);
    recipe_free(&r);
}

static void always_nan(void *ctx, TrainState *ts) { ((float *)ts->model.st.ego->data)[0] = NAN; }

// max_bad_steps: 2 -> the third non-finite step in a row ends the run.
static void test_too_many_bad_steps(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, NULL, NULL) == 0, "recipe");
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    REQUIRE(rc == 0, "open");
    ts.hooks.after_inputs = always_nan;
    StepStats ss;
    CHECK(train_step(&ts, 0, &ss) == STEP_SKIPPED, "first");
    CHECK(train_step(&ts, 1, &ss) == STEP_SKIPPED, "second");
    CHECK(train_step(&ts, 2, &ss) == STEP_ERROR, "the third bad step in a row should stop the run");
    train_state_close(&ts);
    recipe_free(&r);
}

// from_logs: <unk> is id 0, every trace token of the training shards maps
// to a real piece, the map is a bijection onto the ids used, and top-k ids
// absent from the vocabulary go to the tail (-1).
static void test_vocab_remap(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, NULL, NULL) == 0, "recipe");
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    REQUIRE(rc == 0, "open");
    const Vocab *v = &ts.data.vocab;
    CHECK(v->unk == 0 && !strcmp(v->pieces[0], "<unk>"), "unk first");
    CHECK(v->size < v->teacher_size + 1, "compact: %d of %d", v->size, v->teacher_size);
    for (int s = 1; s < v->size; s++) {
        int t = v->to_teacher[s];
        CHECK(t >= 0 && t < v->teacher_size && v->to_student[t] == s, "student %d <-> teacher %d", s, t);
    }
    int absent = -1;
    for (int t = 0; t < v->teacher_size && absent < 0; t++)
        if (v->to_student[t] < 0) absent = t;
    if (absent >= 0) {
        CHECK(vocab_topk(v, absent) == -1, "absent top-k id should go to the tail");
        CHECK(vocab_token(v, absent) == v->unk, "absent trace token should be <unk>");
    }
    CHECK(vocab_topk(v, v->teacher_size + 5) == -1 && vocab_token(v, -3) == v->unk, "out of range");
    train_state_close(&ts);
    recipe_free(&r);
}

// A recipe asking for more history frames than the shards hold is refused
// at setup, naming the key.
static void test_setup_checks_shards(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, "data.history_frames", "5") == 0, "recipe");
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    CHECK(rc == 2, "history_frames 5 > 2 frames should fail, got %d", rc);
    train_state_close(&ts);
    recipe_free(&r);
}

// init_from: a new run starts from a saved student's weights (all of them,
// bit for bit) and vocabulary; train.freeze keeps the frozen ones fixed
// through training while the others move.
static void test_init_from_and_freeze(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, NULL, NULL) == 0, "recipe");
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    REQUIRE(rc == 0, "open");
    StepStats ss;
    for (long s = 0; s < 3; s++) REQUIRE(train_step(&ts, s, &ss) == STEP_OK, "step");
    char saved_dir[300], path[400], err[512];
    snprintf(saved_dir, sizeof saved_dir, "%s/student", dir);
    snprintf(path, sizeof path, "mkdir -p %s", saved_dir);
    REQUIRE(system(path) == 0, "mkdir");
    snprintf(path, sizeof path, "%s/model.safetensors", saved_dir);
    REQUIRE(st_save_graph_params(path, ts.model.g, NULL, 0, ST_F32, err, sizeof err) == 0, "save: %s", err);
    snprintf(path, sizeof path, "%s/vocab.json", saved_dir);
    REQUIRE(vocab_write_json(&ts.data.vocab, path, err, sizeof err) == 0, "vocab: %s", err);

    Recipe r2;
    char init[400], freeze[] = "train.freeze=[\"patch_embed.*\", \"blocks.0.ln1.*\"]";
    snprintf(init, sizeof init, "train.init_from=%s", saved_dir);
    char *extra[2] = { init, freeze };
    REQUIRE(load_recipe_sets(&r2, extra, 2) == 0, "recipe 2");
    TrainState t2;
    rc = train_state_open(&t2, &r2);
    REQUIRE(rc == 0, "open with init_from");
    CHECK(t2.model.frozen == 4, "%d tensors frozen, expected 4", t2.model.frozen);
    CHECK(vocab_token(&t2.data.vocab, 5) == vocab_token(&ts.data.vocab, 5) && t2.data.vocab.size == ts.data.vocab.size, "vocabulary not inherited");
    for (int i = 0; i < t2.model.g->n_params; i++) {
        Tensor *a = ts.model.g->params[i], *b = t2.model.g->params[i];
        CHECK(memcmp(a->data, b->data, a->numel * sizeof(float)) == 0, "%s not loaded", b->name);
    }
    for (long s = 0; s < 2; s++) REQUIRE(train_step(&t2, s, &ss) == STEP_OK, "step");
    for (int i = 0; i < t2.model.g->n_params; i++) {
        Tensor *a = ts.model.g->params[i], *b = t2.model.g->params[i];
        int same = memcmp(a->data, b->data, a->numel * sizeof(float)) == 0;
        int frozen = !strncmp(b->name, "patch_embed.", 12) || !strncmp(b->name, "blocks.0.ln1.", 13);
        if (frozen) CHECK(same, "frozen %s moved", b->name);
        else if (!strcmp(b->name, "ego_embed.weight")) CHECK(!same, "%s did not train", b->name);
    }
    train_state_close(&t2);
    recipe_free(&r2);
    train_state_close(&ts);
    recipe_free(&r);
}

// The attention mask of the student's first block (iattr[1] of its attention node).
static int graph_attention_mode(const Graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_ATTENTION) return g->nodes[i]->iattr[1];
    return -1;
}

// init_from keeps the attention mask of the student it starts from, read
// from the model config saved with its weights: an older export's config
// has no "attention" and is causal; without a config the recipe decides.
// Each case's recipe asks for the other mask, so keeping is seen.
static void test_init_from_keeps_attention(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, NULL, NULL) == 0, "recipe");
    CHECK(r.model.attention == ATTENTION_CAUSAL, "causal is the default");
    recipe_free(&r);
    REQUIRE(load_recipe(&r, "model.attention", "prefix") == 0, "recipe");
    TrainState ts;
    REQUIRE(train_state_open(&ts, &r) == 0, "open");
    CHECK(graph_attention_mode(ts.model.g) == ATTN_PREFIX, "a prefix student gets the prefix mask");
    char *config = model_config_to_json(&ts.data.setup.mc);
    // The config as exports wrote it before the key.
    json_t *o = model_config_object(&ts.data.setup.mc);
    REQUIRE(o && !json_object_del(o, "attention"), "config without attention");
    char *old_config = json_dumps(o, JSONIO_F32);
    json_decref(o);
    REQUIRE(config && old_config && strstr(config, "prefix") && !strstr(old_config, "attention"), "configs");
    struct { const char *name, *config, *asked; int want; } cases[] = {
        { "old", old_config, "prefix", ATTN_CAUSAL },
        { "new", config, "causal", ATTN_PREFIX },
        { "bare", NULL, "prefix", ATTN_PREFIX },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[400], err[512], init[420], asked[64];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, cases[k].name);
        StMeta meta = { "model_config", cases[k].config };
        REQUIRE(st_save_graph_params(path, ts.model.g, &meta, cases[k].config ? 1 : 0, ST_F32, err, sizeof err) == 0, "save: %s", err);
        snprintf(init, sizeof init, "train.init_from=%s", path);
        snprintf(asked, sizeof asked, "model.attention=%s", cases[k].asked);
        char *extra[2] = { init, asked };
        Recipe r2;
        REQUIRE(load_recipe_sets(&r2, extra, 2) == 0, "recipe 2");
        TrainState t2;
        REQUIRE(train_state_open(&t2, &r2) == 0, "open from %s", cases[k].name);
        CHECK(t2.data.setup.mc.attention == (AttnMode)cases[k].want && graph_attention_mode(t2.model.g) == cases[k].want,
              "%s: mask %d, graph %d, want %d", cases[k].name, t2.data.setup.mc.attention, graph_attention_mode(t2.model.g), cases[k].want);
        train_state_close(&t2);
        recipe_free(&r2);
    }
    free(config);
    free(old_config);
    train_state_close(&ts);
    recipe_free(&r);
}

// `distil recipe check --memory` plans, without allocating, exactly what
// opening the run allocates (here with a frozen tensor, so gradients and
// optimizer state are smaller than the parameters).
static void test_memory_plan_matches_training(void) {
    Recipe r;
    REQUIRE(load_recipe(&r, "train.freeze", "[\"patch_embed.*\"]") == 0, "recipe");
    MemoryPlan m;
    REQUIRE(memory_plan(&r, &m) == 0, "memory_plan");
    TrainState ts;
    REQUIRE(train_state_open(&ts, &r) == 0, "open");
    const Graph *g = ts.model.g;
    CHECK(m.graph.params == g->param_numel * sizeof(float), "params %zu planned, %zu allocated", m.graph.params,
          g->param_numel * sizeof(float));
    CHECK(m.graph.grads == g->grad_numel * sizeof(float) && m.graph.grads < m.graph.params, "grads %zu planned, %zu allocated",
          m.graph.grads, g->grad_numel * sizeof(float));
    CHECK(m.optimizer == 2 * ts.optim.adamw.n * sizeof(float), "optimizer %zu planned, %zu allocated", m.optimizer,
          2 * ts.optim.adamw.n * sizeof(float));
    CHECK(m.graph.arena == g->act_bytes && m.graph.arena < m.graph.unshared, "arena %zu planned, %zu allocated, %zu unshared",
          m.graph.arena, g->act_bytes, m.graph.unshared);
    CHECK(m.graph.act_peak == g->plan.act_peak && m.graph.grad_peak == g->plan.grad_peak, "peaks %zu/%zu planned, %zu/%zu",
          m.graph.act_peak, m.graph.grad_peak, g->plan.act_peak, g->plan.grad_peak);
    CHECK(m.seq_len == ts.model.st.seq_len && m.vocab == ts.data.vocab.size, "shape");
    train_state_close(&ts);
    recipe_free(&r);
}

int main(void) {
    test_seed("test_train");
    if (make_shards() != 0) { printf("could not synthesise shards\n"); return 1; }
    RUN(test_loss_falls);
    RUN(test_bf16_follows_fp32);
    RUN(test_nan_step_skipped);
    RUN(test_too_many_bad_steps);
    RUN(test_vocab_remap);
    RUN(test_setup_checks_shards);
    RUN(test_init_from_and_freeze);
    RUN(test_init_from_keeps_attention);
    RUN(test_memory_plan_matches_training);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return test_summary();
}
