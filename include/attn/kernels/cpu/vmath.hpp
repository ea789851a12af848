#pragma once
// Transcendental functions over contiguous spans, vectorised through Eigen's packet math (SIMD
// for float; Eigen falls back to the scalar std:: function where it has no packet version, e.g.
// tanh for double). Every op that maps tanh / sigmoid / exp over many elements goes through here:
// a scalar std::tanh per element was the largest single cost of task A's attention pooling.
// Each element's result depends only on its own input (no cross-lane arithmetic), so results
// never depend on how a span is split across threads.
#include <Eigen/Core>
#include <cstdint>

namespace attn::kernels::cpu {

template <class T>
using SpanArray = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstSpanArray = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// y[i] = tanh(x[i]); y may alias x.
template <class T>
inline void tanh_n(const T* x, T* y, int64_t n) {
  SpanArray<T>(y, n) = ConstSpanArray<T>(x, n).tanh();
}

// y[i] = 1 / (1 + exp(-x[i])); y may alias x.
template <class T>
inline void sigmoid_n(const T* x, T* y, int64_t n) {
  SpanArray<T>(y, n) = (T(1) + (-ConstSpanArray<T>(x, n)).exp()).inverse();
}

// y[i] = exp(x[i]); y may alias x.
template <class T>
inline void exp_n(const T* x, T* y, int64_t n) {
  SpanArray<T>(y, n) = ConstSpanArray<T>(x, n).exp();
}

}  // namespace attn::kernels::cpu
