// sparsemax and entmax15 against the published sort-based algorithms written in torch
// (tests/fixtures/gen_sparsemax.py; forward and gradient, float64), gradcheck, simplex and
// sparsity, -inf entries and all-masked lanes, another dim than the last, float32, errors.
#include <attn/attn.hpp>
#include <attn/ops/sparsemax.hpp>
#include <attn/testing/gradcheck.hpp>
#include <limits>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

namespace {
Shape reduced_shape_of(const Tensor& x, int64_t dim) {
  Shape s = x.shape();
  s.erase(s.begin() + dim);
  return s;
}
}  // namespace

TEST_CASE("sparsemax / entmax15: forward and gradient against the reference algorithms", "[sparsemax][golden]") {
  const auto f = load_fixture("sparsemax.safetensors");
  std::string names;
  for (const char* fn : {"sparsemax", "entmax15"})
    for (const char* c : {"row", "batch", "wide", "peaked", "flat"}) names += (names.empty() ? "" : ",") + std::string(fn) + "." + c;
  REQUIRE(f.metadata.at("cases") == names);
  for (const char* fn : {"sparsemax", "entmax15"})
    for (const char* c : {"row", "batch", "wide", "peaked", "flat"}) {
      const std::string k = std::string(fn) + "." + c;
      INFO(k);
      const Tensor x = f.at(k + ".x").clone().requires_grad_();
      const Tensor y = std::string(fn) == "sparsemax" ? sparsemax(x, -1) : entmax15(x, -1);
      CHECK(check_close(y, f.at(k + ".out"), 1e-12, 1e-14, k + ".out"));
      sum(y * f.at(k + ".r")).backward();
      CHECK(check_close(x.grad(), f.at(k + ".g"), 1e-10, 1e-12, k + ".g"));
    }
}

TEST_CASE("sparsemax / entmax15: simplex, sparsity, gradcheck, masks, dims", "[sparsemax]") {
  manual_seed(9);
  const Tensor x = Tensor::randn({3, 5, 6}, kFloat64) * 2.0;
  for (int which = 0; which < 2; ++which) {
    auto fn = [&](const Tensor& t, int64_t dim) { return which == 0 ? sparsemax(t, dim) : entmax15(t, dim); };
    INFO((which == 0 ? "sparsemax" : "entmax15"));
    for (int64_t dim : {0, 1, 2}) {
      const Tensor y = fn(x, dim);
      CHECK(check_close(sum(y, dim), Tensor::ones(reduced_shape_of(x, dim), kFloat64), 1e-12, 1e-12, "sums to 1"));
      for (double v : y.to_vector<double>()) CHECK(v >= 0);
      // the same as the last-dim op on the transposed tensor
      CHECK(check_close(y, transpose(fn(transpose(x, dim, 2).contiguous(), 2), dim, 2), 1e-14, 1e-15, "dim"));
      auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return fn(in[0], dim); },
                                  {x.clone().requires_grad_()});
      INFO(r.message);
      CHECK(r.ok);
    }
    // sparse: a large gap leaves exact zeros; a peaked row gives a one-hot result
    const auto peaked = fn(Tensor::from_vector(std::vector<double>{10, 0, -1, 0.5}, {4}), 0).to_vector<double>();
    CHECK(peaked == std::vector<double>{1, 0, 0, 0});
    // -inf entries get 0; an all -inf lane gives zeros and a zero gradient
    const double inf = std::numeric_limits<double>::infinity();
    const Tensor m = Tensor::from_vector(std::vector<double>{0.3, -inf, 0.1, -inf, -inf, -inf}, {2, 3}).requires_grad_();
    const Tensor ym = fn(m, 1);
    const auto v = ym.to_vector<double>();
    CHECK(v[1] == 0);
    CHECK(v[0] + v[2] == Approx(1.0));
    CHECK(v[3] == 0);
    CHECK(v[4] == 0);
    CHECK(v[5] == 0);
    sum(ym * Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3})).backward();
    const auto gm = m.grad().to_vector<double>();
    CHECK(gm[3] == 0);
    CHECK(gm[4] == 0);
    CHECK(gm[5] == 0);
    CHECK(gm[1] == 0);
    // float32
    const Tensor y32 = fn(x.to(kFloat32), 2);
    CHECK(y32.dtype() == kFloat32);
    CHECK(check_close(y32, fn(x, 2), 1e-5, 1e-6, "float32"));
  }
  // sparsemax is sparser than entmax15, which is sparser than softmax (never 0)
  const Tensor z = Tensor::randn({64}, kFloat64) * 0.3;
  auto zeros = [](const Tensor& t) {
    int n = 0;
    for (double v : t.to_vector<double>()) n += v == 0;
    return n;
  };
  CHECK(zeros(sparsemax(z, 0)) > zeros(entmax15(z, 0)));
  CHECK(zeros(entmax15(z, 0)) > 0);
  CHECK(zeros(softmax(z, 0)) == 0);
  CHECK_THROWS_WITH(sparsemax(z, 1), Contains("sparsemax"));
  CHECK_THROWS_WITH(entmax15(z, 3), Contains("entmax15"));
}

