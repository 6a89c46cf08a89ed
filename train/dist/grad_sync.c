// grad_sync.c: the bucketed gradient all-reduce and ZeRO-1 (see dist.h).
//
// Buckets. The flat gradient buffer (grad_numel floats, in the order
// backward completes them) is cut every bucket_floats floats, regardless of
// parameter boundaries: every bucket but the last has exactly the size asked
// for, and a large parameter spans several buckets, whose reductions start
// together when it completes. Bucket b is ready once backward has completed
// every parameter up to the one holding its last float; the grad_ready hook
// keeps that frontier (ready_upto) and launches, in order, every bucket
// behind it. Every rank launches bucket 0, 1, 2, ... in that order, which is
// what MPI's and NCCL's collective matching needs.
//
// Progress. MPI_Iallreduce on CPU ranks advances only inside MPI calls (a
// large bucket crosses shared memory in fragments, each needing a call on
// the receiving side). Two ways, measured in docs/distributed.md:
//   - hook: the grad_ready hook launches the ready buckets and tests the
//     oldest in flight each time a gradient completes, so progress happens
//     only as often as parameters complete;
//   - thread (progress_thread): from grad_sync_arm to grad_sync_finish a
//     progress thread owns MPI: the hook only publishes how far backward has
//     got, and the thread launches buckets and polls them, yielding its core
//     between polls. MPI then runs MPI_THREAD_SERIALIZED, the hand-over at
//     arm and finish (a mutex) being what serialises it.
// On GPUs NCCL runs on the communication stream and needs neither.
//
// bf16 on the wire. A bucket is rounded to bf16 in a separate buffer and
// reduced with a user MPI_Op that adds in fp32 and rounds the sum to bf16
// (on GPUs, NCCL's own bf16 sum). Each partial sum is rounded, so a result
// carries up to (ranks - 1) bf16 roundings (2^-9 relative each) on top of
// the input's own; the fp32 gradient buffer receives the result.
//
// ZeRO-1. Rank r owns [shard[r], shard[r+1]) (dist_shard_range). Each bucket
// is reduce-scattered: MPI_Ireduce_scatter with per-rank counts equal to the
// bucket's overlap with each shard (on GPUs, a group of ncclReduce, one per
// owning rank, since NCCL's ReduceScatter wants equal pieces). The summed
// shard lands in `staging` (fp32 on CPU ranks; bf16 in `wire_recv`, NCCL in
// place) and is copied into the gradient buffer; the rest of the buffer
// keeps this rank's own unsummed gradients, which nothing reads. After the
// update of its shard, the parameters share the gradients' flat layout, so
// the shards are all-gathered in place in the parameter buffer
// (MPI_Iallgatherv; on GPUs grouped ncclBroadcast).
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "autograd/tensor.h"      // defines: f32_to_bf16, bf16_to_f32
#include "kernels/backend.h"      // defines: backend_alloc, backend_free
#include "train/dist/mpi.h"       // defines: MPI, dist_comm, dist_waitall
#ifdef DISTIL_CUDA
#include "kernels/cuda/nccl_comm.h"   // defines: NcclComm, nccl_allreduce, nccl_reduce, nccl_query
#endif

struct GradSync {
    Graph *g;
    GradSyncConfig cfg;
    int rank, world;
    MPI_Comm comm;
    int on_gpu;                 // the graph lives on a GPU: NCCL instead of MPI
    size_t n;                   // gradient floats
    size_t bucket_floats;
    int n_buckets;
    size_t *shard;              // (world + 1) shard starts, shard[world] = n
    int *rs_counts;             // ZeRO-1: (n_buckets, world) each bucket's overlap with each shard
    int *ag_counts, *ag_displs; // ZeRO-1: (world) the parameter all-gather
    MPI_Request *reqs;          // (n_buckets) CPU ranks
    MPI_Op bf16_sum;
    float *staging;             // ZeRO-1, fp32 on CPU ranks: (n) where the summed shard lands
    uint16_t *wire, *wire_recv; // bf16: (n) the buckets on the wire; ZeRO-1 CPU: (n) what comes back
    // The step in flight.
    int armed, next, oldest;    // next bucket to launch; oldest not yet seen complete
    size_t ready_upto;          // floats of the buffer backward has completed
    double t_first_launch, t_all_done;
    GradSyncStats stats;
    // The progress thread (cfg.progress_thread): it owns MPI while `owns`.
    pthread_t thread;
    int thread_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int owns, stop, busy;       // under mu; busy: the thread is inside MPI
    int woken;                  // buckets the hook has woken the thread for (main thread)
    atomic_size_t ready_shared; // ready_upto as the hook publishes it
#ifdef DISTIL_CUDA
    NcclComm *nccl;
#endif
};

