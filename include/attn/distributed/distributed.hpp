#pragma once
// attn::distributed: data-parallel training over MPI (Open MPI from Debian), the way PyTorch's
// DistributedDataParallel and Horovod do it. Optional: not included by <attn/attn.hpp>; include
// this header and link the CMake target attn::distributed (configure with -DATTN_WITH_MPI=ON).
// How to launch, what is exchanged and what it costs: docs/distributed.md.
//
// Every rank runs the same program on its share of the data. init/finalize, allreduce,
// broadcast, barrier, broadcast_parameters, the DistributedDataParallel constructor and every
// backward through a module it watches are collective: every rank makes them, in the same order.
// Calls are made from one thread (MPI_THREAD_FUNNELED); OpenMP kernels are unaffected.
#include <mpi.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "../core/tensor.hpp"
#include "../nn/module.hpp"

namespace attn::distributed {

namespace detail {
inline double& timeout_seconds() {
  static double seconds = 1800;  // PyTorch's default process-group timeout (30 minutes)
  return seconds;
}
inline void check_mpi(int rc, const char* op) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string(op) + ": MPI error: " + std::string(msg, size_t(len)));
}
inline bool mpi_running() {
  int on = 0, off = 0;
  MPI_Initialized(&on);
  MPI_Finalized(&off);
  return on && !off;
}
inline void require_mpi(const char* op) {
  if (!mpi_running())
    throw std::logic_error(std::string(op) +
                           ": MPI is not initialized; create a distributed::Environment (or call distributed::init) first");
}
inline MPI_Datatype mpi_type(const Tensor& t, const char* op) {
  ATTN_CHECK(t.defined(), op, ": undefined tensor");
  ATTN_CHECK(t.device() == Device::CPU, op, ": tensor of shape ", to_string(t.shape()), " lives on ",
             device_name(t.device()), "; only CPU tensors are exchanged");
  ATTN_CHECK(t.numel() <= INT_MAX, op, ": tensor of shape ", to_string(t.shape()),
             " has more elements than one MPI call takes (2^31 - 1); split it");
  if (t.dtype() == kFloat32) return MPI_FLOAT;
  if (t.dtype() == kFloat64) return MPI_DOUBLE;
  throw std::invalid_argument(std::string(op) + ": tensor of shape " + to_string(t.shape()) + " has dtype " +
                              dtype_name(t.dtype()) + "; only float32 and float64 are exchanged");
}
// Completes a non-blocking call, or throws once the timeout has passed: a rank that died or took
// another path leaves the others here, and a clear error beats a hang.
inline void wait(MPI_Request& request, const char* op) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), op);
    if (done) return;
    std::this_thread::yield();  // on an oversubscribed machine the rank we wait for needs this core
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout_seconds()) {
      int r = -1;
      MPI_Comm_rank(MPI_COMM_WORLD, &r);
      throw std::runtime_error(std::string(op) + ": rank " + std::to_string(r) + " waited more than " +
                               std::to_string(timeout_seconds()) +
                               " s for the other ranks (one failed, or they called other collectives)");
    }
  }
}
}  // namespace detail

// Starts MPI (once; a second call does nothing). argc/argv may be null.
inline void init(int* argc = nullptr, char*** argv = nullptr) {
  int on = 0;
  MPI_Initialized(&on);
  if (on) return;
  int provided = 0;
  detail::check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "distributed::init");
  // Errors come back as return codes (turned into exceptions), not as MPI's default abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}
inline void finalize() {
  if (detail::mpi_running()) MPI_Finalize();
}
inline bool is_initialized() { return detail::mpi_running(); }

