// dist.h: the process's place in a job, and the project's own gradient
// all-reduce (docs/distributed.md).
//
// The world (train/dist/world.c). A process started by mpirun or srun initialises
// MPI on the first dist_world() call and learns its rank, the world size and
// its rank on the node; a process started alone runs as rank 0 of 1 without
// touching MPI. Every blocking wait on a collective goes through dist_waitall,
// which a watchdog thread times: a collective stalled past the recipe's
// dist.timeout_s ends the whole job with one line naming the rank that did
// not arrive.
//
// The gradients (train/dist/grad_sync.c). GradSync cuts the graph's flat
// gradient buffer (graph.h: laid out in the order backward completes it)
// into buckets of dist.bucket_mb and starts each bucket's reduction from the
// graph's grad_ready hook as soon as backward has finished its last
// gradient, while backward goes on. ZeRO-0 all-reduces every bucket; ZeRO-1
// reduce-scatters them, so each rank ends with the summed gradients of its
// own shard of the buffer, updates that shard with AdamW moments it alone
// holds, and all-gathers the updated parameters.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "autograd/graph.h"   // defines: Graph
#include "autograd/optim.h"   // defines: AdamW

// ---- the world -------------------------------------------------------------

typedef struct Dist {
    int rank, world;               // in MPI_COMM_WORLD; 0 of 1 without a launcher
    int local_rank, local_world;   // on this node (MPI_COMM_TYPE_SHARED)
    int launched;                  // 1: started by mpirun/srun; MPI is initialised and the
                                   // collectives run, at world size 1 too
    int gpu;                       // the CUDA device bound to this rank (local_rank % devices), -1: none
} Dist;

// The process's one world, set up on the first call (MPI_Init_thread when a
// launcher's environment is there: OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK
// or SLURM_PROCID). MPI is finalised when the process exits with status 0;
// any other status aborts the whole job with it, so a rank that fails never
// leaves the others waiting.
const Dist *dist_world(void);
static inline int dist_is_root(void) { return dist_world()->rank == 0; }

// Errors every rank would print alike: from dist_hold_errors until
// dist_release_errors, a non-root rank under a launcher holds its stderr;
// if it fails meanwhile, it gives rank 0 (failing the same way) a grace
// period to print and end the job, then prints its own lines, naming its
// rank. Both are no-ops in a process started alone and on rank 0.
void dist_hold_errors(void);
void dist_release_errors(void);

// Every rank has agreed to exit with the same non-zero status (a stop on a
// signal, after its checkpoint): the exit then finalises MPI like a clean
// one rather than aborting the job.
void dist_exit_together(void);

// Seconds a collective may wait before the watchdog ends the job
// (dist.timeout_s). Rank 0 fires first and names the ranks that never
// arrived; the others wait a grace period longer, so that when one of them
// fires it knows rank 0 is the one that is not answering.
void dist_set_timeout(double seconds);

// Blocking waits, timed by the watchdog under the name `what` ("gradient
// all-reduce"). At world size 1 without a launcher they return at once.
// Each returns 0; an MPI failure aborts the job (MPI_ERRORS_ARE_FATAL).
int dist_allreduce_sum(double *x, int n, const char *what);     // in place
int dist_allgather_u64(uint64_t mine, uint64_t *all, const char *what);  // all: (world)
int dist_bcast(void *buf, size_t bytes, int root, const char *what);
int dist_barrier(const char *what);

// Marks the calling thread as blocked on a collective it waits for itself
// (NCCL on a stream, a blocking MPI call), for the watchdog. Pairs.
void dist_wait_begin(const char *what);
void dist_wait_end(void);
// Call now and then while waiting in such a loop: it keeps the arrival
// board current (this rank's heartbeat to rank 0; rank 0 reads the others').
void dist_wait_poll(void);

// 64-bit FNV-1a of bytes: the fingerprint ranks compare (weights, recipes).
uint64_t dist_fnv1a(const void *data, size_t bytes, uint64_t h);
#define DIST_FNV_SEED 0xcbf29ce484222325ull

// ZeRO-1's shard of a flat buffer of n floats for `rank` of `world`: [lo, hi).
// Shards start on 16-float (64-byte) boundaries; the last takes the rest.
void dist_shard_range(size_t n, int rank, int world, size_t *lo, size_t *hi);

// ---- the gradient all-reduce --------------------------------------------------

