// memory.c: a recipe's planned memory (see memory.h).
#include "train/core/memory.h"
#include <string.h>
#include "data/drivelog.h"             // defines: dl_set_open
#include "train/core/init_from.h"      // defines: init_from_vocab, init_from_attention
#include "train/core/objective.h"      // defines: Setup, setup_from_shards, objective_build
#include "train/core/state.h"          // defines: train_apply_freeze

int memory_plan(const Recipe *r, MemoryPlan *m) {
    memset(m, 0, sizeof *m);
    char err[1024];
    DlSet *set = dl_set_open(r->data.train.items, r->data.train.n, err, sizeof err);
    if (!set) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    Vocab vocab;
    VocabMode vm = r->model.vocab == VOCAB_FROM_LOGS ? VOCAB_MODE_FROM_LOGS : VOCAB_MODE_TEACHER;
    int inherited = init_from_vocab(r, set, &vocab, err, sizeof err);
    if (inherited < 0 || (!inherited && vocab_build(&vocab, set, vm, err, sizeof err))) {
        fprintf(stderr, "distil: error: %s\n", err);
        dl_set_close(set);
        return 2;
    }
    Setup s;
    int rc = setup_from_shards(&s, r, set, vocab.size);
    if (!rc && init_from_attention(r, &s.mc.attention, err, sizeof err) < 0) {
        fprintf(stderr, "distil: error: train.init_from: %s\n", err);
        rc = 2;
    }
    if (!rc) {
        Graph *g = graph_new(DEV_CPU);   // recorded only: the layout is the same on every device
        Student st;
        Objective obj;
        objective_build(g, &st, &obj, &s, r, r->train.micro_batch);
        if (train_apply_freeze(g, r) < 0) {
            rc = 2;
        } else {
            m->graph = graph_memory(g);
            if (!m->graph.ok) { fprintf(stderr, "distil: error: out of host memory planning the step\n"); rc = 2; }
        }
        m->optimizer = 2 * m->graph.grads;
        m->n_params = graph_param_numel(g);
        m->seq_len = st.seq_len;
        m->vocab = vocab.size;
        graph_free(g);
    }
    vocab_free(&vocab);
    dl_set_close(set);
    return rc;
}

static void line(FILE *f, const char *what, size_t bytes, const char *note) {
    fprintf(f, "#   %-22s %12zu bytes %10.1f MiB%s%s\n", what, bytes, bytes / 1048576.0, note[0] ? "  " : "", note);
}

void memory_plan_print(const MemoryPlan *m, const Recipe *r, FILE *f) {
    static const char *const devices[] = { "auto", "cpu", "cuda" }, *const precisions[] = { "fp32", "bf16" };
    const GraphMemory *g = &m->graph;
    char note[160];
    fprintf(f, "# Planned memory of one training step: train.micro_batch %d on %s, %s; %d tokens a sample, "
            "%zu parameters, vocabulary %d.\n", r->train.micro_batch, devices[r->train.device],
            precisions[r->train.precision], m->seq_len, m->n_params, m->vocab);
    line(f, "parameters", g->params, "fp32 master weights");
    line(f, "gradients", g->grads, "trainable parameters");
    snprintf(note, sizeof note, "AdamW m and v%s", r->dist.zero ? "; ZeRO-1 divides it by the number of ranks" : "");
    line(f, "optimizer state", m->optimizer, note);
    snprintf(note, sizeof note, "at its peak; %d outputs recomputed in backward", g->n_remat);
    line(f, "activations", g->act_peak, note);
    line(f, "activation gradients", g->grad_peak, "at their peak");
    snprintf(note, sizeof note, "inputs, activations and their gradients by liveness (%.1f MiB without reuse)",
             g->unshared / 1048576.0);
    line(f, "activation arena", g->arena, note);
    line(f, "total", g->params + g->grads + m->optimizer + g->arena, "");
}
