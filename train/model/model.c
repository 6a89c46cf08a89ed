// model.c: the student (see model.h and docs/model.md).
#include "train/model/model.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "autograd/ops.h"   // defines: op_*

#define INIT_STD 0.02f

static Tensor *param(Graph *g, const char *prefix, const char *name, int ndim, const int *shape,
                     InitKind init, float scale, int decay) {
    char full[TENSOR_NAME_LEN];
    snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    return graph_param(g, full, ndim, shape, init, scale, decay);
}

// Weights decay; biases, norms and embeddings do not.
static Tensor *linear_params(Graph *g, const char *prefix, int out, int in, float std, Tensor **bias) {
    Tensor *w = param(g, prefix, "weight", 2, (int[]){ out, in }, INIT_NORMAL, std, 1);
    *bias = param(g, prefix, "bias", 1, (int[]){ out }, INIT_ZEROS, 0, 0);
    return w;
}

static Tensor *linear(Graph *g, Tensor *x, const char *prefix, int out, int in, float std) {
    Tensor *b, *w = linear_params(g, prefix, out, in, std, &b);
    return op_linear(g, x, w, b);
}

// gelu(x W^T + b): the product without its bias, which the GELU's pass adds.
static Tensor *linear_gelu(Graph *g, Tensor *x, const char *prefix, int out, int in, float std) {
    Tensor *b, *w = linear_params(g, prefix, out, in, std, &b);
    return op_bias_gelu(g, op_linear(g, x, w, NULL), b);
}

// res + (x W^T + b): a residual around a linear layer, its bias added in the
// residual's pass.
static Tensor *linear_residual(Graph *g, Tensor *res, Tensor *x, const char *prefix, int out, int in, float std) {
    Tensor *b, *w = linear_params(g, prefix, out, in, std, &b);
    return op_bias_residual(g, res, op_linear(g, x, w, NULL), b);
}

