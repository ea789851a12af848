// Attention variants over sequence length at one shape: fused dense SDPA and additive attention
// (quadratic), linear attention (non-causal and causal) and windowed attention
// (left = 64, right = 63: w = 128), forward and forward+backward, over L = 128 .. 65,536, with
// q, k, v of shape [1, 1, L, 32] in float32. A dense baseline (matmul + masked_fill + softmax +
// matmul with the same band mask, from attn ops) runs up to L = 4096 for comparison.
//
// Counters: GFLOP/s (nominal flop counts below, per second), peak_MiB (rise of the process's
// peak resident set during the benchmark: /proc/self/clear_refs resets VmHWM, then VmHWM minus
// the VmRSS before the run), le_1GiB (1 when peak_MiB <= 1024). Nominal flops with E = Ev:
//   linear:   forward 4 L E^2, forward+backward 14 L E^2
//   windowed: forward 4 L w E, forward+backward 12 L w E   (dense: 4 L^2 E forward)
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_BENCHMARKS=ON
//   cmake --build build-bench --target bench_attention_efficient -j2
//   OMP_NUM_THREADS=2 ./build-bench/bench/bench_attention_efficient
#include <benchmark/benchmark.h>
#include "bench_context.hpp"
#include <attn/attn.hpp>
#include <attn/nn/attention/additive.hpp>
#include <attn/ops/linear_attention.hpp>
#include <attn/ops/windowed_attention.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>

#include "peak_rss.hpp"

using namespace attn;

namespace {
constexpr int64_t kE = 32, kLeft = 64, kRight = 63, kW = kLeft + kRight + 1;

using bench::proc_status_kib;
using bench::reset_peak;
void set_counters(benchmark::State& st, double flops_per_iter, int64_t rss0_kib) {
  const double peak_mib = double(proc_status_kib("VmHWM:") - rss0_kib) / 1024.0;
  st.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["peak_MiB"] = peak_mib;
  st.counters["le_1GiB"] = peak_mib <= 1024.0 ? 1 : 0;
  st.counters["L"] = double(st.range(0));
}
struct Inputs {
  Tensor q, k, v, gout;
  Inputs(int64_t L, bool grad) {
    q = Tensor::randn({1, 1, L, kE});
    k = Tensor::randn({1, 1, L, kE});
    v = Tensor::randn({1, 1, L, kE});
    gout = Tensor::ones({1, 1, L, kE});
    if (grad) {
      q.requires_grad_();
      k.requires_grad_();
      v.requires_grad_();
    }
  }
};
}  // namespace

static void BM_linear(benchmark::State& st, bool causal, bool backward) {
  const int64_t L = st.range(0);
  Inputs in(L, backward);
  const int64_t rss0 = reset_peak();
  for (auto _ : st) {
    Tensor o = linear_attention(in.q, in.k, in.v, causal);
    if (backward) {
      o.backward(in.gout);
      benchmark::DoNotOptimize(in.q.grad().data<float>());
      in.q.zero_grad();
      in.k.zero_grad();
      in.v.zero_grad();
    }
    benchmark::DoNotOptimize(o.data<float>());
  }
  set_counters(st, (backward ? 14.0 : 4.0) * double(L) * kE * kE, rss0);
}

static void BM_windowed(benchmark::State& st, bool backward) {
  const int64_t L = st.range(0);
  Inputs in(L, backward);
  const int64_t rss0 = reset_peak();
  for (auto _ : st) {
    auto [o, w] = windowed_attention(in.q, in.k, in.v, kLeft, kRight);
    if (backward) {
      o.backward(in.gout);
      benchmark::DoNotOptimize(in.q.grad().data<float>());
      in.q.zero_grad();
      in.k.zero_grad();
      in.v.zero_grad();
    }
    benchmark::DoNotOptimize(o.data<float>());
  }
  set_counters(st, (backward ? 12.0 : 4.0) * double(L) * kW * kE, rss0);
}

// Fused dense scaled dot-product attention at the same shape (L x L scores: quadratic in L).
static void BM_sdpa(benchmark::State& st, bool backward) {
  const int64_t L = st.range(0);
  Inputs in(L, backward);
  const int64_t rss0 = reset_peak();
  for (auto _ : st) {
    Tensor o = scaled_dot_product_attention(in.q, in.k, in.v);
    if (backward) {
      o.backward(in.gout);
      benchmark::DoNotOptimize(in.q.grad().data<float>());
      in.q.zero_grad();
      in.k.zero_grad();
      in.v.zero_grad();
    }
    benchmark::DoNotOptimize(o.data<float>());
  }
  set_counters(st, (backward ? 12.0 : 4.0) * double(L) * double(L) * kE, rss0);
}

