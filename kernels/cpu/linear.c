// linear.c: y = x W^T + b, the matrix products through cpu_gemm (gemm_bf16.h:
// the fp32 or the bf16 product); the bias gradient through the cache-blocked
// column sum (colsum.c).
// Under train.precision bf16, x may be stored bf16 (plan.h) and so may y
// (the qkv projection feeding the attention): the products read bf16 x as
// it is, and a bf16 y is the fp32 sum plus bias rounded once.
#include "autograd/ops.h"              // defines: OP_IATTR_BF16
#include "kernels/cpu/gemm_bf16.h"   // defines: cpu_gemm, cpu_gemm_stored, cpu_gemm_bf16_out
#include "kernels/cpu/cpu_ops.h"

void linear_forward_cpu(Tensor *out) {
    int bf16 = out->iattr[OP_IATTR_BF16];   // train.precision bf16 (ops.h)
    const Tensor *x = out->src[0], *w = out->src[1], *bias = out->nsrc > 2 ? out->src[2] : NULL;
    int O = w->shape[0], In = w->shape[1];
    int M = (int)(x->numel / In);
    int x16 = x->dtype == DT_BF16;
    if (out->dtype == DT_BF16) {   // y (M,O) bf16 = round(x . w^T + b)
        cpu_gemm_bf16_out(0, 1, M, O, In, x->data, x16, In, w->data, 0, In, bias ? (const float *)bias->data : NULL,
                          out->data);
        return;
    }
    float *y = out->data;                       // (M, O)
    if (bias) {
        const float *b = bias->data;            // (O)
        #pragma omp parallel for
        for (int m = 0; m < M; m++)
            for (int o = 0; o < O; o++) y[(size_t)m * O + o] = b[o];
    }
    // y (M,O) = x (M,I) . w (O,I)^T  [+ y]
    cpu_gemm_stored(bf16, 0, 1, M, O, In, x->data, x16, In, w->data, 0, In, bias ? 1.0f : 0.0f, y, O);
}

void linear_backward_cpu(Tensor *out) {
    int bf16 = out->iattr[OP_IATTR_BF16];   // train.precision bf16 (ops.h)
    Tensor *x = out->src[0], *w = out->src[1], *bias = out->nsrc > 2 ? out->src[2] : NULL;
    int O = w->shape[0], In = w->shape[1];
    int M = (int)(x->numel / In);
    const float *dy = out->grad;                // (M, O)
    // beta 0 when this backward assigns the gradient (tensor_grad_assigns), 1 when it adds.
    if (x->grad)   // dx (M,I) (+)= dy (M,O) . w (O,I)
        cpu_gemm(bf16, 0, 0, M, In, O, dy, O, w->data, In, tensor_grad_assigns(out, 0) ? 0.0f : 1.0f, x->grad, In);
    if (w->grad)   // dw (O,I) (+)= dy^T (O,M) . x (M,I), x as stored (bf16 or fp32)
        cpu_gemm_stored(bf16, 1, 0, O, In, M, dy, 0, O, x->data, x->dtype == DT_BF16, In,
                        tensor_grad_assigns(out, 1) ? 0.0f : 1.0f, w->grad, In);
    if (bias && bias->grad) cpu_colsum(bias->grad, dy, M, O, tensor_grad_assigns(out, 2));   // db (O) (+)= sum_rows dy
}
