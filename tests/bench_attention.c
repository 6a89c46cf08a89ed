// bench_attention.c: the attention op, forward + backward, at T = 83 (the
// demo), 512 and 2,931 (recipes/urban4.yaml) with the urban4 student's heads
// (8 of 64 channels, one sample), in both mask modes. Beside it, in the same
// run:
//   - v1, the kernel this op replaced (kept here as the reference twin):
//     per-row dot products, every (B, H, T, T) probability saved;
//   - PyTorch's scaled_dot_product_attention on the CPU with the same mask
//     and threads (scripts/bench_attention_torch.py), when torch imports.
// Printed: milliseconds (median of the repetitions), the bytes each keeps
// for backward, and the ratios. `bench_attention T...` runs other lengths.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "autograd/graph.h"
#include "autograd/ops.h"
#include "autograd/rng.h"

enum { B = 1, H = 8, HS = 64, C = H * HS };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, n, sizeof *t, cmp_double);
    return t[n / 2];
}

// Repetitions for about the same total time at every length.
static int reps_for(int T) { return T <= 128 ? 41 : T <= 1024 ? 11 : 5; }

// The model's layout at this length: image, ego and command tokens (the
// prefix), then the trace (16 tokens at the demo's length, else up to 128),
// then the action query.
static int prefix_for(int T) {
    int trace = T <= 128 ? 16 : (T - 1) / 4 < 128 ? (T - 1) / 4 : 128;
    return T - trace - 1;
}

// ---- v1: the replaced kernel, causal or prefix (visible_end as in ops.h) ----

typedef struct { int T, n_prefix; float scale; } V1;

static int v1_end(const V1 *d, int i) { return i + 1 > d->n_prefix ? i + 1 : d->n_prefix; }

static float v1_dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void v1_axpy(float alpha, const float *x, float *y, int n) {
    #pragma omp simd
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

// qkv (B, T, 3C), y (B, T, C), probs (B, H, T, T).
static void v1_forward(const V1 *d, const float *qkv, float *y, float *probs) {
    int T = d->T;
    size_t stride = 3 * (size_t)C;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *base = qkv + (size_t)b * T * stride + (size_t)h * HS;
            for (int t = 0; t < T; t++) {
                float *p = probs + (((size_t)b * H + h) * T + t) * T;
                float *o = y + ((size_t)b * T + t) * C + (size_t)h * HS;
                int end = v1_end(d, t);
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < end; j++) {
                    p[j] = d->scale * v1_dot(base + t * stride, base + C + j * stride, HS);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = end; j < T; j++) p[j] = 0.0f;
                for (int j = 0; j < end; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
                memset(o, 0, HS * sizeof *o);
                for (int j = 0; j < end; j++) {
                    p[j] /= sum;
                    v1_axpy(p[j], base + 2 * C + j * stride, o, HS);
                }
            }
        }
}

static void v1_backward(const V1 *d, const float *qkv, const float *y, const float *dy, const float *probs, float *dqkv) {
    int T = d->T;
    size_t stride = 3 * (size_t)C;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t off = (size_t)b * T * stride + (size_t)h * HS;
            const float *q = qkv + off, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
            for (int t = 0; t < T; t++) {
                size_t row = ((size_t)b * T + t) * C + (size_t)h * HS;
                const float *p = probs + (((size_t)b * H + h) * T + t) * T;
                float p_dp = v1_dot(dy + row, y + row, HS);
                for (int j = 0; j < v1_end(d, t); j++) {
                    float dp = v1_dot(dy + row, v + j * stride, HS);
                    float ds = p[j] * (dp - p_dp) * d->scale;
                    v1_axpy(p[j], dy + row, dv + j * stride, HS);
                    v1_axpy(ds, k + j * stride, dq + t * stride, HS);
                    v1_axpy(ds, q + t * stride, dk + j * stride, HS);
                }
            }
        }
}

static double v1_ms(int T, int n_prefix, const float *qkv, const float *dy, size_t *saved_bytes) {
    V1 d = { T, n_prefix, 1.0f / sqrtf((float)HS) };
    size_t n_probs = (size_t)B * H * T * T;
    float *y = malloc(sizeof(float) * B * T * C), *dqkv = malloc(sizeof(float) * B * T * 3 * C);
    float *probs = malloc(sizeof(float) * n_probs);
    *saved_bytes = n_probs * sizeof(float);
    int reps = reps_for(T);
    double t[64];
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        v1_forward(&d, qkv, y, probs);
        memset(dqkv, 0, sizeof(float) * B * T * 3 * C);
        v1_backward(&d, qkv, y, dy, probs, dqkv);
        if (r > 0) t[r - 1] = now() - t0;   // the first is a warm-up
    }
    free(y); free(dqkv); free(probs);
    return 1e3 * median(t, reps);
}

// ---- the op ------------------------------------------------------------------