static void *progress_main(void *arg);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The user op of the bf16 wire: sums in fp32, rounds to bf16.
static void bf16_sum_fn(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

static size_t bucket_lo(const GradSync *s, int b) { return (size_t)b * s->bucket_floats; }
static size_t bucket_hi(const GradSync *s, int b) {
    size_t hi = bucket_lo(s, b) + s->bucket_floats;
    return hi < s->n ? hi : s->n;
}

// ---- setting up ------------------------------------------------------------------

static int plan_zero(GradSync *s, char *err, size_t errlen) {
    int R = s->world;
    s->rs_counts = calloc((size_t)s->n_buckets * (size_t)R, sizeof *s->rs_counts);
    s->ag_counts = calloc((size_t)R, sizeof *s->ag_counts);
    s->ag_displs = calloc((size_t)R, sizeof *s->ag_displs);
    if (!s->rs_counts || !s->ag_counts || !s->ag_displs) { snprintf(err, errlen, "out of memory planning ZeRO-1"); return -1; }
    for (int b = 0; b < s->n_buckets; b++)
        for (int r = 0; r < R; r++) {
            size_t lo = bucket_lo(s, b), hi = bucket_hi(s, b);
            size_t a = lo > s->shard[r] ? lo : s->shard[r], z = hi < s->shard[r + 1] ? hi : s->shard[r + 1];
            s->rs_counts[(size_t)b * R + r] = z > a ? (int)(z - a) : 0;
        }
    for (int r = 0; r < R; r++) {
        s->ag_counts[r] = (int)(s->shard[r + 1] - s->shard[r]);
        s->ag_displs[r] = (int)s->shard[r];
    }
    if (s->on_gpu) return 0;   // NCCL reduces in place
    if (s->cfg.wire_bf16 && !(s->wire_recv = malloc((s->n ? s->n : 1) * sizeof(uint16_t)))) {
        snprintf(err, errlen, "out of memory for the bf16 wire buffer");
        return -1;
    }
    if (!s->cfg.wire_bf16 && !(s->staging = malloc((s->n ? s->n : 1) * sizeof(float)))) {
        snprintf(err, errlen, "cannot allocate %zu bytes for ZeRO-1's staging buffer", s->n * sizeof(float));
        return -1;
    }
    return 0;
}

#ifdef DISTIL_CUDA
// Rank 0 makes the NCCL id, MPI carries it to the others, then all join.
static int join_nccl(GradSync *s, char *err, size_t errlen) {
    unsigned char id[NCCL_ID_BYTES] = { 0 };
    if (s->rank == 0 && nccl_make_id(id, err, errlen)) return -1;
    dist_bcast(id, sizeof id, 0, "NCCL id broadcast");
    dist_wait_begin("NCCL communicator setup");
    s->nccl = nccl_comm_new(id, s->rank, s->world, err, errlen);
    dist_wait_end();
    return s->nccl ? 0 : -1;
}
#endif

GradSync *grad_sync_new(Graph *g, const GradSyncConfig *cfg, char *err, size_t errlen) {
    const Dist *d = dist_world();
    GradSync *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->g = g;
    s->cfg = *cfg;
    s->rank = d->rank;
    s->world = d->world;
    s->comm = dist_comm();
    s->on_gpu = g->device == DEV_CUDA;
    s->n = g->grad_numel;
    s->bf16_sum = MPI_OP_NULL;
    double floats = cfg->bucket_mb * 1048576.0 / sizeof(float);
    // MPI counts are ints; one float at least.
    s->bucket_floats = floats < 1 ? 1 : floats > (1u << 30) ? (size_t)1 << 30 : (size_t)floats;
    s->n_buckets = s->n ? (int)((s->n + s->bucket_floats - 1) / s->bucket_floats) : 0;
    if (s->n / (size_t)s->world > (size_t)1 << 30 && cfg->zero) {
        snprintf(err, errlen, "ZeRO-1 shards of more than 2^30 floats are not supported; use more ranks or dist.zero: 0");
        grad_sync_free(s);
        return NULL;
    }
    s->shard = malloc((size_t)(s->world + 1) * sizeof *s->shard);
    s->reqs = malloc((size_t)(s->n_buckets ? s->n_buckets : 1) * sizeof *s->reqs);
    if (!s->shard || !s->reqs) { snprintf(err, errlen, "out of memory"); grad_sync_free(s); return NULL; }
    for (int r = 0; r < s->world; r++) dist_shard_range(s->n, r, s->world, &s->shard[r], &s->shard[r + 1]);
    for (int b = 0; b < s->n_buckets; b++) s->reqs[b] = MPI_REQUEST_NULL;
    if (cfg->wire_bf16) {
        s->wire = backend_alloc(g->device, (s->n ? s->n : 1) * sizeof(uint16_t));
        if (!s->wire) { snprintf(err, errlen, "out of memory for the bf16 wire buffer"); grad_sync_free(s); return NULL; }
        if (!s->on_gpu) MPI_Op_create(bf16_sum_fn, 1, &s->bf16_sum);
    }
    if (cfg->zero && plan_zero(s, err, errlen)) { grad_sync_free(s); return NULL; }
#ifdef DISTIL_CUDA
    if (s->on_gpu && join_nccl(s, err, errlen)) { grad_sync_free(s); return NULL; }
#else
    if (s->on_gpu) { snprintf(err, errlen, "a GPU graph in a build without CUDA"); grad_sync_free(s); return NULL; }
#endif
    if (cfg->progress_thread && !s->on_gpu && s->n_buckets && dist_mpi_serialized()) {
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        if (pthread_create(&s->thread, NULL, progress_main, s) == 0) s->thread_running = 1;
    }
    s->stats.buckets = s->n_buckets;
    s->stats.wire_bytes = s->n * (cfg->wire_bf16 ? sizeof(uint16_t) : sizeof(float));
    return s;
}

void grad_sync_free(GradSync *s) {
    if (!s) return;
    if (s->thread_running) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
    }
    Device dev = s->g->device;
#ifdef DISTIL_CUDA
    nccl_comm_free(s->nccl);
#endif
    if (s->bf16_sum != MPI_OP_NULL) MPI_Op_free(&s->bf16_sum);
    if (s->g->grad_ready_ctx == s) s->g->grad_ready = NULL, s->g->grad_ready_ctx = NULL;
    free(s->staging);
    backend_free(dev, s->wire);
    free(s->wire_recv);
    free(s->rs_counts); free(s->ag_counts); free(s->ag_displs);
    free(s->shard); free(s->reqs);
    free(s);
}

