// attn::metrics attention statistics: hand-computed values, shapes, all-zero rows, errors.
#include <attn/metrics/attention_stats.hpp>
#include <cmath>
#include "test_util.hpp"

using namespace attn;

TEST_CASE("attention stats on hand-made weights", "[attention_stats]") {
  // [2 queries, 4 keys]: uniform row and a peaked row
  Tensor w = Tensor::from_vector(std::vector<double>{0.25, 0.25, 0.25, 0.25, 0.0, 0.005, 0.9, 0.095}, {2, 4});
  Tensor h = metrics::entropy(w);
  CHECK(h.shape() == Shape{2});
  CHECK(h.at({0}) == Approx(std::log(4.0)));
  CHECK(h.at({1}) == Approx(-(0.005 * std::log(0.005) + 0.9 * std::log(0.9) + 0.095 * std::log(0.095))));
  Tensor m = metrics::max_weight(w);
  CHECK(m.at({0}) == 0.25);
  CHECK(m.at({1}) == 0.9);
  Tensor s = metrics::sparsity(w);
  CHECK(s.at({0}) == 0.0);
  CHECK(s.at({1}) == 0.5);  // 0.0 and 0.005 are below 0.01
  CHECK(metrics::sparsity(w, 0.1).at({1}) == 0.75);
  // local focus with d = 1; L=2, S=4 so the diagonal of query i is 2i: keys 0..1 and 1..3
  Tensor lf = metrics::local_focus(w, 1);
  CHECK(lf.at({0}) == Approx(0.5));
  CHECK(lf.at({1}) == Approx(1.0));
  auto [vals, idx] = metrics::top_k(w, 2);
  CHECK(vals.shape() == Shape{2, 2});
  CHECK(idx.dtype() == kInt64);
  CHECK(idx.at({0, 0}) == 0);  // ties: smaller index first
  CHECK(idx.at({0, 1}) == 1);
  CHECK(idx.at({1, 0}) == 2);
  CHECK(idx.at({1, 1}) == 3);
  CHECK(vals.at({1, 0}) == 0.9);
  auto sum = metrics::summarize(w, 0.01, 1);
  CHECK(sum.max_weight == Approx(0.575));
  CHECK(sum.sparsity == Approx(0.25));
}

TEST_CASE("attention stats: batched float32 weights, L != S diagonal scaling, zero rows", "[attention_stats]") {
  // [B=2, H=1, L=2, S=4]; query i's diagonal is at i * S / L = 2i
  std::vector<float> v(16, 0.f);
  v[0] = 1.f;                     // b0 q0 -> key 0 (on the diagonal)
  v[4 + 2] = 1.f;                 // b0 q1 -> key 2 (diagonal 2)
  v[8 + 3] = 1.f;                 // b1 q0 -> key 3 (distance 3)
  Tensor w = Tensor::from_vector(v, {2, 1, 2, 4});  // b1 q1 is an all-zero row (fully masked query)
  Tensor lf = metrics::local_focus(w, 0);
  CHECK(lf.shape() == Shape{2, 1, 2});
  CHECK(lf.at({0, 0, 0}) == 1.0);
  CHECK(lf.at({0, 0, 1}) == 1.0);
  CHECK(lf.at({1, 0, 0}) == 0.0);
  CHECK(metrics::local_focus(w, 3).at({1, 0, 0}) == 1.0);
  CHECK(metrics::entropy(w).at({1, 0, 1}) == 0.0);
  CHECK(metrics::max_weight(w).at({1, 0, 1}) == 0.0);
  CHECK(metrics::sparsity(w).at({1, 0, 1}) == 1.0);
  CHECK(metrics::top_k(w, 4).second.shape() == Shape{2, 1, 2, 4});
}

TEST_CASE("attention stats agree with a softmax row and reject bad input", "[attention_stats][errors]") {
  Tensor w = softmax(Tensor::randn({3, 5, 7}, kFloat64), -1);
  Tensor h = metrics::entropy(w);
  for (double x : h.to_vector<double>()) {
    CHECK(x > 0.0);
    CHECK(x <= std::log(7.0) + 1e-12);
  }
  for (double x : metrics::local_focus(w, 100).to_vector<double>()) CHECK(x == Approx(1.0));
  CHECK_THROWS_AS(metrics::entropy(Tensor::randn({5})), ShapeError);
  CHECK_THROWS_AS(metrics::top_k(w, 8), ShapeError);
  CHECK_THROWS_AS(metrics::top_k(w, 0), ShapeError);
  CHECK_THROWS_AS(metrics::local_focus(w, -1), ShapeError);
  CHECK_THROWS_AS(metrics::max_weight(Tensor::ones({2, 2}, kInt64)), ShapeError);
}
