// ops.h: the op table and the constructors that record ops on a tape.
//
// Every op is one row of op_table (ops.c): a name, a shape rule, and a forward
// and backward per backend. The CPU kernels live in kernels/cpu/<op>.c and the
// CUDA ones in kernels/cuda/<op>.cu, named <op>_forward_<backend> and
// <op>_backward_<backend>. Backward functions *accumulate* (+=) into the
// grads of the sources that have one (src->grad != NULL).
//
// Shapes are written outermost first. "[..., C]" means any leading dims.
#pragma once
#include "autograd/graph.h"   // defines: Graph, Tensor

typedef enum {
    OP_INPUT = 0,       // leaves: no kernel
    OP_PARAM,
    OP_MATMUL,
    OP_LINEAR,
    OP_ADD,
    OP_MUL,
    OP_SCALE,
    OP_LAYERNORM,
    OP_GELU,
    OP_SOFTMAX,
    OP_ATTENTION,
    OP_EMBEDDING,
    OP_CONCAT,
    OP_SLICE,
    OP_RESHAPE,
    OP_TRANSPOSE,
    OP_SUM,
    OP_MEAN,
    OP_PATCHIFY,
    OP_SIN,
    OP_COS,
    OP_CUMSUM,
    OP_CROSS_ENTROPY,
    OP_SMOOTH_L1,
    OP_MSE,
    OP_CAST,
    OP_COUNT
} OpId;

typedef void (*KernelFn)(Tensor *out);

typedef struct OpDef {
    const char *name;
    // Checks the sources and attributes of `out` and sets out->ndim/shape/dtype
    // and out->saved_numel. Returns NULL, or a message saying what is wrong.
    const char *(*shape)(Tensor *out);
    KernelFn forward[DEV_COUNT];
    KernelFn backward[DEV_COUNT];    // NULL: no source can take a gradient
} OpDef;

extern const OpDef op_table[OP_COUNT];

// ---- constructors -------------------------------------------------------
// Each appends one node to g's tape and returns it. A shape error is a bug in
// the model code (recipes are validated before a model is built), so it is
// reported on one line and the process exits with status 2.

