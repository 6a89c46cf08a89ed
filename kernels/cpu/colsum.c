// colsum.c: y (cols) (+)= the sum over rows of x (rows, cols), the gradient of
// a vector broadcast over rows (linear's bias, add's b). Cache-blocked: each
// task owns BIAS_BLOCK columns, holds their sums in vector registers and
// streams the rows past them, so x is read once, contiguously per row
// segment, and every column is summed in row order whatever the thread
// count. assign: y = the sums (the first writer of a gradient), else y +=.
// cpu_colsum_ref: the plain twin.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_*, VEC_CLONES

VEC_CLONES static void colsum_block(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t c0, ptrdiff_t w,
                                    int assign) {
    f32x8 acc[BIAS_BLOCK / 8];
    for (ptrdiff_t j = 0; j < w; j += 8) acc[j / 8] = v8_set1(0.0f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols + c0;
        for (ptrdiff_t j = 0; j < w; j += 8) acc[j / 8] += v8_load_k(xr + j, w - j < 8 ? w - j : 8);
    }
    for (ptrdiff_t j = 0; j < w; j += 8) v8_put_k(y + c0 + j, acc[j / 8], w - j < 8 ? w - j : 8, assign);
}

void cpu_colsum(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols, int assign) {
    ptrdiff_t blocks = (cols + BIAS_BLOCK - 1) / BIAS_BLOCK;
    #pragma omp parallel for if (rows * cols >= 16384)
    for (ptrdiff_t blk = 0; blk < blocks; blk++) {
        ptrdiff_t c0 = blk * BIAS_BLOCK;
        colsum_block(y, x, rows, cols, c0, cols - c0 < BIAS_BLOCK ? cols - c0 : BIAS_BLOCK, assign);
    }
}

void cpu_colsum_ref(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols, int assign) {
    for (ptrdiff_t c = 0; c < cols; c++) {
        float s = 0.0f;
        for (ptrdiff_t r = 0; r < rows; r++) s += x[r * cols + c];
        y[c] = assign ? s : y[c] + s;
    }
}
