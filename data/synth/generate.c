// generate.c: `distil logs synth`: the command line, and the loop that fills
// shards batch by batch (samples generated in parallel, chunks compressed in
// parallel, HDF5 fed from one thread).
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <hdf5.h>
#include "data/synth/synth.h"          // defines: logs_synth_main
#include "data/synth/sample.h"   // defines: synth_sample, SynthSampleOut
#include "data/synth/shard.h"    // defines: synth_shard_*
#include "data/synth/world.h"    // defines: SynthPreset, synth_preset_find

#define TEXT_CAP 1024            // bytes for one trace as text (a 128-token report fits)
#define BATCH_BYTES (64u << 20)  // raw bytes of samples held at once

typedef struct SynthArgs {
    const char *out;
    int shards, samples, eval_shards, eval_samples;
    uint64_t seed;
    int level;                   // zstd level
    const SynthPreset *preset;
    int force;                   // delete the shards already in DIR/train and DIR/eval
} SynthArgs;

static void usage(FILE *f) {
    fprintf(f,
        "usage: distil logs synth --out DIR [--shards N] [--samples-per-shard M] [--seed S]\n"
        "                         [--preset %s] [--eval-shards E] [--eval-samples-per-shard ME]\n"
        "                         [--zstd-level L] [--force]\n"
        "\n"
        "Writes a synthetic fleet: DIR/train/shard-00000.h5 .. (N shards of M samples) and\n"
        "DIR/eval/shard-00000.h5 .. (E shards of ME samples), drive-log v1, zstd chunks.\n"
        "Defaults: N 8, M 512, S 0, preset demo, E max(1, N/4), ME max(1, M/2), L 3\n"
        "(--zstd-level 0 stores the chunks uncompressed).\n"
        "The same arguments give the same datasets, whatever the thread count.\n"
        "DIR/train and DIR/eval must hold no shard (*.h5) yet, which a glob over them would\n"
        "mix with the new ones: --force deletes those shards first.\n",
        synth_preset_names());
}

static int bad_arg(const char *opt, const char *value, const char *what) {
    fprintf(stderr, "distil: error: logs synth: %s '%s': %s; see 'distil logs synth --help'\n", opt, value, what);
    return 2;
}

static int parse_count(const char *opt, const char *value, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < lo || v > hi) {
        char what[64];
        snprintf(what, sizeof what, "expected an integer in [%d, %d]", lo, hi);
        return bad_arg(opt, value, what);
    }
    *out = (int)v;
    return 0;
}

// 0: go on; 2: a bad argument (reported); -1: --help was printed.
static int parse_args(int argc, char **argv, SynthArgs *a) {
    *a = (SynthArgs){ .shards = 8, .samples = 512, .eval_shards = -1, .eval_samples = -1, .level = 3,
                      .preset = synth_preset_find("demo") };
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) { usage(stdout); return -1; }
        if (!strcmp(opt, "--force")) { a->force = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "distil: error: logs synth: %s: %s; see 'distil logs synth --help'\n", opt,
                    strncmp(opt, "--", 2) ? "unexpected argument" : "missing its value");
            return 2;
        }
        const char *val = argv[++i];
        int rc = 0;
        if (!strcmp(opt, "--out")) a->out = val;
        else if (!strcmp(opt, "--shards")) rc = parse_count(opt, val, 1, 1000000, &a->shards);
        else if (!strcmp(opt, "--samples-per-shard")) rc = parse_count(opt, val, 1, 100000000, &a->samples);
        else if (!strcmp(opt, "--eval-shards")) rc = parse_count(opt, val, 0, 1000000, &a->eval_shards);
        else if (!strcmp(opt, "--eval-samples-per-shard")) rc = parse_count(opt, val, 1, 100000000, &a->eval_samples);
        else if (!strcmp(opt, "--zstd-level")) rc = parse_count(opt, val, 0, 19, &a->level);
        else if (!strcmp(opt, "--seed")) {
            char *end;
            errno = 0;
            a->seed = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-') rc = bad_arg(opt, val, "expected a non-negative integer");
        } else if (!strcmp(opt, "--preset")) {
            a->preset = synth_preset_find(val);
            if (!a->preset) {
                char what[64];
                snprintf(what, sizeof what, "unknown preset; one of %s", synth_preset_names());
                rc = bad_arg(opt, val, what);
            }
        } else {
            fprintf(stderr, "distil: error: logs synth: unknown option '%s'; see 'distil logs synth --help'\n", opt);
            rc = 2;
        }
        if (rc) return rc;
    }
    if (!a->out) {
        fprintf(stderr, "distil: error: logs synth: --out DIR is required; see 'distil logs synth --help'\n");
        return 2;
    }
    if (a->eval_shards < 0) a->eval_shards = a->shards / 4 > 1 ? a->shards / 4 : 1;
    if (a->eval_samples < 0) a->eval_samples = a->samples / 2 > 1 ? a->samples / 2 : 1;
    return 0;
}

