// gemm_bf16.h: the matrix products of train.precision bf16 on the CPU
// (kernels/cpu/gemm_bf16.c).
//
// Every element of both operands is rounded to bf16 first (round to nearest
// even, autograd/tensor.h's f32_to_bf16: the same rounding point and bits as
// the CUDA backend's cuBLASLt products), then the products are summed in
// fp32. Three paths, the first this machine allows:
//   - OpenBLAS's cblas_sbgemm, when the loaded OpenBLAS was built with it
//     (BUILD_BFLOAT16; Debian 12's is not);
//   - an AVX512-BF16 kernel (vdpbf16ps: two bf16 products added into an
//     fp32 lane per instruction, twice fp32 FMA's rate), when the processor
//     has it;
//   - cblas_sgemm on the bf16-rounded values held in fp32 (same rounding
//     points and results up to summation order, no speed-up).
// DISTIL_BF16_GEMM=sbgemm|avx512bf16|sgemm forces one (tests, benchmarks);
// a forced path the machine lacks is an error.
#pragma once
#include <stdint.h>

// C (M, N) = beta C + op(A) op(B), all row-major:
//   op(A) is (M, K): A stored (M, K) with row stride lda, or (K, M) when trans_a;
//   op(B) is (K, N): B stored (K, N) with row stride ldb, or (N, K) when trans_b.
// beta 0 writes C without reading it. Not reentrant: one call at a time
// (the kernels run on one thread; OpenMP runs inside).
void cpu_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc);

// The same when an operand is already bf16 (a_bf16, b_bf16: A or B holds
// uint16_t bf16 bits, a train.precision bf16 activation, plan.h), read as
// it is: the same bits the rounding of its fp32 value would give.
void cpu_gemm_bf16_mixed(int trans_a, int trans_b, int M, int N, int K, const void *A, int a_bf16, int lda,
                         const void *B, int b_bf16, int ldb, float beta, float *C, int ldc);
// C (M, N) dense bf16 = f32_to_bf16(op(A) op(B) + bias), bias (N) or NULL:
// a product into a bf16 output (linear's), summed in fp32 and rounded once.
void cpu_gemm_bf16_out(int trans_a, int trans_b, int M, int N, int K, const void *A, int a_bf16, int lda,
                       const void *B, int b_bf16, int ldb, const float *bias, uint16_t *C);

// The path cpu_gemm_bf16 takes here: "OpenBLAS cblas_sbgemm",
// "AVX512-BF16 kernel" or "sgemm on bf16-rounded inputs".
const char *cpu_gemm_bf16_path(void);
// Makes cpu_gemm_bf16 take the path named as DISTIL_BF16_GEMM names it
// (tests, benchmarks). Returns 0, or -1 when this machine lacks it.
int cpu_gemm_bf16_use(const char *name);

// The product of either precision, as matmul and linear call it: bf16 = 1
// (OP_IATTR_BF16) goes through cpu_gemm_bf16, 0 through cpu_sgemm (gemm_f32.h).
void cpu_gemm(int bf16, int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);

// cpu_gemm with operands as stored: either one bf16 (a_bf16, b_bf16, only
// under bf16 = 1) goes through cpu_gemm_bf16_mixed, fp32 ones through cpu_gemm.
void cpu_gemm_stored(int bf16, int trans_a, int trans_b, int M, int N, int K, const void *A, int a_bf16, int lda,
                     const void *B, int b_bf16, int ldb, float beta, float *C, int ldc);

// Rounds n floats to bf16 precision in place (kept as fp32).
void cpu_round_bf16(float *x, long n);

// The path cpu_gemm takes for that precision (cpu_gemm_bf16_path or
// cpu_sgemm_path), and 1 when its sums do not depend on the OpenMP thread
// count (the AVX-512 kernels), so a run repeats bit for bit on another
// count: distil's other reductions are written to be independent of it.
const char *cpu_gemm_path(int bf16);
int cpu_gemm_thread_invariant(int bf16);
