// state.c: a training run in memory, opened and closed (see state.h): the
// loaders and the batch split across micro-batches and ranks, the
// vocabulary, the tape recorded once and planned, the weights initialised
// (or loaded by train.init_from), the ranks checked to agree, the gradient
// all-reduce and AdamW.
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/optim.h"         // defines: AdamW, adamw_init_range
#include "autograd/rng.h"           // defines: Rng
#include "kernels/backend.h"        // defines: backend_to_host
#include "train/core/init_from.h"   // defines: init_from_vocab, init_from_weights
#include "train/core/state.h"       // defines: TrainState
#include "train/dist/dist.h"        // defines: dist_world, GradSync

// The parameter names, for a pattern that matches none: each name without
// its .weight/.bias, every number (a block index) as N, each once, in order.
static void parameter_names(const Graph *g, char *out, size_t n) {
    size_t used = 0;
    out[0] = 0;
    char seen[8192] = "";
    int max_index = -1;
    for (int i = 0; i < g->n_params; i++) {
        char name[256], *o = name;
        for (const char *p = g->params[i]->name; *p && o < name + sizeof name - 2;) {
            if ((p == g->params[i]->name || p[-1] == '.') && *p >= '0' && *p <= '9') {
                int idx = atoi(p);
                if (idx > max_index) max_index = idx;
                while (*p >= '0' && *p <= '9') p++;
                *o++ = 'N';
            } else {
                *o++ = *p++;
            }
        }
        *o = 0;
        size_t len = strlen(name);
        if (len > 7 && !strcmp(name + len - 7, ".weight")) strcpy(name + len - 7, ".*");
        else if (len > 5 && !strcmp(name + len - 5, ".bias")) strcpy(name + len - 5, ".*");
        char key[260];
        snprintf(key, sizeof key, "|%s|", name);
        if (strstr(seen, key)) continue;
        if (strlen(seen) + strlen(key) < sizeof seen) strcat(seen, key);
        used += (size_t)snprintf(out + used, used < n ? n - used : 0, "%s%s", used ? ", " : "", name);
    }
    if (max_index >= 0 && used < n) snprintf(out + used, n - used, " (N = 0..%d)", max_index);
}

// Freeze every parameter whose name matches one of the recipe's patterns;
// a pattern that matches none is an error (printed), as it would freeze
// nothing in silence. Returns the frozen count, or -1.
int train_apply_freeze(Graph *g, const Recipe *r) {
    int frozen = 0;
    for (int p = 0; p < r->train.freeze.n; p++) {
        int matched = 0;
        for (int i = 0; i < g->n_params; i++) matched += fnmatch(r->train.freeze.items[p], g->params[i]->name, 0) == 0;
        if (matched) continue;
        char where[512], names[4096];
        parameter_names(g, names, sizeof names);
        recipe_where(r, "train.freeze", where, sizeof where);
        fprintf(stderr, "distil: error: %s%s: '%s' matches no parameter; the parameters are %s\n", where,
                strncmp(where, "--set ", 6) ? ": train.freeze" : "", r->train.freeze.items[p], names);
        return -1;
    }
    for (int i = 0; i < g->n_params; i++)
        for (int p = 0; p < r->train.freeze.n; p++)
            if (fnmatch(r->train.freeze.items[p], g->params[i]->name, 0) == 0) {
                graph_freeze(g->params[i]);
                frozen++;
                break;
            }
    return frozen;
}

// train.batch_size is global: micro_batch x accumulation x ranks.
static int check_batch_split(const Recipe *r, int world) {
    int per_step = r->train.micro_batch * world;
    if (r->train.batch_size % per_step == 0) return 0;
    char where[512];
    fprintf(stderr, "distil: error: %s: train.batch_size %d is not a multiple of train.micro_batch (%d) x the world "
            "size (%d rank%s) = %d; change train.batch_size or train.micro_batch, or launch another number of ranks\n",
            recipe_where(r, "train.batch_size", where, sizeof where), r->train.batch_size, r->train.micro_batch,
            world, world == 1 ? "" : "s", per_step);
    return 2;
}

