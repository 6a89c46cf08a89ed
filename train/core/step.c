// step.c: one optimizer step of a training run (see state.h).
//
// The step's micro-batches (batch_size / (micro_batch x ranks) of them on
// each rank) are read together first, and each loss's rows are counted in
// every one of them; one small all-reduce gives the counts of the global
// batch. Then each micro-batch runs forward and backward on the recorded
// tape with its share of each loss (objective.h), so the gradients that
// accumulate, and that the last backward all-reduces across the ranks
// bucket by bucket (train/dist/dist.h), are those of the global batch's
// mean loss however it is split. The loss components add up on the
// device; one pass (autograd/optim.h) forms the global norm, checks it and
// the losses (a non-finite loss or norm on any rank skips the step
// everywhere without touching a weight or the optimizer), clips and
// updates; one download brings the step's figures back.
//
// Under mpirun each rank reads its own part of every batch (the loader's
// rank/world), and the step's figures are summed over the ranks so that
// every rank, and rank 0 who reports them, sees the global numbers.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "autograd/optim.h"         // defines: lr_schedule, adamw_begin, adamw_update, adamw_end
#include "train/core/state.h"       // defines: TrainState, StepStats
#include "train/dist/dist.h"        // defines: dist_world, grad_sync_*, dist_allreduce_sum

// The objective's loss figures, where the tape holds them.
static StepLosses step_losses(const Objective *o) {
    const Tensor *t[STEP_LOSSES] = { o->total, o->kl, o->ce, o->traj, o->feature };
    StepLosses l;
    for (int k = 0; k < STEP_LOSSES; k++) l.x[k] = t[k] ? t[k]->data : NULL;
    return l;
}

// The signals a stop may come from; the ranks count who got which.
static const int stop_signals[3] = { SIGTERM, SIGINT, SIGUSR1 };

// Sum the step's figures over the ranks, with each rank's count of
// non-finite micro-batches and the stop signal it got, if any: one
// collective, after which every rank holds the same numbers and makes the
// same skip and stop decisions.
static void reduce_step_stats(StepStats *ss, int *bad) {
    double v[11] = { ss->loss, ss->kl, ss->ce, ss->traj, ss->feature, ss->micro, (double)ss->samples, *bad };
    for (int i = 0; i < 3; i++) v[8 + i] = ss->stop_signal == stop_signals[i];
    dist_allreduce_sum(v, 11, "step metrics");
    ss->loss = v[0]; ss->kl = v[1]; ss->ce = v[2]; ss->traj = v[3]; ss->feature = v[4];
    ss->micro = (int)v[5];
    ss->samples = (long)v[6];
    *bad = v[7] > 0;
    ss->stop_signal = 0;
    for (int i = 0, most = 0; i < 3; i++)
        if (v[8 + i] > most) { most = (int)v[8 + i]; ss->stop_signal = stop_signals[i]; }
}

// The stop signal asked for so far (train/cmd/train.c's handler), 0 when
// none: read once a step, at its end, so that under mpirun the step's
// all-reduce carries it.
static int stop_requested(const TrainState *ts) { return ts->stop_request ? atomic_load(ts->stop_request) : 0; }

// Read the step's micro-batches and count each loss's rows in them, on this
// rank (counts[m]) and over the global batch (*global). The inputs then
// hold the last micro-batch.
static int count_step(TrainState *ts, const Batch **batches, LossCounts *counts, LossCounts *global) {
    TrainData *td = &ts->data;
    if (loader_next_many(td->train, td->accum, batches)) {
        fprintf(stderr, "distil: error: %s\n", loader_error(td->train));
        return STEP_ERROR;
    }
    double sum[4] = { 0, 0, 0, 0 };
    for (int m = 0; m < td->accum; m++) {
        batch_to_inputs(batches[m], &td->setup, ts->r, &td->vocab, &ts->model.st, &ts->model.obj);
        counts[m] = objective_counts(&ts->model.obj);
        sum[0] += counts[m].kl; sum[1] += counts[m].ce; sum[2] += counts[m].traj; sum[3] += counts[m].feature;
    }
    if (dist_allreduce_sum(sum, 4, "loss counts")) return STEP_ERROR;
    *global = (LossCounts){ sum[0], sum[1], sum[2], sum[3] };
    return STEP_OK;
}

static int finish_step(TrainState *ts, long step, StepStats *ss, const AdamWStep *out);

// The loss figures the device summed over the step's micro-batches.
static void take_losses(StepStats *ss, const AdamWStep *out) {
    ss->loss = out->losses[0];
    ss->kl = out->losses[1];
    ss->ce = out->losses[2];
    ss->traj = out->losses[3];
    ss->feature = out->losses[4];
}

// A step the CUDA Graph can hold (see StepCapture in state.h): on CUDA, one
// micro-batch (each one's inputs must be uploaded before the host writes
// the next into the one mirror, a wait the graph cannot hold), no
// all-reduce (NCCL and MPI are launched from backward's hooks, outside the
// compute stream), a page-locked mirror (a captured copy reads it), and
// no DISTIL_PROFILE (it synchronises around every node, which a capture
// cannot hold; the profile is of the eager step).
static int step_capturable(const TrainState *ts) {
    const Graph *g = ts->model.g;
    return g->device == DEV_CUDA && !ts->sync && ts->data.accum == 1 && g->input_host_pinned && !ts->capture.off &&
           !ts->capture.failed && !g->profile;
}

