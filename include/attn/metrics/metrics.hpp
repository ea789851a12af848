#pragma once
// Evaluation metrics for the reference tasks, on plain std::vector data.
//
// Binary classification takes labels (0/1 ints) and scores (probabilities, or logits with
// threshold 0). A score counts as a positive prediction when score > threshold, the rule the
// reference PyTorch script uses (`outputs > 0.5`). Precision, recall and F1 follow
// scikit-learn with zero_division=0: a zero denominator gives 0, not NaN.
//
// Score vectors may hold any floating-point type (models produce float, references double);
// the functions are templates on that type, so pass a std::vector, not a braced list.
//
// Degenerate input throws std::invalid_argument naming the function and the sizes: empty
// input, mismatched sizes, labels other than 0/1, NaN scores where an order is needed, and a
// single class for roc_auc / roc_curve (scikit-learn returns NaN there; a silent NaN in a
// report is worse than an error).
//
// Attention accuracy of an anomaly classifier (does the pooling point at the anomaly?),
// `attention_coverage(weights, s, e, radius)`:
//   p      = argmax_t weights[t]                 (first maximum on ties)
//   region = [max(0, p - radius), min(T - 1, p + radius)]   (inclusive, clipped to the series)
//   result = |region ∩ [s, e)| / (e - s)         in [0, 1]; 0 when the segment is empty (s == e,
//                                                 e.g. s = e = -1 for a normal series)
// With radius 0 it is 1/(e - s) when the peak lies in the segment and 0 otherwise, so
// `attention_coverage(w, s, e, 0) > 0` is the simpler "the peak hits the anomaly" test. A region
// of 2*radius + 1 points can cover at most (2*radius + 1)/(e - s) of a longer segment.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace attn::metrics {

struct ConfusionMatrix {
  std::int64_t tn = 0, fp = 0, fn = 0, tp = 0;
};

struct RocCurve {
  // Same points as sklearn.metrics.roc_curve(drop_intermediate=False): thresholds are the
  // distinct scores in decreasing order, preceded by +inf (the point fpr = tpr = 0).
  std::vector<double> fpr, tpr, thresholds;
};

namespace detail {

inline std::string sizes_text(std::size_t a, std::size_t b) {
  return "(" + std::to_string(a) + " labels vs " + std::to_string(b) + " scores)";
}

template <typename T>
void check_binary(const char* fn, const std::vector<int>& labels, const std::vector<T>& scores) {
  static_assert(std::is_floating_point<T>::value, "attn::metrics: scores must be floating point");
  if (labels.empty() || labels.size() != scores.size())
    throw std::invalid_argument(std::string("metrics::") + fn + ": need equal, non-zero sizes " +
                                sizes_text(labels.size(), scores.size()));
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] != 0 && labels[i] != 1)
      throw std::invalid_argument(std::string("metrics::") + fn + ": label " +
                                  std::to_string(labels[i]) + " at index " + std::to_string(i) +
                                  " is not 0 or 1 (size " + std::to_string(labels.size()) + ")");
}

template <typename T>
void check_no_nan(const char* fn, const std::vector<T>& scores) {
  for (std::size_t i = 0; i < scores.size(); ++i)
    if (std::isnan(scores[i]))
      throw std::invalid_argument(std::string("metrics::") + fn + ": NaN score at index " +
                                  std::to_string(i) + " (size " + std::to_string(scores.size()) +
                                  ")");
}

inline double ratio_or_zero(double num, double den) { return den == 0.0 ? 0.0 : num / den; }

template <typename A, typename B>
void check_regression(const char* fn, const std::vector<A>& y_true, const std::vector<B>& y_pred) {
  static_assert(std::is_arithmetic<A>::value && std::is_arithmetic<B>::value,
                "attn::metrics: regression targets must be arithmetic");
  if (y_true.empty() || y_true.size() != y_pred.size())
    throw std::invalid_argument(std::string("metrics::") + fn + ": need equal, non-zero sizes (" +
                                std::to_string(y_true.size()) + " targets vs " +
                                std::to_string(y_pred.size()) + " predictions)");
}

}  // namespace detail

