// bench_loader.c: the training loader's rate (samples/s and MB/s of decoded
// shard bytes) with 1 and 2 worker threads, on demo-size shards (1 camera
// 2x32x64, as `distil logs synth --preset demo`) and on 4-camera 224x400
// shards (as --preset urban4), beside the ceiling measured in the same run:
// plain ZSTD_decompressDCtx over the very same chunk bytes, read into memory
// first, with 1 and 2 threads. Shards are written to /tmp with zstd chunks of
// one sample (data/drivelog_write.c), then removed. Also what opening a
// shard costs behind the wall (data/wall.h: a child process reads and checks
// its metadata first) against opening it in the process alone.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#include "data/drivelog.h"        // defines: dl_shard_open, DlShard
#include "data/drivelog_write.h"  // defines: dlw_write
#include "data/loader.h"          // defines: loader_open, loader_next

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct Chunk { void *data; size_t size, decoded; } Chunk;
typedef struct Chunks { Chunk *c; size_t n, cap; double decoded_bytes; } Chunks;

// Every stored chunk of every dataset of a shard, as raw bytes in memory.
static int collect_chunks(const char *path, Chunks *out) {
    DlShard sh;
    char err[DL_ERR_LEN];
    if (dl_shard_open(&sh, path, err, sizeof err)) { fprintf(stderr, "bench_loader: %s\n", err); return -1; }
    dl_hdf5_lock();
    for (int s = 0; s < DL_N_SLOTS; s++) {
        const DlDataset *d = &sh.ds[s];
        if (d->id < 0 || !d->chunked) continue;
        hsize_t offset[DL_MAX_RANK] = { 0 };
        for (;;) {
            hsize_t bytes = 0;
            uint32_t mask = 0;
            if (H5Dget_chunk_storage_size(d->id, offset, &bytes) >= 0 && bytes > 0) {
                if (out->n == out->cap) {
                    out->cap = out->cap ? out->cap * 2 : 1024;
                    out->c = realloc(out->c, out->cap * sizeof(Chunk));
                }
                Chunk *c = &out->c[out->n++];
                c->data = malloc(bytes);
                c->size = bytes;
                c->decoded = d->chunk_bytes;
                H5Dread_chunk(d->id, H5P_DEFAULT, offset, &mask, c->data);
                out->decoded_bytes += (double)d->chunk_bytes;
            }
            int i = d->rank - 1;
            while (i >= 0 && (offset[i] += d->chunk[i]) >= d->dims[i]) { offset[i] = 0; i--; }
            if (i < 0) break;
        }
    }
    dl_hdf5_unlock();
    dl_shard_close(&sh);
    return 0;
}

typedef struct Decode { const Chunks *ch; size_t begin, end; double seconds; } Decode;

static void *decode_range(void *arg) {
    Decode *d = arg;
    ZSTD_DCtx *z = ZSTD_createDCtx();
    size_t cap = 0;
    void *dst = NULL;
    for (size_t i = d->begin; i < d->end; i++) {
        const Chunk *c = &d->ch->c[i];
        if (c->decoded > cap) { cap = c->decoded; dst = realloc(dst, cap); }
        size_t got = ZSTD_decompressDCtx(z, dst, cap, c->data, c->size);
        if (ZSTD_isError(got) || got != c->decoded) fprintf(stderr, "bench_loader: chunk %zu does not decode\n", i);
    }
    free(dst);
    ZSTD_freeDCtx(z);
    return NULL;
}

