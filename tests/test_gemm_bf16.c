// test_gemm_bf16.c: the CPU's bf16 matrix products (kernels/cpu/gemm_bf16.c),
// every path this machine has, against a double-precision product of the
// bf16-rounded operands: transposes, ragged edges (M, N not multiples of the
// tile, K odd and past one packed block), beta 0 over NaN garbage and beta 1.
//
// Tolerance: the path sums K products in fp32 (in pairs, in blocks), the
// reference in double from the same rounded inputs: the difference is
// ~sqrt(K) fp32 ulps of the sum of |terms|, so it is bounded by 1e-5 of
// that sum (K <= 1100: ~33 ulps x 3e-7 = 1e-5 at worst, typically 10x
// less). The unrounded product differs by ~2^-9 of the terms (bf16's
// rounding), so a path that skipped the rounding would fail by far.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"         // defines: Rng, rng_*
#include "autograd/tensor.h"      // defines: f32_to_bf16, bf16_to_f32
#include "kernels/cpu/gemm_bf16.h"
#include "tests/test.h"

static Rng rng;

static float bf(float x) { return bf16_to_f32(f32_to_bf16(x)); }

typedef struct { int ta, tb, M, N, K; float beta; } Shape;

// Checks the current path on one shape; returns the worst error / bound.
static double check_shape(const char *path, Shape s) {
    int a_rows = s.ta ? s.K : s.M, a_cols = s.ta ? s.M : s.K, b_rows = s.tb ? s.N : s.K, b_cols = s.tb ? s.K : s.N;
    int lda = a_cols + 3, ldb = b_cols + 1, ldc = s.N + 2;   // strides wider than the rows
    float *A = malloc(sizeof(float) * a_rows * lda), *B = malloc(sizeof(float) * b_rows * ldb);
    float *C = malloc(sizeof(float) * s.M * ldc), *C0 = malloc(sizeof(float) * s.M * ldc);
    for (int i = 0; i < a_rows * lda; i++) A[i] = rng_normal(&rng);
    for (int i = 0; i < b_rows * ldb; i++) B[i] = rng_normal(&rng);
    for (int i = 0; i < s.M * ldc; i++) C0[i] = s.beta == 0.0f ? NAN : rng_normal(&rng);
    memcpy(C, C0, sizeof(float) * s.M * ldc);
    cpu_gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, A, lda, B, ldb, s.beta, C, ldc);
    double worst = 0;
    int wi = 0, wj = 0;
    double plain_err = 0;   // how far the unrounded product is, for the message
    for (int i = 0; i < s.M; i++)
        for (int j = 0; j < s.N; j++) {
            double ref = 0, mag = 0, plain = 0;
            for (int k = 0; k < s.K; k++) {
                float a = s.ta ? A[k * lda + i] : A[i * lda + k], b = s.tb ? B[j * ldb + k] : B[k * ldb + j];
                ref += (double)bf(a) * bf(b);
                mag += fabs((double)bf(a) * bf(b));
                plain += (double)a * b;
            }
            double c0 = s.beta == 0.0f ? 0.0 : (double)s.beta * C0[i * ldc + j];
            ref += c0;
            plain += c0;
            mag += fabs(c0);
            double err = fabs(C[i * ldc + j] - ref) / (1e-5 * mag + 1e-30);
            plain_err = fmax(plain_err, fabs(plain - ref) / (1e-5 * mag + 1e-30));
            if (!(err <= worst)) { worst = isnan(err) ? INFINITY : err; wi = i; wj = j; }
        }
    CHECK(worst <= 1.0, "%s: ta %d tb %d M %d N %d K %d beta %g: C[%d, %d] is %.3g x the bound from the product of "
          "the rounded operands (the unrounded product is %.3g x away)", path, s.ta, s.tb, s.M, s.N, s.K, (double)s.beta,
          wi, wj, worst, plain_err);
    for (int i = 0; i < s.M; i++)   // the padding columns of C are untouched
        for (int j = s.N; j < ldc; j++)
            CHECK(memcmp(&C[i * ldc + j], &C0[i * ldc + j], sizeof(float)) == 0, "%s: C[%d, %d] past N was written", path, i, j);
    free(A); free(B); free(C); free(C0);
    return worst;
}

static void test_paths(void) {
    static const Shape shapes[] = {
        { 0, 1, 13, 37, 19, 0.0f },     // y = x W^T (linear forward): ragged, K odd
        { 0, 0, 29, 70, 64, 1.0f },     // dx += dy W
        { 1, 0, 40, 33, 1100, 1.0f },   // dW += dy^T x: K past one packed block (512)
        { 1, 1, 12, 32, 2, 0.5f },      // exactly one tile (12 x 32)
        { 1, 0, 8, 32, 2, 0.5f },       // a ragged tile
        { 0, 1, 1, 1, 1, 0.0f },
    };
    static const char *paths[] = { "sbgemm", "avx512bf16", "sgemm" };
    int tried = 0;
    for (int p = 0; p < 3; p++) {
        if (cpu_gemm_bf16_use(paths[p]) != 0) { printf("  %s: not on this machine\n", paths[p]); continue; }
        tried++;
        double worst = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) worst = fmax(worst, check_shape(paths[p], shapes[s]));
        printf("  %s (%s): worst error %.3g x the bound\n", paths[p], cpu_gemm_bf16_path(), worst);
    }
    CHECK(tried >= 1, "no bf16 product path at all");
}

// train.precision bf16's rounding point: the rounding of every operand element.
static void test_round(void) {
    float x[6] = { 1.0f, 1.00390625f, 1.01171875f, -2.5f, 3.3961776e38f, 1e-40f };
    float y[6];
    memcpy(y, x, sizeof x);
    cpu_round_bf16(y, 6);
    for (int i = 0; i < 6; i++) CHECK(y[i] == bf16_to_f32(f32_to_bf16(x[i])), "cpu_round_bf16(%g) = %g", (double)x[i], (double)y[i]);
    CHECK(y[1] == 1.0f && y[2] == 1.015625f, "ties to even: %g %g", (double)y[1], (double)y[2]);
}

int main(void) {
    rng_seed(&rng, test_seed("test_gemm_bf16"));
    RUN(test_paths);
    RUN(test_round);
    return test_summary();
}
