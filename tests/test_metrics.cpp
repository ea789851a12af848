#include <attn/metrics/metrics.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace attn::metrics;
using Catch::Matchers::Contains;

namespace {

// O(n^2) definition of AUC: P(score_pos > score_neg) + 0.5 P(tie).
double pairwise_auc(const std::vector<int>& y, const std::vector<double>& s) {
  double wins = 0.0, pairs = 0.0;
  for (std::size_t i = 0; i < y.size(); ++i)
    for (std::size_t j = 0; j < y.size(); ++j)
      if (y[i] == 1 && y[j] == 0) {
        pairs += 1.0;
        wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
      }
  return wins / pairs;
}

double trapezoid(const RocCurve& r) {
  double a = 0.0;
  for (std::size_t i = 1; i < r.fpr.size(); ++i) a += (r.fpr[i] - r.fpr[i - 1]) * (r.tpr[i] + r.tpr[i - 1]) / 2.0;
  return a;
}

}  // namespace

TEST_CASE("metrics: threshold metrics on a hand-computed case", "[metrics]") {
  // Predictions at 0.5: 0 0 0 1 -> TN=2, FP=0, FN=1, TP=1.
  const std::vector<int> y{0, 0, 1, 1};
  const std::vector<double> s{0.1, 0.4, 0.35, 0.8};
  const ConfusionMatrix cm = confusion_matrix(y, s);
  CHECK(cm.tn == 2);
  CHECK(cm.fp == 0);
  CHECK(cm.fn == 1);
  CHECK(cm.tp == 1);
  CHECK(accuracy(y, s) == Approx(0.75));
  CHECK(precision(y, s) == Approx(1.0));
  CHECK(recall(y, s) == Approx(0.5));
  CHECK(f1(y, s) == Approx(2.0 / 3.0));

  // Threshold 0.3: 0 1 1 1 -> TP=2, FP=1.
  CHECK(precision(y, s, 0.3) == Approx(2.0 / 3.0));
  CHECK(recall(y, s, 0.3) == Approx(1.0));
  CHECK(f1(y, s, 0.3) == Approx(0.8));
  CHECK(accuracy(y, s, 0.3) == Approx(0.75));
}

TEST_CASE("metrics: a score equal to the threshold predicts negative", "[metrics]") {
  const std::vector<int> y{1, 0};
  const std::vector<double> s{0.5, 0.5};
  const ConfusionMatrix cm = confusion_matrix(y, s);
  CHECK(cm.fn == 1);
  CHECK(cm.tn == 1);
  CHECK(cm.tp == 0);
}

TEST_CASE("metrics: logits with threshold 0 and float scores", "[metrics]") {
  const std::vector<int> y{0, 1, 1, 0, 1};
  const std::vector<float> logits{-2.0f, 0.5f, -0.1f, 0.3f, 4.0f};
  // Predictions: 0 1 0 1 1 -> TP=2, FP=1, FN=1, TN=1.
  CHECK(accuracy(y, logits, 0.0) == Approx(0.6));
  CHECK(precision(y, logits, 0.0) == Approx(2.0 / 3.0));
  CHECK(recall(y, logits, 0.0) == Approx(2.0 / 3.0));
  CHECK(f1(y, logits, 0.0) == Approx(2.0 / 3.0));
  // Positives -0.1, 0.5, 4.0 against negatives -2, 0.3: pairs won 1 + 2 + 2 = 5 of 6.
  CHECK(roc_auc(y, logits) == Approx(5.0 / 6.0));
}

TEST_CASE("metrics: zero denominators give 0 like zero_division=0", "[metrics]") {
  const std::vector<int> y{0, 1, 0};
  const std::vector<double> low{0.1, 0.2, 0.3};
  CHECK(precision(y, low) == 0.0);  // no predicted positives
  CHECK(recall(y, low) == 0.0);
  CHECK(f1(y, low) == 0.0);
  CHECK(accuracy(y, low) == Approx(2.0 / 3.0));

  const std::vector<int> all_neg{0, 0};
  const std::vector<double> s{0.9, 0.1};
  CHECK(recall(all_neg, s) == 0.0);  // no actual positives
  CHECK(precision(all_neg, s) == 0.0);
  CHECK(f1(all_neg, s) == 0.0);
}

