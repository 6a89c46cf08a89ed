// optim.h: AdamW with decoupled weight decay, global gradient-norm
// clipping, and the warmup + cosine learning-rate schedule.
//
// The optimizer state (m, v) is laid out exactly like the graph's flat
// gradient buffer, so a flat range [lo, hi) of gradients, moments and the
// parameters they belong to can be updated on its own: that is what ZeRO-1
// needs (each rank owns one range).
#pragma once
#include <stddef.h>
#include "autograd/graph.h"   // defines: Graph, Tensor

typedef struct AdamWConfig {
    float beta1, beta2, eps;
    float weight_decay;       // applied only to parameters with decay = 1
} AdamWConfig;

typedef struct AdamW {
    AdamWConfig cfg;
    float *m, *v;             // (n): flat gradient indices [lo, lo + n), the gradient buffer's layout
    size_t n;
    size_t lo;                // 0 unless the state is a ZeRO-1 shard (adamw_init_range)
    long step;                // updates taken (for bias correction)
    Device device;
} AdamW;

int adamw_init(AdamW *opt, const Graph *g, AdamWConfig cfg);
// The state for flat gradient indices [lo, hi) only: a ZeRO-1 rank's shard.
// adamw_update_range may then only be given ranges inside [lo, hi).
int adamw_init_range(AdamW *opt, const Graph *g, AdamWConfig cfg, size_t lo, size_t hi);
void adamw_free(AdamW *opt);
// One update of every parameter with a gradient (of the range the state
// holds): step += 1, then
// p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p) with g = grad * grad_scale.
void adamw_step(AdamW *opt, Graph *g, float lr, float grad_scale);
// The same restricted to flat gradient indices [lo, hi); the caller
// advances opt->step once per step (adamw_step does it itself).
void adamw_update_range(AdamW *opt, Graph *g, float lr, float grad_scale, size_t lo, size_t hi);

// L2 norm of the whole flat gradient buffer (accumulated in double).
double grad_global_norm(const Graph *g);
// Sum of squares of flat gradient indices [lo, hi), in REDUCE_CHUNK pieces
// counted from lo and added in order: grad_global_norm(g) is exactly
// sqrt(grad_sumsq_range(g, 0, grad_numel)).
double grad_sumsq_range(const Graph *g, size_t lo, size_t hi);
// The factor that brings the norm down to max_norm (1 when already below,
// or when max_norm <= 0, meaning no clipping).
float grad_clip_scale(double norm, float max_norm);

// Linear warmup from 0 over `warmup` steps to lr_max, then cosine decay to
// lr_min at `total` steps (held there after). step counts from 0.
float lr_schedule(long step, long warmup, long total, float lr_max, float lr_min);
