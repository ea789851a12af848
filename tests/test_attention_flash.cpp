// The tiled (FlashAttention-2 style) CPU path of scaled_dot_product_attention / MultiheadAttention:
// forward with online softmax saving only the per-row log-sum-exp, backward recomputing the
// weights. Checked against the weights-storing path (need_weights = true) and a composed
// reference in float64, by finite differences, and for bit-identical results over thread counts
// and backward schedules.
#include <attn/nn/attention/multihead.hpp>
#include <attn/ops/attention.hpp>
#include <cstring>
#include <limits>

#include "test_util.hpp"

using namespace attn;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

Tensor rnd(const Shape& s, DType dt = kFloat64) { return Tensor::randn(s, dt).requires_grad_(); }

// Weighted sum of the output so every element gets a different cotangent.
Tensor wsum(const Tensor& y) {
  Tensor r = reshape(sin(Tensor::arange(0.0, double(y.numel()), 1.0, y.dtype()) * 0.7) + 0.3, y.shape());
  return sum(mul(y, r));
}

Tensor bool_mask(const Shape& s, uint64_t seed, double p_true = 0.7) {
  Generator g(seed);
  std::vector<bool> v(size_t(numel_of(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = g.uniform() < p_true;
  return Tensor::from_vector(v, s);
}

struct Args {
  Tensor mask, kpm;
  bool causal = false;
  double p = 0.0, scale = kDefaultAttnScale;
};

// Output and gradients (q, k, v) of one call; tiled = false takes the weights-storing path.
std::vector<Tensor> run(const Tensor& q, const Tensor& k, const Tensor& v, const Args& a, bool tiled) {
  Tensor q2 = q.detach().requires_grad_(), k2 = k.detach().requires_grad_(), v2 = v.detach().requires_grad_();
  manual_seed(77);  // the dropout seed is drawn from the default generator
  Tensor o = tiled ? scaled_dot_product_attention(q2, k2, v2, a.mask, a.causal, a.p, a.scale, a.kpm)
                   : scaled_dot_product_attention_with_weights(q2, k2, v2, a.mask, a.causal, a.p, a.scale, a.kpm).first;
  wsum(o).backward();
  return {o, q2.grad(), k2.grad(), v2.grad()};
}

void compare_paths(const Tensor& q, const Tensor& k, const Tensor& v, const Args& a, double tol = 1e-12) {
  FlashKnobs knobs(0);
  auto t = run(q, k, v, a, true), w = run(q, k, v, a, false);
  const char* names[] = {"out", "gq", "gk", "gv"};
  for (size_t i = 0; i < t.size(); ++i) CHECK(check_close(t[i], w[i], tol, tol, names[i]));
}

bool bits_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * dtype_size(a.dtype())) == 0;
}

}  // namespace

