// nn::Module registry and the basic layers: Linear, LayerNorm, Dropout, Embedding, Sequential.
#include <cmath>
#include <memory>
#include <set>

#include "test_util.hpp"

using namespace attn;

namespace {
struct Block : nn::Module {
  nn::Linear proj{4, 4};
  nn::LayerNorm norm{4};
  nn::Dropout drop{0.5};
  Block() {
    register_module("proj", proj);
    register_module("norm", norm);
    register_module("drop", drop);
  }
  Tensor forward(const Tensor& x) const { return drop.forward(norm.forward(relu(proj.forward(x)))); }
};

struct Net : nn::Module {
  nn::Linear fc1{3, 4};
  Block block;
  nn::Sequential head;
  Net() {
    register_module("fc1", fc1);
    register_module("block", block);
    head.push_back(std::make_shared<nn::Linear>(4, 2));
    head.push_back([](const Tensor& x) { return tanh(x); });
    head.push_back(std::make_shared<nn::Linear>(2, 1, /*bias=*/false));
    register_module("head", head);
  }
  Tensor forward(const Tensor& x) const { return head.forward(block.forward(fc1.forward(x))); }
};

std::vector<std::string> names(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}
}  // namespace

TEST_CASE("module: named_parameters with dotted names and Sequential indices", "[nn]") {
  Net net;
  const std::vector<std::string> expected = {"fc1.weight",        "fc1.bias",        "block.proj.weight",
                                             "block.proj.bias",   "block.norm.weight", "block.norm.bias",
                                             "head.0.weight",     "head.0.bias",     "head.2.weight"};
  CHECK(names(net) == expected);
  CHECK(net.parameters().size() == expected.size());
  CHECK(net.num_parameters() == 3 * 4 + 4 + 16 + 4 + 4 + 4 + 8 + 2 + 2);
  CHECK(net.named_parameters(/*recurse=*/false).empty());
  CHECK(names(net.block) == std::vector<std::string>{"proj.weight", "proj.bias", "norm.weight", "norm.bias"});
  auto children = net.named_children();
  REQUIRE(children.size() == 3);
  CHECK(children[0].first == "fc1");
  CHECK(children[2].first == "head");
  for (auto& p : net.parameters()) CHECK(p.requires_grad());
  // parameters() are handles to the modules' own tensors
  CHECK(net.parameters()[0].is_same(net.fc1.weight));
  CHECK(net.head.size() == 3);
}

TEST_CASE("module: train/eval propagates, zero_grad, to(kFloat64)", "[nn]") {
  Net net;
  CHECK(net.is_training());
  net.eval();
  CHECK_FALSE(net.is_training());
  CHECK_FALSE(net.block.is_training());
  CHECK_FALSE(net.block.drop.is_training());
  net.train();
  CHECK(net.block.drop.is_training());
  net.train(false);
  CHECK_FALSE(net.fc1.is_training());

  manual_seed(1);
  Tensor x = Tensor::randn({5, 3});
  net.eval();
  sum(net.forward(x)).backward();
  for (auto& p : net.parameters()) CHECK(p.grad().defined());
  net.zero_grad();
  for (auto& p : net.parameters()) CHECK_FALSE(p.grad().defined());

  // Handles held elsewhere (an optimizer) see the converted tensors.
  std::vector<Tensor> held = net.parameters();
  const auto w32 = net.fc1.weight.to_vector<double>();
  net.to(kFloat64);
  for (auto& p : net.parameters()) {
    CHECK(p.dtype() == kFloat64);
    CHECK(p.requires_grad());
  }
  CHECK(held[0].dtype() == kFloat64);
  CHECK(net.fc1.weight.to_vector<double>() == w32);
  Tensor y = net.forward(x.to(kFloat64));
  CHECK(y.dtype() == kFloat64);
  CHECK(y.shape() == Shape{5, 1});
  sum(y).backward();
  CHECK(net.fc1.weight.grad().dtype() == kFloat64);
  net.to(kFloat32);
  CHECK(net.fc1.weight.dtype() == kFloat32);
}

