// Additive (Bahdanau) attention and attention pooling: PyTorch goldens, gradcheck, masks, errors,
// thread invariance.
#include <attn/nn/attention/additive.hpp>
#include "test_util.hpp"

using namespace attn;

namespace {
Tensor leaf(const Tensor& t) { return t.clone().detach().requires_grad_(); }
Tensor rnd(const Shape& s) { return Tensor::randn(s, kFloat64).requires_grad_(); }
}  // namespace

TEST_CASE("additive_attention matches PyTorch (forward and gradients)", "[additive]") {
  auto f = load_fixture("attnref_additive.safetensors");
  Tensor q = leaf(f.at("query")), k = leaf(f.at("keys")), v = leaf(f.at("values"));
  Tensor Wq = leaf(f.at("W_q")), Wk = leaf(f.at("W_k")), vv = leaf(f.at("v")), bq = leaf(f.at("b_q")),
         bk = leaf(f.at("b_k"));
  auto [ctx, w] = additive_attention(q, k, v, Wq, Wk, vv, f.at("mask"), bq, bk);
  CHECK(check_close(ctx, f.at("context"), 1e-9, 1e-10, "context"));
  CHECK(check_close(w, f.at("weights"), 1e-9, 1e-10, "weights"));
  (sum(ctx * f.at("R_context")) + sum(w * f.at("R_weights"))).backward();
  CHECK(check_close(q.grad(), f.at("g_query"), 1e-9, 1e-10, "g_query"));
  CHECK(check_close(k.grad(), f.at("g_keys"), 1e-9, 1e-10, "g_keys"));
  CHECK(check_close(v.grad(), f.at("g_values"), 1e-9, 1e-10, "g_values"));
  CHECK(check_close(Wq.grad(), f.at("g_W_q"), 1e-9, 1e-10, "g_W_q"));
  CHECK(check_close(Wk.grad(), f.at("g_W_k"), 1e-9, 1e-10, "g_W_k"));
  CHECK(check_close(vv.grad(), f.at("g_v"), 1e-9, 1e-10, "g_v"));
  CHECK(check_close(bq.grad(), f.at("g_b_q"), 1e-9, 1e-10, "g_b_q"));
  CHECK(check_close(bk.grad(), f.at("g_b_k"), 1e-9, 1e-10, "g_b_k"));
}

TEST_CASE("additive_attention: fully masked query gives zeros, never NaN", "[additive]") {
  Tensor q = rnd({1, 2, 3}), k = rnd({1, 4, 3}), v = rnd({1, 4, 2});
  Tensor Wq = rnd({5, 3}), Wk = rnd({5, 3}), vv = rnd({5});
  std::vector<bool> m(8, true);
  for (int j = 0; j < 4; ++j) m[size_t(4 + j)] = false;  // query 1 sees nothing
  Tensor mask = Tensor::from_vector(m, {1, 2, 4});
  auto [ctx, w] = additive_attention(q, k, v, Wq, Wk, vv, mask);
  for (int j = 0; j < 4; ++j) CHECK(w.at({0, 1, j}) == 0.0);
  for (int d = 0; d < 2; ++d) CHECK(ctx.at({0, 1, d}) == 0.0);
  sum(select(ctx, 1, 1)).backward();
  for (double x : q.grad().to_vector<double>()) CHECK(x == 0.0);
  for (double x : v.grad().to_vector<double>()) CHECK(x == 0.0);
}

