// gemm_f32.c: the fp32 matrix products of the CPU (see gemm_f32.h).
//
// The AVX-512 kernel, in the manner of the BLIS/GotoBLAS loops:
//   B, a block of KC rows of k at a time, is packed into panels of NR = 32
//   columns, Bp[panel][k][32] (two zmm per k, zero past N), by all threads;
//   A is read where it lies, a tile of MR = 12 rows at a time: per k the
//   micro-kernel broadcasts op(A)[i0 + r, k] for the 12 rows straight from
//   A (12 streams of consecutive floats when A is not transposed, one
//   stretch of 12 when it is). Only a ragged last tile, and a transposed A
//   whose rows are 4 KiB or more apart (each k would revisit the same L1
//   sets), are packed first, into Ap[k][12] with zeros past M.
// The micro-kernel keeps a 12 x 32 tile of C in 24 zmm accumulators; per k
// it loads the panel's two vectors and broadcasts 12 A values: 24 FMAs per
// 14 loads, so it is bound by the FMA units. 24 accumulators hide the FMA
// latency (4 cycles, 2 units: 8 needed) with room to spare, and with the
// two B vectors and the broadcast they fit the 32 zmm registers.
// A KC = 256 block keeps a panel (32 KiB) in L1 and the packed B of the
// student's products (N <= 512: 512 KiB) in L2. Reading A in place rather
// than packing it took the demo's products from about 215-240 GFLOP/s on
// one thread to 250-260 (bench_gemm_f32): with few panels per tile (N =
// 128) the packing of A was an eighth of the work.
//
// Threads take work items: a tile of MR rows and a group of panels, tile-
// major. Most of the student's products have thousands of rows (a panel
// group is then all panels, each thread a run of tiles); the weight
// gradients have few (M = C or 4C), so their panels are split too, for
// enough items to balance two or more threads. Each K block's partial sums
// are added into C in fp32; every C element's sum has one order, the same
// each run and for any thread count.
#include "kernels/cpu/gemm_f32.h"
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MR 12     // rows of C per micro-kernel tile
#define NR 32     // columns of C per micro-kernel tile (two zmm)
#define KC 256    // rows of k per packed block

// Below this many multiply-adds a product runs on one thread: waking the
// others costs more than they save (the attention's per-head products).
#define PARALLEL_MIN_MACS (1L << 20)

typedef enum { PATH_AVX512 = 0, PATH_OPENBLAS } SgemmPath;
static const char *const path_names[] = { "AVX-512 kernel", "OpenBLAS sgemm" };
static int chosen = -1;   // the SgemmPath in use, -1 before the first call

// The named path ("avx512", "openblas"), or -1 when this machine lacks it
// or the name is neither.
static int available(const char *name) {
    if (!strcmp(name, "avx512")) return __builtin_cpu_supports("avx512f") ? PATH_AVX512 : -1;
    if (!strcmp(name, "openblas")) return PATH_OPENBLAS;
    return -1;
}

static SgemmPath path(void) {
    int p = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (p >= 0) return (SgemmPath)p;
    const char *force = getenv("DISTIL_SGEMM");
    if (force && *force) {
        if ((p = available(force)) < 0) {
            fprintf(stderr, "distil: error: DISTIL_SGEMM=%s: expected avx512 (needs the processor's AVX-512F) or "
                    "openblas, one this machine has\n", force);
            exit(2);
        }
    } else if ((p = available("avx512")) < 0) {
        p = PATH_OPENBLAS;
    }
    __atomic_store_n(&chosen, p, __ATOMIC_RELAXED);
    return (SgemmPath)p;
}

int cpu_sgemm_use(const char *name) {
    int p = available(name);
    if (p < 0) return -1;
    chosen = p;
    return 0;
}

const char *cpu_sgemm_path(void) { return path_names[path()]; }

// Scratch for the packed operands, one per calling thread (the attention
// calls from inside its parallel region): grows in the first step and is
// then reused, so the training step allocates nothing. Each thread's is
// also on a global list, so it stays reachable (no leak for LeakSanitizer
// while the thread lives), and a thread's exit frees it (the key's
// destructor).
typedef struct Scratch { float *p; size_t floats; struct Scratch *prev, *next; } Scratch;
static Scratch *scratch_all;
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local Scratch *scratch_mine;

