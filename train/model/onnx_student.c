// onnx_student.c: the student as an ONNX graph (opset 17), node for node
// what docs/model.md specifies and train/model/model.c records, with the input
// normalisation and the output scales inside the graph. docs/export.md
// lists the inputs and outputs.
//
// Notation as in docs/model.md: B (the symbolic "batch"), C cameras, F
// frames, P patches per frame, NI = C*F*P image tokens, L trace positions,
// S = NI + 2 + L + 1 tokens, D width, H heads, T waypoints, V vocabulary.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/model/onnx_student.h"   // defines: onnx_export_student
#include "train/formats/onnx.h"          // defines: OnnxGraph, onnx_*

// Added to the attention scores of the keys a query may not see. exp() of
// it is exactly 0 in fp32, and twice it (a masked key above the diagonal)
// still fits in fp16, so an fp16 engine gets no infinities.
#define MASKED_SCORE (-30000.0f)

typedef struct Builder {
    OnnxGraph *og;
    const ModelConfig *c;
    int NI, S;
    const char *bias;        // (B, 1, S, S) additive attention mask
} Builder;

static const char *i64s(Builder *b, const int64_t *v, int n) { return onnx_const_i64s(b->og, v, n); }

static const char *reshape(Builder *b, const char *x, const int64_t *shape, int n) {
    return onnx_op2(b->og, "Reshape", x, i64s(b, shape, n));
}

static const char *transpose(Builder *b, const char *x, const int64_t *perm, int n) {
    OnnxAttr a = { .name = "perm", .type = ONNX_ATTR_INTS, .ints = perm, .n_ints = n };
    return onnx_node(b->og, "Transpose", &x, 1, &a, 1);
}

// x[..., start:end, ...] along one axis.
static const char *slice(Builder *b, const char *x, int64_t axis, int64_t start, int64_t end) {
    const char *in[4] = { x, i64s(b, &start, 1), i64s(b, &end, 1), i64s(b, &axis, 1) };
    return onnx_node(b->og, "Slice", in, 4, NULL, 0);
}

static const char *concat(Builder *b, const char *const *xs, int n, int64_t axis) {
    OnnxAttr a = { .name = "axis", .type = ONNX_ATTR_INT, .i = axis };
    return onnx_node(b->og, "Concat", xs, n, &a, 1);
}

static const char *scale(Builder *b, const char *x, float s) { return onnx_op2(b->og, "Mul", x, onnx_const_f32(b->og, s)); }

static const char *gather(Builder *b, const char *table, const char *ids) { return onnx_op2(b->og, "Gather", table, ids); }

static const char *param_name(const char *prefix, const char *leaf, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", prefix, leaf);
    return buf;
}

// x (..., in) @ weight^T + bias: the weight keeps its PyTorch layout (out,
// in) and name; the Transpose of an initializer is folded by runtimes.
static const char *linear(Builder *b, const char *x, const char *prefix) {
    char w[96], bias[96];
    static const int64_t perm[2] = { 1, 0 };
    const char *wt = transpose(b, param_name(prefix, "weight", w, sizeof w), perm, 2);
    return onnx_op2(b->og, "Add", onnx_op2(b->og, "MatMul", x, wt), param_name(prefix, "bias", bias, sizeof bias));
}

// The same for 2-D x: one Gemm.
static const char *gemm(Builder *b, const char *x, const char *prefix) {
    char w[96], bias[96];
    const char *in[3] = { x, param_name(prefix, "weight", w, sizeof w), param_name(prefix, "bias", bias, sizeof bias) };
    OnnxAttr a = { .name = "transB", .type = ONNX_ATTR_INT, .i = 1 };
    return onnx_node(b->og, "Gemm", in, 3, &a, 1);
}

