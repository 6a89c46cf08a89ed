// tiny_models.h: small models recorded with the op constructors, shared by
// the learning, replay and benchmark programs.
#pragma once
#include <stdio.h>
#include "autograd/graph.h"
#include "autograd/ops.h"
#include "train/model/model.h"   // defines: transformer_block

// One block of the student's own kind (train/model/model.c), no key mask.
static inline Tensor *tiny_block(Graph *g, Tensor *x, int n_head, int mlp_ratio, const char *prefix) {
    return transformer_block(g, x, NULL, ATTN_CAUSAL, 0, n_head, mlp_ratio, 1, prefix);
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
