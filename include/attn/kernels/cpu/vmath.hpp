#pragma once
// Transcendental functions over contiguous spans, vectorised through Eigen's packet math, and
// vtanh (packets of float or double) for the kernels that fuse tanh into other work. Every op that maps tanh / sigmoid / exp over many elements goes through here:
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
#include <type_traits>

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

// tanh of L lanes. float: Eigen's packet tanh. double: Eigen has only the scalar std::tanh (a
// libm call per element, the largest cost of a float64 LSTM step), so Cephes' tanh on packets:
//   |x| > 0.625:  1 - 2 / (exp(2|x|) + 1), with the sign of x  (exp: Eigen's packet exp)
//   otherwise:    x + x^3 P(x^2) / Q(x^2)                        (Cephes' rational fit)
// within 2 ulp of std::tanh (tested over [-20, 20] in tests/test_rnn.cpp); NaN stays NaN, +-inf
// gives +-1.
template <class T, int L>
inline Eigen::Array<T, L, 1> vtanh(const Eigen::Array<T, L, 1>& x) {
  if constexpr (std::is_same_v<T, float>) {
    return x.tanh();
  } else {
    using A = Eigen::Array<T, L, 1>;
    const A ax = x.abs();
    A big = T(1) - T(2) / ((T(2) * ax).exp() + T(1));
    big = (x < T(0)).select(-big, big);
    const A z = x * x;
    const A p = (T(-9.64399179425052238628E-1) * z + T(-9.92877231001918586564E1)) * z +
                T(-1.61468768441708447952E3);
    const A q = ((z + T(1.12811678491632931402E2)) * z + T(2.23548839060100448583E3)) * z +
                T(4.84406305325125486048E3);
    const A small = (x == T(0)).select(x, x + x * z * (p / q));  // keeps the sign of -0
    return (ax > T(0.625)).select(big, small);
  }
}

// y[i] = tanh(x[i]); y may alias x.
template <class T>
inline void tanh_n(const T* x, T* y, int64_t n) {
  vmath_detail::map_packets(x, y, n, [](const auto& v) { return vtanh<T, vmath_detail::kLanes<T>>(v); });
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