// mkdir -p.
static int make_dirs(const char *path) {
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) < 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    return 0;
}

// The per-shard tail, filled sample by sample, packed at the end.
typedef struct ShardMeta {
    int64_t *clip_id, *t0_us, *offsets;   // (N), (N), (N + 1)
    int8_t *command;                      // (N)
    int *n_tokens;                        // (N)
    int32_t *tokens;                      // (N, max_trace) until packed into (M)
    int32_t *topk_ids;                    // (N, max_trace, k) until packed into (M, k)
    float *topk_logprobs;                 // (N, max_trace, k) until packed into (M, k)
    char *text;                           // (N, TEXT_CAP)
    const char **text_ptr;                // (N)
} ShardMeta;

static void meta_free(ShardMeta *m) {
    free(m->clip_id); free(m->t0_us); free(m->offsets); free(m->command); free(m->n_tokens);
    free(m->tokens); free(m->topk_ids); free(m->topk_logprobs); free(m->text); free(m->text_ptr);
}

static int meta_alloc(ShardMeta *m, const SynthPreset *p, int n) {
    size_t slots = (size_t)n * p->max_trace;
    *m = (ShardMeta){
        .clip_id = malloc(n * sizeof(int64_t)), .t0_us = malloc(n * sizeof(int64_t)),
        .offsets = malloc((n + 1) * sizeof(int64_t)), .command = malloc(n), .n_tokens = malloc(n * sizeof(int)),
        .tokens = malloc(slots * sizeof(int32_t)), .topk_ids = malloc(slots * p->topk * sizeof(int32_t)),
        .topk_logprobs = malloc(slots * p->topk * sizeof(float)), .text = malloc((size_t)n * TEXT_CAP),
        .text_ptr = malloc(n * sizeof(char *)),
    };
    if (m->clip_id && m->t0_us && m->offsets && m->command && m->n_tokens && m->tokens && m->topk_ids &&
        m->topk_logprobs && m->text && m->text_ptr) return 0;
    meta_free(m);
    return -1;
}

// Squeeze the fixed trace slots into consecutive tokens and set the offsets.
static void meta_pack(ShardMeta *m, const SynthPreset *p, int n) {
    int k = p->topk;
    m->offsets[0] = 0;
    for (int i = 0; i < n; i++) {
        int64_t at = m->offsets[i];
        size_t slot = (size_t)i * p->max_trace;   // >= at, so moving down never overwrites unread slots
        memmove(m->tokens + at, m->tokens + slot, m->n_tokens[i] * sizeof(int32_t));
        memmove(m->topk_ids + at * k, m->topk_ids + slot * k, (size_t)m->n_tokens[i] * k * sizeof(int32_t));
        memmove(m->topk_logprobs + at * k, m->topk_logprobs + slot * k, (size_t)m->n_tokens[i] * k * sizeof(float));
        m->offsets[i + 1] = at + m->n_tokens[i];
        m->text_ptr[i] = m->text + (size_t)i * TEXT_CAP;
    }
}

