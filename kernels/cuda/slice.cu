// slice.cu: x[..., start:start+len, ...] along one axis, the twin of
// kernels/cpu/slice.c. Around that axis x is (outer, n, inner) and the
// output (outer, len, inner): a strided block copy of outer rows of
// len * inner floats (map.cuh's cuda_copy_rows: 128-bit where the row
// lengths allow, no division per element). Backward adds dy into the slice
// of dx; the map is one-to-one, so no two threads write the same float.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/map.cuh"   // defines: cuda_copy_rows

namespace {

// n = x->shape[axis], inner = prod(x->shape[axis+1:]), outer = the rest.
void slice_split(const Tensor *out, size_t *outer, size_t *n, size_t *inner) {
    const Tensor *x = out->src[0];
    int axis = out->iattr[0];
    size_t in = 1;
    for (int d = axis + 1; d < x->ndim; d++) in *= (size_t)x->shape[d];
    *n = (size_t)x->shape[axis];
    *inner = in;
    *outer = x->numel / (*n * in);
}

}  // namespace

extern "C" void slice_forward_cuda(Tensor *out) {
    size_t outer, n, inner, start = (size_t)out->iattr[1], len = (size_t)out->iattr[2];
    slice_split(out, &outer, &n, &inner);
    cuda_copy_rows((float *)out->data, len * inner,                                        // (outer, len, inner)
                   (const float *)out->src[0]->data + start * inner, n * inner,           // (outer, n, inner)
                   outer, len * inner, false);
}

extern "C" void slice_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *x = out->src[0];
    if (!x->grad) return;
    size_t outer, n, inner, start = (size_t)out->iattr[1], len = (size_t)out->iattr[2];
    slice_split(out, &outer, &n, &inner);
    cuda_copy_rows(x->grad + start * inner, n * inner, out->grad, len * inner, outer, len * inner, true);
}
