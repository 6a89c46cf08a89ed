// bench_dist.c: data-parallel training across ranks, run under mpirun by
// scripts/bench_dist.sh (make bench-dist) at R = 1 and R = 2.
//
// 1. The training step on one global batch, with the gradient all-reduce
//    overlapped with backward (the trainer's way) and, as the baseline,
//    launched only after backward: step time, the all-reduce's span (first
//    bucket launched -> all complete) and the part of it the optimizer
//    waited for. hidden = 1 - exposed / span: the share of the all-reduce
//    that ran while backward was still going.
// 2. The all-reduce alone on the gradient buffer's bytes: the bucketed one
//    (GradSync) beside one MPI_Allreduce of the same bytes in the same run,
//    as bus bandwidth (bytes x 2(R-1)/R per second, NCCL's convention). On a
//    CUDA build with a GPU per rank the same again on the GPU, beside NCCL's
//    own ncclAllReduce (unverified: written and compiled without a GPU).
//
// Output: one "bench_dist ..." line per figure, key=value, for the script.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "autograd/graph.h"
#include "kernels/backend.h"         // defines: backend_cuda_device_count
#include "train/dist/mpi.h"          // defines: dist_world, dist_comm, GradSync
#include "train/core/state.h"           // defines: TrainState, train_step
#ifdef DISTIL_CUDA
#include "kernels/cuda/nccl_comm.h"  // defines: nccl_allreduce, nccl_query
#endif

#define WARMUP_STEPS 2
#define TIMED_STEPS 8
#define ALLREDUCE_REPS 10

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A student big enough that its gradients (~4 MB) take measurable time on
// the wire, small enough for a 2-core machine.
static int load_recipe(Recipe *r, const char *shards, const char *bucket_mb) {
    char path[600], train[700], bucket[100];
    snprintf(path, sizeof path, "%s/bench_dist.yaml", shards);
    if (dist_is_root()) {
        FILE *f = fopen(path, "w");
        if (!f) return -1;
        fputs("name: bench_dist\nseed: 1\n"
              "data:\n  train: [\"x\"]\n  history_frames: 2\n  max_trace_tokens: 32\n  loader_threads: 1\n"
              "model:\n  dim: 128\n  layers: 4\n  heads: 4\n  mlp_ratio: 4\n  patch: 8\n  horizon: 30\n  vocab: from_logs\n"
              "train:\n  steps: 1000\n  micro_batch: 4\n  batch_size: 16\n  lr: 1.0e-3\n  min_lr: 1.0e-3\n  warmup_steps: 0\n", f);
        fclose(f);
    }
    dist_barrier("bench recipe");
    snprintf(train, sizeof train, "data.train=[\"%s/train/*.h5\"]", shards);
    snprintf(bucket, sizeof bucket, "dist.bucket_mb=%s", bucket_mb);
    char *sets[2] = { train, bucket };
    return recipe_load(r, path, sets, 2);
}

// Steps after a warm-up: the mean step time and the all-reduce's figures.
static int bench_steps(const char *shards, const char *bucket_mb, int no_overlap, int thread) {
    const Dist *d = dist_world();
    Recipe r;
    if (load_recipe(&r, shards, bucket_mb)) return 2;
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    if (rc) return rc;
    // The variant asked for: progress by the hook or a thread, or the
    // baseline with every bucket launched after backward.
    if (ts.sync) {
        char err[256];
        grad_sync_free(ts.sync);
        GradSyncConfig gc = { r.dist.bucket_mb, 0, 0, no_overlap, thread };
        ts.sync = grad_sync_new(ts.model.g, &gc, err, sizeof err);
        if (!ts.sync) { fprintf(stderr, "bench_dist: %s\n", err); return 2; }
    }
    StepStats ss;
    for (long s = 0; s < WARMUP_STEPS; s++) if (train_step(&ts, s, &ss) == STEP_ERROR) return 2;
    GradSyncStats before = ts.sync ? *grad_sync_stats(ts.sync) : (GradSyncStats){ 0 };
    dist_barrier("bench start");
    double t0 = now_s();
    for (long s = WARMUP_STEPS; s < WARMUP_STEPS + TIMED_STEPS; s++) if (train_step(&ts, s, &ss) == STEP_ERROR) return 2;
    dist_barrier("bench end");
    double step_ms = (now_s() - t0) / TIMED_STEPS * 1e3;
    if (d->rank == 0) {
        printf("bench_dist steps ranks=%d overlap=%d progress=%s bucket_mb=%s step_ms=%.2f samples_per_s=%.1f grad_mb=%.2f buckets=%d",
               d->world, !no_overlap, thread ? "thread" : "hook", bucket_mb, step_ms, r.train.batch_size / (step_ms * 1e-3),
               ts.model.g->grad_numel * 4.0 / 1048576.0, ts.sync ? grad_sync_stats(ts.sync)->buckets : 0);
        if (ts.sync) {
            const GradSyncStats *a = grad_sync_stats(ts.sync);
            double span = (a->comm_s - before.comm_s) / TIMED_STEPS * 1e3, exposed = (a->exposed_s - before.exposed_s) / TIMED_STEPS * 1e3;
            printf(" allreduce_span_ms=%.3f exposed_ms=%.3f hidden=%.3f", span, exposed, span > 0 ? 1 - exposed / span : 0);
        }
        printf("\n");
        fflush(stdout);
    }
    train_state_close(&ts);
    recipe_free(&r);
    return 0;
}

