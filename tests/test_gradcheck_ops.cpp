// Finite-difference gradient checks (attn::testing::gradcheck, double precision, central
// differences, PyTorch's default tolerances) for every differentiable op in core/functions.hpp.
// Inputs are tiny and drawn away from kinks (relu, abs, clamp, maximum) so differences are smooth.
#include <functional>

#include "test_util.hpp"

using namespace attn;
using In = std::vector<Tensor>;
using Fn = std::function<Tensor(const In&)>;

namespace {

enum Kind { Rn, Pos, Away };  // normal, positive in [0.5, 2), normal but |x| >= 0.1

Tensor make(const Shape& s, Kind k) {
  Tensor t = Tensor::randn(s, kFloat64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (k == Pos) p[i] = 0.5 + 1.5 * default_generator().uniform();
    if (k == Away && std::abs(p[i]) < 0.1) p[i] = p[i] < 0 ? p[i] - 0.1 : p[i] + 0.1;
  }
  return t.requires_grad_();
}

struct Spec {
  Shape shape;
  Kind kind = Rn;
};

void check(const std::string& name, const std::vector<Spec>& specs, const Fn& fn) {
  INFO("op " << name);
  In inputs;
  for (const Spec& s : specs) inputs.push_back(make(s.shape, s.kind));
  auto r = testing::gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
}

Tensor idx(std::vector<int64_t> v, Shape s = {}) {
  if (s.empty()) s = {int64_t(v.size())};
  return Tensor::from_vector(v, s);
}
Tensor mask(std::vector<bool> v, Shape s) { return Tensor::from_vector(v, s); }

}  // namespace

TEST_CASE("gradcheck: binary ops with broadcasting", "[gradcheck]") {
  manual_seed(10);
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{2, 3}, {2, 3}}, {{2, 3}, {3}}, {{2, 1, 3}, {2, 1}}, {{}, {2, 2}}, {{2, 1}, {1, 3}}};
  for (auto& [sa, sb] : shapes) {
    INFO("shapes " << to_string(sa) << " " << to_string(sb));
    check("add", {{sa}, {sb}}, [](const In& in) { return add(in[0], in[1]); });
    check("sub", {{sa}, {sb}}, [](const In& in) { return in[0] - in[1]; });
    check("mul", {{sa}, {sb}}, [](const In& in) { return mul(in[0], in[1]); });
    check("div", {{sa}, {sb, Pos}}, [](const In& in) { return div(in[0], in[1]); });
    check("maximum", {{sa, Away}, {sb, Away}}, [](const In& in) { return maximum(in[0], in[1]); });
    check("minimum", {{sa, Away}, {sb, Away}}, [](const In& in) { return minimum(in[0], in[1]); });
  }
}

TEST_CASE("gradcheck: scalar forms", "[gradcheck]") {
  manual_seed(11);
  check("add_scalar", {{{2, 3}}}, [](const In& in) { return add(in[0], 1.5); });
  check("mul_scalar", {{{2, 3}}}, [](const In& in) { return mul(in[0], -2.0); });
  check("rsub", {{{2, 3}}}, [](const In& in) { return rsub(2.0, in[0]); });
  check("rdiv", {{{2, 3}, Pos}}, [](const In& in) { return rdiv(3.0, in[0]); });
  check("neg", {{{2, 3}}}, [](const In& in) { return neg(in[0]); });
  check("operators", {{{2, 3}, Pos}}, [](const In& in) { return (2.0 - in[0]) * 3.0 / 2.0 + 1.0 - 4.0 / in[0]; });
}

