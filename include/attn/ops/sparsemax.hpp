#pragma once
// Sparse alternatives to softmax along a dim (Peters, Niculae and Martins, ACL 2019; Martins and
// Astudillo, ICML 2016): the result is a probability vector like softmax's, but entries below a
// threshold tau are exactly 0, so attention can point at a few steps and ignore the rest.
//   sparsemax(z) = argmin_{p in simplex} |p - z|^2 = max(z - tau, 0),
//                  tau such that the result sums to 1 (found exactly by sorting z);
//   entmax15(z)  = 1.5-entmax = max(z/2 - tau, 0)^2, tau such that it sums to 1 (exact sort-based
//                  algorithm for alpha = 1.5); between softmax (alpha 1) and sparsemax (alpha 2).
// -inf entries (masked keys) get 0 and a lane that is all -inf gives zeros, as softmax does here.
// Backward (S = support, where p > 0):
//   sparsemax: dL/dz_j = [j in S] (g_j - mean_{k in S} g_k)
//   entmax15:  with s_j = sqrt(p_j): dL/dz_j = s_j g_j - s_j (sum_k s_k g_k) / (sum_k s_k)
// The lane loops are in kernels/cpu/sparsemax.hpp.
#include <limits>
#include "elementwise.hpp"
#include "matmul.hpp"
#include "reduce.hpp"
#include "shape.hpp"

namespace attn {
// The normalisation of attention weights over the keys.
enum class AttnNormalization { Softmax, Sparsemax, Entmax15 };
ATTN_API Tensor sparsemax(const Tensor& x, int64_t dim);
ATTN_API Tensor entmax15(const Tensor& x, int64_t dim);
ATTN_API std::pair<Tensor, Tensor> normalized_dot_product_attention(
    const Tensor& q, const Tensor& k, const Tensor& v, AttnNormalization normalization,
    const Tensor& attn_mask = Tensor(), bool is_causal = false,
    double scale = std::numeric_limits<double>::quiet_NaN());
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <cmath>
#include <limits>
#include <utility>
#include <vector>
#include "../kernels/cpu/sparsemax.hpp"
#include "attention_checks.hpp"

namespace attn {
namespace detail {
// Defined below the public functions.
template <bool Entmax>
Tensor sparse_normalize(const Tensor& x, int64_t dim);
}  // namespace detail

// sparsemax along dim (CPU tensors): max(z - tau, 0), summing to 1 over each lane.
ATTN_API Tensor sparsemax(const Tensor& x, int64_t dim) { return detail::sparse_normalize<false>(x, dim); }
// 1.5-entmax along dim (CPU tensors): max(z/2 - tau, 0)^2, summing to 1 over each lane.
ATTN_API Tensor entmax15(const Tensor& x, int64_t dim) { return detail::sparse_normalize<true>(x, dim); }

// Scaled dot-product attention with a chosen normalisation:
//   weights = normalize_keys(q k^T * scale + mask),  output = weights v
// over q [..., L, E], k [..., S, E], v [..., S, Ev]; returns {output [..., L, Ev], weights
// [..., L, S]}. Softmax gives scaled_dot_product_attention's result; sparsemax and entmax15 give
// exact zeros, so each query attends to a few keys (Correia, Niculae and Martins, 2019).
// attn_mask: bool (true = may attend) or additive float, broadcastable to [..., L, S]; is_causal:
// query i sees keys j <= i; scale NaN means 1/sqrt(E). A query that sees no key gets zero weights
// and output. Composed of differentiable ops (their backward: d(weights v), the normalisation's
// derivative above, d(q k^T)); it stores the L x S weights like the weights-storing dense path.
// CPU tensors (sparsemax and entmax15 have no CUDA path).
ATTN_API std::pair<Tensor, Tensor> normalized_dot_product_attention(
    const Tensor& q, const Tensor& k, const Tensor& v, AttnNormalization normalization,
    const Tensor& attn_mask, bool is_causal,
    double scale) {
  const char* op = "normalized_dot_product_attention";
  detail::check_qkv(op, q, k, v);
  const int64_t L = q.size(-2), S = k.size(-2), E = q.size(-1);
  if (std::isnan(scale)) scale = 1.0 / std::sqrt(double(std::max<int64_t>(E, 1)));
  Tensor scores = mul(matmul(q, transpose(k, -1, -2)), scale);  // [..., L, S]
  const double ninf = -std::numeric_limits<double>::infinity();
  if (attn_mask.defined()) {
    ATTN_CHECK(attn_mask.dim() <= scores.dim(), op, ": attn_mask ", to_string(attn_mask.shape()),
               " does not broadcast to the scores ", to_string(scores.shape()));
    scores = attn_mask.dtype() == kBool ? masked_fill(scores, logical_not(attn_mask), ninf) : add(scores, attn_mask);
  }
  if (is_causal) {
    std::vector<bool> hidden(size_t(L * S));
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = i + 1; j < S; ++j) hidden[size_t(i * S + j)] = true;
    scores = masked_fill(scores, Tensor::from_vector(hidden, {L, S}), ninf);
  }
  Tensor weights;
  if (normalization == AttnNormalization::Sparsemax) weights = sparsemax(scores, -1);
  else if (normalization == AttnNormalization::Entmax15) weights = entmax15(scores, -1);
  else weights = softmax(scores, -1);
  return {matmul(weights, v), weights};
}

namespace detail {

// The node behind sparsemax (Entmax = false, alpha = 2) and entmax15 (Entmax = true, alpha = 1.5):
// the forward solves each lane of [outer, n, inner] for tau; the recorded backward (S = support):
//   sparsemax: dL/dz_j = [j in S] (g_j - mean_{k in S} g_k)
//   entmax15:  dL/dz_j = s_j g_j - s_j (sum_k s_k g_k) / (sum_k s_k),  s_j = sqrt(p_j)
template <bool Entmax>
Tensor sparse_normalize(const Tensor& x, int64_t dim) {
  const char* op = Entmax ? "entmax15" : "sparsemax";
  dim = wrap_dim(dim, x.dim(), op, x.shape());
  ATTN_CHECK(x.device() == Device::CPU, op, ": CPU tensors only (got a tensor on the GPU)");
  const Tensor xc = x.contiguous();
  const DimSplit d = split_at(xc.shape(), dim);
  Tensor y = Tensor::empty(xc.shape(), xc.dtype());
  ATTN_DISPATCH_FLOATING(xc.dtype(), op, [&] {
    const scalar_t* px = xc.data<scalar_t>();
    scalar_t* po = y.data<scalar_t>();
    for_each_lane(d, d.n * 8, [&](int64_t base, int64_t) {
      kernels::cpu::sparse_normalize_lane<Entmax, scalar_t>(px + base, po + base, d.n, d.inner);
    });
  });
  return record(op, y, {x}, [yd = y.detach(), d](const std::vector<Tensor>& g) {
    const Tensor gc = g[0].contiguous();
    Tensor gx = Tensor::empty(yd.shape(), yd.dtype());
    ATTN_DISPATCH_FLOATING(yd.dtype(), Entmax ? "entmax15_backward" : "sparsemax_backward", [&] {
      const scalar_t *pg = gc.data<scalar_t>(), *py = yd.data<scalar_t>();
      scalar_t* po = gx.data<scalar_t>();
      for_each_lane(d, d.n * 3, [&](int64_t base, int64_t) {
        kernels::cpu::sparse_normalize_lane_backward<Entmax, scalar_t>(pg + base, py + base, po + base, d.n, d.inner);
      });
    });
    return std::vector<Tensor>{gx};
  }, {y});
}

}  // namespace detail
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
