// GPU timings of attn's CUDA attention kernels (built only with -DATTN_WITH_CUDA=ON): fused
// scaled_dot_product_attention forward and forward+backward over L = 1,024 ... 16,384, and
// MultiheadAttention forward+backward, float32. PyTorch side: bench/torch_cuda_attention.py.
//   build-cuda/bench/cuda_attention [--quick]
// A plain program rather than a Google Benchmark one: every timed call ends with a device
// synchronize, and the figure is the median of the timed calls (after one warm-up call).
// FLOPs as bench_attention_dense counts them: SDPA 4 B H L^2 D per forward, forward+backward 3x
// the forward; MHA adds 8 B L E^2 for the four projections.
// Share of peak: the fp32 (non-tensor-core) peak is SMs x 128 FP32 lanes x 2 x clock; the program
// prints the GPU's name and SM count, and the docs name the clock used.
#include <attn/attn.hpp>
#include <attn/nn/attention/multihead.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

using namespace attn;

namespace {

// Median seconds of `fn` over timed calls (at least 3, until 1 s has passed or 20 calls).
double median_seconds(const std::function<void()>& fn) {
  fn();
  kernels::cuda::synchronize();
  std::vector<double> t;
  double total = 0;
  while (t.size() < 3 || (total < 1.0 && t.size() < 20)) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    kernels::cuda::synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t.push_back(s);
    total += s;
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void row(const char* name, double seconds, double flops) {
  std::printf("%-44s %10.3f %10.1f\n", name, seconds * 1e3, flops / seconds / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (!cuda_is_available()) {
    std::printf("no CUDA device: %s\n", kernels::cuda::device_count_error());
    return 1;
  }
  manual_seed(0);
  std::printf("%-44s %10s %10s\n", "case", "ms", "GFLOP/s");
  const std::vector<int64_t> Ls =
      quick ? std::vector<int64_t>{1024, 4096} : std::vector<int64_t>{1024, 2048, 4096, 8192, 16384};
  const int64_t B = 1, H = 16, D = 64;
  for (int64_t L : Ls) {
    auto dev = [&](bool grad) {
      Tensor t = Tensor::randn({B, H, L, D}).to(Device::CUDA);
      return grad ? t.requires_grad_() : t;
    };
    const double f = 4.0 * B * H * L * L * D;
    char name[96];
    {
      Tensor q = dev(false), k = dev(false), v = dev(false);
      NoGradGuard ng;
      std::snprintf(name, sizeof name, "SDPA fwd B=%lld H=%lld D=%lld L=%lld", (long long)B, (long long)H,
                    (long long)D, (long long)L);
      row(name, median_seconds([&] { (void)scaled_dot_product_attention(q, k, v); }), f);
    }
    {
      Tensor q = dev(true), k = dev(true), v = dev(true);
      std::snprintf(name, sizeof name, "SDPA fwd+bwd B=%lld H=%lld D=%lld L=%lld", (long long)B, (long long)H,
                    (long long)D, (long long)L);
      row(name, median_seconds([&] {
            q.zero_grad(); k.zero_grad(); v.zero_grad();
            scaled_dot_product_attention(q, k, v).sum().backward();
          }),
          3 * f);
    }
  }
  const int64_t E = 64, heads = 4;
  std::vector<std::pair<int64_t, int64_t>> mha_cases = {{8, 512}, {8, 4096}};
  for (auto [b, L] : mha_cases) {
    nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, heads).batch_first(true));
    mha.to(Device::CUDA);
    Tensor x = Tensor::randn({b, L, E}).to(Device::CUDA).requires_grad_();
    const double f = 8.0 * b * L * E * E + 4.0 * b * L * L * E;
    char name[96];
    std::snprintf(name, sizeof name, "MHA fwd+bwd B=%lld L=%lld E=64 H=4", (long long)b, (long long)L);
    row(name, median_seconds([&] {
          mha.zero_grad();
          x.zero_grad();
          mha.forward(x, x, x, Tensor(), false).first.sum().backward();
        }),
        3 * f);
  }
  return 0;
}