TEST_CASE("additive_attention gradcheck (with [B, S] mask and biases)", "[additive][gradcheck]") {
  Tensor q = rnd({2, 2, 3}), k = rnd({2, 3, 2}), v = rnd({2, 3, 2});
  Tensor Wq = rnd({4, 3}), Wk = rnd({4, 2}), vv = rnd({1, 4}), bq = rnd({4}), bk = rnd({4});
  Tensor mask = Tensor::from_vector(std::vector<bool>{true, false, true, true, true, true}, {2, 3});
  Tensor Rw = Tensor::randn({2, 2, 3}, kFloat64);
  auto r = testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        auto [c, w] = additive_attention(in[0], in[1], in[2], in[3], in[4], in[5], mask, in[6], in[7]);
        return cat({reshape(c, {-1}), reshape(w * Rw, {-1})}, 0);
      },
      {q, k, v, Wq, Wk, vv, bq, bk});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("nn::AdditiveAttention: names, 2-D query for a decoder step", "[additive]") {
  nn::AdditiveAttention att(6, 4, 8);
  auto names = att.named_parameters();
  REQUIRE(names.size() == 3);
  CHECK(names[0].first == "W_q.weight");
  CHECK(names[1].first == "W_k.weight");
  CHECK(names[2].first == "v.weight");
  CHECK(names[2].second.shape() == Shape{1, 8});
  nn::AdditiveAttention withb(6, 4, 8, true);
  CHECK(withb.named_parameters().size() == 5);
  Tensor s = Tensor::randn({3, 6}), enc = Tensor::randn({3, 5, 4});
  auto [c, w] = att.forward(s, enc);
  CHECK(c.shape() == Shape{3, 4});
  CHECK(w.shape() == Shape{3, 5});
  auto [c3, w3] = att.forward(unsqueeze(s, 1), enc, enc);
  CHECK(check_close(reshape(c3, {3, 4}), c, 1e-6, 1e-7, "2-D vs 3-D query"));
  const auto wv = w.to_vector<float>();
  for (int b = 0; b < 3; ++b) {
    double acc = 0;
    for (int j = 0; j < 5; ++j) acc += wv[size_t(b * 5 + j)];
    CHECK(acc == Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("attention_pooling matches PyTorch (masked with an empty sequence, and unmasked)", "[additive][pooling]") {
  auto f = load_fixture("attnref_pooling.safetensors");
  nn::AttentionPooling pool(4, 5);
  pool.to(kFloat64);
  {
    NoGradGuard ng;
    pool.proj.weight.copy_(f.at("0.weight"));
    pool.proj.bias.copy_(f.at("0.bias"));
    pool.score.weight.copy_(f.at("2.weight"));
    pool.score.bias.copy_(f.at("2.bias"));
  }
  auto names = pool.named_parameters();
  REQUIRE(names.size() == 4);
  CHECK(names[0].first == "0.weight");
  CHECK(names[3].first == "2.bias");
  for (int masked = 0; masked < 2; ++masked) {
    const std::string pre = masked ? "" : "nomask_";
    pool.zero_grad();
    Tensor h = leaf(f.at("h"));
    auto [ctx, w] = masked ? pool.forward(h, std::vector<int64_t>{7, 4, 0}) : pool.forward(h);
    CHECK(check_close(ctx, f.at(pre + "context"), 1e-9, 1e-10, pre + "context"));
    CHECK(check_close(w, f.at(pre + "weights"), 1e-9, 1e-10, pre + "weights"));
    (sum(ctx * f.at("R_context")) + sum(w * f.at("R_weights"))).backward();
    CHECK(check_close(h.grad(), f.at(pre + "g_h"), 1e-9, 1e-10, pre + "g_h"));
    CHECK(check_close(pool.proj.weight.grad(), f.at(pre + "g_0.weight"), 1e-9, 1e-10, pre + "g_0.weight"));
    CHECK(check_close(pool.proj.bias.grad(), f.at(pre + "g_0.bias"), 1e-9, 1e-10, pre + "g_0.bias"));
    CHECK(check_close(pool.score.weight.grad(), f.at(pre + "g_2.weight"), 1e-9, 1e-10, pre + "g_2.weight"));
    CHECK(check_close(pool.score.bias.grad(), f.at(pre + "g_2.bias"), 1e-9, 1e-9, pre + "g_2.bias"));
  }
}

TEST_CASE("attention_pooling gradcheck and composed equivalence", "[additive][pooling][gradcheck]") {
  Tensor h = rnd({2, 4, 3}), W1 = rnd({5, 3}), b1 = rnd({5}), w2 = rnd({1, 5}), b2 = rnd({1});
  Tensor mask = Tensor::from_vector(std::vector<bool>{true, true, true, false, true, true, true, true}, {2, 4});
  Tensor Rw = Tensor::randn({2, 4}, kFloat64);
  auto r = testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        auto [c, w] = attention_pooling(in[0], in[1], in[2], in[3], in[4], mask);
        return cat({reshape(c, {-1}), reshape(w * Rw, {-1})}, 0);
      },
      {h, W1, b1, w2, b2});
  INFO(r.message);
  REQUIRE(r.ok);
  // composed from attn ops (task A's PyTorch code, line by line)
  auto [c, w] = attention_pooling(h, W1, b1, w2, b2);
  Tensor e = squeeze(linear(tanh(linear(h, W1, b1)), w2, b2), -1);
  Tensor a = softmax(e, 1);
  Tensor cc = sum(unsqueeze(a, -1) * h, 1);
  CHECK(check_close(w, a, 1e-12, 1e-13, "weights"));
  CHECK(check_close(c, cc, 1e-12, 1e-13, "context"));
}

TEST_CASE("additive family: errors name the op and shapes", "[additive][errors]") {
  Tensor q = Tensor::randn({2, 3, 4}), k = Tensor::randn({2, 5, 4}), v = Tensor::randn({2, 5, 2});
  Tensor Wq = Tensor::randn({6, 4}), Wk = Tensor::randn({6, 4}), vv = Tensor::randn({6});
  CHECK_THROWS_AS(additive_attention(q, Tensor::randn({3, 5, 4}), v, Wq, Wk, vv), ShapeError);
  CHECK_THROWS_AS(additive_attention(q, k, v, Tensor::randn({6, 3}), Wk, vv), ShapeError);
  CHECK_THROWS_AS(additive_attention(q, k, v, Wq, Wk, Tensor::randn({5})), ShapeError);
  try {
    additive_attention(q, k, v, Wq, Wk, vv, Tensor::ones({2, 4}, kBool));
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    const std::string m = e.what();
    CHECK(m.find("additive_attention") != std::string::npos);
    CHECK(m.find("[2, 4]") != std::string::npos);
  }
  CHECK_THROWS_AS(attention_pooling(Tensor::randn({2, 3}), Wq, Tensor(), vv, Tensor()), ShapeError);
  nn::AttentionPooling pool(4, 6);
  CHECK_THROWS_AS(pool.forward(q, Tensor::ones({2, 4}, kBool)), ShapeError);
  CHECK_THROWS_AS(pool.forward(q, std::vector<int64_t>{3}), ShapeError);
  CHECK_THROWS_AS(pool.forward(q, std::vector<int64_t>{3, 4}), ShapeError);
}

TEST_CASE("additive family: bit-identical for 1 and 2 threads", "[additive][threads]") {
  Tensor q0 = Tensor::randn({4, 6, 5}), k0 = Tensor::randn({4, 9, 5}), v0 = Tensor::randn({4, 9, 3});
  Tensor Wq = Tensor::randn({7, 5}), Wk = Tensor::randn({7, 5}), vv = Tensor::randn({7});
  auto run = [&](int threads) {
    return with_threads(threads, [&] {
      Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0), h = leaf(k0);
      auto [c, w] = additive_attention(q, k, v, Wq, Wk, vv);
      (sum(c * c) + sum(w * w)).backward();
      nn::AttentionPooling pool(5, 7);  // fresh init differs; fix weights
      {
        NoGradGuard ng;
        pool.proj.weight.copy_(Wq);
        pool.score.weight.copy_(reshape(vv, {1, 7}));
        pool.proj.bias.fill_(0.1);
        pool.score.bias.fill_(0.2);
      }
      auto [pc, pw] = pool.forward(h);
      sum(pc * pc).backward();
      std::vector<float> all;
      for (const Tensor& t : {c, w, q.grad(), k.grad(), v.grad(), pc, pw, h.grad(), pool.proj.weight.grad(),
                              pool.score.weight.grad()}) {
        auto x = t.to_vector<float>();
        all.insert(all.end(), x.begin(), x.end());
      }
      return all;
    });
  };
  CHECK(run(1) == run(2));
}

