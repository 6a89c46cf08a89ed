// loader.c: batches from a set of drive-log shards, prefetched by worker threads.
//
// Order. Samples are numbered 0..S-1 across the shards (dl_set_locate). Epoch
// e draws a permutation of them from rng_derive(seed, e, ORDER_STREAM); rank r
// of R takes permutation positions r, r + R, r + 2R, ..., i.e. floor(S / R)
// samples, cut into floor(floor(S / R) / B) whole batches; what is left over is
// dropped (a different tail each epoch), so every rank runs the same number of
// steps. Batch g of the run (g = epoch * batches_per_epoch + step) is thus a
// pure function of (seed, g, r, R): resuming at a saved (epoch, step) yields
// exactly the batches an uninterrupted run would have. For evaluation the
// order can be the identity (shuffle 0) and the tail kept: positions past S
// become padding slots, invalid like a skipped sample.
//
// Prefetch. A ring of `prefetch` batch buffers, each one contiguous allocation
// (from the alloc hook, so the CUDA backend can pin them). The work is a stream
// of tasks, task t = sample t % B of batch t / B; each worker takes the next
// task under the loader mutex, provided its batch fits in the ring (batch
// g < base + prefetch, base = the oldest batch the consumer has not released),
// reads the sample into its slot with no loader lock held, and counts it done.
// loader_next releases the batches it handed out last, then waits for the
// next one (loader_next_many: the next n) to have all B samples. Which worker reads which sample never changes the
// bytes: a sample always lands in the same slot, so 1 and 8 workers give
// identical batches.
//
// Decompression. Workers read through data/chunkread.c: under the HDF5 lock
// only the raw chunk bytes are fetched (H5Dread_chunk); zstd/zlib/unshuffle run
// in the worker, outside every lock, straight into the batch buffer when a chunk
// is exactly one sample. Contiguous or otherwise-filtered datasets fall back to
// H5Dread under the lock. (Tried and dropped: looking up the chunk's file
// address under the lock and pread'ing the bytes outside it. In HDF5 1.10
// H5Dget_chunk_info_by_coord scans the chunk index, so it cost more than the
// copy it saved: 117 against 58 us a demo sample.)
//
// Bad samples. dl_read_sample checks each sample's rules as it is read. Under
// on_bad_sample: error the first bad sample (in batch order) makes loader_next
// return NULL with its one-line message; under skip its slot is zeroed and
// marked invalid, and it is counted in Batch.n_bad and loader_bad_samples.
//
// Forks. Opening a shard forks a child that reads it first (data/wall.h),
// often while another loader's workers run (the eval set opens after the
// training set). Each loader's workers are paused around such a fork: they
// finish the sample at hand and take no task until it is done, so that none
// holds a lock of the memory allocator that the child would wait for.
#include "data/loader.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"       // defines: rng_derive, rng_below
#include "data/wall.h"          // defines: dl_wall_quiet_add (paused around a wall's fork)

#define ORDER_STREAM 0x6f72646572ull   // "order": the rng stream of epoch permutations
#define N_PERMS 2                      // epochs whose permutation is kept (batches in flight span at most two, usually)

typedef struct Slot {
    Batch batch;
    void *mem;                  // the batch's one allocation
    int64_t g;                  // global batch index held, -1 before the first
    int done;                   // samples finished
    int n_bad, n_truncated, n_padding;
    int err_b;                  // first bad sample's slot under error, -1 if none
    char err[DL_ERR_LEN];
} Slot;

typedef struct Perm {
    int64_t epoch;              // -1: empty
    int64_t *order;             // (S)
} Perm;

typedef struct Worker {
    struct Loader *ld;
    DlReader *reader;
    pthread_t thread;
} Worker;

struct Loader {
    DlSet *set;
    LoaderOptions opt;
    int cams, F, H, W, Th, T, K, D, L, k;
    int64_t S, batches_per_epoch;
    size_t batch_bytes;
    Slot *ring;                 // (prefetch)
    Worker *workers;            // (workers)
    Perm perms[N_PERMS];
    pthread_mutex_t mu;
    pthread_cond_t space;       // a slot was released (workers wait)
    pthread_cond_t ready;       // a batch was completed (the consumer waits)
    pthread_cond_t idle;        // no worker at work any more (a pause waits)
    int stop, running;
    int paused;                 // a wall's fork is near: workers take no task (data/wall.h)
    int busy;                   // workers at a task, outside mu
    int starting;               // workers created that have not reached their loop (a new
                                // thread's start-up allocates too)
    int64_t base;               // oldest batch not released by the consumer
    int holding;                // the consumer holds batches [base, base + holding)
    int64_t next_task;          // global task index: batch * B + sample
    int failed;
    char error[DL_ERR_LEN];
    int64_t bad_total, truncated_total;
};

