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

// D16 (rows, cols) bf16 = bf16_round(D (rows, cols) + bias[col]), bias NULL
// for none: a product's fp32 sums into a bf16 output, rounded once (the
// CPU's cpu_gemm_bf16_out, same formula and bits from the same sums).
__global__ void __launch_bounds__(CUDA_BLOCK) round_out_bf16_kernel(__nv_bfloat16 *D16, const float *D, const float *bias,
                                                                    uint32_t total, DivMod32 cols) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x)
        D16[i] = bf16_round(bias ? D[i] + bias[cols.mod(i)] : D[i]);
}

// One operand of a bf16 product: stored (rows, cols) with row stride ld,
// `count` of them `rows` apart (a dense batch) or one shared. bf16 already
// (a train.precision bf16 activation): read in place, which needs it
// dense; fp32: rounded into scratch at `scratch`.
const __nv_bfloat16 *operand_bf16(const void *src, bool is16, int rows, int cols, int ld, int count,
                                  __nv_bfloat16 *scratch) {
    if (!is16) {
        round_rows_bf16(scratch, (const float *)src, count * rows, cols, ld);
        return scratch;
    }
    if (ld != cols) {
        fprintf(stderr, "distil: error: a bf16 product operand (%d x %d) with row stride %d: bf16 activations are dense\n",
                rows, cols, ld);
        exit(2);
    }
    return (const __nv_bfloat16 *)src;
}

// The bytes of rounding scratch operand_bf16 needs (none when bf16 already), 256-aligned.
size_t operand_scratch(bool is16, int rows, int cols, int count) {
    return is16 ? 0 : ((size_t)count * rows * cols * sizeof(__nv_bfloat16) + 255) / 256 * 256;
}

// Column-major D^T (n, m) = op(Q)^T op(P)^T (+ beta D^T), as in
// cuda_gemm_rowmajor, on bf16 operands that are dense (ld = stored columns).
void lt_matmul(bool trans_p, bool trans_q, int m, int n, int k, const __nv_bfloat16 *p16, int p_rows, int p_cols,
               bool p_batched, const __nv_bfloat16 *q16, int q_rows, int q_cols, bool q_batched, float beta, float *D,
               int ldD, long long strideD, int batch) {
    cublasLtMatmulDesc_t desc;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    int32_t opq = trans_q ? CUBLAS_OP_T : CUBLAS_OP_N, opp = trans_p ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opq, sizeof opq));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opp, sizeof opp));
    cublasLtMatrixLayout_t la = lt_layout(CUDA_R_16BF, q_cols, q_rows, q_cols, q_batched ? (long long)q_rows * q_cols : 0, batch);
    cublasLtMatrixLayout_t lb = lt_layout(CUDA_R_16BF, p_cols, p_rows, p_cols, p_batched ? (long long)p_rows * p_cols : 0, batch);
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

}  // namespace

void cuda_gemm_stored_bf16(bool trans_p, bool trans_q, int m, int n, int k,
                           const void *P, bool p_bf16, int ldP, long long strideP,
                           const void *Q, bool q_bf16, int ldQ, long long strideQ,
                           float beta, float *D, int ldD, long long strideD, int batch) {
    if (m <= 0 || n <= 0 || batch <= 0) return;
    // The stored matrices (row-major): P is (m, k) or (k, m), Q (k, n) or (n, k).
    int p_rows = trans_p ? k : m, p_cols = trans_p ? m : k, q_rows = trans_q ? n : k, q_cols = trans_q ? k : n;
    int p_count = strideP ? batch : 1, q_count = strideQ ? batch : 1;
    size_t p_bytes = operand_scratch(p_bf16, p_rows, p_cols, p_count), q_bytes = operand_scratch(q_bf16, q_rows, q_cols, q_count);
    char *ws = (char *)cuda_workspace(p_bytes + q_bytes + 256);
    // A batch is rows stacked with one stride: dense (stride = rows x ld) or shared.
    const __nv_bfloat16 *p16 = operand_bf16(P, p_bf16, p_rows, p_cols, ldP, p_count, (__nv_bfloat16 *)ws);
    const __nv_bfloat16 *q16 = operand_bf16(Q, q_bf16, q_rows, q_cols, ldQ, q_count, (__nv_bfloat16 *)(ws + p_bytes));
    lt_matmul(trans_p, trans_q, m, n, k, p16, p_rows, p_cols, strideP != 0, q16, q_rows, q_cols, strideQ != 0, beta, D, ldD,
              strideD, batch);
}

void cuda_gemm_rowmajor_bf16(bool trans_p, bool trans_q, int m, int n, int k,
                             const float *P, int ldP, long long strideP,
                             const float *Q, int ldQ, long long strideQ,
                             float beta, float *D, int ldD, long long strideD, int batch) {
    cuda_gemm_stored_bf16(trans_p, trans_q, m, n, k, P, false, ldP, strideP, Q, false, ldQ, strideQ, beta, D, ldD, strideD, batch);
}

void cuda_gemm_bf16_out(bool trans_p, bool trans_q, int m, int n, int k, const void *P, bool p_bf16, int ldP,
                        const void *Q, bool q_bf16, int ldQ, const float *bias, void *D16) {
    if (m <= 0 || n <= 0) return;
    int p_rows = trans_p ? k : m, p_cols = trans_p ? m : k, q_rows = trans_q ? n : k, q_cols = trans_q ? k : n;
    size_t p_bytes = operand_scratch(p_bf16, p_rows, p_cols, 1), q_bytes = operand_scratch(q_bf16, q_rows, q_cols, 1);
    size_t total = (size_t)m * n;
    cuda_check_index32(total, "bf16 product output");
    // The fp32 sums go after the operands' scratch, in the same workspace.
    char *ws = (char *)cuda_workspace(p_bytes + q_bytes + total * sizeof(float) + 256);
    const __nv_bfloat16 *p16 = operand_bf16(P, p_bf16, p_rows, p_cols, ldP, 1, (__nv_bfloat16 *)ws);
    const __nv_bfloat16 *q16 = operand_bf16(Q, q_bf16, q_rows, q_cols, ldQ, 1, (__nv_bfloat16 *)(ws + p_bytes));
    float *sums = (float *)(ws + p_bytes + q_bytes);   // (m, n)
    lt_matmul(trans_p, trans_q, m, n, k, p16, p_rows, p_cols, false, q16, q_rows, q_cols, false, 0.0f, sums, n, 0, 1);
    round_out_bf16_kernel<<<cuda_grid_for_items(total), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (__nv_bfloat16 *)D16, sums, bias, (uint32_t)total, divmod32((uint32_t)n));
    CUDA_CHECK_LAUNCH();
}
