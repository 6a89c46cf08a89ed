// step.c: one optimizer step of a training run (see state.h).
//
// Micro-batches (batch_size / (micro_batch x ranks) of them on each rank)
// each run forward and backward on the recorded tape, their gradients
// accumulate, the last backward all-reduces them across the ranks bucket by
// bucket as it goes (train/dist/dist.h), then the global norm is checked (a
// non-finite loss or norm on any rank skips the step everywhere without
// touching a weight or the optimizer), clipped, and AdamW updates.
//
// Under mpirun each rank reads its own part of every batch (the loader's
// rank/world), and the step's figures are summed over the ranks so that
// every rank, and rank 0 who reports them, sees the global numbers.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "autograd/optim.h"         // defines: lr_schedule, grad_global_norm, adamw_step
#include "train/core/state.h"       // defines: TrainState, StepStats
#include "train/dist/dist.h"        // defines: dist_world, grad_sync_*, dist_allreduce_sum

// A [1] loss component, read on the host (one small download on a device).
static float read_scalar(const Tensor *t) {
    float x;
    tensor_to_host_f32(t, &x);
    return x;
}

static void add_component(double *acc, const Tensor *t) {
    if (t) *acc += read_scalar(t);
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
    graph_zero_grad(ts->model.g);
    int finite = 1;
    for (int m = 0; m < ts->data.accum; m++) {
        const Batch *b = loader_next(ts->data.train);
        if (!b) { fprintf(stderr, "distil: error: %s\n", loader_error(ts->data.train)); return STEP_ERROR; }
        batch_to_inputs(b, &ts->data.setup, r, &ts->data.vocab, &ts->model.st, &ts->model.obj);
        if (ts->hooks.after_inputs) ts->hooks.after_inputs(ts->hooks.ctx, ts);
        graph_upload_inputs(ts->model.g);
        graph_forward(ts->model.g);
        float loss = read_scalar(ts->model.obj.total);
        ss->samples += b->B;
        // The rest of a step's batches are still consumed, so the data order
        // does not depend on whether a step was skipped.
        if (!finite || !isfinite(loss)) { finite = 0; continue; }
        // Only the last micro-batch's backward launches the all-reduce.
        if (ts->sync && m == ts->data.accum - 1) grad_sync_arm(ts->sync);
        graph_backward(ts->model.g, ts->model.obj.total);
        ss->micro++;
        ss->loss += loss;
        add_component(&ss->kl, ts->model.obj.kl);
        add_component(&ss->ce, ts->model.obj.ce);
        add_component(&ss->traj, ts->model.obj.traj);
        add_component(&ss->feature, ts->model.obj.feature);
    }
    // Gradients are sums over micro-batches (and ranks) of per-micro-batch
    // means; the norm and the update are of their mean.
    double per_mean = (double)ts->data.accum * world;
    int bad = !finite;
    if (ts->sync) {
        grad_sync_finish(ts->sync);   // every rank, even one that skipped its backward
        reduce_step_stats(ss, &bad);
        ss->grad_norm = bad ? NAN : sqrt(grad_sync_sumsq(ts->sync)) / per_mean;
    } else {
        ss->grad_norm = bad ? NAN : grad_global_norm(ts->model.g) / per_mean;
    }
    if (bad || !isfinite(ss->grad_norm)) {
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
    float scale = grad_clip_scale(ss->grad_norm, (float)r->train.grad_clip) / (float)per_mean;
    if (ts->sync) grad_sync_update(ts->sync, &ts->optim.adamw, ss->lr, scale);
    else adamw_step(&ts->optim.adamw, ts->model.g, ss->lr, scale);
    return STEP_OK;
}

