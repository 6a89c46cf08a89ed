// large.c: the op suite at the sizes where a GPU's kernels take their other
// paths (rows wider than a block, grids of many blocks, cuBLAS's large-matrix
// kernels), as cases without a PyTorch reference: `distil selftest` (not
// --quick) compares a device with the CPU on them (opsuite_check_fixture).
// The fixtures' cases are small by design (a few hundred values, so they
// stay in the repository), and a kernel that is right on one block can be
// wrong on two.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"             // defines: Rng, rng_*
#include "train/selftest/selftest.h"

typedef struct {
    const char *name;
    char role;                   // 'i' or 'p'
    DType dtype;
    int ndim, shape[TENSOR_MAX_DIMS];
    float scale, offset;         // f32: offset + scale * N(0, 1) (scale 0 means 1)
    int lo, hi;                  // i32: uniform in [lo, hi); u8: every value
} LargeInput;

typedef struct {
    const char *name, *op;
    int iattr[4], n_iattr;
    float fattr[6];
    int n_fattr;
    LargeInput in[4];
    int n_in;
} LargeCase;

// Sizes: several thousand columns per row (a block of 256 threads loops),
// thousands of rows (many blocks), a million elements for the full
// reductions; each case a few MFLOP to a GFLOP, so that the CPU reference
// takes a fraction of a second.
static const LargeCase large_cases[] = {
    { "matmul batched 4x256x384 @ 384x320", "matmul", {0}, 0, {0}, 0,
      { { "a", 'p', DT_F32, 3, { 4, 256, 384 } }, { "b", 'p', DT_F32, 2, { 384, 320 } } }, 2 },
    { "linear 4x128x384 -> 512 with bias", "linear", {0}, 0, {0}, 0,
      { { "x", 'p', DT_F32, 3, { 4, 128, 384 } }, { "w", 'p', DT_F32, 2, { 512, 384 }, 0.05f },
        { "b", 'p', DT_F32, 1, { 512 } } }, 3 },
    { "add broadcast 256x1024 + 1024", "add", {0}, 0, {0}, 0,
      { { "a", 'p', DT_F32, 2, { 256, 1024 } }, { "b", 'p', DT_F32, 1, { 1024 } } }, 2 },
    { "layernorm 256x1024", "layernorm", {0}, 0, { 1e-5f }, 1,
      { { "x", 'p', DT_F32, 2, { 256, 1024 }, 2.0f, 1.0f }, { "gamma", 'p', DT_F32, 1, { 1024 }, 0.2f, 1.0f },
        { "beta", 'p', DT_F32, 1, { 1024 }, 0.2f } }, 3 },
    { "gelu 1024x1024", "gelu", {0}, 0, {0}, 0, { { "x", 'p', DT_F32, 2, { 1024, 1024 }, 3.0f } }, 1 },
    { "bias_gelu 1024x1024", "bias_gelu", {0}, 0, {0}, 0,
      { { "x", 'p', DT_F32, 2, { 1024, 1024 }, 3.0f }, { "bias", 'p', DT_F32, 1, { 1024 }, 0.5f } }, 2 },
    { "bias_residual 256x1024", "bias_residual", {0}, 0, {0}, 0,
      { { "x", 'p', DT_F32, 2, { 256, 1024 } }, { "fx", 'p', DT_F32, 2, { 256, 1024 } },
        { "bias", 'p', DT_F32, 1, { 1024 } } }, 3 },
    { "softmax 64x8192", "softmax", {0}, 0, {0}, 0, { { "x", 'p', DT_F32, 2, { 64, 8192 }, 4.0f } }, 1 },
    { "attention 2x256, 4 heads of 32, causal, masked", "attention", { 4, 0 }, 2, {0}, 0,
      { { "qkv", 'p', DT_F32, 3, { 2, 256, 384 } }, { "key_mask", 'i', DT_F32, 2, { 2, 256 }, -1 } }, 2 },
    { "attention 2x300, 4 heads of 32, prefix 200", "attention", { 4, 1, 200 }, 3, {0}, 0,
      { { "qkv", 'p', DT_F32, 3, { 2, 300, 384 } }, { "key_mask", 'i', DT_F32, 2, { 2, 300 }, -1 } }, 2 },
    { "attention 1x512, 2 heads of 64, prefix 300", "attention", { 2, 1, 300 }, 3, {0}, 0,
      { { "qkv", 'p', DT_F32, 3, { 1, 512, 384 } }, { "key_mask", 'i', DT_F32, 2, { 1, 512 }, -1 } }, 2 },
    { "embedding 4096 ids into 8192x256", "embedding", {0}, 0, {0}, 0,
      { { "ids", 'i', DT_I32, 1, { 4096 }, 0, 0, -1, 8193 }, { "table", 'p', DT_F32, 2, { 8192, 256 } } }, 2 },
    { "sum over a million", "sum", { 0x7fff }, 1, {0}, 0, { { "x", 'p', DT_F32, 1, { 1 << 20 } } }, 1 },
    { "mean over 4096 rows", "mean", { 1 }, 1, {0}, 0, { { "x", 'p', DT_F32, 3, { 16, 4096, 8 } } }, 1 },
    { "cumsum along 4096", "cumsum", { 1 }, 1, {0}, 0, { { "x", 'p', DT_F32, 2, { 16, 4096 } } }, 1 },
    { "transpose 64x128x96", "transpose", { 1, 2 }, 2, {0}, 0, { { "x", 'p', DT_F32, 3, { 64, 128, 96 } } }, 1 },
    { "cross_entropy 512x8192", "cross_entropy", { -1 }, 1, {0}, 0,
      { { "logits", 'p', DT_F32, 2, { 512, 8192 }, 3.0f }, { "targets", 'i', DT_I32, 1, { 512 }, 0, 0, -1, 8192 } }, 2 },
    { "smooth_l1 4096x30x3 masked", "smooth_l1", {0}, 0, { 0.5f }, 1,
      { { "pred", 'p', DT_F32, 3, { 4096, 30, 3 } }, { "target", 'p', DT_F32, 3, { 4096, 30, 3 } },
        { "mask", 'i', DT_F32, 2, { 4096, 30 }, -1 } }, 3 },
    { "distill_kl 256x8192, top-64, tail", "distill_kl", { 0, 1, 1 }, 3, { 1.0f, 2.0f, 0.5f }, 3,
      { { "logits", 'p', DT_F32, 2, { 256, 8192 }, 3.0f }, { "topk_ids", 'i', DT_I32, 2, { 256, 64 }, 0, 0, -1, 8192 },
        { "topk_logprobs", 'i', DT_F32, 2, { 256, 64 }, 1.0f, -7.0f }, { "mask", 'i', DT_F32, 1, { 256 }, -1 } }, 4 },
    { "traj_loss 256 samples, best of 6", "traj_loss", { 1 }, 1, { 1.0f, 1.0f }, 2,
      { { "pred", 'p', DT_F32, 3, { 256, 30, 3 } }, { "targets", 'i', DT_F32, 4, { 256, 6, 30, 3 } },
        { "weights", 'i', DT_F32, 2, { 256, 6 }, -1 } }, 3 },
    { "cosine_loss 512x256", "cosine_loss", {0}, 0, {0}, 0,
      { { "pred", 'p', DT_F32, 2, { 512, 256 } }, { "target", 'i', DT_F32, 2, { 512, 256 } } }, 2 },
};
#define N_LARGE (int)(sizeof large_cases / sizeof large_cases[0])

