#pragma once
// Definitions of Tensor's members and of the backward engine. Included by tensor.hpp.
#include <cmath>
#include <sstream>
#include <unordered_map>

#include "parallel.hpp"
#include "random.hpp"
#include "shapes.hpp"
#include "tensor.hpp"

namespace attn {

#ifdef ATTN_WITH_CUDA
namespace detail {  // CUDA hooks, defined in core/device.hpp
Tensor cuda_clone(const Tensor& x);
void cuda_copy_(Tensor& dst, const Tensor& src);
void cuda_accumulate(std::shared_ptr<TensorImpl>& slot, const Tensor& g);
}  // namespace detail
#endif

namespace detail {
// A shape for a new tensor: sizes >= 0, and an element count and a byte size that fit in int64.
inline int64_t check_shape(const Shape& shape, const char* op, DType dtype = kFloat32) {
  const int64_t n = checked_numel(shape, op);
  ATTN_CHECK(n <= std::numeric_limits<int64_t>::max() / int64_t(dtype_size(dtype)), op, ": shape ",
             attn::to_string(shape), " of ", dtype_name(dtype), " needs more than 2^63 - 1 bytes");
  return n;
}
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op, const Shape& shape) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  ATTN_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " out of range for shape ", attn::to_string(shape));
  return dim < 0 ? dim + n : dim;
}
// dst = src, same shape and dtype. Empty tensors have no buffer: memcpy must not see their null.
inline void copy_bytes(const Tensor& dst, const Tensor& src) {
  if (src.numel() > 0) std::memcpy(dst.raw_data(), src.raw_data(), size_t(src.numel()) * dtype_size(src.dtype()));
}
template <class T>
void fill(T* p, int64_t n, T v) {
  parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
}
}  // namespace detail

inline Tensor Tensor::empty(const Shape& shape, DType dtype) {
  const int64_t n = detail::check_shape(shape, "empty", dtype);
  auto impl = detail::make_impl();
  impl->storage = detail::make_storage(size_t(n) * dtype_size(dtype));
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// Each factory checks the shape under its own name, so a negative size names the call made.
inline Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  detail::check_shape(shape, "full", dtype);
  Tensor t = empty(shape, dtype);
  ATTN_DISPATCH_ALL(dtype, "full", [&] { detail::fill(t.data<scalar_t>(), t.numel(), scalar_t(value)); });
  return t;
}
inline Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  detail::check_shape(shape, "zeros", dtype);
  Tensor t = empty(shape, dtype);
  if (t.numel() > 0) std::memset(t.raw_data(), 0, size_t(t.numel()) * dtype_size(dtype));  // data is null when empty
  return t;
}
inline Tensor Tensor::ones(const Shape& shape, DType dtype) {
  detail::check_shape(shape, "ones", dtype);
  return full(shape, 1.0, dtype);
}

inline Tensor Tensor::randn(const Shape& shape, DType dtype) {
  detail::check_shape(shape, "randn", dtype);
  Tensor t = empty(shape, dtype);
  ATTN_DISPATCH_FLOATING(dtype, "randn", [&] {
    scalar_t* p = t.data<scalar_t>();
    auto g = default_generator().lock();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = scalar_t(g.normal());
  });
  return t;
}
inline Tensor Tensor::rand(const Shape& shape, DType dtype) {
  detail::check_shape(shape, "rand", dtype);
  Tensor t = empty(shape, dtype);
  ATTN_DISPATCH_FLOATING(dtype, "rand", [&] {
    scalar_t* p = t.data<scalar_t>();
    auto g = default_generator().lock();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = scalar_t(g.uniform());
  });
  return t;
}
inline Tensor Tensor::arange(double start, double end, double step, DType dtype) {
  ATTN_CHECK(step != 0.0 && (end - start) / step >= 0, "arange: bad range start=", start, " end=", end,
             " step=", step);
  const double count = std::ceil((end - start) / step);
  ATTN_CHECK(count < 0x1p63, "arange: start=", start, " end=", end, " step=", step, " gives ", count,
             " elements, more than 2^63 - 1");
  const int64_t n = int64_t(count);
  Tensor t = empty({n}, dtype);
  ATTN_DISPATCH_ALL(dtype, "arange", [&] {
    scalar_t* p = t.data<scalar_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = scalar_t(start + double(i) * step);
  });
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  ATTN_CHECK(int64_t(values.size()) == detail::check_shape(shape, "from_vector", dtype_of<T>::value), "from_vector: ", values.size(),
             " values do not fill shape ", attn::to_string(shape));
  Tensor t = empty(shape, dtype_of<T>::value);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}
