// Linear attention (elu+1) and windowed / block-local attention: PyTorch goldens, gradcheck,
// equivalence with the dense (quadratic) forms built from attn ops, masks, errors, threads.
#include <attn/nn/attention/efficient.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include "test_util.hpp"

using namespace attn;

namespace {
Tensor leaf(const Tensor& t) { return t.clone().detach().requires_grad_(); }
Tensor rnd(const Shape& s) { return Tensor::randn(s, kFloat64).requires_grad_(); }
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// phi(x) = elu(x) + 1 composed from attn ops.
Tensor phi(const Tensor& x) { return elu(x) + 1.0; }

// Quadratic form of linear attention: A = phi(Q) phi(K)^T (lower-triangular if causal),
// out = A V / (A 1 + eps).
Tensor linear_attention_dense(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double eps = 1e-6) {
  Tensor a = matmul(phi(q), transpose(phi(k), -2, -1));
  if (causal) {
    const int64_t L = q.size(-2);
    std::vector<bool> up(size_t(L * L));
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < L; ++j) up[size_t(i * L + j)] = j > i;
    a = masked_fill(a, Tensor::from_vector(up, {L, L}), 0.0);
  }
  return matmul(a, v) / (sum(a, -1, true) + eps);
}

// Allowed-key matrix [L, S] of a band (block > 0: block-local).
Tensor band_allowed(int64_t L, int64_t S, int64_t left, int64_t right, bool causal, int64_t block) {
  std::vector<bool> m(size_t(L * S));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < S; ++j) {
      bool ok = block > 0 ? (j / block == i / block) : (j >= i - left && j <= i + (causal ? 0 : right));
      if (causal) ok = ok && j <= i;
      m[size_t(i * S + j)] = ok;
    }
  return Tensor::from_vector(m, {L, S});
}

// Dense softmax attention with the band mask, from attn ops (matmul, masked_fill, softmax).
std::pair<Tensor, Tensor> band_dense(const Tensor& q, const Tensor& k, const Tensor& v, int64_t left, int64_t right,
                                     bool causal, int64_t block = 0) {
  const int64_t L = q.size(-2), S = k.size(-2);
  Tensor s = matmul(q, transpose(k, -2, -1)) * (1.0 / std::sqrt(double(q.size(-1))));
  s = masked_fill(s, logical_not(band_allowed(L, S, left, right, causal, block)),
                  -std::numeric_limits<double>::infinity());
  Tensor w = softmax(s, -1);
  return {matmul(w, v), w};
}
}  // namespace

// ---------------------------------------------------------------- linear attention
TEST_CASE("linear_attention matches PyTorch (non-causal L != S, causal)", "[linear_attention]") {
  auto f = load_fixture("attnref_linear.safetensors");
  for (const std::string c : {"nc", "c"}) {
    Tensor q = leaf(f.at(c + "_q")), k = leaf(f.at(c + "_k")), v = leaf(f.at(c + "_v"));
    Tensor o = linear_attention(q, k, v, c == "c");
    CHECK(check_close(o, f.at(c + "_out"), 1e-9, 1e-10, c + " out"));
    sum(o * f.at(c + "_R")).backward();
    CHECK(check_close(q.grad(), f.at(c + "_g_q"), 1e-9, 1e-10, c + " g_q"));
    CHECK(check_close(k.grad(), f.at(c + "_g_k"), 1e-9, 1e-10, c + " g_k"));
    CHECK(check_close(v.grad(), f.at(c + "_g_v"), 1e-9, 1e-10, c + " g_v"));
  }
}