TEST_CASE("tiled sdpa matches the weights-storing path (float64)", "[flash]") {
  manual_seed(1);
  SECTION("no mask, L and S not multiples of the blocks, several key blocks") {
    compare_paths(rnd({2, 3, 70, 8}), rnd({2, 3, 600, 8}), rnd({2, 3, 600, 5}), {});
  }
  SECTION("causal, L == S") {
    Args a;
    a.causal = true;
    compare_paths(rnd({2, 2, 600, 16}), rnd({2, 2, 600, 16}), rnd({2, 2, 600, 16}), a);
  }
  SECTION("causal, L < S and L > S (rows past S see every key)") {
    Args a;
    a.causal = true;
    compare_paths(rnd({2, 600, 8}), rnd({2, 700, 8}), rnd({2, 700, 4}), a);
    compare_paths(rnd({2, 700, 8}), rnd({2, 530, 8}), rnd({2, 530, 4}), a);
  }
  SECTION("bool attn_mask [L, S] and [B, 1, L, S], with causal") {
    Args a;
    a.mask = bool_mask({90, 560}, 3);
    compare_paths(rnd({2, 2, 90, 8}), rnd({2, 2, 560, 8}), rnd({2, 2, 560, 8}), a);
    a.mask = bool_mask({2, 1, 90, 560}, 4);
    a.causal = true;
    compare_paths(rnd({2, 2, 90, 8}), rnd({2, 2, 560, 8}), rnd({2, 2, 560, 8}), a);
  }
  SECTION("float additive mask without gradient, [H, L, S], with -inf entries, custom scale") {
    Args a;
    a.mask = Tensor::randn({3, 100, 540}, kFloat64);
    for (int64_t j = 0; j < 540; j += 3) a.mask.set({1, 7, j}, -kInf);
    a.scale = 0.3;
    compare_paths(rnd({2, 3, 100, 8}), rnd({2, 3, 540, 8}), rnd({2, 3, 540, 8}), a);
  }
  SECTION("float32 mask with float64 inputs") {
    Args a;
    a.mask = Tensor::randn({70, 540}, kFloat32);
    compare_paths(rnd({2, 70, 8}), rnd({2, 540, 8}), rnd({2, 540, 8}), a);
  }
  SECTION("key_padding_mask [B, S], one batch fully padded") {
    Args a;
    a.kpm = bool_mask({3, 520}, 5, 0.3);
    for (int64_t j = 0; j < 520; ++j) a.kpm.set({2, j}, 1);
    compare_paths(rnd({3, 2, 65, 8}), rnd({3, 2, 520, 8}), rnd({3, 2, 520, 6}), a);
  }
  SECTION("dropout: same seed gives the same keep/drop decisions as the weights-storing path") {
    Args a;
    a.p = 0.3;
    a.mask = bool_mask({130, 600}, 6, 0.8);
    compare_paths(rnd({2, 2, 130, 8}), rnd({2, 2, 600, 8}), rnd({2, 2, 600, 8}), a);
    a.causal = true;
    a.mask = bool_mask({580, 600}, 16, 0.8);
    a.kpm = bool_mask({2, 600}, 7, 0.2);
    compare_paths(rnd({2, 2, 580, 8}), rnd({2, 2, 600, 8}), rnd({2, 2, 600, 8}), a);
  }
  SECTION("head dims E = 1, 3, 64 with Ev != E") {
    for (int64_t E : {1, 3, 64}) {
      INFO("E = " << E);
      Args a;
      a.causal = E == 3;
      compare_paths(rnd({2, 67, E}), rnd({2, 531, E}), rnd({2, 531, E == 1 ? 2 : E}), a);
    }
  }
  SECTION("tiny sizes: L = S = 1, L = 1 with S > 512") {
    compare_paths(rnd({1, 1, 4}), rnd({1, 1, 4}), rnd({1, 1, 4}), {});
    compare_paths(rnd({2, 1, 4}), rnd({2, 513, 4}), rnd({2, 513, 4}), {});
  }
}

TEST_CASE("tiled sdpa matches a composed softmax(Q K^T) V", "[flash]") {
  FlashKnobs knobs(0);
  manual_seed(2);
  Tensor q = rnd({2, 3, 150, 8}), k = rnd({2, 3, 600, 8}), v = rnd({2, 3, 600, 5});
  Tensor m = Tensor::randn({3, 150, 600}, kFloat64);
  Tensor out = scaled_dot_product_attention(q, k, v, m, true);
  wsum(out).backward();
  Tensor q2 = q.detach().requires_grad_(), k2 = k.detach().requires_grad_(), v2 = v.detach().requires_grad_();
  Tensor ref = composed_causal_sdpa(q2, k2, v2, m);
  wsum(ref).backward();
  CHECK(check_close(out, ref, 1e-12, 1e-12, "out"));
  CHECK(check_close(q.grad(), q2.grad(), 1e-11, 1e-12, "gq"));
  CHECK(check_close(k.grad(), k2.grad(), 1e-11, 1e-12, "gk"));
  CHECK(check_close(v.grad(), v2.grad(), 1e-11, 1e-12, "gv"));
}