inline Tensor Tensor::from_vector(const std::vector<bool>& values, const Shape& shape) {
  ATTN_CHECK(int64_t(values.size()) == detail::check_shape(shape, "from_vector", kBool), "from_vector: ", values.size(),
             " values do not fill shape ", attn::to_string(shape));
  Tensor t = empty(shape, kBool);
  uint8_t* p = t.data<uint8_t>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i] ? 1 : 0;
  return t;
}

inline int64_t Tensor::size(int64_t d) const {
  return shape()[size_t(detail::wrap_dim(d, dim(), "size", shape()))];
}

template <class T>
T* Tensor::data() const {
  if (dtype_of<T>::value != dtype())
    throw std::invalid_argument(std::string("data<T>: tensor has dtype ") + dtype_name(dtype()) +
                                ", requested " + dtype_name(dtype_of<T>::value));
  if (device() != Device::CPU)
    throw std::invalid_argument("data<T>: tensor lives on " + std::string(device_name(device())) +
                                "; call .to(Device::CPU) first");
  return static_cast<T*>(raw_data());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  if (device() != Device::CPU) return detach().to(Device::CPU).to_vector<T>();  // one device-to-host copy
  std::vector<T> out(static_cast<size_t>(numel()));
  ATTN_DISPATCH_ALL(dtype(), "to_vector", [&] {
    const scalar_t* p = data<scalar_t>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(p[i]);
  });
  return out;
}

template <class T>
T Tensor::item() const {
  ATTN_CHECK(numel() == 1, "item: tensor of shape ", attn::to_string(shape()), " has ", numel(),
             " elements, expected 1");
  return to_vector<T>()[0];
}

namespace detail {
inline int64_t flat_index(const Shape& shape, std::initializer_list<int64_t> index, const char* op) {
  ATTN_CHECK(index.size() == shape.size(), op, ": ", index.size(), " indices for shape ", attn::to_string(shape));
  int64_t flat = 0, d = 0;
  for (int64_t i : index) {
    ATTN_CHECK(i >= 0 && i < shape[size_t(d)], op, ": index ", i, " out of range for dim ", d,
               " of shape ", attn::to_string(shape));
    flat = flat * shape[size_t(d++)] + i;
  }
  return flat;
}
}  // namespace detail

inline double Tensor::at(std::initializer_list<int64_t> index) const {
  const int64_t i = detail::flat_index(shape(), index, "at");
  return ATTN_DISPATCH_ALL(dtype(), "at", [&] { return double(data<scalar_t>()[i]); });
}
inline void Tensor::set(std::initializer_list<int64_t> index, double value) {
  const int64_t i = detail::flat_index(shape(), index, "set");
  detail::bump_version(*this);
  ATTN_DISPATCH_ALL(dtype(), "set", [&] { data<scalar_t>()[i] = scalar_t(value); });
}

inline Tensor& Tensor::fill_(double value) {
  detail::bump_version(*this);
  ATTN_DISPATCH_ALL(dtype(), "fill_", [&] { detail::fill(data<scalar_t>(), numel(), scalar_t(value)); });
  return *this;
}

inline Tensor& Tensor::requires_grad_(bool on) {
  ATTN_CHECK(!on || is_floating_point(), "requires_grad_: only floating tensors can require grad, got ",
             dtype_name(dtype()));
  ATTN_CHECK(is_leaf(), "requires_grad_: only leaf tensors can be marked; this one comes from ",
             grad_fn()->name);
  impl_->requires_grad = on;
  return *this;
}

