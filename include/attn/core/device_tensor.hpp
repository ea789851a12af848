#pragma once
// Tensors in device memory: allocation (cuda_empty, empty_on), copies between host and device
// (clone, copy_, Tensor::to(Device)), the strided copy of the shape ops, and the backward
// engine's accumulation into gradients on the GPU. Everything goes through the backend's
// DeviceMemory table (core/device.hpp); without one (a build without ATTN_WITH_CUDA) no tensor
// can be on the GPU, and a move there throws.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd.hpp"
#include "device.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "shapes.hpp"
#include "tensor_impl.hpp"

namespace attn {

namespace detail {
// The CUDA backend's table; only reached for tensors on the GPU, which exist only when it is there.
inline const DeviceMemory& mem() {
  const DeviceMemory* m = cuda_memory();
  if (!m) throw std::runtime_error(cuda_unavailable_reason());
  return *m;
}

// An uninitialised tensor in device memory (the backend's malloc_bytes; its free_bytes is the
// Storage's deleter).
inline Tensor cuda_empty(const Shape& shape, DType dtype) {
  const int64_t n = check_shape(shape, "cuda_empty", dtype);
  if (!cuda_is_available()) throw std::runtime_error(cuda_unavailable_reason());
  const size_t bytes = size_t(n) * dtype_size(dtype);
  void* p = mem().malloc_bytes(bytes);
  auto impl = detail::make_impl();
  impl->storage = detail::make_storage(p, bytes, Device::CUDA, [](void* q) { mem().free_bytes(q); });
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}
inline Tensor cuda_zeros(const Shape& shape, DType dtype) {
  Tensor t = cuda_empty(shape, dtype);
  mem().memset_zero(t.raw_data(), size_t(t.numel()) * dtype_size(dtype));
  return t;
}
inline size_t nbytes_of(const Tensor& t) { return size_t(t.numel()) * dtype_size(t.dtype()); }

// A new tensor on `device`: the one allocation point of ops whose output lives where the input does.
inline Tensor empty_on(Device device, const Shape& shape, DType dtype) {
  if (device == Device::CUDA) return cuda_empty(shape, dtype);
  return Tensor::empty(shape, dtype);
}
inline Tensor zeros_on(Device device, const Shape& shape, DType dtype) {
  if (device == Device::CUDA) return cuda_zeros(shape, dtype);
  return Tensor::zeros(shape, dtype);
}
}  // namespace detail

}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
namespace attn {
namespace detail {
// clone of a CUDA tensor: a device-to-device copy; dL/dx = g
inline Tensor cuda_clone(const Tensor& x) {
  Tensor out = cuda_empty(x.shape(), x.dtype());
  mem().memcpy_d2d(out.raw_data(), x.raw_data(), nbytes_of(x));
  return record("clone", out, {x}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; }, {});
}
// copy_ where either side lives on the GPU: same dtype only (convert on the CPU first).
inline void cuda_copy_(Tensor& dst, const Tensor& src) {
  ATTN_CHECK(src.dtype() == dst.dtype(), "copy_: source dtype ", dtype_name(src.dtype()), " on ",
             device_name(src.device()), " differs from destination dtype ", dtype_name(dst.dtype()), " on ",
             device_name(dst.device()), "; convert with .to(dtype) on the CPU first");
  const size_t n = nbytes_of(dst);
  if (dst.device() == Device::CUDA && src.device() == Device::CUDA) mem().memcpy_d2d(dst.raw_data(), src.raw_data(), n);
  else if (dst.device() == Device::CUDA) mem().memcpy_h2d(dst.raw_data(), src.raw_data(), n);
  else mem().memcpy_d2h(dst.raw_data(), src.raw_data(), n);
}
// The backward engine's accumulation into a slot on the GPU (or an empty slot for a gradient on
// the GPU), g already on the GPU: a fresh device copy for an empty slot, else slot += g.
// detail::accumulate (core/engine.hpp) moves a gradient to the slot's device before calling it.
inline void cuda_accumulate(std::shared_ptr<TensorImpl>& slot, const Tensor& g) {
  if (!slot) {
    Tensor copy = cuda_empty(g.shape(), g.dtype());
    mem().memcpy_d2d(copy.raw_data(), g.raw_data(), nbytes_of(g));
    slot = copy.impl_ptr();
    return;
  }
  Tensor acc(slot);
  ATTN_CHECK(acc.shape() == g.shape() && acc.dtype() == g.dtype(), "backward: gradient of shape ",
             to_string(g.shape()), " (", dtype_name(g.dtype()), ") does not match accumulated shape ",
             to_string(acc.shape()), " (", dtype_name(acc.dtype()), ")");
  if (acc.dtype() == kFloat32)
    mem().add_inplace(static_cast<float*>(acc.raw_data()), static_cast<const float*>(g.raw_data()), acc.numel());
  else if (acc.dtype() == kFloat64)
    mem().add_inplace_f64(static_cast<double*>(acc.raw_data()), static_cast<const double*>(g.raw_data()), acc.numel());
  else
    throw std::invalid_argument(std::string("backward: cannot accumulate gradients of dtype ") + dtype_name(acc.dtype()));
}
// The device side of detail::strided_copy (ops/shape.hpp): offsets and strides in elements.
inline void device_strided_copy(const Tensor& src, int64_t src_off, const std::vector<int64_t>& src_st,
                                const Tensor& dst, int64_t dst_off, const std::vector<int64_t>& dst_st,
                                const Shape& shape, bool accumulate) {
  ATTN_CHECK(src.device() == dst.device() && src.dtype() == dst.dtype(), "strided_copy: source on ",
             device_name(src.device()), " (", dtype_name(src.dtype()), ") and destination on ",
             device_name(dst.device()), " (", dtype_name(dst.dtype()), ") differ");
  if (!cuda_memory())
    throw std::runtime_error("strided_copy: tensor on " + std::string(device_name(src.device())) +
                             " in a build without ATTN_WITH_CUDA");
  const size_t es = dtype_size(src.dtype());
  mem().strided_copy(static_cast<const char*>(src.raw_data()) + src_off * int64_t(es),
                     static_cast<char*>(dst.raw_data()) + dst_off * int64_t(es), int(es), src.dtype() == kFloat64,
                     int(shape.size()), shape.data(), src_st.data(), dst_st.data(), accumulate);
}
}  // namespace detail

// to(x, device) = x copied to `device`; dL/dx = g copied back to x's device.
ATTN_API Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  if (!cuda_memory()) throw std::runtime_error(detail::no_cuda_build_message(device));
  Tensor out;
  const size_t bytes = detail::nbytes_of(*this);
  if (device == Device::CUDA) {
    out = detail::cuda_empty(shape(), dtype());
    detail::mem().memcpy_h2d(out.raw_data(), raw_data(), bytes);
  } else {
    out = Tensor::empty(shape(), dtype());
    detail::mem().memcpy_d2h(out.raw_data(), raw_data(), bytes);
  }
  if (!is_floating_point()) return out;
  const Device src = this->device();
  return record("to_device", out, {*this}, [src](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].to(src)};
  }, {});
}
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
