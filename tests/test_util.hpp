#pragma once
// Shared helpers for the test suite: fixture loading and tensor comparison with useful messages.
#include <attn/attn.hpp>
#include <attn/io/safetensors.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#ifndef ATTN_FIXTURE_DIR
#define ATTN_FIXTURE_DIR "tests/fixtures"
#endif

inline attn::io::SafetensorsFile load_fixture(const std::string& file) {
  return attn::io::load_safetensors(std::string(ATTN_FIXTURE_DIR) + "/" + file);
}

// True when shapes match and |a - e| <= atol + rtol |e| everywhere; reports the worst element.
inline bool check_close(const attn::Tensor& actual, const attn::Tensor& expected, double rtol = 1e-9,
                        double atol = 1e-10, const std::string& what = "") {
  if (!actual.defined() || !expected.defined()) {
    UNSCOPED_INFO(what << ": undefined tensor (actual " << actual.defined() << ", expected " << expected.defined() << ")");
    return false;
  }
  if (actual.shape() != expected.shape()) {
    UNSCOPED_INFO(what << ": shape " << attn::to_string(actual.shape()) << " vs expected "
                       << attn::to_string(expected.shape()));
    return false;
  }
  const auto a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double worst = 0;
  size_t at = 0;
  bool ok = true;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::abs(a[i] - e[i]);
    const bool fine = err <= atol + rtol * std::abs(e[i]);
    if (!fine || std::isnan(a[i]) != std::isnan(e[i])) {
      ok = false;
      if (err > worst || std::isnan(err)) { worst = err; at = i; }
    }
  }
  if (!ok)
    UNSCOPED_INFO(what << ": mismatch, worst at flat index " << at << ": " << a[at] << " vs expected " << e[at]
                       << " (abs err " << worst << ")");
  return ok;
}

// All elements of the tensors, in order, as one vector (compares whole sets of results at once).
inline std::vector<double> flat(const std::vector<attn::Tensor>& ts) {
  std::vector<double> all;
  for (const attn::Tensor& t : ts) {
    auto x = t.to_vector<double>();
    all.insert(all.end(), x.begin(), x.end());
  }
  return all;
}

// Runs fn with the given thread count (restoring the previous one).
template <class F>
auto with_threads(int n, const F& fn) {
  const int prev = attn::get_num_threads();
  attn::set_num_threads(n);
  auto r = fn();
  attn::set_num_threads(prev);
  return r;
}

// Sets the tiled attention path's knobs for one scope (detail::FlashAttnConfig): min_weight_bytes
// 0 = always the tiled path, INT64_MAX = never; schedule 0 = auto, 1 = per item, 2 = two passes.
struct FlashKnobs {
  attn::detail::FlashAttnConfig saved = attn::detail::flash_attn_config();
  FlashKnobs(int64_t min_weight_bytes, int schedule = 0) {
    attn::detail::flash_attn_config().min_weight_bytes = min_weight_bytes;
    attn::detail::flash_attn_config().backward_schedule = schedule;
  }
  ~FlashKnobs() { attn::detail::flash_attn_config() = saved; }
};

// fn() on the tiled attention path (tiled = true) or the weights-storing one.
template <class F>
auto with_path(bool tiled, const F& fn, int schedule = 0) {
  FlashKnobs k(tiled ? 0 : std::numeric_limits<int64_t>::max(), schedule);
  return fn();
}

// softmax(q k^T / sqrt(E) + mask) v with causal masking (query i sees keys j <= i), built from
// basic differentiable ops: the reference the fused attention kernels are checked against.
inline attn::Tensor composed_causal_sdpa(const attn::Tensor& q, const attn::Tensor& k, const attn::Tensor& v,
                                         const attn::Tensor& additive_mask) {
  using namespace attn;
  Tensor z = matmul(q, transpose(k, -1, -2)) * (1.0 / std::sqrt(double(q.size(-1)))) + additive_mask;
  z = masked_fill(z, logical_not(causal_mask(q.size(-2), k.size(-2))), -std::numeric_limits<double>::infinity());
  return matmul(softmax(z, -1), v);
}
