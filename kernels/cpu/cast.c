// cast.c: storage dtype between f32 and bf16 (round to nearest even, see
// f32_to_bf16 in tensor.h). Gradients are fp32 on both sides, so backward
// passes the gradient through unchanged.
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "kernels/cpu/cpu_ops.h"

void cast_forward_cpu(Tensor *out) {
    const Tensor *src = out->src[0];
    ptrdiff_t n = (ptrdiff_t)out->numel;
    if (src->dtype == out->dtype) {
        memcpy(out->data, src->data, (size_t)n * dtype_size(out->dtype));
        return;
    }
    if (out->dtype == DT_BF16) {
        const float *x = src->data;             // (n) f32
        uint16_t *y = out->data;                // (n) bf16
        #pragma omp parallel for simd if (n >= 65536)
        for (ptrdiff_t i = 0; i < n; i++) y[i] = f32_to_bf16(x[i]);
        return;
    }
    const uint16_t *x = src->data;              // (n) bf16
    float *y = out->data;                       // (n) f32
    #pragma omp parallel for simd if (n >= 65536)
    for (ptrdiff_t i = 0; i < n; i++) y[i] = bf16_to_f32(x[i]);
}

void cast_backward_cpu(Tensor *out) {
    float *dx = out->src[0]->grad;              // (n)
    if (!dx) return;
    const float *dy = out->grad;                // (n)
    ptrdiff_t n = (ptrdiff_t)out->numel;
    int assign = tensor_grad_assigns(out, 0);
    #pragma omp parallel for simd if (n >= 65536)
    for (ptrdiff_t i = 0; i < n; i++) dx[i] = assign ? dy[i] : dx[i] + dy[i];
}
