// patchify.c: u8 image [B, H, W, 3] -> normalised fp32 patches
// [B, (H/p)*(W/p), p*p*3]. Patches run row-major over the patch grid; inside
// a patch the order is (dy, dx, channel). value = (pixel/255 - mean[c]) / std[c].
#include <stdint.h>
#include "kernels/cpu/cpu_ops.h"

// Below this many output floats a parallel region costs more than it saves.
#define PATCHIFY_PAR_MIN 16384

void patchify_forward_cpu(Tensor *out) {
    const Tensor *img_t = out->src[0];
    const uint8_t *img = img_t->data;           // (B, H, W, 3)
    float *y = out->data;                       // (B, gh*gw, p*p*3)
    ptrdiff_t B = img_t->shape[0], H = img_t->shape[1], W = img_t->shape[2];
    ptrdiff_t p = out->iattr[0], gh = H / p, gw = W / p;
    // A pixel has 256 values per channel: normalise each once, in double,
    // so every output is the correctly rounded value of the formula.
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = (float)(((double)v / 255.0 - (double)out->fattr[c]) / (double)out->fattr[3 + c]);
    #pragma omp parallel for collapse(2) if (out->numel >= PATCHIFY_PAR_MIN)
    for (ptrdiff_t b = 0; b < B; b++)
        for (ptrdiff_t g = 0; g < gh * gw; g++) {
            ptrdiff_t py = g / gw, px = g % gw;
            float *patch = y + (b * gh * gw + g) * p * p * 3;       // (p, p, 3)
            for (ptrdiff_t dy = 0; dy < p; dy++) {
                const uint8_t *row = img + ((b * H + py * p + dy) * W + px * p) * 3;   // (p, 3)
                float *prow = patch + dy * p * 3;
                for (ptrdiff_t k = 0; k < p * 3; k++) prow[k] = lut[k % 3][row[k]];
            }
        }
}

// The image is u8 data from the loader, never a parameter or an activation,
// so no gradient can flow into it; the op table still wants a backward
// function, and this one has nothing to do.
void patchify_backward_cpu(Tensor *out) { (void)out; }