TEST_CASE("nn::LinearAttention matches PyTorch (causal, 2 heads)", "[linear_attention]") {
  auto f = load_fixture("attnref_linear.safetensors");
  nn::LinearAttention m(8, 2, true);
  m.to(kFloat64);
  {
    NoGradGuard ng;
    for (auto& [name, p] : m.named_parameters()) p.copy_(f.at("mod_" + name));
  }
  Tensor x = leaf(f.at("mod_x"));
  Tensor y = m.forward(x);
  CHECK(check_close(y, f.at("mod_y"), 1e-9, 1e-10, "y"));
  sum(y * f.at("mod_R")).backward();
  CHECK(check_close(x.grad(), f.at("mod_g_x"), 1e-9, 1e-10, "g_x"));
  for (auto& [name, p] : m.named_parameters()) CHECK(check_close(p.grad(), f.at("mod_g_" + name), 1e-9, 1e-10, name));
}

TEST_CASE("linear_attention gradcheck", "[linear_attention][gradcheck]") {
  for (bool causal : {false, true}) {
    Tensor q = rnd({2, 4, 3}), k = rnd({2, 4, 3}), v = rnd({2, 4, 2});
    auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return linear_attention(in[0], in[1], in[2], causal); },
                                {q, k, v});
    INFO("causal " << causal << ": " << r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("linear_attention equals its quadratic form (fwd + bwd)", "[linear_attention]") {
  for (bool causal : {false, true}) {
    Tensor q0 = Tensor::randn({2, 3, 37, 5}, kFloat64), k0 = Tensor::randn({2, 3, 37, 5}, kFloat64),
           v0 = Tensor::randn({2, 3, 37, 4}, kFloat64), R = Tensor::randn({2, 3, 37, 4}, kFloat64);
    Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0), q2 = leaf(q0), k2 = leaf(k0), v2 = leaf(v0);
    Tensor a = linear_attention(q, k, v, causal), b = linear_attention_dense(q2, k2, v2, causal);
    CHECK(check_close(a, b, 1e-10, 1e-12, causal ? "causal out" : "out"));
    sum(a * R).backward();
    sum(b * R).backward();
    CHECK(check_close(q.grad(), q2.grad(), 1e-9, 1e-11, "g_q"));
    CHECK(check_close(k.grad(), k2.grad(), 1e-9, 1e-11, "g_k"));
    CHECK(check_close(v.grad(), v2.grad(), 1e-9, 1e-11, "g_v"));
  }
}

TEST_CASE("linear_attention: bit-identical for 1 and 2 threads (fwd + bwd)", "[linear_attention][threads]") {
  Tensor q0 = Tensor::randn({3, 2, 200, 8}), k0 = Tensor::randn({3, 2, 200, 8}), v0 = Tensor::randn({3, 2, 200, 8});
  for (bool causal : {false, true}) {
    auto run = [&](int threads) {
      return with_threads(threads, [&] {
        Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0);
        Tensor o = linear_attention(q, k, v, causal);
        sum(o * o).backward();
        return flat({o, q.grad(), k.grad(), v.grad()});
      });
    };
    CHECK(run(1) == run(2));
  }
}

// ---------------------------------------------------------------- windowed attention
TEST_CASE("windowed / block-local attention match PyTorch dense band attention", "[windowed]") {
  auto f = load_fixture("attnref_windowed.safetensors");
  struct Case {
    std::string name;
    int64_t left, right;
    bool causal;
    int64_t block;
  };
  for (const Case& c : {Case{"a", 2, 1, false, 0}, Case{"b", 3, 0, true, 0}, Case{"c", 1, 2, false, 0},
                        Case{"d", 0, 0, false, 4}, Case{"e", 0, 0, true, 4}}) {
    INFO("case " << c.name);
    auto g = [&](const std::string& n) { return f.at(c.name + "_" + n); };
    auto has = [&](const std::string& n) { return f.contains(c.name + "_" + n); };
    Tensor q = leaf(g("q")), k = leaf(g("k")), v = leaf(g("v"));
    Tensor kpm = has("kpm") ? g("kpm") : Tensor();
    Tensor bias = has("bias") ? leaf(g("bias")) : Tensor();
    auto [o, w] = c.block ? block_local_attention(q, k, v, c.block, c.causal, kNaN, kpm)
                          : windowed_attention(q, k, v, c.left, c.right, c.causal, kNaN, kpm, bias);
    CHECK(check_close(o, g("out"), 1e-9, 1e-10, "out"));
    CHECK(check_close(band_to_dense(w, c.left, k.size(-2), c.block), g("weights"), 1e-9, 1e-10, "weights"));
    sum(o * g("R")).backward();
    CHECK(check_close(q.grad(), g("g_q"), 1e-9, 1e-10, "g_q"));
    CHECK(check_close(k.grad(), g("g_k"), 1e-9, 1e-10, "g_k"));
    CHECK(check_close(v.grad(), g("g_v"), 1e-9, 1e-10, "g_v"));
    if (bias.defined()) CHECK(check_close(bias.grad(), g("g_bias"), 1e-9, 1e-10, "g_bias"));
  }
}