// The device work of a one-micro-batch step on one process, queued in
// order and nothing else: what the capture records, and what the eager
// step runs, so that the two give the same bits. Every pointer it passes
// is fixed for the run; what changes from step to step is read from
// device memory (the inputs' slots, opt->step_dev).
static void queue_step(TrainState *ts, StepLosses losses) {
    Graph *g = ts->model.g;
    AdamW *opt = &ts->optim.adamw;
    graph_zero_grad(g);
    graph_upload_inputs_queued(g);
    graph_forward(g);
    adamw_add_losses(opt, losses);
    graph_backward(g, ts->model.obj.total);
    adamw_update(opt, g, g->reduce_dev, grad_sumsq_partials(g, 0, g->grad_numel));
}

// Replay the captured step, capturing it first when an eager step has
// already grown every workspace. Returns 0 when the step ran from the
// graph, -1 when it must run eagerly (not captured yet, or the runtime
// refused: then never again).
static int run_captured(TrainState *ts, StepLosses losses) {
    StepCapture *c = &ts->capture;
    if (c->graph && !backend_capture_current(c->graph)) {   // an op regrew its workspace since
        backend_capture_free(c->graph);
        c->graph = NULL;
        c->recaptures++;
    }
    if (!c->graph) {
        if (c->eager_steps == 0) return -1;
        backend_capture_begin(DEV_CUDA);
        queue_step(ts, losses);
        c->graph = backend_capture_end(DEV_CUDA);   // NULL: the reason is on stderr
        if (!c->graph) {
            fprintf(stderr, "distil: warning: the training step runs without a CUDA Graph from here on\n");
            c->failed = 1;
            return -1;
        }
    }
    backend_capture_launch(c->graph);
    return 0;
}

int train_step(TrainState *ts, long step, StepStats *ss) {
    const Recipe *r = ts->r;
    TrainData *td = &ts->data;
    AdamW *opt = &ts->optim.adamw;
    Graph *g = ts->model.g;
    memset(ss, 0, sizeof *ss);
    ss->lr = lr_schedule(step, r->train.warmup_steps, r->train.steps, (float)r->train.lr, (float)r->train.min_lr);
    LossCounts global;
    if (count_step(ts, td->step_batches, td->step_counts, &global)) return STEP_ERROR;
    adamw_begin(opt, ss->lr, (float)r->train.grad_clip);
    StepLosses losses = step_losses(&ts->model.obj);
    AdamWStep out;
    if (step_capturable(ts)) {
        // The inputs hold the step's one micro-batch (count_step).
        objective_set_shares(&ts->model.obj, &td->step_counts[0], &global);
        if (ts->hooks.after_inputs) ts->hooks.after_inputs(ts->hooks.ctx, ts);
        if (run_captured(ts, losses)) {
            queue_step(ts, losses);
            ts->capture.eager_steps++;
        }
        ss->samples = td->step_batches[0]->B;
        ss->micro = 1;
        adamw_end(opt, &out);
        take_losses(ss, &out);
        ss->stop_signal = stop_requested(ts);
        return finish_step(ts, step, ss, &out);
    }
    ts->capture.eager_steps++;
    graph_zero_grad(g);
    for (int m = 0; m < td->accum; m++) {
        const Batch *b = td->step_batches[m];
        // The inputs still hold the last micro-batch counted.
        if (td->accum > 1) batch_to_inputs(b, &td->setup, r, &td->vocab, &ts->model.st, &ts->model.obj);
        objective_set_shares(&ts->model.obj, &td->step_counts[m], &global);
        if (ts->hooks.after_inputs) ts->hooks.after_inputs(ts->hooks.ctx, ts);
        graph_upload_inputs(g);
        graph_forward(g);
        // The figures add up on the device; a non-finite loss there skips
        // the step (the update's own check) after a backward whose
        // gradients are then never used.
        adamw_add_losses(opt, losses);
        // Only the last micro-batch's backward launches the all-reduce.
        if (ts->sync && m == td->accum - 1) grad_sync_arm(ts->sync);
        graph_backward(g, ts->model.obj.total);
        ss->samples += b->B;
        ss->micro++;
    }
    // The gradients are the global batch's mean loss's already: each
    // micro-batch's loss carries its share. One pass checks the norm, clips
    // and updates; one read brings back the losses, the norm and whether
    // the weights moved.
    int bad;
    ss->stop_signal = stop_requested(ts);
    if (ts->sync) {
        grad_sync_finish(ts->sync);   // every rank's backward has run
        adamw_peek(opt, &out);
        bad = !out.loss_finite;
        take_losses(ss, &out);
        reduce_step_stats(ss, &bad);
        double sumsq = bad ? NAN : grad_sync_sumsq(ts->sync);
        if (!bad && isfinite(sumsq)) grad_sync_update(ts->sync, opt, sumsq);
        else adamw_update_sumsq(opt, g, NAN);   // only records the skip
        adamw_end(opt, &out);
    } else {
        size_t chunks = grad_sumsq_partials(g, 0, g->grad_numel);
        adamw_update(opt, g, g->reduce_dev, chunks);
        adamw_end(opt, &out);
        take_losses(ss, &out);
    }
    return finish_step(ts, step, ss, &out);
}

// The step's verdict, as the one download brought it back: the norm, and
// the count of non-finite steps when the weights did not move.
static int finish_step(TrainState *ts, long step, StepStats *ss, const AdamWStep *out) {
    const Recipe *r = ts->r;
    ss->grad_norm = out->norm;
    if (!out->applied) {
        ts->optim.bad_total++;
        if (++ts->optim.bad_in_a_row > r->train.max_bad_steps) {
            fprintf(stderr, "distil: error: %s: %ld non-finite steps in a row (at step %ld); none of them updated the "
                    "weights; lower train.lr or check the shards with distil logs validate\n",
                    r->path ? r->path : "recipe", ts->optim.bad_in_a_row, step);
            return STEP_ERROR;
        }
        return STEP_SKIPPED;
    }
    ts->optim.bad_in_a_row = 0;
    return STEP_OK;
}