TEST_CASE("tiled sdpa: fully masked rows give zero output and zero, finite gradients", "[flash]") {
  FlashKnobs knobs(0);
  manual_seed(3);
  Tensor q = rnd({2, 70, 4}), k = rnd({2, 530, 4}), v = rnd({2, 530, 3});
  Tensor m = bool_mask({2, 70, 530}, 8, 0.9);
  for (int64_t j = 0; j < 530; ++j) m.set({0, 5, j}, 0);    // row (0, 5) sees nothing
  for (int64_t j = 0; j < 530; ++j) m.set({1, 69, j}, 0);   // last row of the last block
  Tensor out = scaled_dot_product_attention(q, k, v, m, false, 0.2);
  wsum(out).backward();
  for (int64_t c = 0; c < 3; ++c) {
    CHECK(out.at({0, 5, c}) == 0.0);
    CHECK(out.at({1, 69, c}) == 0.0);
  }
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(q.grad().at({0, 5, c}) == 0.0);
    CHECK(q.grad().at({1, 69, c}) == 0.0);
  }
  for (const Tensor& t : {out, q.grad(), k.grad(), v.grad()})
    for (double x : t.to_vector<double>()) REQUIRE(std::isfinite(x));
  // causal with every key padded in batch 1: the whole batch item is zero
  Tensor kpm = Tensor::zeros({2, 530}, kBool);
  for (int64_t j = 0; j < 530; ++j) kpm.set({1, j}, 1);
  Tensor q2 = q.detach().requires_grad_(), k2 = k.detach().requires_grad_();
  Tensor o2 = scaled_dot_product_attention(q2, k2, v, Tensor(), true, 0.0, kDefaultAttnScale, kpm);
  wsum(o2).backward();
  for (int64_t i = 0; i < 70; ++i)
    for (int64_t c = 0; c < 3; ++c) CHECK(o2.at({1, i, c}) == 0.0);
  for (double x : k2.grad().to_vector<double>()) REQUIRE(std::isfinite(x));
  for (int64_t s = 0; s < 530; ++s) CHECK(k2.grad().at({1, s, 0}) == 0.0);
}

