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
    OP_DISTILL_KL,
    OP_TRAJ_LOSS,
    OP_COSINE_LOSS,
    OP_BIAS_GELU,
    OP_BIAS_RESIDUAL,
    OP_COUNT
} OpId;

typedef void (*KernelFn)(Tensor *out);

// OpDef.bwd_skips: what an op's backward does not read, so the memory
// planner (autograd/plan.h) may reuse it once the forward is done with it.
// Bit i: src[i]'s data; BWD_SKIPS_OUT: the op's own output. 0 (the
// default) claims it reads everything, which is always safe.
#define BWD_SKIPS_SRC(i) (1u << (i))
#define BWD_SKIPS_OUT (1u << 8)
#define BWD_SKIPS_ALL 0x1ffu

typedef struct OpDef {
    const char *name;
    // Checks the sources and attributes of `out` and sets out->ndim/shape/dtype
    // and out->saved_numel. Returns NULL, or a message saying what is wrong.
    const char *(*shape)(Tensor *out);
    KernelFn forward[DEV_COUNT];
    KernelFn backward[DEV_COUNT];    // NULL: no source can take a gradient
    unsigned bwd_skips;
    // 1: cheap to run again (one elementwise pass over data still live in
    // backward), so the planner may drop its output after the forward and
    // recompute it just before the backward that reads it.
    int remat;
    // train.precision bf16's stored activations (plan.h, plan_bf16_outputs):
    // bf16_in, bit i: when the op's OP_IATTR_BF16 is set, src[i] may be
    // stored bf16 (the op reads it at a bf16 rounding point, or, for the
    // attention's qkv, takes it as bf16 by design); bf16_out: the op's
    // kernels can write their output as bf16 (their math stays fp32).
    unsigned bf16_in;
    int bf16_out;
} OpDef;
#define BF16_SRC(i) (1u << (i))   // OpDef.bf16_in's bit for src[i]

extern const OpDef op_table[OP_COUNT];

// ---- constructors -------------------------------------------------------
// Each appends one node to g's tape and returns it. A shape error is a bug in
// the model code (recipes are validated before a model is built), so it is
// reported on one line and the process exits with status 2.

// The iattr slot where matmul, linear and attention record the graph's
// product precision (graph_set_products). For matmul and linear, 1 when
// both operands of each of their products (forward and backward) are
// rounded to bf16 before an fp32-summed product, on the CPU
// (kernels/cpu/gemm_bf16.h) and on CUDA (cuBLASLt) at the same points; 0
// for fp32 products. An operand may then arrive already bf16 (its producer
// stored it so: OpDef.bf16_out, plan.h), which the product reads as it is:
// the same bits as rounding it there. For attention, 1 lets the planner
// store its qkv bf16 (a rounding point of its own; its math stays fp32).
#define OP_IATTR_BF16 7

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
// gelu(x + bias): x [..., C] (a linear layer's product, recorded without
// its bias), bias [C]. The bias add fused into the GELU: one pass over the
// product forward, and one backward that gives x and the bias their
// gradients together. Nothing saved (backward recomputes from x).
Tensor *op_bias_gelu(Graph *g, Tensor *x, Tensor *bias);
// x + (fx + bias): a residual connection around a linear layer recorded
// without its bias. x and fx [..., C] of one shape, bias [C]. One pass
// forward; backward passes d(out) to x and fx and sums it into the bias in
// one pass.
Tensor *op_bias_residual(Graph *g, Tensor *x, Tensor *fx, Tensor *bias);
// Softmax over the last dim (max-subtracted).
Tensor *op_softmax(Graph *g, Tensor *x);
// Fused multi-head self-attention, computed in the FlashAttention-2 manner
// (tiles of queries and keys, an online softmax) so that nothing of size
// T x T is ever stored.
// qkv [B, T, 3C]: channels [0,C) are q, [C,2C) k, [2C,3C) v; head h owns
// channels [h*C/H, (h+1)*C/H) of each. key_mask [B, T] (1 keep, 0 ignore) or
// NULL. With i, j the 0-based positions of a query and a key:
//   visible_end(i) = i + 1                    ATTN_CAUSAL
//                  = max(i + 1, n_prefix)     ATTN_PREFIX
// (prefix: the first n_prefix tokens see each other both ways, every later
// token sees the whole prefix and the tokens up to itself). Query i of
// batch b sees key j iff j < visible_end(i) and key_mask[b, j] != 0.
// Per head, with s_ij = q_i . k_j / sqrt(C/H) over the keys i sees,
// out_i = sum_j softmax_j(s_ij) v_j; a query that sees no key outputs zeros
// and passes no gradient. -> [B, T, C].
// iattr = { H, mode, n_prefix } (n_prefix 0 in causal mode; 0 <= n_prefix <= T),
// iattr[OP_IATTR_BF16] as above. Under train.precision bf16, qkv and out may
// be stored bf16 (autograd/plan.h); the scores, softmax and sums stay fp32
// and the gradients are fp32.
// saved (2 B H T floats): lse [B, H, T], query i's logsumexp_j s_ij (+inf
// when it sees no key), from which backward recomputes the probabilities
// tile by tile; then delta [B, H, T], scratch written by backward
// (rowsum(dO * out) per head).
typedef enum { ATTN_CAUSAL = 0, ATTN_PREFIX = 1 } AttnMode;
Tensor *op_attention(Graph *g, Tensor *qkv, Tensor *key_mask, int n_head);   // causal
Tensor *op_attention_prefix(Graph *g, Tensor *qkv, Tensor *key_mask, int n_head, int n_prefix);
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

