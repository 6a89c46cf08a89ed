// optim_cuda.h: the optimizer's CUDA kernels (twins of autograd/optim.c's loops).
#pragma once
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
void adamw_update_cuda(float *p, const float *grad, float *m, float *v, size_t n, float beta1, float beta2,
                       float eps, float lr, float grad_scale, float decay, float bc1, float bc2);
// Sums of squares of each REDUCE_CHUNK floats (graph.h), in double, into
// partial[0 .. ceil(n / REDUCE_CHUNK)) on the device; the caller adds them in order.
void grad_sumsq_partials_cuda(const float *grad, size_t n, double *partial);
#ifdef __cplusplus
}
#endif