TEST_CASE("tiled sdpa gradcheck (tiny)", "[flash][gradcheck]") {
  FlashKnobs knobs(0);
  manual_seed(4);
  Tensor q = rnd({2, 2, 5, 3}), k = rnd({2, 2, 6, 3}), v = rnd({2, 2, 6, 2});
  SECTION("bool mask, key padding, causal") {
    Tensor m = bool_mask({5, 6}, 9, 0.8);
    Tensor kpm = Tensor::from_vector(std::vector<bool>{false, false, false, true, false, false, false, true, false,
                                                       false, false, false},
                                     {2, 6});
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return wsum(scaled_dot_product_attention(in[0], in[1], in[2], m, true, 0.0, kDefaultAttnScale, kpm));
        },
        {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("dropout (reseeded each call) and a float mask without gradient") {
    Tensor m = Tensor::randn({2, 1, 5, 6}, kFloat64);
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) {
          manual_seed(42);
          return wsum(scaled_dot_product_attention(in[0], in[1], in[2], m, false, 0.4));
        },
        {q, k, v});
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("self-attention sdpa(x, x, x): aliased operands") {
    Tensor x = rnd({2, 4, 3});
    auto r = testing::gradcheck(
        [](const std::vector<Tensor>& in) { return wsum(scaled_dot_product_attention(in[0], in[0], in[0])); }, {x});
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("MultiheadAttention: need_weights = false (tiled) matches need_weights = true", "[flash][mha]") {
  FlashKnobs knobs(0);
  manual_seed(5);
  struct Case {
    const char* name;
    bool batch_first, cross, causal, training;
  };
  for (const Case& c : {Case{"self, batch_first, causal, key padding", true, false, true, false},
                        Case{"self, seq-first, dropout in training", false, false, false, true},
                        Case{"cross-attention with kdim/vdim", true, true, false, false}}) {
    INFO(c.name);
    auto opt = nn::MultiheadAttentionOptions(16, 4).batch_first(c.batch_first).dropout(0.25);
    if (c.cross) opt.kdim(5).vdim(7);
    nn::MultiheadAttention mha(opt);
    mha.to(kFloat64);
    mha.train(c.training);
    const int64_t B = 3, L = 530, S = c.cross ? 600 : L;
    auto shape = [&](int64_t T, int64_t C) { return c.batch_first ? Shape{B, T, C} : Shape{T, B, C}; };
    Tensor x = Tensor::randn(shape(L, 16), kFloat64);
    Tensor key = c.cross ? Tensor::randn(shape(S, 5), kFloat64) : x, val = c.cross ? Tensor::randn(shape(S, 7), kFloat64) : x;
    Tensor kpm = bool_mask({B, S}, 10, 0.2);
    std::vector<std::vector<Tensor>> res;
    for (bool need_weights : {false, true}) {
      mha.zero_grad();
      Tensor xi = x.detach().requires_grad_();
      Tensor ki = c.cross ? key.detach().requires_grad_() : xi, vi = c.cross ? val.detach().requires_grad_() : xi;
      manual_seed(99);
      auto [o, w] = mha.forward_ex(xi, ki, vi, kpm, need_weights, Tensor(), true, c.causal);
      CHECK(w.defined() == need_weights);
      wsum(o).backward();
      std::vector<Tensor> r{o, xi.grad()};
      if (c.cross) {
        r.push_back(ki.grad());
        r.push_back(vi.grad());
      }
      for (auto& p : mha.parameters()) r.push_back(p.grad().clone());
      res.push_back(r);
    }
    for (size_t i = 0; i < res[0].size(); ++i) {
      INFO("tensor " << i);
      CHECK(check_close(res[0][i], res[1][i], 1e-11, 1e-12));
    }
  }
}

TEST_CASE("tiled sdpa is bit-identical for 1 and 2 threads and both backward schedules", "[flash][threads]") {
  auto go = [](int threads, int schedule, DType dt) {
    FlashKnobs knobs(0, schedule);
    return with_threads(threads, [dt] {
      manual_seed(11);
      // 3 items: with 2 threads the automatic schedule is the two-pass one, with 1 the per-item one
      Tensor q = rnd({3, 600, 16}, dt), k = rnd({3, 700, 16}, dt), v = rnd({3, 700, 8}, dt);
      Tensor m = bool_mask({600, 700}, 12, 0.9);
      Tensor fm = Tensor::randn({3, 600, 700}, dt);
      manual_seed(13);
      Tensor o = scaled_dot_product_attention(q, k, v, m, true, 0.1);
      Tensor o2 = scaled_dot_product_attention(q, k, v, fm);
      (sum(mul(o, o)) + wsum(o2)).backward();
      Tensor o3;
      {
        NoGradGuard ng;  // the untracked forward gives the same bits
        manual_seed(13);
        o3 = scaled_dot_product_attention(q, k, v, m, true, 0.1);
      }
      return std::vector<Tensor>{o, o2, o3, q.grad(), k.grad(), v.grad()};
    });
  };
  for (DType dt : {kFloat32, kFloat64}) {
    INFO(dtype_name(dt));
    const auto ref = go(1, 0, dt);
    CHECK(bits_equal(ref[0], ref[2]));
    for (auto [threads, schedule] : {std::pair{2, 0}, std::pair{2, 1}, std::pair{2, 2}, std::pair{1, 2}}) {
      INFO("threads " << threads << ", schedule " << schedule);
      const auto r = go(threads, schedule, dt);
      for (size_t i = 0; i < r.size(); ++i) {
        INFO("tensor " << i);
        CHECK(bits_equal(r[i], ref[i]));
      }
    }
  }
}

TEST_CASE("tiled sdpa in float32 agrees with the weights-storing path", "[flash]") {
  FlashKnobs knobs(0);
  manual_seed(6);
  Tensor q = rnd({2, 2, 600, 16}, kFloat32), k = rnd({2, 2, 600, 16}, kFloat32), v = rnd({2, 2, 600, 16}, kFloat32);
  Args a;
  a.causal = true;
  auto t = run(q, k, v, a, true), w = run(q, k, v, a, false);
  for (size_t i = 0; i < t.size(); ++i) CHECK(check_close(t[i], w[i], 1e-4, 1e-5, "float32"));
}

TEST_CASE("the weights-storing path is kept where the tiled one cannot serve", "[flash]") {
  FlashKnobs knobs(0);
  manual_seed(7);
  Tensor q = rnd({2, 5, 4}), k = rnd({2, 6, 4}), v = rnd({2, 6, 4});
  // a float mask that needs a gradient still gets it
  Tensor m = rnd({5, 6});
  scaled_dot_product_attention(q, k, v, m).sum().backward();
  REQUIRE(m.grad().defined());
  CHECK(m.grad().shape() == Shape{5, 6});
  // weights requested: returned and differentiable
  auto [o, w] = scaled_dot_product_attention_with_weights(q, k, v);
  CHECK(w.shape() == Shape{2, 5, 6});
}

TEST_CASE("path selection: tiled without weights and mask gradient, above the size threshold", "[flash]") {
  CHECK(detail::flash_attn_config().min_weight_bytes == int64_t(8) << 20);  // the default
  detail::AttnProblem p;
  p.B = 1;
  p.H = 4;
  p.L = 512;
  p.S = 512;  // weights: 1M elements, 4 MiB in float32, 8 MiB in float64
  CHECK_FALSE(detail::use_tiled_attention(p, kFloat32, false, false));
  CHECK(detail::use_tiled_attention(p, kFloat64, false, false));
  p.S = 1024;
  CHECK(detail::use_tiled_attention(p, kFloat32, false, false));
  FlashKnobs knobs(int64_t(8) << 20);
  CHECK_FALSE(detail::use_tiled_attention(p, kFloat32, true, false));
  CHECK_FALSE(detail::use_tiled_attention(p, kFloat32, false, true));
  detail::flash_attn_config().min_weight_bytes = 0;
  p.L = p.S = 1;
  CHECK(detail::use_tiled_attention(p, kFloat32, false, false));
}

TEST_CASE("tiled sdpa never holds an L x S buffer (memory_stats)", "[flash][memory]") {
  // B*H = 4 heads of L = S = 2048: the weights of ONE head take 16 MiB, of all four 64 MiB.
  const int64_t B = 1, H = 4, L = 2048, E = 32;
  const int64_t one_head = L * L * int64_t(sizeof(float));
  manual_seed(17);
  const Tensor q0 = Tensor::randn({B, H, L, E}), k0 = Tensor::randn({B, H, L, E}), v0 = Tensor::randn({B, H, L, E});
  auto peak_of = [&](bool need_weights) {
    Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
    const int64_t base = memory_stats().current_bytes;
    reset_peak_memory();
    if (need_weights) {
      auto [o, w] = scaled_dot_product_attention_with_weights(q, k, v);
      sum(o).backward();
    } else {
      sum(scaled_dot_product_attention(q, k, v)).backward();
    }
    return memory_stats().peak_bytes - base;
  };
  const int64_t tiled = peak_of(false), stored = peak_of(true);
  INFO("peak above baseline: tiled " << tiled << " B, weights-storing " << stored << " B");
  CHECK(tiled < one_head);         // inputs, output, LSE and gradients only
  CHECK(stored > H * one_head);    // the counter sees the [B, H, L, S] weights of the other path
}
