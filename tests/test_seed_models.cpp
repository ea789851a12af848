// nn::BidirectionalAttentionGRU and nn::HierarchicalAttention (seed 001) against the seed's own
// PyTorch classes (tests/fixtures/gen_seed_models.py): the same state dict loaded by name, output,
// attention weights and every gradient in float64; bad input.
#include <attn/nn/attention/seed_models.hpp>
#include "test_util.hpp"

using namespace attn;

namespace {
// Loads <tag>_p_<name> into every parameter (failing on a missing name), runs f, checks the output,
// the weights and the gradients of loss = sum(out * R).
template <class M, class F>
void check_against_seed(M& m, const std::string& tag, F&& f) {
  auto fx = load_fixture("attnref_seed_models.safetensors");
  m.to(kFloat64);
  {
    NoGradGuard ng;
    for (auto& [name, p] : m.named_parameters()) {
      INFO(tag << " parameter " << name);
      REQUIRE(fx.contains(tag + "_p_" + name));
      p.copy_(fx.at(tag + "_p_" + name));
    }
  }
  Tensor x = fx.at(tag + "_x").clone().requires_grad_();
  auto [y, w] = f(x);
  CHECK(check_close(y, fx.at(tag + "_out"), 1e-9, 1e-10, tag + " out"));
  CHECK(check_close(w, fx.at(tag + "_w"), 1e-9, 1e-10, tag + " weights"));
  sum(mul(y, fx.at(tag + "_R"))).backward();
  CHECK(check_close(x.grad(), fx.at(tag + "_g_x"), 1e-8, 1e-10, tag + " g_x"));
  for (auto& [name, p] : m.named_parameters()) CHECK(check_close(p.grad(), fx.at(tag + "_g_" + name), 1e-8, 1e-10, name));
}
}  // namespace

TEST_CASE("nn::BidirectionalAttentionGRU matches seed 001's PyTorch class", "[seed_models]") {
  nn::BidirectionalAttentionGRU m(3, 8, 2);
  check_against_seed(m, "bigru", [&](const Tensor& x) { return m.forward(x); });
}

TEST_CASE("nn::HierarchicalAttention matches seed 001's PyTorch class (window 10, partial last window)",
          "[seed_models]") {
  nn::HierarchicalAttention m(8, 16);
  check_against_seed(m, "hier", [&](const Tensor& x) { return m.forward(x, 10); });
}

TEST_CASE("seed models reject bad input", "[seed_models][errors]") {
  nn::HierarchicalAttention h(8, 16);
  nn::BidirectionalAttentionGRU g(3, 8, 1);
  CHECK_THROWS_AS(h.forward(Tensor::randn({2, 5, 8}), 0), std::invalid_argument);
  CHECK_THROWS_WITH(h.forward(Tensor::randn({5, 8})), Catch::Contains("HierarchicalAttention") && Catch::Contains("[5, 8]"));
  CHECK_THROWS_WITH(g.forward(Tensor::randn({5, 3})), Catch::Contains("BidirectionalAttentionGRU") && Catch::Contains("[5, 3]"));
  CHECK_THROWS_AS(g.forward(Tensor::randn({2, 5, 4})), std::invalid_argument);
}
