// selftest.c: one backend's self-test and its line (see selftest.h).
#include "train/selftest/selftest.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "kernels/backend.h"   // defines: backend_cuda_device_count, backend_cuda_device_info, backend_set_allow_tf32

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// ---- the hardware --------------------------------------------------------------------

// The first line of path that starts with key, after its ':' (or after key),
// without surrounding blanks; "" when there is none.
static void read_field(const char *path, const char *key, char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key))) continue;
        const char *v = strchr(line, ':');
        v = v ? v + 1 : line + strlen(key);
        while (*v == ' ' || *v == '\t') v++;
        snprintf(out, n, "%s", v);
        size_t len = strlen(out);
        while (len && (out[len - 1] == '\n' || out[len - 1] == ' ')) out[--len] = 0;
        break;
    }
    fclose(f);
}

// The NVIDIA kernel module's version ("580.65.06"): the driver release,
// which the runtime's cudaDriverGetVersion (the CUDA version it supports)
// does not tell apart. "" when the file is not there (the simulator, or a
// container without it).
static void nvidia_driver_release(char *out, size_t n) {
    char line[512];
    read_field("/proc/driver/nvidia/version", "NVRM version", line, sizeof line);
    out[0] = 0;
    // "NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..."
    const char *p = strstr(line, "Module");
    if (!p) return;
    p += strlen("Module");
    while (*p == ' ') p++;
    size_t len = strcspn(p, " ");
    snprintf(out, n, "%.*s", (int)len, p);
}

static double gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

int selftest_hardware(Device dev, SelftestHardware *hw) {
    memset(hw, 0, sizeof *hw);
    if (dev == DEV_CPU) {
        hw->present = 1;
        read_field("/proc/cpuinfo", "model name", hw->name, sizeof hw->name);
        if (!hw->name[0]) snprintf(hw->name, sizeof hw->name, "unknown CPU");
        double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        snprintf(hw->summary, sizeof hw->summary, "%s, %d threads, %.1f GiB", hw->name, omp_get_max_threads(), gib(mem));
        return 0;
    }
    CudaDeviceInfo info;
    if (backend_cuda_device_count() <= 0 || backend_cuda_device_info(&info)) {
        const char *why = backend_cuda_unavailable_reason();
        snprintf(hw->why, sizeof hw->why, "%s", why ? why : "the runtime gave no description of the device");
        return -1;
    }
    hw->present = 1;
    snprintf(hw->name, sizeof hw->name, "%s", info.name);
    snprintf(hw->uuid, sizeof hw->uuid, "%s", info.uuid);
    hw->driver = info.driver;
    hw->runtime = info.runtime;
    nvidia_driver_release(hw->driver_release, sizeof hw->driver_release);
    char driver[64];
    if (hw->driver_release[0])
        snprintf(driver, sizeof driver, "driver %s (CUDA %d.%d)", hw->driver_release, info.driver / 1000, info.driver % 1000 / 10);
    else
        snprintf(driver, sizeof driver, "driver CUDA %d.%d", info.driver / 1000, info.driver % 1000 / 10);
    snprintf(hw->summary, sizeof hw->summary, "%s, %.1f GiB, %s, runtime %d.%d, compute capability %d.%d", info.name,
             gib((double)info.total_bytes), driver, info.runtime / 1000, info.runtime % 1000 / 10, info.cc_major, info.cc_minor);
    return 0;
}

// ---- one backend ---------------------------------------------------------------------

