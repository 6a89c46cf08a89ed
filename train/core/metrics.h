// metrics.h: driving and trace metrics, and the two baselines they are
// compared with (docs/metrics.md defines each).
#pragma once
#include <stdint.h>
#include <stdio.h>
#include "train/formats/json_io.h"   // defines: json_t

// Sums over samples; traj_metric and traj_metrics_object divide.
typedef struct TrajMetrics {
    double n_gt, n_teacher;                                   // samples counted for each target
    double ade_gt, ade_gt_1s, ade_gt_3s, fde_gt;
    double ade_teacher, ade_teacher_1s, ade_teacher_3s, fde_teacher;
    double min_ade_teacher;
} TrajMetrics;

// One sample. pred, gt: (T, 3); teacher: (K, T, 3) with weights w (K,
// summing to 1). gt may be NULL (no logged future): only teacher metrics.
void traj_metrics_add(TrajMetrics *m, const float *pred, const float *gt, const float *teacher,
                      const float *w, int K, int T, float hz);
// A new object {"ade_gt": .., "ade_gt_1s": .., "ade_gt_3s": .., "fde_gt": ..,
// "ade_teacher": .., ..., "min_ade_teacher": ..} ("min_ade_teacher" only when
// with_min), doubles. NaN-free: a metric with no sample is null.
json_t *traj_metrics_object(const TrajMetrics *m, int with_min);
// The mean of one field, or NaN when nothing was counted.
double traj_metric(const TrajMetrics *m, const char *name);

// The teacher's weighted mean plan (T, 3).
void teacher_mean_traj(const float *teacher, const float *w, int K, int T, float *out);
// The same over the first n floats of K plans that lie `stride` floats
// apart (a batch's plans hold the shards' horizon, the model may use fewer
// steps). Accumulated in double.
void teacher_mean_strided(const float *plans, size_t stride, const float *w, int K, int n, float *out);

// Constant velocity: the last history step's velocity (from the (x, y) of
// rows Th-2 and Th-1) held for T steps; yaw held at the velocity's heading.
void baseline_constant_velocity(const float *history /* (Th, 4) */, int Th, int T, float hz, float *out /* (T, 3) */);

// Ego-only: ridge regression from the ego history and the command to the
// teacher's mean plan, fitted in closed form on training samples.
typedef struct EgoOnly {
    int Th, T, n_feat;
    double *xtx, *xty;       // (n_feat, n_feat), (n_feat, T*3) normal equations
    float *coef;             // (n_feat, T*3) after ego_only_fit
    long n_fit;
} EgoOnly;
int ego_only_init(EgoOnly *e, int Th, int T);
void ego_only_add(EgoOnly *e, const float *history, int command, const float *target /* (T, 3) */);
// Solve with ridge strength lambda (relative to the mean diagonal). 0 or -1.
int ego_only_fit(EgoOnly *e, double lambda);
void ego_only_predict(const EgoOnly *e, const float *history, int command, float *out /* (T, 3) */);
void ego_only_free(EgoOnly *e);

// Trace metrics over positions.
typedef struct TraceMetrics {
    double positions, correct, majority_correct, kl_sum;
} TraceMetrics;
// One position: student logits (V), the teacher's token (student id), the
// teacher's top-k (student ids, -1 outside the vocabulary) and log-probs at
// the logged temperature, the majority token. The KL is forward KL(teacher ||
// student) at temperature 1 with a tail bucket for the mass outside the top-k.
void trace_metrics_add(TraceMetrics *m, const float *logits, int V, int target, const int32_t *topk_ids,
                       const float *topk_logprobs, int k, float t_logged, int majority_token);
