// grad.cuh: the assign/accumulate contract of backward kernels on the device
// (Tensor.grad_assign in autograd/tensor.h: the first writer of a gradient
// in a backward assigns it, later ones add; nothing zeroes gradients
// beforehand). kernels/cuda/grad.cu.
#pragma once
#include "autograd/tensor.h"   // defines: Tensor, tensor_grad_assigns

// Zeroes, on the compute stream, every source gradient out's backward must
// assign, except those in `self` (bit i: the kernel assigns src[i] itself,
// e.g. a product with beta 0). A backward that then adds (+=) everywhere
// keeps the contract.
void cuda_grads_begin(Tensor *out, unsigned self);
// The beta of a product writing src[i]'s gradient: 0 to assign, 1 to add.
static inline float cuda_grad_beta(const Tensor *out, int i) { return tensor_grad_assigns(out, i) ? 0.0f : 1.0f; }