TEST_CASE("metrics: roc_auc without ties matches scikit-learn's documented example", "[metrics]") {
  const std::vector<int> y{0, 0, 1, 1};
  const std::vector<double> s{0.1, 0.4, 0.35, 0.8};
  CHECK(roc_auc(y, s) == Approx(0.75));

  const std::vector<double> perfect{0.1, 0.2, 0.8, 0.9};
  CHECK(roc_auc(y, perfect) == 1.0);
  const std::vector<double> reversed{0.9, 0.8, 0.2, 0.1};
  CHECK(roc_auc(y, reversed) == 0.0);
  const std::vector<double> constant{0.3, 0.3, 0.3, 0.3};
  CHECK(roc_auc(y, constant) == Approx(0.5));
}

TEST_CASE("metrics: roc_auc averages ties", "[metrics]") {
  // Positives 0.5, 0.9, 0.2 vs negatives 0.5, 0.2, 0.7: 1.5 + 3 + 0.5 = 5 of 9 pairs.
  const std::vector<int> y{0, 1, 0, 1, 1, 0};
  const std::vector<double> s{0.5, 0.5, 0.2, 0.9, 0.2, 0.7};
  CHECK(roc_auc(y, s) == Approx(5.0 / 9.0));
}

TEST_CASE("metrics: roc_curve points match scikit-learn with drop_intermediate=False", "[metrics]") {
  const std::vector<int> y{0, 0, 1, 1};
  const std::vector<double> s{0.1, 0.4, 0.35, 0.8};
  const RocCurve r = roc_curve(y, s);
  REQUIRE(r.thresholds.size() == 5);
  CHECK(std::isinf(r.thresholds[0]));
  CHECK(r.thresholds[1] == 0.8);
  CHECK(r.thresholds[2] == 0.4);
  CHECK(r.thresholds[3] == 0.35);
  CHECK(r.thresholds[4] == 0.1);
  CHECK(r.fpr == std::vector<double>{0.0, 0.0, 0.5, 0.5, 1.0});
  CHECK(r.tpr == std::vector<double>{0.0, 0.5, 0.5, 1.0, 1.0});

  // Tied scores collapse into one point.
  const std::vector<int> yt{0, 1, 0, 1, 1, 0};
  const std::vector<double> st{0.5, 0.5, 0.2, 0.9, 0.2, 0.7};
  const RocCurve rt = roc_curve(yt, st);
  REQUIRE(rt.fpr.size() == 5);
  CHECK(rt.thresholds[1] == 0.9);
  CHECK(rt.thresholds[4] == 0.2);
  CHECK(rt.fpr[1] == Approx(0.0));
  CHECK(rt.tpr[1] == Approx(1.0 / 3.0));
  CHECK(rt.fpr[2] == Approx(1.0 / 3.0));
  CHECK(rt.tpr[2] == Approx(1.0 / 3.0));
  CHECK(rt.fpr[3] == Approx(2.0 / 3.0));
  CHECK(rt.tpr[3] == Approx(2.0 / 3.0));
  CHECK(rt.fpr[4] == 1.0);
  CHECK(rt.tpr[4] == 1.0);
  CHECK(trapezoid(rt) == Approx(roc_auc(yt, st)));
}

TEST_CASE("metrics: roc_auc and the area under roc_curve agree with the pairwise definition", "[metrics]") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 20 + trial * 7;
    std::vector<int> y(static_cast<std::size_t>(n));
    std::vector<double> s(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      y[static_cast<std::size_t>(i)] = static_cast<int>(rng() % 2);
      // One decimal: plenty of ties.
      s[static_cast<std::size_t>(i)] = static_cast<double>(rng() % 11) / 10.0 + 0.3 * y[static_cast<std::size_t>(i)];
    }
    y[0] = 0;
    y[1] = 1;
    const double expected = pairwise_auc(y, s);
    CHECK(roc_auc(y, s) == Approx(expected).epsilon(1e-12));
    CHECK(trapezoid(roc_curve(y, s)) == Approx(expected).epsilon(1e-12));
  }
}