// Buffers for one batch of samples, laid out as the shard's datasets want them.
typedef struct Batch {
    int cap;
    size_t bytes[SYNTH_DS_MAX];          // one sample of dataset d
    unsigned char *data[SYNTH_DS_MAX];   // dataset d: (cap, bytes[d])
} Batch;

// Where sample i of the batch goes in dataset d.
static void *batch_at(const Batch *b, int d, int i) { return b->data[d] + (size_t)i * b->bytes[d]; }

// One shard of `n` samples at `path`; 0, or 2 after printing the error.
static int write_shard(const SynthArgs *a, const char *path, int split, int shard, int n, Batch *batch,
                       size_t *bytes_out) {
    const SynthPreset *p = a->preset;
    char err[512], fleet[128];
    snprintf(fleet, sizeof fleet, "distil synth %s, seed %llu", p->name, (unsigned long long)a->seed);
    ShardMeta meta;
    if (meta_alloc(&meta, p, n) < 0) {
        fprintf(stderr, "distil: error: logs synth: %s: out of memory; use fewer --samples-per-shard\n", path);
        return 2;
    }
    SynthShard *sh = synth_shard_create(path, p, n, fleet, a->level, err, sizeof err);
    if (!sh) {
        fprintf(stderr, "distil: error: logs synth: %s\n", err);
        meta_free(&meta);
        return 2;
    }
    for (int first = 0; first < n; first += batch->cap) {
        int count = n - first < batch->cap ? n - first : batch->cap;
        #pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < count; i++) {
            int idx = first + i;
            size_t slot = (size_t)idx * p->max_trace;
            SynthSampleOut out = {
                .history = batch_at(batch, SYNTH_DS_HISTORY, i), .future = batch_at(batch, SYNTH_DS_FUTURE, i),
                .trajectory = batch_at(batch, SYNTH_DS_TRAJECTORY, i), .weight = batch_at(batch, SYNTH_DS_WEIGHT, i),
                .embedding = batch_at(batch, SYNTH_DS_EMBEDDING, i),
                .clip_id = &meta.clip_id[idx], .t0_us = &meta.t0_us[idx], .command = &meta.command[idx],
                .tokens = meta.tokens + slot, .topk_ids = meta.topk_ids + slot * p->topk,
                .topk_logprobs = meta.topk_logprobs + slot * p->topk, .n_tokens = &meta.n_tokens[idx],
                .text = meta.text + (size_t)idx * TEXT_CAP, .text_cap = TEXT_CAP,
            };
            for (int c = 0; c < p->n_cameras; c++) out.camera[c] = batch_at(batch, SYNTH_DS_CAMERA0 + c, i);
            synth_sample(p, a->seed, split, shard, idx, n, &out);
        }
        if (synth_shard_write_samples(sh, first, count, (const void *const *)batch->data, err, sizeof err) < 0) {
            fprintf(stderr, "distil: error: logs synth: %s\n", err);
            synth_shard_abort(sh);
            meta_free(&meta);
            return 2;
        }
    }
    meta_pack(&meta, p, n);
    SynthShardTail tail = {
        .clip_id = meta.clip_id, .t0_us = meta.t0_us, .command = meta.command, .offsets = meta.offsets,
        .tokens = meta.tokens, .topk_ids = meta.topk_ids, .topk_logprobs = meta.topk_logprobs,
        .text = meta.text_ptr,
    };
    int rc = synth_shard_finish(sh, &tail, err, sizeof err);
    meta_free(&meta);
    if (rc < 0) { fprintf(stderr, "distil: error: logs synth: %s\n", err); return 2; }
    struct stat st;
    if (stat(path, &st) == 0) *bytes_out += (size_t)st.st_size;
    return 0;
}

static void batch_free(Batch *b) {
    for (int d = 0; d < SYNTH_DS_MAX; d++) free(b->data[d]);
}

