// bundle.h: a trained student on disk, read back for `distil export`,
// `distil eval` and `distil report`: a checkpoint directory
// (model.safetensors with format "distil-checkpoint", vocab.json) or an
// export (model.safetensors with format "distil-export", config.json,
// vocab.json). docs/export.md describes both.
#pragma once
#include "data/drivelog.h"    // defines: DlSet, DL_MAX_CAMERAS
#include "train/model/model.h"      // defines: ModelConfig, Student
#include "train/recipe/recipe.h"     // defines: Recipe
#include "train/formats/safetensors.h"// defines: StFile
#include "train/core/objective.h"   // defines: Setup, Objective
#include "train/model/vocab.h"      // defines: Vocab

#define BUNDLE_FORMAT_VERSION "1"

typedef struct Bundle {
    int is_export;                       // 0: a checkpoint
    char dir[1024];
    ModelConfig mc;                      // the architecture as trained (feat_dim included)
    Vocab vocab;
    // Camera names in the model's order: an export's config.json, or a
    // checkpoint recipe's data.cameras, or (that list empty) the cameras of
    // its first data.train shard when it can be opened from here. 0 names:
    // unknown, the shards' cameras are taken in their order.
    int n_cameras;
    char *camera_names[DL_MAX_CAMERAS];
    char *recipe_yaml;                   // checkpoint: the resolved recipe it was trained with; else NULL
    Recipe recipe;                       // that recipe, loaded (has_recipe)
    int has_recipe;
    long step;                           // the training step of the weights; -1 when unknown
    StFile *weights;                     // model.safetensors, open and validated
} Bundle;

// Open DIR as a checkpoint or an export and check it is complete. Returns 0,
// or prints one error line ("distil: error: DIR/file: what; what to do")
// and returns 2 (b is then empty; bundle_close is still safe).
int bundle_open(Bundle *b, const char *dir);
void bundle_close(Bundle *b);

// The student alone, for batch size B, with the bundle's weights loaded
// (the feature head, a training aid, is left out: cfg.feat_dim = 0).
// Returns 0, or 2 with the error printed. The graph is *g's to free.
int bundle_student(const Bundle *b, int B, Graph **g, Student *st);

// A forward-only student on a set of shards: the graph, its inputs as the
// trainer writes them (batch_to_inputs), and the weights. The recipe is
// made up from the bundle (its architecture and cameras, default
// distillation settings) so that train/core/objective.h applies unchanged.
typedef struct Inference {
    Recipe r;
    Setup s;
    Graph *g;
    Student st;
    Objective obj;
} Inference;

// Check that the shards suit the bundle (cameras, frames, image size,
// history, horizon, rate) and build everything for micro-batch B. Returns 0,
// or 2 with one error line naming what differs.
int inference_open(Inference *m, const Bundle *b, const DlSet *set, int B);
void inference_close(Inference *m);
