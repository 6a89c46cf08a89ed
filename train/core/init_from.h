// init_from.h: `train.init_from`: start from a student's weights (an export
// bundle, a checkpoint directory, or a .safetensors file), keeping that
// student's vocabulary so its token embedding still means the same ids.
#pragma once
#include <stddef.h>
#include "autograd/graph.h"         // defines: Graph
#include "data/drivelog.h"          // defines: DlSet
#include "train/model/vocab.h"      // defines: Vocab
#include "train/recipe/recipe.h"    // defines: Recipe

// The vocabulary: 1 when one was read from beside the weights, 0 when there
// is none to read (build it from the shards), -1 on error.
int init_from_vocab(const Recipe *r, const DlSet *train, Vocab *v, char *err, size_t errlen);
// The weights: 0 (loaded, or no init_from) or -1.
int init_from_weights(const Recipe *r, Graph *g, char *err, size_t errlen);
