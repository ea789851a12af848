#pragma once
// Argument checks shared by the attention families whose operands are q [..., L, E],
// k [..., S, E], v [..., S, Ev] with equal ranks and equal leading dims (performer, probsparse,
// windowed / block-local, linear, block-sparse attention). One wording for all of them, on the
// CPU and CUDA paths.
#include "../core/tensor.hpp"

namespace attn {
namespace detail {

// Checks the q/k/v shapes: equal ranks (>= 2), equal leading dims, k [..., S, E], v [..., S, Ev].
// need_nonempty additionally requires L, S > 0 (the kernels that sample or normalise over keys).
inline void check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, bool need_nonempty = false) {
  ATTN_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": expected q [..., L, E], k [..., S, E], v [..., S, Ev] with equal ranks, got ", to_string(q.shape()),
             ", ", to_string(k.shape()), ", ", to_string(v.shape()));
  for (int64_t d = 0; d < q.dim() - 2; ++d)
    ATTN_CHECK(q.size(d) == k.size(d) && q.size(d) == v.size(d), op, ": leading dims differ: q ",
               to_string(q.shape()), ", k ", to_string(k.shape()), ", v ", to_string(v.shape()));
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2);
  if (need_nonempty)
    ATTN_CHECK(k.size(-1) == E && v.size(-2) == S && L > 0 && S > 0, op, ": q ", to_string(q.shape()), ", k ",
               to_string(k.shape()), ", v ", to_string(v.shape()), " (need k [..., S, E], v [..., S, Ev], L, S > 0)");
  else
    ATTN_CHECK(k.size(-1) == E && v.size(-2) == S, op, ": q ", to_string(q.shape()), ", k ", to_string(k.shape()),
               ", v ", to_string(v.shape()), " (need k [..., S, E] and v [..., S, Ev])");
}

// Checks a key_padding_mask of the families above: bool [B, S] with B = q.size(0) (the first
// leading dim; [1, S] or [S] for 2-D q). Returns B (the mask row of item n is n / (N / B)).
inline int64_t check_batch_key_padding_mask(const char* op, const Tensor& q, const Tensor& k, int64_t S,
                                            const Tensor& key_padding_mask) {
  const int64_t nd = q.dim();
  const Shape want{nd > 2 ? q.size(0) : 1, S};
  ATTN_CHECK(key_padding_mask.dtype() == kBool &&
                 (key_padding_mask.shape() == want || (nd == 2 && key_padding_mask.shape() == Shape{S})),
             op, ": key_padding_mask ", to_string(key_padding_mask.shape()), " (",
             dtype_name(key_padding_mask.dtype()), ") must be bool ", to_string(want), " for q ",
             to_string(q.shape()), ", k ", to_string(k.shape()));
  return want[0];
}

// Checks the relative_bias of windowed attention: [H or 1, W] (one value per offset -left..right,
// right = 0 when causal), H = q.size(-3) for 4-D q; not allowed for block-local attention. Shared
// by the CPU and CUDA paths (the dtype check is the caller's: each path has its own).
inline void check_relative_bias(const char* op, const Tensor& q, const Tensor& relative_bias, int64_t W,
                                bool block_mode, bool causal, int64_t right) {
  ATTN_CHECK(!block_mode, op, ": relative_bias is not supported here");
  const int64_t Hq = q.dim() >= 4 ? q.size(-3) : 1;
  const bool ok = relative_bias.dim() == 2 && relative_bias.size(1) == W &&
                  (relative_bias.size(0) == 1 || relative_bias.size(0) == Hq);
  ATTN_CHECK(ok, op, ": relative_bias ", to_string(relative_bias.shape()), " must be [H or 1, ", W,
             "] (one value per offset -left..", causal ? 0 : right, ", H = ", Hq, ") for q ", to_string(q.shape()));
}

}  // namespace detail
}  // namespace attn
