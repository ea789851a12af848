#pragma once
// Register-blocked GEMM micro-kernels for kernels/cpu/gemm.hpp (internal; use gemm.hpp).
//
// A micro-kernel computes one MR x NR tile of C from a packed MR x kc sliver of op(A) (layout
// [k][MR]) and a packed kc x NR sliver of op(B) (layout [k][NR]): acc = sum_k a(:,k) b(k,:) with
// k ascending from a zero accumulator (one fused multiply-add per k), then
//   mode kStore:  C = alpha * acc                 (C is not read: beta == 0)
//   mode kScale:  C = alpha * acc + (beta * C)    (one FMA)
//   mode kAccum:  C = alpha * acc + C             (one FMA; later kc blocks, or beta == 1)
// The arithmetic for one element never depends on where its tile lies or on the thread running it.
//
// Instruction set: AVX-512F (16 floats / 8 doubles per register, 32 registers), AVX2 + FMA
// (8 / 4 per register, 16 registers), else portable scalar code. Chosen at compile time from the
// compiler's target macros (the project builds with -march=native).
#include <cstdint>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace attn::kernels::cpu::gemm_detail {

enum class Mode { kStore, kScale, kAccum };

template <class T>
struct Arch;

#if defined(__AVX512F__)
#define ATTN_GEMM_ISA "avx512"
#ifndef ATTN_GEMM_MR_F
#define ATTN_GEMM_MR_F 8
#endif
#ifndef ATTN_GEMM_NV_F
#define ATTN_GEMM_NV_F 2
#endif
template <>
struct Arch<float> {
  using V = __m512;
  static constexpr int W = 16, NV = ATTN_GEMM_NV_F, MR = ATTN_GEMM_MR_F;  // 8 x 32 tile: 16 accumulators
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V zero() { return _mm512_setzero_ps(); }
};
template <>
struct Arch<double> {
  using V = __m512d;
  static constexpr int W = 8, NV = 2, MR = 8;  // 8 x 16 tile
  static V load(const double* p) { return _mm512_load_pd(p); }
  static V loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void storeu(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V zero() { return _mm512_setzero_pd(); }
};
#elif defined(__AVX2__) && defined(__FMA__)
#define ATTN_GEMM_ISA "avx2"
template <>
struct Arch<float> {
  using V = __m256;
  static constexpr int W = 8, NV = 2, MR = 6;  // 6 x 16 tile: 12 accumulators
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V zero() { return _mm256_setzero_ps(); }
};
template <>
struct Arch<double> {
  using V = __m256d;
  static constexpr int W = 4, NV = 2, MR = 6;  // 6 x 8 tile
  static V load(const double* p) { return _mm256_load_pd(p); }
  static V loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void storeu(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V zero() { return _mm256_setzero_pd(); }
};
#else
#define ATTN_GEMM_ISA "scalar"
template <class T>
struct ScalarArch {
  using V = T;
  static constexpr int W = 1, NV = 4, MR = 4;  // 4 x 4 tile of scalars
  static V load(const T* p) { return *p; }
  static V loadu(const T* p) { return *p; }
  static void storeu(T* p, V v) { *p = v; }
  static V set1(T x) { return x; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V mul(V a, V b) { return a * b; }
  static V zero() { return T(0); }
};
template <>
struct Arch<float> : ScalarArch<float> {};
template <>
struct Arch<double> : ScalarArch<double> {};
#endif

template <class T>
constexpr int kMR = Arch<T>::MR;
template <class T>
constexpr int kNR = Arch<T>::W * Arch<T>::NV;

// One MR x NR tile; C has row stride ldc and all MR x NR entries are addressable.
// Packed A (lda_direct == 0): a(i, k) = Ap[k * MR + i]. Direct A (lda_direct > 0, op(A) not
// transposed, all MR rows inside the matrix): a(i, k) = Ap[i * lda_direct + k]. Same arithmetic.
template <class T, bool DirectA>
inline void micro_kernel_impl(int64_t kc, const T* __restrict Ap, int64_t lda_direct, const T* __restrict Bp,
                              T* __restrict C, int64_t ldc, T alpha, T beta, Mode mode) {
  using A = Arch<T>;
  using V = typename A::V;
  constexpr int MR = A::MR, NV = A::NV, W = A::W;
  V c[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) c[i][j] = A::zero();
  const T* ar[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) ar[i] = DirectA ? Ap + i * lda_direct : Ap + i;
  for (int64_t k = 0; k < kc; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) b[j] = A::load(Bp + j * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V a = A::set1(DirectA ? ar[i][k] : ar[0][k * MR + i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[i][j] = A::fma(a, b[j], c[i][j]);
    }
    Bp += NV * W;
  }
  const V va = A::set1(alpha);
  if (mode == Mode::kStore) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) A::storeu(C + i * ldc + j * W, A::mul(va, c[i][j]));
  } else if (mode == Mode::kAccum) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        T* p = C + i * ldc + j * W;
        A::storeu(p, A::fma(va, c[i][j], A::loadu(p)));
      }
  } else {
    const V vb = A::set1(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        T* p = C + i * ldc + j * W;
        A::storeu(p, A::fma(va, c[i][j], A::mul(vb, A::loadu(p))));
      }
  }
}

template <class T>
inline void micro_kernel(int64_t kc, const T* Ap, int64_t lda_direct, const T* Bp, T* C, int64_t ldc, T alpha, T beta,
                         Mode mode) {
  if (lda_direct > 0) micro_kernel_impl<T, true>(kc, Ap, lda_direct, Bp, C, ldc, alpha, beta, mode);
  else micro_kernel_impl<T, false>(kc, Ap, 0, Bp, C, ldc, alpha, beta, mode);
}

}  // namespace attn::kernels::cpu::gemm_detail
