// Per-step loops written by the user, the same work bench/torch_cells.py times in PyTorch:
//   SineTrain/{f64,f32}:   PyTorch's time-sequence-prediction example (two stacked LSTMCells
//                          1 -> 51 -> 51, Linear(51, 1), 97 series x 999 steps), one full-batch
//                          Adam step (lr 0.01): zero_grad, forward, mse_loss, backward, step;
//   SineFreeRun/{f64,f32}: its prediction under NoGradGuard: 3 test series, 999 input steps, then
//                          1000 steps feeding each output back as the next input;
//   Seq2SeqDecoder:        the decoder loop of examples/seq2seq_forecast.cpp (batch 32, window 20,
//                          hidden 32, additive attention 32, horizon 10, teacher forcing),
//                          forward + backward from given encoder outputs and state (float32);
//   TinyChain:             1,000 ops (add, mul alternating) on 4-element float32 tensors, then
//                          backward; the counter per_op is the time per op.
// Side by side with PyTorch: /usr/bin/python3 bench/compare_cells.py --build build (docs/benchmarks.md).
#include <benchmark/benchmark.h>
#include "bench_context.hpp"
#include <attn/attn.hpp>

#include <cmath>

using namespace attn;

namespace {

constexpr int64_t kHidden = 51, kSeries = 100, kLength = 1000, kPeriod = 20;

// data[i, t] = sin((t + shift_i) / 20), shift_i = ((37 i) mod 160) - 80, as in torch_cells.py.
// Returns {train input [97, 999], train target [97, 999], test input [3, 999]}.
std::vector<Tensor> sine_data(DType dt) {
  const int64_t L = kLength - 1;
  std::vector<double> in, tgt, test;
  for (int64_t i = 0; i < kSeries; ++i) {
    const double shift = double((37 * i) % 160 - 80);
    for (int64_t t = 0; t < L; ++t) {
      const double a = std::sin((double(t) + shift) / kPeriod), b = std::sin((double(t + 1) + shift) / kPeriod);
      (i < 3 ? test : in).push_back(a);
      if (i >= 3) tgt.push_back(b);
    }
  }
  return {Tensor::from_vector(in, {kSeries - 3, L}).to(dt), Tensor::from_vector(tgt, {kSeries - 3, L}).to(dt),
          Tensor::from_vector(test, {3, L}).to(dt)};
}

struct Sequence : nn::Module {
  nn::LSTMCell lstm1{1, kHidden}, lstm2{kHidden, kHidden};
  nn::Linear linear{kHidden, 1};
  Sequence() {
    register_module("lstm1", lstm1);
    register_module("lstm2", lstm2);
    register_module("linear", linear);
  }
  Tensor forward(const Tensor& input, int64_t future = 0) const {
    const int64_t B = input.size(0);
    const DType dt = input.dtype();
    Tensor h = Tensor::zeros({B, kHidden}, dt), c = Tensor::zeros({B, kHidden}, dt);
    Tensor h2 = Tensor::zeros({B, kHidden}, dt), c2 = Tensor::zeros({B, kHidden}, dt);
    std::vector<Tensor> outputs;
    Tensor output;
    for (const Tensor& input_t : split(input, 1, 1)) {
      std::tie(h, c) = lstm1.forward(input_t, {h, c});
      std::tie(h2, c2) = lstm2.forward(h, {h2, c2});
      output = linear.forward(h2);
      outputs.push_back(output);
    }
    for (int64_t i = 0; i < future; ++i) {
      std::tie(h, c) = lstm1.forward(output, {h, c});
      std::tie(h2, c2) = lstm2.forward(h, {h2, c2});
      output = linear.forward(h2);
      outputs.push_back(output);
    }
    return cat(outputs, 1);
  }
};

void BM_SineTrain(benchmark::State& st) {
  const DType dt = st.range(0) == 64 ? kFloat64 : kFloat32;
  manual_seed(0);
  const auto d = sine_data(dt);
  Sequence seq;
  seq.to(dt);
  optim::Adam opt(seq.parameters(), optim::AdamOptions(0.01));
  double loss_v = 0;
  auto train_step = [&] {
    opt.zero_grad();
    Tensor loss = mse_loss(seq.forward(d[0]), d[1]);
    loss.backward();
    opt.step();
    loss_v = loss.item<double>();
  };
  train_step();  // warm-up (untimed, as in torch_cells.py): first-touch of the buffers
  for (auto _ : st) train_step();
  st.counters["loss"] = loss_v;
}
BENCHMARK(BM_SineTrain)->ArgName("bits")->Arg(64)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SineFreeRun(benchmark::State& st) {
  const DType dt = st.range(0) == 64 ? kFloat64 : kFloat32;
  manual_seed(0);
  const auto d = sine_data(dt);
  Sequence seq;
  seq.to(dt);
  auto run = [&] {
    NoGradGuard ng;
    Tensor y = seq.forward(d[2], 1000);
    benchmark::DoNotOptimize(y.raw_data());
  };
  run();  // warm-up
  for (auto _ : st) run();
}
BENCHMARK(BM_SineFreeRun)->ArgName("bits")->Arg(64)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

// The decoder of examples/seq2seq_forecast.cpp: attention(query = s_{t-1}), LSTMCell([y_{t-1}; c_t]),
// y_t = Linear([s_t; c_t]).
struct Decoder : nn::Module {
  nn::AdditiveAttention attention;
  nn::LSTMCell cell;
  nn::Linear fc;
  Decoder(int64_t hidden, int64_t attn_dim) : attention(hidden, hidden, attn_dim), cell(1 + hidden, hidden), fc(2 * hidden, 1) {
    register_module("attention", attention);
    register_module("cell", cell);
    register_module("fc", fc);
  }
  Tensor forward(const Tensor& enc, Tensor h, Tensor c, Tensor prev, const Tensor& target) const {
    std::vector<Tensor> ys;
    for (int64_t t = 0; t < target.size(1); ++t) {
      auto [ctx, w] = attention.forward(h, enc);
      std::tie(h, c) = cell.forward(cat({prev, ctx}, 1), {h, c});
      Tensor y = fc.forward(cat({h, ctx}, 1));
      ys.push_back(y);
      prev = narrow(target, 1, t, 1);
    }
    return cat(ys, 1);
  }
};

void BM_Seq2SeqDecoder(benchmark::State& st) {
  const int64_t B = 32, W = 20, hidden = 32, attn_dim = 32, horizon = 10;
  manual_seed(0);
  Decoder dec(hidden, attn_dim);
  Tensor enc = Tensor::randn({B, W, hidden}).requires_grad_();
  Tensor h0 = Tensor::randn({B, hidden}).requires_grad_(), c0 = Tensor::randn({B, hidden}).requires_grad_();
  const Tensor prev = Tensor::randn({B, 1}), target = Tensor::randn({B, horizon});
  for (auto _ : st) {
    dec.zero_grad();
    enc.zero_grad();
    h0.zero_grad();
    c0.zero_grad();
    mse_loss(dec.forward(enc, h0, c0, prev, target), target).backward();
    benchmark::DoNotOptimize(enc.grad().raw_data());
  }
}
BENCHMARK(BM_Seq2SeqDecoder)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_TinyChain(benchmark::State& st) {
  const int64_t n_ops = 1000;
  Tensor a = Tensor::full({4}, 0.5).requires_grad_(), b = Tensor::full({4}, 1.0).requires_grad_();
  for (auto _ : st) {
    a.zero_grad();
    b.zero_grad();
    Tensor y = a;
    for (int64_t i = 0; i < n_ops / 2; ++i) {
      y = add(y, a);
      y = mul(y, b);
    }
    sum(y).backward();
    benchmark::DoNotOptimize(a.grad().raw_data());
  }
  st.counters["per_op"] = benchmark::Counter(double(n_ops), benchmark::Counter::kIsIterationInvariantRate |
                                                                benchmark::Counter::kInvert);
}
BENCHMARK(BM_TinyChain)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
