// sum.c: the sum over one axis (removed from the shape), or over everything
// (axis == OP_ALL -> [1]). The reductions themselves are in axis.c, shared
// with mean.
#include "autograd/ops.h"          // defines: OP_ALL
#include "kernels/cpu/cpu_ops.h"   // defines: cpu_reduce_axis, cpu_broadcast_axis_add

// x viewed as (outer, n, inner) with the summed axis in the middle.
static void sum_split(const Tensor *out, size_t *outer, size_t *n, size_t *inner) {
    const Tensor *x = out->src[0];
    if (out->iattr[0] == OP_ALL) { *outer = 1; *n = x->numel; *inner = 1; return; }
    cpu_axis_split(x, out->iattr[0], outer, n, inner);
}

void sum_forward_cpu(Tensor *out) {
    size_t outer, n, inner;
    sum_split(out, &outer, &n, &inner);
    cpu_reduce_axis(out->src[0]->data, out->data, outer, n, inner, 1.0);
}

void sum_backward_cpu(Tensor *out) {
    Tensor *x = out->src[0];
    if (!cpu_grad_begin(out, 0)) return;
    size_t outer, n, inner;
    sum_split(out, &outer, &n, &inner);
    cpu_broadcast_axis_add(out->grad, x->grad, outer, n, inner, 1.0f);
}
