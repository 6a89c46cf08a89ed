// selftest.h: `distil selftest`, distil checking its own kernels on the
// hardware it runs on, and the gate that lets `distil train` use a GPU once
// they pass there (docs/cli.md, "The self-test").
//
// On each backend: the op suite (opsuite.h: every PyTorch fixture case,
// against PyTorch and, off the CPU, against the CPU on the same inputs),
// then SELFTEST_STEPS optimizer steps of a tiny student (student.c),
// compared with the CPU's. The full run (not --quick) adds larger shapes
// (several blocks per row on a GPU) against the CPU and repeats everything
// for identical bits.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include "autograd/tensor.h"            // defines: Device
#include "train/recipe/recipe.h"        // defines: Recipe
#include "train/selftest/fixture.h"     // defines: Fixture
#include "train/selftest/opsuite.h"     // defines: OpSuiteResult, OpCheck

// ---- the fixtures built into the binary (fixtures_embedded.c) ---------------------
#define SELFTEST_N_FIXTURES 2
typedef struct SelftestFixture {
    const char *path, *generator;        // where it came from, and what regenerates it
    const uint8_t *begin, *end;          // the bytes in the binary
} SelftestFixture;
extern const SelftestFixture selftest_fixtures[SELFTEST_N_FIXTURES];

// ---- larger shapes (large.c) --------------------------------------------------------
// Cases without a PyTorch reference, at the sizes where a GPU's kernels take
// their multi-block paths: judged against the CPU only. NULL: out of memory.
Fixture *opsuite_large(void);
void opsuite_large_free(Fixture *fx);

// ---- the tiny student's steps (student.c) -------------------------------------------
#define SELFTEST_STEPS 3

typedef struct StudentRun {
    double loss[SELFTEST_STEPS], grad_norm[SELFTEST_STEPS];
    float *w0, *w1;                      // (n) the weights before and after, on the host
    size_t n;
    int replayed;                        // steps launched from a CUDA Graph (the trainer's way from step 2)
} StudentRun;

// SELFTEST_STEPS AdamW steps of the tiny student on one fixed batch, from a
// fixed initialisation: the same numbers on every backend up to rounding.
// On a GPU, as distil train on one process takes them: the first eagerly,
// the later ones captured into a CUDA Graph and replayed (eagerly again
// when the runtime refuses the capture, as the trainer does). 0, or -1
// with err set.
int student_run(Device dev, StudentRun *run, char *err, size_t errlen);
void student_run_free(StudentRun *run);
// Checks a run on its own (finite, the loss falls on the batch it trains
// on) or, with cpu, against the CPU's; each comparison goes into *res.
void student_check(Device dev, const StudentRun *run, const StudentRun *cpu, int verbose, OpSuiteResult *res);
// Two runs on the same device: every loss, norm and weight the same bits.
void student_check_repeat(Device dev, const StudentRun *a, const StudentRun *b, int verbose, OpSuiteResult *res);

// ---- the hardware ---------------------------------------------------------------------
typedef struct SelftestHardware {
    int present;                         // 0: no such device (why says so)
    char why[256];
    char name[256];                      // "NVIDIA H100 80GB HBM3", the CPU's model name
    char uuid[64];                       // "GPU-..." (CUDA), "" on the CPU
    int driver, runtime;                 // CUDA versions as 13000 = 13.0; 0 on the CPU
    char driver_release[32];             // the NVIDIA driver's own version ("580.65.06"), or ""
    char summary[512];                   // "NVIDIA H100 80GB HBM3, 79.1 GiB, driver 13.0, ..."
} SelftestHardware;

// What this process would run dev on (the GPU CUDA_VISIBLE_DEVICES and the
// rank put first). 0, or -1 (hw->why says why there is none).
int selftest_hardware(Device dev, SelftestHardware *hw);

// ---- one backend's self-test ---------------------------------------------------------
typedef struct SelftestResult {
    Device dev;
    int quick;
    SelftestHardware hw;
    int passed;                          // every check held (hw.present)
    OpSuiteResult checks;                // the op suite and the student's steps
    int fixture_cases, large_cases;      // op cases run against PyTorch; larger ones against the CPU
    int student_ran;
    int student_replayed;                // of its steps, how many ran from a CUDA Graph
    double seconds;
} SelftestResult;

// Runs the self-test on dev (a device that is present). verbose: print each
// check. Returns r->passed.
int selftest_run(Device dev, int quick, int verbose, SelftestResult *r);
// The one line of a backend: "cpu: passed ..." / "cuda: FAILED ..." /
// "cuda: no device (...)".
void selftest_print_line(const SelftestResult *r, FILE *f);
// "op gelu, case ...: out[3] = ... (error ..., tolerance ...)": the failing
// check with the largest error, into buf.
char *selftest_failure(const SelftestResult *r, char *buf, size_t n);

// ---- the result cache and the gate of `distil train` (gate.c) -----------------------
// Resolves train.device for this process: DEV_CPU, or DEV_CUDA once the
// quick self-test has passed on this GPU with this binary and driver (run
// now, or found in the cache). Under mpirun every rank checks its own GPU
// and all agree. Returns 0, or 2 after one error line naming the recipe key,
// the failing op and its largest error.
int selftest_pick_device(const Recipe *r, Device *dev);

// The cache file: $DISTIL_CACHE_DIR/selftest.json, else
// $XDG_CACHE_HOME/distil/selftest.json, else ~/.cache/distil/selftest.json;
// "" when none can be named. Returns buf.
char *selftest_cache_path(char *buf, size_t n);
// This binary's identity: its GNU build ID in hex (the linker's hash of the
// whole output), or a hash of /proc/self/exe when it has none.
const char *selftest_binary_id(void);
// The cached result of (this binary, hw's UUID, hw's driver): 1 passed, 0
// failed (*why: its failure), -1 none. A damaged cache counts as none.
int selftest_cache_lookup(const SelftestHardware *hw, char *why, size_t whylen, char *when, size_t whenlen);
// Records r (quick or full) for (this binary, its GPU, its driver); a full
// pass or any failure replaces what was there. 0, or -1 with err set (the
// caller decides whether that matters).
int selftest_cache_store(const SelftestResult *r, char *err, size_t errlen);