// Prints "attn rank <r>: <message>" to stderr and ends every rank of the job with `code`
// (MPI_Abort): the way out of an error on one rank, which the others cannot see.
[[noreturn]] inline void abort(const std::string& message, int code = 1) {
  int r = -1;
  if (detail::mpi_running()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  std::fprintf(stderr, "attn rank %d: %s\n", r, message.c_str());
  std::fflush(stderr);
  if (detail::mpi_running()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

// RAII: init() on construction, finalize() on destruction. Destroyed by an exception (the
// program is leaving with an error), it aborts the whole job instead: MPI_Finalize would wait
// for ranks that are still inside a collective call.
class Environment {
 public:
  Environment(int* argc = nullptr, char*** argv = nullptr) : exceptions_(std::uncaught_exceptions()) { init(argc, argv); }
  ~Environment() {
    if (std::uncaught_exceptions() > exceptions_) abort("an exception left the distributed::Environment's scope");
    finalize();
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  int exceptions_;
};

// True when this process was started by mpirun/mpiexec (Open MPI, or a PMI-based launcher).
inline bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

inline int rank() {
  detail::require_mpi("distributed::rank");
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  detail::require_mpi("distributed::world_size");
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Seconds a collective call waits for the other ranks before it throws (default 1800).
inline void set_timeout(double seconds) {
  ATTN_CHECK(std::isfinite(seconds) && seconds > 0, "distributed::set_timeout: ", seconds, " is not a positive number of seconds");
  detail::timeout_seconds() = seconds;
}
inline double timeout() { return detail::timeout_seconds(); }

inline void barrier() {
  detail::require_mpi("distributed::barrier");
  MPI_Request req;
  detail::check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, &req), "distributed::barrier");
  detail::wait(req, "distributed::barrier");
}

enum class ReduceOp { Sum, Avg, Max, Min };

// In place: t = op over the ranks' t (Avg: the sum divided by world_size()). Same shape on every rank.
inline void allreduce(Tensor& t, ReduceOp op = ReduceOp::Sum) {
  detail::require_mpi("distributed::allreduce");
  const MPI_Datatype type = detail::mpi_type(t, "distributed::allreduce");
  const MPI_Op mop = op == ReduceOp::Max ? MPI_MAX : op == ReduceOp::Min ? MPI_MIN : MPI_SUM;
  attn::detail::bump_version(t);
  MPI_Request req;
  detail::check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), int(t.numel()), type, mop, MPI_COMM_WORLD, &req),
                    "distributed::allreduce");
  detail::wait(req, "distributed::allreduce");
  if (op == ReduceOp::Avg) {
    const double n = world_size();
    ATTN_DISPATCH_FLOATING(t.dtype(), "distributed::allreduce", [&] {
      scalar_t* p = t.data<scalar_t>();
      for (int64_t i = 0, e = t.numel(); i < e; ++i) p[i] = scalar_t(p[i] / n);
    });
  }
}

// In place: every rank's t becomes root's t.
inline void broadcast(Tensor& t, int root = 0) {
  detail::require_mpi("distributed::broadcast");
  const MPI_Datatype type = detail::mpi_type(t, "distributed::broadcast");
  ATTN_CHECK(root >= 0 && root < world_size(), "distributed::broadcast: root ", root, " out of range for ",
             world_size(), " ranks");
  attn::detail::bump_version(t);
  MPI_Request req;
  detail::check_mpi(MPI_Ibcast(t.raw_data(), int(t.numel()), type, root, MPI_COMM_WORLD, &req), "distributed::broadcast");
  detail::wait(req, "distributed::broadcast");
}

// Copies root's parameters and buffers into every rank's module (the same architecture on
// every rank; checked: a different one throws on every rank instead of exchanging garbage).
inline void broadcast_parameters(const nn::Module& module, int root = 0) {
  detail::require_mpi("distributed::broadcast_parameters");
  ATTN_CHECK(root >= 0 && root < world_size(), "distributed::broadcast_parameters: root ", root, " out of range for ",
             world_size(), " ranks");
  nn::NamedTensors state = module.state_dict();
  // A fingerprint of the layout: tensor count, element count and a hash of names, shapes, dtypes.
  uint64_t h = 1469598103934665603ull;
  int64_t numel = 0;
  for (auto& [name, t] : state) {
    const std::string s = name + to_string(t.shape()) + dtype_name(t.dtype());
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    numel += t.numel();
  }
  int64_t mine[3] = {int64_t(state.size()), numel, int64_t(h >> 1)}, lo[3], hi[3];
  MPI_Request req;
  detail::check_mpi(MPI_Iallreduce(mine, lo, 3, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD, &req), "distributed::broadcast_parameters");
  detail::wait(req, "distributed::broadcast_parameters");
  detail::check_mpi(MPI_Iallreduce(mine, hi, 3, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD, &req), "distributed::broadcast_parameters");
  detail::wait(req, "distributed::broadcast_parameters");
  ATTN_CHECK(std::memcmp(lo, hi, sizeof lo) == 0, "distributed::broadcast_parameters: the ranks hold different "
             "models (this rank: ", mine[0], " tensors, ", mine[1], " elements; across ranks ", lo[0], "..", hi[0],
             " tensors, ", lo[1], "..", hi[1], " elements, or other names/shapes/dtypes)");
  for (auto& [name, t] : state) broadcast(t, root);
}

