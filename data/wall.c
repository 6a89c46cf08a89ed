// wall.c: the child process that reads a shard's HDF5 metadata first, and
// what it checks beyond dl_shard_open's rules (see wall.h).
//
// The child reports over a pipe in records of a kind byte, a u32 length and
// that many bytes: 'A' where each time it moves on to another part of the
// file, 'V' key NUL value for each value it hands over, 'P' line for each
// problem it goes on past (dl_shard_check), then 'K' (clean) or 'E' error
// line (a rule broken, said as dl_shard_open says it). A child that ends
// without either crashed, looped or ran out of memory; the last 'A' says
// where.
//
// It is forked while this thread holds the process's HDF5 lock, so no other
// thread is inside libhdf5 (or holds its state half-changed) at the fork;
// the child, whose one thread has another id than the one that locked it,
// starts with a fresh lock. The loaders' workers are paused first
// (dl_wall_quiet_add), so that none holds an allocator's lock at the fork.
#include "data/wall.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "data/chunkread.h"     // defines: dl_hdf5_error_text
#include "data/drivelog.h"      // defines: DlShard, dl_shard_open_here, dl_hdf5_lock

#define WALL_DEFAULT_CPU_S 10.0
#define WALL_MEM_BYTES (2ull << 30)      // address space the child may add to what the process had
#define WALL_MIN_WALL_S 120.0
// A stored chunk is never much larger than its data: zstd and deflate add a
// few bytes per block to data they cannot compress.
#define CHUNK_SLACK(bytes) ((bytes) / 16 + 4096)
// Fixed-length text strings longer than this are a damaged type, not a trace.
#define MAX_TEXT_BYTES (1u << 20)

static int child_fd = -1;   // the child's end of the pipe; -1 in any other process

// The threads paused around a fork (dl_wall_quiet_add).
typedef struct Quiet {
    void (*pause)(void *ctx);
    void (*resume)(void *ctx);
    void *ctx;
} Quiet;

static struct {
    pthread_mutex_t mu;         // held from the pause to the resume: no add or remove between
    Quiet *v;
    int n, cap;
} quiet = { .mu = PTHREAD_MUTEX_INITIALIZER };

int dl_wall_quiet_add(void (*pause)(void *ctx), void (*resume)(void *ctx), void *ctx) {
    pthread_mutex_lock(&quiet.mu);
    int rc = 0;
    if (quiet.n == quiet.cap) {
        int cap = quiet.cap ? 2 * quiet.cap : 4;
        Quiet *more = realloc(quiet.v, sizeof *more * (size_t)cap);
        if (more) { quiet.v = more; quiet.cap = cap; }
        else rc = -1;
    }
    if (rc == 0) quiet.v[quiet.n++] = (Quiet){ pause, resume, ctx };
    pthread_mutex_unlock(&quiet.mu);
    return rc;
}

void dl_wall_quiet_remove(void *ctx) {
    pthread_mutex_lock(&quiet.mu);
    for (int i = 0; i < quiet.n; i++)
        if (quiet.v[i].ctx == ctx) {
            quiet.v[i] = quiet.v[--quiet.n];
            break;
        }
    pthread_mutex_unlock(&quiet.mu);
}

