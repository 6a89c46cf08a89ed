// test_gemm_f32.c: the CPU's fp32 matrix products (kernels/cpu/gemm_f32.c),
// every path this machine has, against a double-precision product:
// transposes, ragged edges (M, N not multiples of the 12 x 32 tile), K past
// one packed block, A read in place and packed (a ragged tile, a transposed
// A with long rows), few rows (the weight gradients' panel split), beta 0
// over NaN garbage, beta 1 and 0.5, alpha 1 and not, strides wider than the rows, the
// columns of C past N left alone; one thread and several giving the same
// bits; the products called from inside a parallel region (the attention's
// per-head calls) each with its own scratch.
//
// Tolerance: fp32 sums of K products against the same sum in double differ
// by ~sqrt(K) ulps of the sum of |terms|; 1e-5 of that sum bounds it for
// K <= 1100 (~33 ulps x 6e-8 = 2e-6 at worst). A dropped or doubled term
// (about 1/K of the sum of |terms|, >= 1e-3 here) fails by far.
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"         // defines: Rng, rng_*
#include "kernels/cpu/gemm_f32.h"
#include "tests/test.h"

static Rng rng;

typedef struct { int ta, tb, M, N, K; float beta, alpha; } Shape;

typedef struct {
    Shape s;
    int lda, ldb, ldc;
    float *A, *B, *C0;
} Case;

static Case case_new(Shape s) {
    Case c = { .s = s };
    int a_rows = s.ta ? s.K : s.M, a_cols = s.ta ? s.M : s.K, b_rows = s.tb ? s.N : s.K, b_cols = s.tb ? s.K : s.N;
    c.lda = a_cols + 3; c.ldb = b_cols + 1; c.ldc = s.N + 2;   // strides wider than the rows
    c.A = malloc(sizeof(float) * a_rows * c.lda);
    c.B = malloc(sizeof(float) * b_rows * c.ldb);
    c.C0 = malloc(sizeof(float) * s.M * c.ldc);
    for (int i = 0; i < a_rows * c.lda; i++) c.A[i] = rng_normal(&rng);
    for (int i = 0; i < b_rows * c.ldb; i++) c.B[i] = rng_normal(&rng);
    for (int i = 0; i < s.M * c.ldc; i++) c.C0[i] = s.beta == 0.0f ? NAN : rng_normal(&rng);
    return c;
}

static void case_free(Case *c) { free(c->A); free(c->B); free(c->C0); }

static float *case_run(const Case *c) {
    float *C = malloc(sizeof(float) * c->s.M * c->ldc);
    memcpy(C, c->C0, sizeof(float) * c->s.M * c->ldc);
    cpu_sgemm(c->s.ta, c->s.tb, c->s.M, c->s.N, c->s.K, c->s.alpha, c->A, c->lda, c->B, c->ldb, c->s.beta, C, c->ldc);
    return C;
}

// Checks C against the double-precision product; returns the worst error / bound.
static double check_result(const char *path, const Case *c, const float *C) {
    Shape s = c->s;
    double worst = 0;
    int wi = 0, wj = 0;
    for (int i = 0; i < s.M; i++)
        for (int j = 0; j < s.N; j++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < s.K; k++) {
                double a = s.ta ? c->A[k * c->lda + i] : c->A[i * c->lda + k];
                double b = s.tb ? c->B[j * c->ldb + k] : c->B[k * c->ldb + j];
                ref += a * b;
                mag += fabs(a * b);
            }
            double c0 = s.beta == 0.0f ? 0.0 : (double)s.beta * c->C0[i * c->ldc + j];
            ref = s.alpha * ref + c0;
            mag = fabs(s.alpha) * mag + fabs(c0);
            double err = fabs(C[i * c->ldc + j] - ref) / (1e-5 * mag + 1e-30);
            if (!(err <= worst)) { worst = isnan(err) ? INFINITY : err; wi = i; wj = j; }
        }
    CHECK(worst <= 1.0, "%s: ta %d tb %d M %d N %d K %d alpha %g beta %g: C[%d, %d] is %.3g x the bound", path, s.ta, s.tb,
          s.M, s.N, s.K, (double)s.alpha, (double)s.beta, wi, wj, worst);
    for (int i = 0; i < s.M; i++)   // the padding columns of C are untouched
        for (int j = s.N; j < c->ldc; j++)
            CHECK(memcmp(&C[i * c->ldc + j], &c->C0[i * c->ldc + j], sizeof(float)) == 0, "%s: C[%d, %d] past N was written",
                  path, i, j);
    return worst;
}

