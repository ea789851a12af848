#pragma once
// TensorImpl, what a tensor is (a shape, a dtype, an offset into a shared Storage, and its autograd
// state), and Tensor, the handle to it (a shared_ptr, so copying a Tensor shares storage and
// gradient, like torch::Tensor). Leaves carry `requires_grad` and `grad`; results of ops carry
// `grad_fn`, the Node (core/autograd.hpp) that sends the output gradient back to the op's inputs.
// The members not defined in the class are defined in core/tensor_methods.hpp, core/engine.hpp
// (backward) and core/device_tensor.hpp (to(Device)); include core/tensor.hpp to get them all.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "device.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "shapes.hpp"
#include "storage.hpp"

namespace attn {

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

inline int64_t numel_of(const Shape& s) { return detail::shape_numel(s); }

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
  Tensor to(Device device) const;          // copy on `device` (core/device_tensor.hpp; CUDA needs ATTN_WITH_CUDA)
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
    if (ATTN_UNLIKELY(!impl_)) throw_undefined();
    return *impl_;
  }
  [[noreturn]] ATTN_COLD static void throw_undefined() { throw std::logic_error("attn: use of an undefined Tensor"); }
  [[noreturn]] ATTN_COLD void throw_bad_access(DType wanted) const {
    if (wanted != dtype())
      throw std::invalid_argument(std::string("data<T>: tensor has dtype ") + dtype_name(dtype()) + ", requested " +
                                  dtype_name(wanted));
    throw std::invalid_argument("data<T>: tensor lives on " + std::string(device_name(device())) +
                                "; call .to(Device::CPU) first");
  }
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace attn