// Every rank must have built the same model, vocabulary and initial
// weights (the same recipe and the same shards, on every node): otherwise
// the buckets would not even line up. Compared by fingerprint.
static int ranks_agree(TrainState *ts) {
    const Dist *d = dist_world();
    uint64_t h = DIST_FNV_SEED;
    h = dist_fnv1a(&ts->model.g->grad_numel, sizeof ts->model.g->grad_numel, h);
    size_t param_bytes = ts->model.g->param_numel * sizeof(float);
    void *params = ts->model.g->param_mem;
    if (ts->model.g->device != DEV_CPU) {   // hashed from a host copy
        if (!(params = malloc(param_bytes))) { fprintf(stderr, "distil: error: out of memory\n"); return 2; }
        backend_to_host(ts->model.g->device, params, ts->model.g->param_mem, param_bytes);
    }
    h = dist_fnv1a(params, param_bytes, h);
    if (params != ts->model.g->param_mem) free(params);
    h = dist_fnv1a(&ts->data.vocab.size, sizeof ts->data.vocab.size, h);
    h = dist_fnv1a(ts->data.vocab.to_teacher, (size_t)ts->data.vocab.size * sizeof *ts->data.vocab.to_teacher, h);
    h = dist_fnv1a(&ts->data.accum, sizeof ts->data.accum, h);
    // The shards each rank could use (a shard skipped on one rank only would shift the sample numbering).
    h = dist_fnv1a(&loader_set(ts->data.train)->n_samples, sizeof(int64_t), h);
    uint64_t *all = malloc((size_t)d->world * sizeof *all);
    if (!all) { fprintf(stderr, "distil: error: out of memory\n"); return 2; }
    dist_allgather_u64(h, all, "model check");
    int same = all[d->rank] == all[0];
    free(all);
    if (same) return 0;
    fprintf(stderr, "distil: error: rank %d: its model, vocabulary, initial weights or usable training samples differ from "
            "rank 0's; every rank must read the same recipe and the same shards (check data.train on every node; a shard "
            "skipped as damaged on some ranks only reads differently each time: move it out of data.train)\n", d->rank);
    return 2;
}

int train_state_open(TrainState *ts, Recipe *r) { return train_state_open_on(ts, r, DEV_CPU); }

// Under on_bad_sample: skip, the shards left out as unusable: one warning
// each, and their count (rank 0 alone: every rank opens the same shards).
static void warn_unusable(const Recipe *r, const char *key, const DlSet *set) {
    if (!set->n_unusable || !dist_is_root()) return;
    for (int i = 0; i < set->n_unusable; i++) fprintf(stderr, "distil: warning: %s; shard skipped\n", set->unusable[i]);
    char where[512];
    fprintf(stderr, "distil: warning: %s: %d of the %d shards of %s skipped as unusable (data.on_bad_sample: skip)\n",
            recipe_where(r, key, where, sizeof where), set->n_unusable, set->n_unusable + set->n_shards, key);
}

