// add.c: y = a + b, b of a's shape or of a's trailing dims (broadcast over
// a's leading dims). b's gradient sums dy over the broadcast rows; each
// thread owns a block of b's elements, so the sum has no races and does not
// depend on the thread count.
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"

// b's elements per thread task in the reduction: a cache line's worth of
// accumulators kept in registers/L1 while the rows stream past.
#define ADD_BLOCK 64

void add_forward_cpu(Tensor *out) {
    const float *a = out->src[0]->data;         // (rows, nb)
    const float *b = out->src[1]->data;         // (nb)
    float *y = out->data;                       // (rows, nb)
    ptrdiff_t nb = (ptrdiff_t)out->src[1]->numel, rows = (ptrdiff_t)out->numel / nb;
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *ar = a + r * nb;
        float *yr = y + r * nb;
        for (ptrdiff_t j = 0; j < nb; j++) yr[j] = ar[j] + b[j];
    }
}

void add_backward_cpu(Tensor *out) {
    Tensor *ta = out->src[0], *tb = out->src[1];
    const float *dy = out->grad;                // (rows, nb)
    ptrdiff_t n = (ptrdiff_t)out->numel, nb = (ptrdiff_t)tb->numel, rows = n / nb;
    if (ta->grad) {
        float *da = ta->grad;                   // (rows, nb)
        #pragma omp parallel for simd if (n >= 65536)
        for (ptrdiff_t i = 0; i < n; i++) da[i] += dy[i];
    }
    if (!tb->grad) return;
    float *db = tb->grad;                       // (nb)
    ptrdiff_t nblocks = (nb + ADD_BLOCK - 1) / ADD_BLOCK;
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t blk = 0; blk < nblocks; blk++) {
        ptrdiff_t j0 = blk * ADD_BLOCK, len = nb - j0 < ADD_BLOCK ? nb - j0 : ADD_BLOCK;
        float acc[ADD_BLOCK] = { 0 };
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *dyr = dy + r * nb + j0;
            for (ptrdiff_t j = 0; j < len; j++) acc[j] += dyr[j];
        }
        for (ptrdiff_t j = 0; j < len; j++) db[j0 + j] += acc[j];
    }
}
