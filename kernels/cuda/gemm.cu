// gemm.cu: row-major products on column-major cuBLAS (see gemm.cuh).
//
// cuBLAS reads a matrix column-major; a row-major (r, c) matrix with row
// stride ld read that way is its transpose, (c, r) with leading dim ld. So
// the row-major D = op(P) op(Q) is computed as the column-major
// D^T = op(Q)^T op(P)^T: Q goes first, P second, m and n swap, and each
// operand keeps its own transpose flag (the flag applies to the transposed
// view, which turns op(X) into op(X)^T exactly as needed).
#include "kernels/cuda/gemm.cuh"
#include <cublasLt.h>
#include <cuda_bf16.h>
#include "kernels/cuda/bf16.cuh"          // defines: bf16_round
#include "kernels/cuda/context.cuh"       // defines: cuda_cublas, cuda_cublaslt, cuda_workspace, cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUBLAS_CHECK, CUDA_CHECK_LAUNCH
#include "kernels/cuda/vec.cuh"           // defines: Vec, DivMod32, cuda_grid_for_items

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

// ---- bf16 operands through cuBLASLt ---------------------------------------------------------
namespace {

// dst (rows, cols) bf16, dense = bf16_round(src (rows, cols) with row
// stride ld); W elements per access when cols and ld allow.
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) round_rows_bf16_kernel(__nv_bfloat16 *dst, const float *src, uint32_t ld,
                                                                     uint32_t vecs, DivMod32 row_vecs) {
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < vecs; p += gridDim.x * blockDim.x) {
        uint32_t r = row_vecs.div(p), c = p - r * row_vecs.d;
        Vec<float, W> v = load_vec<Vec<float, W>>(src, (size_t)r * (ld / W) + c);
        Vec<__nv_bfloat16, W> out;
        for (int j = 0; j < W; j++) out[j] = bf16_round(v[j]);
        store_vec<Vec<__nv_bfloat16, W>>(dst, p, out);
    }
}

void round_rows_bf16(__nv_bfloat16 *dst, const float *src, int rows, int cols, int ld) {
    size_t total = (size_t)rows * cols;
    if (total == 0) return;
    cuda_check_index32(total, "bf16 product operand");
    bool vec = cols % 4 == 0 && ld % 4 == 0 && cuda_aligned16(src) && cuda_aligned16(dst);
    int w = vec ? 4 : 1;
    uint32_t vecs = (uint32_t)(total / w);
    DivMod32 rv = divmod32((uint32_t)(cols / w));
    cudaStream_t s = cuda_compute_stream();
    if (vec) round_rows_bf16_kernel<4><<<cuda_grid_for_items(vecs), CUDA_BLOCK, 0, s>>>(dst, src, (uint32_t)ld, vecs, rv);
    else round_rows_bf16_kernel<1><<<cuda_grid_for_items(vecs), CUDA_BLOCK, 0, s>>>(dst, src, (uint32_t)ld, vecs, rv);
    CUDA_CHECK_LAUNCH();
}

// A column-major cuBLASLt layout of `batch` (rows, cols) matrices.
cublasLtMatrixLayout_t lt_layout(cudaDataType_t type, int rows, int cols, long long ld, long long stride, int batch) {
    cublasLtMatrixLayout_t l;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, (uint64_t)rows, (uint64_t)cols, ld));
    if (batch > 1) {
        int32_t b = batch;
        int64_t st = stride;
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b));
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st, sizeof st));
    }
    return l;
}

}  // namespace

void cuda_gemm_rowmajor_bf16(bool trans_p, bool trans_q, int m, int n, int k,
                             const float *P, int ldP, long long strideP,
                             const float *Q, int ldQ, long long strideQ,
                             float beta, float *D, int ldD, long long strideD, int batch) {
    if (m <= 0 || n <= 0 || batch <= 0) return;
    // The stored matrices (row-major): P is (m, k) or (k, m), Q (k, n) or (n, k).
    int p_rows = trans_p ? k : m, p_cols = trans_p ? m : k, q_rows = trans_q ? n : k, q_cols = trans_q ? k : n;
    int p_count = strideP ? batch : 1, q_count = strideQ ? batch : 1;
    size_t p_elems = (size_t)p_count * p_rows * p_cols, q_elems = (size_t)q_count * q_rows * q_cols;
    size_t p_bytes = (p_elems * sizeof(__nv_bfloat16) + 255) / 256 * 256;
    __nv_bfloat16 *p16 = (__nv_bfloat16 *)cuda_workspace(p_bytes + q_elems * sizeof(__nv_bfloat16));
    __nv_bfloat16 *q16 = (__nv_bfloat16 *)((char *)p16 + p_bytes);
    // A batch is rows stacked with one stride: dense (stride = rows x ld) or shared.
    round_rows_bf16(p16, P, p_count * p_rows, p_cols, ldP);
    round_rows_bf16(q16, Q, q_count * q_rows, q_cols, ldQ);
    // Column-major D^T (n, m) = op(Q)^T op(P)^T, as in cuda_gemm_rowmajor.
    cublasLtMatmulDesc_t desc;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    int32_t opq = trans_q ? CUBLAS_OP_T : CUBLAS_OP_N, opp = trans_p ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opq, sizeof opq));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opp, sizeof opp));
    cublasLtMatrixLayout_t la = lt_layout(CUDA_R_16BF, q_cols, q_rows, q_cols, strideQ ? (long long)q_rows * q_cols : 0, batch);
    cublasLtMatrixLayout_t lb = lt_layout(CUDA_R_16BF, p_cols, p_rows, p_cols, strideP ? (long long)p_rows * p_cols : 0, batch);
    cublasLtMatrixLayout_t lc = lt_layout(CUDA_R_32F, n, m, ldD, strideD, batch);
    CudaLt lt = cuda_cublaslt();
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = lt.workspace_bytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt.handle, desc, la, lb, lc, lc, pref, 1, &heuristic, &found));
    if (found == 0) {
        fprintf(stderr, "distil: error: cuBLASLt has no bf16 algorithm for a (%d x %d x %d) product\n", m, n, k);
        exit(1);
    }
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasLtMatmul(lt.handle, desc, &alpha, q16, la, p16, lb, &beta, D, lc, D, lc, &heuristic.algo,
                                lt.workspace, lt.workspace_bytes, cuda_compute_stream()));
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lc));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(desc));
}
