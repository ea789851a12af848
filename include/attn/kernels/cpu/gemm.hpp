#pragma once
// The one entry point for dense products on the CPU. Row-major, BLAS-like:
//   C = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T,  op(A): M x K, op(B): K x N.
// Large products are split into fixed blocks of rows of C (independent of the thread count, so
// results are bit-identical for any number of threads), each block an Eigen GEMM on one thread.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include "../../config.hpp"
#include "../../core/parallel.hpp"

namespace attn::kernels::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// Single-threaded product of one block; A/B are given with their stored (untransposed) shapes.
template <class T>
void gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  MutMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K == 0) {
    if (beta == T(0)) c.setZero();
    else c *= beta;
    return;
  }
  ConstMap<T> a(A, ta ? K : M, ta ? M : K, Eigen::OuterStride<>(lda));
  ConstMap<T> b(B, tb ? N : K, tb ? K : N, Eigen::OuterStride<>(ldb));
  if (beta == T(0)) c.setZero();
  else if (beta != T(1)) c *= beta;
  if (!ta && !tb) c.noalias() += alpha * a * b;
  else if (ta && !tb) c.noalias() += alpha * a.transpose() * b;
  else if (!ta && tb) c.noalias() += alpha * a * b.transpose();
  else c.noalias() += alpha * a.transpose() * b.transpose();
}

// Rows of C per parallel task: fixed, so the partition never depends on the thread count.
constexpr int64_t kGemmRowBlock = 64;

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  const int64_t blocks = (M + kGemmRowBlock - 1) / kGemmRowBlock;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  if (blocks < 2 || flops < 4e6 || in_parallel_region()) {
    gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * kGemmRowBlock, m = std::min(kGemmRowBlock, M - r0);
      const T* a = ta ? A + r0 : A + r0 * lda;  // op(A) rows r0.. are columns of A when transposed
      gemm_serial(ta, tb, m, N, K, alpha, a, lda, B, ldb, beta, C + r0 * ldc, ldc);
    }
  });
}

// `batch` independent products with element strides between consecutive matrices (0 = shared).
// Small matrices run one per task; large ones run one after another, each split by rows.
template <class T>
void gemm_batched(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                  int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                  int64_t ldc, int64_t stride_c) {
  const double flops = 2.0 * double(M) * double(N) * double(K);
  if (batch == 1 || flops >= 3e7) {
    for (int64_t i = 0; i < batch; ++i)
      gemm(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
    return;
  }
  parallel_for(0, batch, std::max<int64_t>(1, int64_t(2e5 / std::max(flops, 1.0))), [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i)
      gemm_serial(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
  });
}

}  // namespace attn::kernels::cpu
