// cumsum.c: inclusive cumulative sum along one axis. Around the axis x is
// (outer, n, inner); each (outer, inner) line is one sequential scan,
// carried in double so long lines do not drift. Backward is the reverse
// scan: dx[j] += sum_{i >= j} dy[i].
#include "kernels/cpu/cpu_ops.h"

// Below this many floats a parallel region costs more than it saves.
#define CUMSUM_PAR_MIN 16384

void cumsum_forward_cpu(Tensor *out) {
    const Tensor *x_t = out->src[0];
    size_t outer, n, inner;
    cpu_axis_split(x_t, out->iattr[0], &outer, &n, &inner);
    const float *x = x_t->data;                 // (outer, n, inner)
    float *y = out->data;                       // (outer, n, inner)
    ptrdiff_t O = (ptrdiff_t)outer, N = (ptrdiff_t)n, I = (ptrdiff_t)inner;
    #pragma omp parallel for collapse(2) if (out->numel >= CUMSUM_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++)
        for (ptrdiff_t k = 0; k < I; k++) {
            double run = 0;
            for (ptrdiff_t j = 0; j < N; j++) {
                ptrdiff_t at = (o * N + j) * I + k;
                run += x[at];
                y[at] = (float)run;
            }
        }
}

void cumsum_backward_cpu(Tensor *out) {
    Tensor *x_t = out->src[0];
    if (!x_t->grad) return;
    size_t outer, n, inner;
    cpu_axis_split(x_t, out->iattr[0], &outer, &n, &inner);
    const float *dy = out->grad;                // (outer, n, inner)
    float *dx = x_t->grad;                      // (outer, n, inner)
    ptrdiff_t O = (ptrdiff_t)outer, N = (ptrdiff_t)n, I = (ptrdiff_t)inner;
    #pragma omp parallel for collapse(2) if (out->numel >= CUMSUM_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++)
        for (ptrdiff_t k = 0; k < I; k++) {
            double run = 0;
            for (ptrdiff_t j = N - 1; j >= 0; j--) {
                ptrdiff_t at = (o * N + j) * I + k;
                run += dy[at];
                dx[at] += (float)run;
            }
        }
}
