// scaled_dot_product_attention: goldens from PyTorch (tests/fixtures/gen_attention_torch.py,
// attn_sdpa.safetensors), finite differences, fully masked rows, errors, thread invariance.
#include <attn/ops/attention.hpp>
#include <cstring>
#include <limits>

#include "test_util.hpp"

using namespace attn;

namespace {

Tensor rnd(const Shape& s, bool grad = true) {
  Tensor t = Tensor::randn(s, kFloat64);
  if (grad) t.requires_grad_();
  return t;
}

// Weighted sum of the output so every element gets a different cotangent.
Tensor wsum(const Tensor& y) {
  Tensor r = Tensor::arange(0.0, double(y.numel()), 1.0, kFloat64);
  r = reshape(sin(r * 0.7) + 0.3, y.shape());
  return sum(mul(y, r));
}

Tensor bool_mask(const Shape& s, uint64_t seed, double p_true = 0.7) {
  Generator g(seed);
  std::vector<bool> v(size_t(numel_of(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = g.uniform() < p_true;
  return Tensor::from_vector(v, s);
}

}  // namespace

TEST_CASE("sdpa matches PyTorch goldens (float64)", "[sdpa][golden]") {
  auto f = load_fixture("attn_sdpa.safetensors");
  const std::vector<std::string> cases = {"nomask", "boolmask", "floatmask", "mask_b1ls", "mask_bhls",
                                          "causal", "keypad", "scale", "batch3d", "broadcast_kv"};
  for (const auto& c : cases) {
    SECTION(c) {
      Tensor q = f.at(c + ".q").clone().requires_grad_(), k = f.at(c + ".k").clone().requires_grad_(),
             v = f.at(c + ".v").clone().requires_grad_();
      Tensor mask, kpm;
      if (f.contains(c + ".mask")) {
        mask = f.at(c + ".mask").clone();
        if (f.contains(c + ".mask_is_bool")) mask = ne(mask, Tensor::zeros({}, kFloat64));
        else mask.requires_grad_();
      }
      if (f.contains(c + ".kpm")) kpm = ne(f.at(c + ".kpm"), Tensor::zeros({}, kFloat64));
      const bool causal = f.contains(c + ".causal");
      const double scale = f.contains(c + ".scale") ? f.at(c + ".scale").item<double>() : kDefaultAttnScale;
      auto [out, w] = scaled_dot_product_attention_with_weights(q, k, v, mask, causal, 0.0, scale, kpm);
      CHECK(check_close(out, f.at(c + ".out"), 1e-9, 1e-10, c + ".out"));
      CHECK(check_close(w, f.at(c + ".weights"), 1e-9, 1e-10, c + ".weights"));
      sum(mul(out, f.at(c + ".r"))).backward();
      CHECK(check_close(q.grad(), f.at(c + ".gq"), 1e-9, 1e-10, c + ".gq"));
      CHECK(check_close(k.grad(), f.at(c + ".gk"), 1e-9, 1e-10, c + ".gk"));
      CHECK(check_close(v.grad(), f.at(c + ".gv"), 1e-9, 1e-10, c + ".gv"));
      if (mask.defined() && mask.requires_grad())
        CHECK(check_close(mask.grad(), f.at(c + ".gmask"), 1e-9, 1e-10, c + ".gmask"));
      // the plain form gives the same output
      Tensor out2 = scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), mask.defined() ? mask.detach() : mask,
                                                 causal, 0.0, scale, kpm);
      CHECK(check_close(out2, out, 0, 0, c + ".plain"));
    }
  }
}

TEST_CASE("sdpa gradcheck", "[sdpa][gradcheck]") {
  manual_seed(1);
  Tensor q = rnd({2, 2, 3, 4}), k = rnd({2, 2, 5, 4}), v = rnd({2, 2, 5, 3});
  SECTION("no mask, with weights") {
    auto r = testing::gradcheck(
        [](const std::vector<Tensor>& in) {
          auto [o, w] = scaled_dot_product_attention_with_weights(in[0], in[1], in[2]);
          return wsum(o) + wsum(w);
        },
        {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("bool mask [L, S] and key padding") {
    Tensor m = bool_mask({3, 5}, 7);
    Tensor kpm = Tensor::from_vector(std::vector<bool>{false, false, false, false, true, false, true, false, false, false},
                                     {2, 5});
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], m, false, 0.0, kDefaultAttnScale, kpm);
        },
        {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("float mask [B, 1, L, S] gets a gradient too") {
    Tensor m = rnd({2, 1, 3, 5});
    auto r = testing::gradcheck(
        [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], in[3]); },
        {q, k, v, m});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("causal, scale, L > S") {
    Tensor q2 = rnd({2, 6, 4}), k2 = rnd({2, 4, 4}), v2 = rnd({2, 4, 2});
    auto r = testing::gradcheck(
        [](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), true, 0.0, 0.3);
        },
        {q2, k2, v2});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("self-attention sdpa(x, x, x) and broadcast k/v") {
    Tensor x = rnd({2, 3, 4}), kv = rnd({3, 4});
    auto r = testing::gradcheck(
        [](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[0], in[0]) +
                 scaled_dot_product_attention(in[0], in[1], in[1]);
        },
        {x, kv});
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("sdpa matches the composed reference, long rows and several row blocks", "[sdpa]") {
  manual_seed(3);
  Tensor q = rnd({2, 3, 150, 8}), k = rnd({2, 3, 130, 8}), v = rnd({2, 3, 130, 5});
  Tensor m = rnd({3, 150, 130}, false);
  Tensor out = scaled_dot_product_attention(q, k, v, m, true);
  wsum(out).backward();
  Tensor q2 = q.detach().requires_grad_(), k2 = k.detach().requires_grad_(), v2 = v.detach().requires_grad_();
  Tensor ref = composed_causal_sdpa(q2, k2, v2, m);
  wsum(ref).backward();
  CHECK(check_close(out, ref, 1e-12, 1e-12, "out"));
  CHECK(check_close(q.grad(), q2.grad(), 1e-10, 1e-12, "gq"));
  CHECK(check_close(k.grad(), k2.grad(), 1e-10, 1e-12, "gk"));
  CHECK(check_close(v.grad(), v2.grad(), 1e-10, 1e-12, "gv"));
}

TEST_CASE("sdpa: fully masked query rows give zeros, finite zero gradients", "[sdpa]") {
  manual_seed(4);
  Tensor q = rnd({2, 3, 4}), k = rnd({2, 5, 4}), v = rnd({2, 5, 3});
  Tensor m = bool_mask({2, 3, 5}, 11, 1.0);  // all true ...
  m.set({0, 1, 0}, 0); m.set({0, 1, 1}, 0); m.set({0, 1, 2}, 0); m.set({0, 1, 3}, 0); m.set({0, 1, 4}, 0);  // row (0,1) all masked
  Tensor fm = Tensor::zeros({2, 3, 5}, kFloat64);
  for (int64_t j = 0; j < 5; ++j) fm.set({1, 2, j}, -std::numeric_limits<double>::infinity());  // row (1,2) all -inf
  Tensor kpm = Tensor::from_vector(std::vector<bool>{false, false, false, false, false, true, true, true, true, true}, {2, 5});
  SECTION("bool mask") {
    auto [o, w] = scaled_dot_product_attention_with_weights(q, k, v, m);
    wsum(o).backward();
    for (int64_t c = 0; c < 3; ++c) CHECK(o.at({0, 1, c}) == 0.0);
    for (int64_t j = 0; j < 5; ++j) CHECK(w.at({0, 1, j}) == 0.0);
    for (int64_t c = 0; c < 4; ++c) CHECK(q.grad().at({0, 1, c}) == 0.0);
    for (double g : k.grad().to_vector<double>()) CHECK(std::isfinite(g));
    for (double g : v.grad().to_vector<double>()) CHECK(std::isfinite(g));
  }
  SECTION("float -inf mask") {
    Tensor out = scaled_dot_product_attention(q, k, v, fm);
    wsum(out).backward();
    for (int64_t c = 0; c < 3; ++c) CHECK(out.at({1, 2, c}) == 0.0);
    for (int64_t c = 0; c < 4; ++c) CHECK(q.grad().at({1, 2, c}) == 0.0);
    for (double g : q.grad().to_vector<double>()) CHECK(std::isfinite(g));
  }
  SECTION("key padding masks every key of batch 1") {
    Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), false, 0.0, kDefaultAttnScale, kpm);
    wsum(out).backward();
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t c = 0; c < 3; ++c) CHECK(out.at({1, i, c}) == 0.0);
    for (int64_t s = 0; s < 5; ++s)
      for (int64_t c = 0; c < 4; ++c) CHECK(k.grad().at({1, s, c}) == 0.0);
    for (double g : q.grad().to_vector<double>()) CHECK(std::isfinite(g));
  }
  SECTION("gradcheck with a fully masked row") {
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], m); }, {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("sdpa dropout: training mask is saved for backward, p = 0 is the identity", "[sdpa]") {
  manual_seed(5);
  Tensor q = rnd({2, 4, 3}), k = rnd({2, 6, 3}), v = rnd({2, 6, 2});
  manual_seed(42);
  auto [o, w] = scaled_dot_product_attention_with_weights(q, k, v, Tensor(), false, 0.5);
  // some weights dropped, the rest scaled by 2
  int zeros = 0;
  for (double x : w.to_vector<double>()) zeros += x == 0.0;
  CHECK(zeros > 0);
  CHECK(check_close(o, matmul(w.detach(), v.detach()), 1e-12, 1e-12, "out = W' V"));
  // gradcheck with the same dropout mask each call (reseeded)
  auto r = testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        manual_seed(42);
        auto [o2, w2] = scaled_dot_product_attention_with_weights(in[0], in[1], in[2], Tensor(), false, 0.5);
        return wsum(o2) + wsum(w2);
      },
      {q, k, v});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("sdpa errors name the op and the shapes", "[sdpa][errors]") {
  Tensor q = Tensor::randn({2, 3, 4}), k = Tensor::randn({2, 5, 4}), v = Tensor::randn({2, 5, 6});
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const ShapeError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m1 = msg([&] { scaled_dot_product_attention(q, Tensor::randn({2, 5, 3}), v); });
  CHECK(m1.find("scaled_dot_product_attention") != std::string::npos);
  CHECK(m1.find("[2, 5, 3]") != std::string::npos);
  std::string m2 = msg([&] { scaled_dot_product_attention(q, k, Tensor::randn({2, 4, 6})); });
  CHECK(m2.find("[2, 4, 6]") != std::string::npos);
  std::string m3 = msg([&] { scaled_dot_product_attention(q, k, v, Tensor::zeros({3, 4}, kBool)); });
  CHECK(m3.find("attn_mask") != std::string::npos);
  CHECK(m3.find("[3, 4]") != std::string::npos);
  std::string m4 = msg(
      [&] { scaled_dot_product_attention(q, k, v, Tensor(), false, 0.0, kDefaultAttnScale, Tensor::zeros({2, 4}, kBool)); });
  CHECK(m4.find("key_padding_mask") != std::string::npos);
  CHECK_THROWS_AS(scaled_dot_product_attention(q, Tensor::randn({3, 5, 4}), Tensor::randn({3, 5, 6})), ShapeError);
}

TEST_CASE("sdpa forward and backward are bit-identical for 1 and 2 threads", "[sdpa][threads]") {
  auto run = [](int threads) {
    return with_threads(threads, [] {
      manual_seed(9);
      Tensor q = Tensor::randn({2, 3, 200, 16}).requires_grad_(), k = Tensor::randn({2, 3, 180, 16}).requires_grad_(),
             v = Tensor::randn({2, 3, 180, 8}).requires_grad_();
      Tensor m = Tensor::randn({3, 200, 180}).requires_grad_();
      manual_seed(10);
      auto [o, w] = scaled_dot_product_attention_with_weights(q, k, v, m, true, 0.1);
      (sum(mul(o, o)) + sum(w)).backward();
      return std::vector<Tensor>{o, w, q.grad(), k.grad(), v.grad(), m.grad()};
    });
  };
  auto a = run(1), b = run(2);
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << i);
    REQUIRE(a[i].numel() == b[i].numel());
    INFO("max abs diff " << max(abs(a[i] - b[i])).item<float>());
    CHECK(std::memcmp(a[i].raw_data(), b[i].raw_data(), size_t(a[i].numel()) * 4) == 0);
  }
}
