// optim_cuda.h: the optimizer's CUDA kernels (twins of autograd/optim.c's loops).
#pragma once
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

// One run of the AdamW range with one weight-decay flag, offsets relative
// to the range's first float (autograd/graph.h's DecaySpan, shifted).
typedef struct AdamWSpan {
    size_t lo, hi;
    int decay;
} AdamWSpan;

// What an optimizer step needs that changes from step to step, kept in
// device memory so that a step captured into a CUDA Graph reads this
// step's values when it is replayed. The host writes the first block
// before the step; the update writes the second.
typedef struct AdamWStep {
    float lr;            // the schedule's learning rate
    float bc1, bc2;      // 1 - beta1^t, 1 - beta2^t
    float max_norm;      // train.grad_clip; <= 0: no clipping
    float grad_div;      // the gradients are sums of this many means (micro-batches x ranks)
    int loss_finite;     // 0 when a micro-batch's loss was not finite (the step is skipped)
    // written by adamw_flat_cuda:
    float norm;          // of the mean gradient (NaN when not finite)
    int applied;         // 1: the weights moved; 0: the step was skipped
} AdamWStep;

// Sums of squares of each REDUCE_CHUNK floats (graph.h), in double, into
// partial[0 .. ceil(n / REDUCE_CHUNK)) on the device; the caller adds them in order.
void grad_sumsq_partials_cuda(const float *grad, size_t n, double *partial);

// One launch for the whole step's update of a flat range of n floats (p,
// g, m, v point at its first): every block adds the chunks' partial sums in
// order (the same bits in every block), forms the norm of the mean
// gradient, the clip scale and the finiteness check, and, unless the step
// is skipped, applies AdamW with weight decay per span (spans: device
// array, n_spans runs covering [0, n)):
//   g = grad * clip / grad_div, m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
//   p -= lr (m / bc1 / (sqrt(v / bc2) + eps) + wd p).
// 128-bit accesses when the four pointers allow.
void adamw_flat_cuda(float *p, const float *g, float *m, float *v, size_t n, const AdamWSpan *spans, int n_spans,
                     const double *partial, size_t chunks, float beta1, float beta2, float eps, float weight_decay,
                     AdamWStep *step);

// The rule on one contiguous run with the scalars given by the host (the
// tape's eager step, one launch per decay span).
void adamw_update_cuda(float *p, const float *grad, float *m, float *v, size_t n, float beta1, float beta2,
                       float eps, float lr, float grad_scale, float decay, float bc1, float bc2);

#ifdef __cplusplus
}
#endif
