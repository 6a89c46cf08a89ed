// profile.c: the per-op time table of DISTIL_PROFILE=1 (see profile.h).
#include "autograd/profile.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "autograd/ops.h"        // defines: OP_COUNT, op_name
#include "kernels/backend.h"     // defines: backend_sync

static double seconds[OP_COUNT][PROF_N_PHASES];
static long calls[OP_COUNT][PROF_N_PHASES];

static void report(void) {
    double total = 0, row[OP_COUNT];
    int order[OP_COUNT], n = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        row[op] = 0;
        for (int p = 0; p < PROF_N_PHASES; p++) row[op] += seconds[op][p];
        total += row[op];
        if (row[op] > 0) order[n++] = op;
    }
    for (int i = 1; i < n; i++)   // largest first (insertion sort: a few dozen ops)
        for (int j = i; j > 0 && row[order[j]] > row[order[j - 1]]; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    fprintf(stderr, "distil profile: %.3f s in ops\n%-16s %10s %10s %10s %7s %9s\n", total, "op", "forward s",
            "backward s", "recompute s", "share", "calls");
    for (int i = 0; i < n; i++) {
        int op = order[i];
        fprintf(stderr, "%-16s %10.3f %10.3f %11.3f %6.1f%% %9ld\n", op_name(op), seconds[op][PROF_FORWARD],
                seconds[op][PROF_BACKWARD], seconds[op][PROF_RECOMPUTE], total > 0 ? 100 * row[op] / total : 0,
                calls[op][PROF_FORWARD] + calls[op][PROF_BACKWARD] + calls[op][PROF_RECOMPUTE]);
    }
}

int prof_enabled(void) {
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("DISTIL_PROFILE");
        on = v && v[0] && strcmp(v, "0") != 0;
        if (on) atexit(report);
    }
    return on;
}

double prof_now(Device d) {
    backend_sync(d);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void prof_add(int op, int phase, double s) {
    seconds[op][phase] += s;
    calls[op][phase]++;
}
