// evaluate.h: the eval pass (docs/metrics.md): the student, the teacher's
// own consistency, two baselines, and the trace metrics, on eval shards.
#pragma once
#include <stdio.h>
#include "train/core/metrics.h"    // defines: TrajMetrics, TraceMetrics, EgoOnly
#include "train/core/objective.h"   // defines: Setup, Objective, Student
#include "train/core/progress.h"    // defines: Progress

typedef struct EvalResult {
    TrajMetrics student, teacher, constant_velocity, ego_only;
    TraceMetrics trace;
    long samples;
} EvalResult;

// Fit the ego-only baseline on up to max_samples training samples (history
// and command -> the teacher's mean plan). Returns 0 or 2 (error printed).
int fit_ego_only(EgoOnly *e, const Recipe *r, const Setup *s, long max_samples);

// Run the student over the eval loader's first max_batches batches (all of
// one epoch when <= 0), with the training graph (forward only). progress:
// started here and updated per batch, or NULL for a silent pass.
int evaluate(Graph *g, Student *st, Objective *obj, const Setup *s, const Recipe *r, const Vocab *v,
             const EgoOnly *ego, Loader *ld, long max_batches, EvalResult *out, Progress *progress);

// A new eval.json object (docs/metrics.md lists the keys): doubles, to be
// dumped with JSONIO_F64; counts are integers. NULL when out of memory.
json_t *eval_object(const EvalResult *e);
// A human table of the same numbers.
void eval_print_table(const EvalResult *e, FILE *f);