// Values of one input. A scale of -1 marks a mask or weights: 1 mostly,
// 0 for every seventh element.
static void *fill(const LargeInput *in, Rng *rng, size_t n) {
    if (in->dtype == DT_I32) {
        int32_t *v = malloc(n * sizeof *v);
        for (size_t i = 0; v && i < n; i++) v[i] = in->lo + (int32_t)rng_below(rng, (uint64_t)(in->hi - in->lo));
        return v;
    }
    float *v = malloc(n * sizeof *v);
    float sc = in->scale ? in->scale : 1.0f;
    for (size_t i = 0; v && i < n; i++)
        v[i] = in->scale == -1 ? (i % 7 == 3 ? 0.0f : 1.0f) : in->offset + sc * rng_normal(rng);
    return v;
}

Fixture *opsuite_large(void) {
    Fixture *fx = calloc(1, sizeof *fx);
    if (!fx || !(fx->cases = calloc(N_LARGE, sizeof *fx->cases))) { free(fx); return NULL; }
    Rng rng;
    rng_seed(&rng, 0x5e1f7e57u);
    for (int i = 0; i < N_LARGE; i++) {
        const LargeCase *lc = &large_cases[i];
        FxCase *c = &fx->cases[fx->n_cases++];
        snprintf(c->name, sizeof c->name, "%s", lc->name);
        snprintf(c->op, sizeof c->op, "%s", lc->op);
        c->n_iattr = lc->n_iattr;
        memcpy(c->iattr, lc->iattr, sizeof lc->iattr);
        c->n_fattr = lc->n_fattr;
        memcpy(c->fattr, lc->fattr, sizeof lc->fattr);
        for (int k = 0; k < lc->n_in; k++) {
            const LargeInput *in = &lc->in[k];
            FxTensor *t = &c->t[c->n_tensors++];
            snprintf(t->name, sizeof t->name, "%s", in->name);
            t->role = in->role;
            t->dtype = in->dtype;
            t->ndim = in->ndim;
            memcpy(t->shape, in->shape, sizeof t->shape);
            t->numel = shape_numel(t->ndim, t->shape);
            t->data = fill(in, &rng, t->numel);
            if (!t->data) { opsuite_large_free(fx); return NULL; }
        }
    }
    return fx;
}

void opsuite_large_free(Fixture *fx) {
    if (!fx) return;
    for (int i = 0; i < fx->n_cases; i++)
        for (int k = 0; k < fx->cases[i].n_tensors; k++) free((void *)fx->cases[i].t[k].data);
    free(fx->cases);
    free(fx);
}
