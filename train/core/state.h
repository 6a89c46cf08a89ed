// state.h: a training run in memory, and one optimizer step of it.
//
// A TrainState holds what a run is made of, grouped by what each part is
// for: the data (loaders, vocabulary, the shapes read from the shards), the
// model on its tape, the optimizer, the run's place among the ranks, and
// hooks that tests use to inject faults. `distil train` (train/cmd/train.c)
// drives it step by step; checkpoints (train/ckpt/) save and restore it.
#pragma once
#include <stdatomic.h>
#include <stdint.h>
#include "autograd/graph.h"         // defines: Graph, Tensor
#include "autograd/optim.h"         // defines: AdamW
#include "autograd/rng.h"           // defines: Rng
#include "data/loader.h"            // defines: Loader
#include "kernels/backend.h"        // defines: BackendCapture
#include "train/core/objective.h"   // defines: Setup, Objective
#include "train/dist/dist.h"        // defines: GradSync
#include "train/model/model.h"      // defines: Student
#include "train/model/vocab.h"      // defines: Vocab
#include "train/recipe/recipe.h"    // defines: Recipe

// What the run reads: the loaders, the student vocabulary built from (or
// inherited for) the shards, and the shapes the shards fix.
typedef struct TrainData {
    Loader *train, *eval;      // eval is NULL without data.eval
    Vocab vocab;
    Setup setup;
    int accum;                 // micro-batches per step on this rank
    const Batch **step_batches;   // (accum) the step's micro-batches, read together
    LossCounts *step_counts;      // (accum) each one's loss counts
} TrainData;

// The student recorded on its tape, with its objective.
typedef struct TrainModel {
    Graph *g;
    Student st;
    Objective obj;
    int frozen;                // parameters frozen by train.freeze
} TrainModel;

// AdamW and the bookkeeping of skipped (non-finite) steps. Under ZeRO-1,
// adamw holds only this rank's shard of the moments:
// [adamw.lo, adamw.lo + adamw.n).
typedef struct TrainOptim {
    AdamW adamw;
    long bad_in_a_row, bad_total;
} TrainOptim;

typedef struct TrainState TrainState;

// Called after each micro-batch's inputs are written (graph_input_host),
// before they are uploaded and forward runs. Tests inject faults here;
// after_inputs is NULL in a real run.
typedef struct TrainHooks {
    void (*after_inputs)(void *ctx, TrainState *ts);
    void *ctx;
} TrainHooks;

// The training step as a CUDA Graph (step.c). After one eager step, the
// device work of a step (zeroing the gradients, the upload, forward, the
// loss figures, backward, the norm and the update) is recorded once by
// stream capture and replayed with one launch each step. Only on CUDA,
// with one micro-batch per step, one process (no all-reduce from the
// backward hooks) and a page-locked input mirror; otherwise every step is
// eager (docs/performance.md).
typedef struct StepCapture {
    int off;                   // never capture (tests compare against the eager steps)
    int failed;                // the runtime refused: eager from then on
    BackendCapture *graph;     // NULL until captured
    long eager_steps;          // steps run without the graph
    long recaptures;           // captures made again after an op regrew the CUDA workspace
} StepCapture;

struct TrainState {
    Recipe *r;
    TrainData data;
    TrainModel model;
    TrainOptim optim;
    // The gradient all-reduce across the ranks (train/dist/dist.h); NULL in
    // a process started without mpirun/srun.
    GradSync *sync;
    // The training stream (dropout, augmentation): nothing draws from it
    // yet, but checkpoints carry it so that what will resumes exactly.
    Rng rng;
    TrainHooks hooks;
    StepCapture capture;
    // A signal number once a stop was asked for (SIGTERM, SIGINT, SIGUSR1:
    // train/cmd/train.c's handler), 0 before; NULL: never. train_step reads
    // it once, at its end, and reports it in StepStats.stop_signal.
    const atomic_int *stop_request;
};

// Per-step figures, over the global batch (every micro-batch, every rank).
typedef struct StepStats {
    double loss, kl, ce, traj, feature;   // the global batch's mean of each (objective.h)
    int micro;                            // micro-batches that ran backward
    long samples;
    float lr;
    double grad_norm;
    // Non-zero when a stop was asked for during this step: on any rank
    // (summed with the step's figures, so every rank stops after the same
    // step); the signal most ranks got.
    int stop_signal;
} StepStats;

enum { STEP_OK = 0, STEP_SKIPPED = 1, STEP_ERROR = 2 };

// Open the data, build the vocabulary, record and plan the tape, initialise
// the weights and the optimizer (state.c). Returns 0 or 2 (error printed).
int train_state_open(TrainState *ts, Recipe *r);
// The same with the tape, the weights and the optimizer state on `device`
// (train_state_open: DEV_CPU). Checkpoints still need a CPU TrainState.
int train_state_open_on(TrainState *ts, Recipe *r, Device device);
void train_state_close(TrainState *ts);
// Freeze every parameter of g whose name matches one of train.freeze's
// patterns (before graph_plan). Returns how many, or -1 (printed) when a
// pattern matches no parameter: it would freeze nothing in silence.
int train_apply_freeze(Graph *g, const Recipe *r);

// One optimizer step at schedule position `step` (step.c). STEP_SKIPPED: a
// non-finite loss or gradient; no weight and no optimizer state changed.
// STEP_ERROR: a data error or too many bad steps in a row (printed).
int train_step(TrainState *ts, long step, StepStats *out);

// The evaluation pass (evaluate.h's evaluate) split across the ranks, its
// sums reduced: every rank gets the metrics of every sample (evaluate.c).
// max_batches: micro-batches of the whole evaluation (<= 0: one epoch).
struct EgoOnly;
struct EvalResult;
int train_evaluate(TrainState *ts, const struct EgoOnly *ego, long max_batches, struct EvalResult *out);
