#pragma once
// Raw loops of sparsemax and 1.5-entmax over one lane (n entries at stride st): the exact
// sort-based threshold tau and the backward through the support. No Tensor, no autograd; the
// formulas are at the top of ops/sparsemax.hpp, which iterates the lanes and records the node.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace attn::kernels::cpu {

// Alpha = 2 (sparsemax) or 1.5 (entmax15), forward of one lane: po[j * st] from px[j * st].
template <bool Entmax, class scalar_t>
void sparse_normalize_lane(const scalar_t* px, scalar_t* po, int64_t n, int64_t st) {
  std::vector<scalar_t> z;  // the finite entries, sorted in decreasing order
  z.reserve(size_t(n));
  scalar_t m = -std::numeric_limits<scalar_t>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t v = px[j * st];
    if (v != -std::numeric_limits<scalar_t>::infinity()) z.push_back(v), m = std::max(m, v);
  }
  if (z.empty()) {
    for (int64_t j = 0; j < n; ++j) po[j * st] = 0;
    return;
  }
  // shift by the maximum (and halve for entmax15: its z/2)
  const scalar_t scale = Entmax ? scalar_t(0.5) : scalar_t(1);
  for (auto& v : z) v = (v - m) * scale;
  std::sort(z.begin(), z.end(), [](scalar_t a, scalar_t b) { return a > b; });
  scalar_t tau = 0, sum = 0, sum_sq = 0;
  for (size_t k = 0; k < z.size(); ++k) {
    const scalar_t rho = scalar_t(k + 1);
    sum += z[k];
    if (!Entmax) {
      // support of size k+1 is valid while 1 + (k+1) z_(k) > sum_{j<=k} z_(j)
      if (1 + rho * z[k] > sum) tau = (sum - 1) / rho;
      else break;
    } else {
      // tau_k = mean - sqrt((1 - rho (mean_sq - mean^2)) / rho); support while tau_k <= z_(k)
      sum_sq += z[k] * z[k];
      const scalar_t mean = sum / rho, ss = rho * (sum_sq / rho - mean * mean);
      const scalar_t t = mean - std::sqrt(std::max(scalar_t(0), (1 - ss) / rho));
      if (t <= z[k]) tau = t;
      else break;
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t v = px[j * st];
    if (v == -std::numeric_limits<scalar_t>::infinity()) {
      po[j * st] = 0;
      continue;
    }
    const scalar_t r = std::max(scalar_t(0), (v - m) * scale - tau);
    po[j * st] = Entmax ? r * r : r;
  }
}

// Backward of one lane: po[j * st] = dL/dz_j from the output gradient pg and the output py.
template <bool Entmax, class scalar_t>
void sparse_normalize_lane_backward(const scalar_t* pg, const scalar_t* py, scalar_t* po, int64_t n, int64_t st) {
  scalar_t num = 0, den = 0;  // sparsemax: sum of g and size over S; entmax15: sum s g and sum s
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t p = py[j * st];
    if (p <= 0) continue;
    const scalar_t s = Entmax ? std::sqrt(p) : scalar_t(1);
    num += s * pg[j * st];
    den += s;
  }
  const scalar_t q = den > 0 ? num / den : scalar_t(0);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t k = j * st;
    const scalar_t p = py[k];
    const scalar_t s = p > 0 ? (Entmax ? std::sqrt(p) : scalar_t(1)) : scalar_t(0);
    po[k] = s * (pg[k] - q);
  }
}

}  // namespace attn::kernels::cpu
