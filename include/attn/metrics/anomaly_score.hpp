#pragma once
// Unsupervised anomaly scores from a model's errors, after seed 001's compute_anomaly_score:
// a reconstruction or forecast error per time step is turned into one score per series, and a
// series is flagged when its score exceeds a percentile of reference scores (the scores of data
// taken as normal, e.g. the training series; or the same series, as the seed does).
//   auto s = metrics::anomaly_scores(errors, /*length=*/T, /*window=*/10);   // errors [N, T] flat
//   double thr = metrics::percentile(train_scores, 95.0);                     // numpy's "linear"
//   auto flags = metrics::flag_above(s.scores, thr);
// score = max over t of the mean error over the window ending at t (window = T: the mean error of
// the series, the seed's choice; a short window keeps a brief burst of error from being diluted
// by a long normal series). s.peak is where that window ends: a localisation of the anomaly.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace attn::metrics {

// The q-th percentile (0..100) with linear interpolation between order statistics, as
// numpy.percentile's default: position (n - 1) q / 100 in the sorted values.
inline double percentile(std::vector<double> values, double q) {
  if (values.empty()) throw std::invalid_argument("percentile: no values");
  if (!(q >= 0 && q <= 100)) throw std::invalid_argument("percentile: q must be in [0, 100], got " + std::to_string(q));
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) throw std::invalid_argument("percentile: non-finite value at index " + std::to_string(i));
  std::sort(values.begin(), values.end());
  const double pos = double(values.size() - 1) * q / 100.0;
  const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - double(lo)) * (values[hi] - values[lo]);
}

struct AnomalyScores {
  std::vector<double> scores;  // one per series
  std::vector<int64_t> peak;   // per series: the last step of the window with the largest mean error
};

// errors: per-step errors of N series of `length` steps, row-major [N, length]; window in [1, length].
inline AnomalyScores anomaly_scores(const std::vector<double>& errors, int64_t length, int64_t window) {
  if (length <= 0 || errors.empty() || errors.size() % size_t(length) != 0)
    throw std::invalid_argument("anomaly_scores: " + std::to_string(errors.size()) + " errors are not whole series of " +
                                std::to_string(length) + " steps");
  if (window < 1 || window > length)
    throw std::invalid_argument("anomaly_scores: window " + std::to_string(window) + " outside [1, " + std::to_string(length) + "]");
  AnomalyScores out;
  const size_t n = errors.size() / size_t(length);
  for (size_t i = 0; i < n; ++i) {
    const double* e = &errors[i * size_t(length)];
    double sum = 0, best = -1;
    int64_t at = 0;
    for (int64_t t = 0; t < length; ++t) {
      if (!std::isfinite(e[t]) || e[t] < 0)
        throw std::invalid_argument("anomaly_scores: series " + std::to_string(i) + " step " + std::to_string(t) +
                                    ": the error must be finite and >= 0");
      sum += e[t];
      if (t >= window) sum -= e[t - window];
      if (t >= window - 1 && sum / double(window) > best) best = sum / double(window), at = t;
    }
    out.scores.push_back(best);
    out.peak.push_back(at);
  }
  return out;
}

// 1 where score > threshold.
inline std::vector<int> flag_above(const std::vector<double>& scores, double threshold) {
  std::vector<int> f;
  for (double s : scores) f.push_back(s > threshold ? 1 : 0);
  return f;
}

}  // namespace attn::metrics
