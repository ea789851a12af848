// Matmul benchmarks: attn::kernels::cpu::gemm / gemm_batched against OpenBLAS cblas_sgemm (when
// bench/CMakeLists.txt found it: ATTN_BENCH_HAVE_CBLAS) and a loop of per-matrix Eigen products.
// Counter GFLOPS = 2*M*N*K*batch / time. Threads: attn follows OMP_NUM_THREADS (or --threads N
// given here), OpenBLAS follows OPENBLAS_NUM_THREADS / OMP_NUM_THREADS.
//   OPENBLAS_CORETYPE=SkylakeX OMP_NUM_THREADS=2 ./bench_matmul --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include "bench_context.hpp"

// Eigen runs each product on one thread (the matrices are spread over attn::parallel_for).
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <attn/core/parallel.hpp>
#include <attn/kernels/cpu/gemm.hpp>

#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#ifdef ATTN_BENCH_HAVE_CBLAS
#include <cblas.h>
#endif

namespace {

using attn::kernels::cpu::gemm;
using attn::kernels::cpu::gemm_batched;
using attn::kernels::cpu::gemm_prepacked;
using attn::kernels::cpu::PackedB;

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

void set_flops(benchmark::State& st, double flops) {
  st.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = attn::get_num_threads();
}

// ---- square and Linear-like single products: args M, N, K, tb ----
void BM_attn_gemm(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  const bool tb = st.range(3) != 0;
  auto A = random_vec(size_t(M * K), 1), B = random_vec(size_t(K * N), 2);
  std::vector<float> C(size_t(M * N));
  for (auto _ : st) {
    gemm<float>(false, tb, M, N, K, 1.f, A.data(), K, B.data(), tb ? K : N, 0.f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, 2.0 * M * N * K);
}

#ifdef ATTN_BENCH_HAVE_CBLAS
void BM_openblas_sgemm(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  const bool tb = st.range(3) != 0;
  auto A = random_vec(size_t(M * K), 1), B = random_vec(size_t(K * N), 2);
  std::vector<float> C(size_t(M * N));
  for (auto _ : st) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K), 1.f, A.data(),
                int(K), B.data(), int(tb ? K : N), 0.f, C.data(), int(N));
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, 2.0 * M * N * K);
}
#endif

void single_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "tb"});
  for (int64_t n : {256, 512, 1024, 2048}) b->Args({n, n, n, 0});
  b->Args({16000, 64, 64, 1});  // Linear: [16000 x 64] . [64 x 64]^T
  b->Args({32, 128, 32, 0});    // one recurrent step: [32 x 32] . [32 x 128]
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_attn_gemm)->Apply(single_args);

// ---- a recurrence step: op(B) = W_hh^T packed once (PackedB), then one product per step ----
void BM_attn_gemm_prepacked(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  auto A = random_vec(size_t(M * K), 1), B = random_vec(size_t(K * N), 2);
  std::vector<float> C(size_t(M * N));
  const PackedB<float> pb(true, K, N, B.data(), K);
  for (auto _ : st) {
    gemm_prepacked<float>(M, 1.f, A.data(), K, pb, 1.f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, 2.0 * M * N * K);
}
BENCHMARK(BM_attn_gemm_prepacked)
    ->ArgNames({"M", "N", "K"})
    ->Args({32, 128, 32})   // task A: [32 x 32] . W_hh^T, H = 32
    ->Args({64, 256, 64})   // task B: a block of 64 series, H = 64
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
#ifdef ATTN_BENCH_HAVE_CBLAS
BENCHMARK(BM_openblas_sgemm)->Apply(single_args);
#endif

// ---- batched attention shapes: args batch, M, N, K, tb ----
//   scores: batch x [L x E] . [L x E]^T  (M = N = L, K = E, tb = 1)
//   output: batch x [L x L] . [L x E]    (M = K = L, N = E, tb = 0)
void BM_attn_gemm_batched(benchmark::State& st) {
  const int64_t batch = st.range(0), M = st.range(1), N = st.range(2), K = st.range(3);
  const bool tb = st.range(4) != 0;
  auto A = random_vec(size_t(batch * M * K), 1), B = random_vec(size_t(batch * K * N), 2);
  std::vector<float> C(size_t(batch * M * N));
  for (auto _ : st) {
    gemm_batched<float>(batch, false, tb, M, N, K, 1.f, A.data(), K, M * K, B.data(), tb ? K : N, K * N, 0.f,
                        C.data(), N, M * N);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, 2.0 * batch * M * N * K);
}

// The baseline of issue 6: one Eigen product per matrix (Eigen single-threaded per product, the
// matrices spread over attn::parallel_for like gemm_batched does).
void BM_eigen_loop_batched(benchmark::State& st) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int64_t batch = st.range(0), M = st.range(1), N = st.range(2), K = st.range(3);
  const bool tb = st.range(4) != 0;
  auto A = random_vec(size_t(batch * M * K), 1), B = random_vec(size_t(batch * K * N), 2);
  std::vector<float> C(size_t(batch * M * N));
  for (auto _ : st) {
    attn::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) {
        Eigen::Map<const Mat> a(A.data() + i * M * K, M, K);
        Eigen::Map<Mat> c(C.data() + i * M * N, M, N);
        if (tb) c.noalias() = a * Eigen::Map<const Mat>(B.data() + i * K * N, N, K).transpose();
        else c.noalias() = a * Eigen::Map<const Mat>(B.data() + i * K * N, K, N);
      }
    });
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, 2.0 * batch * M * N * K);
}

void batched_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "M", "N", "K", "tb"});
  for (int64_t L : {64, 128, 256, 512}) {
    b->Args({32, L, L, 64, 1});  // scores  Q . K^T, 32 = B*H
    b->Args({32, L, 64, L, 0});  // output  P . V
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_attn_gemm_batched)->Apply(batched_args);
BENCHMARK(BM_eigen_loop_batched)->Apply(batched_args);

}  // namespace

int main(int argc, char** argv) {
  // Optional --threads N (before Google Benchmark parses the rest).
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      attn::set_num_threads(std::atoi(argv[++i]));
      continue;
    }
    args.push_back(argv[i]);
  }
  int n = int(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
