#pragma once
// Device helpers shared by the attention kernels: which keys a query sees, its score, dropout.
#include "attention.hpp"
#include "../../core/random.hpp"
#include "common.cuh"

namespace attn::kernels::cuda::detail {

// Same counter-based keep/drop decision as kernels/cpu/attention_weights.hpp (attn_dropout_keep),
// so a CUDA run drops exactly the weights a CPU run with the same seed drops.
__device__ inline bool dropout_keep(uint64_t seed, uint64_t idx, double p) {
  return double(::attn::splitmix64(seed + 0x9E3779B97F4A7C15ull * idx) >> 11) * 0x1.0p-53 >= p;
}

// Whether query i sees key j in item it (batch b): false when causal hides it, the key is padded
// or a bool mask is false; `add` gets the additive float mask's value (0 without one).
__device__ inline bool attn_visible(const AttnParams& p, int64_t it, int64_t b, int64_t i, int64_t j, float& add) {
  add = 0.f;
  if (p.causal && j > i) return false;
  if (p.kpm && p.kpm[b * p.S + j]) return false;
  if (p.mask) {
    const int64_t off = p.mask_item_off[it] + i * p.mask_sl + j * p.mask_ss;
    if (p.mask_is_bool) return static_cast<const uint8_t*>(p.mask)[off] != 0;
    add = static_cast<const float*>(p.mask)[off];
  }
  return true;
}

// Score of query i and key j in item it (batch b): scale * q.k + additive mask. Returns false
// when the key is not visible (attn_visible, or a -inf score).
// q and k point at the two rows (any memory space), E elements each.
__device__ inline bool attn_score(const AttnParams& p, const float* q, const float* k, int64_t it, int64_t b,
                                  int64_t i, int64_t j, float& s) {
  float add;
  if (!attn_visible(p, it, b, i, j, add)) return false;
  float dot = 0.f;
  for (int64_t e = 0; e < p.E; ++e) dot += q[e] * k[e];
  s = p.scale * dot + add;
  return s != -INFINITY;
}

}  // namespace attn::kernels::cuda::detail