TEST_CASE("AttentionPooling with sparsemax / entmax15: weights, context, mask, gradcheck", "[sparsemax][pooling]") {
  manual_seed(21);
  nn::AttentionPooling pool(4, 5);
  pool.to(kFloat64);
  const Tensor h = Tensor::randn({2, 6, 4}, kFloat64);
  for (auto n : {nn::AttentionPooling::Normalization::Sparsemax, nn::AttentionPooling::Normalization::Entmax15}) {
    pool.normalization(n);
    const bool sp = n == nn::AttentionPooling::Normalization::Sparsemax;
    INFO((sp ? "sparsemax" : "entmax15"));
    auto [ctx, w] = pool.forward(h);
    // the formula: scores = w2 tanh(W1 h + b1) + b2, weights = normalize(scores), context = sum_t w_t h_t
    const Tensor scores = reshape(linear(tanh(linear(h, pool.proj.weight, pool.proj.bias)), pool.score.weight, pool.score.bias), {2, 6});
    const Tensor expect_w = sp ? sparsemax(scores, 1) : entmax15(scores, 1);
    CHECK(check_close(w, expect_w, 1e-14, 1e-15, "weights"));
    CHECK(check_close(ctx, sum(mul(unsqueeze(expect_w, 2), h), 1), 1e-14, 1e-15, "context"));
    // a mask keeps the masked steps at weight 0
    std::vector<bool> m(12, true);
    m[0] = m[1] = m[7] = false;
    auto [cm, wm] = pool.forward(h, Tensor::from_vector(m, {2, 6}));
    const auto wv = wm.to_vector<double>();
    CHECK(wv[0] == 0);
    CHECK(wv[1] == 0);
    CHECK(wv[7] == 0);
    auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return pool.forward(in[0]).first; },
                                {h.clone().requires_grad_(), pool.proj.weight, pool.score.weight});
    INFO(r.message);
    CHECK(r.ok);
  }
  CHECK_THROWS_WITH(pool.forward(Tensor::zeros({2, 6, 3}, kFloat64)), Contains("AttentionPooling: expected h [B, T, 4], got [2, 6, 3]"));
}

TEST_CASE("normalized_dot_product_attention: softmax is SDPA; sparsemax / entmax15 weights, masks, gradcheck",
          "[sparsemax][attention]") {
  manual_seed(31);
  const Tensor q = Tensor::randn({2, 3, 5, 4}, kFloat64), k = Tensor::randn({2, 3, 6, 4}, kFloat64),
               v = Tensor::randn({2, 3, 6, 3}, kFloat64);
  std::vector<bool> m(30, true);
  m[1] = m[8] = m[29] = false;
  const Tensor mask = Tensor::from_vector(m, {5, 6});
  // Softmax: the same as the fused SDPA, with and without masks.
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    const Tensor am = causal ? Tensor() : mask;
    auto [o, w] = normalized_dot_product_attention(q, k, v, AttnNormalization::Softmax, am, causal);
    auto [o_ref, w_ref] = scaled_dot_product_attention_with_weights(q, k, v, am, causal);
    CHECK(check_close(o, o_ref, 1e-12, 1e-13, "softmax output"));
    CHECK(check_close(w, w_ref, 1e-12, 1e-13, "softmax weights"));
  }
  for (auto n : {AttnNormalization::Sparsemax, AttnNormalization::Entmax15}) {
    const bool sp = n == AttnNormalization::Sparsemax;
    INFO((sp ? "sparsemax" : "entmax15"));
    auto [o, w] = normalized_dot_product_attention(q, k, v, n, mask, true);
    // weights = normalize(q k^T / 2 with the mask and the causal mask), output = weights v
    Tensor scores = mul(matmul(q, transpose(k, -1, -2)), 0.5);
    std::vector<bool> blocked(30);
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 6; ++j) blocked[size_t(i * 6 + j)] = !m[size_t(i * 6 + j)] || j > i;
    scores = masked_fill(scores, Tensor::from_vector(blocked, {5, 6}), -std::numeric_limits<double>::infinity());
    const Tensor w_ref = sp ? sparsemax(scores, -1) : entmax15(scores, -1);
    CHECK(check_close(w, w_ref, 1e-14, 1e-15, "weights"));
    CHECK(check_close(o, matmul(w_ref, v), 1e-14, 1e-15, "output"));
    const auto wv = w.to_vector<double>();
    int zeros = 0;
    for (size_t i = 0; i < wv.size(); ++i) {
      const size_t r = i % 30;
      if (blocked[r]) CHECK(wv[i] == 0.0);  // masked and future keys get exactly 0
      zeros += wv[i] == 0.0 && !blocked[r];
    }
    if (sp) CHECK(zeros > 0);  // sparsemax also drops visible keys
    const Tensor rows = sum(w, -1);
    for (double s : rows.to_vector<double>()) CHECK(std::abs(s - 1.0) < 1e-12);
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return normalized_dot_product_attention(in[0], in[1], in[2], n, mask, true).first;
        },
        {q.clone().requires_grad_(), k.clone().requires_grad_(), v.clone().requires_grad_()});
    INFO(r.message);
    CHECK(r.ok);
  }
  // float32 runs; bad shapes name the op
  const auto f32 = normalized_dot_product_attention(q.to(kFloat32), k.to(kFloat32), v.to(kFloat32),
                                                    AttnNormalization::Entmax15);
  CHECK(f32.first.dtype() == kFloat32);
  CHECK_THROWS_WITH(normalized_dot_product_attention(q, Tensor::randn({2, 3, 6, 5}, kFloat64), v, AttnNormalization::Sparsemax),
                    Contains("normalized_dot_product_attention") && Contains("[2, 3, 6, 5]"));
}
