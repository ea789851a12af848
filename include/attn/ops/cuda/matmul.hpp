#pragma once
// CUDA path of ops/matmul.hpp (see ops/cuda/common.hpp): the batched product behind matmul (forward
// only; matmul's backward composes products that come back here) and linear with its backward.
// Kernels: kernels/cuda/matmul.cu (cuBLAS).
#include <algorithm>
#include <vector>
#include "../../kernels/cuda/matmul.hpp"
#include "common.hpp"

namespace attn::cuda_ops {

#ifdef ATTN_WITH_CUDA
// Batched product as ops/matmul.hpp's detail::bmm_raw (no autograd): a [..., M, K] (or [..., K, M]
// if ta), b [..., K, N] (or [..., N, K] if tb); batch dims either equal or one side a single matrix.
inline Tensor bmm_raw(const Tensor& a, const Tensor& b, bool ta, bool tb, const char* op) {
  check_pair(a, b, op);
  const detail::BmmShape S = detail::bmm_shape(a.shape(), b.shape(), ta, tb, op);
  const int64_t ar = S.ar, ac = S.ac, br = S.br, bc = S.bc, M = S.M, N = S.N, K = S.K;
  const Shape &ba = S.batch_a, &bb = S.batch_b, &bs = S.batch, &os = S.out;
  const int64_t batch = numel_of(bs), na = numel_of(ba), nb = numel_of(bb);
  if (batch == 0 || M == 0 || N == 0 || K == 0) return zeros(os);
  ATTN_CHECK((na == batch || na == 1) && (nb == batch || nb == 1), op, ": the CUDA path broadcasts batch dims only ",
             "when one side is a single matrix; got ", to_string(a.shape()), " and ", to_string(b.shape()));
  Tensor out = empty(os);
  kc::gemm_strided_batched(ta, tb, M, N, K, 1.f, cfp(a), ac, na == 1 ? 0 : ar * ac, cfp(b), bc,
                           nb == 1 ? 0 : br * bc, 0.f, fp(out), N, M * N, batch);
  return out;
}

// linear(x, W, b) = x W^T + b; dL/dx = g W, dL/dW = g^T x, dL/db = sum_rows g
inline Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_pair(x, weight, "linear");
  if (bias.defined()) check_pair(x, bias, "linear");
  const int64_t in = weight.size(1), outf = weight.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  Shape os = x.shape();
  os.back() = outf;
  Tensor out = rows * outf > 0 && in > 0 ? empty(os) : zeros(os);
  if (rows > 0 && outf > 0 && in > 0)
    kc::gemm(false, true, rows, outf, in, 1.f, cfp(x), in, cfp(weight), in, 0.f, fp(out), outf);
  if (bias.defined()) kc::add_row_bias(fp(out), cfp(bias), rows, outf);
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("linear", out, inputs,
                [xd = x.detach(), wd = weight.detach(), xr = x.requires_grad(), wr = weight.requires_grad(),
                 has_bias = bias.defined(), rows, in, outf](const std::vector<Tensor>& g) {
                  Tensor gg = grad_on_cuda(g[0]);
                  std::vector<Tensor> gs(has_bias ? 3 : 2);
                  const bool live = rows > 0 && outf > 0 && in > 0;
                  if (xr) {
                    gs[0] = live ? empty(xd.shape()) : zeros(xd.shape());
                    if (live) kc::gemm(false, false, rows, in, outf, 1.f, cfp(gg), outf, cfp(wd), in, 0.f, fp(gs[0]), in);
                  }
                  if (wr) {
                    gs[1] = live ? empty(wd.shape()) : zeros(wd.shape());
                    if (live) kc::gemm(true, false, outf, in, rows, 1.f, cfp(gg), outf, cfp(xd), in, 0.f, fp(gs[1]), in);
                  }
                  if (has_bias) {
                    gs[2] = empty({outf});
                    kc::sum_rows(cfp(gg), fp(gs[2]), rows, outf);
                  }
                  return gs;
                });
}
#else
inline Tensor bmm_raw(const Tensor& a, const Tensor& b, bool, bool, const char* op) { built_without_cuda(op, a, b); }
inline Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  built_without_cuda("linear", x, weight, bias);
}
#endif

}  // namespace attn::cuda_ops
