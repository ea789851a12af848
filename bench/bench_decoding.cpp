// Autoregressive generation with a TransformerDecoder, with the KV cache against recomputing the
// whole prefix every step (what a decoder without a cache, e.g. PyTorch 1.13's
// nn.TransformerDecoder, has to do). Model: d_model 64, 4 heads, 2 layers, feed-forward 128,
// post-norm, final LayerNorm, batch 1, memory of 96 encoder positions, float32, eval, NoGradGuard.
// Each step feeds the decoder's last output row back as the next input.
//   Generate/cache:1/steps:n  forward_step on the newest position: O(n) work per step
//   Generate/cache:0/steps:n  forward(prefix, memory, tgt_is_causal) and keep the last row: O(n^2)
// Counters: us_per_step = wall time / n, last10_us_per_step = the mean of the final 10 steps.
//   RecomputeStep/prefix:n   one no-cache step at a prefix of n (a whole no-cache run of 4,000
//                            steps would take about half an hour on 2 cores).
// Compare with PyTorch: /usr/bin/python3 bench/torch_decoding.py (docs/benchmarks.md).
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
  using clock = std::chrono::steady_clock;
  double checksum = 0, seconds = 0, last = 0;  // last: the final 10 steps of each run
  for (auto _ : state) {
    const auto t0 = clock::now();
    auto tl = t0;
    Tensor x = s.start;
    nn::TransformerDecoderCache cache;
    std::vector<Tensor> prefix{s.start};
    for (int64_t t = 0; t < steps; ++t) {
      if (t == steps - 10) tl = clock::now();
      if (cached) {
        x = s.dec.forward_step(x, s.memory, cache);
      } else {
        Tensor y = s.dec.forward(cat(prefix, 1), s.memory, Tensor(), Tensor(), Tensor(), Tensor(), true);
        x = narrow(y, 1, t, 1);
        prefix.push_back(x);
      }
    }
    checksum += x.sum().item();
    const auto t1 = clock::now();
    seconds += std::chrono::duration<double>(t1 - t0).count();
    last += std::chrono::duration<double>(t1 - tl).count();
  }
  benchmark::DoNotOptimize(checksum);
  state.counters["us_per_step"] = 1e6 * seconds / (double(steps) * double(state.iterations()));
  state.counters["last10_us_per_step"] = 1e6 * last / (10.0 * double(state.iterations()));
}

// One step without a cache at a prefix of n positions: the decoder over [1, n, d_model] (what
// the n-th step of Generate/cache:0 costs), for n where a whole no-cache run takes too long.
void RecomputeStep(benchmark::State& state) {
  const int64_t n = state.range(0);
  static Setup s;
  NoGradGuard ng;
  manual_seed(1);
  const Tensor prefix = Tensor::randn({1, n, kModel});
  for (auto _ : state) {
    Tensor y = s.dec.forward(prefix, s.memory, Tensor(), Tensor(), Tensor(), Tensor(), true);
    benchmark::DoNotOptimize(y.data<float>());
  }
}

}  // namespace

BENCHMARK(Generate)->ArgNames({"cache", "steps"})->Args({1, 100})->Args({1, 1000})->Args({1, 4000})
    ->Args({0, 100})->Args({0, 1000})->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(RecomputeStep)->ArgName("prefix")->Arg(100)->Arg(1000)->Arg(4000)->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("attn_gemm_isa", attn::kernels::cpu::gemm_isa());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
