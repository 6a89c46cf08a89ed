// linear.cu: y = x W^T + b through cuBLAS, the twin of kernels/cpu/linear.c.
// x [..., In] viewed as (M, In); w (Out, In), PyTorch's layout; bias (Out) or none.
// Under train.precision bf16, x may be stored bf16 (autograd/plan.h), read
// by cuBLASLt in place, and so may y: the fp32 sums plus bias rounded once
// (cuda_gemm_bf16_out), as on the CPU.
#include "kernels/cuda/cuda_ops.h"
#include "autograd/ops.h"                 // defines: OP_IATTR_BF16
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/axis.cuh"          // defines: cuda_reduce_axis
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE
#include "kernels/cuda/gemm.cuh"          // defines: cuda_gemm_stored, cuda_gemm_bf16_out

namespace {

// y (M, O) = bias broadcast over the rows; the product then adds into it.
__global__ void fill_rows_kernel(float *y, const float *bias, size_t total, int O) {
    CUDA_GRID_STRIDE(i, total) y[i] = bias[i % O];
}

}  // namespace

extern "C" void linear_forward_cuda(Tensor *out) {
    bool bf16 = out->iattr[OP_IATTR_BF16] != 0;   // train.precision bf16 (ops.h)
    const Tensor *x = out->src[0], *w = out->src[1], *bias = out->nsrc > 2 ? out->src[2] : nullptr;
    int O = w->shape[0], In = w->shape[1];
    int M = (int)(x->numel / In);
    bool x16 = x->dtype == DT_BF16;
    if (out->dtype == DT_BF16) {   // y (M, O) bf16 = round(x . w^T + b)
        cuda_gemm_bf16_out(false, true, M, O, In, x->data, x16, In, w->data, false, In,
                           bias ? (const float *)bias->data : nullptr, out->data);
        return;
    }
    float *y = (float *)out->data;   // (M, O)
    if (bias) {
        fill_rows_kernel<<<cuda_grid_for(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
            y, (const float *)bias->data, out->numel, O);
        CUDA_CHECK_LAUNCH();
    }
    // y (M, O) = x (M, In) . w (O, In)^T  [+ y]
    cuda_gemm_stored(bf16, false, true, M, O, In, x->data, x16, In, 0, w->data, false, In, 0, bias ? 1.0f : 0.0f, y, O, 0, 1);
}

extern "C" void linear_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0x7u);   // the assign/accumulate contract (grad.cuh)
    bool bf16 = out->iattr[OP_IATTR_BF16] != 0;   // train.precision bf16 (ops.h)
    Tensor *x = out->src[0], *w = out->src[1], *bias = out->nsrc > 2 ? out->src[2] : nullptr;
    int O = w->shape[0], In = w->shape[1];
    int M = (int)(x->numel / In);
    const float *dy = out->grad;   // (M, O)
    // Each product and the column sum assign or add as the contract says (beta 0 or 1).
    if (x->grad)   // dx (M, In) (+)= dy (M, O) . w (O, In)
        cuda_gemm(bf16, false, false, M, In, O, dy, O, 0, (const float *)w->data, In, 0, cuda_grad_beta(out, 0),
                  x->grad, In, 0, 1);
    if (w->grad)   // dw (O, In) (+)= dy^T (O, M) . x (M, In), x as stored
        cuda_gemm_stored(bf16, true, false, O, In, M, dy, false, O, 0, x->data, x->dtype == DT_BF16, In, 0,
                         cuda_grad_beta(out, 1), w->grad, In, 0, 1);
    if (bias && bias->grad)   // db (O) (+)= sum_rows dy, a fixed-tree column sum (no atomics)
        cuda_reduce_axis(bias->grad, dy, nullptr, 1, (size_t)M, (size_t)O, 1.0f, !tensor_grad_assigns(out, 2));
}
