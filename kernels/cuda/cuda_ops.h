// cuda_ops.h: the CUDA kernels, one pair per op, twins of kernels/cpu (same
// names with _cuda). Compiled only when nvcc is found (DISTIL_CUDA defined);
// the binary still runs without a GPU and picks its backend at run time.
#pragma once
#include "autograd/tensor.h"   // defines: Tensor
#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_KERNEL_PAIR(op) \
    void op##_forward_cuda(Tensor *out); \
    void op##_backward_cuda(Tensor *out);

CUDA_KERNEL_PAIR(matmul)
CUDA_KERNEL_PAIR(linear)
CUDA_KERNEL_PAIR(add)
CUDA_KERNEL_PAIR(mul)
CUDA_KERNEL_PAIR(scale)
CUDA_KERNEL_PAIR(layernorm)
CUDA_KERNEL_PAIR(gelu)
CUDA_KERNEL_PAIR(softmax)
CUDA_KERNEL_PAIR(attention)
CUDA_KERNEL_PAIR(embedding)
CUDA_KERNEL_PAIR(concat)
CUDA_KERNEL_PAIR(slice)
CUDA_KERNEL_PAIR(transpose)
CUDA_KERNEL_PAIR(sum)
CUDA_KERNEL_PAIR(mean)
CUDA_KERNEL_PAIR(patchify)
CUDA_KERNEL_PAIR(sin)
CUDA_KERNEL_PAIR(cos)
CUDA_KERNEL_PAIR(cumsum)
CUDA_KERNEL_PAIR(cross_entropy)
CUDA_KERNEL_PAIR(smooth_l1)
CUDA_KERNEL_PAIR(mse)
CUDA_KERNEL_PAIR(cast)
CUDA_KERNEL_PAIR(distill_kl)
CUDA_KERNEL_PAIR(traj_loss)
CUDA_KERNEL_PAIR(cosine_loss)
CUDA_KERNEL_PAIR(bias_gelu)
CUDA_KERNEL_PAIR(bias_residual)

// TF32 tensor cores for matmul and linear (off by default; see
// kernels/cuda/context.cuh). Callable before any CUDA tape exists.
void cuda_set_allow_tf32(int allow);
int cuda_allow_tf32(void);

#ifdef __cplusplus
}
#endif
