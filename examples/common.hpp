#pragma once
// Shared plumbing for the example programs: flags, progress lines, CSV, SIGINT, timing,
// resumable training state. Each example keeps its own model and task logic.
#include <attn/attn.hpp>
#include <attn/io/atomic_file.hpp>
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace examples {

// A flag value that must be a number > 0, with a short message (CLI11's PositiveNumber prints
// its whole double range).
inline CLI::Validator positive() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        char* end = nullptr;
        const double d = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0') return "not a number: " + v;
        return d > 0 ? std::string() : "must be > 0, got " + v;
      },
      "POSITIVE");
}

// Flags every program takes.
struct CommonOptions {
  int epochs = 15;
  int64_t batch_size = 32;
  double lr = 1e-3;
  int64_t hidden = 32;
  uint64_t seed = 42;
  int threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS or all cores)
  std::string out_dir = "out";
  std::string save, load;
  std::string device = "cpu";  // where the model trains and runs: cpu or cuda
  bool quiet = false;
  int64_t stop_after = 0;  // testing aid: act as if SIGINT came after this many training batches
};

inline void add_common_flags(CLI::App& app, CommonOptions& o) {
  app.add_option("--epochs", o.epochs, "training epochs")->check(CLI::Range(0, 100000));
  app.add_option("--batch-size", o.batch_size, "mini-batch size")->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  app.add_option("--lr", o.lr, "learning rate")->check(positive());
  app.add_option("--hidden", o.hidden, "hidden size of the recurrent layers")->check(CLI::Range(int64_t(1), int64_t(4096)));
  app.add_option("--seed", o.seed, "random seed (data, init, shuffling)");
  app.add_option("--threads", o.threads, "CPU threads (0 = OMP_NUM_THREADS or all cores)")->check(CLI::Range(0, 1024));
  app.add_option("--out-dir", o.out_dir, "directory for CSV metrics and SVG plots");
  app.add_option("--save", o.save, "write a checkpoint (model + optimizer + progress) after every epoch");
  app.add_option("--load", o.load, "resume from a checkpoint written by --save")->check(CLI::ExistingFile);
  app.add_flag("--quiet", o.quiet, "print only the final summary");
  app.add_option("--stop-after", o.stop_after,
                 "stop as on Ctrl-C after this many training batches (to test --save/--load resume)")
      ->check(CLI::NonNegativeNumber);
}

// --device, for the programs that can train on the GPU (sine_anomaly, sine_forecast).
inline void add_device_flag(CLI::App& app, CommonOptions& o) {
  app.add_option("--device", o.device, "cpu, or cuda (a build with -DATTN_WITH_CUDA=ON and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

// Parses argv; returns an exit code to stop with (0 after --help, 2 for a bad flag) or -1 to go on.
inline int parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return -1;
}

// The device of --device; throws (inside the programs' error handling) when CUDA is unusable.
inline attn::Device device_of(const CommonOptions& o) {
  if (o.device == "cpu") return attn::Device::CPU;
  if (!attn::cuda_is_available())
    throw std::invalid_argument("--device cuda: no usable CUDA device (attn must be built with -DATTN_WITH_CUDA=ON "
                                "and linked with attn::cuda, and the machine needs a GPU and its driver)");
  return attn::Device::CUDA;
}

inline void apply_common(const CommonOptions& o) {
  if (o.threads > 0) attn::set_num_threads(o.threads);
  attn::manual_seed(o.seed);
  std::filesystem::create_directories(o.out_dir);
}

// ---- SIGINT: stop after the current batch ----
inline std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}
inline void install_sigint_handler() {
  std::signal(SIGINT, [](int) { stop_requested().store(true); });
}
// Call once per training batch: raises the stop flag when --stop-after batches have run.
inline void count_batch(const CommonOptions& o) {
  static int64_t batches = 0;
  if (o.stop_after > 0 && ++batches >= o.stop_after) stop_requested().store(true);
}

