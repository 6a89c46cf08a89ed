// add.cu: y = a + b, b of a's shape or of a's trailing dims (broadcast over
// a's leading dims); the twin of kernels/cpu/add.c. Forward through
// map.cuh's broadcast map: 128-bit packs, b's column by a multiply-high
// (DivMod32) instead of a 64-bit modulo per element. Backward: dy assigned
// or added to da (and to db when b has a's shape) through cuda_map, each
// write choosing assign or add itself, so nothing is zeroed first; a
// broadcast b sums dy over the rows with axis.cu's fixed-tree reduction
// (deterministic). a and b may be one tensor (x + x): two launches in
// stream order, the second adding, so neither update is lost.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin
#include "kernels/cuda/axis.cuh"          // defines: cuda_reduce_axis
#include "kernels/cuda/map.cuh"           // defines: cuda_map, cuda_map_broadcast

namespace {

struct Plus {
    __device__ float operator()(float a, float b) const { return a + b; }
};

struct Identity {
    __device__ float operator()(float v) const { return v; }
};

}  // namespace

extern "C" void add_forward_cuda(Tensor *out) {
    cuda_map_broadcast((float *)out->data,                 // (rows, nb)
                       (const float *)out->src[0]->data,   // (rows, nb)
                       (const float *)out->src[1]->data,   // (nb)
                       out->numel, out->src[1]->numel, false, Plus{});
}

extern "C" void add_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0x3u);   // every write below assigns or adds itself
    Tensor *ta = out->src[0], *tb = out->src[1];
    const float *dy[1] = { out->grad };   // (rows, nb)
    size_t n = out->numel, nb = tb->numel;
    if (ta->grad) cuda_map(ta->grad, dy, n, !tensor_grad_assigns(out, 0), Identity{});
    if (!tb->grad) return;
    if (nb == n) cuda_map(tb->grad, dy, n, !tensor_grad_assigns(out, 1), Identity{});
    else cuda_reduce_axis(tb->grad, out->grad, nullptr, 1, n / nb, nb, 1.0f, !tensor_grad_assigns(out, 1));   // db (nb) = or += sum_rows dy
}
