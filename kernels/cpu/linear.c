// linear.c: y = x W^T + b, the matrix products through OpenBLAS.
#include <cblas.h>
#include "kernels/cpu/cpu_ops.h"

void linear_forward_cpu(Tensor *out) {
    const Tensor *x = out->src[0], *w = out->src[1], *bias = out->nsrc > 2 ? out->src[2] : NULL;
    int O = w->shape[0], In = w->shape[1];
    int M = (int)(x->numel / In);
    float *y = out->data;                       // (M, O)
    if (bias) {
        const float *b = bias->data;            // (O)
        #pragma omp parallel for
        for (int m = 0; m < M; m++)
            for (int o = 0; o < O; o++) y[(size_t)m * O + o] = b[o];
    }
    // y (M,O) = x (M,I) . w (O,I)^T  [+ y]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, O, In, 1.0f,
                x->data, In, w->data, In, bias ? 1.0f : 0.0f, y, O);
}

void linear_backward_cpu(Tensor *out) {
    Tensor *x = out->src[0], *w = out->src[1], *bias = out->nsrc > 2 ? out->src[2] : NULL;
    int O = w->shape[0], In = w->shape[1];
    int M = (int)(x->numel / In);
    const float *dy = out->grad;                // (M, O)
    if (x->grad)   // dx (M,I) += dy (M,O) . w (O,I)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, In, O, 1.0f, dy, O, w->data, In, 1.0f, x->grad, In);
    if (w->grad)   // dw (O,I) += dy^T (O,M) . x (M,I)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, In, M, 1.0f, dy, O, x->data, In, 1.0f, w->grad, In);
    if (bias && bias->grad) {
        float *db = bias->grad;
        #pragma omp parallel for
        for (int o = 0; o < O; o++) {
            float s = 0.0f;
            for (int m = 0; m < M; m++) s += dy[(size_t)m * O + o];
            db[o] += s;
        }
    }
}
