// lab/softmax.cu: softmax's variants (see lab.cuh).
//   v1: one block per row whatever its length, scalar loads, block trees
//   v2: one warp per row up to 1024 floats (shuffles only, no shared
//       memory, no __syncthreads), a block per row beyond; 128-bit loads
//       (the trainer's, kernels/cuda/softmax.cu)
// Checked against the CPU twin (kernels/cpu/softmax.c).
#include <vector>
extern "C" {
#include "kernels/cpu/cpu_ops.h"          // defines: softmax_forward_cpu
}
#include "kernels/cuda/cuda_ops.h"        // defines: softmax_forward_cuda
#include "kernels/cuda/lab/lab.cuh"

namespace {

__global__ void softmax_v1(float *y, const float *x, int C) {
    const float *xr = x + (size_t)blockIdx.x * C;
    float *yr = y + (size_t)blockIdx.x * C;
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) mx = fmaxf(mx, xr[c]);
    mx = block_max(mx);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float e = expf(xr[c] - mx);
        yr[c] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum);
    for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] *= inv;
}

void run(Lab &lab, int rows, int C, int reps) {
    printf(" %d rows of %d\n", rows, C);
    size_t n = (size_t)rows * C;
    std::vector<float> x(n), ref(n);
    for (auto &v : x) v = 3.0f * lab_normal(lab);
    int shape[2] = { rows, C };
    Tensor hx = lab_tensor(x.data(), DT_F32, 2, shape), hy = lab_tensor(ref.data(), DT_F32, 2, shape);
    hx.device = hy.device = DEV_CPU;
    hy.src[0] = &hx; hy.nsrc = 1;
    softmax_forward_cpu(&hy);

    float *d_x = lab_upload(x), *d_y = lab_upload(std::vector<float>(n, 0.0f));
    Tensor dx = lab_tensor(d_x, DT_F32, 2, shape), dy = lab_tensor(d_y, DT_F32, 2, shape);
    dy.src[0] = &dx; dy.nsrc = 1;
    cudaStream_t s = cuda_compute_stream();
    int threads = cuda_row_threads((size_t)C);
    softmax_v1<<<rows, threads, 0, s>>>(d_y, d_x, C);
    CUDA_CHECK_LAUNCH();
    lab_compare(lab, "v1 (a block per row)", ref, lab_download(d_y, n), 1e-5, 1e-7);
    softmax_forward_cuda(&dy);
    lab_compare(lab, "v2 (a warp per short row, 128-bit; the trainer's)", ref, lab_download(d_y, n), 1e-5, 1e-7);
    if (!lab.check_only) {
        double bytes = 2.0 * n * sizeof(float);
        lab_report("v1", lab_time_ms([&] { softmax_v1<<<rows, threads, 0, s>>>(d_y, d_x, C); }, reps), bytes);
        lab_report("v2 (the trainer's)", lab_time_ms([&] { softmax_forward_cuda(&dy); }, reps), bytes);
    }
    CUDA_CHECK(cudaFree(d_x));
    CUDA_CHECK(cudaFree(d_y));
}

}  // namespace

int main(int argc, char **argv) {
    Lab lab = lab_open(argc, argv, "lab/softmax");
    run(lab, 9, 37, 0);
    run(lab, 9, 40, 0);
    run(lab, 3, 1500, 0);   // a block per row
    if (!lab.check_only) {
        run(lab, 65536, 83, 50);     // attention-sized rows (the demo's 83 tokens)
        run(lab, 16384, 512, 50);
        run(lab, 2048, 8192, 20);
    }
    return lab_close(lab, "lab/softmax");
}
