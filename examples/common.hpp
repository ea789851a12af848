#pragma once
// Shared plumbing for the example programs: flags, progress lines, CSV, SIGINT, timing,
// resumable training state. Each example keeps its own model and task logic.
#include <attn/attn.hpp>
#include <attn/io/atomic_file.hpp>
#include <attn/io/checkpoint.hpp>
#include <attn/data/series_csv.hpp>
#include <CLI/CLI.hpp>
#include <unistd.h>
#ifdef ATTN_WITH_MPI
#include <attn/distributed/distributed.hpp>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace examples {

// A flag value that must be a finite number > 0 (or >= 0 with zero_ok), with a short message
// (CLI11's PositiveNumber prints its whole double range and lets inf and nan through).
inline CLI::Validator positive(bool zero_ok = false) {
  return CLI::Validator(
      [zero_ok](std::string& v) -> std::string {
        double d = 0;
        if (!attn::CheckpointMetadata::parse_number(v, d)) return "not a number: " + v;
        if (!std::isfinite(d)) return "must be a finite number, got " + v;
        return d > 0 || (zero_ok && d == 0) ? std::string() : std::string(zero_ok ? "must be >= 0" : "must be > 0") + ", got " + v;
      },
      zero_ok ? "NONNEGATIVE" : "POSITIVE");
}
inline CLI::Validator non_negative() { return positive(true); }

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