static const char *layernorm(Builder *b, const char *x, const char *prefix) {
    char w[96], bias[96];
    const char *in[3] = { x, param_name(prefix, "weight", w, sizeof w), param_name(prefix, "bias", bias, sizeof bias) };
    OnnxAttr a[2] = { { .name = "axis", .type = ONNX_ATTR_INT, .i = -1 },
                      { .name = "epsilon", .type = ONNX_ATTR_FLOAT, .f = 1e-5f } };
    return onnx_node(b->og, "LayerNormalization", in, 3, a, 2);
}

// 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3))), as op_gelu.
static const char *gelu(Builder *b, const char *h) {
    OnnxGraph *og = b->og;
    const char *h3 = onnx_op2(og, "Mul", onnx_op2(og, "Mul", h, h), h);
    const char *inner = onnx_op2(og, "Add", h, scale(b, h3, 0.044715f));
    const char *t = onnx_op1(og, "Tanh", scale(b, inner, 0.7978845608028654f));   // sqrt(2/pi)
    return scale(b, onnx_op2(og, "Mul", h, onnx_op2(og, "Add", t, onnx_const_f32(og, 1.0f))), 0.5f);
}

// Self-attention over (B, S, 3D) with the precomputed mask bias.
static const char *attention(Builder *b, const char *qkv) {
    const int D = b->c->dim, H = b->c->heads, dh = D / H;
    const int64_t heads_shape[4] = { 0, 0, H, dh }, merged[3] = { 0, 0, D };
    static const int64_t bhsd[4] = { 0, 2, 1, 3 }, bhds[4] = { 0, 2, 3, 1 };
    const char *q = transpose(b, reshape(b, slice(b, qkv, 2, 0, D), heads_shape, 4), bhsd, 4);         // (B, H, S, dh)
    const char *k = transpose(b, reshape(b, slice(b, qkv, 2, D, 2 * D), heads_shape, 4), bhds, 4);     // (B, H, dh, S)
    const char *v = transpose(b, reshape(b, slice(b, qkv, 2, 2 * D, 3 * D), heads_shape, 4), bhsd, 4); // (B, H, S, dh)
    const char *scores = scale(b, onnx_op2(b->og, "MatMul", q, k), 1.0f / sqrtf((float)dh));            // (B, H, S, S)
    scores = onnx_op2(b->og, "Add", scores, b->bias);
    OnnxAttr axis = { .name = "axis", .type = ONNX_ATTR_INT, .i = -1 };
    const char *probs = onnx_node(b->og, "Softmax", &scores, 1, &axis, 1);
    const char *out = transpose(b, onnx_op2(b->og, "MatMul", probs, v), bhsd, 4);                      // (B, S, H, dh)
    return reshape(b, out, merged, 3);                                                                 // (B, S, D)
}

static const char *block(Builder *b, const char *x, int l) {
    char p[64], q[64];
    snprintf(p, sizeof p, "blocks.%d.ln1", l);
    const char *h = layernorm(b, x, p);
    snprintf(p, sizeof p, "blocks.%d.attn.qkv", l);
    h = attention(b, linear(b, h, p));
    snprintf(p, sizeof p, "blocks.%d.attn.proj", l);
    x = onnx_op2(b->og, "Add", x, linear(b, h, p));
    snprintf(p, sizeof p, "blocks.%d.ln2", l);
    snprintf(q, sizeof q, "blocks.%d.mlp.fc", l);
    h = gelu(b, linear(b, layernorm(b, x, p), q));
    snprintf(p, sizeof p, "blocks.%d.mlp.proj", l);
    return onnx_op2(b->og, "Add", x, linear(b, h, p));
}