static void scratch_free(void *arg) {
    Scratch *s = arg;
    pthread_mutex_lock(&scratch_lock);
    if (s->prev) s->prev->next = s->next;
    else scratch_all = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_mutex_unlock(&scratch_lock);
    free(s->p);
    free(s);
}

static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_free); }

static float *workspace(size_t floats) {
    Scratch *s = scratch_mine;
    if (s && floats <= s->floats) return s->p;
    if (!s) {
        pthread_once(&scratch_once, scratch_key_make);
        if (!(s = calloc(1, sizeof *s))) { fprintf(stderr, "distil: error: out of memory for product scratch\n"); exit(2); }
        pthread_mutex_lock(&scratch_lock);
        s->next = scratch_all;
        if (scratch_all) scratch_all->prev = s;
        scratch_all = s;
        pthread_mutex_unlock(&scratch_lock);
        pthread_setspecific(scratch_key, s);
        scratch_mine = s;
    }
    free(s->p);
    s->floats = (floats + 1023) / 1024 * 1024;
    s->p = aligned_alloc(64, s->floats * sizeof(float));
    if (!s->p) { fprintf(stderr, "distil: error: out of memory for %zu bytes of product scratch\n", s->floats * 4); exit(2); }
    return s->p;
}

// dst (kb, W) = a strip of W lines [i0, i0 + W) of X over [k0, k0 + kb) of
// k, zero past line n: element (line c, k) at X[(k0 + k) ld + i0 + c] when
// X is stored k-major (kmajor), else at X[(i0 + c) ld + k0 + k]. A tile of
// A is such a strip of MR rows (k-major when A is transposed), a panel of
// B one of NR columns (k-major when B is not).
static void pack_strip(float *dst, const float *X, int ld, int kmajor, int n, int i0, int W, int k0, int kb) {
    int lines = n - i0 < W ? n - i0 : W;
    if (kmajor) {
        for (int k = 0; k < kb; k++) {
            const float *src = X + (size_t)(k0 + k) * ld + i0;
            float *d = dst + (size_t)k * W;
            int c = 0;
            for (; c < lines; c++) d[c] = src[c];
            for (; c < W; c++) d[c] = 0.0f;
        }
    } else {
        for (int c = 0; c < W; c++) {
            if (c < lines) {
                const float *src = X + (size_t)(i0 + c) * ld + k0;
                for (int k = 0; k < kb; k++) dst[(size_t)k * W + c] = src[k];
            } else {
                for (int k = 0; k < kb; k++) dst[(size_t)k * W + c] = 0.0f;
            }
        }
    }
}

// Bp (panels, kb, NR) = rows [k0, k0 + kb) of op(B), zero past column N.
// An omp for: the threads of the enclosing region share it (or the one
// thread alone).
static void pack_b(float *Bp, const float *B, int ldb, int tb, int N, int k0, int kb, int panels) {
    #pragma omp for schedule(static)
    for (int pn = 0; pn < panels; pn++) pack_strip(Bp + (size_t)pn * kb * NR, B, ldb, !tb, N, pn * NR, NR, k0, kb);
}

// C tile (rows, cols) = alpha acc + scale C; scale 0 writes C without
// reading it. alpha 1 multiplies nothing (the same bits as no alpha).
__attribute__((target("avx512f"), always_inline))
static inline void store_tile(__m512 acc[MR][2], float *C, int ldc, int rows, int cols, float alpha, float scale) {
    __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
    __m512 a = _mm512_set1_ps(alpha), s = _mm512_set1_ps(scale);
    for (int r = 0; r < rows; r++) {
        float *c = C + (size_t)r * ldc;
        __m512 v0 = acc[r][0], v1 = acc[r][1];
        if (alpha != 1.0f) {
            v0 = _mm512_mul_ps(a, v0);
            v1 = _mm512_mul_ps(a, v1);
        }
        if (scale != 0.0f) {
            v0 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m0, c), v0);
            v1 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m1, c + 16), v1);
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

