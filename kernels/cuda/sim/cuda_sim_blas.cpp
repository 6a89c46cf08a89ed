// cuda_sim_blas.cpp: the simulator's cuBLAS and cuBLASLt (see cuda_sim.h):
// reference column-major products with the libraries' argument checks,
// queued on the handle's stream like any other work. Products are summed
// in double and rounded once (to fp32, or to bf16 for a bf16 output).
#include "kernels/cuda/sim/cuda_sim.h"
#include <cstdio>
#include <memory>

// ---- cuBLAS ------------------------------------------------------------------------------
struct SimCublas {
    int math;
    cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new SimCublas{ 0, nullptr }; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { h->math = (int)m; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *m) { *m = (cublasMath_t)h->math; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *, size_t) { return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_NOT_INITIALIZED";
    }
}

namespace {

// One operand as the product reads it: its type, storage and transpose.
struct Operand {
    cudaDataType_t type;
    const void *p;
    long long ld, stride;
    bool trans;
    float at(long long batch, long long i, long long j) const {   // op(X)[i, j] of product `batch`
        long long r = trans ? j : i, c = trans ? i : j;
        long long off = batch * stride + r + c * ld;
        if (type == CUDA_R_16BF) return __bfloat162float(((const __nv_bfloat16 *)p)[off]);
        return ((const float *)p)[off];
    }
};

// D[b] = alpha op(A[b]) op(B[b]) + beta C[b] (+ bias[i]), column-major m x n.
void reference_gemm(int m, int n, int k, float alpha, Operand a, Operand b, float beta, Operand c,
                    cudaDataType_t d_type, void *d, long long ldd, long long stride_d, int batch, const void *bias) {
    for (long long bi = 0; bi < batch; bi++)
        for (long long j = 0; j < n; j++)
            for (long long i = 0; i < m; i++) {
                double s = 0;
                for (long long l = 0; l < k; l++) s += (double)a.at(bi, i, l) * b.at(bi, l, j);
                double v = alpha * s;
                // beta == 0: C is not read (it may hold garbage or NaN), as in cuBLAS.
                if (beta != 0.0f) v += (double)beta * c.at(bi, i, j);
                if (bias) v += d_type == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)bias)[i]) : ((const float *)bias)[i];
                long long off = bi * stride_d + i + j * ldd;
                if (d_type == CUDA_R_16BF) ((__nv_bfloat16 *)d)[off] = __float2bfloat16_rn((float)v);
                else ((float *)d)[off] = (float)v;
            }
}

bool on_named_stream(cudaStream_t s, const char *call) {
    if (s) return true;
    fprintf(stderr, "cuda_sim: %s on the legacy default stream: bind the handle to a named stream\n", call);
    return false;
}

}  // namespace

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda, long long strideA,
                                         const float *B, int ldb, long long strideB, const float *beta,
                                         float *C, int ldc, long long strideC, int batch) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, rows_a) || ldb < std::max(1, rows_b) ||
        ldc < std::max(1, m) || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T)) {
        fprintf(stderr, "cuda_sim: cublasSgemm: invalid m=%d n=%d k=%d lda=%d ldb=%d ldc=%d\n", m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!on_named_stream(h->stream, "cublasSgemm")) return CUBLAS_STATUS_INVALID_VALUE;
    Operand a{ CUDA_R_32F, A, lda, strideA, ta == CUBLAS_OP_T }, b{ CUDA_R_32F, B, ldb, strideB, tb == CUBLAS_OP_T };
    Operand c{ CUDA_R_32F, C, ldc, strideC, false };
    float al = *alpha, be = *beta;   // host scalars, read at the call
    sim::enqueue(h->stream, [=] { reference_gemm(m, n, k, al, a, b, be, c, CUDA_R_32F, C, ldc, strideC, batch, nullptr); },
                 "cublasSgemm");
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

// ---- cuBLASLt ----------------------------------------------------------------------------
struct SimLt { int unused; };
struct SimLtDesc {
    cublasComputeType_t compute;
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
};
struct SimLtLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
    int batch = 1;
    int64_t stride = 0;
};
struct SimLtPref { size_t max_workspace = 0; };

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = new SimLt{ 0 }; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new SimLtDesc;
    (*d)->compute = compute;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf, size_t bytes) {
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
        if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        d->ta = (cublasOperation_t)*(const int32_t *)buf;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        d->tb = (cublasOperation_t)*(const int32_t *)buf;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        d->epilogue = (cublasLtEpilogue_t)*(const uint32_t *)buf;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (bytes != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        d->bias = *(const void *const *)buf;
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
    if (ld < (int64_t)std::max<uint64_t>(1, rows)) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new SimLtLayout{ type, rows, cols, ld };
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const void *buf, size_t bytes) {
    if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && bytes == sizeof(int32_t)) { l->batch = *(const int32_t *)buf; return CUBLAS_STATUS_SUCCESS; }
    if (a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET && bytes == sizeof(int64_t)) { l->stride = *(const int64_t *)buf; return CUBLAS_STATUS_SUCCESS; }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { *p = new SimLtPref; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a, const void *buf, size_t bytes) {
    if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || bytes != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
    p->max_workspace = (size_t)*(const uint64_t *)buf;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *returned) {
    if (!h || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    results[0] = cublasLtMatmulHeuristicResult_t{};
    results[0].algo.algo_id = 1;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *, void *, size_t, cudaStream_t s) {
    if (!h || !d) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!on_named_stream(s, "cublasLtMatmul")) return CUBLAS_STATUS_INVALID_VALUE;
    bool ta = d->ta == CUBLAS_OP_T, tb = d->tb == CUBLAS_OP_T;
    uint64_t m = ta ? la->cols : la->rows, k = ta ? la->rows : la->cols;
    uint64_t kb = tb ? lb->cols : lb->rows, n = tb ? lb->rows : lb->cols;
    if (k != kb || lc->rows != m || lc->cols != n || ld->rows != m || ld->cols != n || lc->type != ld->type ||
        la->batch != lb->batch || la->batch != ld->batch || lc->batch != ld->batch ||
        (d->epilogue == CUBLASLT_EPILOGUE_BIAS && !d->bias) ||
        (d->epilogue != CUBLASLT_EPILOGUE_BIAS && d->epilogue != CUBLASLT_EPILOGUE_DEFAULT) || C != D) {
        fprintf(stderr, "cuda_sim: cublasLtMatmul: inconsistent layouts (op(A) %llux%llu, op(B) %llux%llu, D %llux%llu)\n",
                (unsigned long long)m, (unsigned long long)k, (unsigned long long)kb, (unsigned long long)n,
                (unsigned long long)ld->rows, (unsigned long long)ld->cols);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    Operand a{ la->type, A, la->ld, la->stride, ta }, b{ lb->type, B, lb->ld, lb->stride, tb };
    Operand c{ lc->type, C, lc->ld, lc->stride, false };
    float al = *(const float *)alpha, be = *(const float *)beta;
    cudaDataType_t dt = ld->type;
    long long ldd = ld->ld, sd = ld->stride;
    int batch = ld->batch;
    const void *bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS ? d->bias : nullptr;
    sim::enqueue(s, [=] { reference_gemm((int)m, (int)n, (int)k, al, a, b, be, c, dt, D, ldd, sd, batch, bias); },
                 "cublasLtMatmul");
    return CUBLAS_STATUS_SUCCESS;
}
