// lab.cuh: the kernel lab's harness (llm.c's dev/cuda habit). Each
// kernels/cuda/lab/<kernel>.cu keeps the variants of one kernel that were
// tried, from the first (naive) to the one the trainer uses, checks every
// variant against a plain C reference, and times each on the GPU.
//
//   build/cuda/lab/<kernel>            check, then time at the trainer's shapes
//   build/cuda/lab/<kernel> --check    check only, at small shapes (what the
//                                      CUDA simulator runs: kernels/cuda/sim/run.sh lab)
//
// Timings are CUDA events around `reps` back-to-back launches on one
// non-blocking stream, after a warm-up launch; each line gives the mean
// time per launch and the bandwidth it implies from the bytes a launch must
// move at the least. They mean something on a GPU only.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>
#include "autograd/tensor.h"              // defines: Tensor (the trainer's entry points take them)
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK

struct Lab {
    bool check_only;
    int failures;
    unsigned long long rng;
};

static inline Lab lab_open(int argc, char **argv, const char *name) {
    Lab lab = { false, 0, 0x9E3779B97F4A7C15ull };
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--check") == 0) lab.check_only = true;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "%s: no CUDA device\n", name);
        exit(2);
    }
    printf("%s: %s\n", name, lab.check_only ? "checking the variants at small shapes" : "checking and timing the variants");
    return lab;
}

// Standard normal draws (Box-Muller on a xorshift stream): reproducible inputs.
static inline float lab_normal(Lab &lab) {
    auto u = [&] {
        lab.rng ^= lab.rng << 13; lab.rng ^= lab.rng >> 7; lab.rng ^= lab.rng << 17;
        return ((lab.rng >> 11) + 0.5) / 9007199254740992.0;
    };
    double a = u(), b = u();
    return (float)(sqrt(-2.0 * log(a)) * cos(6.283185307179586 * b));
}

template <class T> static inline T *lab_upload(const std::vector<T> &host) {
    T *d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, host.size() * sizeof(T) + 16));
    CUDA_CHECK(cudaMemcpyAsync(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, cuda_compute_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_compute_stream()));
    return d;
}

template <class T> static inline std::vector<T> lab_download(const T *d, size_t n) {
    std::vector<T> host(n);
    CUDA_CHECK(cudaMemcpyAsync(host.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, cuda_compute_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_compute_stream()));
    return host;
}

// got against ref: |got - ref| <= rtol |ref| + atol everywhere; counts a
// failure and names the worst element otherwise.
static inline void lab_compare(Lab &lab, const char *variant, const std::vector<float> &ref, const std::vector<float> &got,
                               double rtol, double atol) {
    size_t worst = 0;
    double worst_ratio = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double bound = rtol * fabs((double)ref[i]) + atol, err = fabs((double)got[i] - ref[i]);
        double ratio = std::isnan(got[i]) != std::isnan(ref[i]) ? INFINITY : (err == 0 ? 0 : err / bound);
        if (ratio > worst_ratio) { worst_ratio = ratio; worst = i; }
    }
    if (worst_ratio <= 1.0) { printf("  ok    %s\n", variant); return; }
    printf("  FAIL  %s: element %zu: reference %.9g, got %.9g\n", variant, worst, (double)ref[worst], (double)got[worst]);
    lab.failures++;
}

// Mean milliseconds per launch of `launch` (which queues one launch on the
// compute stream), over reps launches after one warm-up.
template <class F> static inline double lab_time_ms(F launch, int reps) {
    cudaStream_t s = cuda_compute_stream();
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    launch();
    CUDA_CHECK(cudaEventRecord(start, s));
    for (int i = 0; i < reps; i++) launch();
    CUDA_CHECK(cudaEventRecord(stop, s));
    CUDA_CHECK(cudaEventSynchronize(stop));
    CUDA_CHECK(cudaGetLastError());
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    return ms / reps;
}

static inline void lab_report(const char *variant, double ms, double bytes) {
    printf("  %-44s %9.2f us  %7.1f GB/s\n", variant, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
}

static inline int lab_close(const Lab &lab, const char *name) {
    printf("%s: %s\n", name, lab.failures ? "a variant disagrees with the reference" : "every variant agrees with the reference");
    return lab.failures ? 1 : 0;
}

// A Tensor of the given shape over device data, for calling the trainer's
// entry points (<op>_forward_cuda) directly.
static inline Tensor lab_tensor(void *data, DType dt, int ndim, const int *shape) {
    Tensor t;
    memset(&t, 0, sizeof t);
    t.ndim = ndim;
    t.numel = 1;
    for (int i = 0; i < TENSOR_MAX_DIMS; i++) {
        t.shape[i] = i < ndim ? shape[i] : 1;
        t.numel *= (size_t)t.shape[i];
    }
    t.dtype = dt;
    t.device = DEV_CUDA;
    t.data = data;
    return t;
}
