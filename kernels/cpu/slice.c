// slice.c: x[..., start:start+len, ...] along one axis. Around that axis x is
// (outer, n, inner) and the output (outer, len, inner); each outer row of the
// output is one contiguous run of len * inner floats of x.
#include <string.h>
#include "kernels/cpu/cpu_ops.h"

// Below this many floats a parallel region costs more than it saves.
#define SLICE_PAR_MIN 16384

void slice_forward_cpu(Tensor *out) {
    const Tensor *x_t = out->src[0];
    size_t outer, n, inner;
    cpu_axis_split(x_t, out->iattr[0], &outer, &n, &inner);
    size_t start = (size_t)out->iattr[1], run = (size_t)out->iattr[2] * inner;
    const float *x = x_t->data;                 // (outer, n, inner)
    float *y = out->data;                       // (outer, len, inner)
    ptrdiff_t O = (ptrdiff_t)outer;
    #pragma omp parallel for if (out->numel >= SLICE_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++)
        memcpy(y + o * run, x + (o * n + start) * inner, run * sizeof *y);
}

void slice_backward_cpu(Tensor *out) {
    Tensor *x_t = out->src[0];
    if (!cpu_grad_begin(out, 0)) return;   // the slice covers part of x: zero it first when assigning
    size_t outer, n, inner;
    cpu_axis_split(x_t, out->iattr[0], &outer, &n, &inner);
    size_t start = (size_t)out->iattr[1];
    ptrdiff_t O = (ptrdiff_t)outer, R = (ptrdiff_t)((size_t)out->iattr[2] * inner);
    const float *dy = out->grad;                // (outer, len, inner)
    float *dx = x_t->grad;                      // (outer, n, inner)
    #pragma omp parallel for if (out->numel >= SLICE_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++) {
        const float *dyr = dy + o * R;
        float *dxr = dx + (o * n + start) * inner;
        for (ptrdiff_t k = 0; k < R; k++) dxr[k] += dyr[k];
    }
}
