// gemm_bf16.c: the bf16 matrix products of the CPU (see gemm_bf16.h).
//
// The AVX512-BF16 kernel. vdpbf16ps adds, in each of 16 fp32 lanes, the two
// products of a pair of bf16 numbers: with A's pair (a[i, k], a[i, k + 1])
// broadcast to every lane and B's pairs (b[k, j], b[k + 1, j]) for 16
// columns j, one instruction advances a 1 x 16 strip of C by two steps of k.
// So both operands are packed once into bf16 pairs (rounded by f32_to_bf16,
// the rounding point, or read as they are when an activation is stored
// bf16 already, plan.h):
//   B, a block of KC rows of k at a time, into panels of 32 columns:
//     Bp[panel][k pair][32] (uint32: low half row k, high half row k + 1);
//   A, a tile of 12 rows at a time (per thread), Ap[k pair][12].
// Both are rounded a whole run at a time (a row of k, or of i or j), by
// loops compiled for AVX-512; only ragged edges go element by element.
// The micro-kernel keeps a 12 x 32 tile of C in 24 zmm accumulators, and
// per k pair loads two B vectors and broadcasts 12 A pairs: 24 vdpbf16ps
// per 14 loads, so it is bound by the arithmetic, not the loads, and 24
// independent sums cover the instruction's latency (with 8 x 32 tiles, 16
// sums, the demo's weight gradient ran at 0.96 of fp32's rate; at 12 x 32,
// 1.50, bench_gemm_bf16). Threads take tiles of 12 rows; each K block's
// partial sums are added into C in fp32. Zero padding (odd K, ragged
// edges) adds exact zeros.
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/cpu_ops.h"   // defines: cpu_scratch
#include <cblas.h>
#include <dlfcn.h>
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/tensor.h"   // defines: f32_to_bf16, bf16_to_f32
#include "kernels/cpu/gemm_f32.h"   // defines: cpu_sgemm

#define MR 12     // rows of C per micro-kernel tile
#define NR 32     // columns of C per micro-kernel tile (two zmm)
#define KC 512    // rows of k per packed block of B (256 pairs: a panel is 32 KiB)

typedef enum { PATH_SBGEMM = 0, PATH_AVX512BF16, PATH_SGEMM } Bf16Path;
static const char *const path_names[] = { "OpenBLAS cblas_sbgemm", "AVX512-BF16 kernel", "sgemm on bf16-rounded inputs" };

// OpenBLAS's signature, for the symbol found at run time (bfloat16 is uint16_t there).
typedef void (*SbgemmFn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, int, int, int, float,
                         const uint16_t *, int, const uint16_t *, int, float, float *, int);

static SbgemmFn sbgemm_fn;
static int chosen = -1;   // the Bf16Path in use, -1 before the first call

// The named path ("sbgemm", "avx512bf16", "sgemm"), or -1 when this
// machine lacks it or the name is none of them.
static int available(const char *name) {
    sbgemm_fn = (SbgemmFn)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    int has_avx = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    if (!strcmp(name, "sbgemm")) return sbgemm_fn ? PATH_SBGEMM : -1;
    if (!strcmp(name, "avx512bf16")) return has_avx ? PATH_AVX512BF16 : -1;
    if (!strcmp(name, "sgemm")) return PATH_SGEMM;
    return -1;
}

static Bf16Path path(void) {
    if (chosen >= 0) return (Bf16Path)chosen;
    const char *force = getenv("DISTIL_BF16_GEMM");
    if (force && *force) {
        if ((chosen = available(force)) < 0) {
            fprintf(stderr, "distil: error: DISTIL_BF16_GEMM=%s: expected sbgemm (needs an OpenBLAS with cblas_sbgemm), "
                    "avx512bf16 (needs the processor's AVX512-BF16) or sgemm, one this machine has\n", force);
            exit(2);
        }
        return (Bf16Path)chosen;
    }
    chosen = available("sbgemm");
    if (chosen < 0) chosen = available("avx512bf16");
    if (chosen < 0) chosen = PATH_SGEMM;
    return (Bf16Path)chosen;
}

int cpu_gemm_bf16_use(const char *name) {
    int p = available(name);
    if (p < 0) return -1;
    chosen = p;
    return 0;
}

const char *cpu_gemm_bf16_path(void) { return path_names[path()]; }

