#pragma once
// The four approximate attention variants as entries for the attention-zoo benchmark
// (bench/bench_attention_zoo.cpp): each <name>(q, k, v) returns the functional op's output on
// q, k, v [B, H, L, E] (float32 or float64; differentiable, the suite runs the backward). The settings are ZooApproxSetup's (one place, documented in
// docs/attention-zoo.md, "Approximate variants"):
//   probsparse  factor 5 (Informer's default): c ln L sampled keys per query, c ln L top queries
//   performer   m = int(E ln E) orthogonal random features (E = 64: 266), non-causal
//   lsh         shared QK (q is used, k ignored), 4 hash rounds, chunks of 64, Reformer's L / 64
//               buckets capped at 64 (the random rotation costs L E n_buckets / 2 per round: a
//               bucket count growing with L makes the hashing quadratic)
//   linformer   k = 256 projected positions (the paper's default), random N(0, 1/k) projections
// The random draws the algorithm makes at every call (ProbSparse's key sample, LSH's rotations)
// are made inside the timed call; fixed parameters (Performer's features, Linformer's
// projections) are drawn once per (L, E, dtype) and cached, as a trained model holds them.
#include <attn/attn.hpp>
#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

namespace zoo_approx {

struct ZooApproxSetup {
  int64_t probsparse_factor = 5;
  int64_t performer_features = 0;  // 0 = int(E ln E)
  int64_t lsh_hashes = 4, lsh_chunk = 64, lsh_max_buckets = 64;
  int64_t linformer_k = 256;
  uint64_t seed = 1234;
};
inline ZooApproxSetup& setup() {
  static ZooApproxSetup s;
  return s;
}

namespace detail {
inline attn::Generator& gen() {
  static attn::Generator g(setup().seed);
  return g;
}
using Key = std::tuple<int64_t, int64_t, int>;
inline Key key_of(const attn::Tensor& t) { return {t.size(-2), t.size(-1), int(t.dtype())}; }
}  // namespace detail

inline attn::Tensor probsparse(const attn::Tensor& q, const attn::Tensor& k, const attn::Tensor& v) {
  return attn::probsparse_attention(q, k, v, setup().probsparse_factor, false, detail::gen());
}

inline attn::Tensor performer(const attn::Tensor& q, const attn::Tensor& k, const attn::Tensor& v) {
  static std::map<detail::Key, attn::Tensor> cache;
  const int64_t E = q.size(-1);
  const int64_t m = setup().performer_features > 0 ? setup().performer_features
                                                   : int64_t(double(E) * std::log(double(E)));
  attn::Tensor& w = cache[detail::key_of(q)];
  if (!w.defined()) w = attn::orthogonal_random_features(m, E, detail::gen(), q.dtype());
  return attn::performer_attention(q, k, v, w);
}

inline attn::Tensor lsh(const attn::Tensor& q, const attn::Tensor& /*k: shared QK*/, const attn::Tensor& v) {
  const int64_t L = q.size(-2), E = q.size(-1);
  const int64_t n_buckets = std::min(attn::lsh_default_buckets(L, setup().lsh_chunk), setup().lsh_max_buckets);
  attn::Tensor rot = attn::lsh_random_rotations(E, setup().lsh_hashes, n_buckets, detail::gen(), q.dtype());
  return attn::lsh_attention(q, v, rot, setup().lsh_chunk);
}

inline attn::Tensor linformer(const attn::Tensor& q, const attn::Tensor& k, const attn::Tensor& v) {
  static std::map<detail::Key, std::pair<attn::Tensor, attn::Tensor>> cache;
  const int64_t S = k.size(-2), kp = setup().linformer_k;
  auto& ef = cache[detail::key_of(k)];
  if (!ef.first.defined()) {
    attn::NoGradGuard ng;
    ef.first = (attn::Tensor::randn({kp, S}, q.dtype()) * (1.0 / std::sqrt(double(kp)))).detach();
    ef.second = (attn::Tensor::randn({kp, S}, q.dtype()) * (1.0 / std::sqrt(double(kp)))).detach();
  }
  return attn::linformer_attention(q, k, v, ef.first, ef.second);
}

}  // namespace zoo_approx
