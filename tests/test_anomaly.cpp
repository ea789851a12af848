// Numeric guard: attn::set_detect_anomaly(true) checks the forward outputs of every op and the
// gradients of every backward step for NaN/Inf and throws attn::AnomalyError naming the op
// where they first appeared (docs/reliability.md, "Numeric guard").
#include <cmath>
#include <limits>
#include <string>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

namespace {
// Turns anomaly mode on for a scope and always back off (the flag is process-wide).
struct AnomalyMode {
  AnomalyMode() { set_detect_anomaly(true); }
  ~AnomalyMode() { set_detect_anomaly(false); }
};

const double kInf = std::numeric_limits<double>::infinity();

// Runs f, expecting AnomalyError; returns its message ("" when it did not throw or threw another type).
template <class F>
std::string anomaly_message(F&& f) {
  try {
    f();
  } catch (const AnomalyError& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("threw a different exception: " << e.what());
    return "";
  }
  FAIL_CHECK("no AnomalyError");
  return "";
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector<double>())
    if (!std::isfinite(v)) return false;
  return true;
}
}  // namespace

TEST_CASE("anomaly: off by default, NaN and Inf propagate silently", "[anomaly]") {
  REQUIRE_FALSE(is_anomaly_enabled());
  Tensor y = attn::log(Tensor::full({3}, -1.0));
  CHECK(std::isnan(y.at({0})));
  Tensor e = attn::exp(Tensor::full({2}, 100.0f));
  CHECK(std::isinf(e.at({0})));
  Tensor x = Tensor::zeros({3}, kFloat64).requires_grad_();
  sum(attn::sqrt(x)).backward();
  CHECK(std::isinf(x.grad().at({0})));
}

TEST_CASE("anomaly: log of a negative number names log in the forward pass", "[anomaly]") {
  AnomalyMode on;
  // No input requires grad: the forward output is still checked.
  std::string m = anomaly_message([] { attn::log(Tensor::from_vector(std::vector<float>{1.f, -2.f, 3.f})); });
  CHECK_THAT(m, Contains("log") && Contains("NaN") && Contains("forward output") && Contains("[3]") &&
                    Contains("flat index 1"));
  // Inside a differentiable computation: the first bad op is named, not a later one.
  Tensor w = Tensor::from_vector(std::vector<double>{0.5, -1.5}).requires_grad_();
  m = anomaly_message([&] { sum(mul(attn::log(add(w, -1.0)), 2.0)); });
  CHECK_THAT(m, Contains("anomaly: log produced NaN"));
}

TEST_CASE("anomaly: overflow in exp without the stable path names exp", "[anomaly]") {
  AnomalyMode on;
  // exp(100) overflows float32 (max ~3.4e38).
  std::string m = anomaly_message([] { mul(attn::exp(Tensor::full({2, 2}, 100.0f)), 0.5); });
  CHECK_THAT(m, Contains("anomaly: exp produced Inf") && Contains("[2, 2]"));
  // A hand-written softmax exp(x) / sum(exp(x)) overflows in float64 for x = 1000 ...
  Tensor x = Tensor::from_vector(std::vector<double>{1000.0, 0.0, -5.0}, {1, 3}).requires_grad_();
  m = anomaly_message([&] {
    Tensor ex = attn::exp(x);
    div(ex, sum(ex, 1, true));  // without anomaly mode: Inf / Inf = NaN here
  });
  CHECK_THAT(m, Contains("anomaly: exp produced Inf"));
  // ... while the library's softmax (max-subtracted) does not trigger the guard.
  Tensor s = softmax(x, 1);
  CHECK(all_finite(s));
  CHECK(s.at({0, 0}) == Approx(1.0));
  sum(mul(s, Tensor::from_vector(std::vector<double>{1.0, 2.0, 3.0}, {1, 3}))).backward();
  CHECK(all_finite(x.grad()));
}

TEST_CASE("anomaly: a NaN/Inf appearing only in backward names the op and backward", "[anomaly]") {
  AnomalyMode on;
  // sqrt(0) = 0 is fine forward; d sqrt(x)/dx = 1 / (2 sqrt(x)) = Inf at 0.
  Tensor x = Tensor::from_vector(std::vector<double>{4.0, 0.0, 1.0}).requires_grad_();
  Tensor y = sum(mul(attn::sqrt(x), 3.0));  // forward is finite: no throw here
  CHECK(std::isfinite(y.item<double>()));
  std::string m = anomaly_message([&] { y.backward(); });
  CHECK_THAT(m, Contains("anomaly: sqrt produced Inf") && Contains("backward gradient") && Contains("[3]") &&
                    Contains("flat index 1"));
  // 0 * Inf in backward: pow(x, 0.5) at 0 feeding a product with 0 gives NaN in the gradient.
  Tensor z = Tensor::zeros({2}, kFloat64).requires_grad_();
  Tensor loss = sum(mul(attn::pow(z, 0.5), Tensor::from_vector(std::vector<double>{0.0, 1.0})));
  m = anomaly_message([&] { loss.backward(); });
  CHECK_THAT(m, Contains("pow") && Contains("backward gradient"));
}

