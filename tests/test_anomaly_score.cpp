// metrics::percentile (numpy's linear interpolation), anomaly_scores (windowed maximum of the
// mean error, its position), flag_above, errors.
#include <attn/metrics/anomaly_score.hpp>
#include <catch2/catch.hpp>

using namespace attn;
using Catch::Contains;

TEST_CASE("anomaly scores: percentile, windowed scores, peaks, flags", "[anomaly_score]") {
  // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 95, 100]) = 1, 1.75, 2.5, 3.85, 4
  const std::vector<double> v = {4, 1, 3, 2};
  CHECK(metrics::percentile(v, 0) == 1);
  CHECK(metrics::percentile(v, 25) == Approx(1.75));
  CHECK(metrics::percentile(v, 50) == Approx(2.5));
  CHECK(metrics::percentile(v, 95) == Approx(3.85));
  CHECK(metrics::percentile(v, 100) == 4);
  CHECK(metrics::percentile({7}, 95) == 7);

  // two series of 6 steps: a burst at steps 3-4 in the second
  const std::vector<double> err = {1, 1, 1, 1, 1, 1, 0, 0, 0, 6, 4, 0};
  const auto mean = metrics::anomaly_scores(err, 6, 6);  // the seed's mean error
  CHECK(mean.scores[0] == Approx(1.0));
  CHECK(mean.scores[1] == Approx(10.0 / 6));
  const auto w2 = metrics::anomaly_scores(err, 6, 2);
  CHECK(w2.scores[0] == Approx(1.0));
  CHECK(w2.scores[1] == Approx(5.0));
  CHECK(w2.peak[1] == 4);  // the window [3, 4]
  const auto w1 = metrics::anomaly_scores(err, 6, 1);
  CHECK(w1.peak[1] == 3);
  CHECK(w1.peak[0] == 0);  // first maximum on ties
  CHECK(metrics::flag_above(w2.scores, 2.0) == std::vector<int>{0, 1});

  CHECK_THROWS_WITH(metrics::percentile({}, 5), Contains("percentile: no values"));
  CHECK_THROWS_WITH(metrics::percentile(v, 101), Contains("q must be in [0, 100]"));
  CHECK_THROWS_WITH(metrics::anomaly_scores(err, 5, 2), Contains("12 errors are not whole series of 5 steps"));
  CHECK_THROWS_WITH(metrics::anomaly_scores(err, 6, 7), Contains("window 7 outside [1, 6]"));
  CHECK_THROWS_WITH(metrics::anomaly_scores({1, -1}, 2, 1), Contains("series 0 step 1: the error must be finite and >= 0"));
}
