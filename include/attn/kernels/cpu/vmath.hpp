#pragma once
// Transcendental functions over contiguous spans, vectorised through Eigen's packet math (SIMD
// for float; Eigen falls back to the scalar std:: function where it has no packet version, e.g.
// tanh for double). Every op that maps tanh / sigmoid / exp over many elements goes through here:
// a scalar std::tanh per element was the largest single cost of task A's attention pooling.
//
// Every element goes through the same packet code, whatever its position: full packets from the
// start of the span, then the tail through a zero-padded packet. (An Eigen assignment over a
// dynamic-size Map instead peels scalar iterations up to an aligned address, and the scalar and
// packet versions of tanh/exp can differ in the last bit, so a result would depend on the
// buffer's address and on where a parallel split falls.) Results are therefore the same for any
// alignment and any thread count.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

namespace attn::kernels::cpu {

namespace vmath_detail {
template <class T>
constexpr int kLanes = Eigen::internal::packet_traits<T>::size;
template <class T>
using Packet = Eigen::Array<T, kLanes<T>, 1>;

// y[i] = f(x[i]) for a packet-wise functor f; y may alias x.
template <class T, class F>
inline void map_packets(const T* x, T* y, int64_t n, const F& f) {
  constexpr int64_t L = kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) Eigen::Map<Packet<T>>(y + i) = f(Eigen::Map<const Packet<T>>(x + i));
  if (i < n) {
    Packet<T> tail = Packet<T>::Zero();
    std::copy(x + i, x + n, tail.data());
    const Packet<T> r = f(tail);
    std::copy(r.data(), r.data() + (n - i), y + i);
  }
}
}  // namespace vmath_detail

// y[i] = tanh(x[i]); y may alias x.
template <class T>
inline void tanh_n(const T* x, T* y, int64_t n) {
  vmath_detail::map_packets(x, y, n, [](const auto& v) { return vmath_detail::Packet<T>(v.tanh()); });
}

// y[i] = 1 / (1 + exp(-x[i])); y may alias x.
template <class T>
inline void sigmoid_n(const T* x, T* y, int64_t n) {
  vmath_detail::map_packets(x, y, n, [](const auto& v) { return vmath_detail::Packet<T>((T(1) + (-v).exp()).inverse()); });
}

// y[i] = exp(x[i]); y may alias x.
template <class T>
inline void exp_n(const T* x, T* y, int64_t n) {
  vmath_detail::map_packets(x, y, n, [](const auto& v) { return vmath_detail::Packet<T>(v.exp()); });
}

}  // namespace attn::kernels::cpu