// C tile (rows <= MR, cols <= NR) = alpha op(A) Bp + scale C over kb steps
// of k, op(A)[r, k] at A[r rs + k ks]: A in place (rs = lda, ks = 1 as
// stored; rs = 1, ks = lda when transposed) or packed (rs = 1, ks = MR).
__attribute__((target("avx512f")))
static void micro_kernel(int kb, const float *A, size_t rs, size_t ks, const float *Bp, float *C, int ldc, int rows,
                         int cols, float alpha, float scale) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kb; k++) {
        __m512 b0 = _mm512_load_ps(Bp + (size_t)k * NR);
        __m512 b1 = _mm512_load_ps(Bp + (size_t)k * NR + 16);
        const float *a = A + (size_t)k * ks;
        #pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[(size_t)r * rs]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    store_tile(acc, C, ldc, rows, cols, alpha, scale);
}

static void gemm_avx512(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    int panels = (N + NR - 1) / NR, tiles = (M + MR - 1) / MR;
    int kb_max = K < KC ? K : KC;
    int parallel = !omp_in_parallel() && (long)M * N * K >= PARALLEL_MIN_MACS;
    int threads = parallel ? omp_get_max_threads() : 1;
    // Panel groups per tile: enough items for 8 per thread where the tiles
    // alone are fewer (the weight gradients), else 1.
    int groups = 1;
    if (threads > 1 && tiles < 8 * threads) groups = (8 * threads + tiles - 1) / tiles;
    if (groups > panels) groups = panels;
    int per_group = (panels + groups - 1) / groups;
    groups = (panels + per_group - 1) / per_group;
    int items = tiles * groups;
    // A in place (see the top): its element (i, k) at A[i rs + k ks].
    size_t rs = ta ? 1 : (size_t)lda, ks = ta ? (size_t)lda : 1;
    int direct_ok = !ta || (size_t)lda * sizeof(float) < 4096;
    size_t b_floats = (size_t)panels * kb_max * NR, a_floats = (size_t)MR * kb_max;
    float *Bp = workspace(b_floats + a_floats * threads);
    float *Ap_all = Bp + b_floats;
    #pragma omp parallel num_threads(threads) if (parallel)
    {
        float *Ap = Ap_all + (size_t)omp_get_thread_num() * a_floats;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kb = K - k0 < KC ? K - k0 : KC;
            float scale = k0 == 0 ? beta : 1.0f;   // later K blocks add into the first's sums
            pack_b(Bp, B, ldb, tb, N, k0, kb, panels);   // its omp for ends in a barrier
            int packed_tile = -1;
            #pragma omp for schedule(static)
            for (int it = 0; it < items; it++) {
                int t = it / groups, g = it % groups;
                int i0 = t * MR, rows = M - i0 < MR ? M - i0 : MR;
                int direct = rows == MR && direct_ok;
                if (!direct && t != packed_tile) { pack_strip(Ap, A, lda, ta, M, i0, MR, k0, kb); packed_tile = t; }
                const float *a0 = A + (size_t)i0 * rs + (size_t)k0 * ks;
                int p_end = (g + 1) * per_group < panels ? (g + 1) * per_group : panels;
                for (int pn = g * per_group; pn < p_end; pn++) {
                    int j0 = pn * NR, cols = N - j0 < NR ? N - j0 : NR;
                    const float *bp = Bp + (size_t)pn * kb * NR;
                    float *c = C + (size_t)i0 * ldc + j0;
                    if (direct) micro_kernel(kb, a0, rs, ks, bp, c, ldc, MR, cols, alpha, scale);
                    else micro_kernel(kb, Ap, 1, MR, bp, c, ldc, rows, cols, alpha, scale);
                }
            }   // the omp for's barrier: Bp is repacked only after every item used it
        }
    }
}

void cpu_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   // no products: C = beta C
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (path() == PATH_AVX512) {
        gemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
}

int cpu_sgemm_thread_invariant(void) { return path() == PATH_AVX512; }
