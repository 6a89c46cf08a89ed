// test_selftest.c: the pieces of `distil selftest` on the CPU: the fixtures
// built into the binary are the repository's, the op suite passes on them
// and names a planted wrong value, the larger cases all build and run, the
// tiny student's steps repeat bit for bit and lower the loss, and the
// result cache keys on (binary, GPU UUID, driver), survives damage and keeps
// the latest result. tests/test_selftest.py drives the command and the
// gate of `distil train`; tests/test_selftest_sim.py the CUDA side on the
// simulator, with a wrong kernel planted.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "train/selftest/selftest.h"   // defines: selftest_*, student_*, opsuite_large
#include "tests/test.h"

static char cache_dir[128];

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    *len = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    return b;
}

// A rebuilt fixture must reach the binary (the Makefile's dependency).
static void test_embedded_fixtures_are_the_files(void) {
    for (int i = 0; i < SELFTEST_N_FIXTURES; i++) {
        const SelftestFixture *sf = &selftest_fixtures[i];
        size_t len = 0;
        uint8_t *file = read_file(sf->path, &len);
        REQUIRE(file, "cannot read %s (run from the repository root)", sf->path);
        size_t n = (size_t)(sf->end - sf->begin);
        CHECK(n == len && memcmp(file, sf->begin, n) == 0, "%s: the copy in the binary (%zu bytes) differs from the file "
              "(%zu bytes); rebuild", sf->path, n, len);
        free(file);
    }
}

static Fixture *embedded(int i) {
    char err[256];
    const SelftestFixture *sf = &selftest_fixtures[i];
    Fixture *fx = fixture_parse(sf->begin, (size_t)(sf->end - sf->begin), sf->path, err, sizeof err);
    if (!fx) fprintf(stderr, "%s\n", err);
    return fx;
}

static void test_op_suite_passes_on_the_cpu(void) {
    for (int i = 0; i < SELFTEST_N_FIXTURES; i++) {
        Fixture *fx = embedded(i);
        REQUIRE(fx, "fixture %d", i);
        OpSuiteResult res;
        memset(&res, 0, sizeof res);
        opsuite_check_fixture(fx, DEV_CPU, 0, &res);
        char line[600];
        CHECK(res.failed == 0 && res.cases == fx->n_cases, "%s: %d of %d checks failed: %s", selftest_fixtures[i].path,
              res.failed, res.checks, opsuite_describe(&res.worst, line, sizeof line));
        CHECK(res.checks > res.cases, "every case compares its output and its gradients");
        fixture_free(fx);
    }
}

// A wrong expected value in one case of one op: the suite fails on that op
// alone and names the case, the element and the two values.
static void test_op_suite_names_a_wrong_value(void) {
    const SelftestFixture *sf = &selftest_fixtures[0];
    size_t len = (size_t)(sf->end - sf->begin);
    uint8_t *copy = malloc(len);
    REQUIRE(copy, "out of memory");
    memcpy(copy, sf->begin, len);
    char err[256];
    Fixture *fx = fixture_parse(copy, len, "copy", err, sizeof err);
    REQUIRE(fx, "%s", err);
    FxCase *target = NULL;
    for (int i = 0; i < fx->n_cases && !target; i++)
        if (!strcmp(fx->cases[i].op, "gelu")) target = &fx->cases[i];
    REQUIRE(target, "ops.bin has no gelu case");
    const FxTensor *out = fx_find(target, 'o', NULL);
    REQUIRE(out && out->dtype == DT_F32 && out->numel > 3, "gelu's output");
    float v;
    memcpy(&v, out->data + 3 * 4, 4);
    v = v * 1.01f + 0.01f;                       // 1%: far outside gelu's 1e-4
    memcpy((uint8_t *)out->data + 3 * 4, &v, 4);   // the copy's bytes
    OpSuiteResult res;
    memset(&res, 0, sizeof res);
    opsuite_check_fixture(fx, DEV_CPU, 0, &res);
    char line[600];
    opsuite_describe(&res.worst, line, sizeof line);
    CHECK(res.failed == 1, "one failed check, got %d", res.failed);
    CHECK(!strcmp(res.failed_ops, "gelu"), "failed ops: '%s'", res.failed_ops);
    CHECK(!strcmp(res.worst.op, "gelu") && !strcmp(res.worst.case_name, target->name) && res.worst.index == 3 &&
          res.worst.excess > 10, "the worst: %s", line);
    CHECK(strstr(line, "op gelu") && strstr(line, "out[3]") && strstr(line, "PyTorch"), "%s", line);
    printf("  planted: %s\n", line);
    fixture_free(fx);
    free(copy);
}