// ---- additive_attention_step: one decoder step as one node (projections included) ----

TEST_CASE("additive_attention_step matches PyTorch, one query row at a time", "[additive][step]") {
  // The fixture's query [B, Lq, Dq] and mask [B, Lq, S], run as Lq separate steps: the losses of
  // the rows add up to the fixture's loss, so every gradient must match its total.
  auto f = load_fixture("attnref_additive.safetensors");
  Tensor q = leaf(f.at("query")), k = leaf(f.at("keys")), v = leaf(f.at("values"));
  Tensor Wq = leaf(f.at("W_q")), Wk = leaf(f.at("W_k")), vv = leaf(f.at("v")), bq = leaf(f.at("b_q")),
         bk = leaf(f.at("b_k"));
  const Tensor mask = f.at("mask");
  Tensor loss = Tensor::zeros({}, kFloat64);
  for (int64_t i = 0; i < q.size(1); ++i) {
    auto [ctx, w] = additive_attention_step(select(q, 1, i), k, v, Wq, Wk, vv, select(mask, 1, i), bq, bk);
    CHECK(check_close(ctx, select(f.at("context"), 1, i), 1e-9, 1e-10, "context"));
    CHECK(check_close(w, select(f.at("weights"), 1, i), 1e-9, 1e-10, "weights"));
    loss = loss + sum(ctx * select(f.at("R_context"), 1, i)) + sum(w * select(f.at("R_weights"), 1, i));
  }
  loss.backward();
  CHECK(check_close(q.grad(), f.at("g_query"), 1e-9, 1e-10, "g_query"));
  CHECK(check_close(k.grad(), f.at("g_keys"), 1e-9, 1e-10, "g_keys"));
  CHECK(check_close(v.grad(), f.at("g_values"), 1e-9, 1e-10, "g_values"));
  CHECK(check_close(Wq.grad(), f.at("g_W_q"), 1e-9, 1e-10, "g_W_q"));
  CHECK(check_close(Wk.grad(), f.at("g_W_k"), 1e-9, 1e-10, "g_W_k"));
  CHECK(check_close(vv.grad(), f.at("g_v"), 1e-9, 1e-10, "g_v"));
  CHECK(check_close(bq.grad(), f.at("g_b_q"), 1e-9, 1e-10, "g_b_q"));
  CHECK(check_close(bk.grad(), f.at("g_b_k"), 1e-9, 1e-10, "g_b_k"));
}

