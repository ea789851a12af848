#pragma once
// Per-channel scalers that can be undone: fit on the training part only, transform everything
// with the training statistics, and map predictions back to the original units.
//   data::StandardScaler sc;  sc.fit(table, 0, split.train_end);    // mean, std (ddof 0) per channel
//   Tensor z = sc.transform(x);               // x [..., C]: (x - mean) / std, differentiable
//   Tensor back = sc.inverse_transform(pred); // pred * std + mean, in the units of the file
// Both scalers are x -> (x - offset) / scale per channel (the last dim); a channel that is
// constant on the fitted part gets scale 1 (as scikit-learn does), so nothing divides by zero.
#include <cmath>
#include <limits>
#include <string>
#include <vector>
#include "../ops/elementwise.hpp"
#include "../ops/shape.hpp"
#include "series_csv.hpp"

namespace attn::data {

class AffineScaler {
 public:
  virtual ~AffineScaler() = default;
  bool fitted() const { return !scale_.empty(); }
  int64_t channels() const { return int64_t(scale_.size()); }
  const std::vector<double>& offset() const { return offset_; }
  const std::vector<double>& scale() const { return scale_; }

  // Fits on rows [begin, end) of a series table (normally [0, train_end)).
  AffineScaler& fit(const SeriesTable& t, int64_t begin, int64_t end) {
    ATTN_CHECK(0 <= begin && begin < end && end <= t.rows, name(), "::fit: rows [", begin, ", ", end, ") not a non-empty ",
               "part of [0, ", t.rows, ")");
    std::vector<std::vector<double>> cols(static_cast<size_t>(t.channels));
    for (int64_t r = begin; r < end; ++r)
      for (int64_t c = 0; c < t.channels; ++c) cols[size_t(c)].push_back(t.at(r, c));
    set_from_columns(cols);
    return *this;
  }
  // Fits on a tensor [..., C]: statistics over every dim but the last.
  AffineScaler& fit(const Tensor& x) {
    ATTN_CHECK(x.dim() >= 1 && x.numel() > 0, name(), "::fit: needs a non-empty tensor [..., C], got ", attn::to_string(x.shape()));
    const int64_t C = x.size(-1);
    const auto v = x.contiguous().to_vector<double>();
    std::vector<std::vector<double>> cols(static_cast<size_t>(C));
    for (size_t i = 0; i < v.size(); ++i) {
      ATTN_CHECK(std::isfinite(v[i]), name(), "::fit: non-finite value at flat index ", i);
      cols[i % size_t(C)].push_back(v[i]);
    }
    set_from_columns(cols);
    return *this;
  }

  // (x - offset) / scale over the last dim of x [..., C]; differentiable.
  Tensor transform(const Tensor& x) const { return div(sub(x, stats(offset_, x, "transform")), stats(scale_, x, "transform")); }
  // x * scale + offset: the exact inverse of transform (up to rounding).
  Tensor inverse_transform(const Tensor& x) const {
    return add(mul(x, stats(scale_, x, "inverse_transform")), stats(offset_, x, "inverse_transform"));
  }
  double transform(double v, int64_t channel) const { return (v - offset_.at(size_t(channel))) / scale_.at(size_t(channel)); }
  double inverse_transform(double v, int64_t channel) const {
    return v * scale_.at(size_t(channel)) + offset_.at(size_t(channel));
  }

 protected:
  virtual const char* name() const = 0;
  // offset_ and scale_ from the values of each channel.
  virtual void set_from_columns(const std::vector<std::vector<double>>& cols) = 0;
  std::vector<double> offset_, scale_;

 private:
  Tensor stats(const std::vector<double>& v, const Tensor& x, const char* what) const {
    ATTN_CHECK(fitted(), name(), "::", what, ": call fit first");
    ATTN_CHECK(x.dim() >= 1 && x.size(-1) == channels(), name(), "::", what, ": input ", attn::to_string(x.shape()),
               " must end in the ", channels(), " fitted channels");
    return Tensor::from_vector(v, {channels()}).to(x.dtype());
  }
};

// (x - mean) / std with the population std (ddof 0), as sklearn.preprocessing.StandardScaler.
class StandardScaler : public AffineScaler {
 public:
  const std::vector<double>& mean() const { return offset_; }

 protected:
  const char* name() const override { return "StandardScaler"; }
  void set_from_columns(const std::vector<std::vector<double>>& cols) override {
    offset_.assign(cols.size(), 0.0);
    scale_.assign(cols.size(), 1.0);
    for (size_t c = 0; c < cols.size(); ++c) {
      double m = 0, ss = 0;
      for (double v : cols[c]) m += v;
      m /= double(cols[c].size());
      for (double v : cols[c]) ss += (v - m) * (v - m);
      const double sd = std::sqrt(ss / double(cols[c].size()));
      offset_[c] = m;
      scale_[c] = sd > 0 ? sd : 1.0;
    }
  }
};

// Maps [min, max] of the fitted part to [lo, hi] (default [0, 1]), as sklearn's MinMaxScaler.
class MinMaxScaler : public AffineScaler {
 public:
  explicit MinMaxScaler(double lo = 0.0, double hi = 1.0) : lo_(lo), hi_(hi) {
    ATTN_CHECK(lo < hi && std::isfinite(lo) && std::isfinite(hi), "MinMaxScaler: feature range needs lo < hi, got [", lo,
               ", ", hi, "]");
  }

 protected:
  const char* name() const override { return "MinMaxScaler"; }
  void set_from_columns(const std::vector<std::vector<double>>& cols) override {
    offset_.assign(cols.size(), 0.0);
    scale_.assign(cols.size(), 1.0);
    for (size_t c = 0; c < cols.size(); ++c) {
      double mn = std::numeric_limits<double>::infinity(), mx = -mn;
      for (double v : cols[c]) mn = std::min(mn, v), mx = std::max(mx, v);
      // x' = (x - min) / (max - min) * (hi - lo) + lo  =  (x - offset) / scale
      scale_[c] = mx > mn ? (mx - mn) / (hi_ - lo_) : 1.0;
      offset_[c] = mn - lo_ * scale_[c];
    }
  }

 private:
  double lo_, hi_;
};

}  // namespace attn::data