// Additive (Bahdanau) self-attention at the same shape, hidden size 32: tanh over L x L x 32.
static void BM_additive(benchmark::State& st, bool backward) {
  const int64_t L = st.range(0);
  Inputs in(L, backward);
  Tensor Wq = Tensor::randn({kE, kE}) * 0.1, Wk = Tensor::randn({kE, kE}) * 0.1, vv = Tensor::randn({kE}) * 0.1;
  const int64_t rss0 = reset_peak();
  for (auto _ : st) {
    // Reshapes inside the loop: each backward frees the graph, the views' nodes included.
    Tensor q = reshape(in.q, {1, L, kE}), k = reshape(in.k, {1, L, kE}), v = reshape(in.v, {1, L, kE});
    Tensor o = additive_attention(q, k, v, Wq, Wk, vv).first;
    if (backward) {
      o.backward(reshape(in.gout, {1, L, kE}));
      benchmark::DoNotOptimize(in.q.grad().data<float>());
      in.q.zero_grad();
      in.k.zero_grad();
      in.v.zero_grad();
    }
    benchmark::DoNotOptimize(o.data<float>());
  }
  set_counters(st, (backward ? 3.0 : 1.0) * 6.0 * double(L) * double(L) * kE, rss0);
}

// Dense reference: full L x L scores, band mask, softmax, weighted sum (forward only).
static void BM_dense_band(benchmark::State& st) {
  const int64_t L = st.range(0);
  Inputs in(L, false);
  std::vector<bool> m(size_t(L * L));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j) m[size_t(i * L + j)] = j < i - kLeft || j > i + kRight;
  Tensor outside = Tensor::from_vector(m, {L, L});
  const double scale = 1.0 / std::sqrt(double(kE));
  const int64_t rss0 = reset_peak();
  for (auto _ : st) {
    Tensor s = masked_fill(matmul(in.q, transpose(in.k, -2, -1)) * scale, outside,
                           -std::numeric_limits<double>::infinity());
    Tensor o = matmul(softmax(s, -1), in.v);
    benchmark::DoNotOptimize(o.data<float>());
  }
  set_counters(st, 4.0 * double(L) * double(L) * kE, rss0);
}

// Reference task A: AttentionPooling(64, 64) on a [32, 500, 64] BiLSTM output, forward+backward;
// fused node vs the same model composed from attn ops (linear, tanh, linear, softmax, mul, sum).
static void BM_pooling_taskA(benchmark::State& st, bool fused) {
  nn::AttentionPooling pool(64, 64);
  Tensor h = Tensor::randn({32, 500, 64}).requires_grad_();
  for (auto _ : st) {
    Tensor c;
    if (fused) {
      c = pool.forward(h).first;
    } else {
      Tensor e = squeeze(pool.score.forward(tanh(pool.proj.forward(h))), -1);
      c = sum(unsqueeze(softmax(e, 1), -1) * h, 1);
    }
    sum(c).backward();
    benchmark::DoNotOptimize(h.grad().data<float>());
    h.zero_grad();
    pool.zero_grad();
  }
}
BENCHMARK_CAPTURE(BM_pooling_taskA, fused, true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_pooling_taskA, composed, false)->Unit(benchmark::kMillisecond)->UseRealTime();

#define ATTN_L_RANGE ->RangeMultiplier(4)->Range(128, 65536)->Unit(benchmark::kMillisecond)->UseRealTime()
BENCHMARK_CAPTURE(BM_linear, noncausal_fwd, false, false) ATTN_L_RANGE;
BENCHMARK_CAPTURE(BM_linear, noncausal_fwd_bwd, false, true) ATTN_L_RANGE;
BENCHMARK_CAPTURE(BM_linear, causal_fwd, true, false) ATTN_L_RANGE;
BENCHMARK_CAPTURE(BM_linear, causal_fwd_bwd, true, true) ATTN_L_RANGE;
BENCHMARK_CAPTURE(BM_windowed, w128_fwd, false) ATTN_L_RANGE;
BENCHMARK_CAPTURE(BM_windowed, w128_fwd_bwd, true) ATTN_L_RANGE;
BENCHMARK(BM_dense_band)->RangeMultiplier(4)->Range(128, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_sdpa, fwd, false)->RangeMultiplier(4)->Range(128, 8192)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_sdpa, fwd_bwd, true)->RangeMultiplier(4)->Range(128, 8192)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_additive, fwd, false)->RangeMultiplier(4)->Range(128, 2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_additive, fwd_bwd, true)->RangeMultiplier(4)->Range(128, 2048)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