TEST_CASE("gradcheck: unary math and activations", "[gradcheck]") {
  manual_seed(12);
  const Shape s{2, 4};
  check("pow2", {{s}}, [](const In& in) { return pow(in[0], 2.0); });
  check("pow3", {{s}}, [](const In& in) { return pow(in[0], 3.0); });
  check("pow_half", {{s, Pos}}, [](const In& in) { return pow(in[0], 0.5); });
  check("pow_neg", {{s, Pos}}, [](const In& in) { return pow(in[0], -1.5); });
  check("sqrt", {{s, Pos}}, [](const In& in) { return sqrt(in[0]); });
  check("exp", {{s}}, [](const In& in) { return exp(in[0]); });
  check("log", {{s, Pos}}, [](const In& in) { return log(in[0]); });
  check("abs", {{s, Away}}, [](const In& in) { return abs(in[0]); });
  check("sin", {{s}}, [](const In& in) { return sin(in[0]); });
  check("cos", {{s}}, [](const In& in) { return cos(in[0]); });
  check("clamp", {{s}}, [](const In& in) { return clamp(in[0], -0.55, 0.65); });
  check("tanh", {{s}}, [](const In& in) { return tanh(in[0]); });
  check("sigmoid", {{s}}, [](const In& in) { return sigmoid(in[0]); });
  check("relu", {{s, Away}}, [](const In& in) { return relu(in[0]); });
  check("leaky_relu", {{s, Away}}, [](const In& in) { return leaky_relu(in[0], 0.2); });
  check("elu", {{s, Away}}, [](const In& in) { return elu(in[0], 0.7); });
  check("gelu", {{s}}, [](const In& in) { return gelu(in[0]); });
  check("softplus", {{s}}, [](const In& in) { return softplus(in[0]); });
  check("softplus_beta", {{s}}, [](const In& in) { return softplus(mul(in[0], 3.0), 2.0, 2.5); });
}

TEST_CASE("gradcheck: where and masked_fill", "[gradcheck]") {
  manual_seed(13);
  const Tensor m = mask({true, false, false, true, true, false}, {2, 3});
  const Tensor mb = mask({false, true, true}, {3});
  check("where", {{{2, 3}}, {{2, 3}}}, [m](const In& in) { return where(m, in[0], in[1]); });
  check("where_bcast", {{{3}}, {{2, 1}}}, [mb](const In& in) { return where(mb, in[0], in[1]); });
  check("masked_fill", {{{2, 3}}}, [m](const In& in) { return masked_fill(in[0], m, -1.0); });
  check("masked_fill_bcast", {{{2, 3}}}, [mb](const In& in) { return masked_fill(in[0], mb, 2.0); });
}

TEST_CASE("gradcheck: reductions", "[gradcheck]") {
  manual_seed(14);
  const Shape s{2, 3, 2};
  check("sum", {{s}}, [](const In& in) { return sum(in[0]); });
  check("sum_dim", {{s}}, [](const In& in) { return sum(in[0], 1); });
  check("sum_keepdim", {{s}}, [](const In& in) { return sum(in[0], -1, true); });
  check("sum_dims", {{s}}, [](const In& in) { return sum(in[0], std::vector<int64_t>{0, 2}); });
  check("mean", {{s}}, [](const In& in) { return mean(in[0]); });
  check("mean_dim", {{s}}, [](const In& in) { return mean(in[0], 0, true); });
  check("mean_dims", {{s}}, [](const In& in) { return mean(in[0], std::vector<int64_t>{1, 2}, true); });
  check("var", {{s}}, [](const In& in) { return var(in[0], 1); });
  check("var_biased", {{s}}, [](const In& in) { return var(in[0], 2, false, true); });
  check("max_all", {{s}}, [](const In& in) { return max(in[0]); });
  check("max_dim", {{s}}, [](const In& in) { return max(in[0], 1).first; });
  check("min_dim", {{s}}, [](const In& in) { return min(in[0], -1, true).first; });
  check("softmax", {{s}}, [](const In& in) { return softmax(in[0], 1); });
  check("softmax_last", {{{2, 4}}}, [](const In& in) { return softmax(in[0], -1); });
  check("log_softmax", {{s}}, [](const In& in) { return log_softmax(in[0], 0); });
  check("logsumexp", {{s}}, [](const In& in) { return logsumexp(in[0], 1); });
  check("logsumexp_keep", {{s}}, [](const In& in) { return logsumexp(in[0], -1, true); });
  check("sum_to", {{{2, 3, 2}}}, [](const In& in) { return sum_to(in[0], {3, 1}); });
}

