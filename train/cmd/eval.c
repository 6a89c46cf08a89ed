// eval.c: `distil eval CKPT_OR_EXPORT --logs GLOB [--json FILE] [--dump FILE]`:
// the training run's metrics table (train/core/evaluate.h) for a checkpoint or an
// export on any shards, every sample once, and optionally each sample's
// prediction in an HDF5 file.
//
// The ego-only baseline needs a fit: it is fitted on the evaluated samples
// themselves (in-sample least squares, so a slightly optimistic baseline),
// which makes a checkpoint and its export give the same table.
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/ckpt/bundle.h"     // defines: Bundle, Inference
#include "train/cmd/cli.h"
#include "train/core/evaluate.h"   // defines: evaluate, eval_print_table, eval_object
#include "train/formats/json_io.h"  // defines: jsonio_write_file

#define EGO_ONLY_RIDGE 1e-3   // as the training run's fit (train/core/evaluate.c)
#define MAX_LOG_PATTERNS 64

typedef struct EvalArgs {
    const char *model, *json, *dump;
    char *logs[MAX_LOG_PATTERNS];
    int n_logs;
    int dump_logits, batch, workers;
} EvalArgs;

static void usage(FILE *f) {
    fprintf(f, "usage: distil eval CKPT_OR_EXPORT --logs GLOB [--logs GLOB ...] [--json FILE] [--dump FILE] [--dump-logits]\n"
               "                  [--batch N] [--workers N]\n"
               "  Runs a checkpoint or an export over every sample of the shards once and prints the metrics\n"
               "  table of docs/metrics.md. --json writes eval.json's keys; --dump writes each sample's predicted\n"
               "  trajectory (and the teacher's mean plan, the logged future, the inputs' trace) to HDF5;\n"
               "  --dump-logits adds the trace logits. See docs/cli.md.\n");
}

static int parse_count(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < lo || x > hi) {
        fprintf(stderr, "distil: error: eval: %s '%s': expected a whole number in %d..%d\n", flag, v, lo, hi);
        return 2;
    }
    *out = (int)x;
    return 0;
}

static int parse_args(int argc, char **argv, EvalArgs *a) {
    memset(a, 0, sizeof *a);
    a->batch = 16;
    a->workers = 2;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(arg, "--dump-logits")) a->dump_logits = 1;
        else if (!strcmp(arg, "--json") && has_value) a->json = argv[++i];
        else if (!strcmp(arg, "--dump") && has_value) a->dump = argv[++i];
        else if (!strcmp(arg, "--logs") && has_value) {
            if (a->n_logs == MAX_LOG_PATTERNS) { fprintf(stderr, "distil: error: eval: more than %d --logs\n", MAX_LOG_PATTERNS); return 2; }
            a->logs[a->n_logs++] = argv[++i];
        } else if (!strcmp(arg, "--batch") && has_value) {
            if (parse_count("--batch", argv[++i], 1, 4096, &a->batch)) return 2;
        } else if (!strcmp(arg, "--workers") && has_value) {
            if (parse_count("--workers", argv[++i], 1, 64, &a->workers)) return 2;
        } else if (arg[0] == '-') {
            fprintf(stderr, "distil: error: eval: unknown option '%s' (or its value is missing); see distil eval --help\n", arg);
            return 2;
        } else if (!a->model) a->model = arg;
        else { fprintf(stderr, "distil: error: eval: one model only, got '%s' too\n", arg); return 2; }
    }
    if (!a->model) { usage(stderr); return 2; }
    if (!a->n_logs) { fprintf(stderr, "distil: error: eval: no shards; pass --logs 'GLOB' (quoted, distil expands it)\n"); return 2; }
    if (a->dump_logits && !a->dump) { fprintf(stderr, "distil: error: eval: --dump-logits needs --dump FILE\n"); return 2; }
    return 0;
}

// ---- the per-sample dump -----------------------------------------------------------

// Each evaluated sample's prediction and references, in evaluation order.
typedef struct Dump {
    long n, cap;
    int T, L, V;
    float *pred, *teacher_mean, *future;     // (cap, T, 3)
    uint8_t *has_future;                     // (cap)
    int32_t *shard;                          // (cap) index into the shard list
    int64_t *index, *clip_id, *t0_us;        // (cap)
    int32_t *trace_tokens;                   // (cap, L) student ids as fed to the model
    uint8_t *trace_mask;                     // (cap, L)
    float *logits;                           // (cap, L, V) or NULL
} Dump;

