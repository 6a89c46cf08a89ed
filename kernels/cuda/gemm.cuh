// gemm.cuh: row-major matrix products through cuBLAS (kernels/cuda/gemm.cu),
// shared by matmul and linear.
#pragma once

// D = op(P) op(Q) + beta D, all row-major, `batch` times:
//   op(P) is (m, k): P is stored (m, k) with row stride ldP, or (k, m) when trans_p;
//   op(Q) is (k, n): Q is stored (k, n) with row stride ldQ, or (n, k) when trans_q;
//   D is (m, n) with row stride ldD.
// Product i reads P + i*strideP, Q + i*strideQ and writes D + i*strideD
// (a stride of 0 shares that operand across the batch). beta 0 overwrites
// D, beta 1 accumulates (backward). fp32 in and out, fp32 accumulation;
// TF32 inputs only when cuda_set_allow_tf32(1).
void cuda_gemm_rowmajor(bool trans_p, bool trans_q, int m, int n, int k,
                        const float *P, int ldP, long long strideP,
                        const float *Q, int ldQ, long long strideQ,
                        float beta, float *D, int ldD, long long strideD, int batch);

// The same product for train.precision bf16: every element of P and Q is
// rounded to bf16 (bf16.cuh's bf16_round, the CPU's bits) into scratch,
// then cuBLASLt multiplies the bf16 operands on the tensor cores with fp32
// accumulation into fp32 D. TF32 plays no part. A batched operand must be
// dense (stride = its rows x ld) or shared (stride 0).
void cuda_gemm_rowmajor_bf16(bool trans_p, bool trans_q, int m, int n, int k,
                             const float *P, int ldP, long long strideP,
                             const float *Q, int ldQ, long long strideQ,
                             float beta, float *D, int ldD, long long strideD, int batch);

// Either of the two, as matmul and linear call it (bf16: OP_IATTR_BF16).
static inline void cuda_gemm(bool bf16, bool trans_p, bool trans_q, int m, int n, int k, const float *P, int ldP,
                             long long strideP, const float *Q, int ldQ, long long strideQ, float beta, float *D,
                             int ldD, long long strideD, int batch) {
    if (bf16) cuda_gemm_rowmajor_bf16(trans_p, trans_q, m, n, k, P, ldP, strideP, Q, ldQ, strideQ, beta, D, ldD, strideD, batch);
    else cuda_gemm_rowmajor(trans_p, trans_q, m, n, k, P, ldP, strideP, Q, ldQ, strideQ, beta, D, ldD, strideD, batch);
}
