// mean.cu: the mean over one axis (removed from the shape), or over
// everything (axis == OP_ALL -> [1]); the twin of kernels/cpu/mean.c: the
// sum scaled by 1/n.
// The reductions are the fixed-tree ones of axis.cu (deterministic, fp32).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "autograd/ops.h"          // defines: OP_ALL
#include "kernels/cuda/axis.cuh"   // defines: cuda_reduce_axis, cuda_broadcast_axis_add

namespace {

// x viewed as (outer, n, inner) with the reduced axis in the middle.
void mean_split(const Tensor *out, size_t *outer, size_t *n, size_t *inner) {
    const Tensor *x = out->src[0];
    if (out->iattr[0] == OP_ALL) { *outer = 1; *n = x->numel; *inner = 1; return; }
    int axis = out->iattr[0];
    size_t o = 1, in = 1;
    for (int d = 0; d < axis; d++) o *= (size_t)x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) in *= (size_t)x->shape[d];
    *outer = o;
    *n = (size_t)x->shape[axis];
    *inner = in;
}

}  // namespace

extern "C" void mean_forward_cuda(Tensor *out) {
    size_t outer, n, inner;
    mean_split(out, &outer, &n, &inner);
    cuda_reduce_axis((float *)out->data, (const float *)out->src[0]->data, nullptr, outer, n, inner, (float)(1.0 / (double)n), false);
}

extern "C" void mean_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *x = out->src[0];
    if (!x->grad) return;
    size_t outer, n, inner;
    mean_split(out, &outer, &n, &inner);
    cuda_broadcast_axis_add(out->grad, x->grad, outer, n, inner, (float)(1.0 / (double)n));
}