template <typename T>
ConfusionMatrix confusion_matrix(const std::vector<int>& labels, const std::vector<T>& scores,
                                 double threshold = 0.5) {
  detail::check_binary("confusion_matrix", labels, scores);
  ConfusionMatrix cm;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const bool pred = static_cast<double>(scores[i]) > threshold;  // NaN predicts negative
    if (labels[i] == 1)
      (pred ? cm.tp : cm.fn) += 1;
    else
      (pred ? cm.fp : cm.tn) += 1;
  }
  return cm;
}

template <typename T>
double accuracy(const std::vector<int>& labels, const std::vector<T>& scores,
                double threshold = 0.5) {
  detail::check_binary("accuracy", labels, scores);
  const ConfusionMatrix cm = confusion_matrix(labels, scores, threshold);
  return static_cast<double>(cm.tp + cm.tn) / static_cast<double>(labels.size());
}

template <typename T>
double precision(const std::vector<int>& labels, const std::vector<T>& scores,
                 double threshold = 0.5) {
  detail::check_binary("precision", labels, scores);
  const ConfusionMatrix cm = confusion_matrix(labels, scores, threshold);
  return detail::ratio_or_zero(static_cast<double>(cm.tp), static_cast<double>(cm.tp + cm.fp));
}

template <typename T>
double recall(const std::vector<int>& labels, const std::vector<T>& scores,
              double threshold = 0.5) {
  detail::check_binary("recall", labels, scores);
  const ConfusionMatrix cm = confusion_matrix(labels, scores, threshold);
  return detail::ratio_or_zero(static_cast<double>(cm.tp), static_cast<double>(cm.tp + cm.fn));
}

template <typename T>
double f1(const std::vector<int>& labels, const std::vector<T>& scores, double threshold = 0.5) {
  detail::check_binary("f1", labels, scores);
  const ConfusionMatrix cm = confusion_matrix(labels, scores, threshold);
  // 2TP / (2TP + FP + FN) equals 2PR/(P+R) and stays defined when P or R is 0.
  return detail::ratio_or_zero(2.0 * static_cast<double>(cm.tp),
                               static_cast<double>(2 * cm.tp + cm.fp + cm.fn));
}

// Exact ROC-AUC via the Mann-Whitney U statistic: the probability that a random positive
// scores above a random negative, ties counting one half (average ranks). O(n log n).
template <typename T>
double roc_auc(const std::vector<int>& labels, const std::vector<T>& scores) {
  detail::check_binary("roc_auc", labels, scores);
  detail::check_no_nan("roc_auc", scores);
  const std::size_t n = labels.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });

  double pos_rank_sum = 0.0;
  std::int64_t n_pos = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    std::int64_t pos_in_tie = 0;
    while (j < n && scores[order[j]] == scores[order[i]]) pos_in_tie += labels[order[j++]];
    // Ranks i+1 .. j (1-based) share their mean.
    const double mean_rank = 0.5 * static_cast<double>(i + 1 + j);
    pos_rank_sum += mean_rank * static_cast<double>(pos_in_tie);
    n_pos += pos_in_tie;
    i = j;
  }
  const std::int64_t n_neg = static_cast<std::int64_t>(n) - n_pos;
  if (n_pos == 0 || n_neg == 0)
    throw std::invalid_argument("metrics::roc_auc: needs both classes, got " +
                                std::to_string(n_pos) + " positives and " + std::to_string(n_neg) +
                                " negatives (size " + std::to_string(n) + ")");
  const double np = static_cast<double>(n_pos), nn = static_cast<double>(n_neg);
  return (pos_rank_sum - np * (np + 1.0) / 2.0) / (np * nn);
}

