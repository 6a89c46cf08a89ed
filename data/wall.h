// wall.h: reading an untrusted file's HDF5 metadata in a child process, so
// that what libhdf5 does with a damaged file (crash, endless loop, runaway
// allocation) ends the child, not the job (docs/drive-log-format.md, "Damaged
// files").
//
// libhdf5 follows the file's own pointers (object headers, B-trees, the
// global heap behind variable-length strings) with few checks: one changed
// byte can crash it or make it loop. So before a process trusts a shard, a
// child forked from it opens the shard and walks everything the process will
// later touch through libhdf5 (dl_shard_vet): attributes, every dataset's
// header, layout and filters, the whole chunk index, the offsets, the
// vocabulary and the text strings. The child runs under limits: CPU time
// (DISTIL_SHARD_CHECK_CPU_S, default 10 s; a loop on a damaged file spins),
// wall time (12 times that, at least 120 s) and address space (2 GiB above
// what the process had). Its end becomes one line naming the file and the
// dataset it was reading. Only when it comes back clean does the process
// open the shard itself, with the strings the child read: libhdf5's memory
// errors are not always crashes (a heap overflow may pass in the child and
// corrupt the parent), so the process never reads a shard's variable-length
// strings itself; dl_read_text reads one behind a wall of its own.
#pragma once
#include <stddef.h>

// The work done behind the wall: returns 0, or -1 with one error line in err.
typedef int (*DlWallFn)(void *arg, char *err, size_t errlen);

// Values a child hands its parent (dl_wall_put), by key: the strings a shard
// keeps in its global heap, read in the child so that the parent's libhdf5
// never follows those pointers (every crash fuzzing found was there).
typedef struct DlWallValues {
    int n, cap;
    char **keys;
    char **values;       // each NUL-terminated after its len bytes
    size_t *lens;
} DlWallValues;

// Run fn(arg) in a child process under the limits above. Returns 0 when it
// returned 0; -1 with err set to its own error line, or to a line naming
// `path`, what the child was reading (dl_wall_at) and how it ended. stdout
// is flushed first, so a child may print (`distil logs inspect` does).
// values (may be NULL) gets what the child put; free it with dl_wall_free.
int dl_wall_run(const char *path, DlWallFn fn, void *arg, DlWallValues *values, char *err, size_t errlen);
// A listener for the problems a child finds and goes on past (dl_wall_problem).
typedef void (*DlWallListener)(const char *line, void *ctx);
// dl_wall_run, with every problem line the child hands over passed to
// problem(line, ctx) as it comes, and the line that ends it too (its own
// error line, unless it is the last problem again, or how it ended): every
// line `distil logs validate` prints for a shard, crash or not.
int dl_wall_run_listening(const char *path, DlWallFn fn, void *arg, DlWallValues *values, DlWallListener problem,
                          void *ctx, char *err, size_t errlen);
void dl_wall_free(DlWallValues *values);
// The value put under key (NULL when none); *len (may be NULL) its bytes.
const char *dl_wall_value(const DlWallValues *values, const char *key, size_t *len);

// Inside a child: the part of the file being read now ("/vocab"), for the
// message should it end there. Outside one it does nothing.
void dl_wall_at(const char *where);
// Inside a child: hand the parent len bytes under key. Outside one: nothing.
void dl_wall_put(const char *key, const void *value, size_t len);
// Inside a child: a problem found and gone past (dl_shard_check's listener),
// handed to the parent's listener at once. Outside one: nothing.
void dl_wall_problem(const char *line);
// Whether this process is a wall's child.
int dl_wall_in_child(void);

// Threads that may be allocating memory when a wall forks (the loaders'
// workers) are paused around the fork: a child forked while another thread
// holds an allocator lock would wait for it forever at its first malloc
// (glibc's malloc guards its locks across fork; AddressSanitizer's
// allocator, in GCC 12's runtime, does not). pause(ctx) returns once none of
// its threads is at work and none starts; resume(ctx) lets them go on. It is
// called before the HDF5 lock is taken, so a paused thread may hold none.
// dl_wall_quiet_add returns 0, or -1 out of memory; remove before ctx goes.
int dl_wall_quiet_add(void (*pause)(void *ctx), void (*resume)(void *ctx), void *ctx);
void dl_wall_quiet_remove(void *ctx);

// The CPU seconds a child may spend: DISTIL_SHARD_CHECK_CPU_S, or 10.
double dl_wall_cpu_limit(void);
