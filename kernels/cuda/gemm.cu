// gemm.cu: row-major products on column-major cuBLAS (see gemm.cuh).
//
// cuBLAS reads a matrix column-major; a row-major (r, c) matrix with row
// stride ld read that way is its transpose, (c, r) with leading dim ld. So
// the row-major D = op(P) op(Q) is computed as the column-major
// D^T = op(Q)^T op(P)^T: Q goes first, P second, m and n swap, and each
// operand keeps its own transpose flag (the flag applies to the transposed
// view, which turns op(X) into op(X)^T exactly as needed).
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/context.cuh"       // defines: cuda_cublas
#include "kernels/cuda/cuda_common.cuh"   // defines: CUBLAS_CHECK

void cuda_gemm_rowmajor(bool trans_p, bool trans_q, int m, int n, int k,
                        const float *P, int ldP, long long strideP,
                        const float *Q, int ldQ, long long strideQ,
                        float beta, float *D, int ldD, long long strideD, int batch) {
    if (m <= 0 || n <= 0 || batch <= 0) return;
    const float alpha = 1.0f;
    cublasOperation_t opQ = trans_q ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opP = trans_p ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = cuda_cublas();
    if (batch == 1) {
        CUBLAS_CHECK(cublasSgemm(h, opQ, opP, n, m, k, &alpha, Q, ldQ, P, ldP, &beta, D, ldD));
        return;
    }
    CUBLAS_CHECK(cublasSgemmStridedBatched(h, opQ, opP, n, m, k, &alpha, Q, ldQ, strideQ,
                                           P, ldP, strideP, &beta, D, ldD, strideD, batch));
}
