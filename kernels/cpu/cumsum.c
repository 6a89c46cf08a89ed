// cumsum.c: inclusive cumulative sum along one axis. Around the axis x is
// (outer, n, inner); each (outer, inner) line is one sequential scan,
// carried in double so long lines do not drift. Backward is the reverse
// scan: dx[j] += sum_{i >= j} dy[i].
#include "kernels/cpu/cpu_ops.h"

// Below this many floats a parallel region costs more than it saves.
#define CUMSUM_PAR_MIN 16384
// A task scans a block of up to this many adjacent inner columns together,
// with a double accumulator each on the stack, so it reads whole cache
// lines of every row instead of one float per line.
#define CUMSUM_BLOCK 64

void cumsum_forward_cpu(Tensor *out) {
    const Tensor *x_t = out->src[0];
    size_t outer, n, inner;
    cpu_axis_split(x_t, out->iattr[0], &outer, &n, &inner);
    const float *x = x_t->data;                 // (outer, n, inner)
    float *y = out->data;                       // (outer, n, inner)
    ptrdiff_t O = (ptrdiff_t)outer, N = (ptrdiff_t)n, I = (ptrdiff_t)inner;
    ptrdiff_t blocks = (I + CUMSUM_BLOCK - 1) / CUMSUM_BLOCK;
    #pragma omp parallel for collapse(2) if (out->numel >= CUMSUM_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++)
        for (ptrdiff_t blk = 0; blk < blocks; blk++) {
            ptrdiff_t k0 = blk * CUMSUM_BLOCK, len = I - k0 < CUMSUM_BLOCK ? I - k0 : CUMSUM_BLOCK;
            double run[CUMSUM_BLOCK] = { 0 };
            for (ptrdiff_t j = 0; j < N; j++) {
                const float *xr = x + (o * N + j) * I + k0;     // (len)
                float *yr = y + (o * N + j) * I + k0;           // (len)
                for (ptrdiff_t k = 0; k < len; k++) { run[k] += xr[k]; yr[k] = (float)run[k]; }
            }
        }
}

void cumsum_backward_cpu(Tensor *out) {
    Tensor *x_t = out->src[0];
    if (!cpu_grad_begin(out, 0)) return;
    size_t outer, n, inner;
    cpu_axis_split(x_t, out->iattr[0], &outer, &n, &inner);
    const float *dy = out->grad;                // (outer, n, inner)
    float *dx = x_t->grad;                      // (outer, n, inner)
    ptrdiff_t O = (ptrdiff_t)outer, N = (ptrdiff_t)n, I = (ptrdiff_t)inner;
    ptrdiff_t blocks = (I + CUMSUM_BLOCK - 1) / CUMSUM_BLOCK;
    #pragma omp parallel for collapse(2) if (out->numel >= CUMSUM_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++)
        for (ptrdiff_t blk = 0; blk < blocks; blk++) {
            ptrdiff_t k0 = blk * CUMSUM_BLOCK, len = I - k0 < CUMSUM_BLOCK ? I - k0 : CUMSUM_BLOCK;
            double run[CUMSUM_BLOCK] = { 0 };
            for (ptrdiff_t j = N - 1; j >= 0; j--) {
                const float *dyr = dy + (o * N + j) * I + k0;   // (len)
                float *dxr = dx + (o * N + j) * I + k0;         // (len)
                for (ptrdiff_t k = 0; k < len; k++) { run[k] += dyr[k]; dxr[k] += (float)run[k]; }
            }
        }
}
