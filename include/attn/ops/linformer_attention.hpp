#pragma once
// Linformer attention (Wang et al., 2020): keys and values projected along the length, S -> k,
// by learned matrices, then exact softmax attention over the k projected positions. Composed
// from differentiable primitives (two broadcast GEMMs and the dense SDPA, whose weights are
// only [..., L, k]), so the backward is autograd's.
//
//   K' = E_proj K  [..., k, E],   V' = F_proj V  [..., k, Ev]
//   out = softmax(scale Q K'^T) V'   (dropout on the weights when dropout_p > 0)
//
// Time O(N L k (E + Ev) + N S k (E + Ev)), memory O(N L k): linear in L for a fixed k. Causal
// attention is not defined for it (a projected position mixes future keys), so it is refused.
#include "../core/tensor.hpp"
#include "attention.hpp"
#include "matmul.hpp"

namespace attn {
ATTN_API Tensor linformer_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e_proj,
                                    const Tensor& f_proj, double dropout_p = 0.0, double scale = kDefaultAttnScale);
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <cmath>

namespace attn {

// q [..., L, E], k [..., S, E], v [..., S, Ev], e_proj / f_proj [kp, S] (same dtype) -> [..., L, Ev].
ATTN_API Tensor linformer_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e_proj,
                                  const Tensor& f_proj, double dropout_p, double scale) {
  const char* op = "linformer_attention";
  ATTN_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": expected q [..., L, E], k [..., S, E], v [..., S, Ev] with equal ranks, got ", to_string(q.shape()),
             ", ", to_string(k.shape()), ", ", to_string(v.shape()));
  const int64_t S = k.size(-2);
  ATTN_CHECK(v.size(-2) == S && k.size(-1) == q.size(-1), op, ": q ", to_string(q.shape()), ", k ",
             to_string(k.shape()), ", v ", to_string(v.shape()), " (need k [..., S, E] and v [..., S, Ev])");
  ATTN_CHECK(e_proj.defined() && f_proj.defined() && e_proj.dim() == 2 && f_proj.dim() == 2 && e_proj.size(1) == S &&
                 f_proj.size(1) == S && e_proj.size(0) > 0 && e_proj.size(0) == f_proj.size(0),
             op, ": e_proj and f_proj must both be [k, S] with S = ", S, ", got ",
             e_proj.defined() ? to_string(e_proj.shape()) : std::string("undefined"), " and ",
             f_proj.defined() ? to_string(f_proj.shape()) : std::string("undefined"));
  ATTN_CHECK(dropout_p >= 0 && dropout_p < 1, op, ": dropout_p must be in [0, 1), got ", dropout_p);
  detail::check_same_dtype(q, e_proj, op);
  detail::check_same_dtype(q, f_proj, op);
  return scaled_dot_product_attention(q, matmul(e_proj, k), matmul(f_proj, v), Tensor(), false, dropout_p, scale);
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
