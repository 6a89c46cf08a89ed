// scale.cu: y = s * a, s = fattr[0]; the twin of kernels/cpu/scale.c.
// Elementwise through map.cuh (128-bit packs, no division per element).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/map.cuh"   // defines: cuda_map

namespace {

struct ScaleBy {
    float s;
    __device__ float operator()(float x) const { return s * x; }
};

}  // namespace

extern "C" void scale_forward_cuda(Tensor *out) {
    const float *x[1] = { (const float *)out->src[0]->data };   // (n)
    cuda_map((float *)out->data, x, out->numel, false, ScaleBy{ out->fattr[0] });
}

extern "C" void scale_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    float *da = out->src[0]->grad;   // (n)
    if (!da) return;
    const float *dy[1] = { out->grad };
    cuda_map(da, dy, out->numel, true, ScaleBy{ out->fattr[0] });
}