TEST_CASE("Linear: shapes, PyTorch's default init bounds, forward", "[nn]") {
  manual_seed(7);
  nn::Linear lin(50, 30);
  CHECK(lin.weight.shape() == Shape{30, 50});
  CHECK(lin.bias.shape() == Shape{30});
  CHECK(lin.in_features() == 50);
  CHECK(lin.out_features() == 30);
  const double bound = 1.0 / std::sqrt(50.0);
  double wmin = 1, wmax = -1;
  for (double w : lin.weight.to_vector<double>()) {
    wmin = std::min(wmin, w);
    wmax = std::max(wmax, w);
  }
  CHECK(wmin >= -bound);
  CHECK(wmax <= bound);
  CHECK(wmin < -0.9 * bound);  // fills the range (1500 draws)
  CHECK(wmax > 0.9 * bound);
  for (double b : lin.bias.to_vector<double>()) CHECK(std::abs(b) <= bound);
  nn::Linear nobias(4, 3, false);
  CHECK_FALSE(nobias.bias.defined());
  CHECK(names(nobias) == std::vector<std::string>{"weight"});
  Tensor x = Tensor::randn({2, 7, 50});
  Tensor y = lin.forward(x);
  CHECK(y.shape() == Shape{2, 7, 30});
  // y = x W^T + b, checked on one element
  double ref = lin.bias.at({4});
  for (int64_t k = 0; k < 50; ++k) ref += x.at({1, 3, k}) * lin.weight.at({4, k});
  CHECK(y.at({1, 3, 4}) == Approx(ref).epsilon(1e-5));
  // Same seed, same init.
  manual_seed(7);
  nn::Linear again(50, 30);
  CHECK(again.weight.to_vector() == lin.weight.to_vector());
}

TEST_CASE("LayerNorm: normalises the last dims, affine parameters", "[nn]") {
  nn::LayerNorm ln(6);
  CHECK(names(ln) == std::vector<std::string>{"weight", "bias"});
  CHECK(ln.weight.to_vector() == std::vector<float>(6, 1.f));
  CHECK(ln.bias.to_vector() == std::vector<float>(6, 0.f));
  manual_seed(3);
  Tensor x = Tensor::randn({4, 6}, kFloat64) * 3.0 + 2.0;
  ln.to(kFloat64);
  Tensor y = ln.forward(x);
  for (int64_t r = 0; r < 4; ++r) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < 6; ++j) m += y.at({r, j});
    m /= 6;
    for (int64_t j = 0; j < 6; ++j) v += (y.at({r, j}) - m) * (y.at({r, j}) - m);
    v /= 6;
    CHECK(std::abs(m) < 1e-12);
    CHECK(v == Approx(1.0).epsilon(1e-4));  // eps 1e-5 in the denominator
  }
  nn::LayerNorm ln2(Shape{2, 3}, 1e-5, /*elementwise_affine=*/false);
  CHECK(ln2.parameters().empty());
  CHECK(ln2.forward(Tensor::randn({5, 2, 3})).shape() == Shape{5, 2, 3});
}

TEST_CASE("Dropout: train vs eval, scaling, p = 0 and p = 1", "[nn]") {
  manual_seed(11);
  Tensor x = Tensor::ones({20000});
  nn::Dropout d(0.25);
  Tensor y = d.forward(x);
  int64_t zeros = 0;
  for (float v : y.to_vector()) {
    if (v == 0.f) ++zeros;
    else CHECK(v == Approx(1.0 / 0.75));  // kept values are scaled by 1 / (1 - p)
  }
  CHECK(double(zeros) / 20000.0 == Approx(0.25).margin(0.02));
  d.eval();
  CHECK(d.forward(x).to_vector() == x.to_vector());
  nn::Dropout d0(0.0);
  CHECK(d0.forward(x).to_vector() == x.to_vector());
  nn::Dropout d1(1.0);
  CHECK(d1.forward(x).to_vector() == std::vector<float>(20000, 0.f));
  // Gradient flows through the same mask.
  Tensor w = Tensor::ones({1000}, kFloat64).requires_grad_();
  manual_seed(12);
  Tensor out = dropout(w, 0.5, true);
  sum(out).backward();
  CHECK(w.grad().to_vector<double>() == out.detach().to_vector<double>());
  // p = 1: zero gradient, never NaN
  Tensor w1 = Tensor::ones({3}, kFloat64).requires_grad_();
  sum(dropout(w1, 1.0, true)).backward();
  CHECK(w1.grad().to_vector<double>() == std::vector<double>{0, 0, 0});
}

TEST_CASE("Embedding: lookup rows, shapes, gradient accumulates on repeated indices", "[nn]") {
  manual_seed(4);
  nn::Embedding emb(10, 3);
  CHECK(emb.weight.shape() == Shape{10, 3});
  CHECK(names(emb) == std::vector<std::string>{"weight"});
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{1, 9, 1, 0}, {2, 2});
  Tensor y = emb.forward(idx);
  CHECK(y.shape() == Shape{2, 2, 3});
  for (int64_t k = 0; k < 3; ++k) {
    CHECK(y.at({0, 1, k}) == emb.weight.at({9, k}));
    CHECK(y.at({1, 0, k}) == emb.weight.at({1, k}));
  }
  sum(y).backward();
  CHECK(emb.weight.grad().at({1, 0}) == 2.0);
  CHECK(emb.weight.grad().at({9, 2}) == 1.0);
  CHECK(emb.weight.grad().at({5, 1}) == 0.0);
}

