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
// open the shard itself; the same calls on the same bytes then succeed.
#pragma once
#include <stddef.h>

// The work done behind the wall: returns 0, or -1 with one error line in err.
typedef int (*DlWallFn)(void *arg, char *err, size_t errlen);

// Run fn(arg) in a child process under the limits above. Returns 0 when it
// returned 0; -1 with err set to its own error line, or to a line naming
// `path`, what the child was reading (dl_wall_at) and how it ended. stdout
// is flushed first, so a child may print (`distil logs inspect` does).
int dl_wall_run(const char *path, DlWallFn fn, void *arg, char *err, size_t errlen);

// Inside a child: the part of the file being read now ("/vocab"), for the
// message should it end there. Outside one it does nothing.
void dl_wall_at(const char *where);

// The CPU seconds a child may spend: DISTIL_SHARD_CHECK_CPU_S, or 10.
double dl_wall_cpu_limit(void);