static int dump_init(Dump *d, long cap, int T, int L, int V, int with_logits) {
    memset(d, 0, sizeof *d);
    d->cap = cap; d->T = T; d->L = L; d->V = V;
    size_t c = (size_t)cap, tr = (size_t)T * 3;
    d->pred = malloc(c * tr * sizeof(float));
    d->teacher_mean = malloc(c * tr * sizeof(float));
    d->future = malloc(c * tr * sizeof(float));
    d->has_future = malloc(c);
    d->shard = malloc(c * sizeof(int32_t));
    d->index = malloc(c * sizeof(int64_t));
    d->clip_id = malloc(c * sizeof(int64_t));
    d->t0_us = malloc(c * sizeof(int64_t));
    d->trace_tokens = malloc(c * L * sizeof(int32_t));
    d->trace_mask = malloc(c * L);
    if (with_logits) d->logits = malloc(c * L * V * sizeof(float));
    return d->pred && d->teacher_mean && d->future && d->has_future && d->shard && d->index && d->clip_id && d->t0_us &&
           d->trace_tokens && d->trace_mask && (!with_logits || d->logits) ? 0 : -1;
}

static void dump_free(Dump *d) {
    free(d->pred); free(d->teacher_mean); free(d->future); free(d->has_future); free(d->shard); free(d->index);
    free(d->clip_id); free(d->t0_us); free(d->trace_tokens); free(d->trace_mask); free(d->logits);
    memset(d, 0, sizeof *d);
}

// Sample i of the batch just run through the model.
static void dump_add(Dump *d, const Batch *b, int i, const Inference *m) {
    if (d->n == d->cap) return;
    const int T = d->T, L = d->L, V = d->V;
    size_t at = (size_t)d->n++, tr = (size_t)T * 3;
    memcpy(d->pred + at * tr, (const float *)m->st.traj->data + (size_t)i * tr, tr * sizeof(float));
    float *teacher = malloc((size_t)b->K * tr * sizeof *teacher);
    if (teacher) {
        for (int k = 0; k < b->K; k++)
            memcpy(teacher + k * tr, b->trajectory + ((size_t)i * b->K + k) * b->T * 3, tr * sizeof(float));
        teacher_mean_traj(teacher, b->weight + (size_t)i * b->K, b->K, T, d->teacher_mean + at * tr);
        free(teacher);
    }
    memcpy(d->future + at * tr, b->future + (size_t)i * b->T * 3, tr * sizeof(float));
    d->has_future[at] = b->has_future[i];
    d->shard[at] = b->shard[i];
    d->index[at] = b->index[i];
    d->clip_id[at] = b->clip_id[i];
    d->t0_us[at] = b->t0_us[i];
    memcpy(d->trace_tokens + at * L, (const int32_t *)m->st.trace->data + (size_t)i * L, (size_t)L * sizeof(int32_t));
    const float *key_mask = (const float *)m->st.key_mask->data + (size_t)i * m->st.seq_len + m->st.n_img_tokens + 2;
    for (int t = 0; t < L; t++) d->trace_mask[at * L + t] = key_mask[t] != 0;
    if (d->logits) memcpy(d->logits + at * L * V, (const float *)m->st.lm_logits->data + (size_t)i * L * V, (size_t)L * V * sizeof(float));
}

static int h5_write(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, const void *data) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = space >= 0 ? H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = ds >= 0 && (dims[0] == 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0) ? 0 : -1;
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    return rc;
}

static int h5_attr_string(hid_t obj, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr >= 0 && H5Awrite(attr, type, &value) >= 0 ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    return rc;
}

static int h5_attr_double(hid_t obj, const char *name, double value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr >= 0 && H5Awrite(attr, H5T_NATIVE_DOUBLE, &value) >= 0 ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return rc;
}