// ---- DistributedDataParallel ----
struct DistributedDataParallelOptions {
  DistributedDataParallelOptions() = default;
  // Gradient megabytes (2^20 bytes) per bucket, PyTorch's bucket_cap_mb: smaller buckets start
  // their allreduce earlier in backward (more overlap) but cost more messages.
  DistributedDataParallelOptions& bucket_cap_mb(double v) { bucket_cap_mb_ = v; return *this; }
  // Copy rank 0's parameters and buffers to every rank at construction (PyTorch does).
  DistributedDataParallelOptions& broadcast_parameters(bool v) { broadcast_parameters_ = v; return *this; }
  double bucket_cap_mb_ = 25;
  bool broadcast_parameters_ = true;
};

// Averages the gradients of `module`'s parameters across ranks during backward. Attach it once,
// then train as usual: every loss.backward() ends with each parameter's grad() equal to the mean
// of the ranks' gradients, so the same optimizer step runs everywhere and the parameters stay
// identical. Unlike PyTorch's wrapper it does not wrap forward (attn modules have no common
// forward signature): call the module as before. One backward per optimizer step.
//
// How: parameters are grouped, last first (the order backward produces them), into buckets of
// about bucket_cap_mb. A post-accumulate hook on each parameter marks it ready; when a bucket is
// complete its gradients are copied into one flat buffer and a non-blocking MPI_Iallreduce
// starts, while backward goes on through earlier layers. Buckets start in index order on every
// rank (MPI needs the same order everywhere). At the end of backward (an autograd callback) the
// parameters that got no gradient on this rank count as zero, the remaining buckets start, all
// are waited for and the sums, divided by world_size(), are written back. Each bucket also
// carries one count per parameter of the ranks that produced a gradient: a parameter no rank
// used keeps an undefined grad(), as in a one-process run.
//
// Construct it after the module has its final dtype and device (the buckets are laid out then).
// An exception out of a backward leaves allreduces in flight that cannot be cancelled: treat it
// as fatal for the job (distributed::abort), as the examples do.
class DistributedDataParallel {
 public:
  struct Stats {
    int64_t steps = 0;             // backward passes synchronised
    int64_t buckets_early = 0;     // buckets whose allreduce started before backward ended
    int64_t buckets_late = 0;      // ... started only at the end of backward
    double exposed_seconds = 0;    // time at the end of backward spent starting, waiting for and
                                   // unpacking allreduces: communication not hidden by backward
  };

  explicit DistributedDataParallel(nn::Module& module, DistributedDataParallelOptions options = {})
      : module_(module), params_(module.parameters()) {
    detail::require_mpi("DistributedDataParallel");
    ATTN_CHECK(std::isfinite(options.bucket_cap_mb_) && options.bucket_cap_mb_ > 0,
               "DistributedDataParallel: bucket_cap_mb ", options.bucket_cap_mb_, " must be > 0");
    for (const Tensor& p : params_) detail::mpi_type(p, "DistributedDataParallel");
    if (options.broadcast_parameters_) distributed::broadcast_parameters(module, 0);
    world_ = world_size();
    // Buckets, last parameter first; a new bucket when the cap or the dtype would be crossed.
    const double cap = options.bucket_cap_mb_ * double(1 << 20);
    bucket_of_.assign(params_.size(), 0);
    offset_of_.assign(params_.size(), 0);
    for (size_t k = params_.size(); k-- > 0;) {
      const Tensor& p = params_[k];
      const double bytes = double(p.numel()) * double(dtype_size(p.dtype()));
      if (buckets_.empty() || buckets_.back().dtype != p.dtype() ||
          (buckets_.back().bytes + bytes > cap && !buckets_.back().params.empty()) ||
          buckets_.back().numel + p.numel() + int64_t(buckets_.back().params.size()) + 1 > INT_MAX)
        buckets_.emplace_back(p.dtype());
      Bucket& b = buckets_.back();
      bucket_of_[k] = buckets_.size() - 1;
      offset_of_[k] = b.numel;
      b.params.push_back(k);
      b.numel += p.numel();
      b.bytes += bytes;
    }
    for (Bucket& b : buckets_)  // gradients, then one "had a gradient" count per parameter
      b.flat = Tensor::zeros({b.numel + int64_t(b.params.size())}, b.dtype);
    ready_.assign(params_.size(), false);
    for (size_t k = 0; k < params_.size(); ++k)
      hooks_.push_back(params_[k].register_post_accumulate_grad_hook([this, k](Tensor&) { on_ready(k); }));
  }
  ~DistributedDataParallel() {
    for (size_t k = 0; k < params_.size(); ++k) params_[k].remove_post_accumulate_grad_hook(hooks_[k]);
  }
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  nn::Module& module() { return module_; }
  int64_t num_buckets() const { return int64_t(buckets_.size()); }
  const Stats& stats() const { return stats_; }
  void reset_stats() { stats_ = Stats(); }

