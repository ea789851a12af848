// Dense attention benchmarks: scaled_dot_product_attention and MultiheadAttention, forward and
// forward+backward, float32, over the sequence length. PyTorch side: bench/torch_attention.py.
//   build-bench/bench/bench_attention_dense --benchmark_filter=MHA
// Counters: GFLOP/s of the products (SDPA: 4 B H L^2 D per forward; MHA adds 8 B L E^2 for the
// four projections; forward+backward counts 3x the forward).
#include <attn/attn.hpp>
#include <attn/nn/attention/multihead.hpp>
#include <attn/ops/attention.hpp>
#include <benchmark/benchmark.h>

using namespace attn;

namespace {

void BM_SDPA_Forward(benchmark::State& st) {
  const int64_t B = 1, H = 4, D = 64, L = st.range(0);
  manual_seed(0);
  Tensor q = Tensor::randn({B, H, L, D}), k = Tensor::randn({B, H, L, D}), v = Tensor::randn({B, H, L, D});
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(scaled_dot_product_attention(q, k, v).raw_data());
  st.counters["GFLOP/s"] = benchmark::Counter(4.0 * B * H * L * L * D / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_SDPA_ForwardBackward(benchmark::State& st) {
  const int64_t B = 1, H = 4, D = 64, L = st.range(0);
  manual_seed(0);
  Tensor q = Tensor::randn({B, H, L, D}).requires_grad_(), k = Tensor::randn({B, H, L, D}).requires_grad_(),
         v = Tensor::randn({B, H, L, D}).requires_grad_();
  for (auto _ : st) {
    q.zero_grad(); k.zero_grad(); v.zero_grad();
    scaled_dot_product_attention(q, k, v).sum().backward();
    benchmark::DoNotOptimize(q.grad().raw_data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(3 * 4.0 * B * H * L * L * D / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

double mha_flops(int64_t B, int64_t L, int64_t E) { return 8.0 * B * L * E * E + 4.0 * B * L * L * E; }

void BM_MHA_Forward(benchmark::State& st) {
  const int64_t B = st.range(0), L = st.range(1), E = 64, H = 4;
  manual_seed(0);
  nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, H).batch_first(true));
  Tensor x = Tensor::randn({B, L, E});
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(mha.forward(x, x, x, Tensor(), false).first.raw_data());
  st.counters["GFLOP/s"] = benchmark::Counter(mha_flops(B, L, E) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_MHA_ForwardBackward(benchmark::State& st) {
  const int64_t B = st.range(0), L = st.range(1), E = 64, H = 4;
  manual_seed(0);
  nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, H).batch_first(true));
  Tensor x = Tensor::randn({B, L, E}).requires_grad_();
  for (auto _ : st) {
    mha.zero_grad();
    x.zero_grad();
    mha.forward(x, x, x, Tensor(), false).first.sum().backward();
    benchmark::DoNotOptimize(x.grad().raw_data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(3 * mha_flops(B, L, E) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_SDPA_Forward)->RangeMultiplier(2)->Range(128, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SDPA_ForwardBackward)->RangeMultiplier(2)->Range(128, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MHA_Forward)->Args({8, 512})->Args({1, 128})->Args({1, 512})->Args({1, 1024})->Args({1, 2048})->Args({1, 4096})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MHA_ForwardBackward)->Args({8, 512})->Args({1, 128})->Args({1, 512})->Args({1, 1024})->Args({1, 2048})->Args({1, 4096})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
