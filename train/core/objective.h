// objective.h: the student built from a recipe and the shards, its
// distillation objective, and how a loader batch becomes the graph's inputs.
// What `distil train`, `distil eval` and the report share.
#pragma once
#include <stdint.h>
#include "autograd/graph.h"         // defines: Graph, Tensor
#include "data/loader.h"            // defines: Batch, DlSet
#include "train/model/model.h"      // defines: Student, ModelConfig
#include "train/model/vocab.h"      // defines: Vocab
#include "train/recipe/recipe.h"    // defines: Recipe

// The distillation objective's inputs and its components.
//
// Each loss is normalised over the whole global batch, not per micro-batch:
// its op (autograd/ops.h) averages over the rows it counts in this
// micro-batch (trace positions, samples), and that mean is multiplied by
// the micro-batch's share of the global batch's count, n_m / N, N summed
// over every micro-batch of the step on every rank before the first
// backward (train_step). The shares' sum over the step is then the mean
// over all N rows, and the gradients are its gradient: how the batch is
// split across micro-batches and ranks changes only rounding.
typedef struct Objective {
    Tensor *ce_targets;       // i32 (B, L): the teacher's trace in student ids, -1 where masked
    Tensor *topk_ids;         // i32 (B, L, k): student ids, -1 outside the vocabulary
    Tensor *topk_logprobs;    // f32 (B, L, k): at the logged temperature
    Tensor *kl_mask;          // f32 (B, L)
    Tensor *traj_targets;     // f32 (B, Kt, T, 3): Kt = 1 for teacher_mean and ground_truth, else K
    Tensor *traj_weights;     // f32 (B, Kt)
    Tensor *feat_target;      // f32 (B, Dt) or NULL
    Tensor *feat_mask;        // f32 (B) or NULL
    // f32 [1] each: this micro-batch's count over the global batch's, n_m / N
    // (1 when the micro-batch is the whole batch, as in eval).
    Tensor *kl_share, *ce_share, *traj_share, *feature_share;
    // Components (each [1], NULL when its weight is 0): this micro-batch's
    // part of the global batch's mean, share x the op's mean; and their
    // weighted sum.
    Tensor *kl, *ce, *traj, *feature, *total;
    int vocab;                // V of the logits the token losses read
} Objective;

// The rows each loss counts in one micro-batch (what its op averages
// over): trace positions for kl and ce, samples for traj and feature.
typedef struct LossCounts {
    double kl, ce, traj, feature;
} LossCounts;

// Everything derived from the recipe and the first training shard.
typedef struct Setup {
    ModelConfig mc;
    int cam_index[DL_MAX_CAMERAS];   // shard camera index of each student camera
    int shard_frames;                // F in the shards
    int shard_horizon;               // T in the shards
    int K, k, D;                     // teacher samples, top-k width, embedding width (shards)
    float t_logged;                  // temperature of the logged top-k
} Setup;

// Check the recipe against the shards and fill s (objective.c). Returns 0,
// or prints one error line (naming the recipe key or the shard) and returns 2.
int setup_from_shards(Setup *s, const Recipe *r, const DlSet *set, int vocab_size);

// Record the student and its objective for micro-batch B (objective.c).
void objective_build(Graph *g, Student *st, Objective *obj, const Setup *s, const Recipe *r, int B);

// The rows each loss of the objective counts in the inputs batch_to_inputs
// wrote (read on the host), by its op's own rule (objective.c).
LossCounts objective_counts(const Objective *obj);
// Write each loss's share of the global batch, mine / global (0 where the
// global count is 0), into the share inputs (objective.c).
void objective_set_shares(Objective *obj, const LossCounts *mine, const LossCounts *global);

// Write one batch where the host writes the graph's inputs (inputs.c):
// graph_input_host, the arena itself on a CPU tape, its host mirror on a
// device tape, which graph_upload_inputs then copies over. The loss shares
// are set to 1 (the micro-batch alone); train_step then sets them. Returns
// the number of valid samples.
int batch_to_inputs(const Batch *b, const Setup *s, const Recipe *r, const Vocab *v, Student *st, Objective *obj);