static const Shape shapes[] = {
    { 0, 1, 13, 37, 19, 0.0f, 1.0f },      // y = x W^T (linear forward): ragged
    { 0, 0, 29, 70, 64, 1.0f, 1.0f },      // dx += dy W
    { 1, 0, 40, 33, 600, 1.0f, 1.0f },     // dW += dy^T x: K past one packed block (256)
    { 1, 0, 24, 130, 300, 0.0f, 1.0f },    // few rows, several panels: the panel split
    { 1, 1, 12, 32, 2, 0.5f, 1.0f },       // exactly one tile
    { 0, 1, 1, 1, 1, 0.0f, 1.0f },
    { 0, 1, 300, 96, 40, 0.0f, 1.0f },     // enough products for the threads (>= 2^20 multiply-adds)
    { 1, 0, 1030, 40, 30, 1.0f, 1.0f },    // A transposed with rows >= 4 KiB apart: packed, not read in place
    { 0, 1, 83, 83, 32, 0.0f, 0.17f },     // the attention's scores, scale * q k^T
    { 1, 0, 83, 32, 83, 1.0f, -2.5f },     // alpha with beta 1
    { 0, 0, 50, 40, 520, 0.5f, 0.25f },    // alpha over several K blocks
};
#define N_SHAPES (int)(sizeof shapes / sizeof *shapes)

static void test_paths(void) {
    static const char *paths[] = { "avx512", "openblas" };
    int tried = 0;
    for (int p = 0; p < 2; p++) {
        if (cpu_sgemm_use(paths[p]) != 0) { printf("  %s: not on this machine\n", paths[p]); continue; }
        tried++;
        double worst = 0;
        for (int i = 0; i < N_SHAPES; i++) {
            Case c = case_new(shapes[i]);
            float *C = case_run(&c);
            worst = fmax(worst, check_result(paths[p], &c, C));
            free(C);
            case_free(&c);
        }
        printf("  %s (%s): worst error %.3g x the bound\n", paths[p], cpu_sgemm_path(), worst);
    }
    CHECK(tried == 2 || (tried == 1 && !__builtin_cpu_supports("avx512f")), "a path this machine has was refused");
    cpu_sgemm_use("avx512");   // back to the default where the machine has it
}

// The kernel's sums have one order whatever the thread count: one thread
// and the machine's threads give the same bits (replay across thread counts).
static void test_threads_same_bits(void) {
    if (cpu_sgemm_use("avx512") != 0) SKIP("no AVX-512F on this processor: OpenBLAS's sums follow its own threads");
    int saved = omp_get_max_threads();
    for (int i = 0; i < N_SHAPES; i++) {
        Case c = case_new(shapes[i]);
        omp_set_num_threads(1);
        float *C1 = case_run(&c);
        omp_set_num_threads(saved > 1 ? saved : 2);
        float *Cn = case_run(&c);
        CHECK(memcmp(C1, Cn, sizeof(float) * c.s.M * c.ldc) == 0, "shape %d: one thread and %d differ", i,
              saved > 1 ? saved : 2);
        free(C1); free(Cn);
        case_free(&c);
    }
    omp_set_num_threads(saved);
}

// Called from inside a parallel region, each thread runs its own product
// with its own scratch: the results match the same products run alone.
static void test_reentrant(void) {
    enum { CALLS = 8 };
    Case c[CALLS];
    float *alone[CALLS], *inside[CALLS];
    for (int i = 0; i < CALLS; i++) {
        c[i] = case_new(shapes[i % N_SHAPES]);
        alone[i] = case_run(&c[i]);
    }
    #pragma omp parallel for num_threads(4) schedule(static, 1)
    for (int i = 0; i < CALLS; i++) inside[i] = case_run(&c[i]);
    for (int i = 0; i < CALLS; i++) {
        CHECK(memcmp(alone[i], inside[i], sizeof(float) * c[i].s.M * c[i].ldc) == 0, "call %d inside a parallel region differs",
              i);
        free(alone[i]); free(inside[i]);
        case_free(&c[i]);
    }
}

int main(void) {
    rng_seed(&rng, test_seed("test_gemm_f32"));
    RUN(test_paths);
    RUN(test_threads_same_bits);
    RUN(test_reentrant);
    return test_summary();
}
