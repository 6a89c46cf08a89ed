// report.c: `distil report RUN_DIR [--samples N] [--logs GLOB ...]
// [--checkpoint CKPT_DIR] [--out FILE]`: the arguments; train/report/ writes
// the page.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/cmd/cli.h"            // defines: cmd_report
#include "train/report/report.h"      // defines: ReportRequest, report_write

static void usage(FILE *f) {
    fprintf(f, "usage: distil report RUN_DIR [--samples N] [--logs GLOB ...] [--checkpoint CKPT_DIR] [--out FILE]\n"
               "  Writes RUN_DIR/report.html (or FILE): loss curves, eval metrics over the steps against the baselines,\n"
               "  the final eval table, and N eval samples (default %d; 0: none) run through the latest checkpoint\n"
               "  (the recipe's data.eval shards, or --logs). One self-contained file. See docs/cli.md.\n", REPORT_DEFAULT_SAMPLES);
}

static int parse_args(int argc, char **argv, ReportRequest *a) {
    memset(a, 0, sizeof *a);
    a->samples = REPORT_DEFAULT_SAMPLES;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(arg, "--checkpoint") && has_value) a->checkpoint = argv[++i];
        else if (!strcmp(arg, "--out") && has_value) a->out = argv[++i];
        else if (!strcmp(arg, "--logs") && has_value) {
            if (a->n_logs == 16) { fprintf(stderr, "distil: error: report: more than 16 --logs\n"); return 2; }
            a->logs[a->n_logs++] = argv[++i];
        } else if (!strcmp(arg, "--samples") && has_value) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || v < 0 || v > REPORT_MAX_SAMPLES) {
                fprintf(stderr, "distil: error: report: --samples '%s': expected 0..%d\n", argv[i], REPORT_MAX_SAMPLES);
                return 2;
            }
            a->samples = (int)v;
        } else if (arg[0] == '-') {
            fprintf(stderr, "distil: error: report: unknown option '%s' (or its value is missing); see distil report --help\n", arg);
            return 2;
        } else if (!a->run_dir) a->run_dir = arg;
        else { fprintf(stderr, "distil: error: report: one run directory only, got '%s' too\n", arg); return 2; }
    }
    if (!a->run_dir) { usage(stderr); return 2; }
    return 0;
}

int cmd_report(int argc, char **argv) {
    ReportRequest req;
    int rc = parse_args(argc, argv, &req);
    if (rc) return rc;
    return report_write(&req);
}
