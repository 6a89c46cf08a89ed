// step.c: a training run in memory: opening the data, recording the
// graph, and one optimizer step (see trainer.h).
//
// One step: micro-batches (batch_size / (micro_batch x ranks) of them on
// each rank) each run forward and backward on the recorded graph, their
// gradients accumulate, the last backward all-reduces them across the ranks
// bucket by bucket as it goes (train/dist.h), then the global norm is
// checked (a non-finite loss or norm on any rank skips the step everywhere
// without touching a weight or the optimizer), clipped, and AdamW updates.
//
// Under mpirun each rank reads its own part of every batch (the loader's
// rank/world), the step's figures are summed over the ranks so that every
// rank, and rank 0 who reports them, sees the global numbers, and the
// evaluation is split across the ranks and its sums reduced.
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/optim.h"    // defines: AdamW, lr_schedule, grad_global_norm
#include "autograd/rng.h"      // defines: Rng
#include "kernels/backend.h"   // defines: backend_to_host
#include "train/dist.h"        // defines: dist_world, GradSync, dist_allreduce_sum
#include "train/evaluate.h"    // defines: evaluate, EvalResult
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

// A [1] loss component, read on the host (one small download on a device).
static float read_scalar(const Tensor *t) {
    float x;
    tensor_to_host_f32(t, &x);
    return x;
}

static void add_component(double *acc, const Tensor *t) {
    if (t) *acc += read_scalar(t);
}

// train.batch_size is global: micro_batch x accumulation x ranks.
static int check_batch_split(const Recipe *r, int world) {
    int per_step = r->train.micro_batch * world;
    if (r->train.batch_size % per_step == 0) return 0;
    char where[512];
    fprintf(stderr, "distil: error: %s: train.batch_size %d is not a multiple of train.micro_batch (%d) x the world "
            "size (%d rank%s) = %d; change train.batch_size or train.micro_batch, or launch another number of ranks\n",
            recipe_where(r, "train.batch_size", where, sizeof where), r->train.batch_size, r->train.micro_batch,
            world, world == 1 ? "" : "s", per_step);
    return 2;
}

// Every rank must have built the same model, vocabulary and initial
// weights (the same recipe and the same shards, on every node): otherwise
// the buckets would not even line up. Compared by fingerprint.
static int ranks_agree(TrainState *ts) {
    const Dist *d = dist_world();
    uint64_t h = DIST_FNV_SEED;
    h = dist_fnv1a(&ts->g->grad_numel, sizeof ts->g->grad_numel, h);
    void *params = ts->g->param_mem;
    if (ts->g->device != DEV_CPU) {   // hashed from a host copy
        if (!(params = malloc(ts->g->param_bytes))) { fprintf(stderr, "distil: error: out of memory\n"); return 2; }
        backend_to_host(ts->g->device, params, ts->g->param_mem, ts->g->param_bytes);
    }
    h = dist_fnv1a(params, ts->g->param_bytes, h);
    if (params != ts->g->param_mem) free(params);
    h = dist_fnv1a(&ts->vocab.size, sizeof ts->vocab.size, h);
    h = dist_fnv1a(ts->vocab.to_teacher, (size_t)ts->vocab.size * sizeof *ts->vocab.to_teacher, h);
    h = dist_fnv1a(&ts->accum, sizeof ts->accum, h);
    uint64_t *all = malloc((size_t)d->world * sizeof *all);
    if (!all) { fprintf(stderr, "distil: error: out of memory\n"); return 2; }
    dist_allgather_u64(h, all, "model check");
    int same = all[d->rank] == all[0];
    free(all);
    if (same) return 0;
    fprintf(stderr, "distil: error: rank %d: its model, vocabulary or initial weights differ from rank 0's; every "
            "rank must read the same recipe and the same shards (check data.train on every node)\n", d->rank);
    return 2;
}

int train_state_open(TrainState *ts, Recipe *r) { return train_state_open_on(ts, r, DEV_CPU); }