LoaderOptions loader_defaults(void) {
    LoaderOptions o = { 0 };
    o.batch_size = 8;
    o.max_trace_tokens = 64;
    o.world = 1;
    o.workers = 2;
    o.prefetch = 4;
    o.on_bad_sample = DL_ON_BAD_ERROR;
    o.shuffle = 1;
    return o;
}

// ---- order --------------------------------------------------------------------

static void draw_permutation(uint64_t seed, int shuffle, int64_t epoch, int64_t S, int64_t *order) {
    Rng rng;
    rng_derive(&rng, seed, (uint64_t)epoch, ORDER_STREAM);
    for (int64_t i = 0; i < S; i++) order[i] = i;
    if (!shuffle) return;
    for (int64_t i = S - 1; i > 0; i--) {   // Fisher-Yates
        int64_t j = (int64_t)rng_below(&rng, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

// The permutation of `epoch`, drawn into the least recently drawn entry when
// missing. Called with ld->mu held.
static const int64_t *epoch_order(Loader *ld, int64_t epoch) {
    for (int i = 0; i < N_PERMS; i++)
        if (ld->perms[i].epoch == epoch) return ld->perms[i].order;
    Perm *victim = &ld->perms[0];
    for (int i = 1; i < N_PERMS; i++)
        if (ld->perms[i].epoch < victim->epoch) victim = &ld->perms[i];
    draw_permutation(ld->opt.seed, ld->opt.shuffle, epoch, ld->S, victim->order);
    victim->epoch = epoch;
    return victim->order;
}

static int64_t permutation_position(const Loader *ld, int64_t step, int b) {
    int64_t j = step * ld->opt.batch_size + b;   // this rank's j-th sample of the epoch
    return j * ld->opt.world + ld->opt.rank;
}

int64_t loader_sample_at(const Loader *ld, int64_t epoch, int64_t step, int b) {
    int64_t p = permutation_position(ld, step, b);
    if (p >= ld->S) return -1;
    int64_t *order = malloc(sizeof(int64_t) * (size_t)ld->S);
    if (!order) return -1;
    draw_permutation(ld->opt.seed, ld->opt.shuffle, epoch, ld->S, order);
    int64_t g = order[p];
    free(order);
    return g;
}

// ---- batch buffers ----------------------------------------------------------------

static void *default_alloc(size_t bytes, void *ctx) {
    (void)ctx;
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}
static void default_release(void *p, void *ctx) { (void)ctx; free(p); }

// Lay the batch's arrays out in one buffer (64-byte aligned each); with
// base = NULL it only measures.
static size_t layout_batch(const Loader *ld, uint8_t *base, Batch *b) {
    size_t off = 0, B = (size_t)ld->opt.batch_size, L = (size_t)ld->L, k = (size_t)ld->k;
#define PLACE(field, count) do { \
        b->field = base ? (void *)(base + off) : NULL; \
        off += ((count) * sizeof(*b->field) + 63) / 64 * 64; \
    } while (0)
    PLACE(frames, B * (size_t)ld->cams * (size_t)ld->F * (size_t)ld->H * (size_t)ld->W * 3);
    PLACE(history, B * (size_t)ld->Th * 4);
    PLACE(future, B * (size_t)ld->T * 3);
    PLACE(has_future, B);
    PLACE(command, B);
    PLACE(trajectory, B * (size_t)ld->K * (size_t)ld->T * 3);
    PLACE(weight, B * (size_t)ld->K);
    PLACE(embedding, B * (size_t)ld->D);
    PLACE(has_embedding, B);
    PLACE(trace_tokens, B * L);
    PLACE(trace_mask, B * L);
    PLACE(trace_len, B);
    PLACE(topk_ids, B * L * k);
    PLACE(topk_logprobs, B * L * k);
    PLACE(temperature, B);
    PLACE(valid, B);
    PLACE(shard, B);
    PLACE(index, B);
    PLACE(clip_id, B);
    PLACE(t0_us, B);
#undef PLACE
    if (ld->D == 0) b->embedding = NULL;
    b->B = (int)B;
    b->cams = ld->cams; b->F = ld->F; b->H = ld->H; b->W = ld->W;
    b->Th = ld->Th; b->T = ld->T; b->K = ld->K; b->D = ld->D; b->L = ld->L; b->k = ld->k;
    return off;
}

// Zero every field of sample b (a bad sample skipped).
static void clear_sample(const Loader *ld, Batch *bt, int b) {
    size_t L = (size_t)ld->L, k = (size_t)ld->k, frame_bytes = (size_t)ld->cams * (size_t)ld->F * (size_t)ld->H * (size_t)ld->W * 3;
    memset(bt->frames + (size_t)b * frame_bytes, 0, frame_bytes);
    memset(bt->history + (size_t)b * (size_t)ld->Th * 4, 0, sizeof(float) * (size_t)ld->Th * 4);
    memset(bt->future + (size_t)b * (size_t)ld->T * 3, 0, sizeof(float) * (size_t)ld->T * 3);
    memset(bt->trajectory + (size_t)b * (size_t)ld->K * (size_t)ld->T * 3, 0, sizeof(float) * (size_t)ld->K * (size_t)ld->T * 3);
    memset(bt->weight + (size_t)b * (size_t)ld->K, 0, sizeof(float) * (size_t)ld->K);
    if (ld->D) memset(bt->embedding + (size_t)b * (size_t)ld->D, 0, sizeof(float) * (size_t)ld->D);
    memset(bt->trace_tokens + (size_t)b * L, 0, sizeof(int32_t) * L);
    memset(bt->trace_mask + (size_t)b * L, 0, L);
    memset(bt->topk_ids + (size_t)b * L * k, 0, sizeof(int32_t) * L * k);
    memset(bt->topk_logprobs + (size_t)b * L * k, 0, sizeof(float) * L * k);
    bt->has_future[b] = bt->has_embedding[b] = 0;
    bt->command[b] = 0;
    bt->trace_len[b] = 0;
    bt->temperature[b] = 1.0f;
    bt->valid[b] = 0;
    bt->clip_id[b] = bt->t0_us[b] = 0;
}

// Read global sample g into slot b of a batch. Returns DL_OK or DL_BAD_SAMPLE
// (err set); *truncated tells whether its trace was cut to L.
static int fill_sample(const Loader *ld, DlReader *rd, Batch *bt, int b, int64_t g, int *truncated, char *err, size_t errlen) {
    int shard;
    int64_t index;
    dl_set_locate(ld->set, g, &shard, &index);
    bt->shard[b] = shard;
    bt->index[b] = index;
    size_t L = (size_t)ld->L, k = (size_t)ld->k;
    DlSampleDst dst = {
        .frames = bt->frames + (size_t)b * (size_t)ld->cams * (size_t)ld->F * (size_t)ld->H * (size_t)ld->W * 3,
        .history = bt->history + (size_t)b * (size_t)ld->Th * 4,
        .future = bt->future + (size_t)b * (size_t)ld->T * 3,
        .trajectory = bt->trajectory + (size_t)b * (size_t)ld->K * (size_t)ld->T * 3,
        .weight = bt->weight + (size_t)b * (size_t)ld->K,
        .embedding = ld->D ? bt->embedding + (size_t)b * (size_t)ld->D : NULL,
        .tokens = bt->trace_tokens + (size_t)b * L,
        .topk_ids = bt->topk_ids + (size_t)b * L * k,
        .topk_logprobs = bt->topk_logprobs + (size_t)b * L * k,
        .max_tokens = ld->L,
    };
    DlSampleInfo info;
    *truncated = 0;
    if (dl_read_sample(&ld->set->shards[shard], rd, index, &dst, &info, err, errlen) != DL_OK) {
        clear_sample(ld, bt, b);
        return DL_BAD_SAMPLE;
    }
    size_t n = (size_t)info.n_tokens;
    memset(dst.tokens + n, 0, sizeof(int32_t) * (L - n));
    memset(dst.topk_ids + n * k, 0, sizeof(int32_t) * (L - n) * k);
    memset(dst.topk_logprobs + n * k, 0, sizeof(float) * (L - n) * k);
    memset(bt->trace_mask + (size_t)b * L, 1, n);
    memset(bt->trace_mask + (size_t)b * L + n, 0, L - n);
    if (ld->D && !info.has_embedding) memset(dst.embedding, 0, sizeof(float) * (size_t)ld->D);
    bt->trace_len[b] = (int32_t)n;
    bt->has_future[b] = (uint8_t)info.has_future;
    bt->has_embedding[b] = (uint8_t)info.has_embedding;
    bt->command[b] = (int8_t)info.command;
    bt->temperature[b] = info.temperature;
    bt->clip_id[b] = info.clip_id;
    bt->t0_us[b] = info.t0_us;
    bt->valid[b] = 1;
    *truncated = info.trace_len > (int64_t)L;
    return DL_OK;
}

// ---- workers ----------------------------------------------------------------------

static void *worker_main(void *arg) {
    Worker *w = arg;
    Loader *ld = w->ld;
    int B = ld->opt.batch_size, P = ld->opt.prefetch;
    char err[DL_ERR_LEN];
    pthread_mutex_lock(&ld->mu);
    if (--ld->starting == 0 && ld->paused) pthread_cond_broadcast(&ld->idle);
    for (;;) {
        while (!ld->stop && (ld->paused || ld->next_task / B >= ld->base + P)) pthread_cond_wait(&ld->space, &ld->mu);
        if (ld->stop) break;
        ld->busy++;
        int64_t task = ld->next_task++;
        int64_t g = task / B;
        int b = (int)(task % B);
        Slot *slot = &ld->ring[g % P];
        if (b == 0) {   // the batch's first task: the slot is free (g - P was released)
            slot->g = g;
            slot->done = slot->n_bad = slot->n_truncated = slot->n_padding = 0;
            slot->err_b = -1;
            slot->batch.epoch = g / ld->batches_per_epoch;
            slot->batch.step = g % ld->batches_per_epoch;
        }
        int64_t p = permutation_position(ld, g % ld->batches_per_epoch, b);
        int64_t sample = p < ld->S ? epoch_order(ld, g / ld->batches_per_epoch)[p] : -1;
        pthread_mutex_unlock(&ld->mu);

        int truncated = 0, rc = DL_OK;
        if (sample >= 0) {
            rc = fill_sample(ld, w->reader, &slot->batch, b, sample, &truncated, err, sizeof err);
        } else {   // past the end of the epoch (keep_tail)
            clear_sample(ld, &slot->batch, b);
            slot->batch.shard[b] = -1;
            slot->batch.index[b] = -1;
        }

        pthread_mutex_lock(&ld->mu);
        slot->n_truncated += truncated;
        slot->n_padding += sample < 0;
        if (rc != DL_OK) {
            slot->n_bad++;
            if (slot->err_b < 0 || b < slot->err_b) {   // the first in batch order, whichever worker finished first
                slot->err_b = b;
                snprintf(slot->err, sizeof slot->err, "%s", err);
            }
        }
        if (++slot->done == B) pthread_cond_broadcast(&ld->ready);
        if (--ld->busy == 0 && ld->paused) pthread_cond_broadcast(&ld->idle);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

// Around a wall's fork (data/wall.h): the workers finish the samples they
// are reading (and new ones their start-up) and take no more until the resume.
static void pause_workers(void *arg) {
    Loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    ld->paused++;
    while (ld->busy || ld->starting) pthread_cond_wait(&ld->idle, &ld->mu);
    pthread_mutex_unlock(&ld->mu);
}

static void resume_workers(void *arg) {
    Loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    ld->paused--;
    pthread_cond_broadcast(&ld->space);
    pthread_mutex_unlock(&ld->mu);
}

static int start_workers(Loader *ld) {
    pthread_mutex_lock(&ld->mu);
    ld->stop = 0;
    ld->starting = ld->opt.workers;
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->opt.workers; i++) {
        if (pthread_create(&ld->workers[i].thread, NULL, worker_main, &ld->workers[i]) != 0) {
            pthread_mutex_lock(&ld->mu);
            ld->starting -= ld->opt.workers - i;   // the threads never created
            pthread_cond_broadcast(&ld->idle);
            pthread_mutex_unlock(&ld->mu);
            ld->running = i;
            return -1;
        }
    }
    ld->running = ld->opt.workers;
    return 0;
}

static void stop_workers(Loader *ld) {
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->space);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->running; i++) pthread_join(ld->workers[i].thread, NULL);
    ld->running = 0;
}

// ---- the public side ------------------------------------------------------------

static int check_options(const LoaderOptions *o, char *err, size_t errlen) {
    const char *what = o->batch_size < 1 ? "batch size must be >= 1"
                     : o->max_trace_tokens < 0 ? "max trace tokens must be >= 0"
                     : o->world < 1 || o->rank < 0 || o->rank >= o->world ? "rank must be in [0, world)"
                     : o->workers < 1 || o->workers > 256 ? "workers must be in 1..256"
                     : o->prefetch < 2 || o->prefetch > (1 << 20) ? "prefetch must be in 2..1048576"
                     : o->on_bad_sample != DL_ON_BAD_ERROR && o->on_bad_sample != DL_ON_BAD_SKIP ? "on_bad_sample must be error or skip"
                     : NULL;
    if (what) snprintf(err, errlen, "loader: %s", what);
    return what ? -1 : 0;
}

// Shapes the batch takes from the set; every camera must share (F, H, W).
static int take_shapes(Loader *ld, char *err, size_t errlen) {
    const DlShard *s0 = &ld->set->shards[0];
    for (int c = 1; c < s0->n_cameras; c++)
        if (s0->frames[c] != s0->frames[0] || s0->height[c] != s0->height[0] || s0->width[c] != s0->width[0]) {
            snprintf(err, errlen, "%s: /camera/%s is %dx%dx%d but /camera/%s is %dx%dx%d (F x H x W); the loader batches cameras together, so they need one shape",
                     s0->path, s0->camera_names[c], s0->frames[c], s0->height[c], s0->width[c], s0->camera_names[0],
                     s0->frames[0], s0->height[0], s0->width[0]);
            return -1;
        }
    ld->cams = s0->n_cameras;
    ld->F = s0->frames[0]; ld->H = s0->height[0]; ld->W = s0->width[0];
    ld->Th = s0->Th; ld->T = s0->T; ld->K = s0->K; ld->k = s0->k;
    ld->L = ld->opt.max_trace_tokens;
    ld->D = 0;
    for (int i = 0; i < ld->set->n_shards && !ld->D; i++) ld->D = ld->set->shards[i].D;
    ld->S = ld->set->n_samples;
    int64_t R = ld->opt.world, B = ld->opt.batch_size;
    ld->batches_per_epoch = ld->opt.keep_tail ? ((ld->S + R - 1) / R + B - 1) / B : ld->S / R / B;
    if (ld->batches_per_epoch < 1) {
        snprintf(err, errlen, "%s%s: %lld samples in %d shards make no whole batch of %d per rank for %d ranks; use more data or a smaller batch",
                 s0->path, ld->set->n_shards > 1 ? " ..." : "", (long long)ld->S, ld->set->n_shards, ld->opt.batch_size, ld->opt.world);
        return -1;
    }
    return 0;
}

static int allocate(Loader *ld, char *err, size_t errlen) {
    int P = ld->opt.prefetch, nw = ld->opt.workers;
    Batch probe;
    ld->batch_bytes = layout_batch(ld, NULL, &probe);
    ld->ring = calloc((size_t)P, sizeof(Slot));
    ld->workers = calloc((size_t)nw, sizeof(Worker));
    if (!ld->ring || !ld->workers) goto oom;
    for (int i = 0; i < P; i++) {
        Slot *s = &ld->ring[i];
        s->g = -1;
        s->mem = ld->opt.alloc(ld->batch_bytes, ld->opt.alloc_ctx);
        if (!s->mem) goto oom;
        memset(s->mem, 0, ld->batch_bytes);
        layout_batch(ld, s->mem, &s->batch);
    }
    for (int i = 0; i < N_PERMS; i++) {
        ld->perms[i].epoch = -1;
        ld->perms[i].order = malloc(sizeof(int64_t) * (size_t)ld->S);
        if (!ld->perms[i].order) goto oom;
    }
    for (int i = 0; i < nw; i++) {
        ld->workers[i].ld = ld;
        ld->workers[i].reader = dl_reader_new();
        if (!ld->workers[i].reader) goto oom;
    }
    return 0;
oom:
    snprintf(err, errlen, "loader: out of memory for %d batch buffers of %zu bytes", P, ld->batch_bytes);
    return -1;
}

Loader *loader_open(char *const *patterns, int n_patterns, const LoaderOptions *opt, char *err, size_t errlen) {
    if (check_options(opt, err, errlen)) return NULL;
    Loader *ld = calloc(1, sizeof *ld);
    if (!ld) { snprintf(err, errlen, "loader: out of memory"); return NULL; }
    ld->opt = *opt;
    if (!ld->opt.alloc || !ld->opt.release) {
        ld->opt.alloc = default_alloc;
        ld->opt.release = default_release;
    }
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->space, NULL);
    pthread_cond_init(&ld->ready, NULL);
    pthread_cond_init(&ld->idle, NULL);
    ld->set = dl_set_open_on_bad(patterns, n_patterns, opt->on_bad_sample, err, errlen);
    if (!ld->set || take_shapes(ld, err, errlen) || allocate(ld, err, errlen)) { loader_close(ld); return NULL; }
    if (dl_wall_quiet_add(pause_workers, resume_workers, ld)) {
        snprintf(err, errlen, "loader: out of memory");
        loader_close(ld);
        return NULL;
    }
    if (start_workers(ld)) {
        snprintf(err, errlen, "loader: cannot start %d worker threads", ld->opt.workers);
        loader_close(ld);
        return NULL;
    }
    return ld;
}

