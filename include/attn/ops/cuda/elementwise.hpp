#pragma once
// CUDA path of ops/elementwise.hpp (see ops/cuda/common.hpp): unary activations with their
// backward, and the forward of broadcasting binary ops (add, sub, mul, div; the op's backward in
// ops/elementwise.hpp composes mul/div/neg/sum_to, which all come back here for CUDA tensors).
// Kernels: kernels/cuda/elementwise.cu.
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>
#include "../../kernels/cuda/elementwise.hpp"
#include "common.hpp"

namespace attn::cuda_ops {

#ifdef ATTN_WITH_CUDA
// y = f(x); dL/dx = g f'(x) (the derivatives of ops/elementwise.hpp, in kernels/cuda/elementwise.cu)
inline Tensor unary(const Tensor& x, kc::Unary op, const char* name, double s = 0.0) {
  check_f32(x, name);
  Tensor y = empty(x.shape());
  kc::unary_forward(op, cfp(x), fp(y), x.numel(), float(s));
  return record(name, y, {x}, [xd = x.detach(), yd = y.detach(), op, s](const std::vector<Tensor>& g) {
    Tensor gg = grad_on_cuda(g[0]), dx = empty(xd.shape());
    kc::unary_backward(op, cfp(gg), cfp(xd), cfp(yd), fp(dx), xd.numel(), float(s));
    return std::vector<Tensor>{dx};
  });
}

// out = a op b with broadcasting: element strides of each operand read at the output's shape
// (detail::broadcast_strides, the helper of the CPU path's BroadcastLoop).
inline Tensor binary_forward(const Tensor& a, const Tensor& b, kc::Binary k, const char* op) {
  check_pair(a, b, op);
  const Shape os = detail::broadcast_shapes(a.shape(), b.shape(), op);
  ATTN_CHECK(os.size() <= size_t(kc::kMaxDims), op, ": the CUDA path handles at most ", kc::kMaxDims,
             " dims, got ", to_string(os));
  const std::vector<int64_t> sa = detail::broadcast_strides(a.shape(), os);
  const std::vector<int64_t> sb = detail::broadcast_strides(b.shape(), os);
  Tensor out = empty(os);
  kc::binary_forward(k, cfp(a), cfp(b), fp(out), int(os.size()), os.data(), sa.data(), sb.data());
  return out;
}
#else
inline Tensor unary(const Tensor& x, kc::Unary, const char* name, double = 0.0) { built_without_cuda(name, x); }
inline Tensor binary_forward(const Tensor& a, const Tensor& b, kc::Binary, const char* op) {
  built_without_cuda(op, a, b);
}
#endif

// Forward of a binary op whose kernel is `k`; an op without a CUDA kernel (nullopt) fails naming
// it. Kernels are chosen by the caller's enum, never by the op's name.
inline Tensor binary_forward(const Tensor& a, const Tensor& b, std::optional<kc::Binary> k, const char* op) {
  if (!k)
    throw std::invalid_argument(std::string(op) +
                                ": no CUDA kernel for this op; move the tensors to the CPU with .to(Device::CPU)");
  return binary_forward(a, b, *k, op);
}

}  // namespace attn::cuda_ops
