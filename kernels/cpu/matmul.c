// matmul.c: C = a @ b, batched a [B, M, K] with b shared [K, N] or batched
// [B, K, N]; the products through cpu_gemm_stored (gemm_bf16.h, itself
// threaded, so the batch loop stays serial rather than nesting parallel
// regions). Under
// train.precision bf16 a or b may be stored bf16 (plan.h): the products
// read them as they are (cpu_gemm_stored).
#include "autograd/ops.h"              // defines: OP_IATTR_BF16
#include "kernels/cpu/gemm_bf16.h"   // defines: cpu_gemm_stored
#include "kernels/cpu/cpu_ops.h"

// Dims of one product and how many there are; b_batched says whether b has
// its own [K, N] per batch element.
typedef struct { int B, M, K, N, b_batched; } MatmulDims;

static MatmulDims matmul_dims(const Tensor *out) {
    const Tensor *a = out->src[0], *b = out->src[1];
    MatmulDims d;
    d.B = a->ndim == 3 ? a->shape[0] : 1;
    d.M = a->shape[a->ndim - 2];
    d.K = a->shape[a->ndim - 1];
    d.N = b->shape[b->ndim - 1];
    d.b_batched = b->ndim == 3;
    return d;
}

// Element offset i of a tensor's data, whatever its float dtype.
static const void *at(const Tensor *t, size_t i) { return (const char *)t->data + i * dtype_size(t->dtype); }

void matmul_forward_cpu(Tensor *out) {
    int bf16 = out->iattr[OP_IATTR_BF16];   // train.precision bf16 (ops.h)
    MatmulDims d = matmul_dims(out);
    const Tensor *ta = out->src[0], *tb = out->src[1];   // (B, M, K), (K, N) or (B, K, N)
    int a16 = ta->dtype == DT_BF16, b16 = tb->dtype == DT_BF16;
    float *c = out->data;                       // (B, M, N)
    if (!d.b_batched) {
        // A shared b: the batch folds into the rows, one (B*M, K) @ (K, N).
        cpu_gemm_stored(bf16, 0, 0, d.B * d.M, d.N, d.K, ta->data, a16, d.K, tb->data, b16, d.N, 0.0f, c, d.N);
        return;
    }
    for (int i = 0; i < d.B; i++)
        cpu_gemm_stored(bf16, 0, 0, d.M, d.N, d.K, at(ta, (size_t)i * d.M * d.K), a16, d.K, at(tb, (size_t)i * d.K * d.N),
                        b16, d.N, 0.0f, c + (size_t)i * d.M * d.N, d.N);
}

void matmul_backward_cpu(Tensor *out) {
    int bf16 = out->iattr[OP_IATTR_BF16];   // train.precision bf16 (ops.h)
    MatmulDims d = matmul_dims(out);
    Tensor *ta = out->src[0], *tb = out->src[1];   // (B, M, K), (K, N) or (B, K, N)
    int a16 = ta->dtype == DT_BF16, b16 = tb->dtype == DT_BF16;
    const float *dc = out->grad;                // (B, M, N)
    // beta 0 when this backward assigns the gradient (tensor_grad_assigns).
    float beta_a = tensor_grad_assigns(out, 0) ? 0.0f : 1.0f, beta_b = tensor_grad_assigns(out, 1) ? 0.0f : 1.0f;
    if (!d.b_batched) {
        int rows = d.B * d.M;
        if (ta->grad)   // da (B*M, K) += dC (B*M, N) . b^T (N, K)
            cpu_gemm_stored(bf16, 0, 1, rows, d.K, d.N, dc, 0, d.N, tb->data, b16, d.N, beta_a, ta->grad, d.K);
        if (tb->grad)   // db (K, N) += a^T (K, B*M) . dC (B*M, N): the batch sum is the inner dim
            cpu_gemm_stored(bf16, 1, 0, d.K, d.N, rows, ta->data, a16, d.K, dc, 0, d.N, beta_b, tb->grad, d.N);
        return;
    }
    for (int i = 0; i < d.B; i++) {
        const void *ai = at(ta, (size_t)i * d.M * d.K);   // (M, K)
        const void *bi = at(tb, (size_t)i * d.K * d.N);   // (K, N)
        const float *dci = dc + (size_t)i * d.M * d.N;    // (M, N)
        if (ta->grad)
            cpu_gemm_stored(bf16, 0, 1, d.M, d.K, d.N, dci, 0, d.N, bi, b16, d.N, beta_a, ta->grad + (size_t)i * d.M * d.K, d.K);
        if (tb->grad)
            cpu_gemm_stored(bf16, 1, 0, d.K, d.N, d.M, ai, a16, d.K, dci, 0, d.N, beta_b, tb->grad + (size_t)i * d.K * d.N, d.N);
    }
}