// cameras u8 (B, C, F, H, W, 3) -> image tokens (B, NI, D) with their
// camera, frame and patch-position embeddings.
static const char *image_tokens(Builder *b) {
    const ModelConfig *c = b->c;
    const int p = c->patch, gh = c->img_h / p, gw = c->img_w / p, P = gh * gw, NF = c->n_cams * c->frames;
    OnnxAttr to_float = { .name = "to", .type = ONNX_ATTR_INT, .i = ONNX_FLOAT };
    const char *cams = "cameras";
    const char *x = onnx_node(b->og, "Cast", &cams, 1, &to_float, 1);
    x = onnx_op2(b->og, "Div", x, onnx_const_f32(b->og, 255.0f));
    x = onnx_op2(b->og, "Sub", x, onnx_const_f32s(b->og, c->img_mean, 3));
    x = onnx_op2(b->og, "Div", x, onnx_const_f32s(b->og, c->img_std, 3));
    const int64_t grid[7] = { -1, NF, gh, p, gw, p, 3 }, perm[7] = { 0, 1, 2, 4, 3, 5, 6 };
    const int64_t patches[3] = { -1, (int64_t)NF * P, (int64_t)p * p * 3 };
    x = reshape(b, transpose(b, reshape(b, x, grid, 7), perm, 7), patches, 3);   // (B, NI, p*p*3), (dy, dx, channel)
    x = linear(b, x, "patch_embed");                                              // (B, NI, D)
    // Token i: camera i / (F P), frame (i / P) mod F, patch i mod P.
    int64_t *idx = malloc((size_t)3 * b->NI * sizeof *idx);
    if (!idx) { b->og->body.oom = 1; return x; }
    for (int i = 0; i < b->NI; i++) {
        idx[i] = i / (c->frames * P);
        idx[b->NI + i] = (i / P) % c->frames;
        idx[2 * b->NI + i] = i % P;
    }
    const char *pos = onnx_op2(b->og, "Add", gather(b, "cam_emb", i64s(b, idx, b->NI)),
                               gather(b, "frame_emb", i64s(b, idx + b->NI, b->NI)));
    pos = onnx_op2(b->og, "Add", pos, gather(b, "patch_pos_emb", i64s(b, idx + 2 * b->NI, b->NI)));   // (NI, D)
    free(idx);
    return onnx_op2(b->og, "Add", x, pos);
}

// (B, 1, S, S): 0 where query i may see key j (j < visible_end(i) of
// docs/model.md: i + 1, or max(i + 1, NI + 2) under the prefix mask; and the
// key not a padded trace position), MASKED_SCORE (or twice it) elsewhere.
static const char *attention_bias(Builder *b) {
    const int S = b->S, n_prefix = b->c->attention == ATTN_PREFIX ? b->NI + 2 : 0;
    float *positional = malloc((size_t)S * S * sizeof *positional);
    if (!positional) { b->og->body.oom = 1; return "oom"; }
    for (int i = 0; i < S; i++) {
        int visible_end = i + 1 > n_prefix ? i + 1 : n_prefix;
        for (int j = 0; j < S; j++) positional[(size_t)i * S + j] = j < visible_end ? 0.0f : MASKED_SCORE;
    }
    const char *name = b->c->attention == ATTN_PREFIX ? "prefix_mask" : "causal_mask";
    int64_t dims[2] = { S, S };
    onnx_initializer(b->og, name, ONNX_FLOAT, 2, dims, positional, (size_t)S * S * sizeof *positional);
    free(positional);
    // trace_mask (B, L) in {0, 1} -> (B, L) in {MASKED_SCORE, 0}, padded with
    // zeros to the whole sequence: image, ego and command tokens before it,
    // the action query after it.
    const char *key = scale(b, onnx_op2(b->og, "Sub", "trace_mask", onnx_const_f32(b->og, 1.0f)), -MASKED_SCORE);
    const int64_t pads[4] = { 0, b->NI + 2, 0, 1 }, key_shape[4] = { -1, 1, 1, S };
    key = reshape(b, onnx_op2(b->og, "Pad", key, i64s(b, pads, 4)), key_shape, 4);   // (B, 1, 1, S)
    return onnx_op2(b->og, "Add", name, key);
}