TEST_CASE("metrics: degenerate classification input throws with the function and sizes", "[metrics]") {
  const std::vector<int> y{0, 1, 1};
  const std::vector<double> two{0.1, 0.2};
  const std::vector<int> none;
  const std::vector<double> no_scores;
  CHECK_THROWS_WITH(accuracy(y, two), Contains("accuracy") && Contains("3 labels vs 2 scores"));
  CHECK_THROWS_WITH(precision(y, two), Contains("precision"));
  CHECK_THROWS_WITH(recall(y, two), Contains("recall"));
  CHECK_THROWS_WITH(f1(y, two), Contains("f1"));
  CHECK_THROWS_WITH(confusion_matrix(y, two), Contains("confusion_matrix"));
  CHECK_THROWS_WITH(roc_auc(none, no_scores), Contains("roc_auc") && Contains("0 labels vs 0 scores"));
  CHECK_THROWS_AS(roc_curve(y, two), std::invalid_argument);

  const std::vector<int> bad{0, 2, 1};
  const std::vector<double> s3{0.1, 0.2, 0.3};
  CHECK_THROWS_WITH(accuracy(bad, s3), Contains("label 2 at index 1"));

  const std::vector<int> one_class{1, 1, 1};
  CHECK_THROWS_WITH(roc_auc(one_class, s3), Contains("roc_auc") && Contains("both classes"));
  CHECK_THROWS_WITH(roc_curve(one_class, s3), Contains("roc_curve") && Contains("0 negatives"));

  const std::vector<double> with_nan{0.1, std::nan(""), 0.3};
  CHECK_THROWS_WITH(roc_auc(y, with_nan), Contains("NaN score at index 1"));
}

TEST_CASE("metrics: mae and rmse", "[metrics]") {
  const std::vector<double> t{1.0, 2.0, 3.0};
  const std::vector<float> p{1.5f, 2.0f, 1.0f};
  CHECK(mae(t, p) == Approx(2.5 / 3.0));
  CHECK(rmse(t, p) == Approx(std::sqrt(4.25 / 3.0)));
  CHECK(mae(t, t) == 0.0);
  CHECK(rmse(t, t) == 0.0);
  const std::vector<double> two{1.0, 2.0};
  CHECK_THROWS_WITH(mae(t, two), Contains("mae") && Contains("3 targets vs 2 predictions"));
  CHECK_THROWS_WITH(rmse(std::vector<double>{}, std::vector<double>{}), Contains("rmse"));
}

TEST_CASE("metrics: attention_coverage: share of the segment covered around the peak", "[metrics]") {
  std::vector<double> w(20, 0.01);
  w[10] = 0.5;
  // Region [8, 12] covers 8..12 of the segment [8, 16): 5 of 8 points.
  CHECK(attention_coverage(w, 8, 16, 2) == Approx(5.0 / 8.0));
  // Whole segment inside the region.
  CHECK(attention_coverage(w, 9, 12, 3) == 1.0);
  // Peak outside the segment, region does not reach it.
  CHECK(attention_coverage(w, 0, 5, 2) == 0.0);
  // Radius 0: one point of a 4-point segment.
  CHECK(attention_coverage(w, 10, 14, 0) == Approx(0.25));
  // A huge radius covers everything and must not overflow.
  CHECK(attention_coverage(w, 0, 20, INT64_MAX) == 1.0);

  // Clipped at the start of the series: region [0, 3] covers 4 of 10.
  std::vector<float> v(30, 0.0f);
  v[0] = 1.0f;
  CHECK(attention_coverage(v, 0, 10, 3) == Approx(0.4));
  // Clipped at the end: peak 29, region [27, 29] of segment [20, 30).
  v[0] = 0.0f;
  v[29] = 1.0f;
  CHECK(attention_coverage(v, 20, 30, 2) == Approx(0.3));

  // Ties: the first maximum wins.
  std::vector<double> tie{0.0, 1.0, 0.0, 0.0, 1.0};
  CHECK(attention_coverage(tie, 1, 2, 0) == 1.0);
  CHECK(attention_coverage(tie, 4, 5, 0) == 0.0);

  // Empty segment (a normal series has -1, -1).
  CHECK(attention_coverage(w, -1, -1, 5) == 0.0);
  CHECK(attention_coverage(w, 7, 7, 5) == 0.0);

  CHECK_THROWS_WITH(attention_coverage(w, 15, 25, 1), Contains("attention_coverage") && Contains("size 20"));
  CHECK_THROWS_AS(attention_coverage(w, 5, 3, 1), std::invalid_argument);
  CHECK_THROWS_AS(attention_coverage(w, 3, 5, -1), std::invalid_argument);
  CHECK_THROWS_AS(attention_coverage(std::vector<double>{}, 0, 1, 1), std::invalid_argument);
}
