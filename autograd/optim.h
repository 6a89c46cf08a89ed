// optim.h: AdamW with decoupled weight decay, global gradient-norm
// clipping, and the warmup + cosine learning-rate schedule.
//
// Parameters, gradients and the optimizer state (m, v) share the graph's
// flat layout (graph.h): float i of each belongs to the same weight. So the
// update, the norm and the clipping are passes over a contiguous range
// [lo, hi) of the trainable prefix, and ZeRO-1 gives each rank one range.
#pragma once
#include <stddef.h>
#include "autograd/graph.h"      // defines: Graph, Tensor
#include "kernels/adamw_step.h"   // defines: AdamWStep, AdamWSpan, StepLosses

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
    // On the device: the decay runs of [lo, lo + n), shifted to start at 0,
    // and the step's scalars, loss figures and verdict.
    AdamWSpan *spans;         // (n_spans)
    int n_spans;
    AdamWStep *step_dev;      // (1)
} AdamW;

int adamw_init(AdamW *opt, const Graph *g, AdamWConfig cfg);
// The state for flat indices [lo, hi) only: a ZeRO-1 rank's shard.
int adamw_init_range(AdamW *opt, const Graph *g, AdamWConfig cfg, size_t lo, size_t hi);
void adamw_free(AdamW *opt);
// A step of the optimizer is four calls, every one of them device work
// but the first and the last, so that the middle can be captured into a
// CUDA Graph and replayed:
//   adamw_begin        this step's scalars into opt->step_dev (an upload);
//   adamw_add_losses   per micro-batch, after its forward: the loss figures
//                      summed on the device, the total's finiteness checked;
//   grad_sumsq_partials, then adamw_update: the norm's partial sums, then
//                      one pass over [lo, lo + n): norm, clip scale,
//                      finiteness, and AdamW with weight decay per span;
//   adamw_end          the one read back: losses, norm, verdict; counts
//                      the update (step += 1) when it was applied.
// The update, with g = grad * clip / grad_div:
//   m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
//   p -= lr (m / bc1 / (sqrt(v / bc2) + eps) + wd p),
// wd being 0 on the graph's decay spans without decay. A skipped step (a
// non-finite loss or norm) touches no weight and no moment.
void adamw_begin(AdamW *opt, float lr, float max_norm);
void adamw_add_losses(AdamW *opt, StepLosses l);
// Sums of squares of flat gradient indices [lo, hi), one per REDUCE_CHUNK
// counted from lo, into g->reduce_dev (the graph's device); returns how many.
size_t grad_sumsq_partials(const Graph *g, size_t lo, size_t hi);
// partial: chunks sums of squares on the graph's device, added in order.
void adamw_update(AdamW *opt, Graph *g, const double *partial, size_t chunks);
// The same with the sum of squares already on the host (the ranks' total,
// train/dist/): it is uploaded as a single partial sum.
void adamw_update_sumsq(AdamW *opt, Graph *g, double sumsq);
void adamw_end(AdamW *opt, AdamWStep *out);
// The four in one, for a tape that needs nothing between them (tests, the
// examples): the norm and the clip over the state's own range. Returns
// whether the weights moved.
int adamw_step(AdamW *opt, Graph *g, float lr, float max_norm);
// The read alone, counting nothing (the ranks' step reads its losses
// before it decides).
void adamw_peek(const AdamW *opt, AdamWStep *out);

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