// The waypoints from the action token's features act (B, D).
static const char *trajectory_head(Builder *b, const char *act) {
    const ModelConfig *c = b->c;
    const int T = c->horizon, Th = c->hist;
    if (c->traj_repr == TRAJ_XYYAW) {
        const int64_t shape[3] = { -1, T, 3 };
        const float out_scale[3] = { TRAJ_SCALE_X, TRAJ_SCALE_Y, TRAJ_SCALE_YAW };
        return onnx_op2(b->og, "Mul", reshape(b, gemm(b, act, "traj_head"), shape, 3), onnx_const_f32s(b->og, out_scale, 3));
    }
    // Unicycle, explicit Euler with dt = 1/hz (docs/model.md); v0 is the last
    // history row's speed, in m/s.
    const int64_t shape[3] = { -1, T, 2 };
    const char *out = reshape(b, gemm(b, act, "traj_head"), shape, 3);                 // (B, T, 2)
    const char *accel = scale(b, slice(b, out, 2, 0, 1), ACCEL_SCALE);                 // (B, T, 1) m/s^2
    const char *curv = scale(b, slice(b, out, 2, 1, 2), CURVATURE_SCALE);              // (B, T, 1) 1/m
    const char *v0 = slice(b, slice(b, "ego_history", 1, Th - 1, Th), 2, 3, 4);        // (B, 1, 1)
    int64_t one = 1;
    const char *axis = "cumsum_axis";
    onnx_initializer(b->og, axis, ONNX_INT64, 0, NULL, &one, sizeof one);
    float dt = 1.0f / c->hz;
    const char *v = onnx_op2(b->og, "Add", v0, scale(b, onnx_op2(b->og, "CumSum", accel, axis), dt));
    const char *yaw = scale(b, onnx_op2(b->og, "CumSum", onnx_op2(b->og, "Mul", v, curv), axis), dt);
    const char *xs = scale(b, onnx_op2(b->og, "CumSum", onnx_op2(b->og, "Mul", v, onnx_op1(b->og, "Cos", yaw)), axis), dt);
    const char *ys = scale(b, onnx_op2(b->og, "CumSum", onnx_op2(b->og, "Mul", v, onnx_op1(b->og, "Sin", yaw)), axis), dt);
    const char *xyz[3] = { xs, ys, yaw };
    return concat(b, xyz, 3, 2);
}

static void declare_io(Builder *b) {
    const ModelConfig *c = b->c;
    OnnxGraph *og = b->og;
    const char *batch[6] = { "batch", NULL, NULL, NULL, NULL, NULL };
    int64_t cams[6] = { -1, c->n_cams, c->frames, c->img_h, c->img_w, 3 };
    onnx_input(og, "cameras", ONNX_UINT8, 6, cams, batch,
               "RGB frames, cameras in config.json order, the newest `frames` per camera, oldest first");
    int64_t ego[3] = { -1, c->hist, 4 };
    onnx_input(og, "ego_history", ONNX_FLOAT, 3, ego, batch, "rows (x m, y m, yaw rad, speed m/s), oldest first, ego frame at t0");
    int64_t cmd[1] = { -1 };
    onnx_input(og, "command", ONNX_INT64, 1, cmd, batch, "0 follow, 1 left, 2 straight, 3 right");
    int64_t trace[2] = { -1, c->max_trace };
    onnx_input(og, "trace_tokens", ONNX_INT64, 2, trace, batch, "student token ids (vocab.json), 0 where trace_mask is 0");
    onnx_input(og, "trace_mask", ONNX_FLOAT, 2, trace, batch, "1 for a real trace token, 0 for padding");
    int64_t traj[3] = { -1, c->horizon, 3 }, logits[3] = { -1, c->max_trace, c->vocab };
    onnx_output(og, "trajectory", ONNX_FLOAT, 3, traj, batch, "x m, y m, yaw rad at t0 + i/hz, i = 1..horizon, ego frame at t0");
    onnx_output(og, "trace_logits", ONNX_FLOAT, 3, logits, batch, "position i: logits of trace token i given the tokens before it");
}