void loader_close(Loader *ld) {
    if (!ld) return;
    dl_wall_quiet_remove(ld);
    stop_workers(ld);
    if (ld->workers)
        for (int i = 0; i < ld->opt.workers; i++) dl_reader_free(ld->workers[i].reader);
    if (ld->ring)
        for (int i = 0; i < ld->opt.prefetch; i++)
            if (ld->ring[i].mem) ld->opt.release(ld->ring[i].mem, ld->opt.alloc_ctx);
    for (int i = 0; i < N_PERMS; i++) free(ld->perms[i].order);
    free(ld->ring);
    free(ld->workers);
    dl_set_close(ld->set);
    pthread_cond_destroy(&ld->idle);
    pthread_cond_destroy(&ld->ready);
    pthread_cond_destroy(&ld->space);
    pthread_mutex_destroy(&ld->mu);
    free(ld);
}

const Batch *loader_next(Loader *ld) {
    const Batch *b;
    return loader_next_many(ld, 1, &b) ? NULL : b;
}

int loader_next_many(Loader *ld, int n, const Batch **out) {
    pthread_mutex_lock(&ld->mu);
    if (ld->failed) { pthread_mutex_unlock(&ld->mu); return -1; }
    if (n < 1 || n > ld->opt.prefetch) {
        ld->failed = 1;
        snprintf(ld->error, sizeof ld->error, "loader: %d batches asked at once, the ring holds %d", n, ld->opt.prefetch);
        pthread_mutex_unlock(&ld->mu);
        return -1;
    }
    if (ld->holding) {
        ld->base += ld->holding;
        ld->holding = 0;
        pthread_cond_broadcast(&ld->space);
    }
    for (int i = 0; i < n; i++) {
        Slot *slot = &ld->ring[(ld->base + i) % ld->opt.prefetch];
        while (!(slot->g == ld->base + i && slot->done == ld->opt.batch_size)) pthread_cond_wait(&ld->ready, &ld->mu);
        if (slot->err_b >= 0 && ld->opt.on_bad_sample == DL_ON_BAD_ERROR) {
            ld->failed = 1;
            snprintf(ld->error, sizeof ld->error, "%s", slot->err);
            pthread_mutex_unlock(&ld->mu);
            return -1;
        }
        slot->batch.n_bad = slot->n_bad;
        slot->batch.n_padding = slot->n_padding;
        slot->batch.n_truncated = slot->n_truncated;
        ld->bad_total += slot->n_bad;
        ld->truncated_total += slot->n_truncated;
        out[i] = &slot->batch;
    }
    ld->holding = n;
    pthread_mutex_unlock(&ld->mu);
    return 0;
}

