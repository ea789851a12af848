#pragma once
// Definitions of Tensor's members: factories, data access, in-place writes, copies and
// conversions, the method forms of the ops (declared in core/functions.hpp, defined under ops/),
// and printing; also the anomaly check of a tensor's values. backward() is in core/engine.hpp,
// to(Device) in core/device_tensor.hpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd.hpp"
#include "device_tensor.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "functions.hpp"
#include "parallel.hpp"
#include "random.hpp"
#include "shapes.hpp"
#include "tensor_impl.hpp"

namespace attn {

namespace detail {
// dst = src, same shape and dtype. Empty tensors have no buffer: memcpy must not see their null.
inline void copy_bytes(const Tensor& dst, const Tensor& src) {
  if (src.numel() > 0) std::memcpy(dst.raw_data(), src.raw_data(), size_t(src.numel()) * dtype_size(src.dtype()));
}
template <class T>
void fill(T* p, int64_t n, T v) {
  parallel_for(0, n, kGrainFill, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
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

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  ATTN_CHECK(int64_t(values.size()) == detail::check_shape(shape, "from_vector", dtype_of<T>::value), "from_vector: ", values.size(),
             " values do not fill shape ", attn::to_string(shape));
  Tensor t = empty(shape, dtype_of<T>::value);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}

inline int64_t Tensor::size(int64_t d) const {
  return shape()[size_t(detail::wrap_dim(d, dim(), "size", shape()))];
}

template <class T>
T* Tensor::data() const {
  if (ATTN_UNLIKELY(dtype_of<T>::value != dtype() || device() != Device::CPU)) throw_bad_access(dtype_of<T>::value);
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

inline std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
namespace attn {
// Each factory checks the shape under its own name, so a negative size names the call made.
ATTN_API Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  detail::check_shape(shape, "full", dtype);
  Tensor t = empty(shape, dtype);
  ATTN_DISPATCH_ALL(dtype, "full", [&] { detail::fill(t.data<scalar_t>(), t.numel(), scalar_t(value)); });
  return t;
}
namespace detail {
// Fills the floating tensor t in order with draw(g), g the global generator held under one lock
// (rand, randn and nn::init's uniform_ / normal_).
template <class Draw>
void fill_random(const Tensor& t, const char* op, const Draw& draw) {
  ATTN_DISPATCH_FLOATING(t.dtype(), op, [&] {
    scalar_t* p = t.data<scalar_t>();
    auto g = default_generator().lock();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = scalar_t(draw(g));
  });
}
}  // namespace detail
ATTN_API Tensor Tensor::randn(const Shape& shape, DType dtype) {
  detail::check_shape(shape, "randn", dtype);
  Tensor t = empty(shape, dtype);
  detail::fill_random(t, "randn", [](auto& g) { return g.normal(); });
  return t;
}
ATTN_API Tensor Tensor::rand(const Shape& shape, DType dtype) {
  detail::check_shape(shape, "rand", dtype);
  Tensor t = empty(shape, dtype);
  detail::fill_random(t, "rand", [](auto& g) { return g.uniform(); });
  return t;
}
ATTN_API Tensor Tensor::arange(double start, double end, double step, DType dtype) {
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
ATTN_API Tensor Tensor::from_vector(const std::vector<bool>& values, const Shape& shape) {
  ATTN_CHECK(int64_t(values.size()) == detail::check_shape(shape, "from_vector", kBool), "from_vector: ", values.size(),
             " values do not fill shape ", attn::to_string(shape));
  Tensor t = empty(shape, kBool);
  uint8_t* p = t.data<uint8_t>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i] ? 1 : 0;
  return t;
}
ATTN_API double Tensor::at(std::initializer_list<int64_t> index) const {
  const int64_t i = detail::flat_index(shape(), index, "at");
  return ATTN_DISPATCH_ALL(dtype(), "at", [&] { return double(data<scalar_t>()[i]); });
}
ATTN_API void Tensor::set(std::initializer_list<int64_t> index, double value) {
  const int64_t i = detail::flat_index(shape(), index, "set");
  detail::bump_version(*this);
  ATTN_DISPATCH_ALL(dtype(), "set", [&] { data<scalar_t>()[i] = scalar_t(value); });
}
ATTN_API Tensor& Tensor::fill_(double value) {
  detail::bump_version(*this);
  ATTN_DISPATCH_ALL(dtype(), "fill_", [&] { detail::fill(data<scalar_t>(), numel(), scalar_t(value)); });
  return *this;
}
ATTN_API Tensor& Tensor::copy_(const Tensor& src) {
  ATTN_CHECK(src.shape() == shape(), "copy_: source shape ", attn::to_string(src.shape()),
             " differs from destination shape ", attn::to_string(shape()));
  ATTN_CHECK(!(is_grad_enabled() && requires_grad() && is_leaf()),
             "copy_: in-place write to a leaf that requires grad; wrap it in NoGradGuard");
  detail::bump_version(*this);
  if (device() != Device::CPU || src.device() != Device::CPU) return detail::cuda_copy_(*this, src), *this;
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
ATTN_API Tensor Tensor::clone() const {
  if (device() != Device::CPU) return detail::cuda_clone(*this);
  Tensor out = empty(shape(), dtype());
  detail::copy_bytes(out, *this);
  return record("clone", out, {*this}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; }, {});
}
// to(x, dtype) = x converted; dL/dx = g converted back
ATTN_API Tensor Tensor::to(DType target) const {
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
ATTN_API void check_finite(const Tensor& t, const std::string& op, const char* what) {
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

ATTN_API std::string Tensor::to_string() const {
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
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