typedef struct GradSyncConfig {
    double bucket_mb;   // bucket size in MiB (dist.bucket_mb); > 0, at least one float
    int wire_bf16;      // 1: buckets travel as bf16 (dist.grad_dtype), summed in fp32
    int zero;           // 1: ZeRO-1 (reduce-scatter, sharded update, all-gather)
    int no_overlap;     // 1: launch every bucket after backward (benchmarks: the baseline)
    int progress_thread;  // CPU ranks: 1 a progress thread drives MPI during backward, 0 the
                          // grad_ready hook does (train/dist/grad_sync.c; needs MPI_THREAD_SERIALIZED)
} GradSyncConfig;

// Timings summed over the steps since grad_sync_new (seconds).
typedef struct GradSyncStats {
    long steps;
    double comm_s;       // first bucket launched -> every bucket complete
    double exposed_s;    // of that, the time the optimizer blocked in grad_sync_finish
    double gather_s;     // ZeRO-1: the parameter all-gather (not overlapped)
    size_t wire_bytes;   // bytes each rank contributes per step
    int buckets;
} GradSyncStats;

typedef struct GradSync GradSync;

// Buckets for g's gradient buffer on the world's ranks. NULL with err set
// ("distil: error: " not included) on a bad size or no memory.
GradSync *grad_sync_new(Graph *g, const GradSyncConfig *cfg, char *err, size_t errlen);
void grad_sync_free(GradSync *s);
// The flat range [lo, hi) whose optimizer state this rank holds: its shard
// under ZeRO-1, the whole buffer otherwise.
void grad_sync_shard(const GradSync *s, size_t *lo, size_t *hi);
// Call before the backward of a step's last micro-batch: during it, each
// bucket is launched once its gradients are complete. Earlier micro-batches
// only accumulate locally.
void grad_sync_arm(GradSync *s);
// Launches every bucket the backward did not (all of them when a rank skipped
// its backward on a non-finite loss: every rank launches every bucket, in the
// same order), waits for them all. Then each rank holds the sum over ranks
// of the gradients: the whole buffer (ZeRO-0) or its shard (ZeRO-1).
int grad_sync_finish(GradSync *s);
// The sum of squares of the summed gradients: per shard in a fixed order,
// added in rank order, so every rank gets the same bits and ZeRO-0 and ZeRO-1
// the same value. At world size 1 it equals grad_global_norm()^2.
double grad_sync_sumsq(GradSync *s);
// The optimizer's pass on the summed gradients (adamw_update_sumsq, with
// the step's scalars from adamw_begin and sumsq from grad_sync_sumsq, which
// sets the clip): ZeRO-0 updates everything; ZeRO-1 updates this rank's
// shard and all-gathers the parameters. opt must hold grad_sync_shard's range.
int grad_sync_update(GradSync *s, AdamW *opt, double sumsq);
const GradSyncStats *grad_sync_stats(const GradSync *s);

// ---- ZeRO-1 checkpoints (train/dist/zero_ckpt.c) -------------------------------------
//
// Under ZeRO-1 no rank holds all of AdamW's moments, so each rank writes its
// own shard (opt->m, opt->v for [opt->lo, opt->lo + opt->n), the AdamW step,
// a CRC-32) to zero1-rank-R-of-W.bin inside the checkpoint directory; rank 0
// writes everything else (train/ckpt/checkpoint.c). The order keeps a checkpoint
// whole at any instant of a crash: every rank stages its shard in
// RUN_DIR/checkpoints/.zero1-step_N/ (fsync'ed), all ranks meet at a barrier,
// then rank 0 moves the shards into its temporary directory before that is
// renamed into place. A run resumes from them at the same world size.

// Every rank: write this rank's shard for checkpoint `step` to the staging
// directory, then wait for every rank to have done so. 0, or -1 with err.
int dist_zero_stage(const AdamW *opt, const Graph *g, const char *run_dir, long step, char *err, size_t errlen);
// Rank 0, inside the checkpoint's temporary directory `tmp` before it is
// published: move every rank's staged shard into it. 0, or -1 with err.
int dist_zero_adopt(const char *run_dir, long step, const char *tmp, char *err, size_t errlen);
// Every rank: read this rank's shard from checkpoint `dir` into opt (same
// world size, same shard). 0, or -1 with err saying what differs.
int dist_zero_load(AdamW *opt, const Graph *g, const char *dir, char *err, size_t errlen);
// Whether checkpoint `dir` holds ZeRO-1 shards (it was written with dist.zero: 1).
int dist_zero_in_checkpoint(const char *dir);
