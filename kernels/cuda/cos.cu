// cos.cu: y = cos(x); dx -= sin(x) dy; the twin of kernels/cpu/cos.c.
// The accurate cosf (a few ulp, full range reduction), not the __cosf
// intrinsic, whose error grows with |x| (positional encodings reach |x| ~ 1e3).
// Elementwise through map.cuh (128-bit packs, no division per element).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/map.cuh"   // defines: cuda_map

namespace {

struct Cos {
    __device__ float operator()(float x) const { return cosf(x); }
};
struct CosGrad {   // (x, dy) -> -sin(x) dy
    __device__ float operator()(float x, float dy) const { return -(sinf(x) * dy); }
};

}  // namespace

extern "C" void cos_forward_cuda(Tensor *out) {
    const float *x[1] = { (const float *)out->src[0]->data };   // (n)
    cuda_map((float *)out->data, x, out->numel, false, Cos{});
}

extern "C" void cos_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *src = out->src[0];
    if (!src->grad) return;
    const float *in[2] = { (const float *)src->data, out->grad };   // (n), (n)
    cuda_map(src->grad, in, out->numel, true, CosGrad{});
}
