// train_log.h: what a training run records and shows as it goes:
// RUN_DIR/metrics.jsonl (a line per step and per evaluation, docs/metrics.md),
// TensorBoard event files in RUN_DIR/tensorboard/ (train/formats/tfevents.h),
// and the console (progress.h: a live line on a terminal, plain lines in a
// pipe). Steps are counted from 1 everywhere: step N is the N-th optimizer
// step, after which N are done (the checkpoint step_N, the eval at N).
#pragma once
#include <stdio.h>
#include "train/core/progress.h"       // defines: Progress
#include "train/core/evaluate.h"      // defines: EvalResult
#include "train/core/state.h"         // defines: StepStats
#include "train/formats/tfevents.h"   // defines: TbWriter

typedef struct TrainLog {
    const Recipe *r;
    FILE *metrics;            // RUN_DIR/metrics.jsonl; /dev/null on ranks other than 0
    TbWriter tb;              // tb.f is NULL on ranks other than 0
    Progress console;
    long start, last;         // steps done when this process began; the step it stops after
    double t_window;          // start of the current samples/s window
    long samples_window;      // samples trained in it
} TrainLog;

// Open metrics.jsonl (appended to on a resume) and a new TensorBoard event
// file; rank 0 only writes (root). Returns 0, or 2 with the error printed.
int train_log_open(TrainLog *l, const char *run_dir, int root, int resume, const Recipe *r, long start, long last);
// Step `step` (1-based) done: its metrics line and TensorBoard scalars, and
// every train.log_every steps (and the last) the console line: step/total,
// the loss and its components, lr, samples/s and ETA.
void train_log_step(TrainLog *l, long step, const StepStats *ss, int skipped);
// An evaluation after `step` steps: its metrics line, its TensorBoard
// scalars under eval/ (tb: 0 leaves them out), and with `line` a console line.
void train_log_eval(TrainLog *l, long step, const EvalResult *er, int tb, int line);
// Any other console output goes after this (it ends a live line).
void train_log_break(TrainLog *l);
void train_log_close(TrainLog *l);
