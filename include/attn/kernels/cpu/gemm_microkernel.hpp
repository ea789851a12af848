#pragma once
// Register-blocked GEMM micro-kernels for kernels/cpu/gemm.hpp (internal; use gemm.hpp).
//
// A micro-kernel computes one MR x NR tile of C from an MR x kc sliver of op(A) and a kc x NR
// sliver of op(B), packed or read in place (see Operands below): acc = sum_k a(:,k) b(k,:) with
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

// Where a micro-kernel reads its operands. op(A) sliver (MR rows x kc):
//   packed (as == 0):  a(i, k) = Ap[k * MR + i]
//   rows   (as  > 0):  a(i, k) = Ap[i * as + k]      (A not transposed, read in place)
//   cols   (as  < 0):  a(i, k) = Ap[k * (-as) + i]   (A transposed, read in place)
// op(B) sliver (kc x NR): packed (bs == 0): b(k, :) = Bp + k * NR, 64-byte aligned; in place
// (bs > 0, B not transposed): b(k, :) = Bp + k * bs. In-place operands must have all MR rows / NR
// columns inside the matrix; partial slivers are always packed. The arithmetic is the same for
// every form, so where an operand is read from never changes a result's bits.

template <class T, int AForm, bool PackedB>
inline void micro_kernel_impl(int64_t kc, const T* __restrict Ap, int64_t as, const T* __restrict Bp, int64_t bs,
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
  for (int i = 0; i < MR; ++i) ar[i] = AForm == 1 ? Ap + i * as : Ap + i;
  const int64_t astep = AForm == 0 ? MR : (AForm == 1 ? 1 : -as);
  for (int64_t k = 0; k < kc; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) b[j] = PackedB ? A::load(Bp + j * W) : A::loadu(Bp + j * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V a = A::set1(AForm == 1 ? ar[i][k] : ar[0][k * astep + i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[i][j] = A::fma(a, b[j], c[i][j]);
    }
    Bp += PackedB ? NV * W : bs;
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

// One MR x NR tile; C has row stride ldc and all MR x NR entries are addressable.
template <class T>
inline void micro_kernel(int64_t kc, const T* Ap, int64_t as, const T* Bp, int64_t bs, T* C, int64_t ldc, T alpha,
                         T beta, Mode mode) {
  if (bs == 0) {
    if (as > 0) micro_kernel_impl<T, 1, true>(kc, Ap, as, Bp, bs, C, ldc, alpha, beta, mode);
    else if (as < 0) micro_kernel_impl<T, 2, true>(kc, Ap, as, Bp, bs, C, ldc, alpha, beta, mode);
    else micro_kernel_impl<T, 0, true>(kc, Ap, as, Bp, bs, C, ldc, alpha, beta, mode);
  } else {
    if (as > 0) micro_kernel_impl<T, 1, false>(kc, Ap, as, Bp, bs, C, ldc, alpha, beta, mode);
    else if (as < 0) micro_kernel_impl<T, 2, false>(kc, Ap, as, Bp, bs, C, ldc, alpha, beta, mode);
    else micro_kernel_impl<T, 0, false>(kc, Ap, as, Bp, bs, C, ldc, alpha, beta, mode);
  }
}

}  // namespace attn::kernels::cpu::gemm_detail
