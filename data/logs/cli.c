// cli.c: `distil logs ...`: dispatch to the subcommands and their help.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/logs/logs.h"         // defines: cmd_logs
#include "data/logs/cmds.h"         // defines: logs_*_main
#include "data/synth/synth.h"       // defines: logs_synth_main

static void usage(FILE *f) {
    fprintf(f,
        "usage: distil logs <command> [args]\n"
        "\n"
        "commands:\n"
        "  synth --out DIR [--shards N] [--samples-per-shard M] [--seed S] [--preset demo|urban4]\n"
        "        [--eval-shards E] [--eval-samples-per-shard ME] [--zstd-level L] [--force]\n"
        "                   write a synthetic fleet (train and eval splits); see synth --help\n"
        "  inspect FILE [--sample N]\n"
        "                   attributes, datasets (dtype, shape, chunks, filters, sizes),\n"
        "                   the sample count and sample N's trace as text\n"
        "  validate GLOB... [--on-bad-sample error|skip] [--max-lines N]\n"
        "                   check every rule of drive-log v1 on every sample; one line per\n"
        "                   problem; exit 0 when clean, 2 otherwise (skip: bad samples are\n"
        "                   counted and reported, only unusable shards fail)\n"
        "  stats GLOB... [--on-bad-sample error|skip]\n"
        "                   counts, trace lengths, trajectory ranges, a speed histogram\n"
        "  load GLOB... [--batch-size B] [--max-trace-tokens L] [--workers N] [--prefetch P]\n"
        "               [--seed S] [--rank R --world W] [--epochs E] [--on-bad-sample error|skip]\n"
        "               [--no-shuffle] [--keep-tail]\n"
        "                   run the training loader over the shards and report its rate,\n"
        "                   the bad samples skipped and the traces truncated\n"
        "\n"
        "Quote GLOB patterns ('logs/train-*.h5') so that distil expands them.\n"
        "The format: docs/drive-log-format.md.\n");
}

int logs_parse_int(const char *cmd, const char *flag, const char *value, long long min, long long max, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < min || v > max) {
        fprintf(stderr, "distil: error: logs %s: %s '%s' is not an integer in %lld..%lld\n", cmd, flag, value, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

const char *logs_option_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "distil: error: logs %s: %s needs a value; see 'distil logs --help'\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cmd_logs(int argc, char **argv) {
    if (argc < 1) { usage(stderr); return 2; }
    const char *sub = argv[0];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) { usage(stdout); return 0; }
    if (!strcmp(sub, "synth")) return logs_synth_main(argc - 1, argv + 1);
    if (!strcmp(sub, "inspect")) return logs_inspect_main(argc - 1, argv + 1);
    if (!strcmp(sub, "validate")) return logs_validate_main(argc - 1, argv + 1);
    if (!strcmp(sub, "stats")) return logs_stats_main(argc - 1, argv + 1);
    if (!strcmp(sub, "load")) return logs_load_main(argc - 1, argv + 1);
    fprintf(stderr, "distil: error: logs: unknown command '%s'; run 'distil logs --help' for the list\n", sub);
    return 2;
}