int train_state_open_on(TrainState *ts, Recipe *r, Device device) {
    memset(ts, 0, sizeof *ts);
    ts->r = r;
    char err[1024];
    int rc;
    const Dist *d = dist_world();
    dist_set_timeout(r->dist.timeout_s);
    if ((rc = check_batch_split(r, d->world))) return rc;
    ts->accum = r->train.batch_size / (r->train.micro_batch * d->world);
    LoaderOptions lo = loader_defaults();
    lo.batch_size = r->train.micro_batch;
    lo.max_trace_tokens = r->data.max_trace_tokens;
    lo.seed = (uint64_t)r->seed;
    lo.rank = d->rank;
    lo.world = d->world;
    lo.workers = r->data.loader_threads;
    lo.prefetch = r->data.prefetch;
    lo.on_bad_sample = r->data.on_bad_sample == BAD_SAMPLE_SKIP ? DL_ON_BAD_SKIP : DL_ON_BAD_ERROR;
    ts->train_ld = loader_open(r->data.train.items, r->data.train.n, &lo, err, sizeof err);
    if (!ts->train_ld) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    if (loader_batches_per_epoch(ts->train_ld) < 1) {
        char where[512];
        fprintf(stderr, "distil: error: %s: data.train holds fewer samples than one micro-batch (%d) per rank (%d)\n",
                recipe_where(r, "data.train", where, sizeof where), r->train.micro_batch, d->world);
        return 2;
    }
    // A fine-tuned student keeps its vocabulary; a new one gets it from the shards.
    VocabMode vm = r->model.vocab == VOCAB_FROM_LOGS ? VOCAB_MODE_FROM_LOGS : VOCAB_MODE_TEACHER;
    int inherited = init_from_vocab(r, loader_set(ts->train_ld), &ts->vocab, err, sizeof err);
    if (inherited < 0 || (!inherited && vocab_build(&ts->vocab, loader_set(ts->train_ld), vm, err, sizeof err))) {
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
    ts->g = graph_new(device);
    objective_build(ts->g, &ts->st, &ts->obj, &ts->setup, r, r->train.micro_batch);
    ts->frozen = apply_freeze(ts->g, r);
    if (graph_plan(ts->g)) return 2;
    student_fill_constants(&ts->st);
    Rng rng;
    rng_seed(&rng, (uint64_t)r->seed);
    graph_init_params(ts->g, &rng);
    if (init_from_weights(r, ts->g, err, sizeof err)) { fprintf(stderr, "distil: error: train.init_from: %s\n", err); return 2; }
    rng_derive(&ts->rng, (uint64_t)r->seed, 1, 0);
    AdamWConfig oc = { (float)r->train.beta1, (float)r->train.beta2, (float)r->train.eps, (float)r->train.weight_decay };
    size_t shard_lo = 0, shard_hi = ts->g->grad_numel;
    if (d->launched) {
        if ((rc = ranks_agree(ts))) return rc;
        GradSyncConfig gc = { r->dist.bucket_mb, r->dist.grad_dtype == PRECISION_BF16, r->dist.zero, 0, 0 };
        ts->sync = grad_sync_new(ts->g, &gc, err, sizeof err);
        if (!ts->sync) { fprintf(stderr, "distil: error: rank %d: gradient all-reduce: %s\n", d->rank, err); return 2; }
        grad_sync_shard(ts->sync, &shard_lo, &shard_hi);
    }
    if (adamw_init_range(&ts->opt, ts->g, oc, shard_lo, shard_hi)) return 2;
    return 0;
}

void train_state_close(TrainState *ts) {
    if (ts->opt.m) adamw_free(&ts->opt);
    grad_sync_free(ts->sync);
    if (ts->g) graph_free(ts->g);
    if (ts->vocab.size) vocab_free(&ts->vocab);
    if (ts->eval_ld) loader_close(ts->eval_ld);
    if (ts->train_ld) loader_close(ts->train_ld);
    memset(ts, 0, sizeof *ts);
}

// Sum the step's figures over the ranks, with each rank's count of
// non-finite micro-batches: one collective, after which every rank holds
// the same numbers and makes the same skip decision.
static void reduce_step_stats(StepStats *ss, int *bad) {
    double v[8] = { ss->loss, ss->kl, ss->ce, ss->traj, ss->feature, ss->micro, (double)ss->samples, *bad };
    dist_allreduce_sum(v, 8, "step metrics");
    ss->loss = v[0]; ss->kl = v[1]; ss->ce = v[2]; ss->traj = v[3]; ss->feature = v[4];
    ss->micro = (int)v[5];
    ss->samples = (long)v[6];
    *bad = v[7] > 0;
}

int train_step(TrainState *ts, long step, StepStats *ss) {
    const Recipe *r = ts->r;
    const int world = dist_world()->world;
    memset(ss, 0, sizeof *ss);
    ss->lr = lr_schedule(step, r->train.warmup_steps, r->train.steps, (float)r->train.lr, (float)r->train.min_lr);
    graph_zero_grad(ts->g);
    int finite = 1;
    for (int m = 0; m < ts->accum; m++) {
        const Batch *b = loader_next(ts->train_ld);
        if (!b) { fprintf(stderr, "distil: error: %s\n", loader_error(ts->train_ld)); return STEP_ERROR; }
        batch_to_inputs(b, &ts->setup, r, &ts->vocab, &ts->st, &ts->obj);
        if (ts->after_inputs) ts->after_inputs(ts->hook_ctx, ts);
        graph_upload_inputs(ts->g);
        graph_forward(ts->g);
        float loss = read_scalar(ts->obj.total);
        ss->samples += b->B;
        // The rest of a step's batches are still consumed, so the data order
        // does not depend on whether a step was skipped.
        if (!finite || !isfinite(loss)) { finite = 0; continue; }
        // Only the last micro-batch's backward launches the all-reduce.
        if (ts->sync && m == ts->accum - 1) grad_sync_arm(ts->sync);
        graph_backward(ts->g, ts->obj.total);
        ss->micro++;
        ss->loss += loss;
        add_component(&ss->kl, ts->obj.kl);
        add_component(&ss->ce, ts->obj.ce);
        add_component(&ss->traj, ts->obj.traj);
        add_component(&ss->feature, ts->obj.feature);
    }
    // Gradients are sums over micro-batches (and ranks) of per-micro-batch
    // means; the norm and the update are of their mean.
    double per_mean = (double)ts->accum * world;
    int bad = !finite;
    if (ts->sync) {
        grad_sync_finish(ts->sync);   // every rank, even one that skipped its backward
        reduce_step_stats(ss, &bad);
        ss->grad_norm = bad ? NAN : sqrt(grad_sync_sumsq(ts->sync)) / per_mean;
    } else {
        ss->grad_norm = bad ? NAN : grad_global_norm(ts->g) / per_mean;
    }
    if (bad || !isfinite(ss->grad_norm)) {
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
    float scale = grad_clip_scale(ss->grad_norm, (float)r->train.grad_clip) / (float)per_mean;
    if (ts->sync) grad_sync_update(ts->sync, &ts->opt, ss->lr, scale);
    else adamw_step(&ts->opt, ts->g, ss->lr, scale);
    return STEP_OK;
}

// TrajMetrics and TraceMetrics are sums of doubles (metrics.h), reduced as
// arrays of doubles.
_Static_assert(sizeof(TrajMetrics) % sizeof(double) == 0, "TrajMetrics holds doubles only");
_Static_assert(sizeof(TraceMetrics) % sizeof(double) == 0, "TraceMetrics holds doubles only");
#define TRAJ_SUMS (sizeof(TrajMetrics) / sizeof(double))
#define TRACE_SUMS (sizeof(TraceMetrics) / sizeof(double))

static void reduce_eval(EvalResult *e) {
    TrajMetrics *traj[4] = { &e->student, &e->teacher, &e->constant_velocity, &e->ego_only };
    double v[4 * TRAJ_SUMS + TRACE_SUMS + 1];
    for (int i = 0; i < 4; i++) memcpy(v + i * TRAJ_SUMS, traj[i], sizeof(TrajMetrics));
    memcpy(v + 4 * TRAJ_SUMS, &e->trace, sizeof(TraceMetrics));
    v[4 * TRAJ_SUMS + TRACE_SUMS] = (double)e->samples;
    dist_allreduce_sum(v, (int)(sizeof v / sizeof v[0]), "evaluation metrics");
    for (int i = 0; i < 4; i++) memcpy(traj[i], v + i * TRAJ_SUMS, sizeof(TrajMetrics));
    memcpy(&e->trace, v + 4 * TRAJ_SUMS, sizeof(TraceMetrics));
    e->samples = (long)v[4 * TRAJ_SUMS + TRACE_SUMS];
}

int train_evaluate(TrainState *ts, const EgoOnly *ego, long max_batches, EvalResult *out) {
    const Dist *d = dist_world();
    // The eval loader gives each rank every world-th sample; max_batches
    // counts the micro-batches of the whole evaluation.
    long mine = max_batches > 0 ? (max_batches + d->world - 1) / d->world : 0;
    int rc = evaluate(ts->g, &ts->st, &ts->obj, &ts->setup, ts->r, &ts->vocab, ego, ts->eval_ld, mine, out);
    if (rc) return rc;   // this rank's exit status ends the job
    if (d->launched) reduce_eval(out);
    return 0;
}
