#pragma once
// Forecast errors on plain vectors (truth y, forecast f, same length n > 0):
//   mae   = 1/n sum |y - f|
//   rmse  = sqrt(1/n sum (y - f)^2)
//   mape  = 100/n sum |y - f| / |y|                    (percent; throws if some y == 0)
//   smape = 100/n sum 2 |y - f| / (|y| + |f|)           (percent, the M4 competition's; a term
//                                                        with y = f = 0 counts 0)
//   mase  = mae / (1/(T - m) sum_{t >= m} |x_t - x_{t-m}|)  over the training series x (length
//           T > m): the error relative to the in-sample seasonal-naive forecast with period m
//           (Hyndman and Koehler, 2006); below 1 beats seasonal-naive on the training part.
//   pinball(q) = 1/n sum max(q (y - f), (q - 1)(y - f)) (the quantile loss of a q-forecast)
//   interval_coverage = share of y inside [lower, upper]
// Bad input (empty, mismatched sizes, non-finite values, a zero denominator) throws
// std::invalid_argument naming the function and the sizes.
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace attn::metrics {

namespace detail {
inline void check_forecast(const char* fn, const std::vector<double>& y, const std::vector<double>& f) {
  if (y.empty() || y.size() != f.size())
    throw std::invalid_argument(std::string(fn) + ": truth and forecast need the same non-zero length, got " +
                                std::to_string(y.size()) + " and " + std::to_string(f.size()));
  for (size_t i = 0; i < y.size(); ++i)
    if (!std::isfinite(y[i]) || !std::isfinite(f[i]))
      throw std::invalid_argument(std::string(fn) + ": non-finite value at index " + std::to_string(i));
}
}  // namespace detail

inline double mae(const std::vector<double>& y, const std::vector<double>& f) {
  detail::check_forecast("mae", y, f);
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += std::abs(y[i] - f[i]);
  return s / double(y.size());
}
inline double rmse(const std::vector<double>& y, const std::vector<double>& f) {
  detail::check_forecast("rmse", y, f);
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += (y[i] - f[i]) * (y[i] - f[i]);
  return std::sqrt(s / double(y.size()));
}
inline double mape(const std::vector<double>& y, const std::vector<double>& f) {
  detail::check_forecast("mape", y, f);
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] == 0) throw std::invalid_argument("mape: truth is 0 at index " + std::to_string(i) + " (use smape or mase)");
    s += std::abs(y[i] - f[i]) / std::abs(y[i]);
  }
  return 100.0 * s / double(y.size());
}
inline double smape(const std::vector<double>& y, const std::vector<double>& f) {
  detail::check_forecast("smape", y, f);
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double den = std::abs(y[i]) + std::abs(f[i]);
    if (den > 0) s += 2.0 * std::abs(y[i] - f[i]) / den;
  }
  return 100.0 * s / double(y.size());
}
// The in-sample MAE of the seasonal-naive forecast x_t = x_{t-m}: MASE's denominator.
inline double seasonal_naive_scale(const std::vector<double>& train, int64_t m) {
  if (m < 1 || int64_t(train.size()) <= m)
    throw std::invalid_argument("mase: the training series (" + std::to_string(train.size()) +
                                " values) must be longer than the season m = " + std::to_string(m));
  double s = 0;
  for (size_t t = size_t(m); t < train.size(); ++t) {
    if (!std::isfinite(train[t]) || !std::isfinite(train[t - size_t(m)]))
      throw std::invalid_argument("mase: non-finite training value near index " + std::to_string(t));
    s += std::abs(train[t] - train[t - size_t(m)]);
  }
  s /= double(train.size() - size_t(m));
  if (s == 0) throw std::invalid_argument("mase: the training series repeats with period m exactly (scale 0)");
  return s;
}
inline double mase(const std::vector<double>& y, const std::vector<double>& f, const std::vector<double>& train,
                   int64_t m = 1) {
  return mae(y, f) / seasonal_naive_scale(train, m);
}
inline double pinball(const std::vector<double>& y, const std::vector<double>& f, double q) {
  detail::check_forecast("pinball", y, f);
  if (!(q > 0 && q < 1)) throw std::invalid_argument("pinball: quantile must be in (0, 1), got " + std::to_string(q));
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double d = y[i] - f[i];
    s += std::max(q * d, (q - 1) * d);
  }
  return s / double(y.size());
}
inline double interval_coverage(const std::vector<double>& y, const std::vector<double>& lower,
                                const std::vector<double>& upper) {
  detail::check_forecast("interval_coverage", y, lower);
  detail::check_forecast("interval_coverage", y, upper);
  size_t in = 0;
  for (size_t i = 0; i < y.size(); ++i) in += (lower[i] <= y[i] && y[i] <= upper[i]);
  return double(in) / double(y.size());
}

}  // namespace attn::metrics
