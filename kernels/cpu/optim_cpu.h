// optim_cpu.h: the optimizer's pass on the CPU, the twin of
// kernels/cuda/optim_cuda.h's kernels: the same arguments, the same
// arithmetic in the same order (so the same bits, which the simulator's
// parity test checks).
#pragma once
#include <stddef.h>
#include "kernels/adamw_step.h"   // defines: AdamWSpan, AdamWStep, StepLosses

// Sums of squares of each REDUCE_CHUNK floats of grad (n), in double, into
// partial[0 .. ceil(n / REDUCE_CHUNK)); the caller adds them in order.
void grad_sumsq_partials_cpu(const float *grad, size_t n, double *partial);

// The whole step's update of a flat range of n floats, as adamw_flat_cuda:
// the norm from the chunks' partial sums added in order, the clip scale,
// the finiteness check (step->norm, step->applied), then, unless skipped,
// AdamW with decay per span, 8 floats per instruction, in one parallel
// region whose threads each take a contiguous share of [0, n).
void adamw_flat_cpu(float *p, const float *g, float *m, float *v, size_t n, const AdamWSpan *spans, int n_spans,
                    const double *partial, size_t chunks, float beta1, float beta2, float eps, float weight_decay,
                    AdamWStep *step);

// The step's loss figures added into step->losses, and
// step->loss_finite cleared when the total is not finite (step_losses_cuda).
void step_losses_cpu(StepLosses l, AdamWStep *step);
