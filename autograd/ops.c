// ops.c: the op table (name, shape rule, kernels per backend) and the
// constructors that record ops on the tape.
#include "autograd/ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/cpu_ops.h"     // defines: <op>_forward_cpu, <op>_backward_cpu
#ifdef DISTIL_CUDA
#include "kernels/cuda/cuda_ops.h"   // defines: <op>_forward_cuda, <op>_backward_cuda
#define CUDA_FWD(op) [DEV_CUDA] = op##_forward_cuda
#define CUDA_BWD(op) [DEV_CUDA] = op##_backward_cuda
#else
#define CUDA_FWD(op) [DEV_CUDA] = NULL
#define CUDA_BWD(op) [DEV_CUDA] = NULL
#endif

int op_axis(int axis, int ndim) {
    if (axis < 0) axis += ndim;
    return (axis < 0 || axis >= ndim) ? -1 : axis;
}

static char shape_msg[256];

#define SHAPE_FAIL(...) do { snprintf(shape_msg, sizeof shape_msg, __VA_ARGS__); return shape_msg; } while (0)

static void set_shape(Tensor *out, int ndim, const int *shape) {
    out->ndim = ndim;
    for (int i = 0; i < TENSOR_MAX_DIMS; i++) out->shape[i] = i < ndim ? shape[i] : 1;
    out->numel = shape_numel(ndim, shape);
}

static const char *need_f32(const Tensor *t, const char *what) {
    if (t->dtype != DT_F32) SHAPE_FAIL("%s must be f32, got %s", what, dtype_name(t->dtype));
    return NULL;
}

