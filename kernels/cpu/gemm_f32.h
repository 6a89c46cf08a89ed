// gemm_f32.h: the fp32 matrix products of the CPU (kernels/cpu/gemm_f32.c).
//
// Two paths, the first this machine allows:
//   - an AVX-512 kernel of distil's own (12 x 32 tiles of C in 24 zmm
//     accumulators, operands packed per block of k), when the processor
//     has AVX-512F;
//   - OpenBLAS's cblas_sgemm.
// Why a kernel of our own: where OpenBLAS's AVX-512 kernels are not the
// ones it runs (a processor it does not know, or OPENBLAS_CORETYPE set to
// an AVX2 core, as on the machines distil is developed on), its sgemm runs
// at AVX2's rate; the student's products are 60-70% of a CPU step
// (docs/performance.md). DISTIL_SGEMM=avx512|openblas forces one (tests,
// benchmarks); a forced path the machine lacks is an error.
//
// Both sum each C element's K products in fp32 in a fixed order, so a run
// repeats bit for bit on one machine and path; the two paths differ in the
// order (results agree to fp32 rounding, not bits).
#pragma once

// C (M, N) = alpha op(A) op(B) + beta C, all row-major (BLAS's sgemm):
//   op(A) is (M, K): A stored (M, K) with row stride lda, or (K, M) when trans_a;
//   op(B) is (K, N): B stored (K, N) with row stride ldb, or (N, K) when trans_b.
// beta 0 writes C without reading it. Reentrant: called inside an OpenMP
// parallel region it runs on the calling thread alone, with that thread's
// own scratch; outside one it runs on the OpenMP threads.
void cpu_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc);

// The path cpu_sgemm takes here: "AVX-512 kernel" or "OpenBLAS sgemm".
const char *cpu_sgemm_path(void);
// Makes cpu_sgemm take the path named as DISTIL_SGEMM names it (tests,
// benchmarks). Returns 0, or -1 when this machine lacks it.
int cpu_sgemm_use(const char *name);
// 1 when the path in use sums in an order independent of the thread count
// (the AVX-512 kernel; OpenBLAS's sgemm splits k by threads).
int cpu_sgemm_thread_invariant(void);
