// synth.c: placeholder; the synthetic fleet generator replaces this file.
#include <stdio.h>
#include "data/synth.h"

int logs_synth_main(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "distil: error: 'distil logs synth' is being built\n");
    return 2;
}
