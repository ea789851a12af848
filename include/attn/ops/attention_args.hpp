#pragma once
// The arguments of the fused scaled dot-product attention node (detail::FusedAttnArgs) and the
// helpers the CPU path (ops/attention.hpp) and the CUDA path share: mask item offsets, the
// key_padding_mask check, and which operands share one gradient buffer. Free of the CUDA and
// CPU kernels' code, so either path can include it first.
#include <algorithm>
#include <cstdint>
#include <vector>
#include "../core/tensor.hpp"
#include "../kernels/cpu/attention_problem.hpp"

namespace attn {
namespace detail {

// The problem description and operand layouts live with the kernels (kernels/cpu/attention_problem.hpp).
using kernels::cpu::AttnLayout;
using kernels::cpu::AttnMaskView;
using kernels::cpu::AttnProblem;

// The fused differentiable node behind scaled_dot_product_attention and MultiheadAttention.
// q/k/v are tensors holding the operands at the given layouts (q, k and v may be the same tensor,
// e.g. a packed [B, L, 3E] projection). `out_shape`/`lo` describe the freshly allocated output.
// `scores_shape` is the shape masks broadcast against (product = B*H*L*S); the returned weights
// (when need_weights) have that shape. Masks: attn_mask bool (true = may attend) or float
// (additive, differentiable); key_padding_mask bool [B, S] (true = padded), read per batch b.
struct FusedAttnArgs {
  Tensor q, k, v;
  AttnLayout lq, lk, lv, lo;
  Shape out_shape, scores_shape;
  AttnProblem p;
  Tensor attn_mask, key_padding_mask;
  Tensor alibi_slopes;  // float64 [H] or undefined; fused_attention points p.alibi at it
  bool need_weights = false;
};

// The node itself (ops/attention.hpp), for the layers that call it with their own layouts
// (nn::MultiheadAttention): returns the output and, when need_weights, the weights.
ATTN_API std::pair<Tensor, Tensor> fused_attention(const FusedAttnArgs& args, const char* op);

}  // namespace detail
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
namespace attn {
namespace detail {

// Offset of each (batch..., head) item's [L, S] matrix in a mask with broadcast strides `st`
// (st[d] for each dim of scores_shape, 0 where broadcast): item it = flat index over the batch
// dims of scores_shape (all but the last two). Shared by the CPU mask view and the CUDA path.
inline std::vector<int64_t> mask_item_offsets(const Shape& scores_shape, const std::vector<int64_t>& st) {
  const size_t nb = scores_shape.size() - 2;
  int64_t items = 1;
  for (size_t d = 0; d < nb; ++d) items *= scores_shape[d];
  std::vector<int64_t> item_off(size_t(std::max<int64_t>(items, 0)));
  for (int64_t it = 0; it < items; ++it) {
    int64_t r = it, off = 0;
    for (size_t d = nb; d-- > 0;) {
      off += (r % scores_shape[d]) * st[d];
      r /= scores_shape[d];
    }
    item_off[size_t(it)] = off;
  }
  return item_off;
}

// Checks a key_padding_mask against the problem: bool, [B, S] (or [S] when B = 1). Shared by the
// CPU and CUDA paths (same wording).
inline void check_key_padding_mask(const Tensor& m, const AttnProblem& p, const Shape& scores_shape, const char* op) {
  ATTN_CHECK(m.dtype() == kBool, op, ": key_padding_mask must be bool (true = padded), got ", dtype_name(m.dtype()));
  ATTN_CHECK((m.dim() == 2 && m.size(0) == p.B && m.size(1) == p.S) || (m.dim() == 1 && p.B == 1 && m.size(0) == p.S),
             op, ": key_padding_mask ", to_string(m.shape()), " must be [B, S] = [", p.B, ", ", p.S,
             "] for attention scores ", to_string(scores_shape));
}

// Which operands share one gradient buffer: k (or v) is the same tensor as q (or k) at another
// offset (a packed [B, L, 3E] projection). Operands at the same offset (sdpa(x, x, x)) do not
// share. Shared by the CPU and CUDA paths.
struct AttnOperandAliasing {
  bool same_kq = false, same_vq = false, same_vk = false;
};
inline AttnOperandAliasing attn_operand_aliasing(const FusedAttnArgs& a) {
  const Tensor &q = a.q, &k = a.k, &v = a.v;
  AttnOperandAliasing r;
  const bool kq = k.is_same(q), vq = v.is_same(q), vk = v.is_same(k);
  r.same_kq = kq && a.lk.off != a.lq.off;
  const bool vq_ok = vq && a.lv.off != a.lq.off, vk_ok = vk && a.lv.off != a.lk.off;
  r.same_vq = vq_ok && (!vk || vk_ok);
  r.same_vk = !r.same_vq && vk_ok && (!vq || vq_ok);
  return r;
}

}  // namespace detail
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
