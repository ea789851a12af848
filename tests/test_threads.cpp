// Threads sharing the library's global state (docs/architecture.md, "Threads"): the global
// generator, the anomaly flag, grad mode, and a model used for inference from several threads.
// Built and run under ThreadSanitizer by `make tsan` (which reports any data race); the checks
// below also catch lost or repeated random draws without a sanitizer.
#include <algorithm>
#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace attn;

namespace {
template <class F>
void in_threads(int n, const F& f) {
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back(f, i);
  for (auto& t : ts) t.join();
}
}  // namespace

TEST_CASE("threads: random tensors drawn in many threads at once each take a contiguous run of the sequence",
          "[threads]") {
  constexpr int kThreads = 8, kTensors = 40, kSize = 500;
  manual_seed(2024);
  std::vector<std::vector<std::vector<double>>> got(kThreads);
  in_threads(kThreads, [&](int t) {
    for (int i = 0; i < kTensors; ++i) got[size_t(t)].push_back(Tensor::rand({kSize}, kFloat64).to_vector<double>());
  });
  // The same seed drawn in one thread: every tensor must be one block of it, each block used once
  // (a race on the engine repeats or skips numbers).
  Generator g(2024);
  std::vector<double> seq(size_t(kThreads * kTensors * kSize));
  for (double& v : seq) v = g.uniform();
  std::map<double, size_t> at;
  for (size_t i = 0; i < seq.size(); ++i) at[seq[i]] = i;
  REQUIRE(at.size() == seq.size());
  std::vector<bool> used(seq.size() / kSize, false);
  int blocks = 0;
  for (const auto& per_thread : got)
    for (const auto& v : per_thread) {
      auto it = at.find(v[0]);
      REQUIRE(it != at.end());
      const size_t start = it->second;
      REQUIRE(start % kSize == 0);
      CHECK(std::equal(v.begin(), v.end(), seq.begin() + long(start)));
      CHECK_FALSE(used[start / kSize]);
      used[start / kSize] = true;
      ++blocks;
    }
  CHECK(blocks == kThreads * kTensors);
}

TEST_CASE("threads: models built in several threads at once (global generator under its lock)", "[threads]") {
  manual_seed(7);
  std::vector<std::unique_ptr<nn::LSTM>> models(6);
  in_threads(6, [&](int t) { models[size_t(t)] = std::make_unique<nn::LSTM>(nn::LSTMOptions(3, 8)); });
  // Each parameter came from whole draws of one generator: values inside PyTorch's init bound.
  for (const auto& m : models)
    for (const Tensor& p : m->parameters())
      for (float v : p.to_vector<float>()) CHECK(std::abs(v) <= 1.0f / std::sqrt(8.0f));
  // A generator per thread gives reproducible draws without any sharing.
  std::vector<std::vector<double>> draws(4);
  in_threads(4, [&](int t) {
    Generator own(uint64_t(100 + t));
    for (int i = 0; i < 1000; ++i) draws[size_t(t)].push_back(own.normal());
  });
  Generator ref(102);
  for (double v : draws[2]) CHECK(v == ref.normal());
}

TEST_CASE("threads: set_detect_anomaly switched while other threads run ops", "[threads]") {
  std::atomic<int> finished{0}, errors{0};
  std::thread toggler([&] {  // switches until every worker is done, so the two overlap
    for (int i = 0; finished < 3; ++i) set_detect_anomaly(i % 2 == 0);
  });
  in_threads(3, [&](int) {
    Tensor x = Tensor::full({64}, 0.5, kFloat64).requires_grad_();
    for (int k = 0; k < 300; ++k) {
      try {
        sum(exp(tanh(x))).backward();  // finite everywhere: never an anomaly
      } catch (...) {
        ++errors;
      }
    }
    ++finished;
  });
  toggler.join();
  set_detect_anomaly(false);
  CHECK(errors == 0);
}

TEST_CASE("threads: grad mode is per thread, and concurrent inference on a shared model is bitwise equal",
          "[threads]") {
  manual_seed(11);
  nn::LSTM lstm(nn::LSTMOptions(2, 16).batch_first(true));
  nn::Linear head(16, 1);
  const Tensor x = Tensor::randn({4, 30, 2});
  auto infer = [&] {
    NoGradGuard ng;
    return head.forward(lstm.forward(x).first).to_vector<float>();
  };
  const std::vector<float> want = infer();
  std::vector<std::vector<float>> got(6);
  std::atomic<int> recorded{0};
  in_threads(6, [&](int t) {
    if (t % 2) {
      got[size_t(t)] = infer();  // NoGradGuard in this thread only
    } else {
      Tensor y = head.forward(lstm.forward(x).first);  // records a graph: another thread's guard is not seen
      recorded += y.requires_grad() ? 1 : 0;
      NoGradGuard ng;
      got[size_t(t)] = y.to_vector<float>();
    }
  });
  for (const auto& g : got) CHECK(g == want);
  CHECK(recorded == 3);
}