 private:
  struct Bucket {
    explicit Bucket(DType d) : dtype(d) {}
    DType dtype;
    std::vector<size_t> params;  // indices into params_
    int64_t numel = 0;
    double bytes = 0;
    Tensor flat;
    size_t pending = 0;  // parameters not ready yet in this pass
    MPI_Request request = MPI_REQUEST_NULL;
  };

  void begin_pass() {
    in_pass_ = true;
    next_launch_ = 0;
    std::fill(ready_.begin(), ready_.end(), false);
    for (Bucket& b : buckets_) b.pending = b.params.size();
    autograd::queue_callback([this] { finish_pass(); });
  }
  void on_ready(size_t k) {
    if (!in_pass_) begin_pass();
    if (ready_[k]) return;
    ready_[k] = true;
    if (--buckets_[bucket_of_[k]].pending == 0)
      while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
        launch(next_launch_++);
        ++stats_.buckets_early;
      }
    // Open MPI moves non-blocking collectives forward only inside MPI calls: poke the ones in flight.
    for (size_t b = 0; b < next_launch_; ++b) {
      int done = 0;
      detail::check_mpi(MPI_Test(&buckets_[b].request, &done, MPI_STATUS_IGNORE), "DistributedDataParallel");
    }
  }
  void launch(size_t bi) {
    Bucket& b = buckets_[bi];
    ATTN_DISPATCH_FLOATING(b.dtype, "DistributedDataParallel", [&] {
      scalar_t* flat = b.flat.data<scalar_t>();
      for (size_t j = 0; j < b.params.size(); ++j) {
        const size_t k = b.params[j];
        const Tensor g = params_[k].grad();
        scalar_t* dst = flat + offset_of_[k];
        if (g.defined()) std::memcpy(dst, g.data<scalar_t>(), size_t(g.numel()) * sizeof(scalar_t));
        else std::fill(dst, dst + params_[k].numel(), scalar_t(0));
        flat[b.numel + int64_t(j)] = scalar_t(g.defined() ? 1 : 0);
      }
    });
    detail::check_mpi(MPI_Iallreduce(MPI_IN_PLACE, b.flat.raw_data(), int(b.flat.numel()),
                                     b.dtype == kFloat32 ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &b.request),
                      "DistributedDataParallel: allreduce");
  }
  void finish_pass() {
    const auto start = std::chrono::steady_clock::now();
    in_pass_ = false;
    // Parameters that got no gradient on this rank: zero, so the buckets match across ranks.
    for (Bucket& b : buckets_) b.pending = 0;
    stats_.buckets_late += int64_t(buckets_.size() - next_launch_);
    while (next_launch_ < buckets_.size()) launch(next_launch_++);
    NoGradGuard ng;
    for (Bucket& b : buckets_) {
      detail::wait(b.request, "DistributedDataParallel: allreduce");
      ATTN_DISPATCH_FLOATING(b.dtype, "DistributedDataParallel", [&] {
        const scalar_t* flat = b.flat.data<scalar_t>();
        for (size_t j = 0; j < b.params.size(); ++j) {
          Tensor& p = params_[b.params[j]];
          if (flat[b.numel + int64_t(j)] == scalar_t(0)) {  // no rank had a gradient
            p.zero_grad();
            continue;
          }
          Tensor g = p.grad();
          if (!g.defined()) {  // used on another rank only
            g = Tensor::empty(p.shape(), p.dtype());
            p.set_grad(g);
          }
          attn::detail::bump_version(g);
          scalar_t* dst = g.data<scalar_t>();
          const scalar_t* src = flat + offset_of_[b.params[j]];
          for (int64_t i = 0, n = p.numel(); i < n; ++i) dst[i] = scalar_t(src[i] / scalar_t(world_));
        }
      });
    }
    ++stats_.steps;
    stats_.exposed_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  nn::Module& module_;
  std::vector<Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<int64_t> offset_of_;
  std::vector<bool> ready_;
  std::vector<unsigned> hooks_;
  size_t next_launch_ = 0;
  bool in_pass_ = false;
  int world_ = 1;
  Stats stats_;
};

}  // namespace attn::distributed