// Seconds to decompress every chunk with `threads` threads (the best of `reps`).
static double zstd_ceiling(const Chunks *ch, int threads, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        pthread_t t[2];
        Decode d[2];
        double t0 = now_s();
        for (int i = 0; i < threads; i++) {
            d[i] = (Decode){ ch, ch->n * (size_t)i / (size_t)threads, ch->n * (size_t)(i + 1) / (size_t)threads, 0 };
            pthread_create(&t[i], NULL, decode_range, &d[i]);
        }
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

// Samples per second of the loader: the best of `epochs` epochs timed one by
// one, after one warm-up batch (the machine is shared: the best is the least
// disturbed).
static double loader_rate(char *pattern, int workers, int batch, int epochs) {
    LoaderOptions o = loader_defaults();
    o.batch_size = batch;
    o.workers = workers;
    o.prefetch = 2 * workers + 2;
    o.max_trace_tokens = 16;
    o.seed = 1;
    char err[DL_ERR_LEN];
    char *patterns[1] = { pattern };
    Loader *ld = loader_open(patterns, 1, &o, err, sizeof err);
    if (!ld) { fprintf(stderr, "bench_loader: %s\n", err); return 0; }
    int64_t nb = loader_batches_per_epoch(ld);
    double best = 0;
    loader_next(ld);
    for (int e = 0; e < epochs; e++) {
        double t0 = now_s();
        for (int64_t i = 0; i < nb; i++)
            if (!loader_next(ld)) { fprintf(stderr, "bench_loader: %s\n", loader_error(ld)); break; }
        double rate = (double)(nb * batch) / (now_s() - t0);
        if (rate > best) best = rate;
    }
    loader_close(ld);
    return best;
}

// Milliseconds to open and close one shard (the best of `reps`), through
// dl_shard_open (behind the wall) or dl_shard_open_here (in this process).
static double open_ms(const char *path, int walled, int reps) {
    double best = 1e30;
    char err[DL_ERR_LEN];
    for (int r = 0; r < reps; r++) {
        DlShard sh;
        double t0 = now_s();
        int rc = walled ? dl_shard_open(&sh, path, err, sizeof err) : dl_shard_open_here(&sh, path, err, sizeof err);
        dl_shard_close(&sh);
        double dt = now_s() - t0;
        if (rc) { fprintf(stderr, "bench_loader: %s\n", err); return 0; }
        if (dt < best) best = dt;
    }
    return best * 1e3;
}

typedef struct Config {
    const char *name;
    int shards, per_shard, cams, H, W, batch, epochs;
} Config;

static void run_config(const char *dir, const Config *c) {
    char pattern[256], err[DL_ERR_LEN];
    Chunks ch = { 0 };
    double tw = now_s();
    for (int i = 0; i < c->shards; i++) {
        DlWriteSpec s = dlw_defaults();
        s.shard_id = i;
        s.n = c->per_shard;
        s.cams = c->cams; s.F = 2; s.H = c->H; s.W = c->W;
        s.Th = 10; s.T = 30; s.K = 4; s.k = 8; s.D = 32; s.V = 200;
        s.trace_min = 4; s.trace_max = 16;
        char path[256];
        snprintf(path, sizeof path, "%s/%s_%d.h5", dir, c->name, i);
        if (dlw_write(path, &s, err, sizeof err) || collect_chunks(path, &ch)) { fprintf(stderr, "bench_loader: %s\n", err); return; }
    }
    snprintf(pattern, sizeof pattern, "%s/%s_*.h5", dir, c->name);
    int64_t samples = (int64_t)c->shards * c->per_shard;
    double per_sample_mb = ch.decoded_bytes / (double)samples / 1e6;
    double stored = 0;
    for (size_t i = 0; i < ch.n; i++) stored += (double)ch.c[i].size;
    printf("%s: %d shards x %d samples, %d camera%s 2x%dx%d, %.3f MB decoded per sample (zstd %.2fx), written in %.1f s\n",
           c->name, c->shards, c->per_shard, c->cams, c->cams == 1 ? "" : "s", c->H, c->W, per_sample_mb,
           ch.decoded_bytes / stored, now_s() - tw);
    double ceiling[3] = { 0 };
    for (int threads = 1; threads <= 2; threads++) {
        double t = zstd_ceiling(&ch, threads, 4);
        ceiling[threads] = (double)samples / t;
        printf("  zstd ceiling, %d thread%s:   %9.0f samples/s  %8.1f MB/s\n", threads, threads == 1 ? " " : "s",
               ceiling[threads], ceiling[threads] * per_sample_mb);
    }
    double rate[3] = { 0 };
    for (int workers = 1; workers <= 2; workers++) {
        rate[workers] = loader_rate(pattern, workers, c->batch, c->epochs);
        printf("  loader, %d worker%s, B %-3d:  %9.0f samples/s  %8.1f MB/s  = %.2f of the %d-thread ceiling\n", workers,
               workers == 1 ? " " : "s", c->batch, rate[workers], rate[workers] * per_sample_mb, rate[workers] / ceiling[workers], workers);
    }
    printf("  2 workers / 1 worker: %.2fx (zstd alone: %.2fx; %ld cores online)\n", rate[2] / rate[1], ceiling[2] / ceiling[1],
           sysconf(_SC_NPROCESSORS_ONLN));
    char first[256];
    snprintf(first, sizeof first, "%s/%s_0.h5", dir, c->name);
    double here = open_ms(first, 0, 7), walled = open_ms(first, 1, 7);
    printf("  opening a shard (%zu chunks): %.2f ms in the process, %.2f ms behind the wall = %.1fx (+%.2f ms; %.3f ms a sample)\n",
           ch.n / (size_t)c->shards, here, walled, walled / here, walled - here, (walled - here) / c->per_shard);
    for (size_t i = 0; i < ch.n; i++) free(ch.c[i].data);
    free(ch.c);
    for (int i = 0; i < c->shards; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s_%d.h5", dir, c->name, i);
        unlink(path);
    }
}

int main(void) {
    char dir[] = "/tmp/distil_bench_loader_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    double t0 = now_s();
    const Config configs[] = {
        { "demo", 4, 256, 1, 32, 64, 32, 4 },
        { "urban4", 2, 40, 4, 224, 400, 4, 4 },
    };
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) run_config(dir, &configs[i]);
    rmdir(dir);
    printf("bench_loader: %.1f s in all\n", now_s() - t0);
    return 0;
}
