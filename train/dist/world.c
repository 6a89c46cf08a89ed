// world.c: the world (launch, ranks, exit), the watchdog and the timed waits
// (see dist.h).
//
// Threads. MPI is initialised with MPI_THREAD_SERIALIZED: the main thread
// communicates, except while it has handed MPI to GradSync's progress
// thread for a backward pass (train/dist/grad_sync.c). The one exception is the watchdog thread's MPI_Abort when a
// collective has stalled, i.e. when the main thread is stuck inside MPI
// anyway; Open MPI and MPICH implement MPI_Abort by asking the launcher to
// kill the job, which works from any thread. Should it return, the watchdog
// calls _exit(1), and the launcher ends the job because a rank exited
// without finalising.
//
// Who is unresponsive. A stalled collective cannot tell who is missing, so
// every rank sends rank 0 a small note each time it begins a wait ("I reached
// wait number n"), and again every second while it waits: the arrival
// board. Rank 0's watchdog, which fires first, names the ranks whose latest
// note is older than its own wait (they never arrived) or that have gone
// silent in it (arrived, then stopped: a rank's own MPI calls move its part
// of a collective along). The others fire a grace period later; if rank 0
// were answering it would have ended the job by then, so they name rank 0.
#include "train/dist/dist.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "train/dist/mpi.h"      // defines: MPI, dist_comm, dist_waitall
#ifdef DISTIL_CUDA
#include "kernels/backend.h"           // defines: backend_cuda_device_count
#include "kernels/cuda/nccl_comm.h"    // defines: nccl_bind_device
#endif

// Extra seconds the ranks other than 0 wait before they fire (see above).
#define DIST_GRACE_S 3.0
// Arrival notes a rank may have in flight at once; when all are, a note is
// dropped (the board is a diagnosis, not a protocol).
#define DIST_NOTE_SLOTS 16
#define DIST_TAG_ARRIVAL 7
// A waiting rank repeats its note this often; rank 0 counts one unheard for
// DIST_SILENT_S as stopped.
#define DIST_HEARTBEAT_S 1.0
#define DIST_SILENT_S 3.0
// A wait polls flat out (yielding the core between polls) this long, then naps.
#define DIST_SPIN_S 0.05

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The process's MPI world: set once by world_init, then only the watchdog's
// fields change (under mu).
static struct {
    Dist d;
    int ready;
    int thread_level;            // what MPI_Init_thread provided
    int exit_agreed;             // every rank exits with the same status (dist_exit_together)
    MPI_Comm comm, board_comm;   // collectives; arrival notes
    // The watchdog.
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int thread_running, stop;
    double timeout_s;
    int waiting;                 // the main thread is blocked on a collective
    double since;                // ... since then (now_s)
    double last_note;            // when this rank last sent its arrival note
    char what[96];               // ... named so
    long seq;                    // waits begun: the same count on every rank
    // The arrival board. Rank 0: board[r] is the latest wait rank r began,
    // with one receive posted per peer. Others: notes in flight.
    long *board, *note_in;
    double *heard;               // rank 0: when each rank's latest note came (now_s)
    MPI_Request *note_in_req;
    long note_out[DIST_NOTE_SLOTS];
    MPI_Request note_out_req[DIST_NOTE_SLOTS];
} world = { .d = { 0, 1, 0, 1, 0, -1 }, .timeout_s = 600, .mu = PTHREAD_MUTEX_INITIALIZER };

