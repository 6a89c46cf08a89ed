// optim.h: AdamW with decoupled weight decay, global gradient-norm
// clipping, and the warmup + cosine learning-rate schedule.
//
// Parameters, gradients and the optimizer state (m, v) share the graph's
// flat layout (graph.h): float i of each belongs to the same weight. So the
// update, the norm and the clipping are passes over a contiguous range
// [lo, hi) of the trainable prefix, and ZeRO-1 gives each rank one range.
#pragma once
#include <stddef.h>
#include "autograd/graph.h"   // defines: Graph, Tensor

typedef struct AdamWConfig {
    float beta1, beta2, eps;
    float weight_decay;       // applied only to parameters with decay = 1
} AdamWConfig;

typedef struct AdamW {
    AdamWConfig cfg;
    float *m, *v;             // (n): flat indices [lo, lo + n) of the layout
    size_t n;
    size_t lo;                // 0 unless the state is a ZeRO-1 shard (adamw_init_range)
    long step;                // updates taken (for bias correction)
    Device device;
} AdamW;

int adamw_init(AdamW *opt, const Graph *g, AdamWConfig cfg);
// The state for flat indices [lo, hi) only: a ZeRO-1 rank's shard.
int adamw_init_range(AdamW *opt, const Graph *g, AdamWConfig cfg, size_t lo, size_t hi);
void adamw_free(AdamW *opt);
// One update of the range the state holds (every trainable parameter, or a
// shard): step += 1, then over [lo, lo + n) of the flat layout
// p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p) with g = grad * grad_scale,
// wd being 0 on the graph's decay spans without decay.
void adamw_step(AdamW *opt, Graph *g, float lr, float grad_scale);

// L2 norm of the whole flat gradient buffer (accumulated in double).
double grad_global_norm(const Graph *g);
// Sum of squares of flat indices [lo, hi) of the gradients, in REDUCE_CHUNK pieces
// counted from lo and added in order: grad_global_norm(g) is exactly
// sqrt(grad_sumsq_range(g, 0, grad_numel)).
double grad_sumsq_range(const Graph *g, size_t lo, size_t hi);
// The factor that brings the norm down to max_norm (1 when already below,
// or when max_norm <= 0, meaning no clipping).
float grad_clip_scale(double norm, float max_norm);

// Linear warmup from 0 over `warmup` steps to lr_max, then cosine decay to
// lr_min at `total` steps (held there after). step counts from 0.
float lr_schedule(long step, long warmup, long total, float lr_max, float lr_min);
