// scale.c: y = s * a, s = fattr[0].
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"

void scale_forward_cpu(Tensor *out) {
    const float *a = out->src[0]->data;         // (n)
    float *y = out->data;                       // (n)
    float s = out->fattr[0];
    ptrdiff_t n = (ptrdiff_t)out->numel;
    #pragma omp parallel for simd if (n >= 65536)
    for (ptrdiff_t i = 0; i < n; i++) y[i] = s * a[i];
}

void scale_backward_cpu(Tensor *out) {
    float *da = out->src[0]->grad;              // (n)
    if (!da) return;
    const float *dy = out->grad;                // (n)
    float s = out->fattr[0];
    ptrdiff_t n = (ptrdiff_t)out->numel;
    int assign = tensor_grad_assigns(out, 0);
    #pragma omp parallel for simd if (n >= 65536)
    for (ptrdiff_t i = 0; i < n; i++) da[i] = assign ? s * dy[i] : da[i] + s * dy[i];
}
