// Dense attention benchmarks: scaled_dot_product_attention and MultiheadAttention, forward and
// forward+backward, float32, over the sequence length. PyTorch side: bench/torch_attention.py.
//   build-bench/bench/bench_attention_dense --benchmark_filter=MHA
// BM_SDPA_Forward / BM_SDPA_ForwardBackward / BM_MHA_Forward / BM_MHA_ForwardBackward run the
// default CPU path: calls without weights take the tiled path (FlashAttention-2 style, saves only
// the per-row log-sum-exp) once the weights would take 8 MiB (B*H*L*S*sizeof(T)), the
// weights-storing path (saves the [B, H, L, S] weights) below. The *_Path cases and
// BM_SDPA_Threshold force one path through detail::flash_attn_config(), last argument "tiled":
// 0 = weights-storing, 1 = tiled; both run back to back at each size so a shared machine's load
// hits both alike.
// Counters: GFLOP/s of the products (SDPA: 4 B H L^2 D per forward; MHA adds 8 B L E^2 for the
// four projections; forward+backward counts 3x the forward), peak_MiB (rise of the process's peak
// resident set during the benchmark: /proc/self/clear_refs resets VmHWM, then VmHWM minus the
// VmRSS before the run; Linux only) with --peak_memory. Run ONE case per process for that figure:
// attn's BlockCache (core/tensor.hpp) keeps freed buffers of 256 KiB and more resident (up to
// 256 MiB) and reuses them by exact size, so a case run after others may reuse pages that are
// already in its baseline and read too low. For example:
//   for c in SDPA_ForwardBackward_Path/L:4096/tiled:0 SDPA_ForwardBackward_Path/L:4096/tiled:1; do
//     OMP_NUM_THREADS=2 build-bench/bench/bench_attention_dense --peak_memory
//       --benchmark_filter="^BM_$c/" --benchmark_min_time=0.01; done      (one line)
// Timings: OMP_NUM_THREADS=2 build-bench/bench/bench_attention_dense --benchmark_filter=SDPA
#include <attn/attn.hpp>
#include <attn/nn/attention/multihead.hpp>
#include <attn/ops/attention.hpp>
#include <benchmark/benchmark.h>
#include "bench_context.hpp"
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <string>

#include "peak_rss.hpp"

using namespace attn;

namespace {

bool g_peak_memory = false;  // --peak_memory

using bench::proc_status_kib;
using bench::reset_peak;

// Selects the path for one benchmark (restored afterwards): 1 tiled, 0 weights-storing, -1 default.
struct PathGuard {
  int64_t saved = detail::flash_attn_config().min_weight_bytes;
  explicit PathGuard(int64_t path) {
    if (path >= 0) detail::flash_attn_config().min_weight_bytes = path ? 0 : std::numeric_limits<int64_t>::max();
  }
  ~PathGuard() { detail::flash_attn_config().min_weight_bytes = saved; }
};

// Peak-RSS rise of the FIRST run of a case in this process. Google Benchmark runs a case several
// times (to pick the iteration count, and for repetitions); later runs start with the first run's
// buffers resident in the BlockCache and would read too low, so they report the first figure.
double first_peak_mib(const std::string& key, double now) {
  static std::map<std::string, double> seen;
  return seen.emplace(key, now).first->second;
}

void finish(benchmark::State& st, const char* name, double flops, int64_t rss0, int64_t path) {
  st.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  if (g_peak_memory) {
    const std::string key = std::string(name) + "/" + std::to_string(flops) + "/" + std::to_string(path);
    st.counters["peak_MiB"] = first_peak_mib(key, double(proc_status_kib("VmHWM:") - rss0) / 1024.0);
  }
  st.SetLabel(path < 0 ? "default path" : (path ? "tiled" : "weights"));
}

void sdpa_forward(benchmark::State& st, int64_t B, int64_t H, int64_t L, int64_t D, int64_t path) {
  PathGuard guard(path);
  manual_seed(0);
  Tensor q = Tensor::randn({B, H, L, D}), k = Tensor::randn({B, H, L, D}), v = Tensor::randn({B, H, L, D});
  NoGradGuard ng;
  const int64_t rss0 = reset_peak();
  for (auto _ : st) benchmark::DoNotOptimize(scaled_dot_product_attention(q, k, v).raw_data());
  finish(st, "sdpa_f", 4.0 * B * H * L * L * D, rss0, path);
}

void sdpa_forward_backward(benchmark::State& st, int64_t B, int64_t H, int64_t L, int64_t D, int64_t path) {
  PathGuard guard(path);
  manual_seed(0);
  Tensor q = Tensor::randn({B, H, L, D}).requires_grad_(), k = Tensor::randn({B, H, L, D}).requires_grad_(),
         v = Tensor::randn({B, H, L, D}).requires_grad_();
  const int64_t rss0 = reset_peak();
  for (auto _ : st) {
    q.zero_grad(); k.zero_grad(); v.zero_grad();
    scaled_dot_product_attention(q, k, v).sum().backward();
    benchmark::DoNotOptimize(q.grad().raw_data());
  }
  finish(st, "sdpa_fb", 3 * 4.0 * B * H * L * L * D, rss0, path);
}

double mha_flops(int64_t B, int64_t L, int64_t E) { return 8.0 * B * L * E * E + 4.0 * B * L * L * E; }

void mha_forward(benchmark::State& st, int64_t B, int64_t L, int64_t path) {
  const int64_t E = 64, H = 4;
  PathGuard guard(path);
  manual_seed(0);
  nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, H).batch_first(true));
  Tensor x = Tensor::randn({B, L, E});
  NoGradGuard ng;
  const int64_t rss0 = reset_peak();
  for (auto _ : st) benchmark::DoNotOptimize(mha.forward(x, x, x, Tensor(), false).first.raw_data());
  finish(st, "mha_f", mha_flops(B, L, E), rss0, path);
}

