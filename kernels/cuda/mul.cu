// mul.cu: y = a * b, b of a's shape or of a's trailing dims (broadcast over
// a's leading dims); the twin of kernels/cpu/mul.c. Elementwise through
// map.cuh (128-bit packs; the broadcast column by a multiply-high, not a
// division). b's gradient sums a * dy over the broadcast rows with the
// fixed-tree reduction of axis.cu.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/axis.cuh"   // defines: cuda_reduce_axis
#include "kernels/cuda/map.cuh"    // defines: cuda_map, cuda_map_broadcast

namespace {

struct Times {
    __device__ float operator()(float a, float b) const { return a * b; }
};

}  // namespace

extern "C" void mul_forward_cuda(Tensor *out) {
    size_t n = out->numel, nb = out->src[1]->numel;
    float *y = (float *)out->data;                        // (rows, nb)
    const float *a = (const float *)out->src[0]->data;    // (rows, nb)
    const float *b = (const float *)out->src[1]->data;    // (nb)
    if (nb == n) {
        const float *in[2] = { a, b };
        cuda_map(y, in, n, false, Times{});
        return;
    }
    cuda_map_broadcast(y, a, b, n, nb, false, Times{});
}

extern "C" void mul_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *ta = out->src[0], *tb = out->src[1];
    const float *a = (const float *)ta->data, *b = (const float *)tb->data;   // (rows, nb), (nb)
    const float *dy = out->grad;                                              // (rows, nb)
    size_t n = out->numel, nb = tb->numel;
    // a and b may be one tensor (x * x): separate launches in stream order.
    if (ta->grad) {   // da += dy * b
        if (nb == n) {
            const float *in[2] = { dy, b };
            cuda_map(ta->grad, in, n, true, Times{});
        } else {
            cuda_map_broadcast(ta->grad, dy, b, n, nb, true, Times{});
        }
    }
    if (!tb->grad) return;
    if (nb == n) {    // db += dy * a
        const float *in[2] = { dy, a };
        cuda_map(tb->grad, in, n, true, Times{});
        return;
    }
    cuda_reduce_axis(tb->grad, dy, a, 1, n / nb, nb, 1.0f, true);   // db (nb) += sum_rows dy * a
}
