// fsutil.h: the filesystem steps that crash-safe writes are made of.
#pragma once

// mkdir -p: create path and its missing parents. 0, or -1 with errno set.
int fs_mkdir_p(const char *path);
// fsync a file, or a directory (directory = 1) so the entries renamed into
// it are on disk. A filesystem that cannot sync directories counts as done.
int fs_fsync(const char *path, int directory);
// fsync the directory that holds path (after renaming path into place).
int fs_fsync_parent(const char *path);
