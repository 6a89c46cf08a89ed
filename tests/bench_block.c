// bench_block.c: a transformer block, forward + backward, at the demo
// student's width (C = 128) and at C = 512, reported in GFLOP/s next to
// this machine's sgemm rate measured in the same run (the practical
// ceiling: the block is mostly matrix products). The ceiling is distil's
// own fp32 products (kernels/cpu/gemm_f32.h, what the block runs), with
// OpenBLAS's sgemm beside it.
#include <cblas.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>
#include <time.h>
#include "autograd/graph.h"
#include "autograd/ops.h"
#include "autograd/rng.h"
#include "kernels/cpu/gemm_f32.h"
#include "tests/tiny_models.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// GFLOP/s of (M x K) . (N x K)^T, best of `reps` after a warm-up: through
// distil's fp32 products (cpu_sgemm), or OpenBLAS's cblas_sgemm when blas.
static void product(int blas, int M, int N, int K, const float *a, const float *b, float *c) {
    if (blas) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    else cpu_sgemm(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
}
static double sgemm_gflops(int blas, int M, int N, int K, int reps) {
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *c = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < K * N; i++) b[i] = (float)(i % 5) * 0.1f;
    product(blas, M, N, K, a, b, c);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = now();
        product(blas, M, N, K, a, b, c);
        t = now() - t;
        if (t < best) best = t;
    }
    free(a); free(b); free(c);
    return 2.0 * M * N * K / best / 1e9;
}

// Forward + backward of one block on x [B, T, C]; returns best seconds.
static double block_seconds(int B, int T, int C, int H, int reps, double *flops) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *x = graph_param(g, "x", 3, (int[]){ B, T, C }, INIT_NORMAL, 1.0f, 0);
    Tensor *y = tiny_block(g, x, H, 4, "block");
    Tensor *loss = op_mean(g, y, OP_ALL);
    if (graph_plan(g)) exit(1);
    Rng rng;
    rng_seed(&rng, 1);
    graph_init_params(g, &rng);
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t = now();
        graph_forward(g);
        graph_zero_grad(g);
        graph_backward(g, loss);
        t = now() - t;
        if (r > 0 && t < best) best = t;   // the first is a warm-up
    }
    graph_free(g);
    // Matrix products: 24 B T C^2 forward (qkv 6, proj 2, mlp 16); the
    // attention's two products 4 B T^2 C (computed in full, masked after).
    // Backward costs twice the forward.
    *flops = 3.0 * (24.0 * B * T * C * C + 4.0 * B * T * T * C);
    return best;
}

int main(int argc, char **argv) {
    // --sgemm: only the ceiling, for scripts/bench_student.py's line.
    if (argc > 1 && strcmp(argv[1], "--sgemm") == 0) {
        printf("sgemm 1024^3 %.1f GFLOP/s (%s)\n", sgemm_gflops(0, 1024, 1024, 1024, 5), cpu_sgemm_path());
        return 0;
    }
    int threads = omp_get_max_threads();
    printf("bench_block: transformer block forward+backward, fp32, CPU, %d threads\n", threads);
    struct { int B, T, C, H; const char *what; } cases[] = {
        { 8, 96, 128, 4, "demo student (C=128)" },
        { 4, 128, 512, 8, "C=512" },
    };
    double peak = sgemm_gflops(0, 1024, 1024, 1024, 5);
    printf("  sgemm 1024^3 (the ceiling)           %8.1f GFLOP/s  distil's fp32 products (%s)\n", peak, cpu_sgemm_path());
    printf("  sgemm 1024^3 through OpenBLAS        %8.1f GFLOP/s\n", sgemm_gflops(1, 1024, 1024, 1024, 5));
    for (int i = 0; i < 2; i++) {
        double flops, s = block_seconds(cases[i].B, cases[i].T, cases[i].C, cases[i].H, 5, &flops);
        double rate = flops / s / 1e9;
        // The block's own largest product shape, for a like-for-like ceiling.
        double local = sgemm_gflops(0, cases[i].B * cases[i].T, 4 * cases[i].C, cases[i].C, 5);
        printf("  block %-22s B=%d T=%d  %7.2f ms  %8.1f GFLOP/s  = %.2f of sgemm 1024^3, %.2f of sgemm at its own shape (%.1f GFLOP/s)\n",
               cases[i].what, cases[i].B, cases[i].T, s * 1e3, rate, rate / peak, rate / local, local);
    }
    return 0;
}
