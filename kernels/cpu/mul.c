// mul.c: y = a * b, b of a's shape or of a's trailing dims (broadcast over
// a's leading dims). b's gradient sums a * dy over the broadcast rows; each
// thread owns a block of b's elements, so the sum has no races and does not
// depend on the thread count.
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"

// b's elements per thread task in the reduction (see add.c).
#define MUL_BLOCK 64

void mul_forward_cpu(Tensor *out) {
    const float *a = out->src[0]->data;         // (rows, nb)
    const float *b = out->src[1]->data;         // (nb)
    float *y = out->data;                       // (rows, nb)
    ptrdiff_t nb = (ptrdiff_t)out->src[1]->numel, rows = (ptrdiff_t)out->numel / nb;
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *ar = a + r * nb;
        float *yr = y + r * nb;
        for (ptrdiff_t j = 0; j < nb; j++) yr[j] = ar[j] * b[j];
    }
}

void mul_backward_cpu(Tensor *out) {
    Tensor *ta = out->src[0], *tb = out->src[1];
    const float *a = ta->data, *b = tb->data;   // (rows, nb), (nb)
    const float *dy = out->grad;                // (rows, nb)
    ptrdiff_t n = (ptrdiff_t)out->numel, nb = (ptrdiff_t)tb->numel, rows = n / nb;
    if (ta->grad) {
        float *da = ta->grad;                   // (rows, nb)
        int assign = tensor_grad_assigns(out, 0);
        #pragma omp parallel for if (n >= 16384)
        for (ptrdiff_t r = 0; r < rows; r++)
            for (ptrdiff_t j = 0; j < nb; j++) {
                float g = dy[r * nb + j] * b[j];
                da[r * nb + j] = assign ? g : da[r * nb + j] + g;
            }
    }
    if (!tb->grad) return;
    float *db = tb->grad;                       // (nb)
    int assign_b = tensor_grad_assigns(out, 1);
    ptrdiff_t nblocks = (nb + MUL_BLOCK - 1) / MUL_BLOCK;
    #pragma omp parallel for if (n >= 16384)
    for (ptrdiff_t blk = 0; blk < nblocks; blk++) {
        ptrdiff_t j0 = blk * MUL_BLOCK, len = nb - j0 < MUL_BLOCK ? nb - j0 : MUL_BLOCK;
        float acc[MUL_BLOCK] = { 0 };
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *dyr = dy + r * nb + j0, *ar = a + r * nb + j0;
            for (ptrdiff_t j = 0; j < len; j++) acc[j] += dyr[j] * ar[j];
        }
        for (ptrdiff_t j = 0; j < len; j++) db[j0 + j] = assign_b ? acc[j] : db[j0 + j] + acc[j];
    }
}
