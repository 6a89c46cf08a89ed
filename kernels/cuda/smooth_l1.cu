// smooth_l1.cu: masked, weighted mean of smooth_l1(pred - target) -> [1];
// the twin of kernels/cpu/smooth_l1.c, through regression.cuh.
//   l(d) = 0.5 d^2 / beta if |d| < beta, else |d| - 0.5 beta   (fattr[0] = beta)
// beta = 0 gives the L1 loss (|d| < 0 never holds).
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/regression.cuh"   // defines: regression_forward, regression_backward

namespace {

struct SmoothL1 {
    float beta;
    __device__ float value(float d) const {
        float ad = fabsf(d);
        return ad < beta ? 0.5f * d * d / beta : ad - 0.5f * beta;
    }
    // d / beta inside the quadratic zone, sign(d) outside it.
    __device__ float slope(float d) const {
        return fabsf(d) < beta ? d / beta : (d > 0.0f ? 1.0f : d < 0.0f ? -1.0f : 0.0f);
    }
};

}  // namespace

extern "C" void smooth_l1_forward_cuda(Tensor *out) { regression_forward(out, SmoothL1{ out->fattr[0] }); }
extern "C" void smooth_l1_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    regression_backward(out, SmoothL1{ out->fattr[0] });
}