// Present in a sanitized build (make test SAN=1, make fuzz), NULL otherwise.
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));
extern void __sanitizer_set_report_fd(void *fd) __attribute__((weak));

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void write_all(const void *bytes, size_t n) {
    const char *p = bytes;
    for (size_t at = 0; at < n;) {
        ssize_t w = write(child_fd, p + at, n - at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        at += (size_t)w;
    }
}

// One record: kind, length, then a and b one after the other.
static void put_record(char kind, const void *a, size_t na, const void *b, size_t nb) {
    if (child_fd < 0) return;
    uint32_t n = (uint32_t)(na + nb);
    uint8_t head[5] = { (uint8_t)kind, (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24) };
    write_all(head, sizeof head);
    write_all(a, na);
    write_all(b, nb);
}

void dl_wall_at(const char *where) { put_record('A', where, strlen(where), NULL, 0); }

void dl_wall_put(const char *key, const void *value, size_t len) {
    if (len > (1u << 30)) return;   // nothing a shard holds; the parent then misses it and says so
    put_record('V', key, strlen(key) + 1, value, len);
}

void dl_wall_problem(const char *line) { put_record('P', line, strlen(line), NULL, 0); }

int dl_wall_in_child(void) { return child_fd >= 0; }

double dl_wall_cpu_limit(void) {
    static double limit = 0;
    if (limit > 0) return limit;
    limit = WALL_DEFAULT_CPU_S;
    const char *s = getenv("DISTIL_SHARD_CHECK_CPU_S");
    if (s && *s) {
        char *end;
        double v = strtod(s, &end);
        if (*end || !(v >= 1 && v <= 86400))
            fprintf(stderr, "distil: warning: DISTIL_SHARD_CHECK_CPU_S='%s' is not a number of seconds in 1..86400; "
                    "using %g\n", s, WALL_DEFAULT_CPU_S);
        else limit = v;
    }
    return limit;
}

// The process's address space now, in bytes (0 when unknown).
static uint64_t address_space_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu", &pages) != 1) pages = 0;
    fclose(f);
    return pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void limit(int resource, rlim_t value) {
    struct rlimit now;
    if (getrlimit(resource, &now)) return;
    if (now.rlim_max != RLIM_INFINITY && value > now.rlim_max) value = now.rlim_max;
    struct rlimit want = { value, now.rlim_max };
    if (resource == RLIMIT_CPU && (now.rlim_max == RLIM_INFINITY || now.rlim_max > value + 2)) want.rlim_max = value + 2;
    setrlimit(resource, &want);
}

static _Noreturn void child_main(int fd, DlWallFn fn, void *arg) {
    child_fd = fd;
    dl_hdf5_lock_after_fork();
    prctl(PR_SET_PDEATHSIG, SIGKILL);   // the process that waits for it is gone: so is the child
    // A Ctrl-C or a scheduler's signal is for the process that forked: the
    // child finishes its few milliseconds rather than die looking damaged.
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGPIPE, SIG_DFL);
    // A crash ends the child by its signal, which the parent reports: no
    // handler inherited from a sanitized or fuzzing build writes a report
    // or a crash file for the parent's input.
    static const int fatal[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) signal(fatal[i], SIG_DFL);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(NULL);
    // What a crash prints (a sanitizer's report, glibc's abort message) is
    // the parent's line to tell, once.
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDERR_FILENO);
    // A sanitizer may report to a file of its own (libFuzzer's -close_fd_mask sets one).
    if (devnull >= 0 && __sanitizer_set_report_fd) __sanitizer_set_report_fd((void *)(intptr_t)devnull);
    limit(RLIMIT_CORE, 0);
    limit(RLIMIT_CPU, (rlim_t)ceil(dl_wall_cpu_limit()));
    uint64_t vm = address_space_bytes();
    if (vm) limit(RLIMIT_AS, (rlim_t)(vm + WALL_MEM_BYTES));
    char err[DL_ERR_LEN] = "";
    int rc = fn(arg, err, sizeof err);
    fflush(stdout);
    const char *line = rc && !err[0] ? "unreadable" : err;
    put_record(rc ? 'E' : 'K', line, rc ? strlen(line) : 0, NULL, 0);
    _exit(0);
}

// What the parent heard from the child.
typedef struct Heard {
    uint8_t *buf;               // bytes not yet parsed into records
    size_t len, cap;
    char where[160];
    char error[DL_ERR_LEN];
    int ok, failed, broken;     // broken: a record the parent could not keep
    DlWallValues *values;       // may be NULL
    DlWallListener problem;     // may be NULL
    void *problem_ctx;
    int n_problems;
    char last_problem[DL_ERR_LEN];
} Heard;