// The dump file (docs/cli.md lists its datasets). HDF5 runs under the
// process-wide lock (data/drivelog.h).
static int dump_write(const Dump *d, const char *path, const DlSet *set, const Bundle *b, float hz) {
    dl_hdf5_lock();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int rc = f >= 0 ? 0 : -1;
    hsize_t n = (hsize_t)d->n, traj[3] = { n, (hsize_t)d->T, 3 }, tok[2] = { n, (hsize_t)d->L };
    hsize_t logits[3] = { n, (hsize_t)d->L, (hsize_t)d->V }, shards = (hsize_t)set->n_shards;
    if (!rc) {
        rc |= h5_write(f, "trajectory", H5T_NATIVE_FLOAT, 3, traj, d->pred);
        rc |= h5_write(f, "teacher_mean", H5T_NATIVE_FLOAT, 3, traj, d->teacher_mean);
        rc |= h5_write(f, "ground_truth", H5T_NATIVE_FLOAT, 3, traj, d->future);
        rc |= h5_write(f, "has_ground_truth", H5T_NATIVE_UINT8, 1, &n, d->has_future);
        rc |= h5_write(f, "shard", H5T_NATIVE_INT32, 1, &n, d->shard);
        rc |= h5_write(f, "index", H5T_NATIVE_INT64, 1, &n, d->index);
        rc |= h5_write(f, "clip_id", H5T_NATIVE_INT64, 1, &n, d->clip_id);
        rc |= h5_write(f, "t0_us", H5T_NATIVE_INT64, 1, &n, d->t0_us);
        rc |= h5_write(f, "trace_tokens", H5T_NATIVE_INT32, 2, tok, d->trace_tokens);
        rc |= h5_write(f, "trace_mask", H5T_NATIVE_UINT8, 2, tok, d->trace_mask);
        if (d->logits) rc |= h5_write(f, "trace_logits", H5T_NATIVE_FLOAT, 3, logits, d->logits);
        const char **paths = malloc(shards * sizeof *paths);
        hid_t str = H5Tcopy(H5T_C_S1);
        H5Tset_size(str, H5T_VARIABLE);
        H5Tset_cset(str, H5T_CSET_UTF8);
        if (paths) {
            for (int i = 0; i < set->n_shards; i++) paths[i] = set->shards[i].path;
            rc |= h5_write(f, "shard_paths", str, 1, &shards, paths);
        } else rc = -1;
        H5Tclose(str);
        free(paths);
        rc |= h5_attr_string(f, "format", "distil-eval-dump");
        rc |= h5_attr_string(f, "model", b->dir);
        rc |= h5_attr_double(f, "hz", hz);
    }
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    dl_hdf5_unlock();
    return rc;
}

// ---- the passes -------------------------------------------------------------------

// The teacher's weighted mean plan of sample i, first T steps.
static void teacher_mean_of(const Batch *b, int i, int T, float *out) {
    for (int q = 0; q < T * 3; q++) {
        double acc = 0;
        for (int k = 0; k < b->K; k++) acc += (double)b->weight[(size_t)i * b->K + k] * b->trajectory[((size_t)i * b->K + k) * b->T * 3 + q];
        out[q] = (float)acc;
    }
}

// One pass over the shards before the metrics: fits the ego-only baseline,
// counts trace tokens (for a vocab.json without a majority token) and,
// with a dump, runs the model and keeps each sample's outputs.
static int first_pass(Loader *ld, Inference *m, Bundle *b, EgoOnly *ego, Dump *dump) {
    const int T = m->s.mc.horizon, V = b->vocab.size;
    float *target = malloc((size_t)T * 3 * sizeof *target);
    int64_t *counts = calloc((size_t)V, sizeof *counts);
    if (!target || !counts) { free(target); free(counts); fprintf(stderr, "distil: error: out of memory\n"); return 2; }
    long batches = loader_batches_per_epoch(ld);
    loader_seek(ld, (LoaderPosition){ 0, 0 });
    int rc = 0;
    Progress progress;
    progress_start(&progress, dump ? "reading the shards and running the model for the dump" : "reading the shards",
                   batches);
    for (long bi = 0; bi < batches && !rc; bi++) {
        progress_update(&progress, bi, "batches");
        const Batch *bt = loader_next(ld);
        if (!bt) { fprintf(stderr, "distil: error: %s\n", loader_error(ld)); rc = 2; break; }
        if (dump) {
            batch_to_inputs(bt, &m->s, &m->r, &b->vocab, &m->st, &m->obj);
            graph_forward(m->g);
        }
        for (int i = 0; i < bt->B; i++) {
            if (!bt->valid[i]) continue;
            teacher_mean_of(bt, i, T, target);
            ego_only_add(ego, bt->history + (size_t)i * bt->Th * 4, bt->command[i], target);
            for (int t = 0; t < bt->L; t++)
                if (bt->trace_mask[(size_t)i * bt->L + t]) counts[vocab_token(&b->vocab, bt->trace_tokens[(size_t)i * bt->L + t])]++;
            if (dump) dump_add(dump, bt, i, m);
        }
    }
    if (!rc) progress_update(&progress, batches, "batches");
    progress_break(&progress);
    if (!rc && b->vocab.majority < 0) {
        int best = 0;
        for (int v = 1; v < V; v++) if (counts[v] > counts[best]) best = v;
        b->vocab.majority = best;
        printf("note: %s/vocab.json names no majority token; the most frequent one of these shards ('%s') is used\n", b->dir,
               b->vocab.pieces[best]);
    }
    free(target);
    free(counts);
    return rc;
}

