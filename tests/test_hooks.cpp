// Gradient-ready hooks of the autograd engine: Tensor::register_post_accumulate_grad_hook and
// autograd::queue_callback (what DistributedDataParallel starts its bucket allreduces from).
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace attn;
using VD = std::vector<double>;

TEST_CASE("hooks: a leaf's hook runs once per backward, after all its gradients are summed", "[hooks]") {
  Tensor w = Tensor::from_vector(VD{1.0, 2.0}).requires_grad_();
  Tensor x = Tensor::from_vector(VD{3.0, 5.0});
  std::vector<VD> seen;
  w.register_post_accumulate_grad_hook([&](Tensor& t) { seen.push_back(t.grad().to_vector<double>()); });
  // w reaches the loss through three edges: d/dw sum(w*x + w*w + 2w) = x + 2w + 2.
  Tensor loss = sum(add(add(mul(w, x), mul(w, w)), mul(w, 2.0)));
  loss.backward();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == VD{3.0 + 2.0 + 2.0, 5.0 + 4.0 + 2.0});
  // A second backward accumulates into grad(); the hook sees the sum and runs once more.
  sum(mul(w, x)).backward();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1] == VD{7.0 + 3.0, 11.0 + 5.0});
}

TEST_CASE("hooks: they run during backward, the last layer's first", "[hooks]") {
  // loss = sum(tanh(x w1) w2): w2's gradient is complete before the backward reaches w1.
  Tensor x = Tensor::from_vector(VD{0.5, -1.0, 2.0, 0.25}, {2, 2});
  Tensor w1 = Tensor::from_vector(VD{0.1, 0.2, 0.3, 0.4}, {2, 2}).requires_grad_();
  Tensor w2 = Tensor::from_vector(VD{1.0, -1.0}, {2, 1}).requires_grad_();
  std::vector<std::string> events;
  w1.register_post_accumulate_grad_hook([&](Tensor&) { events.push_back("w1"); });
  w2.register_post_accumulate_grad_hook([&](Tensor& t) {
    events.push_back(w1.grad().defined() ? "w2 after w1" : "w2");
    CHECK(t.grad().defined());
    autograd::queue_callback([&] { events.push_back("end"); });
  });
  sum(matmul(tanh(matmul(x, w1)), w2)).backward();
  CHECK(events == std::vector<std::string>{"w2", "w1", "end"});
}

TEST_CASE("hooks: no call for a leaf without a gradient in the pass; removal; backward on a leaf", "[hooks]") {
  Tensor a = Tensor::from_vector(VD{1.0, 2.0}).requires_grad_();
  Tensor unused = Tensor::from_vector(VD{1.0}).requires_grad_();
  int a_calls = 0, unused_calls = 0;
  const unsigned h = a.register_post_accumulate_grad_hook([&](Tensor&) { ++a_calls; });
  unused.register_post_accumulate_grad_hook([&](Tensor&) { ++unused_calls; });
  sum(mul(a, a)).backward();
  CHECK(a_calls == 1);
  CHECK(unused_calls == 0);
  // Used only through detach(): not in the graph.
  Tensor b = Tensor::from_vector(VD{4.0, 1.0}).requires_grad_();
  int b_calls = 0;
  b.register_post_accumulate_grad_hook([&](Tensor&) { ++b_calls; });
  sum(mul(a, b.detach())).backward();
  CHECK(b_calls == 0);
  CHECK(a_calls == 2);
  a.remove_post_accumulate_grad_hook(h);
  sum(a).backward();
  CHECK(a_calls == 2);
  CHECK_THROWS_AS(a.remove_post_accumulate_grad_hook(h), std::invalid_argument);
  // backward() called on the leaf itself accumulates the seed and runs the hook.
  int leaf_calls = 0;
  unused.register_post_accumulate_grad_hook([&](Tensor&) { ++leaf_calls; });
  unused.backward(Tensor::from_vector(VD{2.0}));
  CHECK(leaf_calls == 1);
  CHECK(unused_calls == 1);
}

TEST_CASE("hooks: bad calls throw std::invalid_argument naming the operation", "[hooks]") {
  Tensor a = Tensor::from_vector(VD{1.0}).requires_grad_();
  Tensor plain = Tensor::from_vector(VD{1.0});
  Tensor non_leaf = mul(a, 2.0);
  auto noop = [](Tensor&) {};
  CHECK_THROWS_WITH(plain.register_post_accumulate_grad_hook(noop),
                    Catch::Contains("register_post_accumulate_grad_hook") && Catch::Contains("without requires_grad"));
  CHECK_THROWS_WITH(non_leaf.register_post_accumulate_grad_hook(noop), Catch::Contains("not a leaf"));
  CHECK_THROWS_AS(a.register_post_accumulate_grad_hook(nullptr), std::invalid_argument);
  CHECK_THROWS_WITH(autograd::queue_callback([] {}), Catch::Contains("queue_callback: no backward pass"));
  // A callback queued in a pass that throws does not leak into the next pass.
  int ran = 0;
  a.register_post_accumulate_grad_hook([&](Tensor&) {
    autograd::queue_callback([&] { ++ran; });
    throw std::runtime_error("hook failed");
  });
  CHECK_THROWS_WITH(sum(mul(a, 3.0)).backward(), "hook failed");
  CHECK(ran == 0);
  CHECK_THROWS_WITH(autograd::queue_callback([] {}), Catch::Contains("no backward pass"));
}