TEST_CASE("gradcheck: shape ops", "[gradcheck]") {
  manual_seed(15);
  const Shape s{2, 3, 2};
  check("reshape", {{s}}, [](const In& in) { return reshape(in[0], {3, -1}); });
  check("flatten", {{s}}, [](const In& in) { return flatten(in[0], 1); });
  check("transpose", {{s}}, [](const In& in) { return transpose(in[0], 0, 2); });
  check("permute", {{s}}, [](const In& in) { return permute(in[0], {1, 2, 0}); });
  check("unsqueeze", {{{2, 3}}}, [](const In& in) { return unsqueeze(in[0], 0); });
  check("squeeze", {{{2, 1, 3}}}, [](const In& in) { return squeeze(in[0], 1); });
  check("squeeze_all", {{{1, 3, 1}}}, [](const In& in) { return squeeze(in[0]); });
  check("narrow", {{s}}, [](const In& in) { return narrow(in[0], 1, 1, 2); });
  check("slice_step", {{{2, 7}}}, [](const In& in) { return slice(in[0], 1, 1, 6, 2); });
  check("select", {{s}}, [](const In& in) { return select(in[0], 1, -1); });
  check("cat", {{{2, 2}}, {{2, 3}}}, [](const In& in) { return cat({in[0], in[1]}, 1); });
  check("stack", {{{2, 2}}, {{2, 2}}}, [](const In& in) { return stack({in[0], in[1]}, 1); });
  check("split", {{{5, 2}}}, [](const In& in) {
    auto p = split(in[0], 2, 0);
    return cat({mul(p[0], 1.0), mul(p[1], 2.0), mul(p[2], 3.0)}, 0);
  });
  check("chunk", {{{2, 4}}}, [](const In& in) {
    auto p = chunk(in[0], 2, 1);
    return mul(p[0], p[1]);
  });
  check("unbind", {{{3, 2}}}, [](const In& in) {
    auto p = unbind(in[0], 0);
    return p[0] * p[1] + p[2];
  });
  const Tensor ix = idx({2, 0, 2});
  check("index_select", {{{3, 2}}}, [ix](const In& in) { return index_select(in[0], 0, ix); });
  check("index_select_d1", {{{2, 3}}}, [ix](const In& in) { return index_select(in[0], 1, ix); });
  check("flip", {{s}}, [](const In& in) { return flip(in[0], {0, 2}); });
  check("expand", {{{3, 1}}}, [](const In& in) { return expand(in[0], {2, 3, 4}); });
  check("broadcast_to", {{{3}}}, [](const In& in) { return broadcast_to(in[0], {2, 3}); });
  check("repeat_interleave_rows", {{{2, 2}}}, [](const In& in) { return repeat_interleave_rows(in[0], 2); });
  check("clone", {{{2, 2}}}, [](const In& in) { return in[0].clone() * in[0]; });
}

TEST_CASE("gradcheck: matmul and linear", "[gradcheck]") {
  manual_seed(16);
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3}, {3}},          {{3}, {3, 2}},          {{2, 3}, {3}},      {{2, 3}, {3, 2}},
      {{2, 2, 3}, {2, 3, 2}}, {{2, 2, 3}, {3, 2}}, {{2, 3}, {2, 3, 2}}, {{2, 1, 2, 3}, {1, 2, 3, 2}},
      {{3}, {2, 3, 2}},    {{2, 2, 3}, {3}}};
  for (auto& [sa, sb] : shapes) {
    INFO("shapes " << to_string(sa) << " " << to_string(sb));
    check("matmul", {{sa}, {sb}}, [](const In& in) { return matmul(in[0], in[1]); });
  }
  check("linear", {{{2, 3}}, {{4, 3}}, {{4}}}, [](const In& in) { return linear(in[0], in[1], in[2]); });
  check("linear_3d", {{{2, 2, 3}}, {{2, 3}}, {{2}}}, [](const In& in) { return linear(in[0], in[1], in[2]); });
  check("linear_nobias", {{{2, 3}}, {{2, 3}}}, [](const In& in) { return linear(in[0], in[1], Tensor()); });
}

