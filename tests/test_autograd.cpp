// The autograd engine: deep graphs, accumulation, detach/no-grad, multi-output nodes,
// retain_graph, and that graphs are freed (no memory growth across training iterations).
#include <cmath>
#include <fstream>
#include <memory>
#include <unistd.h>

#include "test_util.hpp"

using namespace attn;
using VD = std::vector<double>;

#if defined(__SANITIZE_ADDRESS__)
#define ATTN_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTN_TEST_ASAN 1
#endif
#endif

namespace {
// Resident set size of this process in bytes, from /proc/self/statm (0 where unavailable).
size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return 0;
  return resident * size_t(sysconf(_SC_PAGESIZE));
}
}  // namespace

TEST_CASE("autograd: a chain of 100,000 ops backpropagates without stack overflow", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{1.0, 2.0}).requires_grad_();
  Tensor y = x;
  const int n = 100000;
  for (int i = 0; i < n; ++i) y = mul(y, 1.00001);
  std::weak_ptr<Node> root = y.grad_fn();
  sum(y).backward();
  const double expect = std::pow(1.00001, n);
  CHECK(x.grad().to_vector<double>()[0] == Approx(expect).epsilon(1e-9));
  CHECK(x.grad().to_vector<double>()[1] == Approx(expect).epsilon(1e-9));
  y = Tensor();
  CHECK(root.expired());  // the whole chain is gone once the last handle is dropped
}

TEST_CASE("autograd: a 100,000-op chain that is never backpropagated is destroyed safely", "[autograd]") {
  // Dropping an unused deep graph must not recurse once per node either.
  Tensor x = Tensor::from_vector(VD{1.0}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 1.0);
  std::weak_ptr<Node> root = y.grad_fn();
  CHECK(y.item<double>() == 100001.0);
  y = Tensor();
  CHECK(root.expired());
}

TEST_CASE("autograd: a 100,000-op chain kept with retain_graph is destroyed safely", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{1.0}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 1.0);
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  CHECK(x.grad().item<double>() == 2.0);
}

TEST_CASE("autograd: gradients accumulate across backward calls, zero_grad clears", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{1.0, -2.0, 3.0}).requires_grad_();
  sum(x * x).backward();
  CHECK(x.grad().to_vector<double>() == VD{2, -4, 6});
  sum(x * 3.0).backward();
  CHECK(x.grad().to_vector<double>() == VD{5, -1, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  sum(x).backward();
  CHECK(x.grad().to_vector<double>() == VD{1, 1, 1});
  // The gradient buffer is the leaf's own: not shared with a tensor the user holds.
  Tensor g = Tensor::from_vector(VD{1, 1, 1});
  x.zero_grad();
  (x * 1.0).backward(g);
  CHECK(x.grad().raw_data() != g.raw_data());
  sum(x).backward();
  CHECK(g.to_vector<double>() == VD{1, 1, 1});
}

TEST_CASE("autograd: backward on a leaf and with an explicit gradient", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{1.0, 2.0}).requires_grad_();
  x.backward(Tensor::from_vector(VD{3.0, 4.0}));
  CHECK(x.grad().to_vector<double>() == VD{3, 4});
  x.zero_grad();
  Tensor y = x * x;  // non-scalar with a given gradient
  y.backward(Tensor::from_vector(VD{1.0, 0.5}));
  CHECK(x.grad().to_vector<double>() == VD{2, 2});
}

TEST_CASE("autograd: detach stops gradients", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{2.0}).requires_grad_();
  Tensor y = x * x;
  Tensor z = y.detach() * x + y;  // d/dx = y + 2x = 4 + 4
  z.backward();
  CHECK(x.grad().item<double>() == 8.0);
  CHECK_FALSE(y.detach().requires_grad());
  CHECK(y.detach().is_leaf());
}

TEST_CASE("autograd: NoGradGuard records nothing", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{2.0, 3.0}).requires_grad_();
  Tensor y;
  {
    NoGradGuard ng;
    CHECK_FALSE(is_grad_enabled());
    y = tanh(matmul(reshape(x, {1, 2}), reshape(x, {2, 1}))) + 1.0;
    {
      NoGradGuard nested;
    }
    CHECK_FALSE(is_grad_enabled());  // nested guards restore the outer state
  }
  CHECK(is_grad_enabled());
  CHECK_FALSE(y.grad_fn());
  CHECK_FALSE(y.requires_grad());
  CHECK_THROWS_AS(y.sum().backward(), std::invalid_argument);  // nothing to differentiate
  // Ops on tensors that do not require grad record nothing either.
  Tensor a = Tensor::ones({2});
  CHECK_FALSE((a * 2.0).grad_fn());
}

