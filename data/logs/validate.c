// validate.c: `distil logs validate GLOB...`: every rule of drive-log v1
// on every shard and every sample, one line per problem: every structural
// problem of a shard, and its bad samples up to --max-lines.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/logs/cmds.h"     // defines: logs_parse_int, logs_option_value
#include "data/drivelog.h"      // defines: dl_shard_open, dl_shard_agree, dl_read_sample

typedef struct Tally {
    int files, unusable, mismatched;
    int64_t samples, tokens, bad;
} Tally;

// Read every sample of a shard (cameras included, so damaged chunks show)
// and report the bad ones, at most max_lines lines for the shard.
static void validate_samples(const DlShard *sh, DlReader *rd, int on_bad, int max_lines, Tally *t) {
    size_t frame_bytes = 0;
    for (int c = 0; c < sh->n_cameras; c++) frame_bytes += (size_t)sh->frames[c] * (size_t)sh->height[c] * (size_t)sh->width[c] * 3;
    uint8_t *frames = malloc(frame_bytes ? frame_bytes : 1);
    if (!frames) {
        fprintf(stderr, "distil: error: %s: out of memory for one sample's %zu camera bytes\n", sh->path, frame_bytes);
        t->unusable++;
        return;
    }
    DlSampleDst dst = { .frames = frames };   // the other fields are checked in the reader's scratch
    int64_t bad = 0;
    for (int64_t n = 0; n < sh->n; n++) {
        DlSampleInfo info;
        char err[DL_ERR_LEN];
        if (dl_read_sample(sh, rd, n, &dst, &info, err, sizeof err) == DL_OK) {
            t->samples++;
            t->tokens += info.trace_len;
            continue;
        }
        if (bad++ < max_lines) {
            if (on_bad == DL_ON_BAD_SKIP) fprintf(stderr, "distil: warning: %s (skipped)\n", err);
            else fprintf(stderr, "distil: error: %s\n", err);
        }
    }
    if (bad > max_lines)
        fprintf(stderr, "distil: %s: %s: %lld more bad samples not shown (--max-lines)\n", on_bad == DL_ON_BAD_SKIP ? "warning" : "error",
                sh->path, (long long)(bad - max_lines));
    t->bad += bad;
    free(frames);
}

// Every structural problem of a shard, one line each.
static void print_problem(const char *line, void *ctx) {
    (void)ctx;
    fprintf(stderr, "distil: error: %s\n", line);
}

static int usage_error(const char *what) {
    fprintf(stderr, "distil: error: logs validate: %s; usage: distil logs validate GLOB... [--on-bad-sample error|skip] [--max-lines N]\n", what);
    return 2;
}

int logs_validate_main(int argc, char **argv) {
    int on_bad = DL_ON_BAD_ERROR;
    long long max_lines = 20;
    char **patterns = calloc((size_t)argc + 1, sizeof(char *));
    int n_patterns = 0;
    if (!patterns) return 1;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: distil logs validate GLOB... [--on-bad-sample error|skip] [--max-lines N]\n");
            free(patterns);
            return 0;
        } else if (!strcmp(argv[i], "--on-bad-sample")) {
            if (!(v = logs_option_value("validate", argc, argv, &i))) { free(patterns); return 2; }
            if ((on_bad = dl_parse_on_bad_sample(v)) < 0) { free(patterns); return usage_error("--on-bad-sample takes error or skip"); }
        } else if (!strcmp(argv[i], "--max-lines")) {
            if (!(v = logs_option_value("validate", argc, argv, &i)) || logs_parse_int("validate", "--max-lines", v, 0, 1 << 30, &max_lines)) {
                free(patterns);
                return 2;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(patterns);
            return usage_error("unknown option");
        } else {
            patterns[n_patterns++] = argv[i];
        }
    }
    if (n_patterns == 0) { free(patterns); return usage_error("no GLOB given"); }

    Tally t = { 0 };
    int missing = 0;
    DlShard first;
    int have_first = 0;
    DlReader *rd = dl_reader_new();
    for (int p = 0; p < n_patterns && rd; p++) {
        char **paths, err[DL_ERR_LEN];
        int n_paths;
        if (dl_glob(&patterns[p], 1, &paths, &n_paths, err, sizeof err)) {
            fprintf(stderr, "distil: error: %s\n", err);
            missing++;
            continue;
        }
        for (int i = 0; i < n_paths; i++) {
            DlShard sh;
            t.files++;
            if (dl_shard_check(&sh, paths[i], print_problem, NULL)) {
                t.unusable++;
                dl_shard_close(&sh);
                continue;
            }
            if (have_first && dl_shard_agree(&first, &sh, err, sizeof err)) {
                fprintf(stderr, "distil: error: %s\n", err);
                t.mismatched++;
            }
            validate_samples(&sh, rd, on_bad, (int)max_lines, &t);
            if (!have_first) { first = sh; have_first = 1; }   // keeps its vocab for the others
            else dl_shard_close(&sh);
        }
        dl_free_paths(paths, n_paths);
    }
    if (have_first) dl_shard_close(&first);
    dl_reader_free(rd);
    free(patterns);

    int failed = missing || t.unusable || t.mismatched || (t.bad && on_bad == DL_ON_BAD_ERROR);
    printf("validate: %d file%s, %lld good samples, %lld trace tokens", t.files, t.files == 1 ? "" : "s",
           (long long)t.samples, (long long)t.tokens);
    if (t.unusable) printf("; %d unusable shard%s", t.unusable, t.unusable == 1 ? "" : "s");
    if (t.mismatched) printf("; %d shard%s disagreeing with the first", t.mismatched, t.mismatched == 1 ? "" : "s");
    if (missing) printf("; %d pattern%s matching nothing", missing, missing == 1 ? "" : "s");
    if (t.bad) printf("; %lld bad sample%s%s", (long long)t.bad, t.bad == 1 ? "" : "s", on_bad == DL_ON_BAD_SKIP ? " skipped" : "");
    printf(": %s\n", failed ? "FAILED" : "ok");
    return failed ? 2 : 0;
}
