// logs_cli.c: `distil logs ...` (placeholder until the drive-log work lands;
// replaced by the data/ implementation).
#include <stdio.h>
#include "train/cli.h"

int cmd_logs(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "distil: error: 'distil logs' is being built (issue 3)\n");
    return 2;
}