int selftest_run(Device dev, int quick, int verbose, SelftestResult *r) {
    memset(r, 0, sizeof *r);
    r->dev = dev;
    r->quick = quick;
    if (selftest_hardware(dev, &r->hw)) return 0;
    // The bounds are fp32's (tolerance.h): no TF32 products, whatever a
    // recipe asked for before; train_state_open sets the run's own after.
    backend_set_allow_tf32(dev, 0);
    double t0 = now_s();
    OpSuiteResult *res = &r->checks;
    // The op suite against PyTorch (and the CPU) on the fixtures built in.
    for (int i = 0; i < SELFTEST_N_FIXTURES; i++) {
        const SelftestFixture *sf = &selftest_fixtures[i];
        char err[256];
        Fixture *fx = fixture_parse(sf->begin, (size_t)(sf->end - sf->begin), sf->path, err, sizeof err);
        if (!fx) {
            // Only a damaged build gets here: the tests read the same files.
            OpCheck k = { .op = "fixtures", .what = "parse", .error = INFINITY, .excess = INFINITY };
            opsuite_record(res, &k);
            snprintf(res->error, sizeof res->error, "the fixtures built into this distil: %.300s", err);
            continue;
        }
        opsuite_check_fixture(fx, dev, verbose, res);
        fixture_free(fx);
    }
    r->fixture_cases = res->cases;
    // Larger shapes, against the CPU.
    if (!quick && dev != DEV_CPU) {
        Fixture *large = opsuite_large();
        if (large) opsuite_check_fixture(large, dev, verbose, res);
        else snprintf(res->error, sizeof res->error, "out of memory for the larger cases");
        opsuite_large_free(large);
        r->large_cases = res->cases - r->fixture_cases;
    }
    // The tiny student's steps, against the CPU's, and repeated for the bits.
    // The quick test stops at a failing op: it has its answer.
    if (quick && res->failed) {
        r->seconds = now_s() - t0;
        return r->passed = 0;
    }
    StudentRun run, cpu, again;
    char err[256];
    if (student_run(dev, &run, err, sizeof err) == 0) {
        r->student_ran = 1;
        r->student_replayed = run.replayed;
        if (dev != DEV_CPU && student_run(DEV_CPU, &cpu, err, sizeof err) == 0) {
            student_check(dev, &run, &cpu, verbose, res);
            student_run_free(&cpu);
        } else if (dev == DEV_CPU) {
            student_check(dev, &run, NULL, verbose, res);
        } else {
            r->student_ran = 0;
        }
        if (!quick && student_run(dev, &again, err, sizeof err) == 0) {
            student_check_repeat(dev, &run, &again, verbose, res);
            student_run_free(&again);
        }
        student_run_free(&run);
    }
    if (!r->student_ran) {
        OpCheck k = { .op = "training steps", .what = "run", .error = INFINITY, .excess = INFINITY };
        opsuite_record(res, &k);
        snprintf(res->error, sizeof res->error, "the tiny student: %s", err);
    }
    r->seconds = now_s() - t0;
    r->passed = res->failed == 0;
    return r->passed;
}

char *selftest_failure(const SelftestResult *r, char *buf, size_t n) {
    if (r->checks.error[0]) snprintf(buf, n, "%s", r->checks.error);
    else opsuite_describe(&r->checks.worst, buf, n);
    return buf;
}

void selftest_print_line(const SelftestResult *r, FILE *f) {
    const char *name = r->dev == DEV_CPU ? "cpu" : "cuda";
    if (!r->hw.present) { fprintf(f, "%s: no device (%s)\n", name, r->hw.why); return; }
    const char *mode = r->quick ? "quick" : "full";
    if (r->passed) {
        char large[96] = "";
        if (r->large_cases) snprintf(large, sizeof large, ", %d larger ones against the CPU", r->large_cases);
        char replayed[64] = "";
        if (r->student_replayed) snprintf(replayed, sizeof replayed, " (%d replayed from a CUDA Graph)", r->student_replayed);
        fprintf(f, "%s: passed (%s): %d op cases against PyTorch%s%s, %d training steps%s%s, in %.1f s; %s\n", name, mode,
                r->fixture_cases, r->dev == DEV_CPU ? "" : " and the CPU", large, SELFTEST_STEPS, replayed,
                r->dev == DEV_CPU ? " that lower the loss" : " as the CPU's", r->seconds, r->hw.summary);
        return;
    }
    char worst[600];
    fprintf(f, "%s: FAILED (%s): %d of %d checks (%s)%s, in %.1f s; %s; the largest error: %s\n", name, mode,
            r->checks.failed, r->checks.checks, r->checks.failed_ops[0] ? r->checks.failed_ops : "see above",
            r->student_ran ? "" : ", training steps not run", r->seconds, r->hw.summary, selftest_failure(r, worst, sizeof worst));
}