static int launched_by_env(void) {
    static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

// ---- errors every rank would print ------------------------------------------------

// Until a command has checked what every rank reads alike (the recipe, the
// shards, the model), the ranks fail alike: a non-root rank holds its
// stderr in a file meanwhile. On a failure it waits HELD_GRACE_S for rank 0,
// who fails the same way, to print and end the job; a failure of its own
// (rank 0 went on) is printed after the grace, prefixed with its rank.
#define HELD_GRACE_S 10
static struct {
    int fd;              // the held stderr (an unlinked file), -1: not holding
    int saved;           // the real stderr
    int rank;
} held = { -1, -1, 0 };

static int env_rank(void) {
    static const char *const vars[] = { "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v) return atoi(v);
    }
    return 0;
}

// Put the real stderr back and copy what was held to it, each line
// prefixed with "rank R: " when `failed`.
static void held_release(int failed) {
    if (held.fd < 0) return;
    fflush(stderr);
    dup2(held.saved, STDERR_FILENO);
    close(held.saved);
    char buf[4096];
    FILE *in = fdopen(held.fd, "r");
    held.fd = -1;
    if (!in) return;
    rewind(in);
    while (fgets(buf, sizeof buf, in)) {
        if (failed && !strncmp(buf, "distil: error: ", 15)) fprintf(stderr, "distil: error: rank %d: %s", held.rank, buf + 15);
        else fputs(buf, stderr);
    }
    fclose(in);
    fflush(stderr);
}

static void held_exit(int status, void *arg) {
    (void)arg;
    if (held.fd < 0) return;
    if (status != 0) sleep(HELD_GRACE_S);   // rank 0's failure, the same one, ends the job meanwhile
    held_release(status != 0);
}

void dist_hold_errors(void) {
    if (!launched_by_env() || (held.rank = env_rank()) == 0 || held.fd >= 0) return;
    char path[] = "/tmp/distil-stderr-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    unlink(path);
    fflush(stderr);
    held.saved = dup(STDERR_FILENO);
    if (held.saved < 0 || dup2(fd, STDERR_FILENO) < 0) { close(fd); return; }
    held.fd = fd;
    on_exit(held_exit, NULL);
}

void dist_release_errors(void) { held_release(0); }

// ---- the watchdog ------------------------------------------------------------

// "1" or "1, 3": the ranks whose latest arrival note is older than wait
// seq, or that have sent none for DIST_SILENT_S.
static void missing_ranks(char *buf, size_t n, long seq) {
    size_t at = 0;
    double now = now_s();
    buf[0] = 0;
    for (int r = 1; r < world.d.world && at + 16 < n; r++)
        if (world.board[r] < seq || now - world.heard[r] > DIST_SILENT_S)
            at += (size_t)snprintf(buf + at, n - at, "%s%d", at ? ", " : "", r);
}

static void stall_message(char *msg, size_t n, double waited) {
    char who[256];
    if (world.d.rank != 0) {
        snprintf(who, sizeof who, "rank 0 unresponsive?");
    } else {
        char ranks[200];
        missing_ranks(ranks, sizeof ranks, world.seq);
        if (ranks[0]) snprintf(who, sizeof who, "rank%s %s unresponsive?", strchr(ranks, ',') ? "s" : "", ranks);
        else snprintf(who, sizeof who, "every rank arrived: the network or MPI stalled?");
    }
    snprintf(msg, n, "distil: error: rank %d: collective %s stalled for %.0f s (%s); ending the job\n",
             world.d.rank, world.what, waited, who);
}

static void *watchdog_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&world.mu);
    while (!world.stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 200 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&world.cv, &world.mu, &until);
        if (world.stop || !world.waiting) continue;
        double waited = now_s() - world.since;
        double limit = world.timeout_s + (world.d.rank ? DIST_GRACE_S : 0);
        if (waited < limit) continue;
        char msg[512];
        stall_message(msg, sizeof msg, waited);
        pthread_mutex_unlock(&world.mu);
        fputs(msg, stderr);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        _exit(1);
    }
    pthread_mutex_unlock(&world.mu);
    return NULL;
}

static void watchdog_start(void) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&world.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&world.thread, NULL, watchdog_main, NULL) == 0) world.thread_running = 1;
    else fprintf(stderr, "distil: warning: rank %d: no watchdog thread (%s); a stalled collective will hang\n",
                 world.d.rank, strerror(errno));
}

static void watchdog_stop(void) {
    if (!world.thread_running) return;
    pthread_mutex_lock(&world.mu);
    world.stop = 1;
    pthread_cond_signal(&world.cv);
    pthread_mutex_unlock(&world.mu);
    pthread_join(world.thread, NULL);
    world.thread_running = 0;
}

// ---- the arrival board -------------------------------------------------------