static int keep_value(DlWallValues *v, const uint8_t *p, size_t n) {
    const uint8_t *nul = memchr(p, 0, n);
    if (!nul) return -1;
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 8;
        char **k = realloc(v->keys, sizeof *k * (size_t)cap), **x = k ? realloc(v->values, sizeof *x * (size_t)cap) : NULL;
        size_t *l = x ? realloc(v->lens, sizeof *l * (size_t)cap) : NULL;
        if (k) v->keys = k;
        if (x) v->values = x;
        if (l) v->lens = l;
        if (!l) return -1;
        v->cap = cap;
    }
    size_t klen = (size_t)(nul - p), vlen = n - klen - 1;
    char *key = malloc(klen + 1), *value = malloc(vlen + 1);
    if (!key || !value) { free(key); free(value); return -1; }
    memcpy(key, p, klen + 1);
    memcpy(value, nul + 1, vlen);
    value[vlen] = 0;
    v->keys[v->n] = key;
    v->values[v->n] = value;
    v->lens[v->n++] = vlen;
    return 0;
}

static void take_record(Heard *h, char kind, const uint8_t *p, size_t n) {
    if (kind == 'A') snprintf(h->where, sizeof h->where, "%.*s", (int)n, (const char *)p);
    else if (kind == 'K') h->ok = 1;
    else if (kind == 'E') { h->failed = 1; snprintf(h->error, sizeof h->error, "%.*s", (int)n, (const char *)p); }
    else if (kind == 'V' && h->values && keep_value(h->values, p, n)) h->broken = 1;
    else if (kind == 'P' && h->problem) {
        snprintf(h->last_problem, sizeof h->last_problem, "%.*s", (int)n, (const char *)p);
        h->n_problems++;
        h->problem(h->last_problem, h->problem_ctx);
    }
}

static void take_bytes(Heard *h, const char *bytes, size_t n) {
    if (h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : 1 << 16;
        while (cap < h->len + n) cap *= 2;
        uint8_t *more = realloc(h->buf, cap);
        if (!more) { h->broken = 1; return; }
        h->buf = more;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, bytes, n);
    h->len += n;
    size_t at = 0;
    while (h->len - at >= 5) {
        const uint8_t *r = h->buf + at;
        size_t size = (size_t)r[1] | (size_t)r[2] << 8 | (size_t)r[3] << 16 | (size_t)r[4] << 24;
        if (h->len - at - 5 < size) break;
        take_record(h, (char)r[0], r + 5, size);
        at += 5 + size;
    }
    memmove(h->buf, h->buf + at, h->len - at);
    h->len -= at;
}

// Read the child's records until it closes the pipe or the deadline passes.
// Returns 1 when the deadline passed.
static int listen(int fd, Heard *h, double deadline) {
    char buf[1 << 16];
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) return 1;
        struct pollfd p = { fd, POLLIN, 0 };
        int rc = poll(&p, 1, (int)fmin(left * 1000 + 1, 1000));
        if (rc < 0 && errno != EINTR) return 0;
        if (rc <= 0) continue;
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        take_bytes(h, buf, (size_t)n);
    }
}

void dl_wall_free(DlWallValues *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) { free(v->keys[i]); free(v->values[i]); }
    free(v->keys);
    free(v->values);
    free(v->lens);
    memset(v, 0, sizeof *v);
}

const char *dl_wall_value(const DlWallValues *v, const char *key, size_t *len) {
    for (int i = 0; v && i < v->n; i++)
        if (!strcmp(v->keys[i], key)) {
            if (len) *len = v->lens[i];
            return v->values[i];
        }
    return NULL;
}

