// fsutil.h: the filesystem steps that crash-safe writes are made of.
#pragma once
#include <stddef.h>

// mkdir -p: create path and its missing parents. 0, or -1 with errno set.
int fs_mkdir_p(const char *path);
// fsync a file, or a directory (directory = 1) so the entries renamed into
// it are on disk. A filesystem that cannot sync directories counts as done.
int fs_fsync(const char *path, int directory);
// fsync the directory that holds path (after renaming path into place).
int fs_fsync_parent(const char *path);
// Take an exclusive advisory lock (flock) on the file at path, creating it,
// and write "pid P on host H" into it. The lock lasts as long as the
// returned descriptor stays open (the process's life: the kernel drops it
// when the process dies, however it dies). Returns the descriptor; -1 with
// errno set, EWOULDBLOCK when another process holds it, its text then in
// holder (e.g. "pid 4711 on host node7").
int fs_lock(const char *path, char *holder, size_t holder_len);
