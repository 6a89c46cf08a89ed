// optim_cuda.h: the optimizer's CUDA kernels (twins: kernels/cpu/optim_cpu.h).
#pragma once
#include <stddef.h>
#include "kernels/adamw_step.h"   // defines: AdamWSpan, AdamWStep
#ifdef __cplusplus
extern "C" {
#endif

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

// The step's loss figures added into step->losses (double, on the
// device), and step->loss_finite cleared when the total is not finite:
// one small launch per micro-batch, so that the host reads them once per
// step together with the update's verdict.
void step_losses_cuda(StepLosses l, AdamWStep *step);

#ifdef __cplusplus
}
#endif
