#pragma once
// Autograd state outside the tensor: grad mode and its guards, anomaly detection, the graph Node,
// record() (how an op adds its node), the version counter checks' saved state, and the hooks a
// backward pass runs (post-accumulate-grad hooks, queue_callback). The engine that walks the
// graph is core/engine.hpp.
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"
#include "storage.hpp"
#include "tensor_impl.hpp"

namespace attn {

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

// For user code that writes into a tensor through data<T>() (PyTorch's
// torch.autograd.graph.increment_version): marks the write, so a backward that saved the tensor
// throws instead of using the new values, and the small-batch products stop using their kept copy
// of a parameter's transpose (ops/matmul.hpp, transposed_parameter).
inline void increment_version(const Tensor& t) { detail::bump_version(t); }

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
// What every record() below does (defined at the end of this file).
ATTN_API void record_node(const char* name, Tensor* const* outputs, size_t n_outputs, std::vector<Tensor> inputs,
                          BackwardFn fn, const std::initializer_list<Tensor>* saved);
}  // namespace detail

// Records `outputs` as produced by op `name` from `inputs`, when grad_needed(inputs). Saved
// tensors captured by `fn` must not be the outputs themselves (a cycle): capture `out.detach()`.
// `saved` lists every tensor `fn` reads (inputs, outputs, masks; undefined ones are skipped):
// the engine refuses to run `fn` if one of them was written in place after the forward. Without
// `saved`, `fn` is taken to read all of its inputs.
inline void record(const char* name, const std::vector<Tensor*>& outputs, std::vector<Tensor> inputs, BackwardFn fn,
                   std::initializer_list<Tensor> saved) {
  detail::record_node(name, outputs.data(), outputs.size(), std::move(inputs), std::move(fn), &saved);
}
inline void record(const char* name, const std::vector<Tensor*>& outputs, std::vector<Tensor> inputs, BackwardFn fn) {
  detail::record_node(name, outputs.data(), outputs.size(), std::move(inputs), std::move(fn), nullptr);
}
inline Tensor record(const char* name, Tensor out, std::vector<Tensor> inputs, BackwardFn fn,
                     std::initializer_list<Tensor> saved) {
  Tensor* const o = &out;
  detail::record_node(name, &o, 1, std::move(inputs), std::move(fn), &saved);
  return out;
}
inline Tensor record(const char* name, Tensor out, std::vector<Tensor> inputs, BackwardFn fn) {
  Tensor* const o = &out;
  detail::record_node(name, &o, 1, std::move(inputs), std::move(fn), nullptr);
  return out;
}

// ---- hooks run by a backward pass ----
inline unsigned Tensor::register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) {
  ATTN_CHECK(is_leaf() && requires_grad(), "register_post_accumulate_grad_hook: only a leaf that requires grad has "
             "an accumulated gradient; this tensor is ", is_leaf() ? "a leaf without requires_grad" : "not a leaf");
  ATTN_CHECK(bool(hook), "register_post_accumulate_grad_hook: empty hook");
  impl_->post_accumulate_grad_hooks.push_back(std::move(hook));
  return unsigned(impl_->post_accumulate_grad_hooks.size() - 1);
}
inline void Tensor::remove_post_accumulate_grad_hook(unsigned handle) {
  auto& hooks = impl().post_accumulate_grad_hooks;
  ATTN_CHECK(handle < hooks.size() && hooks[handle], "remove_post_accumulate_grad_hook: no hook with handle ", handle);
  hooks[handle] = nullptr;
}

namespace autograd {
namespace detail {
// Callbacks queued during the current backward pass of this thread (see queue_callback).
inline std::vector<std::function<void()>>*& queued_callbacks() {
  thread_local std::vector<std::function<void()>>* queue = nullptr;
  return queue;
}
}  // namespace detail
// Runs fn once the backward pass now running on this thread has finished (all gradients
// accumulated, all hooks run), like PyTorch's Variable._execution_engine.queue_callback. Call it
// from a hook; outside a backward it throws. Callbacks do not run if the pass throws.
inline void queue_callback(std::function<void()> fn) {
  ATTN_CHECK(detail::queued_callbacks() != nullptr, "queue_callback: no backward pass is running on this thread");
  detail::queued_callbacks()->push_back(std::move(fn));
}
}  // namespace autograd

namespace detail {
inline void run_post_accumulate_grad_hooks(const Tensor& leaf) {
  Tensor t = leaf;
  // By index: a hook may register further hooks on the same leaf (they run from the next pass).
  const size_t n = leaf.unsafe_impl()->post_accumulate_grad_hooks.size();
  for (size_t i = 0; i < n; ++i)
    if (auto hook = leaf.unsafe_impl()->post_accumulate_grad_hooks[i]) hook(t);
}
// Installs this pass's callback queue for the backward's scope (restoring an outer pass's queue,
// if a hook itself runs a backward) and runs the callbacks in order at finish().
class CallbackScope {
 public:
  CallbackScope() : outer_(autograd::detail::queued_callbacks()) { autograd::detail::queued_callbacks() = &queue_; }
  ~CallbackScope() { autograd::detail::queued_callbacks() = outer_; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
  void finish() {
    for (size_t i = 0; i < queue_.size(); ++i) queue_[i]();  // a callback may queue another
  }

 private:
  std::vector<std::function<void()>> queue_;
  std::vector<std::function<void()>>* outer_;
};
}  // namespace detail

}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
namespace attn {
namespace detail {
// outputs: n_outputs pointers (an array, not a vector: a single-output op, the usual case,
// records without allocating one).
ATTN_API void record_node(const char* name, Tensor* const* outputs, size_t n_outputs, std::vector<Tensor> inputs,
                        BackwardFn fn, const std::initializer_list<Tensor>* saved) {
  if (is_anomaly_enabled())
    for (size_t i = 0; i < n_outputs; ++i) detail::check_finite(*outputs[i], name, "forward output");
  if (!grad_needed(inputs)) return;
  auto node = std::allocate_shared<Node>(PoolAllocator<Node>());
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(fn);
  node->num_outputs = int(n_outputs);
  auto save = [&node, outputs, n_outputs](const Tensor& t) {
    const TensorImpl* s = t.unsafe_impl();
    if (!s || !s->storage) return;
    SavedVersion v;
    v.storage = s->storage;
    v.version = s->storage->version.load(std::memory_order_relaxed);
    for (size_t i = 0; i < node->inputs.size() && v.input < 0; ++i)
      if (node->inputs[i].unsafe_impl() == s) v.input = int(i);
    for (size_t i = 0; i < n_outputs && v.input < 0 && v.output < 0; ++i)
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
  for (size_t i = 0; i < n_outputs; ++i) {
    TensorImpl* o = outputs[i]->unsafe_impl();
    o->grad_fn = node;
    o->output_nr = int(i);
  }
}
}  // namespace detail
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
