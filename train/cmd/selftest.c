// selftest.c: `distil selftest [--device cpu|cuda|all] [--quick] [--verbose]`:
// distil's kernels checked on this machine (train/selftest/selftest.h), one
// line per backend. Exit status 0 when every backend there is passes (a
// machine without a GPU says "cuda: no device" and still passes), 1 when one
// fails or the one asked for is missing, 2 for bad arguments.
#include <stdio.h>
#include <string.h>
#include "train/cmd/cli.h"
#include "train/selftest/selftest.h"   // defines: selftest_run, selftest_print_line, selftest_cache_store

static void usage(FILE *f) {
    fprintf(f, "usage: distil selftest [--device cpu|cuda|all] [--quick] [--verbose]\n"
               "  Checks distil's kernels on this machine: every op against PyTorch's values (built into the\n"
               "  binary) and, on a GPU, against the CPU on the same inputs; then %d training steps of a tiny\n"
               "  student, compared with the CPU's. One line per backend. --quick: the op suite at the\n"
               "  fixtures' sizes and the steps once (what distil train runs before its first use of a GPU);\n"
               "  the default adds larger shapes and repeats for identical bits. --verbose: every check.\n"
               "  A GPU's result is cached for distil train (docs/cli.md, \"The self-test\").\n", SELFTEST_STEPS);
}

int cmd_selftest(int argc, char **argv) {
    int quick = 0, verbose = 0, cpu = 1, cuda = 1;
    for (int i = 0; i < argc; i++) {
        const char *dev = NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) verbose = 1;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = argv[++i];
        else if (!strncmp(argv[i], "--device=", 9)) dev = argv[i] + 9;
        else {
            fprintf(stderr, "distil: error: selftest: unknown argument '%s'; see distil selftest --help\n", argv[i]);
            return 2;
        }
        if (!dev) continue;
        if (!strcmp(dev, "cpu")) { cpu = 1; cuda = 0; }
        else if (!strcmp(dev, "cuda")) { cpu = 0; cuda = 1; }
        else if (!strcmp(dev, "all")) { cpu = 1; cuda = 1; }
        else { fprintf(stderr, "distil: error: selftest: --device '%s': expected cpu, cuda or all\n", dev); return 2; }
    }
    int status = 0;
    SelftestResult r;
    if (cpu) {
        selftest_run(DEV_CPU, quick, verbose, &r);
        selftest_print_line(&r, stdout);
        fflush(stdout);
        if (!r.passed) status = 1;
    }
    if (cuda) {
        selftest_run(DEV_CUDA, quick, verbose, &r);
        selftest_print_line(&r, stdout);
        // Only --device cuda makes a missing GPU a failure: it was asked for.
        if (!r.hw.present && !cpu) status = 1;
        if (r.hw.present && !r.passed) status = 1;
        char err[1200];
        if (r.hw.present && selftest_cache_store(&r, err, sizeof err))
            printf("note: the result is not cached for distil train (%s)\n", err);
    }
    return status;
}
