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

// The same with operands as stored: P or Q may be bf16 already (p_bf16,
// q_bf16: a train.precision bf16 activation, autograd/plan.h), which
// cuBLASLt reads in place (the same bits as rounding its fp32 value); such
// an operand is dense (ld = its stored columns).
void cuda_gemm_stored_bf16(bool trans_p, bool trans_q, int m, int n, int k,
                           const void *P, bool p_bf16, int ldP, long long strideP,
                           const void *Q, bool q_bf16, int ldQ, long long strideQ,
                           float beta, float *D, int ldD, long long strideD, int batch);

// One product into a bf16 output: D16 (m, n) dense bf16 =
// bf16_round(op(P) op(Q) + bias), bias (n) or NULL. The fp32 sums go to
// scratch and one rounding pass adds the bias and rounds, rather than
// cuBLASLt's bf16 output: that rounding is cuBLAS's to choose, and the CPU
// (cpu_gemm_bf16_out) rounds fp32 sum + bias with f32_to_bf16's bits.
void cuda_gemm_bf16_out(bool trans_p, bool trans_q, int m, int n, int k, const void *P, bool p_bf16, int ldP,
                        const void *Q, bool q_bf16, int ldQ, const float *bias, void *D16);

// Either of the two, as matmul and linear call it (bf16: OP_IATTR_BF16).
static inline void cuda_gemm(bool bf16, bool trans_p, bool trans_q, int m, int n, int k, const float *P, int ldP,
                             long long strideP, const float *Q, int ldQ, long long strideQ, float beta, float *D,
                             int ldD, long long strideD, int batch) {
    if (bf16) cuda_gemm_rowmajor_bf16(trans_p, trans_q, m, n, k, P, ldP, strideP, Q, ldQ, strideQ, beta, D, ldD, strideD, batch);
    else cuda_gemm_rowmajor(trans_p, trans_q, m, n, k, P, ldP, strideP, Q, ldQ, strideQ, beta, D, ldD, strideD, batch);
}

// cuda_gemm with operands as stored: a bf16 one (only under bf16 products)
// goes through cuda_gemm_stored_bf16, fp32 ones through cuda_gemm.
static inline void cuda_gemm_stored(bool bf16, bool trans_p, bool trans_q, int m, int n, int k, const void *P,
                                    bool p_bf16, int ldP, long long strideP, const void *Q, bool q_bf16, int ldQ,
                                    long long strideQ, float beta, float *D, int ldD, long long strideD, int batch) {
    if (p_bf16 || q_bf16)
        cuda_gemm_stored_bf16(trans_p, trans_q, m, n, k, P, p_bf16, ldP, strideP, Q, q_bf16, ldQ, strideQ, beta, D, ldD,
                              strideD, batch);
    else cuda_gemm(bf16, trans_p, trans_q, m, n, k, (const float *)P, ldP, strideP, (const float *)Q, ldQ, strideQ, beta, D,
                   ldD, strideD, batch);
}
