// Row-major GEMM on cuBLAS (column-major) through the transposition trick: a row-major matrix is
// its transpose in column-major, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T, i.e.
// cublasSgemm(op_b, op_a, N, M, K, B, A, C) with the same leading dimensions.
#include <climits>
#include <string>
#include <cublas_v2.h>
#include "common.cuh"
#include "matmul.hpp"
#include "reduce.hpp"  // sum_rows sums with sum_dim

namespace attn::kernels::cuda {
namespace {

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_(other)";
  }
}

#define ATTN_CUBLAS_CHECK(call)                                                                              \
  do {                                                                                                       \
    cublasStatus_t attn_st_ = (call);                                                                        \
    if (attn_st_ != CUBLAS_STATUS_SUCCESS)                                                                   \
      throw std::runtime_error(std::string("attn cuBLAS error: ") + #call + " failed with " +               \
                               cublas_status_name(attn_st_) + " at " + __FILE__ + ":" + std::to_string(__LINE__)); \
  } while (0)

// One handle per host thread, created on first use (never destroyed: it may be needed until exit).
cublasHandle_t handle() {
  thread_local cublasHandle_t h = nullptr;
  if (!h) {
    ATTN_CUBLAS_CHECK(cublasCreate(&h));
    // Plain fp32 arithmetic (no TF32 tensor-op downconversion): parity with the CPU path.
    ATTN_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));
  }
  return h;
}

int as_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) throw std::runtime_error(std::string("attn CUDA gemm: ") + what + " out of int range");
  return int(v);
}

}  // namespace

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) throw std::runtime_error("attn CUDA gemm: K must be positive (callers handle empty products)");
  ATTN_CUBLAS_CHECK(cublasSgemm(handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &alpha, B, as_int(ldb, "ldb"), A,
                                as_int(lda, "lda"), &beta, C, as_int(ldc, "ldc")));
}

void gemm_strided_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta,
                          float* C, int64_t ldc, int64_t strideC, int64_t batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if (K <= 0) throw std::runtime_error("attn CUDA gemm_strided_batched: K must be positive");
  ATTN_CUBLAS_CHECK(cublasSgemmStridedBatched(
      handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N, "N"), as_int(M, "M"),
      as_int(K, "K"), &alpha, B, as_int(ldb, "ldb"), strideB, A,
      as_int(lda, "lda"), strideA, &beta, C, as_int(ldc, "ldc"), strideC, as_int(batch, "batch")));
}

// ---------------- bias helpers for linear ----------------
using detail::grid_for;
__global__ void add_row_bias_k(float* y, const float* bias, int64_t rows, int64_t cols) {
  ATTN_GRID_STRIDE(k, rows * cols) y[k] += bias[k % cols];
}
void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols) {
  if (rows * cols <= 0) return;
  add_row_bias_k<<<grid_for(rows * cols), 256>>>(y, bias, rows, cols);
  ATTN_CUDA_LAUNCH_CHECK("add_row_bias");
}
void sum_rows(const float* g, float* out, int64_t rows, int64_t cols) { sum_dim(g, out, 1, rows, cols); }

}  // namespace attn::kernels::cuda
