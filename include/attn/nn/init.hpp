#pragma once
// In-place initialisers (no autograd; they bump the tensor's version), drawing from the global
// generator (manual_seed) under one lock per tensor.
#include <cmath>
#include "../core/tensor.hpp"

namespace attn::nn::init {

// Fill from U(lo, hi) / N(mean, std^2) (defined at the end of this file).
ATTN_API Tensor& uniform_(Tensor& t, double lo, double hi);
ATTN_API Tensor& normal_(Tensor& t, double mean = 0.0, double std = 1.0);
inline Tensor& zeros_(Tensor& t) { return t.fill_(0.0); }
inline Tensor& ones_(Tensor& t) { return t.fill_(1.0); }

// fan_in / fan_out of a weight [out, in, ...] as PyTorch computes them.
inline std::pair<int64_t, int64_t> fans(const Tensor& t) {
  ATTN_CHECK(t.dim() >= 2, "init: fan in/out need at least 2 dims, got ", to_string(t.shape()));
  int64_t field = 1;
  for (int64_t i = 2; i < t.dim(); ++i) field *= t.size(i);
  return {t.size(1) * field, t.size(0) * field};
}
inline Tensor& xavier_uniform_(Tensor& t, double gain = 1.0) {
  auto [fi, fo] = fans(t);
  const double a = gain * std::sqrt(6.0 / double(fi + fo));
  return uniform_(t, -a, a);
}
// kaiming_uniform_ with a = sqrt(5), PyTorch's default for Linear weights: bound 1/sqrt(fan_in).
inline Tensor& kaiming_uniform_(Tensor& t, double a = std::sqrt(5.0)) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = gain * std::sqrt(3.0 / double(fans(t).first));
  return uniform_(t, -bound, bound);
}

}  // namespace attn::nn::init

#if ATTN_HEADER_DEFINITIONS
namespace attn::nn::init {

ATTN_API Tensor& uniform_(Tensor& t, double lo, double hi) {
  attn::detail::fill_random(t, "uniform_", [lo, hi](auto& g) { return g.uniform(lo, hi); });
  detail::bump_version(t);
  return t;
}
ATTN_API Tensor& normal_(Tensor& t, double mean, double std) {
  attn::detail::fill_random(t, "normal_", [mean, std](auto& g) { return mean + std * g.normal(); });
  detail::bump_version(t);
  return t;
}

}  // namespace attn::nn::init
#endif  // ATTN_HEADER_DEFINITIONS