int train_state_open_on(TrainState *ts, Recipe *r, Device device) {
    memset(ts, 0, sizeof *ts);
    ts->r = r;
    char err[1024];
    int rc;
    const Dist *d = dist_world();
    dist_set_timeout(r->dist.timeout_s);
    if ((rc = check_batch_split(r, d->world))) return rc;
    ts->data.accum = r->train.batch_size / (r->train.micro_batch * d->world);
    ts->data.step_batches = calloc((size_t)ts->data.accum, sizeof *ts->data.step_batches);
    ts->data.step_counts = calloc((size_t)ts->data.accum, sizeof *ts->data.step_counts);
    if (!ts->data.step_batches || !ts->data.step_counts) { fprintf(stderr, "distil: error: out of memory\n"); return 2; }
    LoaderOptions lo = loader_defaults();
    lo.batch_size = r->train.micro_batch;
    lo.max_trace_tokens = r->data.max_trace_tokens;
    lo.seed = (uint64_t)r->seed;
    lo.rank = d->rank;
    lo.world = d->world;
    lo.workers = r->data.loader_threads;
    // A step holds its accum micro-batches at once (train_step counts their
    // tokens before any backward); data.prefetch more are read ahead.
    lo.prefetch = r->data.prefetch + ts->data.accum;
    lo.on_bad_sample = r->data.on_bad_sample == BAD_SAMPLE_SKIP ? DL_ON_BAD_SKIP : DL_ON_BAD_ERROR;
    ts->data.train = loader_open(r->data.train.items, r->data.train.n, &lo, err, sizeof err);
    if (!ts->data.train) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    warn_unusable(r, "data.train", loader_set(ts->data.train));
    if (loader_batches_per_epoch(ts->data.train) < 1) {
        char where[512];
        fprintf(stderr, "distil: error: %s: data.train holds fewer samples than one micro-batch (%d) per rank (%d)\n",
                recipe_where(r, "data.train", where, sizeof where), r->train.micro_batch, d->world);
        return 2;
    }
    // A fine-tuned student keeps its vocabulary; a new one gets it from the shards.
    VocabMode vm = r->model.vocab == VOCAB_FROM_LOGS ? VOCAB_MODE_FROM_LOGS : VOCAB_MODE_TEACHER;
    int inherited = init_from_vocab(r, loader_set(ts->data.train), &ts->data.vocab, err, sizeof err);
    if (inherited < 0 || (!inherited && vocab_build(&ts->data.vocab, loader_set(ts->data.train), vm, err, sizeof err))) {
        fprintf(stderr, "distil: error: %s\n", err);
        return 2;
    }
    if ((rc = setup_from_shards(&ts->data.setup, r, loader_set(ts->data.train), ts->data.vocab.size))) return rc;
    AttnMode asked = ts->data.setup.mc.attention;
    int kept = init_from_attention(r, &ts->data.setup.mc.attention, err, sizeof err);
    if (kept < 0) { fprintf(stderr, "distil: error: train.init_from: %s\n", err); return 2; }
    if (kept)
        printf("init_from %s: keeping its %s attention mask (the recipe's model.attention is %s)\n", r->train.init_from,
               model_attention_name(ts->data.setup.mc.attention), model_attention_name(asked));
    if ((rc = init_from_check(r, &ts->data.setup, loader_set(ts->data.train)))) return rc;
    if (r->data.eval.n) {
        // Evaluation reads every sample once, in shard order; the last
        // batch is padded with invalid slots, which every metric skips.
        LoaderOptions eo = lo;
        eo.prefetch = r->data.prefetch + 1;
        eo.shuffle = 0;
        eo.keep_tail = 1;
        ts->data.eval = loader_open(r->data.eval.items, r->data.eval.n, &eo, err, sizeof err);
        if (!ts->data.eval) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
        warn_unusable(r, "data.eval", loader_set(ts->data.eval));
        const DlSet *es = loader_set(ts->data.eval), *trs = loader_set(ts->data.train);
        if (dl_shard_agree(&trs->shards[0], &es->shards[0], err, sizeof err)) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    }

    // The graph, recorded once, then the weights and the optimizer.
    ts->model.g = graph_new(device);
    // train.precision bf16: the matrix products round their operands to
    // bf16 (fp32 sums, fp32 master weights, moments, losses); fp32 products
    // on a GPU may use TF32 when train.allow_tf32 says so.
    if (r->train.precision == PRECISION_BF16) graph_set_products(ts->model.g, DT_BF16);
    backend_set_allow_tf32(device, r->train.precision == PRECISION_FP32 && r->train.allow_tf32);
    objective_build(ts->model.g, &ts->model.st, &ts->model.obj, &ts->data.setup, r, r->train.micro_batch);
    if ((ts->model.frozen = train_apply_freeze(ts->model.g, r)) < 0) return 2;
    if (graph_plan(ts->model.g)) return 2;
    student_fill_constants(&ts->model.st);
    Rng rng;
    rng_seed(&rng, (uint64_t)r->seed);
    graph_init_params(ts->model.g, &rng);
    if (init_from_weights(r, ts->model.g, err, sizeof err)) { fprintf(stderr, "distil: error: train.init_from: %s\n", err); return 2; }
    rng_derive(&ts->rng, (uint64_t)r->seed, 1, 0);
    AdamWConfig oc = { (float)r->train.beta1, (float)r->train.beta2, (float)r->train.eps, (float)r->train.weight_decay };
    size_t shard_lo = 0, shard_hi = ts->model.g->grad_numel;
    if (d->launched) {
        if ((rc = ranks_agree(ts))) return rc;
        GradSyncConfig gc = { r->dist.bucket_mb, r->dist.grad_dtype == PRECISION_BF16, r->dist.zero, 0, 0 };
        ts->sync = grad_sync_new(ts->model.g, &gc, err, sizeof err);
        if (!ts->sync) { fprintf(stderr, "distil: error: rank %d: gradient all-reduce: %s\n", d->rank, err); return 2; }
        grad_sync_shard(ts->sync, &shard_lo, &shard_hi);
    }
    if (adamw_init_range(&ts->optim.adamw, ts->model.g, oc, shard_lo, shard_hi)) return 2;
    return 0;
}

void train_state_close(TrainState *ts) {
    backend_capture_free(ts->capture.graph);
    if (ts->optim.adamw.m) adamw_free(&ts->optim.adamw);
    grad_sync_free(ts->sync);
    if (ts->model.g) graph_free(ts->model.g);
    if (ts->data.vocab.size) vocab_free(&ts->data.vocab);
    if (ts->data.eval) loader_close(ts->data.eval);
    if (ts->data.train) loader_close(ts->data.train);
    free(ts->data.step_batches);
    free(ts->data.step_counts);
    memset(ts, 0, sizeof *ts);
}

