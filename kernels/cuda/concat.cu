// concat.cu: n (<= 4) tensors joined along one axis, the twin of
// kernels/cpu/concat.c. Around that axis input s is (outer, n_s, inner) and
// the output (outer, n_out, inner); input s fills axis positions
// [off_s, off_s + n_s) of each outer slice: a strided block copy of outer
// rows of n_s * inner floats (map.cuh's cuda_copy_rows: 128-bit where the
// row lengths allow, no division per element).
//
// One launch per input, in both directions: an input may appear twice
// (concat(x, x)), and separate launches in stream order keep its two
// gradient updates from racing.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/map.cuh"   // defines: cuda_copy_rows

namespace {

// inner = prod(out->shape[axis+1:]), n_out = out->shape[axis], outer = the rest.
void concat_split(const Tensor *out, size_t *outer, size_t *n_out, size_t *inner) {
    int axis = out->iattr[0];
    size_t in = 1;
    for (int d = axis + 1; d < out->ndim; d++) in *= (size_t)out->shape[d];
    *n_out = (size_t)out->shape[axis];
    *inner = in;
    *outer = out->numel / (*n_out * in);
}

}  // namespace

extern "C" void concat_forward_cuda(Tensor *out) {
    size_t outer, n_out, inner, off = 0;
    concat_split(out, &outer, &n_out, &inner);
    for (int s = 0; s < out->nsrc; s++) {
        const Tensor *x = out->src[s];
        size_t n_s = (size_t)x->shape[out->iattr[0]];
        cuda_copy_rows((float *)out->data + off * inner, n_out * inner,   // (outer, n_out, inner)
                       (const float *)x->data, n_s * inner,               // (outer, n_s, inner)
                       outer, n_s * inner, false);
        off += n_s;
    }
}

extern "C" void concat_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    size_t outer, n_out, inner, off = 0;
    concat_split(out, &outer, &n_out, &inner);
    for (int s = 0; s < out->nsrc; s++) {
        Tensor *x = out->src[s];
        size_t n_s = (size_t)x->shape[out->iattr[0]];
        if (x->grad) cuda_copy_rows(x->grad, n_s * inner, out->grad + off * inner, n_out * inner, outer, n_s * inner, true);
        off += n_s;
    }
}
