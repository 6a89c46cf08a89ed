// stats.c: `distil logs stats GLOB...`: counts, trace lengths, trajectory
// ranges and a histogram of the speed at t0 over a set of shards.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/logs/cmds.h"     // defines: logs_option_value
#include "data/drivelog.h"      // defines: dl_set_open_on_bad, dl_read_sample

#define SPEED_BINS 12

typedef struct Range { double lo, hi; } Range;

static void widen(Range *r, double v) {
    if (v < r->lo) r->lo = v;
    if (v > r->hi) r->hi = v;
}

typedef struct Stats {
    int64_t samples, bad, with_future;
    int64_t *trace_len;          // (samples)
    int64_t commands[5];         // 0..3, then "none"
    Range traj[3], future[3];    // x, y, yaw
    Range speed;
    float *speeds;               // (samples) speed at t0, m/s
} Stats;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void print_histogram(const Stats *s) {
    double start = floor(s->speed.lo < 0 ? s->speed.lo : 0), top = s->speed.hi > start ? s->speed.hi : start + 1;
    double width = ceil((top - start) / SPEED_BINS * 2) / 2;   // half-metre-per-second steps
    if (width <= 0) width = 0.5;
    int64_t bins[SPEED_BINS] = { 0 }, most = 1;
    for (int64_t i = 0; i < s->samples; i++) {
        int b = (int)((s->speeds[i] - start) / width);
        if (b < 0) b = 0;
        if (b >= SPEED_BINS) b = SPEED_BINS - 1;
        bins[b]++;
    }
    for (int b = 0; b < SPEED_BINS; b++) if (bins[b] > most) most = bins[b];
    printf("speed at t0 (m/s):\n");
    for (int b = 0; b < SPEED_BINS; b++) {
        char bar[41];
        int len = (int)(40 * bins[b] / most);
        memset(bar, '#', (size_t)len);
        bar[len] = 0;
        printf("  %5.1f - %5.1f  %-40s %lld\n", start + b * width, start + (b + 1) * width, bar, (long long)bins[b]);
    }
}

static void report(const DlSet *set, Stats *s, int on_bad) {
    const DlShard *s0 = &set->shards[0];
    int64_t tokens = 0;
    for (int i = 0; i < set->n_shards; i++) tokens += set->shards[i].M;
    if (set->n_unusable) printf("unusable shards skipped %d (see distil logs validate)\n", set->n_unusable);
    printf("shards %d, samples %lld, trace tokens %lld, vocab %lld\n", set->n_shards, (long long)set->n_samples,
           (long long)tokens, (long long)s0->V);
    printf("cameras %s: %d frames of %dx%d; history %d steps, future %d steps at %g Hz; K %d, k %d\n", s0->cameras,
           s0->frames[0], s0->height[0], s0->width[0], s0->Th, s0->T, s0->hz, s0->K, s0->k);
    if (s->bad) printf("bad samples skipped %lld (see distil logs validate)\n", (long long)s->bad);
    (void)on_bad;
    if (s->samples == 0) { printf("no good samples\n"); return; }
    qsort(s->trace_len, (size_t)s->samples, sizeof(int64_t), cmp_i64);
    double mean = 0;
    for (int64_t i = 0; i < s->samples; i++) mean += (double)s->trace_len[i];
    mean /= (double)s->samples;
    printf("trace length: min %lld, mean %.1f, median %lld, p95 %lld, max %lld tokens\n", (long long)s->trace_len[0], mean,
           (long long)s->trace_len[s->samples / 2], (long long)s->trace_len[(s->samples - 1) * 95 / 100],
           (long long)s->trace_len[s->samples - 1]);
    printf("commands: follow %lld, left %lld, straight %lld, right %lld, none %lld\n", (long long)s->commands[0],
           (long long)s->commands[1], (long long)s->commands[2], (long long)s->commands[3], (long long)s->commands[4]);
    printf("teacher trajectory: x %.2f .. %.2f m, y %.2f .. %.2f m, yaw %.3f .. %.3f rad\n", s->traj[0].lo, s->traj[0].hi,
           s->traj[1].lo, s->traj[1].hi, s->traj[2].lo, s->traj[2].hi);
    if (s->with_future)
        printf("logged future (%lld samples): x %.2f .. %.2f m, y %.2f .. %.2f m, yaw %.3f .. %.3f rad\n", (long long)s->with_future,
               s->future[0].lo, s->future[0].hi, s->future[1].lo, s->future[1].hi, s->future[2].lo, s->future[2].hi);
    else
        printf("logged future: none\n");
    printf("speed at t0: %.2f .. %.2f m/s\n", s->speed.lo, s->speed.hi);
    print_histogram(s);
}

