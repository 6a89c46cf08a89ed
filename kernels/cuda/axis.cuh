// axis.cuh: reductions along one axis and their broadcasts back, shared by
// sum, mean, the broadcast grads of add and mul, and linear's bias grad
// (kernels/cuda/axis.cu). Around the axis a tensor is (outer, n, inner).
#pragma once
#include <cstddef>

// dst (outer, inner) = [dst +] scale * sum_j src[o, j, k] * (src2 ? src2[o, j, k] : 1).
// Deterministic: each output is reduced by one block in a fixed tree (no
// atomics), so the bits depend only on the shapes. fp32 accumulation.
void cuda_reduce_axis(float *dst, const float *src, const float *src2,
                      size_t outer, size_t n, size_t inner, float scale, bool accumulate);

// dx (outer, n, inner) += scale * dy (outer, inner), broadcast over n.
void cuda_broadcast_axis_add(const float *dy, float *dx, size_t outer, size_t n, size_t inner, float scale);