// b equals a's shape, or a's trailing dims.
static const char *shape_broadcast(Tensor *out) {
    Tensor *a = out->src[0], *b = out->src[1];
    const char *e;
    if ((e = need_f32(a, "a")) || (e = need_f32(b, "b"))) return e;
    if (b->ndim > a->ndim) SHAPE_FAIL("b has more dims than a");
    for (int i = 0; i < b->ndim; i++)
        if (b->shape[b->ndim - 1 - i] != a->shape[a->ndim - 1 - i])
            SHAPE_FAIL("b's shape must equal a's trailing dims");
    set_shape(out, a->ndim, a->shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_same_as_src(Tensor *out) {
    const char *e = need_f32(out->src[0], "x");
    if (e) return e;
    set_shape(out, out->src[0]->ndim, out->src[0]->shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_scalar(Tensor *out) {
    int one = 1;
    set_shape(out, 1, &one);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_matmul(Tensor *out) {
    Tensor *a = out->src[0], *b = out->src[1];
    const char *e;
    if ((e = need_f32(a, "a")) || (e = need_f32(b, "b"))) return e;
    if (a->ndim < 2 || a->ndim > 3) SHAPE_FAIL("a must be [M,K] or [B,M,K]");
    if (b->ndim < 2 || b->ndim > 3) SHAPE_FAIL("b must be [K,N] or [B,K,N]");
    if (b->ndim == 3 && (a->ndim != 3 || b->shape[0] != a->shape[0])) SHAPE_FAIL("batched b needs a of the same batch");
    int K = a->shape[a->ndim - 1], M = a->shape[a->ndim - 2];
    int Kb = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
    if (K != Kb) SHAPE_FAIL("inner dims differ: a has K=%d, b has K=%d", K, Kb);
    int shape[3] = { a->shape[0], M, N };
    if (a->ndim == 2) { shape[0] = M; shape[1] = N; }
    set_shape(out, a->ndim, shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_linear(Tensor *out) {
    Tensor *x = out->src[0], *w = out->src[1], *bias = out->nsrc > 2 ? out->src[2] : NULL;
    const char *e;
    if ((e = need_f32(x, "x")) || (e = need_f32(w, "w"))) return e;
    if (w->ndim != 2) SHAPE_FAIL("w must be [out, in]");
    if (x->shape[x->ndim - 1] != w->shape[1]) SHAPE_FAIL("x has %d features, w expects %d", x->shape[x->ndim - 1], w->shape[1]);
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0])) SHAPE_FAIL("bias must be [%d]", w->shape[0]);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    set_shape(out, x->ndim, shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_layernorm(Tensor *out) {
    Tensor *x = out->src[0], *gm = out->src[1], *bt = out->src[2];
    const char *e = need_f32(x, "x");
    if (e) return e;
    int C = x->shape[x->ndim - 1];
    if (gm->ndim != 1 || gm->shape[0] != C || bt->ndim != 1 || bt->shape[0] != C) SHAPE_FAIL("gamma and beta must be [%d]", C);
    set_shape(out, x->ndim, x->shape);
    out->dtype = DT_F32;
    out->saved_numel = 2 * (x->numel / C);
    return NULL;
}

// x [..., C], the sources after it [..., C] like x (n_same of them, x
// included), then a bias [C].
static const char *shape_bias_rows(Tensor *out, int n_same) {
    Tensor *x = out->src[0], *bias = out->src[n_same];
    const char *e;
    if ((e = need_f32(x, "x")) || (e = need_f32(bias, "bias"))) return e;
    for (int i = 1; i < n_same; i++) {
        if ((e = need_f32(out->src[i], "fx"))) return e;
        if (!tensor_same_shape(out->src[i], x)) SHAPE_FAIL("fx's shape differs from x's");
    }
    int C = x->shape[x->ndim - 1];
    if (bias->ndim != 1 || bias->shape[0] != C) SHAPE_FAIL("bias must be [%d]", C);
    set_shape(out, x->ndim, x->shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_bias_gelu(Tensor *out) { return shape_bias_rows(out, 1); }
static const char *shape_bias_residual(Tensor *out) { return shape_bias_rows(out, 2); }

static const char *shape_attention(Tensor *out) {
    Tensor *qkv = out->src[0], *mask = out->nsrc > 1 ? out->src[1] : NULL;
    int H = out->iattr[0], mode = out->iattr[1], n_prefix = out->iattr[2];
    const char *e = need_f32(qkv, "qkv");
    if (e) return e;
    if (qkv->ndim != 3 || qkv->shape[2] % 3) SHAPE_FAIL("qkv must be [B, T, 3C]");
    int B = qkv->shape[0], T = qkv->shape[1], C = qkv->shape[2] / 3;
    if (H <= 0 || C % H) SHAPE_FAIL("%d heads do not divide C=%d", H, C);
    if (mask && (mask->dtype != DT_F32 || mask->ndim != 2 || mask->shape[0] != B || mask->shape[1] != T))
        SHAPE_FAIL("key_mask must be f32 [%d, %d]", B, T);
    if (mode != ATTN_CAUSAL && mode != ATTN_PREFIX) SHAPE_FAIL("mask mode %d is neither causal nor prefix", mode);
    if (mode == ATTN_CAUSAL && n_prefix != 0) SHAPE_FAIL("a causal mask takes no prefix (n_prefix=%d)", n_prefix);
    if (n_prefix < 0 || n_prefix > T) SHAPE_FAIL("n_prefix=%d is outside [0, T=%d]", n_prefix, T);
    int shape[3] = { B, T, C };
    set_shape(out, 3, shape);
    out->dtype = DT_F32;
    out->saved_numel = 2 * (size_t)B * H * T;   // lse, then backward's delta
    return NULL;
}

static const char *shape_embedding(Tensor *out) {
    Tensor *ids = out->src[0], *table = out->src[1];
    if (ids->dtype != DT_I32) SHAPE_FAIL("ids must be i32");
    if (table->ndim != 2 || table->dtype != DT_F32) SHAPE_FAIL("table must be f32 [V, D]");
    if (ids->ndim >= TENSOR_MAX_DIMS) SHAPE_FAIL("ids have too many dims");
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof shape);
    shape[ids->ndim] = table->shape[1];
    set_shape(out, ids->ndim + 1, shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_concat(Tensor *out) {
    Tensor *a = out->src[0];
    int axis = op_axis(out->iattr[0], a->ndim);
    if (axis < 0) SHAPE_FAIL("axis %d out of range", out->iattr[0]);
    out->iattr[0] = axis;
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[axis] = 0;
    for (int i = 0; i < out->nsrc; i++) {
        Tensor *x = out->src[i];
        const char *e = need_f32(x, "input");
        if (e) return e;
        if (x->ndim != a->ndim) SHAPE_FAIL("input %d has %d dims, input 0 has %d", i, x->ndim, a->ndim);
        for (int d = 0; d < a->ndim; d++)
            if (d != axis && x->shape[d] != a->shape[d]) SHAPE_FAIL("input %d differs from input 0 in dim %d", i, d);
        shape[axis] += x->shape[axis];
    }
    set_shape(out, a->ndim, shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_slice(Tensor *out) {
    Tensor *x = out->src[0];
    const char *e = need_f32(x, "x");
    if (e) return e;
    int axis = op_axis(out->iattr[0], x->ndim);
    if (axis < 0) SHAPE_FAIL("axis %d out of range", out->iattr[0]);
    int start = out->iattr[1], len = out->iattr[2];
    if (start < 0 || len <= 0 || start + len > x->shape[axis]) SHAPE_FAIL("slice [%d, %d) outside [0, %d)", start, start + len, x->shape[axis]);
    out->iattr[0] = axis;
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = len;
    set_shape(out, x->ndim, shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_reshape(Tensor *out) {
    // out->shape was set by the constructor; check the count.
    if (out->numel != out->src[0]->numel) SHAPE_FAIL("reshape from %zu to %zu elements", out->src[0]->numel, out->numel);
    out->dtype = out->src[0]->dtype;
    return NULL;
}

static const char *shape_transpose(Tensor *out) {
    Tensor *x = out->src[0];
    const char *e = need_f32(x, "x");
    if (e) return e;
    int a0 = op_axis(out->iattr[0], x->ndim), a1 = op_axis(out->iattr[1], x->ndim);
    if (a0 < 0 || a1 < 0) SHAPE_FAIL("axes out of range");
    out->iattr[0] = a0 < a1 ? a0 : a1;
    out->iattr[1] = a0 < a1 ? a1 : a0;
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[a0] = x->shape[a1];
    shape[a1] = x->shape[a0];
    set_shape(out, x->ndim, shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_reduce(Tensor *out) {
    Tensor *x = out->src[0];
    const char *e = need_f32(x, "x");
    if (e) return e;
    out->dtype = DT_F32;
    if (out->iattr[0] == OP_ALL) return shape_scalar(out);
    int axis = op_axis(out->iattr[0], x->ndim);
    if (axis < 0) SHAPE_FAIL("axis %d out of range", out->iattr[0]);
    out->iattr[0] = axis;
    int shape[TENSOR_MAX_DIMS], nd = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != axis) shape[nd++] = x->shape[d];
    if (nd == 0) shape[nd++] = 1;
    set_shape(out, nd, shape);
    return NULL;
}

static const char *shape_patchify(Tensor *out) {
    Tensor *img = out->src[0];
    int p = out->iattr[0];
    if (img->dtype != DT_U8 || img->ndim != 4 || img->shape[3] != 3) SHAPE_FAIL("image must be u8 [B, H, W, 3]");
    if (p <= 0 || img->shape[1] % p || img->shape[2] % p) SHAPE_FAIL("patch %d does not divide %dx%d", p, img->shape[1], img->shape[2]);
    int shape[3] = { img->shape[0], (img->shape[1] / p) * (img->shape[2] / p), p * p * 3 };
    set_shape(out, 3, shape);
    out->dtype = DT_F32;
    return NULL;
}

static const char *shape_cumsum(Tensor *out) {
    int axis = op_axis(out->iattr[0], out->src[0]->ndim);
    if (axis < 0) SHAPE_FAIL("axis %d out of range", out->iattr[0]);
    out->iattr[0] = axis;
    return shape_same_as_src(out);
}

static const char *shape_cross_entropy(Tensor *out) {
    Tensor *logits = out->src[0], *targets = out->src[1];
    const char *e = need_f32(logits, "logits");
    if (e) return e;
    if (targets->dtype != DT_I32) SHAPE_FAIL("targets must be i32");
    if (targets->ndim != logits->ndim - 1 && !(logits->ndim == 1 && targets->numel == 1)) SHAPE_FAIL("targets must have logits' leading dims");
    for (int d = 0; d < logits->ndim - 1; d++)
        if (targets->shape[d] != logits->shape[d]) SHAPE_FAIL("targets differ from logits in dim %d", d);
    out->saved_numel = logits->numel / logits->shape[logits->ndim - 1] + 1;
    return shape_scalar(out);
}

static const char *shape_regression(Tensor *out) {
    Tensor *pred = out->src[0], *target = out->src[1], *mask = out->nsrc > 2 ? out->src[2] : NULL;
    const char *e;
    if ((e = need_f32(pred, "pred")) || (e = need_f32(target, "target"))) return e;
    if (!tensor_same_shape(pred, target)) SHAPE_FAIL("pred and target differ in shape");
    if (mask) {
        if ((e = need_f32(mask, "mask"))) return e;
        if (mask->ndim > pred->ndim) SHAPE_FAIL("mask has more dims than pred");
        for (int d = 0; d < mask->ndim; d++)
            if (mask->shape[d] != pred->shape[d]) SHAPE_FAIL("mask must be a prefix of pred's shape (dim %d)", d);
    }
    return shape_scalar(out);
}

static const char *shape_cast(Tensor *out) {
    Tensor *x = out->src[0];
    DType to = (DType)out->iattr[0];
    if ((x->dtype != DT_F32 && x->dtype != DT_BF16) || (to != DT_F32 && to != DT_BF16)) SHAPE_FAIL("cast is between f32 and bf16");
    set_shape(out, x->ndim, x->shape);
    out->dtype = to;
    return NULL;
}

// logits [..., V]; topk ids and log-probs [..., k]; mask [...] or absent.
static const char *shape_distill_kl(Tensor *out) {
    Tensor *logits = out->src[0], *ids = out->src[1], *lp = out->src[2], *mask = out->nsrc > 3 ? out->src[3] : NULL;
    const char *e;
    if ((e = need_f32(logits, "logits")) || (e = need_f32(lp, "topk_logprobs"))) return e;
    if (ids->dtype != DT_I32) SHAPE_FAIL("topk_ids must be i32");
    if (!tensor_same_shape(ids, lp)) SHAPE_FAIL("topk_ids and topk_logprobs differ in shape");
    if (logits->ndim < 2 || ids->ndim != logits->ndim) SHAPE_FAIL("logits must be [..., V] and topk_ids [..., k] with the same leading dims");
    for (int d = 0; d < logits->ndim - 1; d++)
        if (ids->shape[d] != logits->shape[d]) SHAPE_FAIL("topk_ids differ from logits in dim %d", d);
    int k = ids->shape[ids->ndim - 1];
    if (k < 1 || k > DISTILL_KL_MAX_K) SHAPE_FAIL("top-k of %d entries (1..%d allowed)", k, DISTILL_KL_MAX_K);
    size_t rows = logits->numel / (size_t)logits->shape[logits->ndim - 1];
    if (mask) {
        if ((e = need_f32(mask, "mask"))) return e;
        if (mask->numel != rows || mask->ndim != logits->ndim - 1) SHAPE_FAIL("mask must have logits' leading dims (%zu rows)", rows);
        for (int d = 0; d < mask->ndim; d++)
            if (mask->shape[d] != logits->shape[d]) SHAPE_FAIL("mask differs from logits in dim %d", d);
    }
    int mode = out->iattr[0], tail = out->iattr[1], t2 = out->iattr[2];
    float t_logged = out->fattr[0], t = out->fattr[1], beta = out->fattr[2];
    if (mode < DISTILL_FORWARD_KL || mode > DISTILL_JSD) SHAPE_FAIL("mode %d (0 forward KL, 1 reverse KL, 2 JSD)", mode);
    if ((tail != 0 && tail != 1) || (t2 != 0 && t2 != 1)) SHAPE_FAIL("tail and t2 are 0 or 1");
    if (!(t_logged > 0) || !(t > 0)) SHAPE_FAIL("temperatures must be > 0 (t_logged %g, t %g)", t_logged, t);
    if (mode == DISTILL_JSD && !(beta >= 0 && beta <= 1)) SHAPE_FAIL("JSD beta %g outside [0, 1]", beta);
    out->saved_numel = 5 * rows + 1;   // 2R doubles, R floats, the count
    return shape_scalar(out);
}

static const char *shape_traj_loss(Tensor *out) {
    Tensor *pred = out->src[0], *targets = out->src[1], *weights = out->src[2];
    const char *e;
    if ((e = need_f32(pred, "pred")) || (e = need_f32(targets, "targets")) || (e = need_f32(weights, "weights"))) return e;
    if (pred->ndim != 3 || pred->shape[2] != 3) SHAPE_FAIL("pred must be [B, T, 3]");
    int B = pred->shape[0], T = pred->shape[1];
    if (targets->ndim != 4 || targets->shape[0] != B || targets->shape[2] != T || targets->shape[3] != 3)
        SHAPE_FAIL("targets must be [%d, K, %d, 3]", B, T);
    int K = targets->shape[1];
    if (weights->ndim != 2 || weights->shape[0] != B || weights->shape[1] != K) SHAPE_FAIL("weights must be [%d, %d]", B, K);
    if (out->iattr[0] != TRAJ_WEIGHTED && out->iattr[0] != TRAJ_BEST) SHAPE_FAIL("mode %d (0 weighted, 1 best)", out->iattr[0]);
    if (!(out->fattr[0] >= 0)) SHAPE_FAIL("smooth-L1 beta %g < 0", out->fattr[0]);
    out->saved_numel = (size_t)B * K + B + 1;
    return shape_scalar(out);
}

static const char *shape_cosine_loss(Tensor *out) {
    Tensor *a = out->src[0], *b = out->src[1], *mask = out->nsrc > 2 ? out->src[2] : NULL;
    const char *e;
    if ((e = need_f32(a, "a")) || (e = need_f32(b, "b"))) return e;
    if (a->ndim != 2 || !tensor_same_shape(a, b)) SHAPE_FAIL("a and b must both be [B, D]");
    if (mask) {
        if ((e = need_f32(mask, "mask"))) return e;
        if (mask->ndim != 1 || mask->shape[0] != a->shape[0]) SHAPE_FAIL("mask must be [%d]", a->shape[0]);
    }
    out->saved_numel = (size_t)a->shape[0] + 1;
    return shape_scalar(out);
}

// bwd_skips: what each backward leaves unread (ops.h); rows without it read
// everything. The kernels under kernels/cpu and kernels/cuda are the
// authority: a backward that starts reading a source must drop its bit.
#define KERNELS(op) \
    .forward = { [DEV_CPU] = op##_forward_cpu, CUDA_FWD(op) }, \
    .backward = { [DEV_CPU] = op##_backward_cpu, CUDA_BWD(op) }

const OpDef op_table[OP_COUNT] = {
    [OP_INPUT]         = { .name = "input" },
    [OP_PARAM]         = { .name = "param" },
    [OP_MATMUL]        = { "matmul",        shape_matmul,        KERNELS(matmul), .bwd_skips = BWD_SKIPS_OUT,
                           .bf16_in = BF16_SRC(0) | BF16_SRC(1) },
    [OP_LINEAR]        = { "linear",        shape_linear,        KERNELS(linear), .bwd_skips = BWD_SKIPS_OUT | BWD_SKIPS_SRC(2),
                           .bf16_in = BF16_SRC(0), .bf16_out = 1 },
    [OP_ADD]           = { "add",           shape_broadcast,     KERNELS(add), .bwd_skips = BWD_SKIPS_ALL },
    [OP_MUL]           = { "mul",           shape_broadcast,     KERNELS(mul), .bwd_skips = BWD_SKIPS_OUT },
    [OP_SCALE]         = { "scale",         shape_same_as_src,   KERNELS(scale), .bwd_skips = BWD_SKIPS_ALL },
    [OP_LAYERNORM]     = { "layernorm",     shape_layernorm,     KERNELS(layernorm), .bwd_skips = BWD_SKIPS_OUT | BWD_SKIPS_SRC(2), .remat = 1,
                           .bf16_out = 1 },
    [OP_GELU]          = { "gelu",          shape_same_as_src,   KERNELS(gelu), .bwd_skips = BWD_SKIPS_OUT, .remat = 1 },
    [OP_SOFTMAX]       = { "softmax",       shape_same_as_src,   KERNELS(softmax), .bwd_skips = BWD_SKIPS_SRC(0) },
    [OP_ATTENTION]     = { "attention",     shape_attention,     KERNELS(attention),
                           .bf16_in = BF16_SRC(0), .bf16_out = 1 },
    [OP_EMBEDDING]     = { "embedding",     shape_embedding,     KERNELS(embedding), .bwd_skips = BWD_SKIPS_OUT | BWD_SKIPS_SRC(1) },
    [OP_CONCAT]        = { "concat",        shape_concat,        KERNELS(concat), .bwd_skips = BWD_SKIPS_ALL },
    [OP_SLICE]         = { "slice",         shape_slice,         KERNELS(slice), .bwd_skips = BWD_SKIPS_ALL },
    [OP_RESHAPE]       = { .name = "reshape", .shape = shape_reshape },   // a view: no kernel
    [OP_TRANSPOSE]     = { "transpose",     shape_transpose,     KERNELS(transpose), .bwd_skips = BWD_SKIPS_ALL },
    [OP_SUM]           = { "sum",           shape_reduce,        KERNELS(sum), .bwd_skips = BWD_SKIPS_ALL },
    [OP_MEAN]          = { "mean",          shape_reduce,        KERNELS(mean), .bwd_skips = BWD_SKIPS_ALL },
    [OP_PATCHIFY]      = { "patchify",      shape_patchify,      KERNELS(patchify) },
    [OP_SIN]           = { "sin",           shape_same_as_src,   KERNELS(sin), .bwd_skips = BWD_SKIPS_OUT },
    [OP_COS]           = { "cos",           shape_same_as_src,   KERNELS(cos), .bwd_skips = BWD_SKIPS_OUT },
    [OP_CUMSUM]        = { "cumsum",        shape_cumsum,        KERNELS(cumsum), .bwd_skips = BWD_SKIPS_ALL },
    [OP_CROSS_ENTROPY] = { "cross_entropy", shape_cross_entropy, KERNELS(cross_entropy) },
    [OP_SMOOTH_L1]     = { "smooth_l1",     shape_regression,    KERNELS(smooth_l1) },
    [OP_MSE]           = { "mse",           shape_regression,    KERNELS(mse) },
    [OP_CAST]          = { "cast",          shape_cast,          KERNELS(cast), .bwd_skips = BWD_SKIPS_ALL },
    [OP_DISTILL_KL]    = { "distill_kl",    shape_distill_kl,    KERNELS(distill_kl) },
    [OP_TRAJ_LOSS]     = { "traj_loss",     shape_traj_loss,     KERNELS(traj_loss) },
    [OP_COSINE_LOSS]   = { "cosine_loss",   shape_cosine_loss,   KERNELS(cosine_loss) },
    [OP_BIAS_GELU]     = { "bias_gelu",     shape_bias_gelu,     KERNELS(bias_gelu), .bwd_skips = BWD_SKIPS_OUT, .remat = 1,
                           .bf16_out = 1 },
    [OP_BIAS_RESIDUAL] = { "bias_residual", shape_bias_residual, KERNELS(bias_residual), .bwd_skips = BWD_SKIPS_ALL },
};

const char *op_name(int op) {
    return (op >= 0 && op < OP_COUNT) ? op_table[op].name : "?";
}

// Record a node and run its shape rule; a failing rule is a model bug.
static Tensor *record(Graph *g, int op, Tensor **src, int nsrc, const int *iattr, int ni, const float *fattr, int nf) {
    for (int i = 0; i < nsrc; i++)
        if (!src[i]) { fprintf(stderr, "distil: error: op %s: source %d is NULL (a model-building bug)\n", op_name(op), i); exit(2); }
    Tensor *out = graph_node(g, op, src, nsrc);
    for (int i = 0; i < ni; i++) out->iattr[i] = iattr[i];
    for (int i = 0; i < nf; i++) out->fattr[i] = fattr[i];
    const char *err = op_table[op].shape(out);
    if (err) {
        char desc[96];
        fprintf(stderr, "distil: error: op %s (node %d, input %s): %s; this is a bug in the model code or an unchecked recipe value\n",
                op_name(op), out->id, tensor_describe(src[0], desc, sizeof desc), err);
        exit(2);
    }
    // Integer and u8 outputs (none today) and ops without a backward take no grad.
    if (!op_table[op].backward[DEV_CPU] || out->dtype == DT_I32 || out->dtype == DT_U8) out->requires_grad = 0;
    return out;
}

Tensor *op_matmul(Graph *g, Tensor *a, Tensor *b) {
    Tensor *t = record(g, OP_MATMUL, (Tensor *[]){ a, b }, 2, NULL, 0, NULL, 0);
    t->iattr[OP_IATTR_BF16] = g->products == DT_BF16;
    return t;
}

Tensor *op_linear(Graph *g, Tensor *x, Tensor *w, Tensor *bias) {
    Tensor *t = record(g, OP_LINEAR, (Tensor *[]){ x, w, bias }, bias ? 3 : 2, NULL, 0, NULL, 0);
    t->iattr[OP_IATTR_BF16] = g->products == DT_BF16;
    return t;
}

Tensor *op_add(Graph *g, Tensor *a, Tensor *b) {
    return record(g, OP_ADD, (Tensor *[]){ a, b }, 2, NULL, 0, NULL, 0);
}

Tensor *op_mul(Graph *g, Tensor *a, Tensor *b) {
    return record(g, OP_MUL, (Tensor *[]){ a, b }, 2, NULL, 0, NULL, 0);
}

Tensor *op_residual(Graph *g, Tensor *x, Tensor *fx) {
    if (!tensor_same_shape(x, fx)) {
        char a[96], b[96];
        fprintf(stderr, "distil: error: op residual: %s + %s: shapes differ (a model-building bug)\n",
                tensor_describe(x, a, sizeof a), tensor_describe(fx, b, sizeof b));
        exit(2);
    }
    return op_add(g, x, fx);
}

Tensor *op_scale(Graph *g, Tensor *a, float s) {
    return record(g, OP_SCALE, &a, 1, NULL, 0, &s, 1);
}

Tensor *op_layernorm(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps) {
    return record(g, OP_LAYERNORM, (Tensor *[]){ x, gamma, beta }, 3, NULL, 0, &eps, 1);
}

Tensor *op_gelu(Graph *g, Tensor *x) { return record(g, OP_GELU, &x, 1, NULL, 0, NULL, 0); }
Tensor *op_softmax(Graph *g, Tensor *x) { return record(g, OP_SOFTMAX, &x, 1, NULL, 0, NULL, 0); }

Tensor *op_bias_gelu(Graph *g, Tensor *x, Tensor *bias) {
    return record(g, OP_BIAS_GELU, (Tensor *[]){ x, bias }, 2, NULL, 0, NULL, 0);
}

Tensor *op_bias_residual(Graph *g, Tensor *x, Tensor *fx, Tensor *bias) {
    return record(g, OP_BIAS_RESIDUAL, (Tensor *[]){ x, fx, bias }, 3, NULL, 0, NULL, 0);
}
Tensor *op_sin(Graph *g, Tensor *x) { return record(g, OP_SIN, &x, 1, NULL, 0, NULL, 0); }
Tensor *op_cos(Graph *g, Tensor *x) { return record(g, OP_COS, &x, 1, NULL, 0, NULL, 0); }

// The graph's product precision (OP_IATTR_BF16): in a bf16 graph qkv may
// be stored bf16 (plan.h), which the attention reads as it is.
static Tensor *record_attention(Graph *g, Tensor *qkv, Tensor *key_mask, const int iattr[3]) {
    Tensor *t = record(g, OP_ATTENTION, (Tensor *[]){ qkv, key_mask }, key_mask ? 2 : 1, iattr, 3, NULL, 0);
    t->iattr[OP_IATTR_BF16] = g->products == DT_BF16;
    return t;
}

Tensor *op_attention(Graph *g, Tensor *qkv, Tensor *key_mask, int n_head) {
    return record_attention(g, qkv, key_mask, (int[]){ n_head, ATTN_CAUSAL, 0 });
}

Tensor *op_attention_prefix(Graph *g, Tensor *qkv, Tensor *key_mask, int n_head, int n_prefix) {
    return record_attention(g, qkv, key_mask, (int[]){ n_head, ATTN_PREFIX, n_prefix });
}

Tensor *op_embedding(Graph *g, Tensor *ids, Tensor *table) {
    return record(g, OP_EMBEDDING, (Tensor *[]){ ids, table }, 2, NULL, 0, NULL, 0);
}

Tensor *op_concat(Graph *g, Tensor **xs, int n, int axis) {
    if (n < 1 || n > TENSOR_MAX_SRC) { fprintf(stderr, "distil: error: op concat: %d inputs (1..%d allowed)\n", n, TENSOR_MAX_SRC); exit(2); }
    return record(g, OP_CONCAT, xs, n, &axis, 1, NULL, 0);
}

Tensor *op_slice(Graph *g, Tensor *x, int axis, int start, int len) {
    return record(g, OP_SLICE, &x, 1, (int[]){ axis, start, len }, 3, NULL, 0);
}

Tensor *op_reshape(Graph *g, Tensor *x, int ndim, const int *shape) {
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS) { fprintf(stderr, "distil: error: op reshape: %d dims\n", ndim); exit(2); }
    Tensor *out = graph_node(g, OP_RESHAPE, &x, 1);
    set_shape(out, ndim, shape);
    out->view = 1;
    const char *err = shape_reshape(out);
    if (err) { fprintf(stderr, "distil: error: op reshape (node %d): %s\n", out->id, err); exit(2); }
    return out;
}

Tensor *op_transpose(Graph *g, Tensor *x, int axis0, int axis1) {
    return record(g, OP_TRANSPOSE, &x, 1, (int[]){ axis0, axis1 }, 2, NULL, 0);
}

Tensor *op_sum(Graph *g, Tensor *x, int axis) { return record(g, OP_SUM, &x, 1, &axis, 1, NULL, 0); }
Tensor *op_mean(Graph *g, Tensor *x, int axis) { return record(g, OP_MEAN, &x, 1, &axis, 1, NULL, 0); }

Tensor *op_patchify(Graph *g, Tensor *img, int p, const float mean[3], const float std[3]) {
    float f[6] = { mean[0], mean[1], mean[2], std[0], std[1], std[2] };
    return record(g, OP_PATCHIFY, &img, 1, &p, 1, f, 6);
}

Tensor *op_cumsum(Graph *g, Tensor *x, int axis) { return record(g, OP_CUMSUM, &x, 1, &axis, 1, NULL, 0); }

Tensor *op_cross_entropy(Graph *g, Tensor *logits, Tensor *targets, int ignore_index) {
    return record(g, OP_CROSS_ENTROPY, (Tensor *[]){ logits, targets }, 2, &ignore_index, 1, NULL, 0);
}

Tensor *op_smooth_l1(Graph *g, Tensor *pred, Tensor *target, Tensor *mask, float beta) {
    return record(g, OP_SMOOTH_L1, (Tensor *[]){ pred, target, mask }, mask ? 3 : 2, NULL, 0, &beta, 1);
}

Tensor *op_mse(Graph *g, Tensor *pred, Tensor *target, Tensor *mask) {
    return record(g, OP_MSE, (Tensor *[]){ pred, target, mask }, mask ? 3 : 2, NULL, 0, NULL, 0);
}

Tensor *op_cast(Graph *g, Tensor *x, DType dt) {
    int to = (int)dt;
    return record(g, OP_CAST, &x, 1, &to, 1, NULL, 0);
}

Tensor *op_distill_kl(Graph *g, Tensor *logits, Tensor *topk_ids, Tensor *topk_logprobs, Tensor *mask,
                      const DistillKLConfig *cfg) {
    int ia[3] = { cfg->mode, cfg->tail, cfg->t2 };
    float fa[3] = { cfg->t_logged, cfg->t, cfg->beta };
    return record(g, OP_DISTILL_KL, (Tensor *[]){ logits, topk_ids, topk_logprobs, mask }, mask ? 4 : 3, ia, 3, fa, 3);
}

Tensor *op_traj_loss(Graph *g, Tensor *pred, Tensor *targets, Tensor *weights, int mode, float beta, float yaw_weight) {
    return record(g, OP_TRAJ_LOSS, (Tensor *[]){ pred, targets, weights }, 3, &mode, 1, (float[]){ beta, yaw_weight }, 2);
}

Tensor *op_cosine_loss(Graph *g, Tensor *a, Tensor *b, Tensor *mask) {
    return record(g, OP_COSINE_LOSS, (Tensor *[]){ a, b, mask }, mask ? 3 : 2, NULL, 0, NULL, 0);
}