void cpu_round_bf16(float *x, long n) {
    #pragma omp parallel for if (n > 65536)
    for (long i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

// ---- OpenBLAS sbgemm, and the sgemm fallback -----------------------------------------------
// Element (r, c) of a stored matrix with row stride ld as bf16 bits: fp32
// rounded here (the rounding point), or bf16 already (is16: its producer
// rounded it, with the same bits).
static inline uint16_t bits_at(const void *src, int is16, int ld, int r, int c) {
    size_t at = (size_t)r * ld + c;
    return is16 ? ((const uint16_t *)src)[at] : f32_to_bf16(((const float *)src)[at]);
}

// The stored (rows, cols) matrix at src with row stride ld, rounded into a
// dense (rows, cols) copy: bf16 bits, or bf16 values as floats.
static void round_to_bf16(uint16_t *dst, const void *src, int is16, int rows, int cols, int ld) {
    #pragma omp parallel for if ((long)rows * cols > 65536)
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)r * cols + c] = bits_at(src, is16, ld, r, c);
}
static void round_to_f32(float *dst, const void *src, int is16, int rows, int cols, int ld) {
    #pragma omp parallel for if ((long)rows * cols > 65536)
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)r * cols + c] = bf16_to_f32(bits_at(src, is16, ld, r, c));
}

static void gemm_via_blas(Bf16Path p, int ta, int tb, int M, int N, int K, const void *A, int a16, int lda,
                          const void *B, int b16, int ldb, float beta, float *C, int ldc) {
    int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
    size_t na = (size_t)a_rows * a_cols, nb = (size_t)b_rows * b_cols;
    enum CBLAS_TRANSPOSE ca = ta ? CblasTrans : CblasNoTrans, cb = tb ? CblasTrans : CblasNoTrans;
    if (p == PATH_SBGEMM) {
        uint16_t *a16p = cpu_scratch(CPU_SCRATCH_BF16_PACK, (na + nb) * sizeof(uint16_t) + 64);
        uint16_t *b16p = a16p + (na + 31) / 32 * 32;
        round_to_bf16(a16p, A, a16, a_rows, a_cols, lda);
        round_to_bf16(b16p, B, b16, b_rows, b_cols, ldb);
        sbgemm_fn(CblasRowMajor, ca, cb, M, N, K, 1.0f, a16p, a_cols, b16p, b_cols, beta, C, ldc);
        return;
    }
    float *a32 = cpu_scratch(CPU_SCRATCH_BF16_PACK, (na + nb) * sizeof(float) + 64), *b32 = a32 + (na + 15) / 16 * 16;
    round_to_f32(a32, A, a16, a_rows, a_cols, lda);
    round_to_f32(b32, B, b16, b_rows, b_cols, ldb);
    cblas_sgemm(CblasRowMajor, ca, cb, M, N, K, 1.0f, a32, a_cols, b32, b_cols, beta, C, ldc);
}

// ---- the AVX512-BF16 kernel --------------------------------------------------------------
// op(A)[i, k] and op(B)[k, j] as bf16 bits, 0 outside the matrix (the padding).
static inline uint32_t a_at(const void *A, int a16, int lda, int ta, int M, int K, int i, int k) {
    if (i >= M || k >= K) return 0;
    return ta ? bits_at(A, a16, lda, k, i) : bits_at(A, a16, lda, i, k);
}
static inline uint32_t b_at(const void *B, int b16, int ldb, int tb, int K, int N, int k, int j) {
    if (k >= K || j >= N) return 0;
    return tb ? bits_at(B, b16, ldb, j, k) : bits_at(B, b16, ldb, k, j);
}

// The packers run only on the AVX512-BF16 path, so they are compiled for
// the AVX-512 the processor then has: their rounding loops vectorise 16
// lanes wide (the rest of this file is baseline x86-64).
#define PACK_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