static void describe_end(const char *path, const Heard *h, int status, int timed_out, double wall_s,
                         char *err, size_t errlen) {
    const char *what = h->where[0] ? h->where : "its metadata";
    const char *fix = "the file is damaged: copy or export it again";
    if (timed_out) {
        snprintf(err, errlen, "%s: libhdf5 still reading %s after %.0f s; %s", path, what, wall_s, fix);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) {
        snprintf(err, errlen, "%s: libhdf5 still reading %s after %.0f s of CPU time (it loops on some damaged files); %s "
                 "(or raise DISTIL_SHARD_CHECK_CPU_S for a shard this large)", path, what, dl_wall_cpu_limit(), fix);
    } else if (WIFSIGNALED(status)) {
        const char *name = sigabbrev_np(WTERMSIG(status));
        snprintf(err, errlen, "%s: libhdf5 crashed reading %s (SIG%s); %s", path, what, name ? name : "?", fix);
    } else {
        snprintf(err, errlen, "%s: reading %s ended the checking process (exit status %d: out of memory, or an abort); %s",
                 path, what, WIFEXITED(status) ? WEXITSTATUS(status) : -1, fix);
    }
}

int dl_wall_run(const char *path, DlWallFn fn, void *arg, DlWallValues *values, char *err, size_t errlen) {
    return dl_wall_run_listening(path, fn, arg, values, NULL, NULL, err, errlen);
}

int dl_wall_run_listening(const char *path, DlWallFn fn, void *arg, DlWallValues *values, DlWallListener problem,
                          void *ctx, char *err, size_t errlen) {
    if (values) memset(values, 0, sizeof *values);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC)) { snprintf(err, errlen, "%s: cannot check the file: pipe: %s", path, strerror(errno)); return -1; }
    double wall_s = fmax(WALL_MIN_WALL_S, 12 * dl_wall_cpu_limit());
    fflush(stdout);
    fflush(stderr);
    pthread_mutex_lock(&quiet.mu);
    for (int i = 0; i < quiet.n; i++) quiet.v[i].pause(quiet.v[i].ctx);
    dl_hdf5_lock();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child_main(fds[1], fn, arg);
    }
    int fork_errno = errno;
    dl_hdf5_unlock();
    for (int i = 0; i < quiet.n; i++) quiet.v[i].resume(quiet.v[i].ctx);
    pthread_mutex_unlock(&quiet.mu);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        snprintf(err, errlen, "%s: cannot check the file: fork: %s", path, strerror(fork_errno));
        return -1;
    }
    Heard h = { .values = values, .problem = problem, .problem_ctx = ctx };
    int timed_out = listen(fds[0], &h, now_s() + wall_s);
    if (timed_out) kill(pid, SIGKILL);
    close(fds[0]);
    free(h.buf);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    int rc = -1;
    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0 && (h.ok || h.failed)) {
        if (h.failed) snprintf(err, errlen, "%s", h.error);
        else if (h.broken) snprintf(err, errlen, "%s: out of memory taking in what the check read", path);
        else rc = 0;
    } else {
        describe_end(path, &h, status, timed_out, wall_s, err, errlen);
    }
    // The line that ended it, unless the listener has just had it.
    if (rc && problem && !(h.failed && h.n_problems && !strcmp(err, h.last_problem))) problem(err, ctx);
    if (rc) dl_wall_free(values);
    return rc;
}

// ---- what the child checks beyond dl_shard_open ------------------------------

// Every chunk of a chunked dataset, looked up in the chunk index as the
// readers will (H5Dget_chunk_storage_size), with its stored size bounded.
static int check_chunk_index(const DlShard *sh, const DlDataset *d, char *err, size_t errlen) {
    if (d->rank < 1 || d->dims[0] == 0) return 0;
    for (int i = 0; i < d->rank; i++)
        if (d->chunk[i] == 0) { snprintf(err, errlen, "%s: %s: a chunk dimension is 0; the file is damaged", sh->path, d->path); return -1; }
    hsize_t offset[DL_MAX_RANK] = { 0 };
    uint64_t most = (uint64_t)d->chunk_bytes + CHUNK_SLACK((uint64_t)d->chunk_bytes);
    for (;;) {
        hsize_t stored = 0;
        if (H5Dget_chunk_storage_size(d->id, offset, &stored) >= 0 && stored > most) {
            snprintf(err, errlen, "%s: %s: the chunk at row %llu claims %llu stored bytes for %zu bytes of data; the file is "
                     "damaged: copy or export it again", sh->path, d->path, (unsigned long long)offset[0],
                     (unsigned long long)stored, d->chunk_bytes);
            return -1;
        }
        int i = d->rank - 1;   // odometer over the chunk grid
        while (i >= 0 && (offset[i] += d->chunk[i]) >= d->dims[i]) { offset[i] = 0; i--; }
        if (i < 0) return 0;
    }
}

