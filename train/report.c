// report.c: placeholder while the report is written.
#include <stdio.h>
#include "train/cli.h"
int cmd_report(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "distil: error: report: not yet\n"); return 2; }
