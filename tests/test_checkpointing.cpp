// attn::checkpoint (activation recomputation, torch.utils.checkpoint): gradients equal the plain
// run bit for bit (dropout included: the generator state is replayed), peak memory of an attention
// stack drops, multiple outputs, parameters reached only inside fn, no-grad mode, gradcheck, errors.
#include <attn/nn/attention/transformer.hpp>
#include <memory>
#include "test_util.hpp"

using namespace attn;

namespace {
struct Stack {
  std::vector<std::shared_ptr<nn::TransformerEncoderLayer>> layers;
  Stack(int n, int64_t d, double dropout) {
    for (int i = 0; i < n; ++i)
      layers.push_back(std::make_shared<nn::TransformerEncoderLayer>(
          nn::TransformerEncoderLayerOptions(d, 4).dim_feedforward(2 * d).dropout(dropout)));
  }
  std::vector<Tensor> params() {
    std::vector<Tensor> ps;
    for (auto& l : layers)
      for (auto& p : l->parameters()) ps.push_back(p);
    return ps;
  }
  Tensor forward(Tensor x, bool ckpt) {
    for (auto& l : layers) {
      if (ckpt)
        x = checkpoint([l](const std::vector<Tensor>& in) { return l->forward(in[0]); }, {x});
      else
        x = l->forward(x);
    }
    return x;
  }
};

std::vector<float> grads_of(const std::vector<Tensor>& ts) {
  std::vector<float> all;
  for (const Tensor& t : ts) {
    auto g = t.grad().to_vector<float>();
    all.insert(all.end(), g.begin(), g.end());
  }
  return all;
}
}  // namespace

TEST_CASE("checkpoint: a transformer stack with dropout gives the plain run's gradients bit for bit",
          "[checkpoint]") {
  manual_seed(0);
  Stack s(3, 32, 0.1);
  Tensor x0 = Tensor::randn({2, 24, 32});
  auto run = [&](bool ckpt) {
    for (auto& l : s.layers) l->zero_grad();
    Tensor x = x0.clone().requires_grad_();
    manual_seed(77);
    Tensor y = s.forward(x, ckpt);
    sum(y * y).backward();
    std::vector<Tensor> ts = s.params();
    ts.push_back(x);
    auto g = grads_of(ts);
    auto out = y.to_vector<float>();
    g.insert(g.end(), out.begin(), out.end());
    return g;
  };
  const auto plain = run(false), ck = run(true);
  REQUIRE(plain.size() == ck.size());
  CHECK(plain == ck);
}

TEST_CASE("checkpoint: peak memory of an attention stack drops", "[checkpoint][memory]") {
  manual_seed(1);
  Stack s(4, 64, 0.0);
  Tensor x0 = Tensor::randn({1, 512, 64});
  auto peak = [&](bool ckpt) {
    for (auto& l : s.layers) l->zero_grad();
    Tensor x = x0.clone().requires_grad_();
    reset_peak_memory();
    const int64_t base = memory_stats().current_bytes;
    Tensor y = s.forward(x, ckpt);
    sum(y).backward();
    return memory_stats().peak_bytes - base;
  };
  peak(false);  // warm-up: parameter gradients exist from here on in both runs
  const int64_t plain = peak(false), ck = peak(true);
  INFO("peak forward+backward: plain " << plain << " bytes, checkpointed " << ck << " bytes");
  CHECK(ck < plain * 6 / 10);
}

TEST_CASE("checkpoint: several outputs, inputs without grad, parameters inside fn, no-grad mode", "[checkpoint]") {
  manual_seed(2);
  nn::Linear lin(3, 4);
  Tensor a0 = Tensor::randn({5, 3}), b0 = Tensor::randn({5, 4});
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor h = tanh(lin.forward(in[0]));
    return std::vector<Tensor>{h * in[1], sum(h, 0)};
  };
  auto run = [&](bool ckpt, bool b_grad) {
    lin.zero_grad();
    Tensor a = a0.clone(), b = b0.clone();  // a: data (no grad)
    if (b_grad) b.requires_grad_();
    auto ys = ckpt ? checkpoint(fn, {a, b}) : fn({a, b});
    add(sum(ys[0] * ys[0]), sum(ys[1])).backward();
    std::vector<Tensor> ts{lin.weight, lin.bias};
    if (b_grad) ts.push_back(b);
    return grads_of(ts);
  };
  for (bool b_grad : {true, false}) {
    INFO("b requires grad: " << b_grad);
    CHECK(run(false, b_grad) == run(true, b_grad));
  }
  NoGradGuard ng;
  auto ys = checkpoint(fn, {a0, b0});
  CHECK(!ys[0].requires_grad());
}

TEST_CASE("checkpoint: gradcheck through a recomputed function", "[checkpoint][gradcheck]") {
  Tensor x = Tensor::randn({3, 4}, kFloat64).requires_grad_(), w = Tensor::randn({4, 4}, kFloat64).requires_grad_();
  auto r = testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        return checkpoint([](const std::vector<Tensor>& z) { return softmax(matmul(tanh(z[0]), z[1]), -1); }, in);
      },
      {x, w});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("checkpoint: bad calls", "[checkpoint][errors]") {
  Tensor x = Tensor::randn({2}).requires_grad_();
  try {
    checkpoint(CheckpointFn(), {x});
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(e.what(), Catch::Contains("checkpoint") && Catch::Contains("empty"));
  }
  try {
    checkpoint([](const std::vector<Tensor>&) { return std::vector<Tensor>{Tensor()}; }, {x});
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(e.what(), Catch::Contains("checkpoint") && Catch::Contains("undefined"));
  }
}
