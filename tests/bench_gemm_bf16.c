// bench_gemm_bf16.c: train.precision bf16's matrix products on this CPU
// against the fp32 products distil runs otherwise (cpu_sgemm,
// kernels/cpu/gemm_f32.h) at the same shapes, in the same run: the student's
// linear products (forward y = x W^T and the two backward products) at the
// demo's size and at d = 512. For each bf16 path this machine has
// (kernels/cpu/gemm_bf16.h) it prints GFLOP/s and the ratio to sgemm, and
// says whether bf16 is faster here. Rounding the operands is part of the
// bf16 time (the trainer pays it on every product).
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/gemm_f32.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct { const char *what; int ta, tb, M, N, K; } Shape;

// Best of 5 timings of `reps` products.
static double best_seconds(int bf16, Shape s, const float *A, const float *B, float *C, int reps) {
    int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    double best = 1e30;
    for (int trial = 0; trial < 5; trial++) {
        double t = now_s();
        for (int r = 0; r < reps; r++) {
            if (bf16) cpu_gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, A, lda, B, ldb, 0.0f, C, s.N);
            else cpu_gemm(0, s.ta, s.tb, s.M, s.N, s.K, A, lda, B, ldb, 0.0f, C, s.N);
        }
        double dt = (now_s() - t) / reps;
        if (dt < best) best = dt;
    }
    return best;
}

int main(void) {
    // (rows = micro-batch x tokens, features): the demo (32 x 83, 128, MLP 512) and d = 512.
    const Shape shapes[] = {
        { "demo fc forward  (2656x128 . 512x128^T)", 0, 1, 2656, 512, 128 },
        { "demo fc dx       (2656x512 . 512x128)", 0, 0, 2656, 128, 512 },
        { "demo fc dW       (2656x512^T . 2656x128)", 1, 0, 512, 128, 2656 },
        { "d512 fc forward  (2048x512 . 2048x512^T)", 0, 1, 2048, 2048, 512 },
        { "d512 fc dx       (2048x2048 . 2048x512)", 0, 0, 2048, 512, 2048 },
        { "d512 fc dW       (2048x2048^T . 2048x512)", 1, 0, 2048, 512, 2048 },
    };
    const char *paths[] = { "sbgemm", "avx512bf16", "sgemm" };
    size_t most = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        size_t a = (size_t)shapes[i].M * shapes[i].K, b = (size_t)shapes[i].K * shapes[i].N, c = (size_t)shapes[i].M * shapes[i].N;
        if (a > most) most = a;
        if (b > most) most = b;
        if (c > most) most = c;
    }
    float *A = malloc(most * sizeof(float)), *B = malloc(most * sizeof(float)), *C = malloc(most * sizeof(float));
    if (!A || !B || !C) { fprintf(stderr, "bench_gemm_bf16: out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < most; i++) { A[i] = (float)rand() / RAND_MAX - 0.5f; B[i] = (float)rand() / RAND_MAX - 0.5f; }
    for (int p = 0; p < 3; p++) {
        if (cpu_gemm_bf16_use(paths[p]) != 0) { printf("bf16 path %s: not on this machine\n", paths[p]); continue; }
        printf("bf16 path: %s; fp32: %s\n", cpu_gemm_bf16_path(), cpu_sgemm_path());
        printf("  %-44s %10s %10s %8s\n", "product", "fp32 GF/s", "bf16 GF/s", "bf16/fp32");
        double log_sum = 0;
        int n = 0;
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            Shape s = shapes[i];
            double flops = 2.0 * s.M * s.N * s.K;
            int reps = flops > 4e9 ? 2 : 10;
            double f32 = best_seconds(0, s, A, B, C, reps), b16 = best_seconds(1, s, A, B, C, reps);
            printf("  %-44s %10.1f %10.1f %8.2f\n", s.what, flops / f32 / 1e9, flops / b16 / 1e9, f32 / b16);
            log_sum += __builtin_log(f32 / b16);
            n++;
        }
        double mean = __builtin_exp(log_sum / n);
        printf("  geometric mean bf16/fp32: %.2f: bf16 is %s than fp32 on this CPU (%s)\n", mean,
               mean > 1.0 ? "faster" : "slower", cpu_gemm_bf16_path());
    }
    free(A); free(B); free(C);
    return 0;
}
