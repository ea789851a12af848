#pragma once
// The CUDA seam of attn's ops. An op in ops/<family>.hpp checks at the top of its forward whether
// an input lives on the GPU (detail::on_cuda) and then calls the function of the same name in
// ops/cuda/<family>.hpp, which runs the kernels declared in kernels/cuda/<family>.hpp and records
// a backward that runs on the GPU too. Ops without a CUDA path keep failing with "tensor lives on
// cuda; call .to(Device::CPU) first" (Tensor::data<T>()), and mixing devices in one op raises a
// ShapeError naming the op. The CUDA path supports float32 tensors only.
//
// Every ops/cuda/<family>.hpp has one `#ifdef ATTN_WITH_CUDA`: with it (link attn::cuda) the
// functions are defined; without it the same functions are declared with a body that throws
// "<op>: attn was built without ATTN_WITH_CUDA" (built_without_cuda below). No tensor can live on
// the GPU in such a build, so that body is never reached by a correct program; it exists so that
// the op files compile without an #ifdef of their own.
#include <stdexcept>
#include <string>
#include "../../core/shapes.hpp"
#include "../../core/tensor.hpp"
#include "../detail/checks.hpp"

namespace attn {
namespace detail {
// Whether an op on these inputs takes its CUDA path: any of them on the GPU (a CPU tensor among
// them is then reported by the CUDA path's device checks).
template <class... Ts>
bool on_cuda(const Ts&... ts) {
  return ((ts.device() == Device::CUDA) || ...);
}
}  // namespace detail

namespace kernels::cuda {}  // declared per family in kernels/cuda/<family>.hpp
namespace cuda_ops {
namespace kc = ::attn::kernels::cuda;

#ifdef ATTN_WITH_CUDA
inline float* fp(const Tensor& t) { return static_cast<float*>(t.raw_data()); }
inline const float* cfp(const Tensor& t) { return t.defined() ? static_cast<const float*>(t.raw_data()) : nullptr; }
inline Tensor empty(const Shape& s) { return detail::cuda_empty(s, kFloat32); }
inline Tensor zeros(const Shape& s) { return detail::cuda_zeros(s, kFloat32); }
// A gradient handed to a CUDA backward lives on the GPU (moved there if a caller passed a CPU one).
inline Tensor grad_on_cuda(const Tensor& g) { return g.device() == Device::CUDA ? g : g.detach().to(Device::CUDA); }

inline void check_f32(const Tensor& x, const char* op) {
  ATTN_CHECK(x.dtype() == kFloat32, op, ": the CUDA path supports float32 only, got ", dtype_name(x.dtype()), " ",
             to_string(x.shape()), " (convert with .to(kFloat32))");
}
// The CPU path's check of two operands (detail::check_same_dtype), then float32.
inline void check_pair(const Tensor& a, const Tensor& b, const char* op) {
  detail::check_same_dtype(a, b, op);
  check_f32(a, op);
}
inline void check_on_cuda(const Tensor& t, const char* op, const char* what) {
  ATTN_CHECK(!t.defined() || t.device() == Device::CUDA, op, ": ", what, " ", to_string(t.shape()),
             " is on the cpu while the inputs are on cuda; move it with .to(Device::CUDA)");
}
#else
// The body of every CUDA-path function in a build without ATTN_WITH_CUDA: names the op and the
// shapes of its tensors.
template <class... Ts>
[[noreturn]] void built_without_cuda(const char* op, const Ts&... ts) {
  std::string shapes;
  ((shapes += (shapes.empty() ? "" : ", ") + (ts.defined() ? to_string(ts.shape()) : std::string("undefined"))), ...);
  throw std::runtime_error(std::string(op) + ": attn was built without ATTN_WITH_CUDA, so its inputs (" + shapes +
                           ") cannot be on cuda (configure with -DATTN_WITH_CUDA=ON and link attn::cuda)");
}
#endif

}  // namespace cuda_ops
}  // namespace attn
