#pragma once
// CUDA path of ops/reduce.hpp (see ops/cuda/common.hpp): sum over a dim, softmax / log_softmax,
// forward and backward. The dim is seen as [outer, n, inner] (detail::split_at, shared with the
// CPU path). Kernels: kernels/cuda/reduce.cu.
#include <vector>
#include "../../kernels/cuda/reduce.hpp"
#include "../detail/dims.hpp"
#include "common.hpp"

namespace attn::cuda_ops {

#ifdef ATTN_WITH_CUDA
// sum(x, dim) = sum_j x[..., j, ...]; dL/dx = g broadcast back along dim
inline Tensor sum_dim(const Tensor& x, int64_t dim, bool keepdim) {
  check_f32(x, "sum");
  const detail::DimSplit d = detail::split_at(x.shape(), dim);
  const int64_t outer = d.outer, n = d.n, inner = d.inner;
  Tensor out = empty(detail::reduced_shape(x.shape(), dim, keepdim));
  kc::sum_dim(cfp(x), fp(out), outer, n, inner);
  return record("sum", out, {x}, [s = x.shape(), outer, n, inner](const std::vector<Tensor>& g) {
    Tensor gg = grad_on_cuda(g[0]), dx = empty(s);
    kc::expand_dim(cfp(gg), fp(dx), outer, n, inner);
    return std::vector<Tensor>{dx};
  });
}

// softmax: y = exp(x - max) / sum;  dL/dx = y (g - sum g y)
// log_softmax: y = x - lse;         dL/dx = g - exp(y) sum g     (all -inf lanes: 0 / -inf, gradient g)
inline Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_f32(x, name);
  const detail::DimSplit d = detail::split_at(x.shape(), dim);
  const int64_t outer = d.outer, n = d.n, inner = d.inner;
  Tensor y = empty(x.shape());
  kc::softmax_forward(cfp(x), fp(y), outer, n, inner, log);
  return record(name, y, {x}, [yd = y.detach(), outer, n, inner, log](const std::vector<Tensor>& g) {
    Tensor gg = grad_on_cuda(g[0]), dx = empty(yd.shape());
    kc::softmax_backward(cfp(gg), cfp(yd), fp(dx), outer, n, inner, log);
    return std::vector<Tensor>{dx};
  });
}
#else
inline Tensor sum_dim(const Tensor& x, int64_t, bool) { built_without_cuda("sum", x); }
inline Tensor softmax(const Tensor& x, int64_t, bool log) { built_without_cuda(log ? "log_softmax" : "softmax", x); }
#endif

}  // namespace attn::cuda_ops
