// colsum.c: y (cols) += the sum over rows of x (rows, cols), the gradient of
// a vector broadcast over rows (linear's bias, add's b). Cache-blocked: each
// task owns BIAS_BLOCK columns, holds their sums in vector registers and
// streams the rows past them, so x is read once, contiguously per row
// segment, and every column is summed in row order whatever the thread
// count. cpu_colsum_add_ref: the plain twin.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_*, VEC_CLONES

VEC_CLONES static void colsum_block(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t c0, ptrdiff_t w) {
    f32x8 acc[BIAS_BLOCK / 8];
    for (ptrdiff_t j = 0; j < w; j += 8) acc[j / 8] = v8_set1(0.0f);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols + c0;
        for (ptrdiff_t j = 0; j < w; j += 8) acc[j / 8] += v8_load_k(xr + j, w - j < 8 ? w - j : 8);
    }
    for (ptrdiff_t j = 0; j < w; j += 8) {
        ptrdiff_t k = w - j < 8 ? w - j : 8;
        v8_store_k(y + c0 + j, v8_load_k(y + c0 + j, k) + acc[j / 8], k);
    }
}

void cpu_colsum_add(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols) {
    ptrdiff_t blocks = (cols + BIAS_BLOCK - 1) / BIAS_BLOCK;
    #pragma omp parallel for if (rows * cols >= 16384)
    for (ptrdiff_t blk = 0; blk < blocks; blk++) {
        ptrdiff_t c0 = blk * BIAS_BLOCK;
        colsum_block(y, x, rows, cols, c0, cols - c0 < BIAS_BLOCK ? cols - c0 : BIAS_BLOCK);
    }
}

void cpu_colsum_add_ref(float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t c = 0; c < cols; c++) {
        float s = 0.0f;
        for (ptrdiff_t r = 0; r < rows; r++) s += x[r * cols + c];
        y[c] += s;
    }
}