TEST_CASE("additive_attention_step equals additive_attention with one query (values and gradients)",
          "[additive][step]") {
  manual_seed(17);
  for (bool same_kv : {false, true})
    for (bool with_mask : {false, true})
      for (bool bias : {false, true}) {
        INFO("keys == values " << same_kv << " mask " << with_mask << " bias " << bias);
        const Tensor q0 = Tensor::randn({3, 5}, kFloat64), k0 = Tensor::randn({3, 7, 4}, kFloat64),
                     v0 = Tensor::randn({3, 7, 4}, kFloat64), Wq0 = Tensor::randn({6, 5}, kFloat64),
                     Wk0 = Tensor::randn({6, 4}, kFloat64), vv0 = Tensor::randn({1, 6}, kFloat64),
                     bq0 = Tensor::randn({6}, kFloat64), bk0 = Tensor::randn({6}, kFloat64);
        std::vector<bool> m(21, true);
        m[3] = m[4] = m[10] = false;
        for (int j = 0; j < 7; ++j) m[size_t(14 + j)] = j == 2;  // one allowed key
        const Tensor mask = with_mask ? Tensor::from_vector(m, {3, 7}) : Tensor();
        const Tensor Rc = Tensor::randn({3, 4}, kFloat64), Rw = Tensor::randn({3, 7}, kFloat64);
        std::vector<Tensor> res[2];
        for (int path = 0; path < 2; ++path) {
          Tensor q = leaf(q0), k = leaf(k0), v = same_kv ? k : leaf(v0), Wq = leaf(Wq0), Wk = leaf(Wk0), vv = leaf(vv0);
          Tensor bq = bias ? leaf(bq0) : Tensor(), bk = bias ? leaf(bk0) : Tensor();
          Tensor c, w;
          if (path == 0) {
            std::tie(c, w) = additive_attention_step(q, k, v, Wq, Wk, vv, mask, bq, bk);
          } else {
            auto r = additive_attention(unsqueeze(q, 1), k, v, Wq, Wk, vv, mask, bq, bk);
            c = squeeze(r.first, 1);
            w = squeeze(r.second, 1);
          }
          (sum(c * Rc) + sum(w * Rw)).backward();
          res[path] = {c, w, q.grad(), k.grad(), Wq.grad(), Wk.grad(), vv.grad()};
          if (!same_kv) res[path].push_back(v.grad());
          if (bias) {
            res[path].push_back(bq.grad());
            res[path].push_back(bk.grad());
          }
        }
        for (size_t i = 0; i < res[0].size(); ++i) {
          INFO("value " << i);
          CHECK(check_close(res[0][i], res[1][i], 1e-12, 1e-13, "step vs additive_attention"));
        }
      }
}