// A contiguous dataset's data lies inside the file.
static int check_contiguous(const DlShard *sh, const DlDataset *d, hsize_t file_bytes, char *err, size_t errlen) {
    haddr_t at = H5Dget_offset(d->id);
    hsize_t bytes = H5Dget_storage_size(d->id);
    if (at == HADDR_UNDEF || bytes == 0) return 0;   // never written: the fill value
    if (at > file_bytes || bytes > file_bytes - at) {
        snprintf(err, errlen, "%s: %s: its %llu bytes at offset %llu lie past the end of the %llu-byte file; the file is "
                 "truncated or damaged", sh->path, d->path, (unsigned long long)bytes, (unsigned long long)at,
                 (unsigned long long)file_bytes);
        return -1;
    }
    return 0;
}

// Every string of /teacher/trace/text (variable-length ones live in the
// global heap, reached through the file's own pointers), read in blocks.
static int check_text(const DlShard *sh, const DlDataset *d, char *err, size_t errlen) {
    hid_t ftype = H5Dget_type(d->id);
    int variable = H5Tis_variable_str(ftype) > 0;
    size_t fixed = H5Tget_size(ftype);
    H5T_cset_t cset = H5Tget_cset(ftype);
    H5Tclose(ftype);
    if (!variable) {
        if (fixed <= MAX_TEXT_BYTES) return 0;
        snprintf(err, errlen, "%s: %s: strings of %zu bytes each; the type is damaged", sh->path, d->path, fixed);
        return -1;
    }
    enum { BLOCK = 1024 };
    char *values[BLOCK];
    hid_t mtype = H5Tcopy(H5T_C_S1), space = H5Dget_space(d->id);
    H5Tset_size(mtype, H5T_VARIABLE);
    H5Tset_cset(mtype, cset);   // ASCII or UTF-8, as stored: HDF5 converts between neither
    int rc = 0;
    for (hsize_t start = 0; start < d->dims[0] && !rc; start += BLOCK) {
        hsize_t count = d->dims[0] - start < BLOCK ? d->dims[0] - start : BLOCK;
        hid_t mspace = H5Screate_simple(1, &count, NULL);
        memset(values, 0, sizeof values);
        if (H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dread(d->id, mtype, mspace, space, H5P_DEFAULT, values) < 0) {
            char why[160];
            dl_hdf5_error_text(why, sizeof why);
            snprintf(err, errlen, "%s: %s: unreadable at samples %llu..%llu (HDF5: %s); the file is damaged: copy or export "
                     "it again", sh->path, d->path, (unsigned long long)start, (unsigned long long)(start + count - 1), why);
            rc = -1;
        }
        for (hsize_t i = 0; i < count; i++)
            if (values[i]) H5free_memory(values[i]);
        H5Sclose(mspace);
    }
    H5Sclose(space);
    H5Tclose(mtype);
    return rc;
}

int dl_shard_check_deep(const DlShard *sh, char *err, size_t errlen) {
    dl_hdf5_lock();
    hsize_t file_bytes = 0;
    int rc = H5Fget_filesize(sh->file, &file_bytes) < 0 ? -1 : 0;
    if (rc) snprintf(err, errlen, "%s: cannot tell its size; the file is damaged", sh->path);
    for (int s = 0; s < DL_N_SLOTS && !rc; s++) {
        const DlDataset *d = &sh->ds[s];
        if (d->id < 0) continue;
        dl_wall_at(d->path);
        if (d->chunked) rc = check_chunk_index(sh, d, err, errlen);
        else rc = check_contiguous(sh, d, file_bytes, err, errlen);
        if (!rc && s == DL_TEXT) rc = check_text(sh, d, err, errlen);
    }
    dl_hdf5_unlock();
    return rc;
}