// The larger cases are for a GPU; here each must build and run (a case that
// cannot would fail every GPU's full self-test).
static void test_large_cases_run_on_the_cpu(void) {
    Fixture *fx = opsuite_large();
    REQUIRE(fx && fx->n_cases > 10, "opsuite_large");
    for (int i = 0; i < fx->n_cases; i++) {
        OpRun run;
        CHECK(opsuite_run(&fx->cases[i], DEV_CPU, OPSUITE_ASSIGN, &run) == 0, "%s: %s", fx->cases[i].name, run.err);
        int grads = 0;
        for (int k = 0; k < run.n_in; k++) grads += run.grad[k] != NULL;
        CHECK(grads == fx_count(&fx->cases[i], "p"), "%s: %d gradients of %d parameters", fx->cases[i].name, grads,
              fx_count(&fx->cases[i], "p"));
        opsuite_run_free(&run);
    }
    opsuite_large_free(fx);
}

static void test_student_steps_repeat_and_learn(void) {
    StudentRun a, b;
    char err[256];
    REQUIRE(student_run(DEV_CPU, &a, err, sizeof err) == 0, "%s", err);
    if (student_run(DEV_CPU, &b, err, sizeof err)) { student_run_free(&a); REQUIRE(0, "%s", err); }
    printf("  losses %.6f %.6f %.6f, gradient norms %.4f %.4f %.4f\n", a.loss[0], a.loss[1], a.loss[2], a.grad_norm[0],
           a.grad_norm[1], a.grad_norm[2]);
    OpSuiteResult res;
    memset(&res, 0, sizeof res);
    student_check(DEV_CPU, &a, NULL, 0, &res);
    student_check_repeat(DEV_CPU, &a, &b, 0, &res);
    char line[600];
    CHECK(res.failed == 0, "%s", opsuite_describe(&res.worst, line, sizeof line));
    // Against itself as "the CPU": every comparison holds exactly.
    memset(&res, 0, sizeof res);
    student_check(DEV_CUDA, &b, &a, 0, &res);
    CHECK(res.failed == 0 && res.worst.excess == 0, "%s", opsuite_describe(&res.worst, line, sizeof line));
    // A wrong update is caught: the last weights moved by 10% more.
    for (size_t i = 0; i < b.n; i++) b.w1[i] = b.w0[i] + 1.1f * (b.w1[i] - b.w0[i]);
    memset(&res, 0, sizeof res);
    student_check(DEV_CUDA, &b, &a, 0, &res);
    CHECK(res.failed == 1 && strstr(res.worst.what, "dW"), "%s", opsuite_describe(&res.worst, line, sizeof line));
    student_run_free(&a);
    student_run_free(&b);
}

static void test_selftest_run_cpu(void) {
    SelftestResult r;
    CHECK(selftest_run(DEV_CPU, 1, 0, &r) == 1, "the quick CPU self-test failed");
    char line[1000];
    FILE *f = fmemopen(line, sizeof line, "w");
    REQUIRE(f, "fmemopen");
    selftest_print_line(&r, f);
    fclose(f);
    printf("  %s", line);
    CHECK(!strncmp(line, "cpu: passed (quick): ", 21) && r.fixture_cases > 50 && r.student_ran, "%s", line);
}

// ---- the cache ------------------------------------------------------------------------

static SelftestResult fake_gpu_result(const char *uuid, const char *driver, int passed) {
    SelftestResult r;
    memset(&r, 0, sizeof r);
    r.dev = DEV_CUDA;
    r.quick = 1;
    r.passed = passed;
    r.hw.present = 1;
    snprintf(r.hw.name, sizeof r.hw.name, "Test GPU \"quoted\"");
    snprintf(r.hw.uuid, sizeof r.hw.uuid, "%s", uuid);
    snprintf(r.hw.driver_release, sizeof r.hw.driver_release, "%s", driver);
    r.hw.driver = 13000;
    if (!passed) {
        r.checks.failed = 1;
        snprintf(r.checks.worst.op, sizeof r.checks.worst.op, "gelu");
        snprintf(r.checks.worst.case_name, sizeof r.checks.worst.case_name, "gelu_tails");
        snprintf(r.checks.worst.what, sizeof r.checks.worst.what, "out");
        r.checks.worst.against = "PyTorch";
        r.checks.worst.error = 0.03;
        r.checks.worst.tolerance = 2e-4;
    }
    return r;
}