static Tensor *layernorm(Graph *g, Tensor *x, const char *prefix) {
    int C = x->shape[x->ndim - 1];
    Tensor *w = param(g, prefix, "weight", 1, (int[]){ C }, INIT_ONES, 0, 0);
    Tensor *b = param(g, prefix, "bias", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    return op_layernorm(g, x, w, b, 1e-5f);
}

Tensor *transformer_block(Graph *g, Tensor *x, Tensor *key_mask, AttnMode mask, int n_prefix, int heads,
                          int mlp_ratio, int n_layers, const char *prefix) {
    int C = x->shape[2];
    char p[48];
    // Residual projections start smaller (GPT-2): the stream's variance
    // then stays O(1) however many blocks add to it.
    float resid_std = INIT_STD / sqrtf(2.0f * (float)n_layers);
    snprintf(p, sizeof p, "%s.ln1", prefix);
    Tensor *h = layernorm(g, x, p);
    snprintf(p, sizeof p, "%s.attn.qkv", prefix);
    h = linear(g, h, p, 3 * C, C, INIT_STD);                     // (B, S, 3C)
    h = mask == ATTN_PREFIX ? op_attention_prefix(g, h, key_mask, heads, n_prefix)
                            : op_attention(g, h, key_mask, heads);          // (B, S, C)
    snprintf(p, sizeof p, "%s.attn.proj", prefix);
    x = linear_residual(g, x, h, p, C, C, resid_std);            // x + proj(h)
    snprintf(p, sizeof p, "%s.ln2", prefix);
    h = layernorm(g, x, p);
    snprintf(p, sizeof p, "%s.mlp.fc", prefix);
    h = linear_gelu(g, h, p, mlp_ratio * C, C, INIT_STD);        // (B, S, rC)
    snprintf(p, sizeof p, "%s.mlp.proj", prefix);
    return linear_residual(g, x, h, p, C, mlp_ratio * C, resid_std);
}

const char *model_config_check(const ModelConfig *c) {
    if (c->dim <= 0 || c->layers <= 0 || c->heads <= 0 || c->mlp_ratio <= 0) return "dim, layers, heads and mlp_ratio must be positive";
    if (c->dim % c->heads) return "model.heads must divide model.dim";
    if (c->patch <= 0 || c->img_h % c->patch || c->img_w % c->patch) return "model.patch must divide the camera height and width";
    if (c->n_cams <= 0 || c->frames <= 0) return "at least one camera and one frame are needed";
    if (c->hist <= 0 || c->horizon <= 0 || c->hz <= 0) return "history, horizon and hz must be positive";
    if (c->vocab <= 1 || c->max_trace <= 0) return "the vocabulary and the trace length must be positive";
    if (c->attention != ATTN_CAUSAL && c->attention != ATTN_PREFIX) return "the attention mask must be prefix or causal";
    return NULL;
}

Student student_build(Graph *g, const ModelConfig *cfg, int B) {
    Student s;
    memset(&s, 0, sizeof s);
    s.cfg = *cfg;
    s.B = B;
    const int D = cfg->dim, L = cfg->max_trace, T = cfg->horizon;
    const int p = cfg->patch, P = (cfg->img_h / p) * (cfg->img_w / p);
    const int NF = cfg->n_cams * cfg->frames;
    s.n_img_tokens = NF * P;
    s.seq_len = s.n_img_tokens + 2 + L + 1;
    s.n_prefix = s.n_img_tokens + 2;
    const int S = s.seq_len;

    // Inputs.
    s.cameras = graph_input(g, "cameras", DT_U8, 4, (int[]){ B * NF, cfg->img_h, cfg->img_w, 3 });
    s.ego = graph_input(g, "ego_history", DT_F32, 2, (int[]){ B, cfg->hist * 4 });
    s.command = graph_input(g, "command", DT_I32, 1, (int[]){ B });
    s.trace = graph_input(g, "trace_tokens", DT_I32, 2, (int[]){ B, L });
    s.key_mask = graph_input(g, "key_mask", DT_F32, 2, (int[]){ B, S });
    s.img_cam_idx = graph_input(g, "img_cam_idx", DT_I32, 1, (int[]){ s.n_img_tokens });
    s.img_frame_idx = graph_input(g, "img_frame_idx", DT_I32, 1, (int[]){ s.n_img_tokens });
    s.img_pos_idx = graph_input(g, "img_pos_idx", DT_I32, 1, (int[]){ s.n_img_tokens });
    s.action_idx = graph_input(g, "action_idx", DT_I32, 1, (int[]){ B });

    // Image tokens: patchify every (sample, camera, frame), embed linearly,
    // add the learned camera, frame and patch-position embeddings.
    Tensor *patches = op_patchify(g, s.cameras, p, cfg->img_mean, cfg->img_std);   // (B*NF, P, p*p*3)
    Tensor *img = linear(g, patches, "patch_embed", D, p * p * 3, INIT_STD);         // (B*NF, P, D)
    img = op_reshape(g, img, 3, (int[]){ B, s.n_img_tokens, D });
    // The three position tables start at the scale of what they are added
    // to: patch_embed's output has std INIT_STD * sqrt(3 p^2) for unit-
    // variance pixels, and three tables of std INIT_STD * p sum to that. At
    // INIT_STD (a text model's choice, 1/8 of the content here) the demo
    // students learnt where things are slowly, the prefix-masked ones most,
    // as they get no position from the mask (docs/performance.md).
    const float pos_std = INIT_STD * (float)p;
    Tensor *cam_emb = param(g, "", "cam_emb", 2, (int[]){ cfg->n_cams, D }, INIT_NORMAL, pos_std, 0);
    Tensor *frame_emb = param(g, "", "frame_emb", 2, (int[]){ cfg->frames, D }, INIT_NORMAL, pos_std, 0);
    Tensor *patch_pos = param(g, "", "patch_pos_emb", 2, (int[]){ P, D }, INIT_NORMAL, pos_std, 0);
    Tensor *img_pos = op_add(g, op_add(g, op_embedding(g, s.img_cam_idx, cam_emb), op_embedding(g, s.img_frame_idx, frame_emb)),
                             op_embedding(g, s.img_pos_idx, patch_pos));             // (n_img, D)
    img = op_add(g, img, img_pos);                                                    // (B, n_img, D)

    // Ego history and route command: one token each.
    Tensor *ego = linear(g, s.ego, "ego_embed", D, cfg->hist * 4, INIT_STD);         // (B, D)
    ego = op_reshape(g, ego, 3, (int[]){ B, 1, D });
    Tensor *cmd_emb = param(g, "", "command_emb", 2, (int[]){ 4, D }, INIT_NORMAL, INIT_STD, 0);
    Tensor *cmd = op_reshape(g, op_embedding(g, s.command, cmd_emb), 3, (int[]){ B, 1, D });

    // Trace tokens with learned positions.
    s.tok_emb = param(g, "", "tok_emb", 2, (int[]){ cfg->vocab, D }, INIT_NORMAL, INIT_STD, 0);
    Tensor *trace_pos = param(g, "", "trace_pos_emb", 2, (int[]){ L, D }, INIT_NORMAL, INIT_STD, 0);
    Tensor *trace = op_add(g, op_embedding(g, s.trace, s.tok_emb), trace_pos);       // (B, L, D)

    // The learned action query, last.
    Tensor *action_q = param(g, "", "action_query", 2, (int[]){ 1, D }, INIT_NORMAL, INIT_STD, 0);
    Tensor *action = op_reshape(g, op_embedding(g, s.action_idx, action_q), 3, (int[]){ B, 1, D });

    Tensor *x = op_concat(g, (Tensor *[]){ img, ego, cmd }, 3, 1);
    x = op_concat(g, (Tensor *[]){ x, trace, action }, 3, 1);                         // (B, S, D)

    for (int l = 0; l < cfg->layers; l++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "blocks.%d", l);
        x = transformer_block(g, x, s.key_mask, cfg->attention, cfg->attention == ATTN_PREFIX ? s.n_prefix : 0,
                              cfg->heads, cfg->mlp_ratio, cfg->layers, prefix);
    }
    x = layernorm(g, x, "ln_f");                                                      // (B, S, D)

    // LM head, tied to the token embedding: the command token predicts trace
    // token 0, trace token i predicts token i+1.
    Tensor *lm_in = op_slice(g, x, 1, s.n_img_tokens + 1, L);                         // (B, L, D)
    s.lm_logits = op_linear(g, lm_in, s.tok_emb, NULL);                              // (B, L, V)

    // Trajectory head on the action token.
    Tensor *act = op_reshape(g, op_slice(g, x, 1, S - 1, 1), 2, (int[]){ B, D });     // (B, D)
    if (cfg->traj_repr == TRAJ_XYYAW) {
        Tensor *out = linear(g, act, "traj_head", T * 3, D, INIT_STD);               // (B, T*3)
        out = op_reshape(g, out, 3, (int[]){ B, T, 3 });
        s.traj_scale = graph_input(g, "traj_scale", DT_F32, 1, (int[]){ 3 });
        s.traj = op_mul(g, out, s.traj_scale);                                        // metres, radians
    } else {
        // Unicycle from v0 (explicit Euler, dt = 1/hz): v_t = v0 + dt*cumsum(a),
        // yaw_t = dt*cumsum(v_t*k_t), x_t = dt*cumsum(v_t cos yaw_t), y_t likewise.
        s.v0 = graph_input(g, "v0", DT_F32, 3, (int[]){ B, T, 1 });
        float dt = 1.0f / cfg->hz;
        Tensor *out = op_reshape(g, linear(g, act, "traj_head", T * 2, D, INIT_STD), 3, (int[]){ B, T, 2 });
        Tensor *accel = op_scale(g, op_slice(g, out, 2, 0, 1), ACCEL_SCALE);          // (B, T, 1) m/s^2
        Tensor *curv = op_scale(g, op_slice(g, out, 2, 1, 1), CURVATURE_SCALE);       // (B, T, 1) 1/m
        Tensor *v = op_add(g, s.v0, op_scale(g, op_cumsum(g, accel, 1), dt));
        Tensor *yaw = op_scale(g, op_cumsum(g, op_mul(g, v, curv), 1), dt);
        Tensor *xs = op_scale(g, op_cumsum(g, op_mul(g, v, op_cos(g, yaw)), 1), dt);
        Tensor *ys = op_scale(g, op_cumsum(g, op_mul(g, v, op_sin(g, yaw)), 1), dt);
        s.traj = op_concat(g, (Tensor *[]){ xs, ys, yaw }, 3, 2);                     // (B, T, 3)
    }
    if (cfg->feat_dim > 0) s.feature = linear(g, act, "feat_proj", cfg->feat_dim, D, INIT_STD);
    // The evaluation and the export read the outputs after forward.
    graph_keep(s.lm_logits);
    graph_keep(s.traj);
    if (s.feature) graph_keep(s.feature);
    return s;
}