typedef struct VetJob {
    const char *path;
    int listening;              // every structural problem to the parent (dl_shard_check)
} VetJob;

// In the child: a problem to the parent, and the last one kept (ctx) for the
// error line that ends the child.
static void problem_to_parent(const char *line, void *ctx) {
    snprintf(ctx, DL_ERR_LEN, "%s", line);
    dl_wall_problem(line);
}

static int vet_child(void *arg, char *err, size_t errlen) {
    const VetJob *job = arg;
    DlShard sh;
    int rc;
    if (job->listening) {
        char last[DL_ERR_LEN] = "";
        rc = dl_shard_check_here(&sh, job->path, problem_to_parent, last) ? -1 : 0;
        if (rc) snprintf(err, errlen, "%s", last[0] ? last : "unreadable");
    } else {
        rc = dl_shard_open_here(&sh, job->path, err, errlen);
    }
    if (!rc) rc = dl_shard_check_deep(&sh, err, errlen);
    dl_shard_close(&sh);
    return rc;
}

// The shards refused in this process, by file identity. libhdf5 on a
// damaged file need not fail the same way twice (whether a read past a heap
// block faults depends on what lies beyond it), so a shard refused once is
// refused again without another child: the loaders of one run then agree.
typedef struct Refusal {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    char line[DL_ERR_LEN];
} Refusal;

static struct {
    pthread_mutex_t mu;
    Refusal *v;
    int n;
} refused = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int same_file(const Refusal *r, const struct stat *st) {
    return r->dev == st->st_dev && r->ino == st->st_ino && r->size == st->st_size &&
           r->mtime.tv_sec == st->st_mtim.tv_sec && r->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

// The listener's first line, kept as the refusal's (what dl_shard_open,
// stopping at the first problem, would have said).
typedef struct Listening {
    DlWallListener problem;
    void *ctx;
    char first[DL_ERR_LEN];
} Listening;

static void pass_on(const char *line, void *ctx) {
    Listening *l = ctx;
    if (!l->first[0]) snprintf(l->first, sizeof l->first, "%s", line);
    l->problem(line, l->ctx);
}

int dl_shard_vet(const char *path, DlWallValues *values, DlWallListener problem, void *ctx, char *err, size_t errlen) {
    struct stat st;
    int known = stat(path, &st) == 0;
    pthread_mutex_lock(&refused.mu);
    for (int i = 0; known && i < refused.n; i++)
        if (same_file(&refused.v[i], &st)) {
            snprintf(err, errlen, "%s", refused.v[i].line);
            pthread_mutex_unlock(&refused.mu);
            if (values) memset(values, 0, sizeof *values);
            if (problem) problem(err, ctx);
            return -1;
        }
    pthread_mutex_unlock(&refused.mu);
    VetJob job = { path, problem != NULL };
    Listening l = { problem, ctx, "" };
    int rc = dl_wall_run_listening(path, vet_child, &job, values, problem ? pass_on : NULL, &l, err, errlen);
    if (rc == 0 || !known) return rc;
    pthread_mutex_lock(&refused.mu);
    Refusal *more = realloc(refused.v, sizeof *more * (size_t)(refused.n + 1));
    if (more) {
        refused.v = more;
        Refusal *r = &refused.v[refused.n++];
        *r = (Refusal){ st.st_dev, st.st_ino, st.st_size, st.st_mtim, "" };
        snprintf(r->line, sizeof r->line, "%s", l.first[0] ? l.first : err);
    }
    pthread_mutex_unlock(&refused.mu);
    return rc;
}