static int gather(const DlSet *set, Stats *s, int on_bad) {
    const DlShard *s0 = &set->shards[0];
    size_t Th = (size_t)s0->Th, T = (size_t)s0->T, K = (size_t)s0->K;
    float *history = malloc(sizeof(float) * Th * 4), *future = malloc(sizeof(float) * T * 3), *traj = malloc(sizeof(float) * K * T * 3);
    s->trace_len = malloc(sizeof(int64_t) * (size_t)(set->n_samples + 1));
    s->speeds = malloc(sizeof(float) * (size_t)(set->n_samples + 1));
    DlReader *rd = dl_reader_new();
    int rc = 0;
    if (!history || !future || !traj || !s->trace_len || !s->speeds || !rd) { fprintf(stderr, "distil: error: out of memory\n"); rc = 1; }
    for (int i = 0; i < 3; i++) s->traj[i] = s->future[i] = (Range){ INFINITY, -INFINITY };
    s->speed = (Range){ INFINITY, -INFINITY };
    DlSampleDst dst = { .history = history, .future = future, .trajectory = traj };
    for (int i = 0; i < set->n_shards && !rc; i++) {
        const DlShard *sh = &set->shards[i];
        for (int64_t n = 0; n < sh->n && !rc; n++) {
            DlSampleInfo info;
            char err[DL_ERR_LEN];
            if (dl_read_sample(sh, rd, n, &dst, &info, err, sizeof err) != DL_OK) {
                if (on_bad == DL_ON_BAD_ERROR) { fprintf(stderr, "distil: error: %s\n", err); rc = 2; }
                s->bad++;
                continue;
            }
            float v0 = history[(Th - 1) * 4 + 3];
            s->speeds[s->samples] = v0;
            s->trace_len[s->samples++] = info.trace_len;
            widen(&s->speed, v0);
            s->commands[info.has_command ? info.command : 4]++;
            for (size_t j = 0; j < K * T; j++)
                for (int c = 0; c < 3; c++) widen(&s->traj[c], traj[j * 3 + (size_t)c]);
            if (info.has_future) {
                s->with_future++;
                for (size_t j = 0; j < T; j++)
                    for (int c = 0; c < 3; c++) widen(&s->future[c], future[j * 3 + (size_t)c]);
            }
        }
    }
    dl_reader_free(rd);
    free(history);
    free(future);
    free(traj);
    return rc;
}

int logs_stats_main(int argc, char **argv) {
    int on_bad = DL_ON_BAD_ERROR, n_patterns = 0;
    char **patterns = calloc((size_t)argc + 1, sizeof(char *));
    if (!patterns) return 1;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: distil logs stats GLOB... [--on-bad-sample error|skip]\n");
            free(patterns);
            return 0;
        } else if (!strcmp(argv[i], "--on-bad-sample")) {
            if (!(v = logs_option_value("stats", argc, argv, &i)) || (on_bad = dl_parse_on_bad_sample(v)) < 0) {
                if (v) fprintf(stderr, "distil: error: logs stats: --on-bad-sample takes error or skip, not '%s'\n", v);
                free(patterns);
                return 2;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "distil: error: logs stats: unknown option '%s'; usage: distil logs stats GLOB... [--on-bad-sample error|skip]\n", argv[i]);
            free(patterns);
            return 2;
        } else {
            patterns[n_patterns++] = argv[i];
        }
    }
    if (!n_patterns) {
        fprintf(stderr, "distil: error: logs stats: no GLOB given; usage: distil logs stats GLOB... [--on-bad-sample error|skip]\n");
        free(patterns);
        return 2;
    }
    char err[DL_ERR_LEN];
    DlSet *set = dl_set_open_on_bad(patterns, n_patterns, on_bad, err, sizeof err);
    free(patterns);
    if (!set) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    for (int i = 0; i < set->n_unusable; i++) fprintf(stderr, "distil: warning: %s; shard skipped\n", set->unusable[i]);
    Stats s = { 0 };
    int rc = gather(set, &s, on_bad);
    if (rc == 0) report(set, &s, on_bad);
    free(s.trace_len);
    free(s.speeds);
    dl_set_close(set);
    return rc;
}
