// Positional encodings: sinusoidal, learned, relative position bias, rotary (RoPE). References
// from tests/fixtures/gen_attention_torch.py (attn_positional.safetensors).
#include <attn/nn/attention/multihead.hpp>
#include <attn/nn/positional.hpp>

#include "test_util.hpp"

using namespace attn;

TEST_CASE("sinusoidal encoding matches the reference formula, even and odd d", "[positional][golden]") {
  auto f = load_fixture("attn_positional.safetensors");
  for (int64_t d : {6, 7}) {
    nn::SinusoidalPositionalEncoding pe(d);
    const Tensor ref = f.at("sin" + std::to_string(d) + ".pe");
    CHECK(check_close(pe.encoding(10, 0, kFloat64), ref, 1e-12, 1e-12, "pe"));
    CHECK(check_close(pe.encoding(4, 3, kFloat64), narrow(ref, 0, 3, 4), 1e-12, 1e-12, "pe with offset"));
    Tensor x = Tensor::randn({2, 10, d}, kFloat64);
    CHECK(check_close(pe.forward(x), add(x, ref), 1e-12, 1e-12, "forward"));
  }
  // any length without max_len, an error past max_len with it
  CHECK(nn::SinusoidalPositionalEncoding(4).encoding(5000).shape() == Shape{5000, 4});
  CHECK_THROWS_WITH(nn::SinusoidalPositionalEncoding(4, 100).forward(Tensor::randn({1, 101, 4})),
                    Catch::Contains("max_len 100"));
}

TEST_CASE("learned positional encoding adds its rows, errors past max_len", "[positional]") {
  nn::LearnedPositionalEncoding pe(6, 3);
  pe.to(kFloat64);
  Tensor x = Tensor::randn({2, 4, 3}, kFloat64).requires_grad_();
  Tensor y = pe.forward(x, 1);
  CHECK(check_close(y, add(x, narrow(pe.weight, 0, 1, 4)), 0, 0, "forward"));
  auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return sum(mul(pe.forward(in[0], 2), pe.forward(in[0], 2))); },
                              {x, pe.weight});
  INFO(r.message);
  REQUIRE(r.ok);
  CHECK_THROWS_WITH(pe.forward(Tensor::randn({1, 6, 3}), 1),
                    Catch::Contains("LearnedPositionalEncoding") && Catch::Contains("max_len 6"));
  CHECK_THROWS_AS(pe.forward(Tensor::randn({1, 7, 3})), ShapeError);
}

TEST_CASE("relative position bias matches the reference and its gradient", "[positional][golden]") {
  auto f = load_fixture("attn_positional.safetensors");
  nn::RelativePositionBias rb(3, 2);
  rb.to(kFloat64);
  {
    NoGradGuard ng;
    rb.weight.copy_(f.at("relbias.weight"));
  }
  Tensor b = rb.forward(4, 6);
  CHECK(b.shape() == Shape{3, 4, 6});
  CHECK(check_close(b, f.at("relbias.bias"), 0, 0, "bias"));
  sum(mul(b, f.at("relbias.r"))).backward();
  CHECK(check_close(rb.weight.grad(), f.at("relbias.gweight"), 1e-12, 1e-12, "gweight"));
  // bias for arbitrary offsets (windowed attention bands): [H, *offsets.shape]
  Tensor off = Tensor::from_vector(std::vector<int64_t>{-5, -1, 0, 1, 7}, {5});
  Tensor bo = rb.bias_for_offsets(off);
  CHECK(bo.shape() == Shape{3, 5});
  CHECK(bo.at({1, 0}) == rb.weight.at({0, 1}));  // clipped to -2
  CHECK(bo.at({2, 4}) == rb.weight.at({4, 2}));  // clipped to +2
  CHECK(bo.at({0, 2}) == rb.weight.at({2, 0}));
  rb.zero_grad();
  auto r = testing::gradcheck([&](const std::vector<Tensor>&) { return sum(mul(rb.forward(3, 4), rb.forward(3, 4))); },
                              {rb.weight});
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("relative position bias as attn_mask of SDPA and MHA trains the bias", "[positional]") {
  manual_seed(8);
  nn::RelativePositionBias rb(2, 3);
  rb.to(kFloat64);
  Tensor q = Tensor::randn({1, 2, 4, 3}, kFloat64).requires_grad_();
  auto r = testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return sum(sin(scaled_dot_product_attention(in[0], in[0], in[0], rb.forward(4, 4)))); },
      {q, rb.weight});
  INFO(r.message);
  REQUIRE(r.ok);
  nn::MultiheadAttention m(nn::MultiheadAttentionOptions(4, 2).batch_first(true));
  m.to(kFloat64);
  Tensor x = Tensor::randn({3, 4, 4}, kFloat64);
  auto [o, w] = m.forward(x, x, x, Tensor(), true, rb.forward(4, 4));  // [H, L, S] broadcast over batch
  sum(o).backward();
  REQUIRE(rb.weight.grad().defined());
  CHECK(max(abs(rb.weight.grad())).item<double>() > 0);
}

TEST_CASE("rotary embedding (rotate-half) matches the reference, backward", "[positional][golden]") {
  auto f = load_fixture("attn_positional.safetensors");
  for (const std::string c : {"rope", "rope4d"}) {
    Tensor x = f.at(c + ".x").clone().requires_grad_();
    const int64_t off = int64_t(f.at(c + ".offset").item<double>());
    Tensor y = apply_rotary(x, off);
    CHECK(check_close(y, f.at(c + ".out"), 1e-12, 1e-12, c + ".out"));
    sum(mul(y, f.at(c + ".r"))).backward();
    CHECK(check_close(x.grad(), f.at(c + ".gx"), 1e-12, 1e-12, c + ".gx"));
  }
  Tensor x = Tensor::randn({2, 3, 4}, kFloat64).requires_grad_();
  auto r = testing::gradcheck([](const std::vector<Tensor>& in) { return sum(sin(apply_rotary(in[0], 5))); }, {x});
  INFO(r.message);
  REQUIRE(r.ok);
  // explicit positions equal the offset form; relative property: <R_m q, R_n k> depends on m - n
  Tensor pos = Tensor::from_vector(std::vector<int64_t>{5, 6, 7}, {3});
  CHECK(check_close(apply_rotary(x.detach(), pos), apply_rotary(x.detach(), 5), 0, 0, "positions"));
  Tensor a = Tensor::randn({1, 4}, kFloat64), b = Tensor::randn({1, 4}, kFloat64);
  const double d1 = sum(mul(apply_rotary(a, 3), apply_rotary(b, 1))).item<double>();
  const double d2 = sum(mul(apply_rotary(a, 10), apply_rotary(b, 8))).item<double>();
  CHECK(std::abs(d1 - d2) < 1e-12);
  CHECK_THROWS_WITH(apply_rotary(Tensor::randn({2, 3, 5}), 0), Catch::Contains("apply_rotary") && Catch::Contains("[2, 3, 5]"));
  nn::RotaryEmbedding rot;
  CHECK(check_close(rot.forward(x.detach(), 2), apply_rotary(x.detach(), 2), 0, 0, "module"));
}
