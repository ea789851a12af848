#pragma once
// Transcendental functions over contiguous spans: y[i] = f(x[i]), y may alias x; and the reductions max_n, dot_n, sum_n. Every op that
// maps tanh / sigmoid / exp (or elu + 1) over many elements goes through here (a scalar std::tanh per element
// was the largest single cost of the anomaly classifier's attention pooling). The vector code is simd.inc's
// (Cephes' exp and tanh on registers of the kernel path in use, within 2 ulp); the last partial
// register goes through masked loads, so every element gets the same arithmetic whatever its
// position: results are the same for any alignment and any thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include "simd.hpp"

namespace attn::kernels::cpu {

template <class T>
inline void tanh_n(const T* x, T* y, int64_t n) { ATTN_ISA_DISPATCH(tanh_n<T>(x, y, n)); }

// 1 / (1 + exp(-x))
template <class T>
inline void sigmoid_n(const T* x, T* y, int64_t n) { ATTN_ISA_DISPATCH(sigmoid_n<T>(x, y, n)); }

template <class T>
inline void exp_n(const T* x, T* y, int64_t n) { ATTN_ISA_DISPATCH(exp_n<T>(x, y, n)); }

// elu(x) + 1 (x + 1 for x > 0, exp(x) otherwise), the feature map of linear attention, in one pass.
template <class T>
inline void elu_plus_one_n(const T* x, T* y, int64_t n) { ATTN_ISA_DISPATCH(elu_plus_one_n<T>(x, y, n)); }

// The largest of x[0 .. n), n >= 1 (with a NaN among them: one of the values, unspecified which).
template <class T>
inline T max_n(const T* x, int64_t n) { ATTN_ISA_DISPATCH(max_n<T>(x, n)); }

// sum of a[i] * b[i] and sum of x[i] over i < n, vectorised (a fixed order for each n).
template <class T>
inline T dot_n(const T* a, const T* b, int64_t n) { ATTN_ISA_DISPATCH(dot_n<T>(a, b, n)); }
template <class T>
inline T sum_n(const T* x, int64_t n) { ATTN_ISA_DISPATCH(sum_n<T>(x, n)); }

// The steps of a stable softmax, shared by the attention kernels.
// x[i] = exp(x[i] - shift) in place for i < n, in one pass; returns the sum of the results
// (sum_n's order). exp(-inf) = 0 exactly, so masked (-inf) scores get weight 0 with a finite shift.
template <class T>
inline T exp_shifted_n(T* x, int64_t n, T shift) { ATTN_ISA_DISPATCH(exp_shifted_n<T>(x, n, shift)); }

// softmax of x[0, n) in place: w_i = exp(x_i - m) / l with m = max x, l = sum_i exp(x_i - m).
// Returns log-sum-exp m + log(l); when n == 0 or every x_i is -inf, x becomes zeros and the
// result is -inf. Each weight depends on the row only, not on its position or alignment.
template <class T>
inline T softmax_n(T* x, int64_t n) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const T m = n > 0 ? max_n(x, n) : neg_inf;
  if (m == neg_inf) {
    std::fill(x, x + n, T(0));
    return neg_inf;
  }
  const T l = exp_shifted_n(x, n, m), inv = T(1) / l;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  return m + std::log(l);
}

// Gradient through a softmax row, in place: g_i = w_i (g_i - sum_j w_j g_j) (w: the weights).
template <class T>
inline void softmax_backward_n(const T* w, T* g, int64_t n) {
  const T dot = dot_n(w, g, n);
  for (int64_t i = 0; i < n; ++i) g[i] = w[i] * (g[i] - dot);
}

}  // namespace attn::kernels::cpu