// Threads, seed, and --out-dir: created if missing and checked to be a directory this program can
// write to (a probe file is created and removed). Returns -1 to go on, or 1 after printing
// "<program>: error: --out-dir ..." (an existing file, /dev/null, /proc/x, a read-only place).
inline int apply_common(const CommonOptions& o, const char* program) {
  if (o.threads > 0) attn::set_num_threads(o.threads);
  try {  // the CPU and the kernel path (ATTN_ISA may force one; a path the CPU lacks is an error)
    std::printf("cpu: %s\n", attn::cpu_info().summary().c_str());
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
  attn::manual_seed(o.seed);
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  std::string why;
  if (ec) {
    why = "cannot create the directory: " + ec.message();
  } else if (!std::filesystem::is_directory(o.out_dir, ec)) {
    why = "is not a directory";
  } else {
    std::string probe = o.out_dir + "/.attn-write-test-XXXXXX";
    const int fd = ::mkstemp(probe.data());
    if (fd < 0) why = std::string("is not writable: ") + std::strerror(errno);
    else ::close(fd), ::unlink(probe.c_str());
  }
  if (why.empty()) return -1;
  std::fprintf(stderr, "%s: error: --out-dir '%s' %s\n", program, o.out_dir.c_str(), why.c_str());
  return 1;
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
  // Reads what to_csv wrote (metadata `key` of checkpoint `meta`): the same columns, numbers only.
  void from_csv(const attn::CheckpointMetadata& meta, const std::string& key) {
    rows.clear();
    std::istringstream is(meta.text(key));
    std::string line;
    std::getline(is, line);  // header
    while (std::getline(is, line)) {
      std::vector<double> r;
      std::istringstream ls(line);
      std::string cell;
      while (std::getline(ls, cell, ',')) {
        double v = 0;
        if (!attn::CheckpointMetadata::parse_number(cell, v))
          meta.fail(key, "row " + std::to_string(rows.size() + 1) + " holds '" + cell.substr(0, 40) + "', not a number");
        r.push_back(v);
      }
      if (r.size() != columns.size())
        meta.fail(key, "row " + std::to_string(rows.size() + 1) + " has " + std::to_string(r.size()) + " values, expected " +
                           std::to_string(columns.size()));
      rows.push_back(r);
    }
  }
  void save(const std::string& path) const { attn::io::write_file_atomic(path, to_csv()); }
};

inline std::string join_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// ---- checkpoints: the progress every example keeps, validated on --load ----
// "<what> fnv1a64:<hash of the bytes of each part>": the training data of a run, saved as metadata
// "data" so that resuming with other data (another --samples, --points, --data file, ...) is
// refused instead of silently mixing two runs.
template <class... Vectors>
std::string data_fingerprint(const std::string& what, const Vectors&... parts) {
  uint64_t h = 1469598103934665603ull;
  auto add = [&h](const auto& v) {
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    for (size_t i = 0; i < v.size() * sizeof(v[0]); ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  (add(parts), ...);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  return what + " fnv1a64:" + hex;
}

// Metadata every example saves with its checkpoint; `extra` adds the program's own keys.
inline std::map<std::string, std::string> progress_metadata(const char* task, int epoch, const History& hist,
                                                            const std::string& data,
                                                            std::map<std::string, std::string> extra = {}) {
  extra.insert({{"task", task}, {"epoch", std::to_string(epoch)}, {"history", hist.to_csv()}, {"data", data}});
  return extra;
}

// --load: restores model, optimizer and RNG, then checks the common keys (task, data, epoch,
// history with one row per finished epoch). Any problem throws io::FormatError naming the file
// and the key. Returns the metadata for the program's own keys.
inline attn::CheckpointMetadata load_progress(const std::string& path, attn::nn::Module& model,
                                              attn::optim::Optimizer& opt, const char* task, const std::string& data,
                                              int& epoch, History& hist) {
  attn::CheckpointMetadata meta(path, attn::load_checkpoint(path, model, &opt));
  if (meta.text("task") != task) meta.fail("task", "is '" + meta.text("task") + "', not '" + task + "'");
  if (meta.text("data") != data)
    meta.fail("data", "says the checkpoint was trained on other data (" + meta.text("data") + "); this run has " + data +
                          ". Resume with the data flags of the saved run");
  epoch = int(meta.integer("epoch", 0, 100000));
  hist.from_csv(meta, "history");
  if (hist.rows.size() != size_t(epoch))
    meta.fail("history", "has " + std::to_string(hist.rows.size()) + " rows for " + std::to_string(epoch) + " finished epochs");
  return meta;
}

// Metadata `key`: an ordering of `items` (sample indices below n), as a shuffled epoch saves it;
// anything else (an index out of range, a wrong length, other indices) throws naming file and key.
inline std::vector<int64_t> read_ordering(const attn::CheckpointMetadata& meta, const std::string& key,
                                          std::vector<int64_t> items, int64_t n, const std::string& what) {
  std::vector<int64_t> order = meta.integers(key, 0, n - 1), sorted = order;
  std::sort(sorted.begin(), sorted.end());
  std::sort(items.begin(), items.end());
  if (sorted != items) meta.fail(key, "is not an ordering of this run's " + std::to_string(items.size()) + " " + what);
  return order;
}

// A training loss or a reported metric that is NaN or Inf ends the run with this message (exit 1)
// instead of being reported as a result.
inline double require_finite(double v, const std::string& what) {
  if (!std::isfinite(v))
    throw std::runtime_error(what + " is " + std::to_string(v) +
                             ": training diverged; use a smaller --lr (or --clip)");
  return v;
}
// The loss of training batch `batch` (0-based) in epoch `epoch` (0-based), before its backward.
inline void check_loss(double loss, int epoch, int64_t batch) {
  require_finite(loss, "epoch " + std::to_string(epoch + 1) + ", batch " + std::to_string(batch + 1) + ": the training loss");
}

// Shuffles indices with the global generator (so the RNG state in a checkpoint covers it).
inline void shuffle(std::vector<int64_t>& v) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = size_t(attn::default_generator().next_u64() % i);
    std::swap(v[i - 1], v[j]);
  }
}

// ---- data-parallel runs over MPI (docs/distributed.md) ----
// Every rank runs the whole program on the same data and the same shuffled order; each global
// batch is split between the ranks, DistributedDataParallel averages the gradients, so every rank
// takes the same optimizer step and a run on p ranks trains like one process (up to rounding).
// Rank 0 alone prints, plots and writes checkpoints. A one-process run does none of this.
class Parallel {
 public:
  Parallel() = default;  // one process
  // Starts MPI when asked (--distributed) or when launched by mpirun; throws when that needs MPI
  // and this build has none.
  explicit Parallel(bool requested) {
#ifdef ATTN_WITH_MPI
    if (!requested && !attn::distributed::launched_by_mpirun()) return;
    env_ = std::make_unique<attn::distributed::Environment>();
    rank_ = attn::distributed::rank();
    size_ = attn::distributed::world_size();
#else
    if (requested || std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"))
      throw std::invalid_argument("--distributed (or a launch by mpirun): this build has no MPI; configure with "
                                  "-DATTN_WITH_MPI=ON (Open MPI: libopenmpi-dev)");
#endif
  }
  bool active() const { return size_ > 1; }
  bool is_root() const { return rank_ == 0; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  // Averages the gradients of `model` across ranks in every backward (no-op in one process).
  void attach(attn::nn::Module& model) {
#ifdef ATTN_WITH_MPI
    if (active()) ddp_ = std::make_unique<attn::distributed::DistributedDataParallel>(model);
#else
    (void)model;
#endif
  }
  // This rank's rows [lo, hi) of the global batch [begin, end): contiguous, sizes differing by at most one.
  std::pair<size_t, size_t> share(size_t begin, size_t end) const {
    const size_t n = end - begin, base = n / size_t(size_), extra = n % size_t(size_), r = size_t(rank_);
    const size_t lo = begin + r * base + std::min(r, extra);
    return {lo, lo + base + (r < extra ? 1 : 0)};
  }
  // The factor for this rank's mean loss over `mine` of `total` rows: DDP averages over ranks, so
  // mean_loss * mine * size / total makes the average the mean over the whole batch.
  double loss_weight(size_t mine, size_t total) const {
    return active() ? double(mine) * double(size_) / double(total) : 1.0;
  }
  double sum(double v) const {
#ifdef ATTN_WITH_MPI
    if (active()) {
      attn::Tensor t = attn::Tensor::scalar(v, attn::kFloat64);
      attn::distributed::allreduce(t);
      return t.item<double>();
    }
#endif
    return v;
  }
  // True on every rank when `flag` is true on one (a Ctrl-C that reached one rank only).
  bool any(bool flag) const { return sum(flag ? 1.0 : 0.0) > 0; }
  // Ends the program after an error: prints it and, in a parallel run, ends every rank.
  int fail(const char* program, const std::string& message) const {
#ifdef ATTN_WITH_MPI
    if (env_) attn::distributed::abort(std::string(program) + ": error: " + message);
#endif
    std::fprintf(stderr, "%s: error: %s\n", program, message.c_str());
    return 1;
  }

 private:
  int rank_ = 0, size_ = 1;
#ifdef ATTN_WITH_MPI
  std::unique_ptr<attn::distributed::Environment> env_;
  std::unique_ptr<attn::distributed::DistributedDataParallel> ddp_;
#endif
};

inline void add_distributed_flag(CLI::App& app, bool& distributed) {
  app.add_flag("--distributed", distributed,
               "data-parallel over MPI (automatic under mpirun): each rank trains on its share of every batch");
}

// One pass over the samples in `order`, in minibatches of `batch`: loss_of(rows) builds the batch
// of those sample indices and returns its mean loss; then backward, gradient clipping (clip > 0),
// the optimizer step, the progress line and --stop-after counting. Returns the mean loss over
// the samples (each batch weighted by its size). With `par` in a parallel run, each rank takes
// its share of every batch (a rank with none runs one row with weight 0, see Parallel) and the
// returned mean covers all ranks.
template <class LossFn>
double train_epoch(attn::optim::Optimizer& opt, const std::vector<attn::Tensor>& params, double clip,
                   const std::vector<int64_t>& order, int64_t batch, int epoch, const CommonOptions& co,
                   Progress& progress, const LossFn& loss_of, const Parallel* par = nullptr) {
  const int64_t N = int64_t(order.size()), batches = (N + batch - 1) / batch;
  const Parallel one_process;
  if (!par) par = &one_process;
  double loss_sum = 0;
  for (int64_t b = 0; b < N; b += batch) {
    const int64_t e = std::min(N, b + batch);
    const auto [lo, hi] = par->share(size_t(b), size_t(e));
    const std::vector<int64_t> rows(order.begin() + int64_t(lo < hi ? lo : size_t(b)),
                                    order.begin() + int64_t(lo < hi ? hi : size_t(b) + 1));
    opt.zero_grad();
    attn::Tensor loss = loss_of(rows);
    check_loss(loss.item<double>(), epoch, b / batch);
    const double weight = par->loss_weight(hi - lo, size_t(e - b));
    (weight == 1.0 ? loss : attn::mul(loss, weight)).backward();
    if (clip > 0) attn::optim::clip_grad_norm_(params, clip);
    opt.step();
    loss_sum += loss.item<double>() * double(hi - lo);
    progress.update(epoch + 1, co.epochs, b / batch + 1, batches, loss.item<double>());
    count_batch(co);  // --stop-after: stops (like Ctrl-C) at the end of this epoch
  }
  progress.clear();
  return par->sum(loss_sum) / double(N);
}

// Copies every parameter/buffer of `from` into `to` (same architecture): used to keep the best
// weights during early stopping without a file round trip.
inline void copy_state(const attn::nn::Module& from, attn::nn::Module& to) {
  attn::NoGradGuard ng;
  auto src = from.state_dict(), dst = to.state_dict();
  for (size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
}

// The "average" column of NOAA's co2_mm_mlo.csv, every value checked.
inline std::vector<double> read_co2(const std::string& path) {
  const attn::data::SeriesTable t =
      attn::data::load_series_csv(path, attn::data::SeriesCsvOptions().columns({"average"}));
  for (int64_t r = 0; r < t.rows; ++r)
    if (t.at(r, 0) < 100 || t.at(r, 0) > 2000)
      throw std::invalid_argument(path + ":" + std::to_string(t.lines[size_t(r)]) + ": column 'average' holds " +
                                  std::to_string(t.at(r, 0)) + ", not a CO2 mole fraction in ppm");
  if (t.rows < 100) throw std::invalid_argument(path + ": only " + std::to_string(t.rows) + " monthly values");
  return t.column(0);
}

}  // namespace examples