TEST_CASE("anomaly: division 0/0 names div, ops that are not recorded for grad are checked too", "[anomaly]") {
  AnomalyMode on;
  std::string m = anomaly_message([] { div(Tensor::zeros({2}), Tensor::zeros({2})); });
  CHECK_THAT(m, Contains("anomaly: div produced NaN"));
  // scaled_dot_product_attention skips recording when nothing needs grad; its outputs are still checked.
  Tensor q = Tensor::randn({1, 2, 4});
  q.set({0, 1, 2}, std::nan(""));
  m = anomaly_message([&] { scaled_dot_product_attention(q, Tensor::randn({1, 3, 4}), Tensor::randn({1, 3, 4})); });
  CHECK_THAT(m, Contains("scaled_dot_product_attention") && Contains("forward output"));
  // Under NoGradGuard too.
  m = anomaly_message([] {
    NoGradGuard ng;
    attn::log(Tensor::full({1}, -1.0));
  });
  CHECK_THAT(m, Contains("anomaly: log"));
}

TEST_CASE("anomaly: stable ops do not trigger the guard", "[anomaly]") {
  AnomalyMode on;
  SECTION("softmax over -inf masked scores, including a fully masked row") {
    Tensor x = Tensor::from_vector(std::vector<double>{0.5, -kInf, 2.0, -kInf, -kInf, -kInf}, {2, 3}).requires_grad_();
    Tensor s;
    REQUIRE_NOTHROW(s = softmax(x, 1));
    CHECK(s.at({0, 1}) == 0.0);
    CHECK(s.at({1, 0}) == 0.0);  // all keys masked: zero weights, not NaN
    CHECK(s.at({1, 2}) == 0.0);
    REQUIRE_NOTHROW(sum(mul(s, Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}))).backward());
    CHECK(all_finite(x.grad()));
  }
  SECTION("scaled_dot_product_attention with a bool mask that hides every key of one query") {
    Tensor q = Tensor::randn({1, 3, 4}, kFloat64).requires_grad_();
    Tensor k = Tensor::randn({1, 5, 4}, kFloat64).requires_grad_();
    Tensor v = Tensor::randn({1, 5, 4}, kFloat64).requires_grad_();
    std::vector<bool> mv(15, true);
    for (int j = 0; j < 5; ++j) mv[size_t(5 + j)] = false;  // query 1 sees nothing
    Tensor mask = Tensor::from_vector(mv, {3, 5});
    Tensor out;
    REQUIRE_NOTHROW(out = scaled_dot_product_attention(q, k, v, mask));
    CHECK(all_finite(out));
    REQUIRE_NOTHROW(sum(out).backward());
    CHECK(all_finite(q.grad()));
    CHECK(all_finite(k.grad()));
  }
  SECTION("binary_cross_entropy_with_logits with very large logits") {
    Tensor logits = Tensor::from_vector(std::vector<float>{1000.f, -1000.f, 80.f, -80.f}).requires_grad_();
    Tensor target = Tensor::from_vector(std::vector<float>{0.f, 1.f, 1.f, 0.f});
    Tensor loss;
    REQUIRE_NOTHROW(loss = binary_cross_entropy_with_logits(logits, target));
    CHECK(loss.item<float>() == Approx(500.0).epsilon(1e-4));
    REQUIRE_NOTHROW(loss.backward());
    CHECK(all_finite(logits.grad()));
  }
  SECTION("cross_entropy and log_softmax with large logits") {
    Tensor logits = Tensor::from_vector(std::vector<double>{1e4, -1e4, 0.0, 3e3, 2e3, 1e3}, {2, 3}).requires_grad_();
    Tensor loss;
    REQUIRE_NOTHROW(loss = cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{1, 0})));
    CHECK(std::isfinite(loss.item<double>()));
    REQUIRE_NOTHROW(loss.backward());
    CHECK(all_finite(logits.grad()));
  }
  SECTION("an LSTM and multi-head attention forward/backward on ordinary data") {
    nn::LSTM lstm(3, 4);
    nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(4, 2));
    Tensor x = Tensor::randn({6, 2, 3});
    REQUIRE_NOTHROW([&] {
      Tensor h = lstm.forward(x).first;
      sum(mha.forward(h, h, h).first).backward();
    }());
  }
}

TEST_CASE("anomaly: -inf written by masked_fill counts as an anomaly (documented)", "[anomaly]") {
  // The guard flags every Inf in a forward output, including an intended -inf fill. Under
  // anomaly mode, mask with the attention ops' bool masks (as above) instead.
  AnomalyMode on;
  Tensor scores = Tensor::randn({2, 3});
  Tensor mask = Tensor::from_vector(std::vector<bool>{false, true, false, false, false, true}, {2, 3});
  std::string m = anomaly_message([&] { masked_fill(scores, mask, -kInf); });
  CHECK_THAT(m, Contains("Inf"));
}

TEST_CASE("anomaly: the guard can be switched off again and the library keeps working", "[anomaly]") {
  {
    AnomalyMode on;
    CHECK(is_anomaly_enabled());
    CHECK_THROWS_AS(attn::log(Tensor::full({1}, -1.0)), AnomalyError);
  }
  CHECK_FALSE(is_anomaly_enabled());
  CHECK_NOTHROW(attn::log(Tensor::full({1}, -1.0)));
}
