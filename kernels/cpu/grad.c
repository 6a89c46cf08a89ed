// grad.c: the assign/accumulate contract's helper for kernels that add into
// a gradient in part or in scattered order (see tensor_grad_assigns).
#include <string.h>
#include "kernels/cpu/cpu_ops.h"

float *cpu_grad_begin(Tensor *out, int i) {
    Tensor *src = out->src[i];
    if (src->grad && tensor_grad_assigns(out, i)) memset(src->grad, 0, src->numel * sizeof(float));
    return src->grad;
}

void cpu_grad_none(Tensor *out, int from) {
    for (int i = from; i < out->nsrc; i++) cpu_grad_begin(out, i);
}