static void board_start(void) {
    int R = world.d.world;
    world.board = calloc((size_t)R, sizeof *world.board);
    world.heard = calloc((size_t)R, sizeof *world.heard);
    for (int i = 0; i < DIST_NOTE_SLOTS; i++) world.note_out_req[i] = MPI_REQUEST_NULL;
    if (world.d.rank != 0) return;
    world.note_in = calloc((size_t)R, sizeof *world.note_in);
    world.note_in_req = malloc((size_t)R * sizeof *world.note_in_req);
    world.note_in_req[0] = MPI_REQUEST_NULL;
    for (int r = 1; r < R; r++)
        MPI_Irecv(&world.note_in[r], 1, MPI_LONG, r, DIST_TAG_ARRIVAL, world.board_comm, &world.note_in_req[r]);
}

// Rank 0: take in every note that has arrived (several may be queued per peer).
static void board_poll(void) {
    if (world.d.rank != 0 || world.d.world < 2) return;
    for (;;) {
        int count = 0, idx[64];
        int R = world.d.world;
        if (R - 1 > 64) {   // many ranks: one at a time, any of them
            int flag = 0, i;
            MPI_Testany(R, world.note_in_req, &i, &flag, MPI_STATUS_IGNORE);
            if (!flag || i == MPI_UNDEFINED) return;
            idx[0] = i;
            count = 1;
        } else {
            MPI_Testsome(R, world.note_in_req, &count, idx, MPI_STATUSES_IGNORE);
            if (count == MPI_UNDEFINED || count == 0) return;
        }
        double now = now_s();
        pthread_mutex_lock(&world.mu);
        for (int k = 0; k < count; k++) {
            world.board[idx[k]] = world.note_in[idx[k]];
            world.heard[idx[k]] = now;
        }
        pthread_mutex_unlock(&world.mu);
        for (int k = 0; k < count; k++)
            MPI_Irecv(&world.note_in[idx[k]], 1, MPI_LONG, idx[k], DIST_TAG_ARRIVAL, world.board_comm, &world.note_in_req[idx[k]]);
    }
}

// Others: tell rank 0 this rank began wait `seq`, in a free slot if any.
static void board_note(long seq) {
    for (int i = 0; i < DIST_NOTE_SLOTS; i++) {
        int done = 0;
        MPI_Test(&world.note_out_req[i], &done, MPI_STATUS_IGNORE);
        if (!done) continue;
        world.note_out[i] = seq;
        MPI_Isend(&world.note_out[i], 1, MPI_LONG, 0, DIST_TAG_ARRIVAL, world.board_comm, &world.note_out_req[i]);
        return;
    }
}

// At a clean exit: notes sent are delivered (rank 0 is alive: every rank
// reached the end), receives still posted are cancelled.
static void board_stop(void) {
    if (world.d.rank != 0) {
        MPI_Waitall(DIST_NOTE_SLOTS, world.note_out_req, MPI_STATUSES_IGNORE);
    } else {
        for (int r = 1; r < world.d.world; r++) {
            MPI_Cancel(&world.note_in_req[r]);
            MPI_Wait(&world.note_in_req[r], MPI_STATUS_IGNORE);
        }
    }
    free(world.board); free(world.heard); free(world.note_in); free(world.note_in_req);
    world.board = world.note_in = NULL;
    world.heard = NULL;
    world.note_in_req = NULL;
}

// ---- the world ---------------------------------------------------------------

// on_exit (glibc) rather than atexit: the exit status decides between a
// clean MPI_Finalize and MPI_Abort, which ends the ranks that are still
// waiting for this one.
static void world_exit(int status, void *arg) {
    (void)arg;
    watchdog_stop();
    held_exit(status, NULL);   // before the abort ends this process
    if (status != 0 && !world.exit_agreed) MPI_Abort(MPI_COMM_WORLD, status);
    // Every rank finished: one barrier, so that the notes above are not
    // cancelled while a peer is still sending its last ones.
    MPI_Barrier(world.comm);
    board_stop();
    MPI_Comm_free(&world.board_comm);
    MPI_Comm_free(&world.comm);
    MPI_Finalize();
}

static void world_init(void) {
    world.ready = 1;
    world.comm = world.board_comm = MPI_COMM_NULL;
    if (!launched_by_env()) return;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &world.thread_level);
    Dist *d = &world.d;
    d->launched = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_size(node, &d->local_world);
    MPI_Comm_free(&node);
    MPI_Comm_dup(MPI_COMM_WORLD, &world.comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &world.board_comm);
