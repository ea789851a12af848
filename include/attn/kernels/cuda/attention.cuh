#pragma once
// Device helpers shared by the attention kernels: which keys a query sees, its score, dropout.
#include "api.hpp"
#include "common.cuh"

namespace attn::kernels::cuda::detail {

// Same counter-based keep/drop decision as ops/attention.hpp (attn_dropout_keep), so a CUDA run
// drops exactly the weights a CPU run with the same seed drops.
__device__ inline bool dropout_keep(uint64_t seed, uint64_t idx, double p) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (idx + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53 >= p;
}

// Score of query i and key j in item it (batch b): scale * q.k + additive mask. Returns false
// when the key is not visible (causal, bool mask false, padded key, or a -inf score).
// q and k point at the two rows (any memory space), E elements each.
__device__ inline bool attn_score(const AttnParams& p, const float* q, const float* k, int64_t it, int64_t b,
                                  int64_t i, int64_t j, float& s) {
  if (p.causal && j > i) return false;
  if (p.kpm && p.kpm[b * p.S + j]) return false;
  float add = 0.f;
  if (p.mask) {
    const int64_t off = p.mask_item_off[it] + i * p.mask_sl + j * p.mask_ss;
    if (p.mask_is_bool) {
      if (!static_cast<const uint8_t*>(p.mask)[off]) return false;
    } else {
      add = static_cast<const float*>(p.mask)[off];
    }
  }
  float dot = 0.f;
  for (int64_t e = 0; e < p.E; ++e) dot += q[e] * k[e];
  s = p.scale * dot + add;
  return s != -INFINITY;
}

// Dynamic shared memory beyond the default 48 KB needs an opt-in per kernel; throws naming the
// kernel when the device cannot give `bytes`.
template <class Kernel>
inline void allow_smem(Kernel k, size_t bytes, const char* name) {
  if (bytes <= 48 * 1024) return;
  int dev = 0, optin = 0;
  ATTN_CUDA_CHECK(cudaGetDevice(&dev));
  ATTN_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (bytes > size_t(optin))
    throw std::runtime_error(std::string("attn CUDA ") + name + ": needs " + std::to_string(bytes) +
                             " bytes of shared memory per block, the device allows " + std::to_string(optin) +
                             " (head dims too large)");
  ATTN_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace attn::kernels::cuda::detail
