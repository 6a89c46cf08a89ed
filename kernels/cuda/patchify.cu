// patchify.cu: u8 image [B, H, W, 3] -> normalised fp32 patches
// [B, (H/p)*(W/p), p*p*3]; the twin of kernels/cpu/patchify.c. Patches run
// row-major over the patch grid; inside a patch the order is (dy, dx,
// channel). value = (pixel/255 - mean[c]) / std[c], computed in double and
// rounded once, as the CPU's lookup table is, so both give the same bits.
#include "kernels/cuda/cuda_ops.h"
#include <cstdint>
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

namespace {

struct PatchNorm { float mean[3], std[3]; };

__global__ void patchify_kernel(float *y, const uint8_t *img, size_t total, int H, int W, int p, PatchNorm norm) {
    int gw = W / p, per_patch = p * p * 3, patches = (H / p) * gw;
    CUDA_GRID_STRIDE(i, total) {
        int e = (int)(i % per_patch);                 // (dy, dx, c) inside the patch
        size_t g = i / per_patch;
        int patch = (int)(g % patches);
        size_t b = g / patches;
        int py = patch / gw, px = patch % gw;
        int dy = e / (p * 3), dx = (e / 3) % p, c = e % 3;
        uint8_t v = img[((b * H + (size_t)(py * p + dy)) * W + (size_t)(px * p + dx)) * 3 + c];
        y[i] = (float)(((double)v / 255.0 - (double)norm.mean[c]) / (double)norm.std[c]);
    }
}

}  // namespace

extern "C" void patchify_forward_cuda(Tensor *out) {
    const Tensor *img = out->src[0];
    PatchNorm norm;
    for (int c = 0; c < 3; c++) { norm.mean[c] = out->fattr[c]; norm.std[c] = out->fattr[3 + c]; }
    patchify_kernel<<<cuda_grid_for(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data,              // (B, gh*gw, p*p*3)
        (const uint8_t *)img->data,      // (B, H, W, 3)
        out->numel, img->shape[1], img->shape[2], out->iattr[0], norm);
    CUDA_CHECK_LAUNCH();
}

// The image is u8 data from the loader, never a parameter or an activation,
// so no gradient can flow into it; the op table still wants a backward
// function, and this one has nothing to do.
extern "C" void patchify_backward_cuda(Tensor *out) { (void)out; }
