// scratch.c: the CPU kernels' kept scratch buffers (cpu_ops.h, cpu_scratch).
#include <stdio.h>
#include <stdlib.h>
#include "kernels/cpu/cpu_ops.h"

void *cpu_scratch(CpuScratch slot, size_t bytes) {
    static void *buf[CPU_SCRATCH_COUNT];
    static size_t len[CPU_SCRATCH_COUNT];
    static const char *const what[CPU_SCRATCH_COUNT] = { "bf16 product operands", "bf16 product sums",
                                                          "attention qkv", "attention output" };
    if (bytes <= len[slot]) return buf[slot];
    free(buf[slot]);
    len[slot] = (bytes + 4095) / 4096 * 4096;
    buf[slot] = aligned_alloc(64, len[slot]);
    if (!buf[slot]) {
        fprintf(stderr, "distil: error: out of memory for %zu bytes of %s scratch\n", len[slot], what[slot]);
        exit(2);
    }
    return buf[slot];
}
