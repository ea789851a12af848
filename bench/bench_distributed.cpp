// Task A's training epoch (the one bench_tasks.cpp times: 3500 series x 500 steps, batch 32,
// Adam, clipping) data-parallel over MPI, for docs/benchmarks.md ("Data-parallel over MPI"):
//
//   OMP_NUM_THREADS=2 bench_distributed                               1 process x 2 threads
//   mpirun -np 2 -x OMP_NUM_THREADS=1 --bind-to none bench_distributed  2 processes x 1 thread
//
// Each rank takes its half of every batch of 32 and DistributedDataParallel averages the
// gradients (one process: the plain loop, no DDP). Counters, per epoch and on rank 0:
// exposed_s, the time at the end of backward spent on allreduces that backward did not hide;
// blocking_s, what one blocking allreduce of all the gradients after backward costs instead;
// buckets_early / buckets_late, bucket allreduces started during / at the end of backward.
// Allreduce/13506_floats times the exchange alone (task A's gradients, 54 kB).
// Built only with ATTN_WITH_MPI; only rank 0 prints.
#include <benchmark/benchmark.h>

#include <attn/data/sine.hpp>
#include <attn/distributed/distributed.hpp>

#include <chrono>
#include <cstdio>

#include "../examples/models.hpp"

using namespace attn;
namespace dist = attn::distributed;

namespace {

struct Data {
  int64_t n = 3500, T = 500, F = 2;
  std::vector<float> x, y;
};

const Data& task_a() {  // the same series and features as bench_tasks.cpp
  static Data d = [] {
    Data d;
    data::SineAnomalyOptions o;
    o.samples = d.n;
    o.scale = true;
    const auto ds = data::make_sine_anomaly(o);
    d.x.resize(size_t(d.n * d.T * d.F));
    for (int64_t i = 0; i < d.n; ++i)
      for (int64_t t = 0; t < d.T; ++t) {
        d.x[size_t((i * d.T + t) * 2)] = ds.at(i, t);
        d.x[size_t((i * d.T + t) * 2 + 1)] = t ? ds.at(i, t) - ds.at(i, t - 1) : 0.f;
      }
    for (int v : ds.labels) d.y.push_back(float(v));
    return d;
  }();
  return d;
}

// One epoch; bucket_mb > 0: DDP with that bucket cap; bucket_mb < 0: no DDP, and with several
// ranks one blocking allreduce of every gradient after backward (the no-overlap reference).
void task_a_epoch(benchmark::State& state, double bucket_mb) {
  const Data& d = task_a();
  const int R = dist::world_size(), r = dist::rank();
  manual_seed(0);
  examples::AnomalyModel model(d.F, 32);
  optim::Adam opt(model.parameters(), optim::AdamOptions(5e-3));
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  if (bucket_mb > 0) ddp = std::make_unique<dist::DistributedDataParallel>(model, dist::DistributedDataParallelOptions().bucket_cap_mb(bucket_mb));
  else dist::broadcast_parameters(model);
  const int64_t B = 32;
  double blocking = 0;
  for (auto _ : state) {
    for (int64_t b = 0; b < d.n; b += B) {
      const int64_t m = std::min(B, d.n - b), lo = b + m * r / R, hi = b + m * (r + 1) / R;
      Tensor x = Tensor::from_vector(std::vector<float>(d.x.begin() + lo * d.T * d.F, d.x.begin() + hi * d.T * d.F), {hi - lo, d.T, d.F});
      Tensor y = Tensor::from_vector(std::vector<float>(d.y.begin() + lo, d.y.begin() + hi), {hi - lo});
      opt.zero_grad();
      Tensor loss = binary_cross_entropy_with_logits(model.forward(x).first, y);
      (R > 1 ? mul(loss, double(hi - lo) * R / double(m)) : loss).backward();
      if (!ddp && R > 1) {
        const auto t0 = std::chrono::steady_clock::now();
        for (Tensor& p : model.parameters()) {
          Tensor g = p.grad();
          dist::allreduce(g, dist::ReduceOp::Avg);
        }
        blocking += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      optim::clip_grad_norm_(model.parameters(), 1.0);
      opt.step();
    }
  }
  const double epochs = double(state.iterations());
  state.counters["ranks"] = R;
  state.counters["threads"] = get_num_threads();
  state.counters["series/s"] = benchmark::Counter(double(d.n), benchmark::Counter::kIsIterationInvariantRate);
  if (ddp) {
    state.counters["buckets"] = double(ddp->num_buckets());
    state.counters["exposed_s"] = ddp->stats().exposed_seconds / epochs;
    state.counters["buckets_early"] = double(ddp->stats().buckets_early) / epochs;
    state.counters["buckets_late"] = double(ddp->stats().buckets_late) / epochs;
  } else if (R > 1) {
    state.counters["blocking_s"] = blocking / epochs;
  }
}

// One allreduce (average) of task A's gradient size, 13,506 floats: the exchange itself.
void allreduce_task_a_gradients(benchmark::State& state) {
  Tensor g = Tensor::ones({13506});
  for (auto _ : state) dist::allreduce(g, dist::ReduceOp::Avg);
  state.SetBytesProcessed(int64_t(state.iterations()) * g.numel() * 4);
}

}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(&argc, &argv);
  if (dist::rank() != 0 && !std::freopen("/dev/null", "w", stdout)) return 1;
  benchmark::Initialize(&argc, argv);
  // The same benchmarks on every rank, in the same order (their collectives must match).
  auto reg = [](const char* name, double mb) {
    benchmark::RegisterBenchmark(name, [mb](benchmark::State& s) { task_a_epoch(s, mb); })
        ->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
  };
  if (dist::world_size() == 1) {
    reg("TaskA_TrainEpoch/one_process", -1);
  } else {
    reg("TaskA_TrainEpoch/ddp_bucket_25MB", 25);
    reg("TaskA_TrainEpoch/ddp_bucket_0.01MB", 0.01);
    reg("TaskA_TrainEpoch/blocking_allreduce_after_backward", -1);
    benchmark::RegisterBenchmark("Allreduce/13506_floats", allreduce_task_a_gradients)
        ->Unit(benchmark::kMicrosecond)->Iterations(2000)->UseRealTime();
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
