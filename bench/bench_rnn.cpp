// Forward + backward of the reference tasks' recurrent layers (float32), fused and composed.
//   A: bidirectional LSTM(1 -> 32), batch 32 x 500 steps (reference task A, docs/examples.md)
//   B: 2-layer LSTM(1 -> 64), batch 980 x 20 steps (task B)
// items/s = sequences per second. PyTorch's side: bench/torch_rnn.py. Results: docs/recurrent.md.
#include <benchmark/benchmark.h>
#include "bench_context.hpp"
#include <attn/attn.hpp>
#include <attn/nn/rnn.hpp>

using namespace attn;

static void run_lstm(benchmark::State& st, nn::LSTMOptions o, int64_t B, int64_t T, bool backward) {
  manual_seed(1);
  nn::LSTM lstm(o.batch_first(true));
  const Tensor x = Tensor::randn({B, T, o.input_size()});
  for (auto _ : st) {
    auto [out, hc] = lstm.forward(x);
    if (backward) {
      lstm.zero_grad();
      sum(out).backward();
    }
    benchmark::DoNotOptimize(out.raw_data());
  }
  st.SetItemsProcessed(int64_t(st.iterations()) * B);
}

static void BM_TaskA_BiLSTM32_B32_T500(benchmark::State& st) {
  run_lstm(st, nn::LSTMOptions(1, 32).bidirectional(true).fused(st.range(0) != 0), 32, 500, st.range(1) != 0);
}
static void BM_TaskB_LSTM64x2_B980_T20(benchmark::State& st) {
  run_lstm(st, nn::LSTMOptions(1, 64).num_layers(2).fused(st.range(0) != 0), 980, 20, st.range(1) != 0);
}
// args: fused (1) / composed (0), forward+backward (1) / forward only (0)
BENCHMARK(BM_TaskA_BiLSTM32_B32_T500)->ArgNames({"fused", "bwd"})->Args({1, 1})->Args({1, 0})->Args({0, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TaskB_LSTM64x2_B980_T20)->ArgNames({"fused", "bwd"})->Args({1, 1})->Args({1, 0})->Args({0, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
