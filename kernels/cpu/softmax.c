// softmax.c: softmax over the last dim, max-subtracted; backward from the
// output y: dx = y * (dy - sum(dy * y)).
#include <math.h>
#include <stddef.h>
#include "kernels/cpu/cpu_ops.h"

void softmax_forward_cpu(Tensor *out) {
    const Tensor *tx = out->src[0];
    const float *x = tx->data;                  // (rows, C)
    float *y = out->data;                       // (rows, C)
    int C = tx->shape[tx->ndim - 1];
    ptrdiff_t rows = (ptrdiff_t)(tx->numel / C);
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float mx = xr[0];
        for (int c = 1; c < C; c++) mx = xr[c] > mx ? xr[c] : mx;
        float sum = 0.0f;
        for (int c = 0; c < C; c++) { yr[c] = expf(xr[c] - mx); sum += yr[c]; }
        float inv = 1.0f / sum;      // sum >= 1: the max term is exp(0)
        for (int c = 0; c < C; c++) yr[c] *= inv;
    }
}

void softmax_backward_cpu(Tensor *out) {
    Tensor *tx = out->src[0];
    if (!tx->grad) return;
    const float *y = out->data, *dy = out->grad;   // (rows, C), (rows, C)
    float *dx = tx->grad;                          // (rows, C)
    int C = tx->shape[tx->ndim - 1];
    ptrdiff_t rows = (ptrdiff_t)(tx->numel / C);
    int assign = tensor_grad_assigns(out, 0);
    #pragma omp parallel for if (out->numel >= 16384)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *yr = y + r * C, *dyr = dy + r * C;
        float *dxr = dx + r * C;
        float dot = 0.0f;
        for (int c = 0; c < C; c++) dot += dyr[c] * yr[c];
        for (int c = 0; c < C; c++) dxr[c] = (assign ? 0.0f : dxr[c]) + yr[c] * (dyr[c] - dot);
    }
}
