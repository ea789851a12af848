#pragma once
// Statistics of attention weights (no autograd; results are float64 unless noted).
// All take weights w [..., L, S] (rows normally summing to 1; all-zero rows of fully masked
// queries are allowed) and return one value per query, shape [..., L]:
//   entropy(w)            -sum_j w_ij log(w_ij)   (0 log 0 = 0; a uniform row over S keys gives log S)
//   max_weight(w)         max_j w_ij
//   sparsity(w, thr)      share of the S weights of row i that are < thr (default 0.01)
//   local_focus(w, d)     sum of w_ij over |j - c_i| <= d, with diagonal c_i = i * S / L
//                         (= i when L == S); the share of mass near the diagonal
//   top_k(w, k)           (values [..., L, k] float64, indices [..., L, k] int64), largest first,
//                         ties broken by the smaller index
//   summarize(w)          means of the four per-query statistics over all queries
#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

namespace attn::metrics {
namespace attn_stats_detail {

inline void check_weights(const Tensor& w, const char* op) {
  ATTN_CHECK(w.defined() && w.dim() >= 2 && w.is_floating_point(), op,
             ": expected floating weights [..., L, S], got ",
             w.defined() ? to_string(w.shape()) : std::string("undefined"));
}
inline Shape row_shape(const Tensor& w) { return Shape(w.shape().begin(), w.shape().end() - 1); }

// f(row pointer as double*, S, query index i) -> double, one value per row.
template <class F>
Tensor per_row(const Tensor& w, const char* op, const F& f) {
  check_weights(w, op);
  const Tensor wd = w.dtype() == kFloat64 ? w : w.detach().to(kFloat64);
  const int64_t L = w.size(-2), S = w.size(-1), rows = w.numel() / std::max<int64_t>(S, 1);
  Tensor out = Tensor::empty(row_shape(w), kFloat64);
  const double* p = wd.data<double>();
  double* o = out.data<double>();
  parallel_for(0, rows, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) o[r] = f(p + r * S, S, L, r % std::max<int64_t>(L, 1));
  });
  return out;
}
}  // namespace attn_stats_detail

// Entropy per query (natural log), [..., L].
inline Tensor entropy(const Tensor& w) {
  return attn_stats_detail::per_row(w, "metrics::entropy", [](const double* p, int64_t S, int64_t, int64_t) {
    double h = 0;
    for (int64_t j = 0; j < S; ++j)
      if (p[j] > 0) h -= p[j] * std::log(p[j]);
    return h;
  });
}

// Largest weight per query, [..., L].
inline Tensor max_weight(const Tensor& w) {
  return attn_stats_detail::per_row(w, "metrics::max_weight", [](const double* p, int64_t S, int64_t, int64_t) {
    double m = S ? p[0] : 0.0;
    for (int64_t j = 1; j < S; ++j) m = std::max(m, p[j]);
    return m;
  });
}

// Share of weights below `threshold` per query, [..., L].
inline Tensor sparsity(const Tensor& w, double threshold = 0.01) {
  return attn_stats_detail::per_row(w, "metrics::sparsity", [threshold](const double* p, int64_t S, int64_t, int64_t) {
    int64_t c = 0;
    for (int64_t j = 0; j < S; ++j) c += p[j] < threshold;
    return S ? double(c) / double(S) : 0.0;
  });
}

// Mass within distance d of the (scaled) diagonal per query, [..., L]. Key j counts for query i
// when |j - i * S / L| <= d (computed in double).
inline Tensor local_focus(const Tensor& w, int64_t d = 3) {
  ATTN_CHECK(d >= 0, "metrics::local_focus: distance must be >= 0, got ", d);
  return attn_stats_detail::per_row(w, "metrics::local_focus", [d](const double* p, int64_t S, int64_t L, int64_t i) {
    const double c = double(i) * double(S) / double(L);
    double m = 0;
    for (int64_t j = 0; j < S; ++j)
      if (std::abs(double(j) - c) <= double(d)) m += p[j];
    return m;
  });
}

// The k largest weights of each query and their key positions: ([..., L, k] float64, [..., L, k] int64).
inline std::pair<Tensor, Tensor> top_k(const Tensor& w, int64_t k) {
  attn_stats_detail::check_weights(w, "metrics::top_k");
  const int64_t S = w.size(-1), rows = w.numel() / std::max<int64_t>(S, 1);
  ATTN_CHECK(k >= 1 && k <= S, "metrics::top_k: k = ", k, " outside [1, ", S, "] for weights ", to_string(w.shape()));
  const Tensor wd = w.dtype() == kFloat64 ? w : w.detach().to(kFloat64);
  Shape os = w.shape();
  os.back() = k;
  Tensor vals = Tensor::empty(os, kFloat64), idx = Tensor::empty(os, kInt64);
  const double* p = wd.data<double>();
  double* pv = vals.data<double>();
  int64_t* pi = idx.data<int64_t>();
  parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> order(static_cast<size_t>(S));
    for (int64_t r = r0; r < r1; ++r) {
      const double* row = p + r * S;
      std::iota(order.begin(), order.end(), int64_t(0));
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int64_t a, int64_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      for (int64_t t = 0; t < k; ++t) {
        pi[r * k + t] = order[size_t(t)];
        pv[r * k + t] = row[order[size_t(t)]];
      }
    }
  });
  return {vals, idx};
}

struct AttentionSummary {
  double entropy = 0, max_weight = 0, sparsity = 0, local_focus = 0;
};

// Means over all queries of the per-query statistics.
inline AttentionSummary summarize(const Tensor& w, double threshold = 0.01, int64_t d = 3) {
  auto mean_of = [](const Tensor& t) {
    const double* p = t.data<double>();
    double s = 0;
    for (int64_t i = 0; i < t.numel(); ++i) s += p[i];
    return t.numel() ? s / double(t.numel()) : 0.0;
  };
  AttentionSummary s;
  s.entropy = mean_of(entropy(w));
  s.max_weight = mean_of(max_weight(w));
  s.sparsity = mean_of(sparsity(w, threshold));
  s.local_focus = mean_of(local_focus(w, d));
  return s;
}

}  // namespace attn::metrics