// n floats rounded to bf16 bits: most of the packing's work when an operand is fp32.
PACK_TARGET static void round_run(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

// The bf16 bits of n consecutive elements at element offset `at` of X:
// rounded into run, or X's own when it is stored bf16.
static const uint16_t *bits_run(uint16_t *run, const void *X, int x16, size_t at, int n) {
    if (x16) return (const uint16_t *)X + at;
    round_run(run, (const float *)X + at, n);
    return run;
}

// Bp (panels, kp, NR) = the pairs of rows [k0, k0 + 2 kp) of op(B). A full
// panel (NR columns, 2 kp rows inside B) is rounded a run at a time: B as
// stored, two rows of k at a time (their NR values of j are consecutive);
// transposed, a column j at a time (its 2 kp values of k are). Edges take
// the element-wise path, with its zero padding.
PACK_TARGET static void pack_b(uint32_t *Bp, const void *B, int b16, int ldb, int tb, int K, int N, int k0, int kp,
                               int panels) {
    #pragma omp parallel for schedule(static)
    for (int pn = 0; pn < panels; pn++) {
        uint32_t *panel = Bp + (size_t)pn * kp * NR;
        int j0 = pn * NR;
        if (j0 + NR > N || k0 + 2 * kp > K) {
            for (int p = 0; p < kp; p++)
                for (int c = 0; c < NR; c++)
                    panel[(size_t)p * NR + c] = b_at(B, b16, ldb, tb, K, N, k0 + 2 * p, j0 + c)
                                              | b_at(B, b16, ldb, tb, K, N, k0 + 2 * p + 1, j0 + c) << 16;
        } else if (!tb) {
            uint16_t lo_run[NR], hi_run[NR];
            for (int p = 0; p < kp; p++) {
                size_t at = (size_t)(k0 + 2 * p) * ldb + j0;
                const uint16_t *lo = bits_run(lo_run, B, b16, at, NR), *hi = bits_run(hi_run, B, b16, at + ldb, NR);
                for (int c = 0; c < NR; c++) panel[(size_t)p * NR + c] = (uint32_t)lo[c] | (uint32_t)hi[c] << 16;
            }
        } else {
            uint16_t run[KC];
            for (int c = 0; c < NR; c++) {
                const uint16_t *bits = bits_run(run, B, b16, (size_t)(j0 + c) * ldb + k0, 2 * kp);
                for (int p = 0; p < kp; p++) panel[(size_t)p * NR + c] = (uint32_t)bits[2 * p] | (uint32_t)bits[2 * p + 1] << 16;
            }
        }
    }
}

// Ap (kp, MR) = the pairs of columns [k0, k0 + 2 kp) of rows [i0, i0 + MR) of op(A).
// A full tile (MR rows, 2 kp columns inside A) is rounded a run at a time:
// A as stored, row by row (each row's pairs are consecutive bf16 words);
// transposed, a row of k at a time (its MR values of i are consecutive).
// Edges take the element-wise path, with its zero padding.
PACK_TARGET static void pack_a(uint32_t *Ap, const void *A, int a16, int lda, int ta, int M, int K, int i0, int k0,
                               int kp) {
    if (i0 + MR > M || k0 + 2 * kp > K) {
        for (int p = 0; p < kp; p++)
            for (int r = 0; r < MR; r++)
                Ap[(size_t)p * MR + r] = a_at(A, a16, lda, ta, M, K, i0 + r, k0 + 2 * p)
                                       | a_at(A, a16, lda, ta, M, K, i0 + r, k0 + 2 * p + 1) << 16;
        return;
    }
    if (!ta) {
        uint16_t run[KC];
        for (int r = 0; r < MR; r++) {
            const uint16_t *bits = bits_run(run, A, a16, (size_t)(i0 + r) * lda + k0, 2 * kp);
            for (int p = 0; p < kp; p++) Ap[(size_t)p * MR + r] = (uint32_t)bits[2 * p] | (uint32_t)bits[2 * p + 1] << 16;
        }
        return;
    }
    for (int p = 0; p < kp; p++) {
        size_t at = (size_t)(k0 + 2 * p) * lda + i0;
        uint32_t *dst = Ap + (size_t)p * MR;
        if (a16) {
            const uint16_t *lo = (const uint16_t *)A + at, *hi = lo + lda;
            for (int r = 0; r < MR; r++) dst[r] = (uint32_t)lo[r] | (uint32_t)hi[r] << 16;
        } else {
            const float *lo = (const float *)A + at, *hi = lo + lda;
            for (int r = 0; r < MR; r++) dst[r] = (uint32_t)f32_to_bf16(lo[r]) | (uint32_t)f32_to_bf16(hi[r]) << 16;
        }
    }
}

// C tile (rows <= MR, cols <= NR) = scale C + Ap Bp over kp pairs; scale 0
// writes C without reading it.
__attribute__((target("avx512f,avx512bf16")))
static void micro_kernel(int kp, const uint32_t *Ap, const uint32_t *Bp, float *C, int ldc, int rows, int cols, float scale) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp + (size_t)p * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(Bp + (size_t)p * NR + 16);
        #pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)Ap[(size_t)p * MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
    __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
    __m512 s = _mm512_set1_ps(scale);
    for (int r = 0; r < rows; r++) {
        float *c = C + (size_t)r * ldc;
        if (scale != 0.0f) {
            acc[r][0] = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m0, c), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m1, c + 16), acc[r][1]);
        }
        _mm512_mask_storeu_ps(c, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + 16, m1, acc[r][1]);
    }
}