TEST_CASE("autograd: backward on a non-scalar needs a gradient", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{1.0, 2.0}).requires_grad_();
  Tensor y = x * 2.0;
  REQUIRE_THROWS_AS(y.backward(), std::invalid_argument);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("scalar") && Catch::Contains("[2]"));
  REQUIRE_THROWS_WITH(y.backward(Tensor::ones({3}, kFloat64)),
                      Catch::Contains("backward") && Catch::Contains("[3]") && Catch::Contains("[2]"));
}

TEST_CASE("autograd: a tensor used twice gets the summed gradient", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{3.0}).requires_grad_();
  (x * x).backward();
  CHECK(x.grad().item<double>() == 6.0);
  x.zero_grad();
  (x + x).backward();
  CHECK(x.grad().item<double>() == 2.0);
  x.zero_grad();
  // Diamond: h feeds two branches that meet again; h's node must run once, after both.
  Tensor h = x * 2.0;                // 6
  Tensor z = sin(h) * h + exp(h * 0.1);  // dz/dx = 2 (cos(h) h + sin(h) + 0.1 exp(0.1 h))
  z.backward();
  const double hv = 6.0;
  CHECK(x.grad().item<double>() == Approx(2 * (std::cos(hv) * hv + std::sin(hv) + 0.1 * std::exp(0.1 * hv))));
}

TEST_CASE("autograd: multi-output node with an unused output", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{1, 5, 2, 7, 3, 0}, {2, 3}).requires_grad_();
  auto [values, indices] = max(x, 1);
  CHECK(indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  CHECK(indices.dtype() == kInt64);
  sum(values * 2.0).backward();  // indices never used
  CHECK(x.grad().to_vector<double>() == VD{0, 2, 0, 2, 0, 0});
}

TEST_CASE("autograd: backward twice needs retain_graph", "[autograd]") {
  Tensor x = Tensor::from_vector(VD{2.0}).requires_grad_();
  Tensor y = exp(x * x);
  y.backward({}, /*retain_graph=*/true);
  const double g1 = x.grad().item<double>();
  y.backward({}, true);
  CHECK(x.grad().item<double>() == Approx(2 * g1));
  y.backward();  // frees the graph
  CHECK(x.grad().item<double>() == Approx(3 * g1));
  try {
    y.backward();
    FAIL("second backward through a freed graph did not throw");
  } catch (const std::exception& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("retain_graph"));
  }
}

TEST_CASE("autograd: requires_grad_ rules and gradient dtype", "[autograd]") {
  Tensor i = Tensor::from_vector(std::vector<int64_t>{1, 2});
  CHECK_THROWS_AS(i.requires_grad_(), std::invalid_argument);
  Tensor x = Tensor::ones({2}).requires_grad_();
  Tensor y = x * 2.0;
  CHECK_FALSE(y.is_leaf());
  CHECK_THROWS_AS(y.requires_grad_(), std::invalid_argument);
  // A float32 leaf used in a float64 computation gets a float32 gradient.
  Tensor z = sum(x.to(kFloat64) * 3.0);
  z.backward();
  CHECK(x.grad().dtype() == kFloat32);
  CHECK(x.grad().to_vector() == std::vector<float>{3.f, 3.f});
}

TEST_CASE("autograd: graph is freed after backward, memory does not grow over training", "[autograd][memory]") {
  manual_seed(3);
  nn::Linear l1(16, 32), l2(32, 1);
  Tensor X = Tensor::randn({64, 16}), Y = Tensor::randn({64, 1});
  std::vector<Tensor> params = l1.parameters();
  for (auto& p : l2.parameters()) params.push_back(p);
  optim::SGD opt(params, optim::SGDOptions(0.01));

  std::weak_ptr<Node> first_root, first_hidden;
  auto iteration = [&](int it) {
    opt.zero_grad();
    Tensor h = tanh(l1.forward(X));
    Tensor loss = mse_loss(l2.forward(h), Y);
    if (it == 0) {
      first_root = loss.grad_fn();
      first_hidden = h.grad_fn();
    }
    loss.backward();
    opt.step();
    return loss.item<double>();
  };
  const double loss0 = iteration(0);
  // The handles are gone and backward cleared the edges: every node of the graph is freed.
  CHECK(first_root.expired());
  CHECK(first_hidden.expired());
  for (int it = 1; it < 20; ++it) iteration(it);  // warm-up: allocator pools settle
  const size_t rss_before = rss_bytes();
  double loss = 0;
  for (int it = 20; it < 220; ++it) loss = iteration(it);
  const size_t rss_after = rss_bytes();
  CHECK(loss < loss0);
  INFO("RSS before " << rss_before << " after " << rss_after);
#ifndef ATTN_TEST_ASAN
  // < 2 MiB growth over 200 iterations (ASan's quarantine holds freed memory, so not there;
  // the node-lifetime checks above still run).
  if (rss_before > 0) CHECK(rss_after <= rss_before + (2u << 20));
#endif

  // Nodes also die when a graph is dropped without backward.
  std::weak_ptr<Node> dropped;
  {
    Tensor loss2 = mse_loss(l2.forward(tanh(l1.forward(X))), Y);
    dropped = loss2.grad_fn();
    CHECK_FALSE(dropped.expired());
  }
  CHECK(dropped.expired());
}

