// lab/cross_entropy.cu: the cross-entropy kernels' variants (see lab.cuh).
//   forward  v1: one block per row, two passes (max, then sum of exp), scalar loads
//            v2: one block per row, one pass with an online (max, sum) pair,
//                128-bit loads (the trainer's, kernels/cuda/cross_entropy.cu)
//   backward v1: one thread per logit, row and column by 64-bit / and %
//            v2: one block per row, 128-bit loads and stores (the trainer's)
#include <vector>
#include "kernels/cuda/cuda_ops.h"        // defines: cross_entropy_forward_cuda, cross_entropy_backward_cuda
#include "kernels/cuda/lab/lab.cuh"

namespace {

// ---- v1, as first written ----------------------------------------------------------------
__global__ void ce_row_v1(float *lse, float *row_loss, const float *logits, const int *targets, int V) {
    size_t r = blockIdx.x;
    int t = targets[r];
    const float *row = logits + r * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, row[v]);
    mx = block_max(mx);
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(row[v] - mx);
    float log_s = logf(block_sum(s));
    if (threadIdx.x == 0) {
        lse[r] = mx + log_s;
        row_loss[r] = (mx - row[t]) + log_s;
    }
}

__global__ void ce_backward_v1(float *dlogits, const float *logits, const int *targets, const float *lse, float g,
                               size_t total, int V) {
    CUDA_GRID_STRIDE(i, total) {
        size_t r = i / V;
        int v = (int)(i % V), t = targets[r];
        float d = dlogits[i] + g * expf(logits[i] - lse[r]);
        if (v == t) d -= g;
        dlogits[i] = d;
    }
}

// ---- the reference ------------------------------------------------------------------------
void reference(const std::vector<float> &x, const std::vector<int> &t, int R, int V, std::vector<float> &lse,
               std::vector<float> &dx, double *loss) {
    double total = 0;
    lse.assign(R, 0.0f);
    dx.assign((size_t)R * V, 0.0f);
    for (int r = 0; r < R; r++) {
        const float *row = &x[(size_t)r * V];
        double mx = row[0], s = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
        for (int v = 0; v < V; v++) s += exp(row[v] - mx);
        lse[r] = (float)(mx + log(s));
        total += mx + log(s) - row[t[r]];
    }
    *loss = total / R;
    float g = 1.0f / (float)R;
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            dx[(size_t)r * V + v] = g * (float)exp(x[(size_t)r * V + v] - (double)lse[r]) - (v == t[r] ? g : 0.0f);
}

void run(Lab &lab, int R, int V, int reps) {
    printf(" R = %d rows, V = %d\n", R, V);
    std::vector<float> x((size_t)R * V);
    std::vector<int> t(R);
    for (auto &v : x) v = 2.0f * lab_normal(lab);
    for (int r = 0; r < R; r++) t[r] = (int)((unsigned)(r * 2654435761u) % (unsigned)V);
    std::vector<float> ref_lse, ref_dx;
    double ref_loss;
    reference(x, t, R, V, ref_lse, ref_dx, &ref_loss);

    float *dx_logits = lab_upload(x);
    int *d_t = lab_upload(t);
    float *d_saved = lab_upload(std::vector<float>(R + 1, 0.0f)), *d_out = lab_upload(std::vector<float>(1, 0.0f));
    float *d_rowloss = lab_upload(std::vector<float>(R, 0.0f));
    float *d_grad = lab_upload(std::vector<float>((size_t)R * V, 0.0f));
    float *d_seed = lab_upload(std::vector<float>(1, 1.0f));
    int lshape[2] = { R, V }, tshape[1] = { R }, oshape[1] = { 1 };
    Tensor logits = lab_tensor(dx_logits, DT_F32, 2, lshape), targets = lab_tensor(d_t, DT_I32, 1, tshape);
    Tensor out = lab_tensor(d_out, DT_F32, 1, oshape);
    logits.grad = d_grad;
    out.src[0] = &logits; out.src[1] = &targets; out.nsrc = 2;
    out.iattr[0] = -1;
    out.saved = d_saved;
    out.grad = d_seed;
    cudaStream_t s = cuda_compute_stream();
    int threads = cuda_row_threads((size_t)V);

    ce_row_v1<<<R, threads, 0, s>>>(d_saved, d_rowloss, dx_logits, d_t, V);
    CUDA_CHECK_LAUNCH();
    lab_compare(lab, "forward v1 (two passes)", ref_lse, lab_download(d_saved, R), 1e-5, 1e-5);
    cross_entropy_forward_cuda(&out);
    lab_compare(lab, "forward v2 (online, 128-bit; the trainer's)", ref_lse, lab_download(d_saved, R), 1e-5, 1e-5);
    lab_compare(lab, "forward v2: the loss", std::vector<float>(1, (float)ref_loss), lab_download(d_out, 1), 1e-5, 0);
    CUDA_CHECK(cudaMemsetAsync(d_grad, 0, (size_t)R * V * sizeof(float), s));
    ce_backward_v1<<<cuda_grid_for((size_t)R * V), CUDA_BLOCK, 0, s>>>(d_grad, dx_logits, d_t, d_saved, 1.0f / R, (size_t)R * V, V);
    CUDA_CHECK_LAUNCH();
    lab_compare(lab, "backward v1 (per logit, 64-bit / and %)", ref_dx, lab_download(d_grad, (size_t)R * V), 1e-5, 1e-7);
    CUDA_CHECK(cudaMemsetAsync(d_grad, 0, (size_t)R * V * sizeof(float), s));
    cross_entropy_backward_cuda(&out);
    lab_compare(lab, "backward v2 (row blocks, 128-bit; the trainer's)", ref_dx, lab_download(d_grad, (size_t)R * V), 1e-5, 1e-7);

    if (!lab.check_only) {
        double bytes = (double)R * V * sizeof(float);
        lab_report("forward v1", lab_time_ms([&] { ce_row_v1<<<R, threads, 0, s>>>(d_saved, d_rowloss, dx_logits, d_t, V); }, reps), bytes);
        lab_report("forward v2 (the trainer's)", lab_time_ms([&] { cross_entropy_forward_cuda(&out); }, reps), bytes);
        lab_report("backward v1", lab_time_ms([&] {
            ce_backward_v1<<<cuda_grid_for((size_t)R * V), CUDA_BLOCK, 0, s>>>(d_grad, dx_logits, d_t, d_saved, 1.0f / R, (size_t)R * V, V);
        }, reps), 3 * bytes);
        lab_report("backward v2 (the trainer's)", lab_time_ms([&] { cross_entropy_backward_cuda(&out); }, reps), 3 * bytes);
    }
    for (void *p : { (void *)dx_logits, (void *)d_t, (void *)d_saved, (void *)d_out, (void *)d_rowloss, (void *)d_grad, (void *)d_seed })
        CUDA_CHECK(cudaFree(p));
}

}  // namespace

int main(int argc, char **argv) {
    Lab lab = lab_open(argc, argv, "lab/cross_entropy");
    run(lab, 13, 37, 0);    // V not a multiple of 4: one float per access
    run(lab, 13, 40, 0);
    if (!lab.check_only) {
        run(lab, 4096, 1024, 50);    // a from_logs vocabulary
        run(lab, 1024, 32768, 20);   // a teacher-sized vocabulary
    }
    return lab_close(lab, "lab/cross_entropy");
}
