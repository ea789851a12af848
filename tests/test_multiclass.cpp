// metrics::multiclass_report: confusion matrix, per-class precision / recall / F1, macro F1 and
// accuracy against values worked out by hand (scikit-learn's definitions, zero_division=0),
// zero denominators, errors.
#include <attn/metrics/multiclass.hpp>
#include <catch2/catch.hpp>

using namespace attn;
using Catch::Contains;

TEST_CASE("multiclass_report: values by hand", "[metrics][multiclass]") {
  const std::vector<int> y = {0, 0, 1, 1, 1, 2, 2, 0};
  const std::vector<int> p = {0, 1, 1, 1, 2, 2, 0, 0};
  const auto r = metrics::multiclass_report(y, p, 3);
  CHECK(r.confusion == std::vector<int64_t>{2, 1, 0, 0, 2, 1, 1, 0, 1});
  CHECK(r.at(1, 2) == 1);
  CHECK(r.support == std::vector<int64_t>{3, 3, 2});
  CHECK(r.precision[0] == Approx(2.0 / 3));
  CHECK(r.recall[0] == Approx(2.0 / 3));
  CHECK(r.precision[1] == Approx(2.0 / 3));
  CHECK(r.recall[2] == Approx(0.5));
  CHECK(r.f1[2] == Approx(0.5));
  CHECK(r.macro_f1 == Approx((2.0 / 3 + 2.0 / 3 + 0.5) / 3));
  CHECK(r.accuracy == Approx(5.0 / 8));
  // a class never predicted and never present: precision, recall, F1 0 (zero_division=0)
  const auto z = metrics::multiclass_report({0, 1}, {0, 1}, 3);
  CHECK(z.f1 == std::vector<double>{1, 1, 0});
  CHECK(z.macro_f1 == Approx(2.0 / 3));
  CHECK_THROWS_WITH(metrics::multiclass_report({0, 3}, {0, 1}, 3), Contains("class index out of [0, 3) at 1 (truth 3"));
  CHECK_THROWS_WITH(metrics::multiclass_report({}, {}, 3), Contains("non-zero length"));
  CHECK_THROWS_WITH(metrics::multiclass_report({0}, {0}, 1), Contains("at least 2 classes"));
}