TEST_CASE("autograd: saved tensors do not keep outputs alive (no cycles)", "[autograd][memory]") {
  Tensor x = Tensor::randn({4, 4}, kFloat64).requires_grad_();
  std::weak_ptr<TensorImpl> out_impl;
  std::weak_ptr<Node> node;
  {
    // Ops whose backward needs their output (exp, tanh, sigmoid, softmax, sqrt, div).
    Tensor y = softmax(sigmoid(tanh(exp(x))), -1) / sqrt(exp(x));
    out_impl = y.impl_ptr();
    node = y.grad_fn();
  }
  CHECK(out_impl.expired());
  CHECK(node.expired());
}

TEST_CASE("autograd: multi-output nodes do not keep themselves alive", "[autograd][memory]") {
  // max/min capture their indices output for backward; the capture must not be a cycle.
  Tensor x = Tensor::randn({3, 4}, kFloat64).requires_grad_();
  std::weak_ptr<Node> node;
  std::weak_ptr<TensorImpl> idx_impl;
  {
    auto [v, i] = max(x, 1);
    node = v.grad_fn();
    idx_impl = i.impl_ptr();
    CHECK_FALSE(node.expired());
  }
  CHECK(node.expired());
  CHECK(idx_impl.expired());
  {
    auto [v, i] = min(x, 0, true);
    node = v.grad_fn();
    sum(v).backward({}, /*retain_graph=*/true);
  }
  CHECK(node.expired());
}

// ---- version counter: in-place writes to tensors a backward needs (docs/reliability.md) ----
// PyTorch raises "one of the variables needed for gradient computation has been modified by an
// inplace operation"; without the check these backward passes return wrong gradients silently.

TEST_CASE("autograd: an input overwritten after the forward makes backward throw, naming the op", "[autograd][version]") {
  Tensor w = Tensor::from_vector(std::vector<float>{1, 1, 1}).requires_grad_();
  Tensor x = Tensor::from_vector(std::vector<float>{2, 3, 4});
  Tensor loss = sum(mul(w, x));
  {
    NoGradGuard ng;
    x.copy_(Tensor::full({3}, 100.0));  // dL/dw would silently become [100, 100, 100]
  }
  CHECK_THROWS_WITH(loss.backward(), Catch::Contains("backward of mul") &&
                                         Catch::Contains("modified by an inplace operation") &&
                                         Catch::Contains("float32 [3]") && Catch::Contains("is at version 1") &&
                                         Catch::Contains("expected version 0"));
  CHECK_FALSE(w.grad().defined());
}

TEST_CASE("autograd: a parameter changed under NoGradGuard or by an optimizer step makes backward throw",
          "[autograd][version]") {
  manual_seed(1);
  nn::Linear fc(3, 2);
  Tensor x = Tensor::randn({4, 3});
  SECTION("copy_ under NoGradGuard") {
    Tensor loss = sum(fc.forward(x));
    {
      NoGradGuard ng;
      fc.weight.copy_(Tensor::zeros({2, 3}));
    }
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("backward of linear") && Catch::Contains("float32 [2, 3]"));
  }
  SECTION("an optimizer step between two backward passes of one graph") {
    optim::SGD opt(fc.parameters(), optim::SGDOptions(0.1));
    Tensor loss = sum(fc.forward(x));
    loss.backward({}, /*retain_graph=*/true);
    opt.step();
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("backward of linear") &&
                                           Catch::Contains("modified by an inplace operation"));
  }
}