const char *loader_error(const Loader *ld) { return ld->error; }

LoaderPosition loader_tell(const Loader *ld) {
    // base and holding change only in the consumer's own calls.
    int64_t g = ld->base + ld->holding;
    return (LoaderPosition){ g / ld->batches_per_epoch, g % ld->batches_per_epoch };
}

int loader_seek(Loader *ld, LoaderPosition pos) {
    if (pos.epoch < 0 || pos.step < 0) return -1;
    stop_workers(ld);
    int64_t g = pos.epoch * ld->batches_per_epoch + pos.step;
    for (int i = 0; i < ld->opt.prefetch; i++) ld->ring[i].g = -1;
    ld->base = g;
    ld->holding = 0;
    ld->next_task = g * ld->opt.batch_size;
    ld->failed = 0;
    ld->error[0] = 0;
    return start_workers(ld);
}

int64_t loader_batches_per_epoch(const Loader *ld) { return ld->batches_per_epoch; }
const DlSet *loader_set(const Loader *ld) { return ld->set; }
int64_t loader_bad_samples(const Loader *ld) { return ld->bad_total; }
int64_t loader_truncated_traces(const Loader *ld) { return ld->truncated_total; }
size_t loader_batch_bytes(const Loader *ld) { return ld->batch_bytes; }
