// gelu.cu: y = gelu(x), the tanh form (gelu.cuh); the twin of
// kernels/cpu/gelu.c. Elementwise through map.cuh (128-bit packs, no
// division per element); backward assigns or adds as the contract says.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/gelu.cuh"          // defines: gelu_value, gelu_slope
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin
#include "kernels/cuda/map.cuh"           // defines: cuda_map

namespace {

struct Gelu {
    __device__ float operator()(float x) const { return gelu_value(x); }
};

struct GeluBackward {   // (x, dy) -> gelu'(x) dy
    __device__ float operator()(float x, float dy) const { return gelu_slope(x) * dy; }
};

}  // namespace

extern "C" void gelu_forward_cuda(Tensor *out) {
    const float *x[1] = { (const float *)out->src[0]->data };
    cuda_map((float *)out->data, x, out->numel, false, Gelu{});
}

extern "C" void gelu_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0x1u);   // the map assigns or adds src[0]'s gradient itself
    Tensor *x = out->src[0];
    if (!x->grad) return;
    const float *in[2] = { (const float *)x->data, out->grad };
    cuda_map(x->grad, in, out->numel, !tensor_grad_assigns(out, 0), GeluBackward{});
}
