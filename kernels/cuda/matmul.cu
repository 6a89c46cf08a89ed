// matmul.cu: C = a @ b through cuBLAS, the twin of kernels/cpu/matmul.c.
// a [B, M, K] (or [M, K]) with b shared [K, N] or batched [B, K, N].
// Under train.precision bf16 a or b may be stored bf16 (autograd/plan.h):
// cuBLASLt reads it in place.
#include "kernels/cuda/cuda_ops.h"
#include "autograd/ops.h"                 // defines: OP_IATTR_BF16
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/gemm.cuh"          // defines: cuda_gemm_stored

namespace {

// Dims of one product and how many there are; b_batched says whether b has
// its own [K, N] per batch element.
struct MatmulDims { int B, M, K, N; bool b_batched; };

MatmulDims matmul_dims(const Tensor *out) {
    const Tensor *a = out->src[0], *b = out->src[1];
    MatmulDims d;
    d.B = a->ndim == 3 ? a->shape[0] : 1;
    d.M = a->shape[a->ndim - 2];
    d.K = a->shape[a->ndim - 1];
    d.N = b->shape[b->ndim - 1];
    d.b_batched = b->ndim == 3;
    return d;
}

}  // namespace

extern "C" void matmul_forward_cuda(Tensor *out) {
    bool bf16 = out->iattr[OP_IATTR_BF16] != 0;   // train.precision bf16 (ops.h)
    MatmulDims d = matmul_dims(out);
    const Tensor *ta = out->src[0], *tb = out->src[1];   // (B, M, K), (K, N) or (B, K, N)
    bool a16 = ta->dtype == DT_BF16, b16 = tb->dtype == DT_BF16;
    float *c = (float *)out->data;                       // (B, M, N)
    if (!d.b_batched) {
        // A shared b: the batch folds into the rows, one (B*M, K) @ (K, N).
        cuda_gemm_stored(bf16, false, false, d.B * d.M, d.N, d.K, ta->data, a16, d.K, 0, tb->data, b16, d.N, 0, 0.0f, c,
                         d.N, 0, 1);
        return;
    }
    cuda_gemm_stored(bf16, false, false, d.M, d.N, d.K, ta->data, a16, d.K, (long long)d.M * d.K, tb->data, b16, d.N,
                     (long long)d.K * d.N, 0.0f, c, d.N, (long long)d.M * d.N, d.B);
}

extern "C" void matmul_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0x3u);   // the assign/accumulate contract (grad.cuh)
    bool bf16 = out->iattr[OP_IATTR_BF16] != 0;   // train.precision bf16 (ops.h)
    MatmulDims d = matmul_dims(out);
    Tensor *ta = out->src[0], *tb = out->src[1];   // (B, M, K), (K, N) or (B, K, N)
    bool a16 = ta->dtype == DT_BF16, b16 = tb->dtype == DT_BF16;
    const float *dc = out->grad;                   // (B, M, N)
    // a and b may be one tensor (a @ a): the two products run one after the
    // other on the compute stream, the first assigning (beta 0) when the
    // contract says so and the second adding, as on the CPU.
    if (!d.b_batched) {
        int rows = d.B * d.M;
        if (ta->grad)   // da (B*M, K) += dC (B*M, N) . b^T (N, K)
            cuda_gemm_stored(bf16, false, true, rows, d.K, d.N, dc, false, d.N, 0, tb->data, b16, d.N, 0,
                             cuda_grad_beta(out, 0), ta->grad, d.K, 0, 1);
        if (tb->grad)   // db (K, N) += a^T (K, B*M) . dC (B*M, N): the batch sum is the inner dim
            cuda_gemm_stored(bf16, true, false, d.K, d.N, rows, ta->data, a16, d.K, 0, dc, false, d.N, 0,
                             cuda_grad_beta(out, 1), tb->grad, d.N, 0, 1);
        return;
    }
    long long sa = (long long)d.M * d.K, sb = (long long)d.K * d.N, sc = (long long)d.M * d.N;
    if (ta->grad)   // da_i (M, K) += dC_i (M, N) . b_i^T (N, K)
        cuda_gemm_stored(bf16, false, true, d.M, d.K, d.N, dc, false, d.N, sc, tb->data, b16, d.N, sb,
                         cuda_grad_beta(out, 0), ta->grad, d.K, sa, d.B);
    if (tb->grad)   // db_i (K, N) += a_i^T (K, M) . dC_i (M, N)
        cuda_gemm_stored(bf16, true, false, d.K, d.N, d.M, ta->data, a16, d.K, sa, dc, false, d.N, sc,
                         cuda_grad_beta(out, 1), tb->grad, d.N, sb, d.B);
}