void grad_sync_shard(const GradSync *s, size_t *lo, size_t *hi) {
    if (s->cfg.zero) { *lo = s->shard[s->rank]; *hi = s->shard[s->rank + 1]; }
    else { *lo = 0; *hi = s->n; }
}

const GradSyncStats *grad_sync_stats(const GradSync *s) { return &s->stats; }

// ---- launching buckets ---------------------------------------------------------------

#ifdef DISTIL_CUDA
static void launch_gpu(GradSync *s, int b) {
    size_t lo = bucket_lo(s, b), hi = bucket_hi(s, b), n = hi - lo;
    float *grad = s->g->grad_mem + lo;
    int bf16 = s->cfg.wire_bf16;
    void *buf = bf16 ? (void *)(s->wire + lo) : (void *)grad;
    nccl_after_compute(s->nccl);
    if (bf16) nccl_to_bf16(s->nccl, s->wire + lo, grad, n);
    if (!s->cfg.zero) {
        nccl_allreduce(s->nccl, buf, n, bf16);
        if (bf16) nccl_from_bf16(s->nccl, grad, s->wire + lo, n);
        return;
    }
    // Uneven reduce-scatter: one in-place reduce per rank whose shard overlaps.
    nccl_group_begin();
    for (int r = 0; r < s->world; r++) {
        int count = s->rs_counts[(size_t)b * s->world + r];
        if (!count) continue;
        size_t at = lo > s->shard[r] ? lo : s->shard[r];
        nccl_reduce(s->nccl, bf16 ? (void *)(s->wire + at) : (void *)(s->g->grad_mem + at), (size_t)count, bf16, r);
    }
    nccl_group_end();
    int mine = s->rs_counts[(size_t)b * s->world + s->rank];
    size_t at = lo > s->shard[s->rank] ? lo : s->shard[s->rank];
    if (bf16 && mine) nccl_from_bf16(s->nccl, s->g->grad_mem + at, s->wire + at, (size_t)mine);
}
#endif

