// tiny_recipe.h: tests/tiny.yaml, the tests' one tiny recipe, loaded with
// its shard globs pointed at a test's own synthetic fleet.
#pragma once
#include <stdio.h>
#include "train/recipe/recipe.h"   // defines: Recipe, recipe_load

// Relative to the repository root, where tests/run.sh runs every test.
#define TINY_RECIPE "tests/tiny.yaml"
#define TINY_MAX_SETS 32

// Load tests/tiny.yaml with data.train = SHARDS/train/*.h5 and data.eval =
// SHARDS/eval/*.h5 (with_eval) or none, then the test's own `sets`
// ("section.key=value", as --set takes them). Returns recipe_load's status.
static inline int tiny_recipe_load(Recipe *r, const char *shards, int with_eval, char *const *sets, int n_sets) {
    char train[1100], eval[1100];
    snprintf(train, sizeof train, "data.train=[\"%s/train/*.h5\"]", shards);
    if (with_eval) snprintf(eval, sizeof eval, "data.eval=[\"%s/eval/*.h5\"]", shards);
    else snprintf(eval, sizeof eval, "data.eval=[]");
    char *all[TINY_MAX_SETS + 2] = { train, eval };
    int n = 2;
    for (int i = 0; i < n_sets && n < TINY_MAX_SETS + 2; i++) all[n++] = sets[i];
    return recipe_load(r, TINY_RECIPE, all, n);
}