// a [M, K] or [B, M, K]; b [K, N] (shared over the batch) or [B, K, N].
// -> [M, N] or [B, M, N].
Tensor *op_matmul(Graph *g, Tensor *a, Tensor *b);
// x [..., in]; w [out, in] (PyTorch layout); bias [out] or NULL. -> [..., out].
Tensor *op_linear(Graph *g, Tensor *x, Tensor *w, Tensor *bias);
// Elementwise a + b and a * b. b has a's shape or a's trailing dims
// (broadcast over a's leading dims). -> a's shape.
Tensor *op_add(Graph *g, Tensor *a, Tensor *b);
Tensor *op_mul(Graph *g, Tensor *a, Tensor *b);
// The residual connection x + f(x): op_add with equal shapes, checked.
Tensor *op_residual(Graph *g, Tensor *x, Tensor *fx);
// a * s. fattr[0] = s.
Tensor *op_scale(Graph *g, Tensor *a, float s);
// Over the last dim: (x - mean) / sqrt(var + eps) * gamma + beta; var is the
// biased variance. x [..., C], gamma [C], beta [C]. fattr[0] = eps.
// saved: mean and rstd per row (2 * rows floats).
Tensor *op_layernorm(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps);
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
Tensor *op_gelu(Graph *g, Tensor *x);
// Softmax over the last dim (max-subtracted).
Tensor *op_softmax(Graph *g, Tensor *x);
// Fused causal multi-head self-attention.
// qkv [B, T, 3C]: channels [0,C) are q, [C,2C) k, [2C,3C) v; head h owns
// channels [h*C/H, (h+1)*C/H) of each. key_mask [B, T] (1 keep, 0 ignore) or
// NULL. Query i attends to keys j <= i with key_mask[b, j] != 0, scaled by
// 1/sqrt(C/H); a query with no allowed key outputs zeros. -> [B, T, C].
// iattr[0] = H. saved: the attention probabilities [B, H, T, T].
Tensor *op_attention(Graph *g, Tensor *qkv, Tensor *key_mask, int n_head);
// ids i32 [...], table [V, D] -> [..., D]. Ids outside [0, V) give zero rows
// (the data layer rejects them first). Backward scatter-adds into the table
// without races (each thread owns a slice of D), so it is deterministic.
Tensor *op_embedding(Graph *g, Tensor *ids, Tensor *table);
// Concatenate n (<= 4) tensors along `axis` (negative counts from the end).
// All other dims equal. iattr[0] = axis.
Tensor *op_concat(Graph *g, Tensor **xs, int n, int axis);
// x[..., start:start+len, ...] along axis. iattr[0] = axis, [1] = start, [2] = len.
Tensor *op_slice(Graph *g, Tensor *x, int axis, int start, int len);
// A view with the same numel: data and grad alias x (no copy, no kernel).
Tensor *op_reshape(Graph *g, Tensor *x, int ndim, const int *shape);
// Swap two axes. Materialised (a copy), so every kernel sees contiguous data.
// iattr[0], iattr[1] = the axes.
Tensor *op_transpose(Graph *g, Tensor *x, int axis0, int axis1);
// Sum / mean over one axis (the axis is removed), or over everything when
// axis == OP_ALL (-> [1]). iattr[0] = axis.
#define OP_ALL 0x7fff
Tensor *op_sum(Graph *g, Tensor *x, int axis);
Tensor *op_mean(Graph *g, Tensor *x, int axis);
// u8 image [B, H, W, 3] -> [B, (H/p)*(W/p), p*p*3] in fp32. Patches in
// row-major order over the patch grid; inside a patch the order is (dy, dx,
// channel). Value = (pixel/255 - mean[c]) / std[c]. H and W divisible by p.
// iattr[0] = p; fattr[0..2] = mean, fattr[3..5] = std. No gradient.
Tensor *op_patchify(Graph *g, Tensor *img, int p, const float mean[3], const float std[3]);
Tensor *op_sin(Graph *g, Tensor *x);
Tensor *op_cos(Graph *g, Tensor *x);
// Inclusive cumulative sum along axis. iattr[0] = axis.
Tensor *op_cumsum(Graph *g, Tensor *x, int axis);
// logits [..., V], targets i32 [...] (logits' leading dims). Mean over the
// targets != ignore_index of -log softmax(logits)[target]; 0 when all are
// ignored. -> [1]. iattr[0] = ignore_index. saved: logsumexp per row, then
// the count of counted targets.
Tensor *op_cross_entropy(Graph *g, Tensor *logits, Tensor *targets, int ignore_index);
// Masked, weighted means over elements -> [1]. pred and target share a shape;
// mask is NULL, or has pred's shape or a prefix of it (pred [B,T,3] with mask
// [B,T] weights each waypoint's 3 values). The result is
// sum(w * l(pred - target)) / sum(w) over all elements, with w the mask value
// broadcast to the element (1 without a mask); 0 when sum(w) == 0.
// smooth_l1: l(d) = 0.5 d^2 / beta if |d| < beta, else |d| - 0.5 beta
// (PyTorch's smooth_l1_loss; Huber(delta) = delta * smooth_l1(beta = delta)).
// fattr[0] = beta. mse: l(d) = d^2. Gradients flow to pred and target, not mask.
Tensor *op_smooth_l1(Graph *g, Tensor *pred, Tensor *target, Tensor *mask, float beta);
Tensor *op_mse(Graph *g, Tensor *pred, Tensor *target, Tensor *mask);
// Change storage dtype between DT_F32 and DT_BF16 (round to nearest even).
// The gradient passes through unchanged (grads are fp32). iattr[0] = dtype.
Tensor *op_cast(Graph *g, Tensor *x, DType dt);

const char *op_name(int op);
// Resolve a possibly negative axis against ndim; -1 if out of range.
int op_axis(int axis, int ndim);