static void gemm_avx512bf16(int ta, int tb, int M, int N, int K, const void *A, int a16, int lda, const void *B,
                            int b16, int ldb, float beta, float *C, int ldc) {
    int panels = (N + NR - 1) / NR, tiles = (M + MR - 1) / MR, threads = omp_get_max_threads();
    int kp_max = KC / 2;
    size_t b_words = (size_t)panels * kp_max * NR, a_words = (size_t)MR * kp_max;
    uint32_t *Bp = cpu_scratch(CPU_SCRATCH_BF16_PACK, (b_words + a_words * threads) * sizeof(uint32_t) + 64);
    uint32_t *Ap_all = Bp + b_words;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kb = K - k0 < KC ? K - k0 : KC, kp = (kb + 1) / 2;
        float scale = k0 == 0 ? beta : 1.0f;   // later K blocks add into the first's sums
        pack_b(Bp, B, b16, ldb, tb, k0 + kb, N, k0, kp, panels);
        #pragma omp parallel
        {
            uint32_t *Ap = Ap_all + (size_t)omp_get_thread_num() * a_words;
            #pragma omp for schedule(static)
            for (int t = 0; t < tiles; t++) {
                int i0 = t * MR, rows = M - i0 < MR ? M - i0 : MR;
                pack_a(Ap, A, a16, lda, ta, M, k0 + kb, i0, k0, kp);
                for (int pn = 0; pn < panels; pn++) {
                    int j0 = pn * NR, cols = N - j0 < NR ? N - j0 : NR;
                    micro_kernel(kp, Ap, Bp + (size_t)pn * kp * NR, C + (size_t)i0 * ldc + j0, ldc, rows, cols, scale);
                }
            }
        }
    }
}

void cpu_gemm_bf16_mixed(int trans_a, int trans_b, int M, int N, int K, const void *A, int a_bf16, int lda,
                         const void *B, int b_bf16, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   // no products: C = beta C
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    Bf16Path p = path();
    if (p == PATH_AVX512BF16) gemm_avx512bf16(trans_a, trans_b, M, N, K, A, a_bf16, lda, B, b_bf16, ldb, beta, C, ldc);
    else gemm_via_blas(p, trans_a, trans_b, M, N, K, A, a_bf16, lda, B, b_bf16, ldb, beta, C, ldc);
}

void cpu_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc) {
    cpu_gemm_bf16_mixed(trans_a, trans_b, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc);
}

void cpu_gemm_bf16_out(int trans_a, int trans_b, int M, int N, int K, const void *A, int a_bf16, int lda,
                       const void *B, int b_bf16, int ldb, const float *bias, uint16_t *C) {
    // The fp32 sums need their own scratch: the product's holds the packed
    // operands meanwhile.
    size_t n = (size_t)(M > 0 ? M : 0) * (N > 0 ? N : 0);
    float *sums = cpu_scratch(CPU_SCRATCH_BF16_SUMS, n * sizeof(float));
    cpu_gemm_bf16_mixed(trans_a, trans_b, M, N, K, A, a_bf16, lda, B, b_bf16, ldb, 0.0f, sums, N);
    #pragma omp parallel for if (n > 65536)
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float v = sums[(size_t)i * N + j];
            C[(size_t)i * N + j] = f32_to_bf16(bias ? v + bias[j] : v);
        }
}

void cpu_gemm(int bf16, int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    if (bf16) cpu_gemm_bf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    else cpu_sgemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

const char *cpu_gemm_path(int bf16) { return bf16 ? cpu_gemm_bf16_path() : cpu_sgemm_path(); }

// The AVX-512 kernels give every C element's sum one order for any thread
// count; OpenBLAS's sgemm and sbgemm split k by threads.
int cpu_gemm_thread_invariant(int bf16) {
    return bf16 ? path() == PATH_AVX512BF16 : cpu_sgemm_thread_invariant();
}

void cpu_gemm_stored(int bf16, int trans_a, int trans_b, int M, int N, int K, const void *A, int a_bf16, int lda,
                     const void *B, int b_bf16, int ldb, float beta, float *C, int ldc) {
    if (a_bf16 || b_bf16) cpu_gemm_bf16_mixed(trans_a, trans_b, M, N, K, A, a_bf16, lda, B, b_bf16, ldb, beta, C, ldc);
    else cpu_gemm(bf16, trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
