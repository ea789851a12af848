#pragma once
// Tensor: a handle (shared_ptr) to a TensorImpl that owns a shape, a dtype and a reference to a
// contiguous row-major Storage. Copying a Tensor shares storage and gradient, like torch::Tensor.
// Autograd state lives here too: leaves carry `requires_grad` and `grad`, results of ops carry
// `grad_fn`, the Node that knows how to send the output gradient back to the op's inputs.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "dtype.hpp"
#include "error.hpp"

namespace attn {

enum class Device { CPU, CUDA };
inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

namespace detail {
#if defined(__SANITIZE_ADDRESS__)
#define ATTN_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTN_UNDER_ASAN 1
#endif
#endif
#ifndef ATTN_UNDER_ASAN
#define ATTN_UNDER_ASAN 0
#endif

// Buffers from kMinBytes up are reused by exact size: training calls the same ops with the same
// shapes every step, and each fresh 4 KiB page costs a page fault (about 2 us on the VMs we
// measured). The C allocator returns big blocks (and the free top of its heap) to the system on
// free, so without the cache every step of a training loop faults its buffers in again: tens of
// milliseconds per call for a recurrent layer's saved states, seconds per training step of a
// per-step loop that saves a few hundred MB (bench_cells). Freed blocks are kept per size, at
// most kMaxBytes in all; when that is full, whole size classes go, least recently used first.
// empty_cache() returns everything to the system. Under AddressSanitizer the cache is off, so a
// use after free is reported for every buffer.
#ifndef ATTN_BLOCK_CACHE_MIN_BYTES
#define ATTN_BLOCK_CACHE_MIN_BYTES (size_t(16) << 10)
#endif
class BlockCache {
 public:
  static constexpr bool kEnabled = !ATTN_UNDER_ASAN;
  static constexpr size_t kMinBytes = ATTN_BLOCK_CACHE_MIN_BYTES, kMaxBytes = size_t(1) << 30;
  static BlockCache& get() {
    static BlockCache* c = new BlockCache();  // never destroyed: tensors may outlive main()
    return *c;
  }
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lk(m_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.blocks.empty()) {
        void* p = it->second.blocks.back();
        it->second.blocks.pop_back();
        it->second.last_use = ++tick_;
        held_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) {  // out of memory: give the cached blocks back and try once more
      release();
      p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
  void give(void* p, size_t bytes) {
    std::vector<void*> drop;  // freed after the lock is released
    {
      std::lock_guard<std::mutex> lk(m_);
      Bucket& mine = free_[bytes];
      mine.last_use = ++tick_;
      while (held_ + bytes > kMaxBytes) {  // evict the least recently used other size class
        auto lru = free_.end();
        for (auto it = free_.begin(); it != free_.end(); ++it)
          if (it->first != bytes && !it->second.blocks.empty() &&
              (lru == free_.end() || it->second.last_use < lru->second.last_use))
            lru = it;
        if (lru == free_.end()) break;
        held_ -= lru->first * lru->second.blocks.size();
        drop.insert(drop.end(), lru->second.blocks.begin(), lru->second.blocks.end());
        lru->second.blocks.clear();
      }
      if (held_ + bytes <= kMaxBytes) {
        mine.blocks.push_back(p);
        held_ += bytes;
        p = nullptr;
      }
    }
    for (void* q : drop) std::free(q);
    std::free(p);
  }
  // Returns every cached block to the system.
  void release() {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lk(m_);
      for (auto& [bytes, b] : free_) drop.insert(drop.end(), b.blocks.begin(), b.blocks.end());
      free_.clear();
      held_ = 0;
    }
    for (void* q : drop) std::free(q);
  }
  size_t held() {
    std::lock_guard<std::mutex> lk(m_);
    return held_;
  }

