// tiny_models.h: small models recorded with the op constructors, shared by
// the learning, replay and benchmark programs.
#pragma once
#include <stdio.h>
#include "autograd/graph.h"
#include "autograd/ops.h"

// A pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(.)).
// x [B, T, C]; parameters are created under `prefix`.
static inline Tensor *tiny_block(Graph *g, Tensor *x, int n_head, int mlp_ratio, const char *prefix) {
    int C = x->shape[2];
    char name[64];
#define P(suffix, nd, shp, init, scale, decay) \
    (snprintf(name, sizeof name, "%s.%s", prefix, suffix), graph_param(g, name, nd, shp, init, scale, decay))
    Tensor *ln1_w = P("ln1.weight", 1, (int[]){ C }, INIT_ONES, 0, 0);
    Tensor *ln1_b = P("ln1.bias", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    Tensor *qkv_w = P("attn.qkv.weight", 2, ((int[]){ 3 * C, C }), INIT_NORMAL, 0.02f, 1);
    Tensor *qkv_b = P("attn.qkv.bias", 1, (int[]){ 3 * C }, INIT_ZEROS, 0, 0);
    Tensor *proj_w = P("attn.proj.weight", 2, ((int[]){ C, C }), INIT_NORMAL, 0.02f, 1);
    Tensor *proj_b = P("attn.proj.bias", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    Tensor *ln2_w = P("ln2.weight", 1, (int[]){ C }, INIT_ONES, 0, 0);
    Tensor *ln2_b = P("ln2.bias", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    Tensor *fc_w = P("mlp.fc.weight", 2, ((int[]){ mlp_ratio * C, C }), INIT_NORMAL, 0.02f, 1);
    Tensor *fc_b = P("mlp.fc.bias", 1, (int[]){ mlp_ratio * C }, INIT_ZEROS, 0, 0);
    Tensor *out_w = P("mlp.proj.weight", 2, ((int[]){ C, mlp_ratio * C }), INIT_NORMAL, 0.02f, 1);
    Tensor *out_b = P("mlp.proj.bias", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
#undef P
    Tensor *h = op_layernorm(g, x, ln1_w, ln1_b, 1e-5f);
    h = op_linear(g, h, qkv_w, qkv_b);                       // (B, T, 3C)
    h = op_attention(g, h, NULL, n_head);                    // (B, T, C)
    h = op_linear(g, h, proj_w, proj_b);
    x = op_residual(g, x, h);
    h = op_layernorm(g, x, ln2_w, ln2_b, 1e-5f);
    h = op_gelu(g, op_linear(g, h, fc_w, fc_b));             // (B, T, rC)
    h = op_linear(g, h, out_w, out_b);
    return op_residual(g, x, h);
}

// A one-block language model over ids [B, T] -> logits [B, T, V], and the
// cross-entropy against targets [B, T] (ignore_index -1).
typedef struct {
    Tensor *ids, *targets, *logits, *loss;
} TinyLM;

static inline TinyLM tiny_lm(Graph *g, int B, int T, int V, int C, int n_head) {
    TinyLM m;
    m.ids = graph_input(g, "ids", DT_I32, 2, (int[]){ B, T });
    m.targets = graph_input(g, "targets", DT_I32, 2, (int[]){ B, T });
    Tensor *tok = graph_param(g, "tok_emb", 2, (int[]){ V, C }, INIT_NORMAL, 0.1f, 0);
    Tensor *pos = graph_param(g, "pos_emb", 2, (int[]){ T, C }, INIT_NORMAL, 0.1f, 0);
    Tensor *x = op_add(g, op_embedding(g, m.ids, tok), pos); // (B, T, C)
    x = tiny_block(g, x, n_head, 4, "block0");
    Tensor *lnf_w = graph_param(g, "lnf.weight", 1, (int[]){ C }, INIT_ONES, 0, 0);
    Tensor *lnf_b = graph_param(g, "lnf.bias", 1, (int[]){ C }, INIT_ZEROS, 0, 0);
    x = op_layernorm(g, x, lnf_w, lnf_b, 1e-5f);
    m.logits = op_linear(g, x, tok, NULL);                   // tied head: (B, T, V)
    m.loss = op_cross_entropy(g, m.logits, m.targets, -1);
    return m;
}
