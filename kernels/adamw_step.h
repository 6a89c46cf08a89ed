// adamw_step.h: what the optimizer's one pass reads and writes besides the
// flat buffers, shared by its CPU twin (kernels/cpu/optim_cpu.c) and its
// CUDA kernel (kernels/cuda/optim_cuda.cu), so that both read the same
// layout and a parity test can compare them.
#pragma once
#include <stddef.h>

// The step's loss figures as the tape holds them: [1] fp32 scalars in the
// activation arena (fixed addresses once planned), NULL where the
// objective has no such term. x[0] is the total, whose finiteness decides.
#define STEP_LOSSES 5   // total, kl, ce, traj, feature
typedef struct StepLosses {
    const float *x[STEP_LOSSES];
} StepLosses;

// One run of the AdamW range with one weight-decay flag, offsets relative
// to the range's first float (autograd/graph.h's DecaySpan, shifted).
typedef struct AdamWSpan {
    size_t lo, hi;
    int decay;
} AdamWSpan;

// What an optimizer step needs that changes from step to step, kept in the
// memory of the device that runs the pass, so that a step captured into a
// CUDA Graph reads this step's values when it is replayed. The host writes
// the first block before the step; each micro-batch's loss check
// (step_losses_*) adds its figures and may clear loss_finite; the update
// writes the norm and the verdict. The host reads the whole struct back
// once per step.
typedef struct AdamWStep {
    float lr;            // the schedule's learning rate
    float bc1, bc2;      // 1 - beta1^t, 1 - beta2^t
    float max_norm;      // train.grad_clip; <= 0: no clipping
    float grad_div;      // the gradients are sums of this many means (1: they are the mean's already)
    int loss_finite;     // 0 when a micro-batch's loss was not finite (the step is skipped)
    // written by the update:
    double norm;         // of the mean gradient (NaN when the step is skipped)
    int applied;         // 1: the weights moved; 0: the step was skipped
    double losses[STEP_LOSSES];   // the micro-batches' loss figures, summed (StepLosses' order)
} AdamWStep;