TEST_CASE("autograd: an overwritten activation output makes backward throw, also through a view", "[autograd][version]") {
  Tensor x = Tensor::from_vector(std::vector<double>{0.1, 0.2, 0.3, 0.4}).requires_grad_();
  SECTION("tanh saves its output; fill_ on it") {
    Tensor y = tanh(x);
    Tensor loss = sum(y);
    y.fill_(0.0);
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("backward of tanh"));
  }
  SECTION("exp's output written through a reshape view (shared storage, shared counter)") {
    Tensor y = exp(x);
    Tensor loss = sum(y);
    Tensor v = y.reshape({2, 2});
    v.set({1, 1}, 5.0);
    CHECK(y._version() == 1);
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("backward of exp") && Catch::Contains("float64 [4]"));
  }
  SECTION("softmax output") {
    Tensor y = softmax(x, 0);
    Tensor loss = sum(mul(y, 3.0));
    {
      NoGradGuard ng;
      y.copy_(Tensor::zeros({4}, kFloat64));
    }
    CHECK_THROWS_WITH(loss.backward(), Catch::Contains("backward of softmax"));
  }
}

TEST_CASE("autograd: in-place writes to tensors a backward does not read are allowed (as in PyTorch)", "[autograd][version]") {
  Tensor w = Tensor::from_vector(std::vector<double>{1, 2, 3}).requires_grad_();
  Tensor x = Tensor::from_vector(std::vector<double>{4, 5, 6});
  // add, mul by a scalar, reshape and sum read no saved tensor: overwriting x, w or y is harmless.
  Tensor y = add(w, x);
  Tensor loss = sum(mul(y.reshape({3, 1}), 2.0));
  {
    NoGradGuard ng;
    x.fill_(-1.0);
    w.fill_(7.0);
    y.fill_(9.0);
  }
  loss.backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
}

TEST_CASE("autograd: _version counts in-place writes per storage", "[autograd][version]") {
  Tensor t = Tensor::zeros({2, 2});
  CHECK(t._version() == 0);
  t.fill_(1.0);
  t.copy_(Tensor::ones({2, 2}));
  t.set({0, 0}, 3.0);
  CHECK(t._version() == 3);
  CHECK(t.reshape({4})._version() == 3);  // views share the counter
  CHECK(t.detach()._version() == 3);
  CHECK(t.clone()._version() == 0);       // a copy starts its own
  Tensor p = Tensor::ones({3}).requires_grad_();
  sum(mul(p, p)).backward();
  optim::Adam opt({p}, optim::AdamOptions(0.1));
  opt.step();
  CHECK(p._version() == 1);
}

// ---- zero-size tensors: no memcpy of a null buffer (UBSan under `make asan`) ----
TEST_CASE("autograd: backward through zero-size tensors, clone and copy_ of empty tensors", "[autograd][empty]") {
  Tensor x = Tensor::zeros({0, 3}, kFloat64).requires_grad_();
  Tensor y = mul(x, 2.0);
  y.backward(Tensor::zeros({0, 3}, kFloat64));  // the seed is copied: memcpy(null, null, 0) before
  REQUIRE(x.grad().defined());
  CHECK(x.grad().shape() == Shape({0, 3}));
  Tensor c = Tensor::zeros({0}).clone();
  CHECK(c.numel() == 0);
  c.copy_(Tensor::zeros({0}));
  Tensor s = sum(add(x, x));  // one tensor used twice: the second gradient is accumulated
  s.backward();
  CHECK(x.grad().shape() == Shape({0, 3}));
}

TEST_CASE("autograd: a backward interrupted by an error leaves no stale dependency counts", "[autograd][engine]") {
  // s is shared by two graphs; the first backward throws (b was overwritten) after counting s's
  // dependencies; the second, over s again, must still reach s and its leaves.
  Tensor a = Tensor::full({2}, 1.5).requires_grad_(), c = Tensor::full({2}, 0.5).requires_grad_();
  Tensor b = Tensor::full({2}, 3.0).requires_grad_();
  Tensor s = add(a, c);
  Tensor loss1 = sum(mul(s, b));
  {
    NoGradGuard ng;
    b.fill_(4.0);
  }
  CHECK_THROWS(loss1.backward(Tensor(), true));
  Tensor loss2 = sum(mul(s, 3.0));
  loss2.backward();
  REQUIRE(a.grad().defined());
  CHECK(a.grad().to_vector<float>() == std::vector<float>{3.0f, 3.0f});
  CHECK(c.grad().to_vector<float>() == std::vector<float>{3.0f, 3.0f});
}
