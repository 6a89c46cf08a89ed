// mean.c: the mean over one axis (removed from the shape), or over
// everything (axis == OP_ALL -> [1]); sum.c scaled by 1/n, through the same
// reductions in axis.c.
#include "autograd/ops.h"          // defines: OP_ALL
#include "kernels/cpu/cpu_ops.h"   // defines: cpu_reduce_axis, cpu_broadcast_axis_add

// x viewed as (outer, n, inner) with the averaged axis in the middle.
static void mean_split(const Tensor *out, size_t *outer, size_t *n, size_t *inner) {
    const Tensor *x = out->src[0];
    if (out->iattr[0] == OP_ALL) { *outer = 1; *n = x->numel; *inner = 1; return; }
    cpu_axis_split(x, out->iattr[0], outer, n, inner);
}

void mean_forward_cpu(Tensor *out) {
    size_t outer, n, inner;
    mean_split(out, &outer, &n, &inner);
    cpu_reduce_axis(out->src[0]->data, out->data, outer, n, inner, 1.0 / (double)n);
}

void mean_backward_cpu(Tensor *out) {
    Tensor *x = out->src[0];
    if (!cpu_grad_begin(out, 0)) return;
    size_t outer, n, inner;
    mean_split(out, &outer, &n, &inner);
    cpu_broadcast_axis_add(out->grad, x->grad, outer, n, inner, (float)(1.0 / (double)n));
}
