// progress.c: live progress on a terminal, plain lines in a pipe (see progress.h).
#include "train/core/progress.h"
#include <stdio.h>
#include <time.h>
#include <unistd.h>

double progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void progress_duration(double seconds, char *buf, size_t n) {
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600) snprintf(buf, n, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60) snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, n, "%lds", s);
}

void progress_start(Progress *p, const char *what, long total) {
    p->what = what;
    p->total = total;
    p->quarters = 0;
    p->t0 = progress_now();
    p->tty = isatty(STDERR_FILENO);
    p->live = 0;
}

void progress_line(Progress *p, const char *line) {
    if (p->tty) {
        // \r back to the start, \033[K clears what a longer line left.
        fprintf(stderr, "\r%s\033[K", line);
        fflush(stderr);
        p->live = 1;
    } else {
        printf("%s\n", line);
        fflush(stdout);
    }
}

void progress_update(Progress *p, long done, const char *unit) {
    if (!p->tty) {
        int quarter = p->total > 0 ? (int)(4 * done / p->total) : 0;
        if (quarter <= p->quarters) return;
        p->quarters = quarter;
    }
    char line[256], eta[32];
    double spent = progress_now() - p->t0;
    progress_duration(done > 0 && p->total > done ? spent / done * (p->total - done) : 0, eta, sizeof eta);
    snprintf(line, sizeof line, "%s: %ld/%ld %s (%.0f%%), ETA %s", p->what, done, p->total, unit,
             p->total > 0 ? 100.0 * done / p->total : 0.0, eta);
    progress_line(p, line);
}

void progress_break(Progress *p) {
    if (!p->live) return;
    fputc('\n', stderr);
    fflush(stderr);
    p->live = 0;
}
