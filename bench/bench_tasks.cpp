// Whole-task timings of the reference tasks, the same work bench/torch_tasks.py times in
// PyTorch: one training epoch of task A (3500 series x 500 steps, batch 32, Adam, clipping),
// inference on task A's 750 test series, and one full-batch training epoch of task B.
// In a build with ATTN_WITH_CUDA the same three run on the GPU too (*_CUDA; PyTorch side:
// bench/torch_tasks.py --device cuda): the model lives on the GPU, each batch is copied there,
// and every timed iteration ends with a device synchronize.
#include <benchmark/benchmark.h>
#include "bench_context.hpp"

#include <attn/data/sine.hpp>

#include "../examples/models.hpp"

using namespace attn;

namespace {

struct TaskAData {
  int64_t T = 500, F = 2;
  std::vector<float> x;  // [N, T, F]: series scaled to max |x| = 1, plus first difference
  std::vector<float> y;
  int64_t n = 0;
};

const TaskAData& task_a(int64_t n) {
  static std::map<int64_t, TaskAData> cache;
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  data::SineAnomalyOptions o;
  o.samples = n;
  o.scale = true;
  const auto ds = data::make_sine_anomaly(o);
  TaskAData d;
  d.n = n;
  d.x.resize(size_t(n * d.T * d.F));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d.T; ++t) {
      d.x[size_t((i * d.T + t) * 2)] = ds.at(i, t);
      d.x[size_t((i * d.T + t) * 2 + 1)] = t ? ds.at(i, t) - ds.at(i, t - 1) : 0.f;
    }
  for (int v : ds.labels) d.y.push_back(float(v));
  return cache[n] = d;
}

// Waits for the device's queued work (timings of GPU runs end when the work does).
void sync(Device device) {
#ifdef ATTN_WITH_CUDA
  if (device == Device::CUDA) kernels::cuda::synchronize();
#endif
  (void)device;
}
bool skip_without(benchmark::State& state, Device device) {
  if (device == Device::CPU || cuda_is_available()) return false;
  state.SkipWithError("no CUDA device");
  return true;
}

void task_a_train_epoch(benchmark::State& state, Device device) {
  if (skip_without(state, device)) return;
  const TaskAData& d = task_a(3500);
  manual_seed(0);
  examples::AnomalyModel model(d.F, 32);
  model.to(device);
  optim::Adam opt(model.parameters(), optim::AdamOptions(5e-3));
  const int64_t B = 32;
  for (auto _ : state) {
    for (int64_t b = 0; b < d.n; b += B) {
      const int64_t m = std::min(B, d.n - b);
      Tensor x = Tensor::from_vector(std::vector<float>(d.x.begin() + b * d.T * d.F, d.x.begin() + b * d.T * d.F + m * d.T * d.F), {m, d.T, d.F});
      Tensor y = Tensor::from_vector(std::vector<float>(d.y.begin() + b, d.y.begin() + b + m), {m});
      opt.zero_grad();
      Tensor loss = binary_cross_entropy_with_logits(model.forward(x.to(device)).first, y.to(device));
      loss.backward();
      optim::clip_grad_norm_(model.parameters(), 1.0);
      opt.step();
    }
    sync(device);
  }
  state.counters["series/s"] = benchmark::Counter(double(d.n), benchmark::Counter::kIsIterationInvariantRate);
}

void task_a_inference750(benchmark::State& state, Device device) {
  if (skip_without(state, device)) return;
  const TaskAData& d = task_a(750);
  manual_seed(0);
  examples::AnomalyModel model(d.F, 32);
  model.to(device);
  model.eval();
  Tensor x = Tensor::from_vector(d.x, {d.n, d.T, d.F}).to(device);
  for (auto _ : state) {
    NoGradGuard ng;
    Tensor p = sigmoid(model.forward(x).first);
    benchmark::DoNotOptimize(p.raw_data());
    sync(device);
  }
  state.counters["series/s"] = benchmark::Counter(double(d.n), benchmark::Counter::kIsIterationInvariantRate);
}

void task_b_train_epoch(benchmark::State& state, Device device) {
  if (skip_without(state, device)) return;
  const auto w = data::make_windows(data::sine_series(1000, 50.0), 20);
  manual_seed(0);
  examples::ForecastModel model(64, 2);
  model.to(device);
  optim::Adam opt(model.parameters(), optim::AdamOptions(1e-3));
  Tensor x = Tensor::from_vector(w.x, {w.count, 20, 1}).to(device), y = Tensor::from_vector(w.y, {w.count, 1}).to(device);
  for (auto _ : state) {
    opt.zero_grad();
    Tensor loss = mse_loss(model.forward(x).first, y);
    loss.backward();
    opt.step();
    sync(device);
  }
}

void BM_TaskA_TrainEpoch(benchmark::State& state) { task_a_train_epoch(state, Device::CPU); }
void BM_TaskA_Inference750(benchmark::State& state) { task_a_inference750(state, Device::CPU); }
void BM_TaskB_TrainEpoch(benchmark::State& state) { task_b_train_epoch(state, Device::CPU); }
BENCHMARK(BM_TaskA_TrainEpoch)->Unit(benchmark::kSecond)->Iterations(2)->UseRealTime();
BENCHMARK(BM_TaskA_Inference750)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TaskB_TrainEpoch)->Unit(benchmark::kMillisecond)->UseRealTime();
#ifdef ATTN_WITH_CUDA
void BM_TaskA_TrainEpoch_CUDA(benchmark::State& state) { task_a_train_epoch(state, Device::CUDA); }
void BM_TaskA_Inference750_CUDA(benchmark::State& state) { task_a_inference750(state, Device::CUDA); }
void BM_TaskB_TrainEpoch_CUDA(benchmark::State& state) { task_b_train_epoch(state, Device::CUDA); }
BENCHMARK(BM_TaskA_TrainEpoch_CUDA)->Unit(benchmark::kSecond)->Iterations(2)->UseRealTime();
BENCHMARK(BM_TaskA_Inference750_CUDA)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TaskB_TrainEpoch_CUDA)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

}  // namespace

BENCHMARK_MAIN();