TEST_CASE("gradcheck: losses", "[gradcheck]") {
  manual_seed(17);
  const Tensor t = idx({1, 0, 2});
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    INFO("reduction " << int(r));
    check("mse_loss", {{{2, 3}}, {{2, 3}}}, [r](const In& in) { return mse_loss(in[0], in[1], r); });
    check("l1_loss", {{{2, 3}, Away}, {{2, 3}}}, [r](const In& in) {
      // keep input - target away from 0: shift the input by 3 (inputs are ~N(0,1))
      return l1_loss(add(in[0], 3.0), in[1], r);
    });
    check("bce_with_logits", {{{2, 3}}, {{2, 3}, Pos}},
          [r](const In& in) { return binary_cross_entropy_with_logits(mul(in[0], 3.0), mul(in[1], 0.4), r); });
    check("nll_loss", {{{3, 4}}}, [r, t](const In& in) { return nll_loss(log_softmax(in[0], 1), t, r); });
    check("cross_entropy", {{{3, 4}}}, [r, t](const In& in) { return cross_entropy(in[0], t, r); });
  }
}

TEST_CASE("gradcheck: layer_norm, embedding, dropout", "[gradcheck]") {
  manual_seed(18);
  check("layer_norm", {{{2, 4}}, {{4}}, {{4}}}, [](const In& in) { return layer_norm(in[0], {4}, in[1], in[2]); });
  check("layer_norm_2d", {{{2, 2, 3}}, {{2, 3}}, {{2, 3}}},
        [](const In& in) { return layer_norm(in[0], {2, 3}, in[1], in[2]); });
  check("layer_norm_noaffine", {{{3, 4}}}, [](const In& in) { return layer_norm(in[0], {4}, Tensor(), Tensor()); });
  const Tensor e = idx({0, 3, 3, 1}, {2, 2});
  check("embedding", {{{4, 3}}}, [e](const In& in) { return embedding(in[0], e); });
  check("dropout_eval", {{{2, 3}}}, [](const In& in) { return dropout(in[0], 0.5, false); });
  // Dropout in training: the mask must be the same in every call, so reseed before each draw.
  check("dropout_train", {{{2, 3}}}, [](const In& in) {
    manual_seed(5);
    return dropout(in[0], 0.3, true);
  });
}

TEST_CASE("gradcheck: dtype conversion round trip and composed expressions", "[gradcheck]") {
  manual_seed(19);
  check("to_float64", {{{2, 3}}}, [](const In& in) { return in[0].to(kFloat32).to(kFloat64) * 0.0 + in[0]; });
  check("composed", {{{2, 3}}, {{3, 3}}}, [](const In& in) {
    Tensor h = tanh(matmul(in[0], in[1]));
    return mean(softmax(h, -1) * h, 0);
  });
  check("scale", {{{2}}}, [](const In& in) { return in[0] * 2.0; });
}

TEST_CASE("gradcheck: detects a wrong backward", "[gradcheck]") {
  // A deliberately wrong derivative (claims d/dx x^2 = x) must be caught.
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.0, 2.0}).requires_grad_();
  auto r = testing::gradcheck(
      [](const In& in) {
        Tensor y = Tensor::empty(in[0].shape(), kFloat64);
        for (int64_t i = 0; i < y.numel(); ++i) y.data<double>()[i] = in[0].data<double>()[i] * in[0].data<double>()[i];
        return record("bad_square", y, {in[0]}, [x = in[0]](const std::vector<Tensor>& g) {
          return std::vector<Tensor>{mul(g[0], x)};
        });
      },
      {x});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.message, Catch::Contains("analytical"));
}