// ---- timing and progress ----
class Timer {
 public:
  Timer() : t0_(std::chrono::steady_clock::now()) {}
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
  void reset() { t0_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// A one-line, rewritten progress display when stderr is a terminal; nothing otherwise
// (the per-epoch summary lines are printed either way).
class Progress {
 public:
  explicit Progress(bool quiet) : live_(!quiet && isatty(STDERR_FILENO)) {}
  void update(int epoch, int epochs, int64_t batch, int64_t batches, double loss) {
    if (!live_) return;
    std::fprintf(stderr, "\repoch %d/%d  batch %lld/%lld  loss %.4f   ", epoch, epochs, (long long)batch,
                 (long long)batches, loss);
    std::fflush(stderr);
  }
  void clear() {
    if (live_) std::fprintf(stderr, "\r%80s\r", "");
  }

 private:
  bool live_;
};

// ---- per-epoch history, written as CSV ----
struct History {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;

  void add(const std::vector<double>& row) { rows.push_back(row); }
  std::vector<double> column(const std::string& name) const {
    std::vector<double> out;
    size_t c = 0;
    while (c < columns.size() && columns[c] != name) ++c;
    for (auto& r : rows) out.push_back(c < r.size() ? r[c] : 0.0);
    return out;
  }
  std::string to_csv() const {
    std::ostringstream os;
    os << std::setprecision(9);
    for (size_t i = 0; i < columns.size(); ++i) os << (i ? "," : "") << columns[i];
    os << "\n";
    for (auto& r : rows) {
      for (size_t i = 0; i < r.size(); ++i) os << (i ? "," : "") << r[i];
      os << "\n";
    }
    return os.str();
  }
  void from_csv(const std::string& text) {
    rows.clear();
    std::istringstream is(text);
    std::string line;
    std::getline(is, line);  // header
    while (std::getline(is, line)) {
      std::vector<double> r;
      std::istringstream ls(line);
      std::string cell;
      while (std::getline(ls, cell, ',')) r.push_back(std::stod(cell));
      if (!r.empty()) rows.push_back(r);
    }
  }
  void save(const std::string& path) const { attn::io::write_file_atomic(path, to_csv()); }
};

inline std::string join_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}
inline std::vector<int64_t> split_ints(const std::string& s) {
  std::vector<int64_t> v;
  std::istringstream is(s);
  std::string cell;
  while (std::getline(is, cell, ',')) v.push_back(std::stoll(cell));
  return v;
}

// Shuffles indices with the global generator (so the RNG state in a checkpoint covers it).
inline void shuffle(std::vector<int64_t>& v) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = size_t(attn::default_generator().next_u64() % i);
    std::swap(v[i - 1], v[j]);
  }
}

// One pass over the samples in `order`, in minibatches of `batch`: loss_of(rows) builds the batch
// of those sample indices and returns its mean loss; then backward, gradient clipping (clip > 0),
// the optimizer step, the progress line and --stop-after counting. Returns the mean loss over
// the samples (each batch weighted by its size).
template <class LossFn>
double train_epoch(attn::optim::Optimizer& opt, const std::vector<attn::Tensor>& params, double clip,
                   const std::vector<int64_t>& order, int64_t batch, int epoch, const CommonOptions& co,
                   Progress& progress, const LossFn& loss_of) {
  const int64_t N = int64_t(order.size()), batches = (N + batch - 1) / batch;
  double loss_sum = 0;
  for (int64_t b = 0; b < N; b += batch) {
    const int64_t e = std::min(N, b + batch);
    const std::vector<int64_t> rows(order.begin() + b, order.begin() + e);
    opt.zero_grad();
    attn::Tensor loss = loss_of(rows);
    loss.backward();
    if (clip > 0) attn::optim::clip_grad_norm_(params, clip);
    opt.step();
    loss_sum += loss.item<double>() * double(e - b);
    progress.update(epoch + 1, co.epochs, b / batch + 1, batches, loss.item<double>());
    count_batch(co);  // --stop-after: stops (like Ctrl-C) at the end of this epoch
  }
  progress.clear();
  return loss_sum / double(N);
}

// Copies every parameter/buffer of `from` into `to` (same architecture): used to keep the best
// weights during early stopping without a file round trip.
inline void copy_state(const attn::nn::Module& from, attn::nn::Module& to) {
  attn::NoGradGuard ng;
  auto src = from.state_dict(), dst = to.state_dict();
  for (size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
}

}  // namespace examples