TEST_CASE("windowed attention equals dense softmax attention with the band mask", "[windowed]") {
  struct Case {
    int64_t L, S, left, right;
    bool causal;
    int64_t block;
  };
  for (const Case& c : {Case{23, 23, 3, 2, false, 0}, Case{23, 23, 4, 0, true, 0}, Case{23, 23, 0, 0, false, 0},
                        Case{23, 23, 30, 30, false, 0}, Case{17, 23, 2, 5, false, 0}, Case{23, 17, 6, 1, false, 0},
                        Case{23, 23, 5, 9, true, 0}, Case{23, 23, 0, 0, false, 5}, Case{23, 23, 0, 0, true, 5},
                        Case{23, 23, 0, 0, false, 1}, Case{23, 23, 0, 0, false, 40}}) {
    INFO("L=" << c.L << " S=" << c.S << " left=" << c.left << " right=" << c.right << " causal=" << c.causal
              << " block=" << c.block);
    Tensor q0 = Tensor::randn({2, 2, c.L, 4}, kFloat64), k0 = Tensor::randn({2, 2, c.S, 4}, kFloat64),
           v0 = Tensor::randn({2, 2, c.S, 3}, kFloat64), R = Tensor::randn({2, 2, c.L, 3}, kFloat64);
    Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0), q2 = leaf(q0), k2 = leaf(k0), v2 = leaf(v0);
    auto [o, w] = c.block ? block_local_attention(q, k, v, c.block, c.causal)
                          : windowed_attention(q, k, v, c.left, c.right, c.causal);
    auto [od, wd] = band_dense(q2, k2, v2, c.left, c.right, c.causal, c.block);
    CHECK(w.size(-1) == (c.block ? c.block : c.left + (c.causal ? 0 : c.right) + 1));
    CHECK(check_close(o, od, 1e-11, 1e-12, "out"));
    CHECK(check_close(band_to_dense(w, c.left, c.S, c.block), wd, 1e-11, 1e-12, "weights"));
    sum(o * R).backward();
    sum(od * R).backward();
    CHECK(check_close(q.grad(), q2.grad(), 1e-10, 1e-12, "g_q"));
    CHECK(check_close(k.grad(), k2.grad(), 1e-10, 1e-12, "g_k"));
    CHECK(check_close(v.grad(), v2.grad(), 1e-10, 1e-12, "g_v"));
  }
}