 private:
  struct Bucket {
    std::vector<void*> blocks;
    uint64_t last_use = 0;
  };
  std::mutex m_;
  std::unordered_map<size_t, Bucket> free_;
  size_t held_ = 0;
  uint64_t tick_ = 0;
};
// Buffers under BlockCache::kMinBytes: a per-thread free list per 64-byte size class. A chain of
// small ops allocates and frees a few buffers per op; the C allocator's aligned allocation
// (memalign) takes its slow path every time and fragments the heap (malloc_consolidate was a
// tenth of a tiny-op chain's time). At most kMaxHeld bytes are kept per thread; a block freed on
// another thread joins that thread's lists. Off under AddressSanitizer.
class SmallBlockPool {
 public:
  static constexpr size_t kClasses = BlockCache::kMinBytes / 64, kMaxHeld = size_t(8) << 20;
  // The calling thread's pool, or null once it has been destroyed (thread exit, static teardown).
  static SmallBlockPool* mine() {
    if (dead()) return nullptr;
    thread_local SmallBlockPool pool;
    return &pool;
  }
  // bytes: a multiple of 64 in (0, BlockCache::kMinBytes).
  void* take(size_t bytes) {
    std::vector<void*>& l = lists_[bytes / 64];
    if (!l.empty()) {
      void* p = l.back();
      l.pop_back();
      held_ -= bytes;
      return p;
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void give(void* p, size_t bytes) {
    if (held_ + bytes > kMaxHeld) return std::free(p);
    lists_[bytes / 64].push_back(p);
    held_ += bytes;
  }
  ~SmallBlockPool() {
    dead() = true;
    for (auto& l : lists_)
      for (void* p : l) std::free(p);
  }

 private:
  static bool& dead() {
    thread_local bool d = false;  // trivially destructible: readable after the pool is gone
    return d;
  }
  std::vector<void*> lists_[kClasses];
  size_t held_ = 0;
};

// The small objects every op creates with their shared_ptr control blocks (TensorImpl, Storage,
// Node: make_impl, make_storage, record) come from per-thread free lists of fixed-size blocks
// through PoolAllocator, instead of one malloc and free each (a chain of tiny ops spent half its
// time in the C allocator). At most kMaxFree blocks per size and thread are kept (a free list as
// long as a big training graph's would hand out blocks scattered over its heap: a tiny-op chain
// ran 2x slower after a sine-prediction training step with 65536). Off under AddressSanitizer.
template <size_t Size>
class FixedPool {
 public:
  static constexpr size_t kMaxFree = 1 << 12;
  static FixedPool* mine() {
    if (dead()) return nullptr;
    thread_local FixedPool pool;
    return &pool;
  }
  void* take() {
    if (free_.empty()) return ::operator new(Size);
    void* p = free_.back();
    free_.pop_back();
    return p;
  }
  void give(void* p) {
    if (free_.size() < kMaxFree) free_.push_back(p);
    else ::operator delete(p);
  }
  ~FixedPool() {
    dead() = true;
    for (void* p : free_) ::operator delete(p);
  }

 private:
  static bool& dead() {
    thread_local bool d = false;  // trivially destructible: readable after the pool is gone
    return d;
  }
  std::vector<void*> free_;
};

template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n == 1 && BlockCache::kEnabled)
      if (FixedPool<sizeof(T)>* pool = FixedPool<sizeof(T)>::mine()) return static_cast<T*>(pool->take());
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (n == 1 && BlockCache::kEnabled)
      if (FixedPool<sizeof(T)>* pool = FixedPool<sizeof(T)>::mine()) return pool->give(p);
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const PoolAllocator<U>&) const { return false; }
};

// Bytes of CPU tensor storage alive now and at most since the last reset.
class MemoryCounter {
 public:
  static MemoryCounter& get() {
    static MemoryCounter c;
    return c;
  }
  void add(int64_t bytes) {
    const int64_t now = current_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    int64_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void sub(int64_t bytes) { current_.fetch_sub(bytes, std::memory_order_relaxed); }
  int64_t current() const { return current_.load(std::memory_order_relaxed); }
  int64_t peak() const { return peak_.load(std::memory_order_relaxed); }
  void reset_peak() { peak_.store(current(), std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> current_{0}, peak_{0};
};
}  // namespace detail

// Memory held by CPU tensors (their storage buffers; kernels' small per-task scratch is not
// counted): bytes alive now, and the most alive at once since reset_peak_memory() (or start-up).
// Like torch.cuda.memory_allocated / max_memory_allocated, for the CPU.
// cached_bytes: freed buffers kept for reuse (not counted in current_bytes), as PyTorch's
// memory_reserved - memory_allocated; empty_cache() returns them to the system.
struct MemoryStats {
  int64_t current_bytes = 0, peak_bytes = 0, cached_bytes = 0;
};
inline MemoryStats memory_stats() {
  const auto& c = detail::MemoryCounter::get();
  return {c.current(), c.peak(), int64_t(detail::BlockCache::get().held())};
}
inline void reset_peak_memory() { detail::MemoryCounter::get().reset_peak(); }
inline void empty_cache() { detail::BlockCache::get().release(); }

// Raw buffer, 64-byte aligned so Eigen maps and SIMD loads are aligned.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::CPU;
  // Releases device memory; set by whoever allocated it (the CUDA backend) when not CPU.
  std::function<void(void*)> deleter;
  // Version counter (PyTorch's VariableVersion), shared by every view of this storage: each
  // in-place write bumps it, and a backward checks that the tensors it saved are still at the
  // version they had when the op was recorded.
  std::atomic<uint64_t> version{0};

  explicit Storage(size_t bytes) : nbytes(bytes) {
    const size_t rounded = ((bytes + 63) / 64) * 64;
    if (detail::BlockCache::kEnabled && rounded >= detail::BlockCache::kMinBytes) {
      data = detail::BlockCache::get().take(rounded);
      cached_bytes_ = rounded;
    } else if (detail::SmallBlockPool* pool = detail::BlockCache::kEnabled && rounded ? detail::SmallBlockPool::mine()
                                                                                   : nullptr) {
      data = pool->take(rounded);
      pooled_bytes_ = rounded;
    } else {
      data = rounded ? std::aligned_alloc(64, rounded) : nullptr;
      if (rounded && !data) throw std::bad_alloc();
    }
    detail::MemoryCounter::get().add(int64_t(nbytes));
  }
  Storage(void* ptr, size_t bytes, Device dev, std::function<void(void*)> del)
      : data(ptr), nbytes(bytes), device(dev), deleter(std::move(del)) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (deleter) {
      deleter(data);
      return;
    }
    detail::MemoryCounter::get().sub(int64_t(nbytes));
    if (cached_bytes_) {
      detail::BlockCache::get().give(data, cached_bytes_);
    } else if (detail::SmallBlockPool* pool = pooled_bytes_ ? detail::SmallBlockPool::mine() : nullptr) {
      pool->give(data, pooled_bytes_);
    } else {
      std::free(data);
    }
  }