inline Tensor Tensor::detach() const {
  auto impl = detail::make_impl();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

inline Tensor& Tensor::copy_(const Tensor& src) {
  ATTN_CHECK(src.shape() == shape(), "copy_: source shape ", attn::to_string(src.shape()),
             " differs from destination shape ", attn::to_string(shape()));
  ATTN_CHECK(!(is_grad_enabled() && requires_grad() && is_leaf()),
             "copy_: in-place write to a leaf that requires grad; wrap it in NoGradGuard");
  detail::bump_version(*this);
#ifdef ATTN_WITH_CUDA
  if (device() != Device::CPU || src.device() != Device::CPU) return detail::cuda_copy_(*this, src), *this;
#endif
  if (src.dtype() == dtype()) {
    detail::copy_bytes(*this, src);
  } else {
    ATTN_DISPATCH_ALL(dtype(), "copy_", [&] {
      using dst_t = scalar_t;
      dst_t* d = data<dst_t>();
      ATTN_DISPATCH_ALL(src.dtype(), "copy_", [&] {
        const scalar_t* s = src.data<scalar_t>();
        // To bool: nonzero -> 1 (a plain cast of -2.0 to uint8_t is 254, or undefined behaviour).
        const bool to_bool = dtype() == DType::Bool;
        for (int64_t i = 0, n = numel(); i < n; ++i)
          d[i] = to_bool ? dst_t(s[i] != scalar_t(0)) : static_cast<dst_t>(s[i]);
      });
    });
  }
  return *this;
}

// clone(x) = x; dL/dx = g
inline Tensor Tensor::clone() const {
#ifdef ATTN_WITH_CUDA
  if (device() != Device::CPU) return detail::cuda_clone(*this);
#endif
  Tensor out = empty(shape(), dtype());
  detail::copy_bytes(out, *this);
  return record("clone", out, {*this}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; }, {});
}

// to(x, dtype) = x converted; dL/dx = g converted back
inline Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target);
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  if (!is_floating(target)) return out;
  const DType src = dtype();
  return record("to", out, {*this}, [src](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].to(src)}; }, {});
}

namespace detail {
inline void check_finite(const Tensor& t, const std::string& op, const char* what) {
  if (!t.defined() || !t.is_floating_point()) return;
  ATTN_DISPATCH_FLOATING(t.dtype(), "check_finite", [&] {
    const scalar_t* p = t.data<scalar_t>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i)
      if (!std::isfinite(p[i]))
        throw AnomalyError("anomaly: " + op + " produced " + (std::isnan(p[i]) ? "NaN" : "Inf") + " in its " + what +
                           " of shape " + attn::to_string(t.shape()) + " at flat index " + std::to_string(i));
  });
}
}  // namespace detail

// ---- backward engine ----
namespace detail {
// Refuses to run a node's backward when a tensor it saved was written in place after the forward
// (its gradient would be silently wrong), with PyTorch's message.
inline void check_saved_versions(const Node& n) {
  for (const SavedVersion& s : n.saved) {
    const uint64_t now = s.storage->version.load(std::memory_order_relaxed);
    if (now == s.version) continue;
    std::string which = "a tensor it saved (mask or intermediate)";
    if (s.input >= 0) {
      const Tensor& t = n.inputs[size_t(s.input)];
      which = "input " + std::to_string(s.input) + " (" + dtype_name(t.dtype()) + " " + attn::to_string(t.shape()) + ")";
    } else if (s.output >= 0) {
      which = "output " + std::to_string(s.output) + " (" + dtype_name(s.output_dtype) + " " +
              attn::to_string(s.output_shape) + ")";
    }
    throw std::runtime_error("backward of " + n.name + ": one of the variables needed for gradient computation has "
                             "been modified by an inplace operation: " + which + " of " + n.name + " is at version " +
                             std::to_string(now) + "; expected version " + std::to_string(s.version) +
                             " instead. It was written in place (copy_, fill_, set, an optimizer step) after the "
                             "forward; clone() it before the in-place write");
  }
}

// Adds g into an accumulating slot (a node's grad_outputs entry or a leaf's grad).
inline void accumulate(std::shared_ptr<TensorImpl>& slot, const Tensor& g) {
#ifdef ATTN_WITH_CUDA
  if (g.device() != Device::CPU || (slot && slot->storage && slot->storage->device != Device::CPU))
    return cuda_accumulate(slot, g);
#endif
  if (!slot) {
    // Take the gradient's buffer when the engine holds the only reference to it and to its storage
    // (the usual case: a backward's freshly computed result). Otherwise copy: it may alias a tensor
    // the user holds, a saved tensor, or another input's gradient.
    const TensorImpl* gi = g.unsafe_impl();
    if (g.impl_ptr().use_count() == 1 && gi->storage.use_count() == 1 && !gi->grad_fn && !gi->requires_grad &&
        !gi->grad) {
      slot = g.impl_ptr();
      return;
    }
    Tensor copy = Tensor::empty(g.shape(), g.dtype());
    copy_bytes(copy, g);
    slot = copy.impl_ptr();
    return;
  }
  Tensor acc(slot);
  ATTN_CHECK(acc.shape() == g.shape(), "backward: gradient of shape ", to_string(g.shape()),
             " does not match accumulated shape ", to_string(acc.shape()));
  bump_version(acc);
  ATTN_DISPATCH_FLOATING(acc.dtype(), "backward", [&] {
    scalar_t* a = acc.data<scalar_t>();
    const scalar_t* b = g.data<scalar_t>();
    parallel_for(0, acc.numel(), 1 << 15, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) a[i] += b[i];
    });
  });
}
}  // namespace detail

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