TEST_CASE("windowed attention gradcheck (bias, padding mask, band weights used)", "[windowed][gradcheck]") {
  Tensor q = rnd({1, 2, 6, 3}), k = rnd({1, 2, 6, 3}), v = rnd({1, 2, 6, 2}), bias = rnd({2, 4});
  Tensor kpm = Tensor::from_vector(std::vector<bool>{false, true, false, false, false, false}, {1, 6});
  Tensor Rw = Tensor::randn({1, 2, 6, 4}, kFloat64);
  auto r = testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        auto [o, w] = windowed_attention(in[0], in[1], in[2], 2, 1, false, 0.7, kpm, in[3]);
        return cat({reshape(o, {-1}), reshape(w * Rw, {-1})}, 0);
      },
      {q, k, v, bias});
  INFO(r.message);
  REQUIRE(r.ok);
  Tensor q2 = rnd({2, 7, 3}), k2 = rnd({2, 7, 3}), v2 = rnd({2, 7, 2});
  auto r2 = testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return block_local_attention(in[0], in[1], in[2], 3, true).first; },
      {q2, k2, v2});
  INFO(r2.message);
  REQUIRE(r2.ok);
  auto r3 = testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return windowed_attention(in[0], in[1], in[2], 2, 0, true).first; },
      {q2, k2, v2});
  INFO(r3.message);
  REQUIRE(r3.ok);
}

TEST_CASE("windowed attention: queries with nothing to attend give zeros and zero gradients", "[windowed]") {
  Tensor q = rnd({2, 5, 3}), k = rnd({2, 5, 3}), v = rnd({2, 5, 2});
  std::vector<bool> m(10, false);
  for (int j = 0; j < 5; ++j) m[size_t(5 + j)] = true;  // batch 1: every key padded
  m[0] = m[1] = true;                                    // batch 0: keys 0, 1 padded -> query 0 (left=1,right=0) empty
  Tensor kpm = Tensor::from_vector(m, {2, 5});
  auto [o, w] = windowed_attention(q, k, v, 1, 0, false, kNaN, kpm);
  for (double x : select(o, 0, 1).to_vector<double>()) CHECK(x == 0.0);
  for (double x : select(w, 0, 1).to_vector<double>()) CHECK(x == 0.0);
  CHECK(o.at({0, 0, 0}) == 0.0);
  CHECK(o.at({0, 0, 1}) == 0.0);
  for (double x : o.to_vector<double>()) CHECK(!std::isnan(x));
  (sum(select(o, 0, 1)) + sum(narrow(select(o, 0, 0), 0, 0, 1))).backward();
  for (double x : select(q.grad(), 0, 1).to_vector<double>()) CHECK(x == 0.0);
  for (double x : k.grad().to_vector<double>()) CHECK(x == 0.0);
  for (double x : v.grad().to_vector<double>()) CHECK(x == 0.0);
  for (double x : q.grad().to_vector<double>()) CHECK(x == 0.0);
}

TEST_CASE("windowed attention: bit-identical for 1 and 2 threads (fwd + bwd)", "[windowed][threads]") {
  Tensor q0 = Tensor::randn({2, 2, 300, 8}), k0 = Tensor::randn({2, 2, 300, 8}), v0 = Tensor::randn({2, 2, 300, 8});
  Tensor b0 = Tensor::randn({2, 20});
  for (int mode = 0; mode < 3; ++mode) {
    auto run = [&](int threads) {
      return with_threads(threads, [&] {
        Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0), b = leaf(b0);
        auto [o, w] = mode == 0   ? windowed_attention(q, k, v, 12, 7, false, kNaN, Tensor(), b)
                      : mode == 1 ? windowed_attention(q, k, v, 19, 0, true, kNaN, Tensor(), b)
                                  : block_local_attention(q, k, v, 32);
        (sum(o * o) + sum(w * w)).backward();
        std::vector<Tensor> ts{o, w, q.grad(), k.grad(), v.grad()};
        if (mode < 2) ts.push_back(b.grad());
        return flat(ts);
      });
    };
    INFO("mode " << mode);
    CHECK(run(1) == run(2));
  }
}

