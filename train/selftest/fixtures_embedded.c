// fixtures_embedded.c: the PyTorch fixtures, copied into the binary when it
// is built (the assembler's .incbin, relative to the repository root where
// make and the simulator's build run), so that `distil selftest` needs no
// source tree: an installed or copied binary checks itself against the same
// reference values as the tests. The Makefile makes this object depend on
// the .bin files, so a regenerated fixture is rebuilt in.
#include "train/selftest/selftest.h"
#include <string.h>

#define EMBED(sym, path)                                   \
    __asm__(".section .rodata\n"                           \
            ".balign 16\n"                                 \
            ".globl " #sym "\n" #sym ":\n"                 \
            ".incbin \"" path "\"\n"                       \
            ".globl " #sym "_end\n" #sym "_end:\n"         \
            ".previous\n")

EMBED(distil_fixture_ops, "tests/fixtures/ops.bin");
EMBED(distil_fixture_losses, "tests/fixtures/losses.bin");

extern const uint8_t distil_fixture_ops[], distil_fixture_ops_end[];
extern const uint8_t distil_fixture_losses[], distil_fixture_losses_end[];

const SelftestFixture selftest_fixtures[SELFTEST_N_FIXTURES] = {
    { "tests/fixtures/ops.bin", "scripts/gen_op_fixtures.py", distil_fixture_ops, distil_fixture_ops_end },
    { "tests/fixtures/losses.bin", "scripts/gen_loss_fixtures.py", distil_fixture_losses, distil_fixture_losses_end },
};