TEST_CASE("training: a small MLP fits sin(x) with Adam", "[nn][train]") {
  manual_seed(21);
  nn::Sequential model;
  model.push_back(std::make_shared<nn::Linear>(1, 32));
  model.push_back([](const Tensor& x) { return tanh(x); });
  model.push_back(std::make_shared<nn::Linear>(32, 1));
  Tensor X = Tensor::arange(-3.0, 3.0, 0.1).reshape({-1, 1});
  Tensor Y = sin(X);
  optim::Adam opt(model.parameters(), optim::AdamOptions(0.01));
  double first = 0, last = 0;
  for (int it = 0; it < 400; ++it) {
    opt.zero_grad();
    Tensor loss = mse_loss(model.forward(X), Y);
    if (it == 0) first = loss.item<double>();
    loss.backward();
    opt.step();
    last = loss.item<double>();
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < first / 20);
  CHECK(last < 0.01);
}

// More parameters than the kept W^T entries (8 per thread), used round-robin, of growing and
// shrinking sizes: every call evicts an entry and reuses or replaces its buffer; results stay right.
TEST_CASE("Linear: more weights than kept transposes, round-robin, stay exact", "[nn]") {
  manual_seed(4);
  std::vector<std::unique_ptr<nn::Linear>> layers;
  for (int i = 0; i < 11; ++i)
    layers.push_back(std::make_unique<nn::Linear>(int64_t(20 + 7 * (i % 4)), int64_t(16 + 9 * ((i * 5) % 7))));
  for (int round = 0; round < 3; ++round)
    for (auto& layer : layers)
      for (int64_t rows : {int64_t(3), int64_t(97)}) {
        nn::Linear& lin = *layer;
        const Tensor x = Tensor::randn({rows, lin.weight.size(1)});
        NoGradGuard ng;
        const Tensor ref = linear(x, lin.weight.detach().clone(), lin.bias.detach().clone());
        INFO("round " << round << ", weight " << to_string(lin.weight.shape()) << ", rows " << rows);
        CHECK(check_close(lin.forward(x), ref, 1e-5, 1e-5));
      }
}

// A few rows (or a step's batch) times a parameter run through a kept copy of W^T (ops/matmul.hpp,
// transposed_parameter): the results must follow every in-place write to W through the API.
TEST_CASE("Linear: small batches through the kept W^T follow in-place updates of the weight", "[nn]") {
  manual_seed(3);
  for (DType dt : {kFloat32, kFloat64}) {
    nn::Linear lin(51, 204);
    lin.to(dt);
    const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
    const Tensor x = Tensor::randn({3, 51}, dt);
    // Reference: the same product with a plain copy of the weight (not a parameter: dot products).
    auto reference = [&] { return linear(x, lin.weight.detach().clone(), lin.bias.detach().clone()); };
    auto forward = [&] {
      NoGradGuard ng;
      return lin.forward(x);
    };
    CHECK(check_close(forward(), reference(), tol, tol, "fresh weight"));
    CHECK(check_close(forward(), reference(), tol, tol, "second call (kept W^T)"));
    // A step's batch (more rows than the dot-product path takes): the packed path reads the kept
    // W^T in place, the arithmetic of packing W itself, so the bits are the plain weight's.
    {
      const Tensor xb = Tensor::randn({97, 51}, dt);
      NoGradGuard ng;
      for (const char* call : {"97 rows, first call", "97 rows, kept W^T"})
        CHECK(check_close(lin.forward(xb), linear(xb, lin.weight.detach().clone(), lin.bias.detach().clone()), 0, 0,
                          call));
    }
    const Tensor before = forward();
    // An optimizer step.
    optim::SGD opt(lin.parameters(), optim::SGDOptions(0.5));
    sum(mul(lin.forward(x), lin.forward(x))).backward();
    opt.step();
    const Tensor after_step = forward();
    CHECK_FALSE(check_close(after_step, before, tol, tol));
    CHECK(check_close(after_step, reference(), tol, tol, "after an SGD step"));
    // copy_ and fill_ under NoGradGuard.
    {
      NoGradGuard ng;
      lin.weight.copy_(Tensor::randn({204, 51}, dt));
    }
    CHECK(check_close(forward(), reference(), tol, tol, "after copy_"));
    {
      NoGradGuard ng;
      lin.weight.fill_(0.25);
    }
    CHECK(check_close(forward(), reference(), tol, tol, "after fill_"));
    // A new parameter (possibly at the address of a freed one) never sees an old W^T.
    for (int i = 0; i < 3; ++i) {
      nn::Linear other(51, 204);
      other.to(dt);
      NoGradGuard ng;
      CHECK(check_close(other.forward(x), linear(x, other.weight.detach().clone(), other.bias.detach().clone()), tol,
                        tol, "new layer"));
    }
  }
}