// Runs backward from this tensor. The graph is walked iteratively in topological order (Kahn's
// algorithm on dependency counts), so depth is bounded by memory, not by the call stack.
inline void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  ATTN_CHECK(requires_grad(), "backward: tensor does not require grad and has no grad_fn");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    ATTN_CHECK(numel() == 1, "backward: implicit gradient needs a scalar output, got shape ",
               attn::to_string(shape()), "; pass a gradient of that shape");
    seed = Tensor::ones(shape(), dtype());
  }
  ATTN_CHECK(seed.shape() == shape(), "backward: gradient of shape ", attn::to_string(seed.shape()),
             " for output of shape ", attn::to_string(shape()));
#ifdef ATTN_WITH_CUDA
  if (seed.device() != device()) seed = seed.detach().to(device());  // the seed lives where the output does
#endif
  NoGradGuard no_grad;
  detail::CallbackScope callbacks;
  if (is_leaf()) {
    detail::accumulate(impl_->grad, seed);
    if (!impl_->post_accumulate_grad_hooks.empty()) detail::run_post_accumulate_grad_hooks(*this);
    callbacks.finish();
    return;
  }
  // Count, for each node, how many edges from other nodes in this graph point to it (Node::deps,
  // tagged with this pass's number so counts left by an earlier, interrupted pass are ignored).
  static std::atomic<uint64_t> passes{0};
  const uint64_t pass = passes.fetch_add(1, std::memory_order_relaxed) + 1;
  std::vector<Node*> stack{grad_fn().get()};
  grad_fn()->deps = 0;
  grad_fn()->deps_pass = pass;
  // Leaves with post-accumulate hooks: edges into each still to be processed, and whether one of
  // them brought a gradient. Empty (no allocation) when no leaf has hooks.
  struct LeafDeps {
    int edges = 0;
    bool got_grad = false;
  };
  std::unordered_map<const TensorImpl*, LeafDeps> hooked_leaves;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Tensor& in : n->inputs) {
      if (in.defined() && !in.grad_fn() && !in.unsafe_impl()->post_accumulate_grad_hooks.empty())
        ++hooked_leaves[in.unsafe_impl()].edges;
      if (!in.defined() || !in.grad_fn()) continue;
      Node* m = in.grad_fn().get();
      if (m->deps_pass != pass) {
        m->deps_pass = pass;
        m->deps = 1;
        stack.push_back(m);
      } else {
        ++m->deps;
      }
    }
  }
  auto root = grad_fn();
  root->grad_outputs.assign(size_t(root->num_outputs), Tensor());
  {
    std::shared_ptr<TensorImpl> slot;
    detail::accumulate(slot, seed.to(dtype()));
    root->grad_outputs[size_t(impl_->output_nr)] = Tensor(slot);
  }
  // shared_ptrs: clearing a node's inputs may drop the last other owner of a queued node.
  std::vector<std::shared_ptr<Node>> ready{root};
  while (!ready.empty()) {
    std::shared_ptr<Node> n = std::move(ready.back());
    ready.pop_back();
    if (!n->backward) throw std::logic_error("backward: graph of " + n->name +
                                             " was already freed; use retain_graph=true to call backward twice");
    bool any = false;
    for (size_t i = 0; i < n->grad_outputs.size(); ++i) any = any || n->grad_outputs[i].defined();
    std::vector<Tensor> grads;
    if (any) {
      detail::check_saved_versions(*n);
      grads = n->backward(n->grad_outputs);
    }
    if (is_anomaly_enabled())
      for (const Tensor& g : grads)
        if (g.defined()) detail::check_finite(g, n->name, "backward gradient");
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Tensor& in = n->inputs[i];
      if (!in.defined()) continue;
      const bool has_grad = i < grads.size() && grads[i].defined() && in.requires_grad();
      if (in.grad_fn()) {
        const std::shared_ptr<Node>& m = in.grad_fn();
        if (has_grad) {
          if (m->grad_outputs.size() != size_t(m->num_outputs)) m->grad_outputs.resize(size_t(m->num_outputs));
          std::shared_ptr<TensorImpl> slot = m->grad_outputs[size_t(in.unsafe_impl()->output_nr)].impl_ptr();
          detail::accumulate(slot, grads[i]);
          m->grad_outputs[size_t(in.unsafe_impl()->output_nr)] = Tensor(slot);
        }
        if (--m->deps == 0) ready.push_back(m);
      } else {
        if (has_grad) detail::accumulate(in.unsafe_impl()->grad, grads[i]);
        if (!hooked_leaves.empty()) {
          auto it = hooked_leaves.find(in.unsafe_impl());
          if (it != hooked_leaves.end()) {
            it->second.got_grad = it->second.got_grad || has_grad;
            if (--it->second.edges == 0 && it->second.got_grad) detail::run_post_accumulate_grad_hooks(in);
          }
        }
      }
    }
    n->grad_outputs.clear();
    if (!retain_graph) {
      n->backward = nullptr;
      n->inputs.clear();
      n->saved.clear();
    }
  }
  callbacks.finish();
}

