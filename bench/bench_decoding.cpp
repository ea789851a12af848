// Autoregressive generation with a TransformerDecoder, with the KV cache against recomputing the
// whole prefix every step (what a decoder without a cache, e.g. PyTorch 1.13's
// nn.TransformerDecoder, has to do). Model: d_model 64, 4 heads, 2 layers, feed-forward 128,
// post-norm, final LayerNorm, batch 1, memory of 96 encoder positions, float32, eval, NoGradGuard.
// Each step feeds the decoder's last output row back as the next input.
//   Generate/cache:1/steps:n  forward_step on the newest position: O(n) work per step
//   Generate/cache:0/steps:n  forward(prefix, memory, tgt_is_causal) and keep the last row: O(n^2)
// Counter us_per_step = wall time / n. The no-cache run at 4,000 steps takes minutes; it is one
// iteration. Compare with PyTorch: /usr/bin/python3 bench/torch_decoding.py (docs/benchmarks.md).
#include <benchmark/benchmark.h>
#include <attn/attn.hpp>

#include <chrono>

using namespace attn;

namespace {

constexpr int64_t kModel = 64, kHeads = 4, kLayers = 2, kFF = 128, kMemory = 96;

struct Setup {
  nn::TransformerDecoder dec{nn::TransformerDecoderLayerOptions(kModel, kHeads).dim_feedforward(kFF).dropout(0.1),
                             kLayers, true};
  Tensor memory, start;
  Setup() {
    manual_seed(0);
    dec.eval();
    memory = Tensor::randn({1, kMemory, kModel});
    start = Tensor::randn({1, 1, kModel});
  }
};

void Generate(benchmark::State& state) {
  const bool cached = state.range(0) != 0;
  const int64_t steps = state.range(1);
  static Setup s;
  NoGradGuard ng;
  double checksum = 0, seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    Tensor x = s.start;
    if (cached) {
      nn::TransformerDecoderCache cache;
      for (int64_t t = 0; t < steps; ++t) x = s.dec.forward_step(x, s.memory, cache);
    } else {
      std::vector<Tensor> prefix{s.start};
      for (int64_t t = 0; t < steps; ++t) {
        Tensor y = s.dec.forward(cat(prefix, 1), s.memory, Tensor(), Tensor(), Tensor(), Tensor(), true);
        x = narrow(y, 1, t, 1);
        prefix.push_back(x);
      }
    }
    checksum += x.sum().item();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  benchmark::DoNotOptimize(checksum);
  state.counters["us_per_step"] = 1e6 * seconds / (double(steps) * double(state.iterations()));
}

}  // namespace

BENCHMARK(Generate)->ArgNames({"cache", "steps"})->Args({1, 100})->Args({1, 1000})->Args({1, 4000})
    ->Args({0, 100})->Args({0, 1000})->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(Generate)->ArgNames({"cache", "steps"})->Args({0, 4000})->Iterations(1)->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("attn_gemm_isa", attn::kernels::cpu::gemm_isa());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