TEST_CASE("additive_attention_step gradcheck (mask, biases, v as [H] and [1, H])", "[additive][step][gradcheck]") {
  manual_seed(19);
  Tensor q = rnd({2, 3}), k = rnd({2, 4, 2}), v = rnd({2, 4, 3}), Wq = rnd({5, 3}), Wk = rnd({5, 2}), bq = rnd({5}),
         bk = rnd({5});
  const Tensor mask = Tensor::from_vector(std::vector<bool>{true, false, true, true, true, true, false, true}, {2, 4});
  const Tensor Rw = Tensor::randn({2, 4}, kFloat64);
  for (const Shape& vs : {Shape{5}, Shape{1, 5}}) {
    Tensor vv = rnd(vs);
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) {
          auto [c, w] = additive_attention_step(in[0], in[1], in[2], in[3], in[4], in[5], mask, in[6], in[7]);
          return cat({reshape(c, {-1}), reshape(w * Rw, {-1})}, 0);
        },
        {q, k, v, Wq, Wk, vv, bq, bk});
    INFO(r.message);
    CHECK(r.ok);
  }
  // keys used as values too (the decoder's usual call): the two gradients add up
  Tensor vv = rnd({5});
  auto r = testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        auto [c, w] = additive_attention_step(in[0], in[1], in[1], in[2], in[3], in[4]);
        return cat({reshape(c, {-1}), reshape(w * Rw, {-1})}, 0);
      },
      {q, k, Wq, Wk, vv});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("additive_attention_step: one node, errors name the op, bit-identical for 1 and 2 threads",
          "[additive][step]") {
  nn::AdditiveAttention att(6, 4, 8, true);
  Tensor s = Tensor::randn({3, 6}).requires_grad_(), enc = Tensor::randn({3, 5, 4});
  auto [c, w] = att.forward(s, enc);
  CHECK(c.grad_fn() == w.grad_fn());
  CHECK(c.grad_fn()->name == "additive_attention_step");
  for (const Tensor& in : c.grad_fn()->inputs) CHECK((!in.defined() || !in.grad_fn()));  // nothing before it
  using Catch::Matchers::Contains;
  const Tensor k = Tensor::randn({2, 5, 4}), v = Tensor::randn({2, 5, 3}), Wq = Tensor::randn({6, 4}),
               Wk = Tensor::randn({6, 4}), vv = Tensor::randn({6});
  CHECK_THROWS_WITH(additive_attention_step(Tensor::randn({2, 1, 4}), k, v, Wq, Wk, vv),
                    Contains("additive_attention_step") && Contains("[2, 1, 4]"));
  CHECK_THROWS_WITH(additive_attention_step(Tensor::randn({3, 4}), k, v, Wq, Wk, vv),
                    Contains("additive_attention_step") && Contains("[3, 4]") && Contains("[2, 5, 4]"));
  CHECK_THROWS_WITH(additive_attention_step(Tensor::randn({2, 4}), k, v, Wq, Wk, vv, Tensor(), Tensor::randn({5})),
                    Contains("additive_attention_step") && Contains("[5]"));
  CHECK_THROWS_WITH(additive_attention_step(Tensor::randn({2, 4}), k, v, Wq, Wk, vv, Tensor::ones({2, 4}, kBool)),
                    Contains("additive_attention_step") && Contains("[2, 4]"));
  CHECK_THROWS_AS(additive_attention_step(Tensor::randn({2, 4}, kFloat64), k, v, Wq, Wk, vv), std::invalid_argument);
  // threads: a step large enough (about 5e7 flops) for its products and rows to be split
  const Tensor q0 = Tensor::randn({64, 32}), k0 = Tensor::randn({64, 200, 32}), W5 = Tensor::randn({64, 32}),
               v7 = Tensor::randn({64});
  auto run = [&](int threads) {
    return with_threads(threads, [&] {
      Tensor q = leaf(q0), kk = leaf(k0), Wk = leaf(W5);
      auto [cc, ww] = additive_attention_step(q, kk, kk, W5, Wk, v7);
      (sum(cc * cc) + sum(ww * ww)).backward();
      std::vector<float> all;
      for (const Tensor& t : {cc, ww, q.grad(), kk.grad(), Wk.grad()}) {
        auto x = t.to_vector<float>();
        all.insert(all.end(), x.begin(), x.end());
      }
      return all;
    });
  };
  CHECK(run(1) == run(2));
}
