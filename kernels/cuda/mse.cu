// mse.cu: masked, weighted mean of (pred - target)^2 -> [1]; the twin of
// kernels/cpu/mse.c, through regression.cuh.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/regression.cuh"   // defines: regression_forward, regression_backward

namespace {

struct Mse {
    __device__ float value(float d) const { return d * d; }
    __device__ float slope(float d) const { return 2.0f * d; }
};

}  // namespace

extern "C" void mse_forward_cuda(Tensor *out) { regression_forward(out, Mse{}); }
extern "C" void mse_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    regression_backward(out, Mse{});
}
