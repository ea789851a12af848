// Forecast metrics (MAE, RMSE, MAPE, sMAPE, MASE, pinball, interval coverage) against values
// worked out by hand, quantile_loss (values, gradcheck, agreement with metrics::pinball) and
// nn::MultiStepHead shapes.
#include <attn/attn.hpp>
#include <attn/metrics/forecast.hpp>
#include <attn/nn/forecast.hpp>
#include <attn/testing/gradcheck.hpp>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

TEST_CASE("forecast metrics: values by hand", "[forecast][metrics]") {
  const std::vector<double> y = {1, 2, 4, -2}, f = {2, 2, 1, -1};
  // errors: -1, 0, 3, -1
  CHECK(metrics::mae(y, f) == Approx(5.0 / 4));
  CHECK(metrics::rmse(y, f) == Approx(std::sqrt(11.0 / 4)));
  CHECK(metrics::mape(y, f) == Approx(100.0 / 4 * (1.0 + 0 + 0.75 + 0.5)));
  CHECK(metrics::smape(y, f) == Approx(100.0 / 4 * (2.0 / 3 + 0 + 6.0 / 5 + 2.0 / 3)));
  CHECK(metrics::smape({0, 1}, {0, 1}) == 0);  // 0/0 term counts 0
  // training series with period 2: |x_t - x_{t-2}| = 1, 3, 1 -> scale 5/3
  const std::vector<double> train = {0, 1, 1, 4, 2};
  CHECK(metrics::seasonal_naive_scale(train, 2) == Approx(5.0 / 3));
  CHECK(metrics::mase(y, f, train, 2) == Approx((5.0 / 4) / (5.0 / 3)));
  CHECK(metrics::mase(y, f, train) == Approx((5.0 / 4) / ((1 + 0 + 3 + 2) / 4.0)));  // m = 1
  // pinball at q = 0.9: d = y - f = -1, 0, 3, -1 -> 0.1, 0, 2.7, 0.1
  CHECK(metrics::pinball(y, f, 0.9) == Approx(2.9 / 4));
  CHECK(metrics::pinball(y, f, 0.5) == Approx(metrics::mae(y, f) / 2));
  CHECK(metrics::interval_coverage(y, {0, 2, 5, -3}, {1, 3, 6, -2}) == Approx(0.75));

  CHECK_THROWS_WITH(metrics::mae({}, {}), Contains("mae: truth and forecast need the same non-zero length, got 0 and 0"));
  CHECK_THROWS_WITH(metrics::rmse({1, 2}, {1}), Contains("rmse: truth and forecast need the same non-zero length, got 2 and 1"));
  CHECK_THROWS_WITH(metrics::mape({1, 0}, {1, 1}), Contains("mape: truth is 0 at index 1"));
  CHECK_THROWS_WITH(metrics::mae({1, std::nan("")}, {1, 1}), Contains("mae: non-finite value at index 1"));
  CHECK_THROWS_WITH(metrics::mase(y, f, {1, 2}, 2), Contains("must be longer than the season m = 2"));
  CHECK_THROWS_WITH(metrics::mase(y, f, {1, 2, 1, 2}, 2), Contains("scale 0"));
  CHECK_THROWS_WITH(metrics::pinball(y, f, 1.0), Contains("pinball: quantile must be in (0, 1)"));
}

TEST_CASE("quantile_loss: values, agreement with metrics::pinball, gradcheck", "[forecast][quantile]") {
  manual_seed(4);
  const std::vector<double> qs = {0.1, 0.5, 0.9};
  const Tensor target = Tensor::randn({3, 4}, kFloat64);
  const Tensor pred = Tensor::randn({3, 4, 3}, kFloat64).requires_grad_();
  const Tensor loss = quantile_loss(pred, target, qs);
  const auto t = target.to_vector<double>(), p = pred.to_vector<double>();
  double expect = 0;
  for (size_t j = 0; j < qs.size(); ++j) {
    std::vector<double> fj;
    for (size_t i = 0; i < t.size(); ++i) fj.push_back(p[i * 3 + j]);
    expect += metrics::pinball(t, fj, qs[j]) / 3.0;
  }
  CHECK(loss.item<double>() == Approx(expect).epsilon(1e-14));
  auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return quantile_loss(in[0], target, qs); }, {pred});
  INFO(r.message);
  CHECK(r.ok);
  // the minimiser over a constant forecast is the empirical quantile: 9 of 10 points below q = 0.9
  const std::vector<double> ys = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const Tensor yt = Tensor::from_vector(ys, {10});
  double best = 1e9, arg = -1;
  for (double c = -1; c <= 10; c += 0.25) {
    const double l = quantile_loss(Tensor::full({10, 1}, c, kFloat64), yt, {0.9}).item<double>();
    if (l < best - 1e-12) best = l, arg = c;
  }
  CHECK(arg >= 8.0);
  CHECK(arg <= 9.0);

  CHECK_THROWS_WITH(quantile_loss(pred, target, {0.5}), Contains("quantile_loss: pred [3, 4, 3] must be target [3, 4] plus a last dim of 1"));
  CHECK_THROWS_WITH(quantile_loss(pred, Tensor::zeros({4, 3}, kFloat64), qs), Contains("differ before the quantile dim"));
  CHECK_THROWS_WITH(quantile_loss(pred, target, {0.1, 0.5, 1.0}), Contains("quantiles must lie in (0, 1)"));
}

TEST_CASE("MultiStepHead: direct multi-output shapes and names", "[forecast][head]") {
  nn::MultiStepHead point(nn::MultiStepHeadOptions(8, 24, 2));
  CHECK(point.forward(Tensor::randn({5, 8})).shape() == Shape{5, 24, 2});
  nn::MultiStepHead q(nn::MultiStepHeadOptions(8, 12).quantiles({0.1, 0.5, 0.9}));
  const Tensor out = q.forward(Tensor::randn({5, 8}));
  CHECK(out.shape() == Shape{5, 12, 1, 3});
  CHECK(q.named_parameters()[0].first == "proj.weight");
  CHECK(q.named_parameters()[0].second.shape() == Shape{36, 8});
  // step h, quantile j of row b is proj row (h * channels + c) * Q + j
  const Tensor feat = Tensor::randn({2, 8});
  const auto full = q.proj.forward(feat).to_vector<float>(), shaped = q.forward(feat).to_vector<float>();
  CHECK(full == shaped);
  CHECK_THROWS_WITH(q.forward(Tensor::zeros({5, 7})), Contains("MultiStepHead: features must be [B, 8], got [5, 7]"));
  CHECK_THROWS_AS(nn::MultiStepHead(nn::MultiStepHeadOptions(8, 0)), std::invalid_argument);
}