static void launch_cpu(GradSync *s, int b) {
    size_t lo = bucket_lo(s, b), hi = bucket_hi(s, b);
    int count = (int)(hi - lo);
    void *buf = s->g->grad_mem + lo;
    MPI_Datatype type = MPI_FLOAT;
    MPI_Op op = MPI_SUM;
    if (s->cfg.wire_bf16) {
        for (size_t i = lo; i < hi; i++) s->wire[i] = f32_to_bf16(s->g->grad_mem[i]);
        buf = s->wire + lo;
        type = MPI_UINT16_T;
        op = s->bf16_sum;
    }
    if (!s->cfg.zero) {
        MPI_Iallreduce(MPI_IN_PLACE, buf, count, type, op, s->comm, &s->reqs[b]);
        return;
    }
    const int *counts = &s->rs_counts[(size_t)b * s->world];
    size_t at = lo > s->shard[s->rank] ? lo : s->shard[s->rank];
    if (at > hi) at = hi;
    void *recv = s->cfg.wire_bf16 ? (void *)(s->wire_recv + at) : (void *)(s->staging + at);
    MPI_Ireduce_scatter(buf, recv, counts, type, op, s->comm, &s->reqs[b]);
}

static void launch(GradSync *s, int b);

// A bucket the thread may launch: behind the published frontier.
static int bucket_due(GradSync *s) {
    return s->next < s->n_buckets && bucket_hi(s, s->next) <= atomic_load(&s->ready_shared);
}

static void launch(GradSync *s, int b) {
    if (s->t_first_launch < 0) s->t_first_launch = now_s();
#ifdef DISTIL_CUDA
    if (s->on_gpu) { launch_gpu(s, b); return; }
#endif
    launch_cpu(s, b);
}

// Drive MPI's progress engine: test the oldest bucket in flight (and the
// ones after it that are done too).
static void progress(GradSync *s) {
    if (s->on_gpu) return;
    while (s->oldest < s->next) {
        int done = 0;
        MPI_Test(&s->reqs[s->oldest], &done, MPI_STATUS_IGNORE);
        if (!done) return;
        s->oldest++;
    }
    if (s->next == s->n_buckets && s->t_all_done < 0) s->t_all_done = now_s();
}

// Launch, in order, every bucket behind the frontier `ready`.
static void launch_ready(GradSync *s, size_t ready) {
    while (s->next < s->n_buckets && bucket_hi(s, s->next) <= ready) launch(s, s->next++);
}

// graph.h's grad_ready hook: `param`'s gradient is final.
static void on_grad_ready(void *ctx, Tensor *param) {
    GradSync *s = ctx;
    size_t end = (size_t)(param->grad - s->g->grad_mem) + param->numel;
    if (end > s->ready_upto) s->ready_upto = end;
    if (s->thread_running) {   // the progress thread launches; wake it when a bucket is due
        atomic_store(&s->ready_shared, s->ready_upto);
        if (s->woken >= s->n_buckets || bucket_hi(s, s->woken) > s->ready_upto) return;
        while (s->woken < s->n_buckets && bucket_hi(s, s->woken) <= s->ready_upto) s->woken++;
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    launch_ready(s, s->ready_upto);
    progress(s);
}

// The progress thread: while it owns MPI, launch what is ready and poll
// what is in flight; sleep when there is neither.
static void *progress_main(void *arg) {
    GradSync *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !(s->owns && (s->oldest < s->next || bucket_due(s))))
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) break;
        s->busy = 1;
        pthread_mutex_unlock(&s->mu);
        launch_ready(s, atomic_load(&s->ready_shared));
        progress(s);
        pthread_mutex_lock(&s->mu);
        s->busy = 0;
        pthread_cond_broadcast(&s->cv);   // take_back_mpi may be waiting
        pthread_mutex_unlock(&s->mu);
        sched_yield();
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void grad_sync_arm(GradSync *s) {
    s->next = s->oldest = 0;
    s->ready_upto = 0;
    atomic_store(&s->ready_shared, 0);
    s->woken = 0;
    s->t_first_launch = s->t_all_done = -1;
    s->armed = !s->cfg.no_overlap;
    if (!s->armed) return;
    s->g->grad_ready = on_grad_ready;
    s->g->grad_ready_ctx = s;
    if (s->thread_running) {
        pthread_mutex_lock(&s->mu);
        s->owns = 1;
        pthread_mutex_unlock(&s->mu);
    }
}

