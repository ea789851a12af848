// data::StandardScaler / MinMaxScaler (statistics of the fitted part only, inverse exact to
// rounding, constant channels) and nn::RevIN (per-instance statistics, affine parameters,
// denormalize(normalize(x)) == x, gradcheck).
#include <attn/attn.hpp>
#include <attn/data/scaler.hpp>
#include <attn/nn/revin.hpp>
#include <attn/testing/gradcheck.hpp>
#include <cmath>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

namespace {
data::SeriesTable table_of(const std::vector<double>& values, int64_t channels) {
  data::SeriesTable t;
  t.values = values;
  t.channels = channels;
  t.rows = int64_t(values.size()) / channels;
  for (int64_t c = 0; c < channels; ++c) t.names.push_back("c" + std::to_string(c));
  return t;
}
}  // namespace

TEST_CASE("scalers: statistics from the fitted rows, inverse exact, constant channels", "[scaler]") {
  // channel 0: 1, 2, 3, 4 | 100 (test part); channel 1 constant 7 on the training part
  auto t = table_of({1, 7, 2, 7, 3, 7, 4, 7, 100, 9}, 2);
  data::StandardScaler st;
  st.fit(t, 0, 4);
  CHECK(st.mean() == std::vector<double>{2.5, 7});
  CHECK(st.scale()[0] == Approx(std::sqrt(1.25)).epsilon(1e-15));  // population std
  CHECK(st.scale()[1] == 1.0);                                     // constant: scale 1
  data::MinMaxScaler mm(-1, 1);
  mm.fit(t, 0, 4);
  CHECK(mm.transform(1, 0) == -1);
  CHECK(mm.transform(4, 0) == 1);
  CHECK(mm.transform(100, 0) == Approx(65));  // the test part may leave the range
  CHECK(mm.transform(7, 1) == -1);            // constant channel maps to lo

  const Tensor x = Tensor::randn({5, 6, 2}, kFloat64) * 30.0 + 400.0;
  for (data::AffineScaler* s : std::vector<data::AffineScaler*>{&st, &mm}) {
    s->fit(x);
    const Tensor z = s->transform(x);
    const Tensor back = s->inverse_transform(z);
    CHECK(check_close(back, x, 4e-16, 0, "inverse_transform(transform(x))"));  // a few ulps of 400
    const auto zv = z.to_vector<double>(), xv = x.to_vector<double>();
    for (size_t i = 0; i < zv.size(); ++i) {
      CHECK(zv[i] == s->transform(xv[i], int64_t(i % 2)));
      CHECK(s->inverse_transform(zv[i], int64_t(i % 2)) == Approx(xv[i]).epsilon(1e-15));
    }
  }
  // after fit on x, the standard scaler's output has mean 0 and std 1 per channel
  const Tensor z = st.transform(x);
  CHECK(check_close(mean(reshape(z, {-1, 2}), 0), Tensor::zeros({2}, kFloat64), 0, 1e-13, "mean"));
  CHECK(check_close(var(reshape(z, {-1, 2}), 0, false), Tensor::ones({2}, kFloat64), 1e-13, 0, "var"));
  // float32 inputs keep their dtype
  CHECK(st.transform(x.to(kFloat32)).dtype() == kFloat32);

  data::StandardScaler unfitted;
  CHECK_THROWS_WITH(unfitted.transform(x), Contains("StandardScaler::transform: call fit first"));
  CHECK_THROWS_WITH(st.transform(Tensor::zeros({3, 4})), Contains("input [3, 4] must end in the 2 fitted channels"));
  CHECK_THROWS_WITH(st.fit(t, 3, 3), Contains("StandardScaler::fit: rows [3, 3)"));
  CHECK_THROWS_AS(data::MinMaxScaler(1, 1), std::invalid_argument);
}

TEST_CASE("RevIN: per-series statistics, reversible, affine parameters, gradcheck", "[revin]") {
  manual_seed(3);
  nn::RevIN revin(nn::RevINOptions(3));
  revin.to(kFloat64);
  const Tensor x = Tensor::randn({4, 10, 3}, kFloat64) * 5.0 + 50.0;
  const Tensor z = revin.normalize(x);
  // with affine weight 1 and bias 0: each (series, channel) has mean 0 and variance var/(var+eps)
  const auto m = mean(z, 1).to_vector<double>();
  for (double v : m) CHECK(std::abs(v) < 1e-12);
  // the affine inverse divides by (weight + eps^2), as the reference does: exact to ~eps^2 = 1e-10
  CHECK(check_close(revin.denormalize(z), x, 1e-9, 0, "denormalize(normalize(x))"));
  nn::RevIN plain(nn::RevINOptions(3).affine(false));
  CHECK(check_close(plain.denormalize(plain.normalize(x)), x, 1e-14, 0, "without affine: exact to rounding"));
  // the statistics are those of each series
  const auto xv = x.to_vector<double>();
  double mu = 0;
  for (int t = 0; t < 10; ++t) mu += xv[size_t((1 * 10 + t) * 3 + 2)];
  CHECK(revin.mean.to_vector<double>()[1 * 3 + 2] == Approx(mu / 10).epsilon(1e-14));
  CHECK(revin.named_parameters().size() == 2);
  CHECK(revin.named_parameters()[0].first == "affine_weight");

  // non-trivial affine: the output is z * w + b, and the inverse still holds
  {
    NoGradGuard g;
    revin.affine_weight.copy_(Tensor::from_vector(std::vector<double>{2.0, 0.5, -1.5}, {3}));
    revin.affine_bias.copy_(Tensor::from_vector(std::vector<double>{0.1, -0.2, 0.3}, {3}));
  }
  const Tensor z2 = revin.normalize(x);
  CHECK(check_close(z2, z * revin.affine_weight + revin.affine_bias, 1e-14, 1e-14, "affine"));
  CHECK(check_close(revin.denormalize(z2), x, 1e-9, 0, "affine inverse"));

  // Gradients. The statistics are detached (as in the reference), so finite differences
  // through x would differ from autograd by design: gradcheck the model output y and the
  // affine parameters with x fixed, and check x's gradient against its formula w / stdev.
  const Tensor xin = Tensor::randn({2, 5, 3}, kFloat64) + 3.0;
  const Tensor y = Tensor::randn({2, 4, 3}, kFloat64).requires_grad_();
  auto r = testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        const Tensor zz = revin.normalize(xin);  // reads affine_weight / affine_bias = in[1], in[2]
        return revin.denormalize(add(in[0], mul(mean(zz, 1, true), 0.7)));
      },
      {y, revin.affine_weight, revin.affine_bias});
  INFO(r.message);
  CHECK(r.ok);
  const Tensor xg = xin.clone().requires_grad_();
  const Tensor cot = Tensor::randn({2, 5, 3}, kFloat64);
  sum(revin.normalize(xg) * cot).backward();
  CHECK(check_close(xg.grad(), cot * revin.affine_weight / revin.stdev, 1e-14, 1e-14, "dz/dx = w / stdev"));

  CHECK_THROWS_WITH(revin.normalize(Tensor::zeros({2, 5, 4}, kFloat64)), Contains("RevIN::normalize: input must be [B, L, 3], got [2, 5, 4]"));
  nn::RevIN fresh(nn::RevINOptions(3).affine(false));
  CHECK(fresh.named_parameters().empty());
  CHECK_THROWS_WITH(fresh.denormalize(Tensor::zeros({2, 5, 3})), Contains("call normalize first"));
  CHECK_THROWS_WITH(revin.denormalize(Tensor::zeros({3, 5, 3}, kFloat64)), Contains("batch of [3, 5, 3]"));
}
