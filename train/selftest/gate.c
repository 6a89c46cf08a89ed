// gate.c: train.device resolved for `distil train` (see selftest.h): a GPU
// is used once the quick self-test has passed on it with this binary and
// driver, now or in an earlier run (the cache).
#include <stdio.h>
#include <string.h>
#include "train/dist/dist.h"          // defines: dist_world, dist_allreduce_sum
#include "train/selftest/selftest.h"

// This process's GPU: 1 passed, 0 failed (why: the failure), -1 no GPU
// (hw->why says why).
static int check_own_gpu(SelftestHardware *hw, char *why, size_t whylen) {
    if (selftest_hardware(DEV_CUDA, hw)) return -1;
    char when[64];
    int cached = selftest_cache_lookup(hw, why, whylen, when, sizeof when);
    if (cached >= 0) {
        char path[1024];
        printf("device: %s: the self-test %s with this distil and driver on %s (cached in %s%s)\n", hw->name,
               cached ? "passed" : "failed", when, selftest_cache_path(path, sizeof path),
               cached ? "" : "; distil selftest --device cuda runs it again");
        return cached;
    }
    printf("device: %s: first use with this distil and driver: running the quick self-test (distil selftest --device cuda --quick)\n",
           hw->name);
    fflush(stdout);
    SelftestResult res;
    selftest_run(DEV_CUDA, 1, 0, &res);
    selftest_print_line(&res, stdout);
    if (!res.passed) selftest_failure(&res, why, whylen);
    char err[1200];
    if (selftest_cache_store(&res, err, sizeof err))
        printf("note: the self-test's result is not cached (%s); it runs again next time\n", err);
    fflush(stdout);
    return res.passed;
}

int selftest_pick_device(const Recipe *r, Device *dev) {
    *dev = DEV_CPU;
    if (r->train.device == DEVICE_CPU) return 0;
    const int want_cuda = r->train.device == DEVICE_CUDA;
    char where[512], why[700] = "";
    recipe_where(r, "train.device", where, sizeof where);
    SelftestHardware hw;
    int mine = check_own_gpu(&hw, why, sizeof why);
    // Every rank decides the same: a GPU for all of them, or the CPU for all.
    double counts[2] = { mine < 0, mine == 0 };   // ranks without a GPU, ranks whose GPU failed
    if (dist_allreduce_sum(counts, 2, "the device self-test")) return 2;
    const int no_gpu = counts[0] > 0, failed = counts[1] > 0, world = dist_world()->world;
    if (!no_gpu && !failed) { *dev = DEV_CUDA; return 0; }
    if (want_cuda) {
        if (mine < 0)
            fprintf(stderr, "distil: error: %s: train.device: cuda: no CUDA device (%s); use device: cpu or auto\n", where, hw.why);
        else if (mine == 0)
            fprintf(stderr, "distil: error: %s: train.device: cuda: the self-test failed on %s (%s): %s; run "
                    "distil selftest --device cuda for every result, and train with device: cpu meanwhile\n",
                    where, hw.name, hw.uuid, why);
        else if (dist_world()->rank == 0)
            fprintf(stderr, "distil: error: %s: train.device: cuda: %.0f of %d ranks have no usable GPU (their own lines say "
                    "why); use device: cpu or auto\n", where, counts[0] + counts[1], world);
        return 2;
    }
    // auto: the CPU, saying why.
    if (mine < 0) printf("device: auto: no CUDA device (%s); training on the CPU\n", hw.why);
    else if (mine == 0) printf("device: auto: the CUDA self-test failed on %s (%s); training on the CPU\n", hw.name, why);
    else printf("device: auto: %.0f of %d ranks have no usable GPU; training on the CPU\n", counts[0] + counts[1], world);
    return 0;
}
