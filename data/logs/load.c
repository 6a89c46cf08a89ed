// load.c: `distil logs load GLOB...`: runs the training loader over a set
// of shards exactly as `distil train` would (order, rank split, prefetch,
// on_bad_sample), and reports its rate and what it skipped or truncated.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "data/logs/cmds.h"     // defines: logs_parse_int, logs_option_value
#include "data/loader.h"        // defines: loader_open, loader_next

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *usage_text =
    "usage: distil logs load GLOB... [--batch-size B] [--max-trace-tokens L] [--workers N] [--prefetch P]\n"
    "                                [--seed S] [--rank R --world W] [--epochs E] [--on-bad-sample error|skip]\n"
    "                                [--no-shuffle] [--keep-tail]\n";

int logs_load_main(int argc, char **argv) {
    LoaderOptions o = loader_defaults();
    long long epochs = 1, v;
    char **patterns = calloc((size_t)argc + 1, sizeof(char *));
    int n_patterns = 0;
    if (!patterns) return 1;
    static const struct { const char *flag; long long min, max; } int_flags[] = {
        { "--batch-size", 1, 1 << 20 }, { "--max-trace-tokens", 0, 1 << 20 }, { "--workers", 1, 256 },
        { "--prefetch", 2, 1024 }, { "--seed", 0, (1ll << 62) }, { "--rank", 0, 1 << 20 }, { "--world", 1, 1 << 20 },
        { "--epochs", 1, 1 << 20 },
    };
    for (int i = 0; i < argc; i++) {
        const char *val;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage_text, stdout); free(patterns); return 0; }
        if (argv[i][0] != '-' || !argv[i][1]) { patterns[n_patterns++] = argv[i]; continue; }
        if (!strcmp(argv[i], "--no-shuffle")) { o.shuffle = 0; continue; }
        if (!strcmp(argv[i], "--keep-tail")) { o.keep_tail = 1; continue; }
        int f = 0, n_flags = (int)(sizeof int_flags / sizeof int_flags[0]);
        while (f < n_flags && strcmp(argv[i], int_flags[f].flag)) f++;
        if (f == n_flags && strcmp(argv[i], "--on-bad-sample")) {
            fprintf(stderr, "distil: error: logs load: unknown option '%s'\n%s", argv[i], usage_text);
            free(patterns);
            return 2;
        }
        if (!(val = logs_option_value("load", argc, argv, &i))) { free(patterns); return 2; }
        if (f == n_flags) {
            if ((o.on_bad_sample = dl_parse_on_bad_sample(val)) < 0) {
                fprintf(stderr, "distil: error: logs load: --on-bad-sample takes error or skip, not '%s'\n", val);
                free(patterns);
                return 2;
            }
            continue;
        }
        if (logs_parse_int("load", int_flags[f].flag, val, int_flags[f].min, int_flags[f].max, &v)) { free(patterns); return 2; }
        switch (f) {
        case 0: o.batch_size = (int)v; break;
        case 1: o.max_trace_tokens = (int)v; break;
        case 2: o.workers = (int)v; break;
        case 3: o.prefetch = (int)v; break;
        case 4: o.seed = (uint64_t)v; break;
        case 5: o.rank = (int)v; break;
        case 6: o.world = (int)v; break;
        default: epochs = v; break;
        }
    }
    if (n_patterns == 0) { fprintf(stderr, "distil: error: logs load: no GLOB given\n%s", usage_text); free(patterns); return 2; }

    char err[DL_ERR_LEN];
    Loader *ld = loader_open(patterns, n_patterns, &o, err, sizeof err);
    free(patterns);
    if (!ld) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    for (int i = 0; i < loader_set(ld)->n_unusable; i++)
        fprintf(stderr, "distil: warning: %s; shard skipped\n", loader_set(ld)->unusable[i]);
    int64_t batches = epochs * loader_batches_per_epoch(ld), done = 0, padding = 0;
    double t0 = now_s();
    for (const Batch *b; done < batches; done++, padding += b->n_padding)
        if (!(b = loader_next(ld))) {
            fprintf(stderr, "distil: error: %s\n", loader_error(ld));
            loader_close(ld);
            return 2;
        }
    double dt = now_s() - t0;
    const DlSet *set = loader_set(ld);
    double samples = (double)done * o.batch_size, mb = (double)done * (double)loader_batch_bytes(ld) / 1e6;
    printf("load: %d shard%s, %lld samples; rank %d of %d: %lld epoch%s x %lld batches of %d\n", set->n_shards,
           set->n_shards == 1 ? "" : "s", (long long)set->n_samples, o.rank, o.world, epochs, epochs == 1 ? "" : "s",
           (long long)loader_batches_per_epoch(ld), o.batch_size);
    printf("load: %.0f samples in %.3f s: %.1f samples/s, %.1f MB/s of batches (%d worker%s, prefetch %d)\n", samples, dt,
           samples / (dt > 0 ? dt : 1e-9), mb / (dt > 0 ? dt : 1e-9), o.workers, o.workers == 1 ? "" : "s", o.prefetch);
    if (set->n_unusable) printf("load: %d unusable shard%s skipped\n", set->n_unusable, set->n_unusable == 1 ? "" : "s");
    printf("load: %lld bad sample%s skipped, %lld padding slot%s, %lld trace%s truncated to %d tokens\n", (long long)loader_bad_samples(ld),
           loader_bad_samples(ld) == 1 ? "" : "s", (long long)padding, padding == 1 ? "" : "s", (long long)loader_truncated_traces(ld),
           loader_truncated_traces(ld) == 1 ? "" : "s", o.max_trace_tokens);
    loader_close(ld);
    return 0;
}
