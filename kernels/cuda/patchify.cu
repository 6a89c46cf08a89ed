// patchify.cu: u8 image [B, H, W, 3] -> normalised fp32 patches
// [B, (H/p)*(W/p), p*p*3]; the twin of kernels/cpu/patchify.c. Patches run
// row-major over the patch grid; inside a patch the order is (dy, dx,
// channel). value = (pixel/255 - mean[c]) / std[c], computed in double and
// rounded once into a 3 x 256 table, as the CPU's lookup table is, so both
// give the same bits.
//
// Each block first fills the table in shared memory (768 entries, 3 per
// thread, the only double arithmetic); each output element is then a
// table lookup. Output positions map to pixels by multiply-highs
// (DivMod32), never a division per element; when 3p is a multiple of 4 a
// thread writes 4 consecutive outputs (one 128-bit store) from 4
// consecutive bytes of one patch row.
#include "kernels/cuda/cuda_ops.h"
#include <cstdint>
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH
#include "kernels/cuda/vec.cuh"           // defines: Vec, store_vec, DivMod32, cuda_grid_for_items

namespace {

struct PatchNorm { float mean[3], std[3]; };

// Output index -> the pixel byte it reads, and its channel.
struct PatchMap {
    DivMod32 per_patch, patches, grid_w, patch_row;   // p*p*3, (H/p)*(W/p), W/p, 3p
    int H, W, p;
};

template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) patchify_kernel(float *y, const uint8_t *img, uint32_t vecs, PatchMap m,
                                                              PatchNorm norm) {
    __shared__ float lut[3][256];
    for (int e = threadIdx.x; e < 3 * 256; e += blockDim.x) {
        int c = e >> 8, v = e & 255;
        lut[c][v] = (float)(((double)v / 255.0 - (double)norm.mean[c]) / (double)norm.std[c]);
    }
    __syncthreads();
    for (uint32_t q = blockIdx.x * blockDim.x + threadIdx.x; q < vecs; q += gridDim.x * blockDim.x) {
        uint32_t i = q * W;
        uint32_t g = m.per_patch.div(i), e = i - g * m.per_patch.d;          // (b, patch), (dy, dx, c)
        uint32_t b = m.patches.div(g), patch = g - b * m.patches.d;
        uint32_t py = m.grid_w.div(patch), px = patch - py * m.grid_w.d;
        uint32_t dy = m.patch_row.div(e), run = e - dy * m.patch_row.d;     // run = dx * 3 + c
        const uint8_t *src = img + (((size_t)b * m.H + py * m.p + dy) * m.W + (size_t)px * m.p) * 3 + run;
        Vec<float, W> out;
        for (int j = 0; j < W; j++) out[j] = lut[(run + j) % 3][src[j]];
        store_vec<Vec<float, W>>(y, q, out);
    }
}

}  // namespace

extern "C" void patchify_forward_cuda(Tensor *out) {
    const Tensor *img = out->src[0];
    PatchNorm norm;
    for (int c = 0; c < 3; c++) { norm.mean[c] = out->fattr[c]; norm.std[c] = out->fattr[3 + c]; }
    int H = img->shape[1], Wd = img->shape[2], p = out->iattr[0];
    cuda_check_index32(out->numel, "patchify");
    PatchMap m = { divmod32((uint32_t)(p * p * 3)), divmod32((uint32_t)((H / p) * (Wd / p))), divmod32((uint32_t)(Wd / p)),
                   divmod32((uint32_t)(3 * p)), H, Wd, p };
    float *y = (float *)out->data;               // (B, gh*gw, p*p*3)
    const uint8_t *x = (const uint8_t *)img->data;   // (B, H, W, 3)
    cudaStream_t s = cuda_compute_stream();
    if ((3 * p) % 4 == 0 && cuda_aligned16(y)) {
        uint32_t vecs = (uint32_t)(out->numel / 4);
        patchify_kernel<4><<<cuda_grid_for_items(vecs), CUDA_BLOCK, 0, s>>>(y, x, vecs, m, norm);
    } else {
        uint32_t vecs = (uint32_t)out->numel;
        patchify_kernel<1><<<cuda_grid_for_items(vecs), CUDA_BLOCK, 0, s>>>(y, x, vecs, m, norm);
    }
    CUDA_CHECK_LAUNCH();
}

extern "C" void patchify_backward_cuda(Tensor *out) { (void)out; }
