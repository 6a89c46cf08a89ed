// lab/adamw.cu: the optimizer step's variants (see lab.cuh).
//   v1: as first written: a scalar launch per parameter tensor, the norm's
//       partial sums read back by the host, which adds them, clips and
//       passes the scale to each launch
//   v2: the partial sums and then one launch over the whole flat range,
//       norm, clip, finiteness check and decay spans read on the device,
//       128-bit accesses (the trainer's, kernels/cuda/optim_cuda.cu)
// Both against a double-precision loop on the host.
#include <vector>
#include "autograd/graph.h"               // defines: REDUCE_CHUNK
#include "kernels/cuda/lab/lab.cuh"
#include "kernels/cuda/optim_cuda.h"      // defines: adamw_flat_cuda, grad_sumsq_partials_cuda, AdamWStep, AdamWSpan

namespace {

const float B1 = 0.9f, B2 = 0.95f, EPS = 1e-8f, WD = 0.1f, LR = 1e-3f, MAX_NORM = 1.0f, DIV = 2.0f;

__global__ void adamw_v1(float *p, const float *grad, float *m, float *v, size_t n, float scale, float decay, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i] * scale;
    float mi = B1 * m[i] + (1.0f - B1) * g, vi = B2 * v[i] + (1.0f - B2) * g * g;
    m[i] = mi;
    v[i] = vi;
    p[i] -= LR * ((mi / bc1) / (sqrtf(vi / bc2) + EPS) + decay * p[i]);
}

void run(Lab &lab, size_t n, int tensors, int reps) {
    printf(" %zu parameters in %d tensors\n", n, tensors);
    std::vector<float> p(n), g(n), m(n), v(n);
    for (size_t i = 0; i < n; i++) { p[i] = lab_normal(lab); g[i] = 3.0f * lab_normal(lab); m[i] = 0.1f * lab_normal(lab); v[i] = fabsf(lab_normal(lab)); }
    std::vector<AdamWSpan> spans;
    for (int t = 0; t < tensors; t++) spans.push_back(AdamWSpan{ n * t / tensors, n * (t + 1) / tensors, t % 2 });
    // The reference.
    double sumsq = 0;
    for (float x : g) sumsq += (double)x * x;
    double norm = sqrt(sumsq) / DIV;
    float scale = (norm > MAX_NORM ? (float)(MAX_NORM / (norm + 1e-6)) : 1.0f) / DIV, bc1 = 1 - powf(B1, 3), bc2 = 1 - powf(B2, 3);
    std::vector<float> ref = p;
    for (const AdamWSpan &s : spans)
        for (size_t i = s.lo; i < s.hi; i++) {
            double gi = (double)g[i] * scale, mi = B1 * m[i] + (1 - B1) * gi, vi = B2 * v[i] + (1 - B2) * gi * gi;
            ref[i] = (float)(p[i] - LR * ((mi / bc1) / (sqrt(vi / bc2) + EPS) + (s.decay ? WD : 0.0) * p[i]));
        }
    float *dp = lab_upload(p), *dg = lab_upload(g), *dm = lab_upload(m), *dv = lab_upload(v);
    size_t chunks = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    double *dpart = lab_upload(std::vector<double>(chunks, 0.0));
    AdamWSpan *dspans = lab_upload(spans);
    AdamWStep st = { LR, bc1, bc2, MAX_NORM, DIV, 1, 0, 0, {} };
    AdamWStep *dstep = lab_upload(std::vector<AdamWStep>(1, st));
    cudaStream_t s = cuda_compute_stream();
    auto reset = [&] {
        CUDA_CHECK(cudaMemcpyAsync(dp, p.data(), n * 4, cudaMemcpyHostToDevice, s));
        CUDA_CHECK(cudaMemcpyAsync(dm, m.data(), n * 4, cudaMemcpyHostToDevice, s));
        CUDA_CHECK(cudaMemcpyAsync(dv, v.data(), n * 4, cudaMemcpyHostToDevice, s));
        CUDA_CHECK(cudaStreamSynchronize(s));
    };
    auto v1 = [&] {
        grad_sumsq_partials_cuda(dg, n, dpart);
        std::vector<double> part = lab_download(dpart, chunks);   // the host read v2 removes
        double ss = 0;
        for (double x : part) ss += x;
        double nn = sqrt(ss) / DIV;
        float sc = (nn > MAX_NORM ? (float)(MAX_NORM / (nn + 1e-6)) : 1.0f) / DIV;
        for (const AdamWSpan &sp : spans) {
            size_t len = sp.hi - sp.lo;
            adamw_v1<<<(unsigned)((len + 255) / 256), 256, 0, s>>>(dp + sp.lo, dg + sp.lo, dm + sp.lo, dv + sp.lo, len, sc,
                                                                    sp.decay ? WD : 0.0f, bc1, bc2);
        }
        CUDA_CHECK_LAUNCH();
    };
    auto v2 = [&] {
        grad_sumsq_partials_cuda(dg, n, dpart);
        adamw_flat_cuda(dp, dg, dm, dv, n, dspans, (int)spans.size(), dpart, chunks, B1, B2, EPS, WD, dstep);
    };
    v1();
    lab_compare(lab, "v1 (a launch per tensor, the host in between)", ref, lab_download(dp, n), 1e-5, 1e-7);
    reset();
    v2();
    lab_compare(lab, "v2 (one launch, on the device; the trainer's)", ref, lab_download(dp, n), 1e-5, 1e-7);
    AdamWStep got = lab_download(dstep, 1)[0];
    lab_compare(lab, "v2: the norm", std::vector<float>(1, (float)norm), std::vector<float>(1, got.norm), 1e-6, 0);
    // A non-finite loss: nothing moves.
    st.loss_finite = 0;
    CUDA_CHECK(cudaMemcpyAsync(dstep, &st, sizeof st, cudaMemcpyHostToDevice, s));
    reset();
    v2();
    lab_compare(lab, "v2: a skipped step leaves the weights", p, lab_download(dp, n), 0, 0);
    st.loss_finite = 1;
    CUDA_CHECK(cudaMemcpyAsync(dstep, &st, sizeof st, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    if (!lab.check_only) {
        double bytes = 7.0 * n * sizeof(float);   // read p, g, m, v; write p, m, v
        lab_report("v1", lab_time_ms(v1, reps), bytes);
        lab_report("v2 (the trainer's)", lab_time_ms(v2, reps), bytes);
    }
    for (void *q : { (void *)dp, (void *)dg, (void *)dm, (void *)dv, (void *)dpart, (void *)dspans, (void *)dstep }) CUDA_CHECK(cudaFree(q));
}

}  // namespace

int main(int argc, char **argv) {
    Lab lab = lab_open(argc, argv, "lab/adamw");
    run(lab, 1001, 7, 0);     // odd sizes: one float per access, spans ending inside vectors
    run(lab, 4096, 5, 0);
    if (!lab.check_only) {
        run(lab, 850000, 60, 50);      // the demo student
        run(lab, 38500000, 150, 20);   // urban4's
    }
    return lab_close(lab, "lab/adamw");
}
