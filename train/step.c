// step.c: a training run in memory: opening the data, recording the
// graph, and one optimizer step (see trainer.h).
//
// One step: micro-batches (batch_size / micro_batch of them) each run
// forward and backward on the recorded graph, their gradients accumulate,
// then the global norm is checked (a non-finite loss or norm skips the step
// without touching a weight or the optimizer), clipped, and AdamW updates.
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "autograd/optim.h"    // defines: AdamW, lr_schedule, grad_global_norm
#include "autograd/rng.h"      // defines: Rng
#include "train/trainer.h"     // defines: TrainState, objective_build, batch_to_inputs

// Freeze every parameter whose name matches one of the recipe's patterns.
static int apply_freeze(Graph *g, const Recipe *r) {
    int frozen = 0;
    for (int i = 0; i < g->n_params; i++)
        for (int p = 0; p < r->train.freeze.n; p++)
            if (fnmatch(r->train.freeze.items[p], g->params[i]->name, 0) == 0) {
                graph_freeze(g->params[i]);
                frozen++;
                break;
            }
    return frozen;
}

static void add_component(double *acc, const Tensor *t) {
    if (t) *acc += *(const float *)t->data;
}

int train_state_open(TrainState *ts, Recipe *r) {
    memset(ts, 0, sizeof *ts);
    ts->r = r;
    char err[1024];
    int rc;
    const int world = 1;
    ts->accum = r->train.batch_size / (r->train.micro_batch * world);
    LoaderOptions lo = loader_defaults();
    lo.batch_size = r->train.micro_batch;
    lo.max_trace_tokens = r->data.max_trace_tokens;
    lo.seed = (uint64_t)r->seed;
    lo.workers = r->data.loader_threads;
    lo.prefetch = r->data.prefetch;
    lo.on_bad_sample = r->data.on_bad_sample == BAD_SAMPLE_SKIP ? DL_ON_BAD_SKIP : DL_ON_BAD_ERROR;
    ts->train_ld = loader_open(r->data.train.items, r->data.train.n, &lo, err, sizeof err);
    if (!ts->train_ld) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    if (loader_batches_per_epoch(ts->train_ld) < 1) {
        char where[512];
        fprintf(stderr, "distil: error: %s: data.train holds fewer samples than one micro-batch (%d)\n",
                recipe_where(r, "data.train", where, sizeof where), r->train.micro_batch);
        return 2;
    }
    VocabMode vm = r->model.vocab == VOCAB_FROM_LOGS ? VOCAB_MODE_FROM_LOGS : VOCAB_MODE_TEACHER;
    if (vocab_build(&ts->vocab, loader_set(ts->train_ld), vm, err, sizeof err)) {
        fprintf(stderr, "distil: error: %s\n", err);
        return 2;
    }
    if ((rc = setup_from_shards(&ts->setup, r, loader_set(ts->train_ld), ts->vocab.size))) return rc;
    if (r->data.eval.n) {
        // Evaluation reads every sample once, in shard order; the last
        // batch is padded with invalid slots, which every metric skips.
        LoaderOptions eo = lo;
        eo.shuffle = 0;
        eo.keep_tail = 1;
        ts->eval_ld = loader_open(r->data.eval.items, r->data.eval.n, &eo, err, sizeof err);
        if (!ts->eval_ld) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
        const DlSet *es = loader_set(ts->eval_ld), *trs = loader_set(ts->train_ld);
        if (dl_shard_agree(&trs->shards[0], &es->shards[0], err, sizeof err)) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    }

    // The graph, recorded once, then the weights and the optimizer.
    ts->g = graph_new(DEV_CPU);
    objective_build(ts->g, &ts->st, &ts->obj, &ts->setup, r, r->train.micro_batch);
    ts->frozen = apply_freeze(ts->g, r);
    if (graph_plan(ts->g)) return 2;
    student_fill_constants(&ts->st);
    Rng rng;
    rng_seed(&rng, (uint64_t)r->seed);
    graph_init_params(ts->g, &rng);
    rng_derive(&ts->rng, (uint64_t)r->seed, 1, 0);
    AdamWConfig oc = { (float)r->train.beta1, (float)r->train.beta2, (float)r->train.eps, (float)r->train.weight_decay };
    if (adamw_init(&ts->opt, ts->g, oc)) return 2;
    return 0;
}

void train_state_close(TrainState *ts) {
    if (ts->opt.m) adamw_free(&ts->opt);
    if (ts->g) graph_free(ts->g);
    if (ts->vocab.size) vocab_free(&ts->vocab);
    if (ts->eval_ld) loader_close(ts->eval_ld);
    if (ts->train_ld) loader_close(ts->train_ld);
    memset(ts, 0, sizeof *ts);
}

int train_step(TrainState *ts, long step, StepStats *ss) {
    const Recipe *r = ts->r;
    memset(ss, 0, sizeof *ss);
    ss->lr = lr_schedule(step, r->train.warmup_steps, r->train.steps, (float)r->train.lr, (float)r->train.min_lr);
    graph_zero_grad(ts->g);
    int finite = 1;
    for (int m = 0; m < ts->accum; m++) {
        const Batch *b = loader_next(ts->train_ld);
        if (!b) { fprintf(stderr, "distil: error: %s\n", loader_error(ts->train_ld)); return STEP_ERROR; }
        batch_to_inputs(b, &ts->setup, r, &ts->vocab, &ts->st, &ts->obj);
        if (ts->after_inputs) ts->after_inputs(ts->hook_ctx, ts);
        graph_forward(ts->g);
        float loss = *(float *)ts->obj.total->data;
        ss->samples += b->B;
        // The rest of a step's batches are still consumed, so the data order
        // does not depend on whether a step was skipped.
        if (!finite || !isfinite(loss)) { finite = 0; continue; }
        graph_backward(ts->g, ts->obj.total);
        ss->micro++;
        ss->loss += loss;
        add_component(&ss->kl, ts->obj.kl);
        add_component(&ss->ce, ts->obj.ce);
        add_component(&ss->traj, ts->obj.traj);
        add_component(&ss->feature, ts->obj.feature);
    }
    // Gradients are sums over micro-batches of per-micro-batch means.
    ss->grad_norm = finite ? grad_global_norm(ts->g) / ts->accum : NAN;
    if (!finite || !isfinite(ss->grad_norm)) {
        ts->bad_total++;
        if (++ts->bad_in_a_row > r->train.max_bad_steps) {
            fprintf(stderr, "distil: error: %s: %ld non-finite steps in a row (at step %ld); none of them updated the "
                    "weights; lower train.lr or check the shards with distil logs validate\n",
                    r->path ? r->path : "recipe", ts->bad_in_a_row, step);
            return STEP_ERROR;
        }
        return STEP_SKIPPED;
    }
    ts->bad_in_a_row = 0;
    adamw_step(&ts->opt, ts->g, ss->lr, grad_clip_scale(ss->grad_norm, (float)r->train.grad_clip) / ts->accum);
    return STEP_OK;
}

