#pragma once
// Host entry points of attn's CUDA matrix kernels (kernels/cuda/matmul.cu), built into
// attn::cuda only with ATTN_WITH_CUDA. Plain C++ like kernels/cuda/api.hpp: no CUDA header, so
// ops/cuda/matmul.hpp includes it in every build (without ATTN_WITH_CUDA these are declared and
// never called). Every pointer is a device pointer; sizes are element counts; tensors are
// float32, contiguous, row-major.
#include <cstdint>

namespace attn::kernels::cuda {

// ---- matrices ----
// Row-major C[M,N] = alpha op(A) op(B) + beta C (cuBLAS, fp32 math, no TF32), op = transpose if ta/tb.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_strided_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta,
                          float* C, int64_t ldc, int64_t strideC, int64_t batch);
void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols);  // y[r, c] += bias[c]
void sum_rows(const float* g, float* out, int64_t rows, int64_t cols);       // out[c] = sum_r g[r, c]

}  // namespace attn::kernels::cuda