static int write_json_file(const char *path, const EvalResult *er) {
    json_t *doc = eval_object(er);
    int rc = jsonio_write_file(path, doc, JSONIO_F64);
    json_decref(doc);
    if (rc) { fprintf(stderr, "distil: error: %s: cannot write: %s\n", path, strerror(errno)); return 2; }
    return 0;
}

static int run_eval(const EvalArgs *a, Bundle *b) {
    LoaderOptions lo = loader_defaults();
    lo.batch_size = a->batch;
    lo.max_trace_tokens = b->mc.max_trace;
    lo.workers = a->workers;
    lo.shuffle = 0;        // every sample once, in shard order
    lo.keep_tail = 1;
    lo.on_bad_sample = DL_ON_BAD_ERROR;
    char err[1024];
    Loader *ld = loader_open(a->logs, a->n_logs, &lo, err, sizeof err);
    if (!ld) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    const DlSet *set = loader_set(ld);
    Inference m;
    EgoOnly ego;
    Dump dump;
    memset(&ego, 0, sizeof ego);
    memset(&dump, 0, sizeof dump);
    int rc = inference_open(&m, b, set, a->batch);
    const int T = b->mc.horizon;
    if (!rc && ego_only_init(&ego, b->mc.hist, T)) { fprintf(stderr, "distil: error: out of memory\n"); rc = 2; }
    if (!rc && a->dump && dump_init(&dump, (long)set->n_samples, T, b->mc.max_trace, b->vocab.size, a->dump_logits)) {
        fprintf(stderr, "distil: error: %s: out of memory for %lld samples%s\n", a->dump, (long long)set->n_samples,
                a->dump_logits ? " (drop --dump-logits?)" : "");
        rc = 2;
    }
    if (!rc) rc = first_pass(ld, &m, b, &ego, a->dump ? &dump : NULL);
    if (!rc && ego_only_fit(&ego, EGO_ONLY_RIDGE)) {
        fprintf(stderr, "distil: error: %s: the ego-only baseline could not be fitted (no valid sample?)\n", set->shards[0].path);
        rc = 2;
    }
    EvalResult er;
    Progress progress;
    if (!rc) rc = evaluate(m.g, &m.st, &m.obj, &m.s, &m.r, &b->vocab, &ego, ld, 0, &er, &progress);
    if (!rc) {
        printf("distil eval: %s (%s", b->dir, b->is_export ? "export" : "checkpoint");
        if (b->step >= 0) printf(", step %ld", b->step);
        printf(") on %d shard%s; the ego-only baseline is fitted on these samples\n", set->n_shards, set->n_shards == 1 ? "" : "s");
        eval_print_table(&er, stdout);
        if (a->json) rc = write_json_file(a->json, &er);
    }
    if (!rc && a->dump) {
        if (dump_write(&dump, a->dump, set, b, b->mc.hz)) { fprintf(stderr, "distil: error: %s: cannot write the HDF5 dump\n", a->dump); rc = 2; }
        else printf("wrote %ld samples' predictions to %s\n", dump.n, a->dump);
    }
    dump_free(&dump);
    if (ego.coef || ego.xtx) ego_only_free(&ego);
    inference_close(&m);
    loader_close(ld);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    EvalArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    Bundle b;
    if ((rc = bundle_open(&b, a.model)) == 0) rc = run_eval(&a, &b);
    bundle_close(&b);
    return rc;
}