// Take MPI back from the progress thread (it finishes its current poll).
static void take_back_mpi(GradSync *s) {
    if (!s->thread_running) return;
    pthread_mutex_lock(&s->mu);
    s->owns = 0;
    while (s->busy) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

// ---- finishing -------------------------------------------------------------------------

static int wait_gpu(GradSync *s, const char *what) {
#ifdef DISTIL_CUDA
    char err[256];
    dist_wait_begin(what);
    int st;
    while ((st = nccl_query(s->nccl, err, sizeof err)) == 0) {
        dist_wait_poll();
        struct timespec nap = { 0, 20 * 1000 };
        nanosleep(&nap, NULL);
    }
    dist_wait_end();
    if (st < 0) {
        fprintf(stderr, "distil: error: rank %d: %s: %s; ending the job\n", s->rank, what, err);
        nccl_comm_abort(s->nccl);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
#else
    (void)s; (void)what;
#endif
    return 0;
}

int grad_sync_finish(GradSync *s) {
    double t0 = now_s();
    if (s->armed) {
        s->g->grad_ready = NULL;
        s->g->grad_ready_ctx = NULL;
        take_back_mpi(s);
    } else {   // grad_sync_arm was not called: nothing launched yet
        s->next = s->oldest = 0;
        s->t_first_launch = s->t_all_done = -1;
    }
    s->armed = 0;
    while (s->next < s->n_buckets) launch(s, s->next++);
    if (s->on_gpu) wait_gpu(s, "gradient all-reduce");
    else dist_waitall(s->n_buckets - s->oldest, s->reqs + s->oldest, "gradient all-reduce");
    double t1 = now_s();
    if (s->t_all_done < 0) s->t_all_done = t1;
    if (s->t_first_launch < 0) s->t_first_launch = t0;
    s->stats.steps++;
    s->stats.comm_s += s->t_all_done - s->t_first_launch;
    s->stats.exposed_s += t1 - t0 < s->t_all_done - s->t_first_launch ? t1 - t0 : s->t_all_done - s->t_first_launch;
    if (s->on_gpu) return 0;
    // Bring the summed values into the fp32 gradient buffer.
    size_t lo, hi;
    grad_sync_shard(s, &lo, &hi);
    float *grad = s->g->grad_mem;
    if (s->cfg.wire_bf16) {
        const uint16_t *from = s->cfg.zero ? s->wire_recv : s->wire;
        for (size_t i = lo; i < hi; i++) grad[i] = bf16_to_f32(from[i]);
    } else if (s->cfg.zero) {
        memcpy(grad + lo, s->staging + lo, (hi - lo) * sizeof(float));
    }
    return 0;
}

double grad_sync_sumsq(GradSync *s) {
    // Per shard, in rank order: ZeRO-0 computes every shard's sum itself,
    // ZeRO-1 gathers them; the same additions in the same order either way.
    int R = s->world;
    double *part = malloc((size_t)R * sizeof *part), total = 0;
    if (!s->cfg.zero) {
        for (int r = 0; r < R; r++) part[r] = grad_sumsq_range(s->g, s->shard[r], s->shard[r + 1]);
    } else {
        double mine = grad_sumsq_range(s->g, s->shard[s->rank], s->shard[s->rank + 1]);
        MPI_Request req;
        MPI_Iallgather(&mine, 1, MPI_DOUBLE, part, 1, MPI_DOUBLE, s->comm, &req);
        dist_waitall(1, &req, "gradient norm");
    }
    for (int r = 0; r < R; r++) total += part[r];
    free(part);
    return total;
}

// Every rank's updated shard to every rank. The parameters' trainable
// prefix has the gradients' layout (graph.h), so the shards are gathered in
// place in the parameter buffer; the frozen parameters behind it never change.
static void gather_params(GradSync *s) {
    float *params = s->g->param_mem;
#ifdef DISTIL_CUDA
    if (s->on_gpu) {
        nccl_after_compute(s->nccl);   // the AdamW kernels
        nccl_group_begin();
        for (int r = 0; r < s->world; r++)
            if (s->ag_counts[r]) nccl_broadcast(s->nccl, params + s->shard[r], (size_t)s->ag_counts[r], r);
        nccl_group_end();
        wait_gpu(s, "parameter all-gather");
        return;
    }
#endif
    MPI_Request req;
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, params, s->ag_counts, s->ag_displs, MPI_FLOAT, s->comm, &req);
    dist_waitall(1, &req, "parameter all-gather");
}

int grad_sync_update(GradSync *s, AdamW *opt, double sumsq) {
    adamw_update_sumsq(opt, s->g, sumsq);   // opt holds this rank's shard under ZeRO-1
    if (!s->cfg.zero) return 0;
    double t0 = now_s();
    gather_params(s);
    s->stats.gather_s += now_s() - t0;
    return 0;
}