static double bus_gbs(size_t bytes, int R, double s) {
    return s > 0 ? bytes * 2.0 * (R - 1) / R / s / 1e9 : 0;
}

// The all-reduce alone, on a graph whose gradient buffer holds n floats.
static int bench_allreduce(size_t n, Device dev, double bucket_mb) {
    const Dist *d = dist_world();
    Graph *g = graph_new(dev);
    int shape[1] = { (int)n };
    graph_param(g, "w", 1, shape, INIT_ZEROS, 0, 0);
    if (graph_plan(g)) return 2;
    char err[256];
    GradSyncConfig gc = { bucket_mb, 0, 0, 1, 0 };
    GradSync *s = grad_sync_new(g, &gc, err, sizeof err);
    if (!s) { fprintf(stderr, "bench_dist: %s\n", err); return 2; }
    size_t bytes = n * sizeof(float);
    double ours = 1e30, peer = 1e30;
    for (int rep = 0; rep < ALLREDUCE_REPS; rep++) {
        dist_barrier("bench");
        double t0 = now_s();
        grad_sync_arm(s);
        grad_sync_finish(s);
        double t1 = now_s();
        if (t1 - t0 < ours) ours = t1 - t0;
        dist_barrier("bench");
        t0 = now_s();
        if (dev == DEV_CPU) {
            MPI_Allreduce(MPI_IN_PLACE, g->grad_mem, (int)n, MPI_FLOAT, MPI_SUM, dist_comm());
        }
        t1 = now_s();
        if (dev == DEV_CPU && t1 - t0 < peer) peer = t1 - t0;
    }
    const char *peer_name = "MPI_Allreduce";
#ifdef DISTIL_CUDA
    if (dev == DEV_CUDA) {
        // NCCL's own all_reduce on the same bytes: its own communicator,
        // bootstrapped like GradSync's.
        unsigned char id[NCCL_ID_BYTES] = { 0 };
        if (d->rank == 0 && nccl_make_id(id, err, sizeof err)) { fprintf(stderr, "bench_dist: %s\n", err); return 2; }
        dist_bcast(id, sizeof id, 0, "bench NCCL id");
        NcclComm *c = nccl_comm_new(id, d->rank, d->world, err, sizeof err);
        if (!c) { fprintf(stderr, "bench_dist: %s\n", err); return 2; }
        for (int rep = 0; rep < ALLREDUCE_REPS; rep++) {
            dist_barrier("bench");
            double t0 = now_s();
            nccl_allreduce(c, g->grad_mem, n, 0);
            while (nccl_query(c, err, sizeof err) == 0) {}
            double t1 = now_s();
            if (t1 - t0 < peer) peer = t1 - t0;
        }
        nccl_comm_free(c);
        peer_name = "ncclAllReduce";
    }
#endif
    if (d->rank == 0) {
        printf("bench_dist allreduce device=%s ranks=%d mb=%.1f bucket_mb=%g ours_ms=%.3f ours_busbw_gbs=%.2f peer=%s peer_ms=%.3f "
               "peer_busbw_gbs=%.2f ratio=%.2f\n", dev == DEV_CUDA ? "cuda" : "cpu", d->world, bytes / 1048576.0, bucket_mb, ours * 1e3,
               bus_gbs(bytes, d->world, ours), peer_name, peer * 1e3, bus_gbs(bytes, d->world, peer), peer / ours);
        fflush(stdout);
    }
    grad_sync_free(s);
    graph_free(g);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        printf("bench_dist: run by make bench-dist (scripts/bench_dist.sh), which makes the shards and launches it under mpirun\n");
        return 0;
    }
    const Dist *d = dist_world();
    if (!d->launched) { fprintf(stderr, "bench_dist: run me under mpirun (scripts/bench_dist.sh)\n"); return 2; }
    dist_set_timeout(120);
    const char *shards = argv[1];
    int rc = bench_steps(shards, "25", 1, 0);
    if (!rc) rc = bench_steps(shards, "25", 0, 0);
    if (!rc) rc = bench_steps(shards, "25", 0, 1);
    if (!rc) rc = bench_steps(shards, "0.25", 0, 0);
    if (!rc) rc = bench_steps(shards, "0.25", 0, 1);
    if (!rc) rc = bench_allreduce((size_t)4 << 20, DEV_CPU, 25);   // 16 MiB: one bucket
    if (!rc) rc = bench_allreduce((size_t)4 << 20, DEV_CPU, 1);    // 16 buckets in flight
#ifdef DISTIL_CUDA
    if (!rc && d->gpu >= 0) rc = bench_allreduce((size_t)64 << 20, DEV_CUDA, 25);   // 256 MiB, 11 buckets
#endif
    return rc;
}