// Size the batch so that its raw samples stay near BATCH_BYTES.
static int batch_alloc(Batch *b, const SynthPreset *p, int max_samples) {
    memset(b, 0, sizeof *b);
    size_t total = 0;
    for (int d = 0; d < synth_sample_datasets(p); d++) total += b->bytes[d] = synth_sample_bytes(p, d);
    size_t cap = BATCH_BYTES / total;
    if (cap < 8) cap = 8;
    if (cap > 1024) cap = 1024;
    if (cap > (size_t)max_samples) cap = (size_t)max_samples;
    b->cap = (int)cap;
    for (int d = 0; d < synth_sample_datasets(p); d++) {
        b->data[d] = malloc(cap * b->bytes[d]);
        if (!b->data[d]) { batch_free(b); return -1; }
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int is_shard(const char *name) {
    size_t n = strlen(name);
    return n > 3 && !strcmp(name + n - 3, ".h5");
}

// DIR/train or DIR/eval holding shards the new ones would be mixed with:
// refused, or (--force) those shards deleted. Returns 0 or 2 (printed).
static int clear_split(const SynthArgs *a, const char *name) {
    char dir[4096], path[4400];
    snprintf(dir, sizeof dir, "%s/%s", a->out, name);
    DIR *d = opendir(dir);
    if (!d) return 0;   // not there yet
    int found = 0, rc = 0;
    char first[256] = "";
    for (struct dirent *e; (e = readdir(d)) && !rc;) {
        if (!is_shard(e->d_name)) continue;
        if (!found++) snprintf(first, sizeof first, "%s", e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (a->force && unlink(path) < 0) {
            fprintf(stderr, "distil: error: logs synth: %s: cannot delete it (%s)\n", path, strerror(errno));
            rc = 2;
        }
    }
    closedir(d);
    if (rc || !found || a->force) return rc;
    fprintf(stderr, "distil: error: logs synth: %s already holds %d shard%s (%s%s), which a glob over it would mix "
            "with the new ones; choose another --out, or pass --force to delete them first\n",
            dir, found, found == 1 ? "" : "s", first, found > 1 ? ", ..." : "");
    return 2;
}

static int write_split(const SynthArgs *a, int split, int shards, int samples, Batch *batch, size_t *bytes) {
    const char *name = split == 0 ? "train" : "eval";
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", a->out, name);
    if (shards > 0 && make_dirs(dir) < 0) {
        fprintf(stderr, "distil: error: logs synth: %s: cannot create the folder (%s); check the path and permissions\n",
                dir, strerror(errno));
        return 2;
    }
    for (int s = 0; s < shards; s++) {
        snprintf(path, sizeof path, "%s/shard-%05d.h5", dir, s);
        int rc = write_shard(a, path, split, s, samples, batch, bytes);
        if (rc) return rc;
    }
    return 0;
}

int logs_synth_main(int argc, char **argv) {
    SynthArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;   // -1: --help was printed
    if ((rc = clear_split(&a, "train")) || (rc = clear_split(&a, "eval"))) return rc;
    Batch batch;
    int most = a.samples > a.eval_samples ? a.samples : a.eval_samples;
    if (batch_alloc(&batch, a.preset, most) < 0) {
        fprintf(stderr, "distil: error: logs synth: out of memory for a batch of samples\n");
        return 2;
    }
    // HDF5's own error stack would print pages per failure; we print one line.
    H5E_auto2_t old_func;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    double t0 = now_s();
    size_t bytes = 0;
    rc = write_split(&a, 0, a.shards, a.samples, &batch, &bytes);
    if (!rc) rc = write_split(&a, 1, a.eval_shards, a.eval_samples, &batch, &bytes);
    double secs = now_s() - t0;
    H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
    batch_free(&batch);
    if (rc) return rc;
    long total = (long)a.shards * a.samples + (long)a.eval_shards * a.eval_samples;
    printf("distil logs synth: preset %s, seed %llu: %s/train %d x %d samples, %s/eval %d x %d samples; "
           "%.1f MB in %.2f s (%.0f samples/s)\n",
           a.preset->name, (unsigned long long)a.seed, a.out, a.shards, a.samples, a.out, a.eval_shards,
           a.eval_samples, bytes / 1e6, secs, total / (secs > 0 ? secs : 1e-9));
    return 0;
}
