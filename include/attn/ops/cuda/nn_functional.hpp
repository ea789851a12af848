#pragma once
// CUDA path of ops/nn_functional.hpp (see ops/cuda/common.hpp): layer norm with its backward.
// (binary_cross_entropy_with_logits runs on the binary kernels of ops/cuda/elementwise.hpp.)
// Kernels: kernels/cuda/nn_functional.cu.
#include <algorithm>
#include <vector>
#include "../../kernels/cuda/nn_functional.hpp"
#include "../shape.hpp"
#include "common.hpp"

namespace attn::cuda_ops {

#ifdef ATTN_WITH_CUDA
// y = xhat w + b, xhat = (x - mu) rstd;  dL/dx = rstd (g w - mean(g w) - xhat mean(g w xhat)),
// dL/dw = sum_rows g xhat,  dL/db = sum_rows g
inline Tensor layer_norm(const Tensor& x, int64_t D, const Tensor& weight, const Tensor& bias, double eps) {
  check_f32(x, "layer_norm");
  if (weight.defined()) check_pair(x, weight, "layer_norm");
  if (bias.defined()) check_pair(x, bias, "layer_norm");
  const int64_t R = x.numel() / std::max<int64_t>(D, 1);
  Tensor y = empty(x.shape()), xhat = empty(x.shape()), rstd = empty({R});
  kc::layer_norm_forward(cfp(x), cfp(weight), cfp(bias), fp(y), fp(xhat), fp(rstd), R, D, eps);
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  return record("layer_norm", y, inputs,
                [xhat, rstd, wd = weight.defined() ? weight.detach() : Tensor(), ws = weight.defined() ? weight.shape() : Shape{},
                 bs = bias.defined() ? bias.shape() : Shape{}, has_b = bias.defined(), D, R](const std::vector<Tensor>& g) {
                  Tensor gg = grad_on_cuda(g[0]), gx = empty(xhat.shape());
                  Tensor gw = wd.defined() ? empty({D}) : Tensor(), gb = has_b ? empty({D}) : Tensor();
                  kc::layer_norm_backward(cfp(gg), cfp(xhat), cfp(rstd), cfp(wd), fp(gx),
                                          gw.defined() ? fp(gw) : nullptr, gb.defined() ? fp(gb) : nullptr, R, D);
                  std::vector<Tensor> out{gx};
                  if (gw.defined()) out.push_back(reshape(gw, ws));
                  if (has_b) out.push_back(reshape(gb, bs));
                  return out;
                });
}
#else
inline Tensor layer_norm(const Tensor& x, int64_t, const Tensor& weight, const Tensor& bias, double) {
  built_without_cuda("layer_norm", x, weight, bias);
}
#endif

}  // namespace attn::cuda_ops