static void test_cache_keys_and_latest_result(void) {
    char path[1024], why[700], when[64], err[1200];
    setenv("DISTIL_CACHE_DIR", cache_dir, 1);
    char want[300];
    snprintf(want, sizeof want, "%s/selftest.json", cache_dir);
    CHECK(!strcmp(selftest_cache_path(path, sizeof path), want), "cache path %s", path);
    SelftestResult a = fake_gpu_result("GPU-aaaa", "580.65.06", 1);
    CHECK(selftest_cache_lookup(&a.hw, why, sizeof why, when, sizeof when) == -1, "an empty cache has no result");
    REQUIRE(selftest_cache_store(&a, err, sizeof err) == 0, "%s", err);
    CHECK(selftest_cache_lookup(&a.hw, why, sizeof why, when, sizeof when) == 1 && when[0], "the pass is found");
    // Another GPU, another driver release, another CUDA driver: no result.
    SelftestResult other = fake_gpu_result("GPU-bbbb", "580.65.06", 1);
    CHECK(selftest_cache_lookup(&other.hw, why, sizeof why, when, sizeof when) == -1, "another GPU");
    other = fake_gpu_result("GPU-aaaa", "580.82.07", 1);
    CHECK(selftest_cache_lookup(&other.hw, why, sizeof why, when, sizeof when) == -1, "another driver release");
    other = fake_gpu_result("GPU-aaaa", "580.65.06", 1);
    other.hw.driver = 13010;
    CHECK(selftest_cache_lookup(&other.hw, why, sizeof why, when, sizeof when) == -1, "another CUDA driver version");
    // The latest result replaces the earlier one; others stay.
    SelftestResult b = fake_gpu_result("GPU-bbbb", "580.65.06", 1);
    REQUIRE(selftest_cache_store(&b, err, sizeof err) == 0, "%s", err);
    SelftestResult fail = fake_gpu_result("GPU-aaaa", "580.65.06", 0);
    REQUIRE(selftest_cache_store(&fail, err, sizeof err) == 0, "%s", err);
    CHECK(selftest_cache_lookup(&a.hw, why, sizeof why, when, sizeof when) == 0, "the failure replaced the pass");
    CHECK(strstr(why, "op gelu") && strstr(why, "gelu_tails"), "the failure is kept: %s", why);
    CHECK(selftest_cache_lookup(&b.hw, why, sizeof why, when, sizeof when) == 1, "the other GPU's pass stays");
    // A damaged file counts as empty, and the next store rewrites it.
    FILE *f = fopen(path, "w");
    REQUIRE(f, "%s", path);
    fputs("{\"format\": 1, \"results\": [{\"binary\": ", f);
    fclose(f);
    CHECK(selftest_cache_lookup(&b.hw, why, sizeof why, when, sizeof when) == -1, "a damaged cache has no result");
    REQUIRE(selftest_cache_store(&b, err, sizeof err) == 0, "%s", err);
    CHECK(selftest_cache_lookup(&b.hw, why, sizeof why, when, sizeof when) == 1, "rewritten");
    // An unwritable place is an error, not a crash.
    setenv("DISTIL_CACHE_DIR", "/proc/distil-cache", 1);
    CHECK(selftest_cache_store(&b, err, sizeof err) == -1 && err[0], "storing under /proc must fail");
    setenv("DISTIL_CACHE_DIR", cache_dir, 1);
}

static void test_binary_id(void) {
    const char *id = selftest_binary_id();
    CHECK(strlen(id) >= 16 && strspn(id, "0123456789abcdef") == strlen(id), "build id '%s'", id);
    CHECK(selftest_binary_id() == id, "computed once");
}

int main(void) {
    snprintf(cache_dir, sizeof cache_dir, "/tmp/distil_test_selftest_%d", (int)getpid());
    RUN(test_embedded_fixtures_are_the_files);
    RUN(test_op_suite_passes_on_the_cpu);
    RUN(test_op_suite_names_a_wrong_value);
    RUN(test_large_cases_run_on_the_cpu);
    RUN(test_student_steps_repeat_and_learn);
    RUN(test_selftest_run_cpu);
    RUN(test_cache_keys_and_latest_result);
    RUN(test_binary_id);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", cache_dir);
    return test_summary();
}