template <typename T>
RocCurve roc_curve(const std::vector<int>& labels, const std::vector<T>& scores) {
  detail::check_binary("roc_curve", labels, scores);
  detail::check_no_nan("roc_curve", scores);
  const std::size_t n = labels.size();
  const std::int64_t n_pos = std::accumulate(labels.begin(), labels.end(), std::int64_t{0});
  const std::int64_t n_neg = static_cast<std::int64_t>(n) - n_pos;
  if (n_pos == 0 || n_neg == 0)
    throw std::invalid_argument("metrics::roc_curve: needs both classes, got " +
                                std::to_string(n_pos) + " positives and " + std::to_string(n_neg) +
                                " negatives (size " + std::to_string(n) + ")");
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });

  RocCurve roc;
  roc.fpr.push_back(0.0);
  roc.tpr.push_back(0.0);
  roc.thresholds.push_back(std::numeric_limits<double>::infinity());
  std::int64_t tp = 0, fp = 0;
  for (std::size_t i = 0; i < n;) {
    const T s = scores[order[i]];
    for (; i < n && scores[order[i]] == s; ++i) (labels[order[i]] == 1 ? tp : fp) += 1;
    roc.fpr.push_back(static_cast<double>(fp) / static_cast<double>(n_neg));
    roc.tpr.push_back(static_cast<double>(tp) / static_cast<double>(n_pos));
    roc.thresholds.push_back(static_cast<double>(s));
  }
  return roc;
}

template <typename A, typename B>
double mae(const std::vector<A>& y_true, const std::vector<B>& y_pred) {
  detail::check_regression("mae", y_true, y_pred);
  double sum = 0.0;
  for (std::size_t i = 0; i < y_true.size(); ++i)
    sum += std::abs(static_cast<double>(y_true[i]) - static_cast<double>(y_pred[i]));
  return sum / static_cast<double>(y_true.size());
}

template <typename A, typename B>
double rmse(const std::vector<A>& y_true, const std::vector<B>& y_pred) {
  detail::check_regression("rmse", y_true, y_pred);
  double sum = 0.0;
  for (std::size_t i = 0; i < y_true.size(); ++i) {
    const double d = static_cast<double>(y_true[i]) - static_cast<double>(y_pred[i]);
    sum += d * d;
  }
  return std::sqrt(sum / static_cast<double>(y_true.size()));
}

// See the header comment for the definition.
template <typename T>
double attention_coverage(const std::vector<T>& weights, std::int64_t seg_start,
                          std::int64_t seg_end, std::int64_t radius) {
  static_assert(std::is_floating_point<T>::value,
                "attn::metrics: attention weights must be floating point");
  const auto n = static_cast<std::int64_t>(weights.size());
  const std::string where = "metrics::attention_coverage: ";
  if (seg_start == seg_end) return 0.0;
  if (n == 0) throw std::invalid_argument(where + "empty weights");
  if (radius < 0) throw std::invalid_argument(where + "negative radius " + std::to_string(radius));
  if (seg_start < 0 || seg_end > n || seg_start > seg_end)
    throw std::invalid_argument(where + "segment [" + std::to_string(seg_start) + ", " +
                                std::to_string(seg_end) + ") is not inside a series of size " +
                                std::to_string(n));
  detail::check_no_nan("attention_coverage", weights);
  const std::int64_t p =
      static_cast<std::int64_t>(std::max_element(weights.begin(), weights.end()) - weights.begin());
  const std::int64_t r = std::min(radius, n);  // keeps p + r + 1 from overflowing
  const std::int64_t lo = std::max<std::int64_t>(0, p - r);
  const std::int64_t hi = std::min<std::int64_t>(n, p + r + 1);  // exclusive
  const std::int64_t covered = std::max<std::int64_t>(0, std::min(hi, seg_end) - std::max(lo, seg_start));
  return static_cast<double>(covered) / static_cast<double>(seg_end - seg_start);
}

}  // namespace attn::metrics