void mha_forward_backward(benchmark::State& st, int64_t B, int64_t L, int64_t path) {
  const int64_t E = 64, H = 4;
  PathGuard guard(path);
  manual_seed(0);
  nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, H).batch_first(true));
  Tensor x = Tensor::randn({B, L, E}).requires_grad_();
  const int64_t rss0 = reset_peak();
  for (auto _ : st) {
    mha.zero_grad();
    x.zero_grad();
    mha.forward(x, x, x, Tensor(), false).first.sum().backward();
    benchmark::DoNotOptimize(x.grad().raw_data());
  }
  finish(st, "mha_fb", 3 * mha_flops(B, L, E), rss0, path);
}

// Default path (names kept: bench/compare_torch.py reads BM_MHA_ForwardBackward/8/512).
void BM_SDPA_Forward(benchmark::State& st) { sdpa_forward(st, 1, 4, st.range(0), 64, -1); }
void BM_SDPA_ForwardBackward(benchmark::State& st) { sdpa_forward_backward(st, 1, 4, st.range(0), 64, -1); }
void BM_MHA_Forward(benchmark::State& st) { mha_forward(st, st.range(0), st.range(1), -1); }
void BM_MHA_ForwardBackward(benchmark::State& st) { mha_forward_backward(st, st.range(0), st.range(1), -1); }

// Forced path, last argument: 0 weights-storing, 1 tiled.
void BM_SDPA_Forward_Path(benchmark::State& st) { sdpa_forward(st, 1, 4, st.range(0), 64, st.range(1)); }
void BM_SDPA_ForwardBackward_Path(benchmark::State& st) {
  sdpa_forward_backward(st, 1, 4, st.range(0), 64, st.range(1));
}
void BM_MHA_Forward_Path(benchmark::State& st) { mha_forward(st, st.range(0), st.range(1), st.range(2)); }
void BM_MHA_ForwardBackward_Path(benchmark::State& st) {
  mha_forward_backward(st, st.range(0), st.range(1), st.range(2));
}
// Around the default threshold (8 MiB of weights): SDPA fwd+bwd at B, H, L = S, D.
void BM_SDPA_Threshold(benchmark::State& st) {
  sdpa_forward_backward(st, st.range(0), st.range(1), st.range(2), st.range(3), st.range(4));
  st.counters["weights_MiB"] = double(st.range(0) * st.range(1) * st.range(2) * st.range(2)) * 4 / double(1 << 20);
}

// (L, path) for L = 128 .. 4096, both paths back to back.
void sdpa_args(benchmark::internal::Benchmark* b) {
  for (int64_t L = 128; L <= 4096; L *= 2) b->Args({L, 0})->Args({L, 1});
}
void threshold_args(benchmark::internal::Benchmark* b) {
  for (int64_t D : {64, 16})
    for (auto [B, L] : {std::pair<int64_t, int64_t>{1, 362}, {1, 512}, {1, 724}, {4, 256}, {8, 256}})
      b->Args({B, 4, L, D, 0})->Args({B, 4, L, D, 1});
}
const std::pair<int64_t, int64_t> kMhaShapes[] = {{8, 512}, {1, 128}, {1, 512}, {1, 1024}, {1, 2048}, {1, 4096}};
void mha_args(benchmark::internal::Benchmark* b) {
  for (auto [B, L] : kMhaShapes) b->Args({B, L});
}
void mha_path_args(benchmark::internal::Benchmark* b) {
  for (auto [B, L] : kMhaShapes) b->Args({B, L, 0})->Args({B, L, 1});
}

}  // namespace

BENCHMARK(BM_SDPA_Forward)->RangeMultiplier(2)->Range(128, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SDPA_ForwardBackward)->RangeMultiplier(2)->Range(128, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MHA_Forward)->Apply(mha_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MHA_ForwardBackward)->Apply(mha_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SDPA_Forward_Path)->Apply(sdpa_args)->ArgNames({"L", "tiled"})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SDPA_ForwardBackward_Path)->Apply(sdpa_args)->ArgNames({"L", "tiled"})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MHA_Forward_Path)->Apply(mha_path_args)->ArgNames({"B", "L", "tiled"})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MHA_ForwardBackward_Path)->Apply(mha_path_args)->ArgNames({"B", "L", "tiled"})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SDPA_Threshold)->Apply(threshold_args)->ArgNames({"B", "H", "L", "D", "tiled"})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  int n = 0;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--peak_memory") == 0) g_peak_memory = true;
    else argv[n++] = argv[i];
  }
  argc = n;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