TEST_CASE("efficient attention: errors name the op and shapes", "[windowed][linear_attention][errors]") {
  Tensor q = Tensor::randn({2, 8, 4}), k = Tensor::randn({2, 8, 4}), v = Tensor::randn({2, 8, 3});
  auto expect = [](const std::function<void()>& f, const std::string& op, const std::string& shape) {
    try {
      f();
      FAIL("expected ShapeError");
    } catch (const ShapeError& e) {
      const std::string m = e.what();
      INFO(m);
      CHECK(m.find(op) != std::string::npos);
      CHECK(m.find(shape) != std::string::npos);
    }
  };
  expect([&] { windowed_attention(q, k, v, -1, 2); }, "windowed_attention", "[2, 8, 4]");
  expect([&] { windowed_attention(q, Tensor::randn({2, 8, 5}), v, 1, 1); }, "windowed_attention", "[2, 8, 5]");
  expect([&] { windowed_attention(q, k, Tensor::randn({2, 7, 3}), 1, 1); }, "windowed_attention", "[2, 7, 3]");
  expect([&] { windowed_attention(q, k, v, 1, 1, false, kNaN, Tensor::zeros({2, 7}, kBool)); }, "windowed_attention",
         "[2, 7]");
  expect([&] { windowed_attention(q, k, v, 1, 1, false, kNaN, Tensor(), Tensor::randn({1, 4})); },
         "windowed_attention", "[1, 4]");
  expect([&] { block_local_attention(q, k, v, 0); }, "block_local_attention", "[2, 8, 4]");
  expect([&] { block_local_attention(q, Tensor::randn({2, 6, 4}), Tensor::randn({2, 6, 3}), 2); },
         "block_local_attention", "[2, 6, 4]");
  expect([&] { linear_attention(q, Tensor::randn({2, 8, 5}), v); }, "linear_attention", "[2, 8, 5]");
  expect([&] { linear_attention(q, Tensor::randn({2, 6, 4}), Tensor::randn({2, 6, 3}), true); }, "linear_attention",
         "[2, 6, 4]");
  expect([&] { linear_attention(q, Tensor::randn({3, 8, 4}), v); }, "linear_attention", "[3, 8, 4]");
  CHECK_THROWS_AS(nn::WindowedAttention(8, 3, 2, 2), ShapeError);
  CHECK_THROWS_AS(nn::WindowedAttention(8, 2, -2, 2), ShapeError);
  CHECK_THROWS_AS(nn::LinearAttention(8, 3), ShapeError);
}

TEST_CASE("nn::WindowedAttention: shapes, parameter names, relative bias learns", "[windowed]") {
  nn::WindowedAttention m(8, 2, 3, 1, false, true);
  auto names = m.named_parameters();
  REQUIRE(names.size() == 9);
  CHECK(names[0].first == "relative_bias");  // own parameters first, then submodules
  CHECK(names[1].first == "q_proj.weight");
  CHECK(names[8].first == "out_proj.bias");
  CHECK(m.relative_bias.shape() == Shape{2, 5});
  Tensor x = Tensor::randn({3, 11, 8});
  auto [y, w] = m.forward(x);
  CHECK(y.shape() == Shape{3, 11, 8});
  CHECK(w.shape() == Shape{3, 2, 11, 5});
  sum(y * y).backward();
  REQUIRE(m.relative_bias.grad().defined());
  double g = 0;
  for (float e : m.relative_bias.grad().to_vector<float>()) g += std::abs(e);
  CHECK(g > 0);
  nn::WindowedAttention c(8, 2, 4, 9, true);
  auto [yc, wc] = c.forward(x);
  CHECK(wc.shape() == Shape{3, 2, 11, 5});
  // causal: output at position 0 does not depend on later inputs
  Tensor x2 = x.clone();
  {
    NoGradGuard ng;
    for (int64_t t = 5; t < 11; ++t)
      for (int64_t d = 0; d < 8; ++d) x2.set({0, t, d}, 3.0);
  }
  auto [yc2, wc2] = c.forward(x2);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t d = 0; d < 8; ++d) CHECK(yc.at({0, t, d}) == yc2.at({0, t, d}));
  nn::LinearAttention la(8, 4, true);
  Tensor yl = la.forward(x);
  CHECK(yl.shape() == Shape{3, 11, 8});
}