void student_fill_constants(Student *s) {
    const ModelConfig *c = &s->cfg;
    int P = (c->img_h / c->patch) * (c->img_w / c->patch);
    // Written where the host writes inputs (graph_input_host); on a device
    // graph every graph_upload_inputs carries them along with the batch.
    int *cam = graph_input_host(s->img_cam_idx), *frame = graph_input_host(s->img_frame_idx);
    int *pos = graph_input_host(s->img_pos_idx);
    // Token order: camera-major, then frame, then patch (the cameras input order).
    for (int i = 0; i < s->n_img_tokens; i++) {
        cam[i] = i / (c->frames * P);
        frame[i] = (i / P) % c->frames;
        pos[i] = i % P;
    }
    memset(graph_input_host(s->action_idx), 0, s->B * sizeof(int));
    if (s->traj_scale) {
        float *scale = graph_input_host(s->traj_scale);
        scale[0] = TRAJ_SCALE_X; scale[1] = TRAJ_SCALE_Y; scale[2] = TRAJ_SCALE_YAW;
    }
}

size_t student_param_count(const ModelConfig *cfg) {
    Graph *g = graph_new(DEV_CPU);
    student_build(g, cfg, 1);
    size_t n = graph_param_numel(g);
    graph_free(g);
    return n;
}
