// test.h: the test harness. A test program is a main() that calls RUN(fn)
// for each test function and returns test_summary(). Each test counts once:
// passed, failed (any CHECK failed) or skipped (SKIP with a reason).
// tests/run.sh adds up the "TESTS ..." lines of every program.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

static int test_passed, test_failed, test_skipped;
static int test_cur_failed;
static const char *test_cur_skip;

#define TEST_REPORT_(what, ...) do { \
        fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, what); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); \
        test_cur_failed = 1; \
    } while (0)

// Each evaluates cond exactly once.
#define CHECK(cond, ...) do { if (!(cond)) TEST_REPORT_(#cond, __VA_ARGS__); } while (0)
// Fails the test and returns from the test function.
#define REQUIRE(cond, ...) do { if (!(cond)) { TEST_REPORT_(#cond, __VA_ARGS__); return; } } while (0)

#define SKIP(reason) do { test_cur_skip = (reason); return; } while (0)

// DISTIL_TEST_ONLY=name runs that one test of the program (the others are
// not run and not counted).
#define RUN(fn) do { \
    const char *only_ = getenv("DISTIL_TEST_ONLY"); \
    if (only_ && *only_ && strcmp(only_, #fn) != 0) break; \
    test_cur_failed = 0; test_cur_skip = NULL; \
    fn(); \
    if (test_cur_skip) { test_skipped++; printf("skip %s: %s\n", #fn, test_cur_skip); } \
    else if (test_cur_failed) { test_failed++; printf("FAIL %s\n", #fn); } \
    else { test_passed++; printf("ok   %s\n", #fn); } \
    fflush(stdout); \
    } while (0)

static inline int test_summary(void) {
    printf("TESTS %d passed, %d failed, %d skipped\n", test_passed, test_failed, test_skipped);
    return test_failed ? 1 : 0;
}

// The seed for fresh random inputs: DISTIL_TEST_SEED if set, else the clock.
// Printed so that a failure can be replayed.
static inline unsigned long long test_seed(const char *program) {
    const char *env = getenv("DISTIL_TEST_SEED");
    unsigned long long seed = env ? strtoull(env, NULL, 10) : (unsigned long long)time(NULL);
    printf("%s: seed %llu (replay with DISTIL_TEST_SEED=%llu)\n", program, seed, seed);
    return seed;
}

// Relative error with an absolute floor, for comparing floats.
static inline double test_rel_err(double a, double b, double floor) {
    double d = fabs(a - b), m = fmax(fabs(a), fabs(b));
    return d / fmax(m, floor);
}