#ifdef DISTIL_CUDA
    // Bound before anything creates a CUDA context, which would land on device 0.
    int devices = backend_cuda_device_count();
    if (devices > 0) {
        d->gpu = d->local_rank % devices;
        nccl_bind_device(d->gpu);
    }
#endif
    board_start();
    watchdog_start();
    on_exit(world_exit, NULL);
}

const Dist *dist_world(void) {
    if (!world.ready) world_init();
    return &world.d;
}

void dist_exit_together(void) { world.exit_agreed = 1; }

void dist_set_timeout(double seconds) {
    pthread_mutex_lock(&world.mu);
    world.timeout_s = seconds;
    pthread_mutex_unlock(&world.mu);
}

int dist_mpi_serialized(void) {
    return dist_world()->launched && world.thread_level >= MPI_THREAD_SERIALIZED;
}

MPI_Comm dist_comm(void) {
    dist_world();
    return world.comm;
}

void dist_wait_begin(const char *what) {
    if (!dist_world()->launched) return;
    pthread_mutex_lock(&world.mu);
    long seq = ++world.seq;
    world.board[world.d.rank] = seq;
    world.waiting = 1;
    world.since = now_s();
    snprintf(world.what, sizeof world.what, "%s", what);
    pthread_mutex_unlock(&world.mu);
    world.last_note = world.since;
    if (world.d.rank != 0) board_note(seq);
}

void dist_wait_poll(void) {
    if (!world.d.launched) return;
    board_poll();
    if (world.d.rank == 0 || now_s() - world.last_note < DIST_HEARTBEAT_S) return;
    board_note(world.seq);
    world.last_note = now_s();
}

void dist_wait_end(void) {
    if (!world.d.launched) return;
    pthread_mutex_lock(&world.mu);
    world.waiting = 0;
    pthread_mutex_unlock(&world.mu);
}

int dist_waitall(int n, MPI_Request *reqs, const char *what) {
    dist_wait_begin(what);
    // Poll and yield: each MPI_Testall moves the transfers along (large
    // messages go in fragments that need the receiver's progress calls),
    // and sched_yield hands the core to any rank still computing on it.
    // After DIST_SPIN_S of that the wait is a long one (a peer evaluating, a
    // stall): nap between polls instead of burning a core.
    for (long polls = 0;; polls++) {
        int done = 0;
        MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (done) break;
        if ((polls & 15) == 0) dist_wait_poll();
        if (now_s() - world.since < DIST_SPIN_S) { sched_yield(); continue; }
        struct timespec nap = { 0, 100 * 1000 };
        nanosleep(&nap, NULL);
    }
    dist_wait_poll();
    dist_wait_end();
    return 0;
}

int dist_allreduce_sum(double *x, int n, const char *what) {
    if (!dist_world()->launched) return 0;
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, world.comm, &req);
    return dist_waitall(1, &req, what);
}

int dist_allgather_u64(uint64_t mine, uint64_t *all, const char *what) {
    if (!dist_world()->launched) { all[0] = mine; return 0; }
    MPI_Request req;
    MPI_Iallgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, world.comm, &req);
    return dist_waitall(1, &req, what);
}

int dist_bcast(void *buf, size_t bytes, int root, const char *what) {
    if (!dist_world()->launched) return 0;
    // MPI counts are ints: broadcast in pieces of at most 1 GiB.
    for (size_t at = 0; at < bytes;) {
        int piece = bytes - at > (1u << 30) ? (1 << 30) : (int)(bytes - at);
        MPI_Request req;
        MPI_Ibcast((char *)buf + at, piece, MPI_BYTE, root, world.comm, &req);
        dist_waitall(1, &req, what);
        at += (size_t)piece;
    }
    return 0;
}

int dist_barrier(const char *what) {
    if (!dist_world()->launched) return 0;
    MPI_Request req;
    MPI_Ibarrier(world.comm, &req);
    return dist_waitall(1, &req, what);
}

uint64_t dist_fnv1a(const void *data, size_t bytes, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void dist_shard_range(size_t n, int rank, int world_size, size_t *lo, size_t *hi) {
    *lo = rank == 0 ? 0 : (n * (size_t)rank / (size_t)world_size) & ~(size_t)15;
    *hi = rank == world_size - 1 ? n : (n * (size_t)(rank + 1) / (size_t)world_size) & ~(size_t)15;
}
