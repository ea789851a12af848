#pragma once
// Sparse alternatives to softmax along a dim (Peters, Niculae and Martins, ACL 2019; Martins and
// Astudillo, ICML 2016): the result is a probability vector like softmax's, but entries below a
// threshold tau are exactly 0, so attention can point at a few steps and ignore the rest.
//   sparsemax(z) = argmin_{p in simplex} |p - z|^2 = max(z - tau, 0),
//                  tau such that the result sums to 1 (found exactly by sorting z);
//   entmax15(z)  = 1.5-entmax = max(z/2 - tau, 0)^2, tau such that it sums to 1 (exact sort-based
//                  algorithm for alpha = 1.5); between softmax (alpha 1) and sparsemax (alpha 2).
// -inf entries (masked keys) get 0 and a lane that is all -inf gives zeros, as softmax does here.
// Backward (S = support, where p > 0):
//   sparsemax: dL/dz_j = [j in S] (g_j - mean_{k in S} g_k)
//   entmax15:  with s_j = sqrt(p_j): dL/dz_j = s_j g_j - s_j (sum_k s_k g_k) / (sum_k s_k)
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>
#include "reduce.hpp"

namespace attn {
namespace detail {

// Alpha = 2 (sparsemax) or 1.5 (entmax15), forward over each lane of [outer, n, inner].
template <bool Entmax>
Tensor sparse_normalize_forward(const Tensor& x, int64_t dim, const char* op) {
  const DimSplit d = split_at(x.shape(), dim);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), op, [&] {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    const int64_t st = d.inner;
    for_each_lane(d, d.n * 8, [&](int64_t base, int64_t) {
      std::vector<scalar_t> z;  // the finite entries, sorted in decreasing order
      z.reserve(size_t(d.n));
      scalar_t m = -std::numeric_limits<scalar_t>::infinity();
      for (int64_t j = 0; j < d.n; ++j) {
        const scalar_t v = px[base + j * st];
        if (v != -std::numeric_limits<scalar_t>::infinity()) z.push_back(v), m = std::max(m, v);
      }
      if (z.empty()) {
        for (int64_t j = 0; j < d.n; ++j) po[base + j * st] = 0;
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
      for (int64_t j = 0; j < d.n; ++j) {
        const scalar_t v = px[base + j * st];
        if (v == -std::numeric_limits<scalar_t>::infinity()) {
          po[base + j * st] = 0;
          continue;
        }
        const scalar_t r = std::max(scalar_t(0), (v - m) * scale - tau);
        po[base + j * st] = Entmax ? r * r : r;
      }
    });
  });
  return out;
}

template <bool Entmax>
Tensor sparse_normalize_backward(const Tensor& g, const Tensor& y, int64_t dim) {
  const DimSplit d = split_at(y.shape(), dim);
  Tensor gx = Tensor::empty(y.shape(), y.dtype());
  ATTN_DISPATCH_FLOATING(y.dtype(), Entmax ? "entmax15_backward" : "sparsemax_backward", [&] {
    const scalar_t *pg = g.data<scalar_t>(), *py = y.data<scalar_t>();
    scalar_t* po = gx.data<scalar_t>();
    const int64_t st = d.inner;
    for_each_lane(d, d.n * 3, [&](int64_t base, int64_t) {
      scalar_t num = 0, den = 0;  // sparsemax: sum of g and size over S; entmax15: sum s g and sum s
      for (int64_t j = 0; j < d.n; ++j) {
        const scalar_t p = py[base + j * st];
        if (p <= 0) continue;
        const scalar_t s = Entmax ? std::sqrt(p) : scalar_t(1);
        num += s * pg[base + j * st];
        den += s;
      }
      const scalar_t q = den > 0 ? num / den : scalar_t(0);
      for (int64_t j = 0; j < d.n; ++j) {
        const int64_t k = base + j * st;
        const scalar_t p = py[k];
        const scalar_t s = p > 0 ? (Entmax ? std::sqrt(p) : scalar_t(1)) : scalar_t(0);
        po[k] = s * (pg[k] - q);
      }
    });
  });
  return gx;
}
}  // namespace detail

inline Tensor sparsemax(const Tensor& x, int64_t dim) {
  dim = detail::wrap_dim(dim, x.dim(), "sparsemax", x.shape());
  ATTN_CHECK(x.device() == Device::CPU, "sparsemax: CPU tensors only (got a tensor on the GPU)");
  const Tensor xc = x.contiguous();
  Tensor y = detail::sparse_normalize_forward<false>(xc, dim, "sparsemax");
  return record("sparsemax", y, {x}, [yd = y.detach(), dim](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{detail::sparse_normalize_backward<false>(g[0].contiguous(), yd, dim)};
  }, {y});
}
inline Tensor entmax15(const Tensor& x, int64_t dim) {
  dim = detail::wrap_dim(dim, x.dim(), "entmax15", x.shape());
  ATTN_CHECK(x.device() == Device::CPU, "entmax15: CPU tensors only (got a tensor on the GPU)");
  const Tensor xc = x.contiguous();
  Tensor y = detail::sparse_normalize_forward<true>(xc, dim, "entmax15");
  return record("entmax15", y, {x}, [yd = y.detach(), dim](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{detail::sparse_normalize_backward<true>(g[0].contiguous(), yd, dim)};
  }, {y});
}

}  // namespace attn