static double op_ms(int T, int mode, int n_prefix, const float *qkv_values, const float *dy, size_t *saved_bytes) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *qkv = graph_param(g, "qkv", 3, (int[]){ B, T, 3 * C }, INIT_ZEROS, 0, 0);
    Tensor *mask = graph_input(g, "key_mask", DT_F32, 2, (int[]){ B, T });
    Tensor *y = mode == ATTN_PREFIX ? op_attention_prefix(g, qkv, mask, H, n_prefix) : op_attention(g, qkv, mask, H);
    if (graph_plan(g)) exit(1);
    memcpy(qkv->data, qkv_values, sizeof(float) * qkv->numel);
    float *m = mask->data;
    for (int i = 0; i < B * T; i++) m[i] = 1.0f;
    *saved_bytes = y->saved_numel * sizeof(float);
    int reps = reps_for(T);
    double t[64];
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        graph_forward(g);
        graph_zero_grad(g);
        graph_backward_seeded(g, y, dy);
        if (r > 0) t[r - 1] = now() - t0;
    }
    graph_free(g);
    return 1e3 * median(t, reps);
}

// ---- the PyTorch peer -----------------------------------------------------------

static char torch_version[256];   // "2.1.0 F.scaled_dot_product_attention", from the script

// Milliseconds from scripts/bench_attention_torch.py, or -1 with the reason
// in `why` (torch missing, the script failing).
static double torch_ms(int T, int mode, int n_prefix, int threads, char *why, size_t why_len) {
    const char *python = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    char cmd[512], line[256];
    snprintf(cmd, sizeof cmd, "%s scripts/bench_attention_torch.py --B %d --H %d --hs %d --T %d --mode %s --n-prefix %d "
             "--threads %d --reps %d 2>&1", python, B, H, HS, T, mode == ATTN_PREFIX ? "prefix" : "causal", n_prefix,
             threads, reps_for(T));
    FILE *p = popen(cmd, "r");
    if (!p) { snprintf(why, why_len, "cannot run %s", python); return -1; }
    double ms = -1;
    why[0] = 0;
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "torch_ms %lf", &ms) == 1) continue;
        if (strncmp(line, "torch_version ", 14) == 0) {
            snprintf(torch_version, sizeof torch_version, "%s", line + 14);
            torch_version[strcspn(torch_version, "\n")] = 0;
            continue;
        }
        if (strncmp(line, "torch: ", 7) == 0 && !why[0]) snprintf(why, why_len, "%s", line + 7);
        else if (!why[0]) snprintf(why, why_len, "%s", line);
    }
    int rc = pclose(p);
    if (ms < 0 && !why[0]) snprintf(why, why_len, "scripts/bench_attention_torch.py exited %d", rc);
    why[strcspn(why, "\n")] = 0;
    return ms;
}

static void bench_length(int T, int threads, int use_torch) {
    size_t n = (size_t)B * T * 3 * C;
    float *qkv = malloc(n * sizeof *qkv), *dy = malloc(n / 3 * sizeof *dy);
    Rng rng;
    rng_seed(&rng, 7);
    for (size_t i = 0; i < n; i++) qkv[i] = rng_normal(&rng);
    for (size_t i = 0; i < n / 3; i++) dy[i] = rng_normal(&rng);
    int n_prefix = prefix_for(T);
    for (int mode = ATTN_CAUSAL; mode <= ATTN_PREFIX; mode++) {
        int np = mode == ATTN_PREFIX ? n_prefix : 0;
        size_t op_saved, v1_saved;
        double ms = op_ms(T, mode, np, qkv, dy, &op_saved);
        double v1 = v1_ms(T, np, qkv, dy, &v1_saved);
        printf("  T=%-5d %-6s n_prefix=%-5d  flash %9.2f ms  saved %9.1f KiB | v1 %9.2f ms  saved %9.1f KiB  (v1/flash %.2fx time, %.0fx bytes)",
               T, mode == ATTN_PREFIX ? "prefix" : "causal", np, ms, op_saved / 1024.0, v1, v1_saved / 1024.0, v1 / ms,
               (double)v1_saved / op_saved);
        if (use_torch) {
            char why[256];
            double tm = torch_ms(T, mode, np, threads, why, sizeof why);
            if (tm > 0) printf(" | torch SDPA %9.2f ms  (torch/flash %.2fx)", tm, tm / ms);
            else printf(" | torch: %s", why);
        }
        printf("\n");
        fflush(stdout);
    }
    free(qkv); free(dy);
}

int main(int argc, char **argv) {
    int threads = omp_get_max_threads();
    printf("bench_attention: fused attention forward+backward, fp32, CPU, %d threads; B=%d H=%d head size %d; "
           "median ms; saved = what backward keeps\n", threads, B, H, HS);
    // The torch peer once, to say which torch (or why none).
    char why[256];
    int use_torch = torch_ms(16, ATTN_CAUSAL, 0, threads, why, sizeof why) > 0;
    if (use_torch) printf("  peer: torch %s, %d threads\n", torch_version, threads);
    else printf("  (no PyTorch peer: %s)\n", why);
    static const int lengths[] = { 83, 512, 2931 };
    if (argc > 1)
        for (int i = 1; i < argc; i++) bench_length(atoi(argv[i]), threads, use_torch);
    else
        for (int i = 0; i < 3; i++) bench_length(lengths[i], threads, use_torch);
    return 0;
}