// ---- method forms ----
inline Tensor Tensor::reshape(const Shape& s) const { return attn::reshape(*this, s); }
inline Tensor Tensor::view(const Shape& s) const { return attn::reshape(*this, s); }
inline Tensor Tensor::flatten(int64_t a, int64_t b) const { return attn::flatten(*this, a, b); }
inline Tensor Tensor::transpose(int64_t a, int64_t b) const { return attn::transpose(*this, a, b); }
inline Tensor Tensor::permute(const std::vector<int64_t>& d) const { return attn::permute(*this, d); }
inline Tensor Tensor::unsqueeze(int64_t d) const { return attn::unsqueeze(*this, d); }
inline Tensor Tensor::squeeze(int64_t d) const { return attn::squeeze(*this, d); }
inline Tensor Tensor::narrow(int64_t d, int64_t s, int64_t l) const { return attn::narrow(*this, d, s, l); }
inline Tensor Tensor::select(int64_t d, int64_t i) const { return attn::select(*this, d, i); }
inline Tensor Tensor::expand(const Shape& s) const { return attn::expand(*this, s); }
inline Tensor Tensor::sum() const { return attn::sum(*this); }
inline Tensor Tensor::sum(int64_t d, bool k) const { return attn::sum(*this, d, k); }
inline Tensor Tensor::mean() const { return attn::mean(*this); }
inline Tensor Tensor::mean(int64_t d, bool k) const { return attn::mean(*this, d, k); }
inline Tensor Tensor::exp() const { return attn::exp(*this); }
inline Tensor Tensor::log() const { return attn::log(*this); }
inline Tensor Tensor::tanh() const { return attn::tanh(*this); }
inline Tensor Tensor::sigmoid() const { return attn::sigmoid(*this); }
inline Tensor Tensor::relu() const { return attn::relu(*this); }
inline Tensor Tensor::sqrt() const { return attn::sqrt(*this); }
inline Tensor Tensor::abs() const { return attn::abs(*this); }
inline Tensor Tensor::pow(double e) const { return attn::pow(*this, e); }
inline Tensor Tensor::matmul(const Tensor& o) const { return attn::matmul(*this, o); }
inline Tensor Tensor::softmax(int64_t d) const { return attn::softmax(*this, d); }
inline Tensor Tensor::log_softmax(int64_t d) const { return attn::log_softmax(*this, d); }
inline Tensor Tensor::neg() const { return attn::neg(*this); }

inline std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << attn::to_string(shape()) << ", dtype=" << dtype_name(dtype());
  if (device() == Device::CPU && numel() <= 64) {
    os << ", values=[";
    auto v = to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    os << "]";
  }
  os << ")";
  return os.str();
}

inline std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace attn

#include "device.hpp"