 private:
  size_t cached_bytes_ = 0, pooled_bytes_ = 0;
};

class Tensor;
struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements; reshape/view of a tensor shares storage at the same offset
  Shape shape;
  DType dtype = DType::Float32;
  bool requires_grad = false;            // meaningful on leaves; results use grad_fn
  std::shared_ptr<TensorImpl> grad;      // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;         // op that produced this tensor, if tracked
  int output_nr = 0;                     // which output of grad_fn this is
  // Leaf hooks run by the engine once this leaf's gradient for the current backward pass is
  // complete (register_post_accumulate_grad_hook); a removed hook is left as an empty slot.
  std::vector<std::function<void(Tensor&)>> post_accumulate_grad_hooks;
};

namespace detail {
inline std::shared_ptr<TensorImpl> make_impl() { return std::allocate_shared<TensorImpl>(PoolAllocator<TensorImpl>()); }
template <class... Args>
std::shared_ptr<Storage> make_storage(Args&&... args) {
  return std::allocate_shared<Storage>(PoolAllocator<Storage>(), std::forward<Args>(args)...);
}
}  // namespace detail

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories ----
  static Tensor empty(const Shape& shape, DType dtype = kFloat32);
  static Tensor zeros(const Shape& shape, DType dtype = kFloat32);
  static Tensor ones(const Shape& shape, DType dtype = kFloat32);
  static Tensor full(const Shape& shape, double value, DType dtype = kFloat32);
  static Tensor randn(const Shape& shape, DType dtype = kFloat32);
  static Tensor rand(const Shape& shape, DType dtype = kFloat32);  // uniform [0, 1)
  static Tensor arange(double start, double end, double step = 1.0, DType dtype = kFloat32);
  static Tensor arange(int64_t end, DType dtype = kFloat32) { return arange(0.0, double(end), 1.0, dtype); }
  static Tensor scalar(double value, DType dtype = kFloat32) { return full({}, value, dtype); }
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<bool>& values, const Shape& shape);
  template <class T>
  static Tensor from_vector(const std::vector<T>& values) { return from_vector(values, {int64_t(values.size())}); }

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  Shape sizes() const { return impl().shape; }
  int64_t dim() const { return int64_t(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return numel_of(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage ? impl().storage->device : Device::CPU; }
  bool is_floating_point() const { return is_floating(dtype()); }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  // In-place writes to this tensor's storage so far (any view's), as PyTorch's `_version`.
  int64_t _version() const { return impl().storage ? int64_t(impl().storage->version.load(std::memory_order_relaxed)) : 0; }

  // ---- data access ----
  template <class T> T* data() const;
  void* raw_data() const {
    return static_cast<char*>(impl().storage->data) + impl().offset * int64_t(dtype_size(dtype()));
  }
  template <class T = float> std::vector<T> to_vector() const;
  template <class T = float> T item() const;
  double at(std::initializer_list<int64_t> index) const;       // element access for tests
  void set(std::initializer_list<int64_t> index, double value);  // no autograd

  // ---- autograd ----
  Tensor& requires_grad_(bool on = true);
  bool requires_grad() const { return impl().requires_grad || impl().grad_fn != nullptr; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad() { impl_->grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;
  // Runs hook(leaf) during backward once every gradient this pass sends to this leaf has been
  // added into grad() (PyTorch's register_post_accumulate_grad_hook); not run for a leaf that gets
  // no gradient in a pass. Returns a handle for remove_post_accumulate_grad_hook.
  unsigned register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook);
  void remove_post_accumulate_grad_hook(unsigned handle);
  Tensor detach() const;  // shares storage, no history

  // ---- copies and conversions ----
  Tensor clone() const;                    // deep copy, differentiable
  Tensor to(DType dtype) const;            // converted copy (differentiable between floats)
  Tensor to(Device device) const;          // copy on `device` (core/device.hpp; CUDA needs ATTN_WITH_CUDA)
  // In-place writes (no autograd: use under NoGradGuard); each bumps _version().
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor contiguous() const { return *this; }  // storage is always contiguous

  // ---- common ops as methods (free functions in attn:: are the reference) ----
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor sum() const;
  Tensor sum(int64_t dim, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(int64_t dim, bool keepdim = false) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor relu() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor pow(double e) const;
  Tensor matmul(const Tensor& o) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor neg() const;
  Tensor operator-() const { return neg(); }

  std::string to_string() const;

 private:
  TensorImpl& impl() const {
    if (!impl_) throw std::logic_error("attn: use of an undefined Tensor");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

// ---- grad mode ----
inline bool& grad_mode_enabled_flag() {
  thread_local bool enabled = true;
  return enabled;
}
inline bool is_grad_enabled() { return grad_mode_enabled_flag(); }

// Disables graph recording in its scope: inference, optimizer updates, in-place edits.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_mode_enabled_flag()) { grad_mode_enabled_flag() = false; }
  ~NoGradGuard() { grad_mode_enabled_flag() = prev_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Turns graph recording on in its scope, inside a NoGradGuard or a backward (torch.enable_grad):
// activation checkpointing recomputes its forward this way during backward.
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(grad_mode_enabled_flag()) { grad_mode_enabled_flag() = true; }
  ~EnableGradGuard() { grad_mode_enabled_flag() = prev_; }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// ---- anomaly detection ----
// When on, every recorded op checks its outputs and every backward step checks the gradients
// it produces for NaN/Inf, and throws AnomalyError naming the op where they first appeared.
struct AnomalyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A process-wide flag, read by every op: atomic, so it may be switched while other threads run ops.
inline std::atomic<bool>& anomaly_flag() {
  static std::atomic<bool> on{false};
  return on;
}
inline void set_detect_anomaly(bool on) { anomaly_flag().store(on, std::memory_order_relaxed); }
inline bool is_anomaly_enabled() { return anomaly_flag().load(std::memory_order_relaxed); }
namespace detail {
void check_finite(const Tensor& t, const std::string& op, const char* what);
}

// ---- autograd graph node ----
// A node holds its inputs (the graph's edges) and a closure that maps the gradients of its
// outputs to gradients of its inputs (undefined where an input needs none). The engine sums
// what several consumers send to one tensor; the closures never accumulate themselves.
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

namespace detail {
// Marks an in-place write to t's storage (see Storage::version). Every in-place write calls it:
// copy_, fill_, set, the optimizers' steps, clip_grad_norm_, nn::init; a kernel that writes
// through data<T>() into an existing tensor must call it too.
inline void bump_version(const Tensor& t) {
  if (t.defined() && t.unsafe_impl()->storage) t.unsafe_impl()->storage->version.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace detail

// A tensor a backward reads: its storage, the storage's version when the op was recorded, and
// which input or output of the node it is (-1: neither, e.g. a mask), for the error message (an
// output's dtype and shape are kept here, as the node does not keep its outputs).
struct SavedVersion {
  std::shared_ptr<Storage> storage;
  uint64_t version = 0;
  int input = -1, output = -1;
  DType output_dtype = DType::Float32;
  Shape output_shape;
};

struct Node {
  std::string name;
  std::vector<Tensor> inputs;
  BackwardFn backward;
  int num_outputs = 1;
  std::vector<Tensor> grad_outputs;  // filled by the engine during a backward pass
  std::vector<SavedVersion> saved;   // checked by the engine before `backward` runs
  // The engine's count of edges into this node from the graph of the current backward pass
  // (valid while deps_pass is that pass's number): no hash map of nodes per pass.
  int deps = 0;
  uint64_t deps_pass = 0;

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Frees a deep graph that was never backpropagated without recursing once per node (a chain
  // of 100,000 ops would overflow the stack): nodes that only this one keeps alive are unlinked
  // into an explicit stack and emptied there. The closure goes first, so the inputs it captured
  // are still held by `inputs` and die in the loop, not inside the closure's destructor.
  ~Node() {
    backward = nullptr;
    grad_outputs.clear();
    std::vector<std::shared_ptr<Node>> pending;
    auto unlink = [&pending](std::vector<Tensor>& ins) {
      for (Tensor& t : ins) {
        TensorImpl* impl = t.unsafe_impl();
        if (impl && impl->grad_fn && t.impl_ptr().use_count() == 1 && impl->grad_fn.use_count() == 1)
          pending.push_back(std::move(impl->grad_fn));
      }
      ins.clear();
    };
    unlink(inputs);
    while (!pending.empty()) {
      std::shared_ptr<Node> n = std::move(pending.back());
      pending.pop_back();
      n->backward = nullptr;
      n->grad_outputs.clear();
      unlink(n->inputs);
    }  // each n dies here with no inputs left, so its own destructor does not recurse
  }
};

// True when record() would record an op on these inputs: grad mode is on and some input requires
// grad. Fused ops ask first so that, in inference, they skip saving what only a backward reads.
inline bool grad_needed(const std::vector<Tensor>& inputs) {
  if (!is_grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace detail {
inline void record_node(const char* name, const std::vector<Tensor*>& outputs, std::vector<Tensor> inputs,
                        BackwardFn fn, const std::initializer_list<Tensor>* saved) {
  if (is_anomaly_enabled())
    for (Tensor* o : outputs) detail::check_finite(*o, name, "forward output");
  if (!grad_needed(inputs)) return;
  auto node = std::allocate_shared<Node>(PoolAllocator<Node>());
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(fn);
  node->num_outputs = int(outputs.size());
  auto save = [&node, &outputs](const Tensor& t) {
    const TensorImpl* s = t.unsafe_impl();
    if (!s || !s->storage) return;
    SavedVersion v;
    v.storage = s->storage;
    v.version = s->storage->version.load(std::memory_order_relaxed);
    for (size_t i = 0; i < node->inputs.size() && v.input < 0; ++i)
      if (node->inputs[i].unsafe_impl() == s) v.input = int(i);
    for (size_t i = 0; i < outputs.size() && v.input < 0 && v.output < 0; ++i)
      if (outputs[i]->unsafe_impl() == s) {
        v.output = int(i);
        v.output_dtype = s->dtype;
        v.output_shape = s->shape;
      }
    node->saved.push_back(std::move(v));
  };
  if (saved) {
    node->saved.reserve(saved->size());
    for (const Tensor& t : *saved) save(t);
  } else {
    node->saved.reserve(node->inputs.size());
    for (const Tensor& t : node->inputs) save(t);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* o = outputs[i]->unsafe_impl();
    o->grad_fn = node;
    o->output_nr = int(i);
  }
}
}  // namespace detail

// Records `outputs` as produced by op `name` from `inputs`, when grad_needed(inputs). Saved
// tensors captured by `fn` must not be the outputs themselves (a cycle): capture `out.detach()`.
// `saved` lists every tensor `fn` reads (inputs, outputs, masks; undefined ones are skipped):
// the engine refuses to run `fn` if one of them was written in place after the forward. Without
// `saved`, `fn` is taken to read all of its inputs.
inline void record(const char* name, const std::vector<Tensor*>& outputs, std::vector<Tensor> inputs, BackwardFn fn,
                   std::initializer_list<Tensor> saved) {
  detail::record_node(name, outputs, std::move(inputs), std::move(fn), &saved);
}
inline void record(const char* name, const std::vector<Tensor*>& outputs, std::vector<Tensor> inputs, BackwardFn fn) {
  detail::record_node(name, outputs, std::move(inputs), std::move(fn), nullptr);
}
inline Tensor record(const char* name, Tensor out, std::vector<Tensor> inputs, BackwardFn fn,
                     std::initializer_list<Tensor> saved) {
  detail::record_node(name, {&out}, std::move(inputs), std::move(fn), &saved);
  return out;
}
inline Tensor record(const char* name, Tensor out, std::vector<Tensor> inputs, BackwardFn fn) {
  detail::record_node(name, {&out}, std::move(inputs), std::move(fn), nullptr);
  return out;
}

}  // namespace attn

#include "functions.hpp"
#include "tensor_impl.hpp"