// Every parameter of g as an initializer under its own name.
static int add_weights(OnnxGraph *og, const Graph *g) {
    for (int i = 0; i < g->n_params; i++) {
        const Tensor *t = g->params[i];
        float *host = malloc(t->numel * sizeof *host);
        if (!host) return -1;
        tensor_to_host_f32(t, host);
        int64_t dims[TENSOR_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) dims[d] = t->shape[d];
        onnx_initializer(og, t->name, ONNX_FLOAT, t->ndim, dims, host, t->numel * sizeof *host);
        free(host);
    }
    return 0;
}

int onnx_export_student(const char *path, const Graph *g, const ModelConfig *c, int opset, char *err, size_t errlen) {
    if (c->feat_dim) { snprintf(err, errlen, "%s: the feature head is not exported (feat_dim must be 0)", path); return -1; }
    OnnxGraph og = { 0 };
    const int P = (c->img_h / c->patch) * (c->img_w / c->patch), L = c->max_trace, D = c->dim;
    Builder b = { .og = &og, .c = c, .NI = c->n_cams * c->frames * P };
    b.S = b.NI + 2 + L + 1;
    declare_io(&b);
    if (add_weights(&og, g)) { onnx_graph_free(&og); snprintf(err, errlen, "%s: out of memory", path); return -1; }

    // The token sequence (B, S, D): image, ego, command, trace, action query.
    const char *img = image_tokens(&b);
    const int64_t ego_flat[2] = { -1, (int64_t)c->hist * 4 }, token[3] = { -1, 1, D };
    const float ego_scale[4] = { EGO_SCALE_X, EGO_SCALE_Y, EGO_SCALE_YAW, EGO_SCALE_SPEED };
    const char *ego = onnx_op2(&og, "Mul", "ego_history", onnx_const_f32s(&og, ego_scale, 4));
    ego = reshape(&b, gemm(&b, reshape(&b, ego, ego_flat, 2), "ego_embed"), token, 3);               // (B, 1, D)
    const char *cmd = reshape(&b, gather(&b, "command_emb", "command"), token, 3);                   // (B, 1, D)
    const char *trace = onnx_op2(&og, "Add", gather(&b, "tok_emb", "trace_tokens"), "trace_pos_emb"); // (B, L, D)
    // The action query, the same for every sample: broadcast to (B, 1, D).
    const int64_t one_d[2] = { 1, D };
    const char *batch_shape = onnx_op1(&og, "Shape", "command");                                     // [B]
    const char *shape_parts[2] = { batch_shape, i64s(&b, one_d, 2) };
    const char *action = onnx_op2(&og, "Expand", "action_query", concat(&b, shape_parts, 2, 0));
    const char *parts[5] = { img, ego, cmd, trace, action };
    const char *x = concat(&b, parts, 5, 1);

    b.bias = attention_bias(&b);
    for (int l = 0; l < c->layers; l++) x = block(&b, x, l);
    x = layernorm(&b, x, "ln_f");

    // Heads: the tied LM head on the command and trace positions, the
    // trajectory head on the action token.
    static const int64_t perm[2] = { 1, 0 };
    const char *lm_in = slice(&b, x, 1, b.NI + 1, b.NI + 1 + L);
    onnx_identity(&og, onnx_op2(&og, "MatMul", lm_in, transpose(&b, "tok_emb", perm, 2)), "trace_logits");
    const int64_t act_shape[2] = { -1, D };
    const char *act = reshape(&b, slice(&b, x, 1, b.S - 1, b.S), act_shape, 2);
    onnx_identity(&og, trajectory_head(&b, act), "trajectory");

    char doc[512];
    snprintf(doc, sizeof doc, "distil student: docs/model.md; inputs and outputs: docs/export.md");
    int rc = onnx_write_model(&og, "distil_student", opset, doc, path, err, errlen);
    onnx_graph_free(&og);
    return rc;
}
