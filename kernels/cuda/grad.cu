// grad.cu: the assign/accumulate contract's helper (grad.cuh).
#include "kernels/cuda/grad.cuh"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK

void cuda_grads_begin(Tensor *out, unsigned self) {
    for (int i = 0; i < out->nsrc; i++) {
        Tensor *s = out->src[i];
        if (s->grad && tensor_grad_assigns(out, i) && !((self >> i) & 1u))
            CUDA_CHECK(cudaMemsetAsync(s->grad, 0, s->numel * sizeof(float), cuda_compute_stream()));
    }
}
