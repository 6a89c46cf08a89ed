// init_from.h: `train.init_from`: start from a student's weights (an export
// bundle, a checkpoint directory, or a .safetensors file), keeping that
// student's vocabulary so its token embedding still means the same ids, and
// its attention mask so its weights still compute what they learnt.
#pragma once
#include <stddef.h>
#include "autograd/graph.h"         // defines: Graph
#include "autograd/ops.h"           // defines: AttnMode
#include "data/drivelog.h"          // defines: DlSet
#include "train/core/objective.h"  // defines: Setup
#include "train/model/vocab.h"      // defines: Vocab
#include "train/recipe/recipe.h"    // defines: Recipe

// The vocabulary: 1 when one was read from beside the weights, 0 when there
// is none to read (build it from the shards), -1 on error.
int init_from_vocab(const Recipe *r, const DlSet *train, Vocab *v, char *err, size_t errlen);
// The attention mask: the one in the model config of the weights' metadata
// (an export's or a checkpoint's; a config without "attention" is causal)
// replaces *mode. A file without a model config leaves *mode alone.
// 1 when *mode changed, 0 when not, -1 on error.
int init_from_attention(const Recipe *r, AttnMode *mode, char *err, size_t errlen);
// The student's inputs and outputs against this run's (s, from the recipe
// and the shards): its input normalisation, image size, cameras, horizon
// and trajectory representation must be this run's, or fine-tuning would
// feed it other numbers than it learned from. Read from the weights'
// metadata (model_config, and an export's cameras); a file without it is
// not checked. Returns 0, or 2 with one line naming the recipe key and
// both values.
int init_from_check(const Recipe *r, const Setup *s, const DlSet *train);
// The weights: 0 (loaded, or no init_from) or -1.
int init_from_weights(const Recipe *r, Graph *g, char *err, size_t errlen);
