// concat.c: n (<= 4) tensors joined along one axis. Around that axis every
// input is (outer, n_i, inner) and the output (outer, sum n_i, inner); input
// i fills columns [off_i, off_i + n_i) of each outer row, a contiguous run of
// n_i * inner floats. Backward copies the same runs back (+=).
#include <string.h>
#include "kernels/cpu/cpu_ops.h"

// Below this many floats a parallel region costs more than it saves.
#define CONCAT_PAR_MIN 16384

void concat_forward_cpu(Tensor *out) {
    size_t outer, n_out, inner;
    cpu_axis_split(out, out->iattr[0], &outer, &n_out, &inner);
    float *y = out->data;                               // (outer, n_out, inner)
    size_t off = 0;
    for (int s = 0; s < out->nsrc; s++) {
        const Tensor *x_t = out->src[s];
        const float *x = x_t->data;                     // (outer, n_i, inner)
        size_t run = (size_t)x_t->shape[out->iattr[0]] * inner;
        ptrdiff_t O = (ptrdiff_t)outer;
        #pragma omp parallel for if (x_t->numel >= CONCAT_PAR_MIN)
        for (ptrdiff_t o = 0; o < O; o++)
            memcpy(y + (o * n_out + off) * inner, x + o * run, run * sizeof *y);
        off += (size_t)x_t->shape[out->iattr[0]];
    }
}

void concat_backward_cpu(Tensor *out) {
    size_t outer, n_out, inner;
    cpu_axis_split(out, out->iattr[0], &outer, &n_out, &inner);
    const float *dy = out->grad;                        // (outer, n_out, inner)
    size_t off = 0;
    for (int s = 0; s < out->nsrc; s++) {
        Tensor *x_t = out->src[s];
        size_t n_i = (size_t)x_t->shape[out->iattr[0]];
        size_t run = n_i * inner;
        float *dx = x_t->grad;                          // (outer, n_i, inner)
        if (dx) {
            ptrdiff_t O = (ptrdiff_t)outer, R = (ptrdiff_t)run;
            int assign = tensor_grad_assigns(out, s);
            #pragma omp parallel for if (x_t->numel >= CONCAT_PAR_MIN)
            for (ptrdiff_t o = 0; o < O; o++) {
                const float *dyr = dy + (o * n_out + off) * inner;
                float *dxr = dx + o * R;
                for (ptrdiff_t k = 0; k < R; k++) dxr[k] = assign ? dyr[k] : dxr[k] + dyr[k];
            }
        }
        off += n_i;
    }
}