// ---- the distillation losses ---------------------------------------------
// All three reduce to [1], computed in fp32/double whatever the model's
// precision, and take no gradient into their data inputs (ids, teacher
// values, targets, weights, masks).

// Token distillation against the teacher's logged top-k.
typedef struct {
    float t_logged;   // temperature the teacher's log-probs were logged at (> 0)
    float t;          // the recipe's temperature T (> 0)
    int mode;         // DISTILL_FORWARD_KL, DISTILL_REVERSE_KL or DISTILL_JSD
    float beta;       // JSD's beta in [0, 1] (unused otherwise)
    int tail;         // 1: one more outcome, the tail, for the rest of the mass
    int t2;           // 1: multiply the loss by T^2 (keeps gradient scale across T)
} DistillKLConfig;
enum { DISTILL_FORWARD_KL = 0, DISTILL_REVERSE_KL = 1, DISTILL_JSD = 2 };
#define DISTILL_KL_MAX_K 256   // top-k entries per row a kernel sorts on its stack
// logits f32 [..., V] (R rows), topk_ids i32 [..., k] and topk_logprobs f32
// [..., k] (logits' leading dims), mask f32 [...] (1 counts a row, 0 ignores
// it; NULL: every row counts). k <= DISTILL_KL_MAX_K. Per row:
//   Teacher q. Entry j is valid when id_j is in [0, V) (-1 marks a token
//   outside the student vocab). Re-tempering: lp_j at t_logged is
//   z_j / t_logged up to a constant, so at T the weight is
//   exp(lp_j * t_logged / T). tail = 0: q_j ∝ that over the valid entries
//   (invalid ones dropped). tail = 1: one more outcome with raw mass
//   r = max(0, 1 - sum_{all j} exp(lp_j)) + sum_{invalid j} exp(lp_j),
//   weighted r^(t_logged / T), and q normalised over the valid entries and
//   the tail.
//   Student p. pi = softmax(logits / T) over all V. p_j = pi[id_j] for valid
//   j; tail = 1: p_tail = sum of pi over the ids not among the valid top-k
//   (= 1 - sum_j p_j, summed directly in double); tail = 0: p_j renormalised
//   over the valid entries. A duplicated id (should not happen) stays two
//   separate outcomes, each with pi[id].
//   Row loss over the outcomes o, with log(x) read as log(max(x, 1e-30)):
//     forward KL(q||p) = sum q_o (log q_o - log p_o)
//     reverse KL(p||q) = sum p_o (log p_o - log q_o)
//     JSD(beta) = beta KL(q||m) + (1 - beta) KL(p||m), m = beta q + (1 - beta) p
//   times T^2 when t2. A row with no outcome (tail = 0, no valid entry)
//   adds 0 but still counts.
// -> [1]: the mean over counted rows (0 if none). Gradient into logits only.
// iattr = { mode, tail, t2 }, fattr = { t_logged, t, beta }.
// saved (5R + 1 floats): per row the logsumexp of logits/T and then the
// student's tail mass, as doubles (4R floats); per row its loss (before T^2
// and the mean); then the number of counted rows.
Tensor *op_distill_kl(Graph *g, Tensor *logits, Tensor *topk_ids, Tensor *topk_logprobs, Tensor *mask,
                      const DistillKLConfig *cfg);

// Trajectory loss against K candidate trajectories per sample.
enum { TRAJ_WEIGHTED = 0, TRAJ_BEST = 1 };
// pred [B, T, 3] (x, y, yaw), targets [B, K, T, 3], weights f32 [B, K] (>= 0).
//   l_bk = mean over T of smooth_l1(dx) + smooth_l1(dy)
//          + yaw_weight * smooth_l1(wrap(dyaw)),
// d = pred - target, smooth_l1 as op_smooth_l1's with beta (beta = 0: L1),
// wrap(a) = a - 2 pi floor((a + pi) / 2 pi), into [-pi, pi).
//   TRAJ_WEIGHTED: l_b = sum_k w_bk l_bk / sum_k w_bk.
//   TRAJ_BEST: l_b = l_bk* for the k* of smallest l_bk among the k with
//   w_bk > 0 (ties: lowest k); the weights only select.
// A sample whose weights sum to 0 is masked out. -> [1]: the mean of l_b
// over the other samples (0 if none). Gradient into pred only (targets and
// weights are data). Ground-truth training: K = 1, weight = presence flag.
// iattr[0] = mode; fattr = { beta, yaw_weight }.
// saved (B K + B + 1): l_bk, then per sample the chosen k (TRAJ_BEST) or 0
// (TRAJ_WEIGHTED), -1 when masked out, then the count of counted samples.
Tensor *op_traj_loss(Graph *g, Tensor *pred, Tensor *targets, Tensor *weights, int mode, float beta, float yaw_weight);

// Feature loss: a [B, D], b [B, D], mask f32 [B] (1 counts a row, 0 ignores
// it) or NULL. cos_b = a_b . b_b / max(|a_b| |b_b|, 1e-8).
// -> [1]: the mean of 1 - cos_b over counted rows (0 if none). Gradients
// into a and b. saved (B + 1): 1 - cos per row (0 if not counted), then the
// count.
Tensor *op_cosine_loss(Graph *g, Tensor *a, Tensor *b, Tensor *mask);

const char *op_name(int op);
// Resolve a possibly negative axis against ndim; -1 if out of range.
int op_axis(int axis, int ndim);
