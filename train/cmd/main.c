// main.c: ./distil, one binary with subcommands.
#include <stdio.h>
#include <string.h>
#include "train/cmd/cli.h"          // defines: cmd_*, DISTIL_VERSION
#include "kernels/backend.h"    // defines: backend_cuda_device_count

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    { "train", cmd_train, "train a student from a recipe" },
    { "logs", cmd_logs, "drive logs: synth, inspect, validate, stats, load" },
    { "recipe", cmd_recipe, "recipes: check and print a resolved recipe, key docs" },
    { "export", cmd_export, "a deployment bundle from a checkpoint: safetensors, config.json, ONNX" },
    { "eval", cmd_eval, "the metrics table of a checkpoint or an export on any shards" },
    { "report", cmd_report, "RUN_DIR/report.html: loss curves, eval metrics, sample predictions" },
    { "selftest", cmd_selftest, "check distil's kernels on this machine's CPU and GPU" },
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: distil <command> [args]   (distil <command> --help for its options)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --help     this text\n  --version  version and backends\n");
}

static void version(void) {
    printf("distil %s\n", DISTIL_VERSION);
#ifdef DISTIL_CUDA
    int n = backend_cuda_device_count();
    const char *why = backend_cuda_unavailable_reason();
    printf("backends: cpu, cuda (built in; %d device%s%s%s)\n", n, n == 1 ? "" : "s", why ? ": " : "", why ? why : "");
#else
    printf("backends: cpu (built without CUDA)\n");
#endif
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { version(); return 0; }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "distil: error: unknown command '%s'; run 'distil --help' for the list\n", argv[1]);
    return 2;
}
