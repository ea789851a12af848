// Finite-difference gradient checks (attn::testing::gradcheck, double precision, central
// differences, PyTorch's default tolerances) for every case of the op table (tests/op_table.inc)
// flagged kFD, at the golden inputs of tests/fixtures/core_ops.safetensors, plus a few composed
// expressions and dropout, and a check that a wrong backward is caught.
#include <functional>

#include "op_table.hpp"
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

}  // namespace

TEST_CASE("gradcheck: every differentiable case of the op table, at its golden inputs", "[gradcheck]") {
  // The inputs PyTorch's goldens were made from (float64; masks and indices stay constant), so
  // each table entry is checked against finite differences and against PyTorch on the same point.
  const io::SafetensorsFile fx = load_fixture("core_ops.safetensors");
  int count = 0;
  for (const op_table::Case& c : op_table::cases()) {
    if (!(c.flags & op_table::kFD)) continue;
    INFO("case " << c.name);
    In inputs;
    for (int i = 0; fx.contains(std::string(c.name) + ".in" + std::to_string(i)); ++i) {
      Tensor x = fx.at(std::string(c.name) + ".in" + std::to_string(i)).clone();
      if (fx.contains(std::string(c.name) + ".g" + std::to_string(i))) x.requires_grad_();
      inputs.push_back(x);
    }
    REQUIRE(!inputs.empty());
    const auto r = testing::gradcheck([&c](const In& in) { return c.fn(in)[0]; }, inputs);
    INFO(r.message);
    CHECK(r.ok);
    ++count;
  }
  CHECK(count >= 150);
}

TEST_CASE("gradcheck: operators, dropout", "[gradcheck]") {
  manual_seed(11);
  check("operators", {{{2, 3}, Pos}}, [](const In& in) { return (2.0 - in[0]) * 3.0 / 2.0 + 1.0 - 4.0 / in[0]; });
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
