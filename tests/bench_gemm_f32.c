// bench_gemm_f32.c: distil's fp32 matrix products (kernels/cpu/gemm_f32.h)
// against OpenBLAS's cblas_sgemm at the same shapes, in the same run: the
// student's linear products (forward y = x W^T and the two backward
// products) at the demo's size and at d = 512, and the attention's per-head
// products at the demo's 83 tokens (one thread each, as the attention calls
// them). Prints GFLOP/s of both and the ratio, and which kernels OpenBLAS
// runs here (OPENBLAS_CORETYPE, when set, picks them).
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "kernels/cpu/gemm_f32.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct { const char *what; int ta, tb, M, N, K, one_thread; } Shape;

// Best of 5 timings of `reps` products.
static double best_seconds(int blas, Shape s, const float *A, const float *B, float *C, int reps) {
    int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    double best = 1e30;
    for (int trial = 0; trial < 5; trial++) {
        double t = now_s();
        for (int r = 0; r < reps; r++) {
            if (blas) cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.M, s.N,
                                  s.K, 1.0f, A, lda, B, ldb, 0.0f, C, s.N);
            else cpu_sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A, lda, B, ldb, 0.0f, C, s.N);
        }
        double dt = (now_s() - t) / reps;
        if (dt < best) best = dt;
    }
    return best;
}

int main(void) {
    const Shape shapes[] = {
        { "demo fc forward  (2656x128 . 512x128^T)", 0, 1, 2656, 512, 128, 0 },
        { "demo fc dx       (2656x512 . 512x128)", 0, 0, 2656, 128, 512, 0 },
        { "demo fc dW       (2656x512^T . 2656x128)", 1, 0, 512, 128, 2656, 0 },
        { "demo qkv forward (2656x128 . 384x128^T)", 0, 1, 2656, 384, 128, 0 },
        { "demo proj dW     (2656x128^T . 2656x128)", 1, 0, 128, 128, 2656, 0 },
        { "d512 fc forward  (2048x512 . 2048x512^T)", 0, 1, 2048, 2048, 512, 0 },
        { "d512 fc dx       (2048x2048 . 2048x512)", 0, 0, 2048, 512, 2048, 0 },
        { "d512 fc dW       (2048x2048^T . 2048x512)", 1, 0, 2048, 512, 2048, 0 },
        { "attention S = Q K^T, 1 thread (83x32 . 83x32^T)", 0, 1, 83, 83, 32, 1 },
        { "attention O = P V, 1 thread (83x83 . 83x32)", 0, 0, 83, 32, 83, 1 },
    };
    int n_shapes = (int)(sizeof shapes / sizeof *shapes);
    size_t most = 0;
    for (int i = 0; i < n_shapes; i++) {
        size_t a = (size_t)shapes[i].M * shapes[i].K, b = (size_t)shapes[i].K * shapes[i].N, c = (size_t)shapes[i].M * shapes[i].N;
        if (a > most) most = a;
        if (b > most) most = b;
        if (c > most) most = c;
    }
    float *A = malloc(most * sizeof(float)), *B = malloc(most * sizeof(float)), *C = malloc(most * sizeof(float));
    if (!A || !B || !C) { fprintf(stderr, "bench_gemm_f32: out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < most; i++) { A[i] = (float)rand() / RAND_MAX - 0.5f; B[i] = (float)rand() / RAND_MAX - 0.5f; }
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("bench_gemm_f32: distil's fp32 products (%s) against OpenBLAS sgemm (%s%s), %d threads\n", cpu_sgemm_path(),
           core ? "OPENBLAS_CORETYPE=" : "its own choice of kernels", core ? core : "", omp_get_max_threads());
    printf("  %-50s %12s %12s %8s\n", "product", "OpenBLAS GF/s", "distil GF/s", "distil/OpenBLAS");
    double log_sum = 0;
    int threads = omp_get_max_threads();
    for (int i = 0; i < n_shapes; i++) {
        Shape s = shapes[i];
        double flops = 2.0 * s.M * s.N * s.K;
        int reps = flops > 4e9 ? 2 : flops < 1e7 ? 2000 : 10;
        if (s.one_thread) omp_set_num_threads(1);
        double blas = best_seconds(1, s, A, B, C, reps), mine = best_seconds(0, s, A, B, C, reps);
        if (s.one_thread) omp_set_num_threads(threads);
        printf("  %-50s %12.1f %12.1f %8.2f\n", s.what, flops / blas / 1e9, flops / mine / 1e9, blas / mine);
        log_sum += __builtin_log(blas / mine);
    }
    printf("  geometric mean distil/OpenBLAS: %.2f\n", __builtin_exp(log_sum / n_shapes));
    free(A); free(B); free(C);
    return 0;
}
