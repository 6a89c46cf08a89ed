// memory.h: the bytes a recipe's training step holds, planned from the
// recipe and its shards without training and without allocating
// (`distil recipe check --memory`).
#pragma once
#include <stddef.h>
#include <stdio.h>
#include "autograd/graph.h"          // defines: GraphMemory
#include "train/recipe/recipe.h"     // defines: Recipe

typedef struct MemoryPlan {
    GraphMemory graph;        // the tape's arenas at the recipe's micro-batch
    size_t optimizer;         // AdamW's m and v for the trainable parameters, unsharded
    size_t n_params;          // parameter floats
    int seq_len;              // tokens per sample
    int vocab;                // the student vocabulary
} MemoryPlan;

// Opens the training shards' metadata, builds the vocabulary as training
// would (or inherits train.init_from's), records the student and its
// objective at train.micro_batch, and sizes the arenas. 0, or 2 after one
// error line.
int memory_plan(const Recipe *r, MemoryPlan *m);
// As YAML comments, so `distil recipe check --memory` still prints a recipe.
void memory_plan_print(const MemoryPlan *m, const Recipe *r, FILE *f);
