// axis.c: shape helpers shared by the CPU kernels, and the reductions along
// one axis that sum and mean share.
#include "kernels/cpu/cpu_ops.h"

// Below this many elements a parallel region costs more than it saves.
#define AXIS_PAR_MIN 16384
// The full reduction is cut into this many fixed blocks whatever the thread
// count, and the block sums are added in order, so its rounding (and hence
// the result) is the same on 1 or 64 threads.
#define SUM_BLOCKS 64
// Outputs per task in the axis reduction: a double accumulator each, on the stack.
#define REDUCE_BLOCK 64

void cpu_axis_split(const Tensor *x, int axis, size_t *outer, size_t *n, size_t *inner) {
    size_t o = 1, in = 1;
    for (int d = 0; d < axis; d++) o *= (size_t)x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) in *= (size_t)x->shape[d];
    *outer = o;
    *n = (size_t)x->shape[axis];
    *inner = in;
}

// Sum of x[lo, hi) in double; four accumulators break the add latency chain
// (a fixed order, so still deterministic).
static double sum_span(const float *x, size_t lo, size_t hi) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3];
    }
    for (; i < hi; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

double cpu_sum_all(const float *x, size_t n) {
    if (n < AXIS_PAR_MIN) return sum_span(x, 0, n);
    double part[SUM_BLOCKS];
    size_t len = (n + SUM_BLOCKS - 1) / SUM_BLOCKS;
    #pragma omp parallel for
    for (int b = 0; b < SUM_BLOCKS; b++) {
        size_t lo = (size_t)b * len, hi = lo + len < n ? lo + len : n;
        part[b] = lo < hi ? sum_span(x, lo, hi) : 0.0;
    }
    double s = 0;
    for (int b = 0; b < SUM_BLOCKS; b++) s += part[b];
    return s;
}

void cpu_reduce_axis(const float *x, float *y, size_t outer, size_t n, size_t inner, double scale) {
    if (outer * inner == 1) { y[0] = (float)(cpu_sum_all(x, n) * scale); return; }
    ptrdiff_t O = (ptrdiff_t)outer, N = (ptrdiff_t)n, I = (ptrdiff_t)inner;
    if (I == 1) {                               // the last axis: contiguous rows
        #pragma omp parallel for if (outer * n >= AXIS_PAR_MIN)
        for (ptrdiff_t o = 0; o < O; o++) y[o] = (float)(sum_span(x + o * N, 0, (size_t)N) * scale);
        return;
    }
    ptrdiff_t blocks = (I + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
    // A task owns a block of adjacent outputs and their whole sums (in
    // double), so no two threads share one, and it reads whole cache lines
    // of each row of x rather than one float per line.
    #pragma omp parallel for collapse(2) if (outer * n * inner >= AXIS_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++)
        for (ptrdiff_t blk = 0; blk < blocks; blk++) {
            ptrdiff_t k0 = blk * REDUCE_BLOCK, len = I - k0 < REDUCE_BLOCK ? I - k0 : REDUCE_BLOCK;
            double acc[REDUCE_BLOCK] = { 0 };
            for (ptrdiff_t j = 0; j < N; j++) {
                const float *xr = x + (o * N + j) * I + k0;     // (len)
                for (ptrdiff_t k = 0; k < len; k++) acc[k] += xr[k];
            }
            for (ptrdiff_t k = 0; k < len; k++) y[o * I + k0 + k] = (float)(acc[k] * scale);
        }
}

void cpu_broadcast_axis_add(const float *dy, float *dx, size_t outer, size_t n, size_t inner, float scale) {
    ptrdiff_t O = (ptrdiff_t)outer, N = (ptrdiff_t)n, I = (ptrdiff_t)inner;
    #pragma omp parallel for collapse(2) if (outer * n * inner >= AXIS_PAR_MIN)
    for (ptrdiff_t o = 0; o < O; o++)
        for (ptrdiff_t j = 0; j < N; j++) {
            const float *dyo = dy + o * I;              // (inner)
            float *dxr = dx + (o * N + j) * I;          // (inner)
            for (ptrdiff_t k = 0; k < I; k++) dxr[k] += scale * dyo[k];
        }
}
