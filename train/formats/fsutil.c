// fsutil.c: see fsutil.h.
#include "train/formats/fsutil.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) { errno = ENAMETOOLONG; return -1; }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST) return -1;
        *p = '/';
    }
    return (mkdir(buf, 0777) && errno != EEXIST) ? -1 : 0;
}

int fs_fsync(const char *path, int directory) {
    int fd = open(path, O_RDONLY | (directory ? O_DIRECTORY : 0));
    if (fd < 0) return -1;
    int rc = fsync(fd);
    if (rc && errno == EINVAL) rc = 0;   // a filesystem that cannot sync directories has nothing to sync
    close(fd);
    return rc;
}

int fs_fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return -1;
    int rc = fs_fsync(dir, 1);
    free(dir);
    return rc;
}

int fs_lock(const char *path, char *holder, size_t holder_len) {
    holder[0] = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int why = errno;
        ssize_t n = pread(fd, holder, holder_len - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        close(fd);
        errno = why;
        return -1;
    }
    char host[256] = "unknown", text[400];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    int n = snprintf(text, sizeof text, "pid %ld on host %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) || pwrite(fd, text, (size_t)n, 0) != n) {
        int why = errno;
        close(fd);
        errno = why;
        return -1;
    }
    return fd;
}
