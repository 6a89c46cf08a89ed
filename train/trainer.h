// trainer.h: what `distil train` and `distil eval` share: the student built
// from a recipe and the shards, its objective, and how a loader batch
// becomes the graph's inputs.
#pragma once
#include <stdint.h>
#include "autograd/graph.h"   // defines: Graph, Tensor
#include "autograd/optim.h"   // defines: AdamW
#include "autograd/rng.h"     // defines: Rng
#include "data/loader.h"      // defines: Batch, Loader
#include "train/model.h"      // defines: Student, ModelConfig
#include "train/recipe.h"     // defines: Recipe
#include "train/dist.h"       // defines: GradSync
#include "train/vocab.h"      // defines: Vocab

// The distillation objective's inputs and its components.
typedef struct Objective {
    Tensor *ce_targets;       // i32 (B, L): the teacher's trace in student ids, -1 where masked
    Tensor *topk_ids;         // i32 (B, L, k): student ids, -1 outside the vocabulary
    Tensor *topk_logprobs;    // f32 (B, L, k): at the logged temperature
    Tensor *kl_mask;          // f32 (B, L)
    Tensor *traj_targets;     // f32 (B, Kt, T, 3): Kt = 1 for teacher_mean and ground_truth, else K
    Tensor *traj_weights;     // f32 (B, Kt)
    Tensor *feat_target;      // f32 (B, Dt) or NULL
    Tensor *feat_mask;        // f32 (B) or NULL
    // Components (each [1], NULL when its weight is 0) and their weighted sum.
    Tensor *kl, *ce, *traj, *feature, *total;
} Objective;

// Everything derived from the recipe and the first training shard.
typedef struct Setup {
    ModelConfig mc;
    int cam_index[DL_MAX_CAMERAS];   // shard camera index of each student camera
    int shard_frames;                // F in the shards
    int shard_horizon;               // T in the shards
    int K, k, D;                     // teacher samples, top-k width, embedding width (shards)
    float t_logged;                  // temperature of the logged top-k
} Setup;

// Check the recipe against the shards and fill s. Returns 0, or prints one
// error line (naming the recipe key or the shard) and returns 2.
int setup_from_shards(Setup *s, const Recipe *r, const DlSet *set, int vocab_size);

// Record the student and its objective for micro-batch B.
void objective_build(Graph *g, Student *st, Objective *obj, const Setup *s, const Recipe *r, int B);

// Write one batch where the host writes the graph's inputs
// (graph_input_host: the arena itself on a CPU graph, its host mirror on a
// device graph, which graph_upload_inputs then copies over). Returns the
// number of valid samples.
int batch_to_inputs(const Batch *b, const Setup *s, const Recipe *r, const Vocab *v, Student *st, Objective *obj);

// A training run in memory: what one step needs.
typedef struct TrainState TrainState;
typedef void (*InputsHook)(void *ctx, TrainState *ts);

struct TrainState {
    Recipe *r;
    Loader *train_ld, *eval_ld;
    Vocab vocab;
    Setup setup;
    Graph *g;
    Student st;
    Objective obj;
    AdamW opt;
    int accum;                 // micro-batches per step
    int frozen;                // parameters frozen by train.freeze
    long bad_in_a_row, bad_total;
    // The gradient all-reduce across the ranks (train/dist.h); NULL in a
    // process started without mpirun/srun. Under ZeRO-1, opt holds only
    // this rank's shard of the moments: [opt.lo, opt.lo + opt.n).
    GradSync *sync;
    // The training stream (dropout, augmentation): nothing draws from it
    // yet, but checkpoints carry it so that what will resumes exactly.
    Rng rng;
    // Called after each micro-batch's inputs are written (graph_input_host),
    // before they are uploaded and forward runs (tests inject faults here).
    // NULL normally.
    InputsHook after_inputs;
    void *hook_ctx;
};

// Per-step figures (sums over the step's micro-batches).
typedef struct StepStats {
    double loss, kl, ce, traj, feature;
    int micro;
    long samples;
    float lr;
    double grad_norm;
} StepStats;

enum { STEP_OK = 0, STEP_SKIPPED = 1, STEP_ERROR = 2 };

// Open the data, build the vocabulary, record and plan the graph, initialise
// the weights and the optimizer. Returns 0 or 2 (error printed).
int train_state_open(TrainState *ts, Recipe *r);
// The same with the graph, the weights and the optimizer state on `device`
// (train_state_open: DEV_CPU). Checkpoints still need a CPU TrainState.
int train_state_open_on(TrainState *ts, Recipe *r, Device device);
void train_state_close(TrainState *ts);
// One optimizer step at schedule position `step`. STEP_SKIPPED: a
// non-finite loss or gradient; no weight and no optimizer state changed.
// STEP_ERROR: a data error or too many bad steps in a row (printed).
int train_step(TrainState *ts, long step, StepStats *out);

// The evaluation pass (evaluate.h's evaluate) split across the ranks, its
// sums reduced: every rank gets the metrics of every sample. max_batches:
// micro-batches of the whole evaluation (<= 0: one epoch).
struct EgoOnly;
struct EvalResult;
int train_evaluate(TrainState *ts, const struct EgoOnly *ego, long max_batches, struct EvalResult *out);

// train.init_from (train/init_from.c). The vocabulary: 1 when one was read
// from beside the weights, 0 when there is none to read (build it from the
// shards), -1 on error. The weights: 0 (loaded, or no init_from) or -1.
int init_from_vocab(const Recipe *r, const DlSet *train, Vocab *v, char *err, size_t errlen);
int init_from_weights(const Recipe *r, Graph *g, char *err, size_t errlen);

// `distil train`.
int cmd_train(int argc, char **argv);
