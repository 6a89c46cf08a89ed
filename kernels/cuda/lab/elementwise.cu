// lab/elementwise.cu: the elementwise kernels' variants (see lab.cuh).
//   scale      v1: a grid-stride loop of scalar loads and stores
//              v2: 128-bit packs through map.cuh (the trainer's, scale.cu)
//   mul, b broadcast over rows
//              v1: b's index by a 64-bit % per element
//              v2: by a multiply-high (DivMod32), 128-bit packs (mul.cu)
//   concat     v1: the output index by a 64-bit / and % per element
//              v2: a strided row copy, 128-bit packs (map.cuh, concat.cu)
// Each is checked against a plain loop on the host.
#include <vector>
#include "kernels/cuda/cuda_ops.h"        // defines: scale_forward_cuda, mul_forward_cuda, concat_forward_cuda
#include "kernels/cuda/lab/lab.cuh"

namespace {

__global__ void scale_v1(float *y, const float *x, float s, size_t n) {
    CUDA_GRID_STRIDE(i, n) y[i] = s * x[i];
}

__global__ void mul_broadcast_v1(float *y, const float *a, const float *b, size_t n, size_t nb) {
    CUDA_GRID_STRIDE(i, n) y[i] = a[i] * b[i % nb];
}

__global__ void concat_v1(float *y, const float *x, size_t total, size_t n_s, size_t off, size_t n_out, size_t inner) {
    CUDA_GRID_STRIDE(i, total) {
        size_t run = n_s * inner, o = i / run, r = i % run;
        y[(o * n_out + off) * inner + r] = x[i];
    }
}

std::vector<float> randn(Lab &lab, size_t n) {
    std::vector<float> v(n);
    for (auto &x : v) x = lab_normal(lab);
    return v;
}

void run(Lab &lab, int rows, int C, int reps) {
    printf(" (%d, %d)\n", rows, C);
    size_t n = (size_t)rows * C;
    cudaStream_t s = cuda_compute_stream();
    std::vector<float> a = randn(lab, n), b = randn(lab, (size_t)C), ref(n);
    float *d_a = lab_upload(a), *d_b = lab_upload(b), *d_y = lab_upload(std::vector<float>(n, 0.0f));
    int shape[2] = { rows, C }, bshape[1] = { C };
    Tensor ta = lab_tensor(d_a, DT_F32, 2, shape), tb = lab_tensor(d_b, DT_F32, 1, bshape), ty = lab_tensor(d_y, DT_F32, 2, shape);
    double bytes = 2.0 * n * sizeof(float);

    for (size_t i = 0; i < n; i++) ref[i] = -1.7f * a[i];
    ty.src[0] = &ta; ty.nsrc = 1; ty.fattr[0] = -1.7f;
    scale_v1<<<cuda_grid_for(n), CUDA_BLOCK, 0, s>>>(d_y, d_a, -1.7f, n);
    CUDA_CHECK_LAUNCH();
    lab_compare(lab, "scale v1 (scalar)", ref, lab_download(d_y, n), 0, 0);
    scale_forward_cuda(&ty);
    lab_compare(lab, "scale v2 (128-bit; the trainer's)", ref, lab_download(d_y, n), 0, 0);
    if (!lab.check_only) {
        lab_report("scale v1", lab_time_ms([&] { scale_v1<<<cuda_grid_for(n), CUDA_BLOCK, 0, s>>>(d_y, d_a, -1.7f, n); }, reps), bytes);
        lab_report("scale v2 (the trainer's)", lab_time_ms([&] { scale_forward_cuda(&ty); }, reps), bytes);
    }

    for (size_t i = 0; i < n; i++) ref[i] = a[i] * b[i % C];
    ty.src[1] = &tb; ty.nsrc = 2;
    mul_broadcast_v1<<<cuda_grid_for(n), CUDA_BLOCK, 0, s>>>(d_y, d_a, d_b, n, (size_t)C);
    CUDA_CHECK_LAUNCH();
    lab_compare(lab, "mul broadcast v1 (64-bit %)", ref, lab_download(d_y, n), 0, 0);
    mul_forward_cuda(&ty);
    lab_compare(lab, "mul broadcast v2 (DivMod32, 128-bit; the trainer's)", ref, lab_download(d_y, n), 0, 0);
    if (!lab.check_only) {
        lab_report("mul broadcast v1", lab_time_ms([&] {
            mul_broadcast_v1<<<cuda_grid_for(n), CUDA_BLOCK, 0, s>>>(d_y, d_a, d_b, n, (size_t)C);
        }, reps), bytes);
        lab_report("mul broadcast v2 (the trainer's)", lab_time_ms([&] { mul_forward_cuda(&ty); }, reps), bytes);
    }

    // concat(a, a) along the last axis: (rows, C) twice -> (rows, 2C).
    std::vector<float> ref2(2 * n);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) ref2[(size_t)r * 2 * C + c] = ref2[(size_t)r * 2 * C + C + c] = a[(size_t)r * C + c];
    float *d_y2 = lab_upload(std::vector<float>(2 * n, 0.0f));
    int cshape[2] = { rows, 2 * C };
    Tensor tc = lab_tensor(d_y2, DT_F32, 2, cshape);
    tc.src[0] = tc.src[1] = &ta; tc.nsrc = 2; tc.iattr[0] = 1;
    for (size_t off = 0; off < 2 * (size_t)C; off += C)
        concat_v1<<<cuda_grid_for(n), CUDA_BLOCK, 0, s>>>(d_y2, d_a, n, (size_t)C, off, 2 * (size_t)C, 1);
    CUDA_CHECK_LAUNCH();
    lab_compare(lab, "concat v1 (64-bit / and %)", ref2, lab_download(d_y2, 2 * n), 0, 0);
    concat_forward_cuda(&tc);
    lab_compare(lab, "concat v2 (row copies, 128-bit; the trainer's)", ref2, lab_download(d_y2, 2 * n), 0, 0);
    if (!lab.check_only) {
        lab_report("concat v1", lab_time_ms([&] {
            for (size_t off = 0; off < 2 * (size_t)C; off += C)
                concat_v1<<<cuda_grid_for(n), CUDA_BLOCK, 0, s>>>(d_y2, d_a, n, (size_t)C, off, 2 * (size_t)C, 1);
        }, reps), 2 * bytes);
        lab_report("concat v2 (the trainer's)", lab_time_ms([&] { concat_forward_cuda(&tc); }, reps), 2 * bytes);
    }
    for (void *p : { (void *)d_a, (void *)d_b, (void *)d_y, (void *)d_y2 }) CUDA_CHECK(cudaFree(p));
}

}  // namespace

int main(int argc, char **argv) {
    Lab lab = lab_open(argc, argv, "lab/elementwise");
    run(lab, 7, 13, 0);    // rows not a multiple of 4: one float per access
    run(lab, 7, 40, 0);
    if (!lab.check_only) {
        run(lab, 32 * 83, 128, 100);     // the demo's activations
        run(lab, 16 * 2931, 512, 50);    // urban4's
    }
    return lab_close(lab, "lab/elementwise");
}
