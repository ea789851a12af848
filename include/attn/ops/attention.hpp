#pragma once
// Scaled dot-product attention as ONE fused autograd node per call.
//
//   Z = scale * Q K^T + M          (M: additive float mask, or -inf where a bool mask is false,
//                                   where the key is padded, or above the diagonal if causal)
//   W = softmax_rows(Z)            (a row whose keys are all masked gets W = 0, never NaN)
//   W' = W * D / (1 - p)           (dropout mask D ~ Bernoulli(1 - p), only when p > 0)
//   O = W' V
//
// Shapes: Q [..., L, E], K [..., S, E], V [..., S, Ev] -> O [..., L, Ev], W' [..., L, S].
// The kernel works on strided layouts: each (batch, head) matrix is addressed as
// base + b*sb + h*sh + row*ld + col, so multi-head attention reads Q/K/V straight out of a packed
// projection [B, L, 3E] and writes heads already merged into [B, L, E] (no split/merge copies).
// Work is split into fixed tasks of (batch, head, block of 64 rows): each element of every result
// is computed by one task in a fixed order, so results are bit-identical for any thread count.
//
// Two CPU paths: the weights-storing kernels (attn_forward_kernel / attn_backward_kernel: W is
// saved, [B*H, L, S]) serve need_weights = true, a float mask that needs a gradient, and small
// problems; the tiled kernels (flash_forward_kernel / flash_backward_kernel, FlashAttention-2
// style: online softmax, only the per-row log-sum-exp saved, weights recomputed in backward)
// serve the rest once the weights would take min_weight_bytes (see FlashAttnConfig).
//
// Reading order: the public functions, the fused node with its recorded backward, the tiled node,
// then the glue (mask views, gradient buffers, path choice). The node's arguments and the glue
// shared with the CUDA path are in attention_args.hpp. The raw loops are in
// kernels/cpu/attention_weights.hpp (weights-storing kernels, masks, dropout) and
// kernels/cpu/attention_tiled.hpp (tiled kernels).
#include <limits>
#include "../core/tensor.hpp"
#include "attention_args.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"
#include "shape.hpp"

namespace attn {
namespace detail {
// Knobs of the tiled path (tests and benchmarks use them to force one path or schedule).
struct FlashAttnConfig {
  // The tiled path is used when need_weights is false, the attn_mask needs no gradient, and the
  // weights the other path would store, B*H*L*S elements, take at least min_weight_bytes. Below
  // that the weights-storing path is faster (measured, docs/attention-dense.md: the tiled
  // backward recomputes Q K^T, one product in seven more, which pays off only once the [B*H, L, S]
  // buffers no longer fit in the caches). 0: always; INT64_MAX: never. The choice depends on the
  // shapes and dtype only, never on the thread count, so results stay thread-independent.
  int64_t min_weight_bytes = int64_t(8) << 20;
  // Backward schedule: 0 = auto (per item when the items split evenly over the threads or there
  // are many, else two passes), 1 = per item, 2 = two passes.
  int backward_schedule = 0;
};
// The one instance the attention ops read (defined below).
ATTN_API FlashAttnConfig& flash_attn_config();
}  // namespace detail

constexpr double kDefaultAttnScale = std::numeric_limits<double>::quiet_NaN();

ATTN_API Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const Tensor& attn_mask = Tensor(), bool is_causal = false,
                                             double dropout_p = 0.0, double scale = kDefaultAttnScale,
                                             const Tensor& key_padding_mask = Tensor());
ATTN_API std::pair<Tensor, Tensor> scaled_dot_product_attention_with_weights(
    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = Tensor(), bool is_causal = false,
    double dropout_p = 0.0, double scale = kDefaultAttnScale, const Tensor& key_padding_mask = Tensor());
ATTN_API Tensor causal_mask(int64_t L, int64_t S = -1);
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>
#include "cuda/attention.hpp"
#include "../kernels/cpu/attention_tiled.hpp"

namespace attn {
namespace detail {

ATTN_API FlashAttnConfig& flash_attn_config() {
  static FlashAttnConfig c;
  return c;
}

// Gradient buffers of q, k, v for the backward of a fused attention node. One tensor may hold
// several operands (a packed [B, L, 3E] projection): then the gradients go into one buffer at
// their disjoint offsets. Operands that alias at the same offset (sdpa(x, x, x)) get buffers of
// their own and the engine sums them. Buffers are zero-filled.
struct AttnGradBuffers {
  Tensor gq, gk, gv;
  bool same_kq = false, same_vq = false, same_vk = false;
  explicit AttnGradBuffers(const FusedAttnArgs& a);
  // One gradient per input q, k, v (a shared buffer is returned once, with the first input).
  std::vector<Tensor> results() const {
    return {gq, same_kq ? Tensor() : gk, (same_vq || same_vk) ? Tensor() : gv};
  }
};

// Defined below, in reading order (public API first).
inline std::pair<Tensor, Tensor> sdpa_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                           bool is_causal, double dropout_p, double scale,
                                           const Tensor& key_padding_mask, bool need_weights);
inline Tensor fused_attention_tiled(const FusedAttnArgs& a, const char* op, const AttnMaskView& mview,
                                    const AttnMaskView& kview, bool track);
inline bool use_tiled_attention(const AttnProblem& p, DType dt, bool need_weights, bool mask_grad);
inline AttnMaskView make_mask_view(const Tensor& m, const Shape& scores_shape, const char* op, const char* what);
inline AttnMaskView key_padding_view(const Tensor& m, const AttnProblem& p, const Shape& scores_shape, const char* op);

}  // namespace detail

// softmax(q k^T * scale + mask) v over q [..., L, E], k [..., S, E], v [..., S, Ev] -> [..., L, Ev].
// Leading dims broadcast as in PyTorch. Grouped-query attention: 4-D q [B, H, L, E] with k, v
// [B, Hkv, S, .] where Hkv divides H (Hkv = 1: multi-query) shares each K/V head among H / Hkv
// consecutive query heads without copying K and V (PyTorch 2.5's enable_gqa = true).
// attn_mask: bool (true = may attend) or additive float, broadcastable to [..., L, S]. is_causal:
// query i sees keys j <= i. key_padding_mask: bool [B, S] (true = padded key, PyTorch's
// nn.MultiheadAttention convention), B = the first leading dim.
// scale NaN means 1/sqrt(E). dropout_p > 0 applies dropout to the weights (this functional form
// always applies it when p > 0; modules pass p only in training). Queries that see no key at all
// get zero output and zero gradient.
ATTN_API Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const Tensor& attn_mask, bool is_causal,
                                           double dropout_p, double scale,
                                           const Tensor& key_padding_mask) {
  return detail::sdpa_impl(q, k, v, attn_mask, is_causal, dropout_p, scale, key_padding_mask, false).first;
}

// Same, also returning the attention weights [..., L, S] (after dropout, as PyTorch's MHA returns
// them). The weights are differentiable too.
ATTN_API std::pair<Tensor, Tensor> scaled_dot_product_attention_with_weights(
    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask, bool is_causal,
    double dropout_p, double scale, const Tensor& key_padding_mask) {
  return detail::sdpa_impl(q, k, v, attn_mask, is_causal, dropout_p, scale, key_padding_mask, true);
}

// Bool mask [L, S] (S defaults to L), true on and below the diagonal: query i may attend keys
// j <= i. Pass it as attn_mask (bool: true = may attend).
ATTN_API Tensor causal_mask(int64_t L, int64_t S) {
  if (S < 0) S = L;
  ATTN_CHECK(L >= 0 && S >= 0, "causal_mask: sizes must be non-negative, got ", L, " x ", S);
  Tensor m = Tensor::zeros({L, S}, kBool);
  uint8_t* p = m.data<uint8_t>();
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j <= std::min(i, S - 1); ++j) p[i * S + j] = 1;
  return m;
}

namespace detail {

// Checks and normalises the operands of scaled_dot_product_attention (broadcast batch dims,
// grouped-query heads, contiguous layouts) into one FusedAttnArgs.
inline std::pair<Tensor, Tensor> sdpa_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                           bool is_causal, double dropout_p, double scale,
                                           const Tensor& key_padding_mask, bool need_weights) {
  const char* op = "scaled_dot_product_attention";
  ATTN_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, op, ": q ", to_string(q.shape()), ", k ",
             to_string(k.shape()), ", v ", to_string(v.shape()), " must be at least 2-D [..., L, E]");
  ATTN_CHECK(q.size(-1) == k.size(-1), op, ": q ", to_string(q.shape()), " and k ", to_string(k.shape()),
             " must have the same last dim E");
  ATTN_CHECK(k.size(-2) == v.size(-2), op, ": k ", to_string(k.shape()), " and v ", to_string(v.shape()),
             " must have the same number of keys S (dim -2)");
  ATTN_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, op, ": dropout_p must be in [0, 1), got ", dropout_p);
  // Grouped-query / multi-query attention: q [B, H, L, E], k [B, Hkv, S, E], v [B, Hkv, S, Ev]
  // with H a multiple of Hkv (PyTorch 2.5's enable_gqa): query head h reads K/V head
  // h / (H / Hkv) in place, no expanded copy of K and V (a plain broadcast would copy them through
  // expand). CUDA tensors keep the broadcasting copy (its kernels read one K/V head per head).
  const bool gqa = q.device() == Device::CPU && q.dim() == 4 && k.dim() == 4 && v.dim() == 4 &&
                   q.size(0) == k.size(0) && k.size(0) == v.size(0) && k.size(1) == v.size(1) && k.size(1) > 0 &&
                   k.size(1) != q.size(1) && q.size(1) % k.size(1) == 0;
  const Shape bq(q.shape().begin(), q.shape().end() - 2), bk(k.shape().begin(), k.shape().end() - 2),
      bv(v.shape().begin(), v.shape().end() - 2);
  const Shape bs = gqa ? bq : broadcast_shapes(broadcast_shapes(bq, bk, op), bv, op);
  auto full = [&](const Tensor& t, const Shape& tb) {
    if (tb == bs) return t;
    Shape s = bs;
    s.push_back(t.size(-2));
    s.push_back(t.size(-1));
    return expand(t, s);  // differentiable: its backward sums over the broadcast dims
  };
  const int64_t L = q.size(-2), S = k.size(-2), E = q.size(-1), Ev = v.size(-1);
  FusedAttnArgs a;
  if (gqa) {
    a.q = q;
    a.k = k;
    a.v = v;
    a.p.B = q.size(0);
    a.p.H = q.size(1);
    a.p.kv_group = q.size(1) / k.size(1);
  } else {
    a.q = full(q, bq);
    a.k = full(k, bk);
    a.v = full(v, bv);
    a.p.B = bs.empty() ? 1 : bs[0];
    a.p.H = numel_of(bs) / std::max<int64_t>(a.p.B, 1);
    if (numel_of(bs) == 0) a.p.H = 0;
  }
  const int64_t Hkv = a.p.H / a.p.kv_group;
  a.p.L = L;
  a.p.S = S;
  a.p.E = E;
  a.p.Ev = Ev;
  a.p.scale = std::isnan(scale) ? 1.0 / std::sqrt(double(E)) : scale;
  a.p.causal = is_causal;
  a.p.dropout_p = dropout_p;
  if (dropout_p > 0.0) a.p.dropout_seed = default_generator().next_u64();
  // contiguous [B, H, rows, cols] layouts (H = product of the remaining batch dims)
  a.lq = {0, a.p.H * L * E, L * E, E};
  a.lk = {0, Hkv * S * E, S * E, E};
  a.lv = {0, Hkv * S * Ev, S * Ev, Ev};
  a.lo = {0, a.p.H * L * Ev, L * Ev, Ev};
  a.out_shape = bs;
  a.out_shape.push_back(L);
  a.out_shape.push_back(Ev);
  a.scores_shape = bs;
  a.scores_shape.push_back(L);
  a.scores_shape.push_back(S);
  a.attn_mask = attn_mask;
  a.key_padding_mask = key_padding_mask;
  a.need_weights = need_weights;
  if (key_padding_mask.defined())
    ATTN_CHECK(!bs.empty() || key_padding_mask.dim() == 1, op, ": key_padding_mask ",
               to_string(key_padding_mask.shape()), " given for unbatched q ", to_string(q.shape()),
               " must be [S]");
  return fused_attention(a, op);
}

// The fused node: forward by attn_forward_kernel (weights stored, [B*H, L, S]); the recorded
// backward (attn_backward_kernel) gives, with W' = W * D / (1 - p):
//   dW' = dO V^T + dWout;  dW = dW' * D / (1 - p);  dZ = W * (dW - rowsum(dW * W))
//   dV = W'^T dO;  dQ = scale * dZ K;  dK = scale * dZ^T Q;  dM = dZ summed to the float mask's shape.
// Large problems without weights or mask gradient go to fused_attention_tiled.
ATTN_API std::pair<Tensor, Tensor> fused_attention(const FusedAttnArgs& args, const char* op) {
  FusedAttnArgs a = args;  // the backward keeps this copy: its p.alibi points into its alibi_slopes
  if (a.alibi_slopes.defined()) {
    ATTN_CHECK(a.alibi_slopes.dtype() == kFloat64 && a.alibi_slopes.dim() == 1 && a.alibi_slopes.size(0) == a.p.H, op,
               ": ALiBi slopes ", to_string(a.alibi_slopes.shape()), " (", dtype_name(a.alibi_slopes.dtype()),
               ") must be float64 [H] with H = ", a.p.H);
    a.p.alibi = a.alibi_slopes.data<double>();
  }
  if (on_cuda(a.q, a.k, a.v)) return cuda_ops::fused_attention(a, op, make_mask_view);
  const Tensor &q = a.q, &k = a.k, &v = a.v;
  const AttnProblem& p = a.p;
  check_same_dtype(q, k, op);
  check_same_dtype(q, v, op);
  AttnMaskView mview = make_mask_view(a.attn_mask, a.scores_shape, op, "attn_mask");
  AttnMaskView kview = key_padding_view(a.key_padding_mask, p, a.scores_shape, op);
  const bool mask_grad = a.attn_mask.defined() && a.attn_mask.is_floating_point() && a.attn_mask.requires_grad();
  const bool track = is_grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad() || mask_grad);
  if (use_tiled_attention(p, q.dtype(), a.need_weights, mask_grad))
    return {fused_attention_tiled(a, op, mview, kview, track), Tensor()};
  const bool drop = p.dropout_p > 0.0;
  Tensor out = Tensor::empty(a.out_shape, q.dtype());
  Tensor W, Wd;
  if (track || a.need_weights) W = Tensor::empty(a.scores_shape, q.dtype());
  if (drop && a.need_weights) Wd = Tensor::empty(a.scores_shape, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    kernels::cpu::attn_forward_kernel<scalar_t>(p, q.data<scalar_t>(), a.lq, k.data<scalar_t>(), a.lk, v.data<scalar_t>(), a.lv,
                                  out.data<scalar_t>(), a.lo, mview, kview, W.defined() ? W.data<scalar_t>() : nullptr,
                                  Wd.defined() ? Wd.data<scalar_t>() : nullptr);
  });
  Tensor weights;
  if (a.need_weights) weights = drop ? Wd : W.detach();
  if (!track) {
    // Not recorded, so record() does not see the outputs: check them here in anomaly mode.
    if (is_anomaly_enabled()) {
      check_finite(out, op, "forward output");
      check_finite(weights, op, "forward output (weights)");
    }
    return {out, weights};
  }
  std::vector<Tensor> inputs{q, k, v};
  if (mask_grad) inputs.push_back(a.attn_mask);
  // Saved: inputs, pre-dropout W and the dropout seed (the mask is regenerated from it).
  auto fn = [a, W = W.detach(), mask_grad](const std::vector<Tensor>& g) {
    const Tensor &q = a.q, &k = a.k, &v = a.v;
    AttnGradBuffers gb(a);
    Tensor &gq = gb.gq, &gk = gb.gk, &gv = gb.gv;
    Tensor dZ = Tensor::empty(a.scores_shape, q.dtype());
    Tensor gout = g[0].defined() ? g[0] : Tensor::zeros(a.out_shape, q.dtype());
    const Tensor gw = g.size() > 1 ? g[1] : Tensor();
    // The output gradient is contiguous in out_shape, i.e. laid out like the output.
    ATTN_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention_backward", [&] {
      kernels::cpu::attn_backward_kernel<scalar_t>(a.p, q.data<scalar_t>(), a.lq, k.data<scalar_t>(), a.lk, v.data<scalar_t>(), a.lv,
                                     gout.data<scalar_t>(), a.lo, W.data<scalar_t>(),
                                     gw.defined() ? gw.data<scalar_t>() : nullptr,
                                     gq.defined() ? gq.data<scalar_t>() : nullptr,
                                     gk.defined() ? gk.data<scalar_t>() : nullptr,
                                     gv.defined() ? gv.data<scalar_t>() : nullptr, dZ.data<scalar_t>());
    });
    std::vector<Tensor> res = gb.results();
    if (mask_grad) {
      Tensor gm = sum_to(dZ, a.attn_mask.shape());
      res.push_back(gm.dtype() == a.attn_mask.dtype() ? gm : gm.to(a.attn_mask.dtype()));
    }
    return res;
  };
  std::vector<Tensor*> outputs{&out};
  if (a.need_weights) outputs.push_back(&weights);
  record(op, outputs, inputs, fn, {q, k, v, a.attn_mask, a.key_padding_mask, W});
  return {out, weights};
}

// The tiled node (no weights, no mask gradient): forward saves O and LSE [B*H, L]; the backward
// recomputes the weights block by block (flash_forward_kernel / flash_backward_kernel).
inline Tensor fused_attention_tiled(const FusedAttnArgs& a, const char* op, const AttnMaskView& mview,
                                    const AttnMaskView& kview, bool track) {
  const Tensor& q = a.q;
  Tensor out = Tensor::empty(a.out_shape, q.dtype());
  Tensor lse;
  if (track) lse = Tensor::empty({a.p.B * a.p.H, a.p.L}, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    kernels::cpu::flash_forward_kernel<scalar_t>(a.p, q.data<scalar_t>(), a.lq, a.k.data<scalar_t>(), a.lk, a.v.data<scalar_t>(),
                                   a.lv, out.data<scalar_t>(), a.lo, mview, kview,
                                   track ? lse.data<scalar_t>() : nullptr);
  });
  if (!track) {
    if (is_anomaly_enabled()) check_finite(out, op, "forward output");
    return out;
  }
  // Saved: inputs (and masks, through `a` and the views), the output and LSE; the dropout mask
  // is regenerated from the seed.
  auto fn = [a, mview, kview, o = out.detach(), lse](const std::vector<Tensor>& g) {
    const Tensor& q = a.q;
    AttnGradBuffers gb(a);
    const Tensor gout = g[0].defined() ? g[0] : Tensor::zeros(a.out_shape, q.dtype());
    // The output gradient is contiguous in out_shape, i.e. laid out like the output.
    ATTN_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention_backward", [&] {
      kernels::cpu::flash_backward_kernel<scalar_t>(a.p, q.data<scalar_t>(), a.lq, a.k.data<scalar_t>(), a.lk,
                                      a.v.data<scalar_t>(), a.lv, o.data<scalar_t>(), gout.data<scalar_t>(), a.lo,
                                      lse.data<scalar_t>(), mview, kview,
                                      gb.gq.defined() ? gb.gq.data<scalar_t>() : nullptr,
                                      gb.gk.defined() ? gb.gk.data<scalar_t>() : nullptr,
                                      gb.gv.defined() ? gb.gv.data<scalar_t>() : nullptr,
                                      flash_attn_config().backward_schedule);
    });
    return gb.results();
  };
  record(op, std::vector<Tensor*>{&out}, {a.q, a.k, a.v}, fn, {a.q, a.k, a.v, a.attn_mask, a.key_padding_mask, out});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Glue: path choice, mask views, gradient buffers.

// Whether fused_attention takes the tiled path for this call.
inline bool use_tiled_attention(const AttnProblem& p, DType dt, bool need_weights, bool mask_grad) {
  if (need_weights || mask_grad) return false;
  const double bytes = double(p.B) * double(p.H) * double(p.L) * double(p.S) * double(dtype_size(dt));
  return bytes >= double(flash_attn_config().min_weight_bytes);
}

// Builds the per-item view of a mask broadcast to `scores_shape` (= batch dims..., L, S, whose
// batch dims multiply to B*H). Throws ShapeError naming `op` when it does not broadcast.
inline AttnMaskView make_mask_view(const Tensor& m, const Shape& scores_shape, const char* op, const char* what) {
  AttnMaskView v;
  if (!m.defined()) return v;
  bool ok = m.dim() >= 1 && m.dim() <= int64_t(scores_shape.size());
  for (int64_t i = 1; ok && i <= m.dim(); ++i) {
    const int64_t a = m.shape()[size_t(m.dim() - i)], b = scores_shape[scores_shape.size() - size_t(i)];
    ok = a == b || a == 1;
  }
  ATTN_CHECK(ok, op, ": ", what, " ", to_string(m.shape()), " cannot be broadcast to the attention scores ",
             to_string(scores_shape), " (expected [L, S], [B, 1, L, S] or [B, H, L, S] style shapes)");
  ATTN_CHECK(m.dtype() == kBool || m.is_floating_point(), op, ": ", what, " must be bool or floating, got ",
             dtype_name(m.dtype()));
  const auto st = broadcast_strides(m.shape(), scores_shape);
  const size_t nb = scores_shape.size() - 2;
  v.item_off = mask_item_offsets(scores_shape, st);
  v.sl = st[nb];
  v.ss = st[nb + 1];
  v.data = m.raw_data();
  v.dtype = m.dtype();
  return v;
}

// The key_padding_mask [B, S] read per item (b*H + h -> row b), or an empty view when undefined.
inline AttnMaskView key_padding_view(const Tensor& m, const AttnProblem& p, const Shape& scores_shape, const char* op) {
  AttnMaskView kview;
  if (!m.defined()) return kview;
  check_key_padding_mask(m, p, scores_shape, op);
  kview.data = m.raw_data();
  kview.dtype = kBool;
  kview.ss = 1;
  kview.item_off.resize(size_t(p.B * p.H));
  for (int64_t it = 0; it < p.B * p.H; ++it) kview.item_off[size_t(it)] = (it / p.H) * p.S;
  return kview;
}

inline AttnGradBuffers::AttnGradBuffers(const FusedAttnArgs& a) {
  const Tensor &q = a.q, &k = a.k, &v = a.v;
  const AttnOperandAliasing al = attn_operand_aliasing(a);
  same_kq = al.same_kq;
  same_vq = al.same_vq;
  same_vk = al.same_vk;
  if (q.requires_grad()) gq = Tensor::zeros(q.shape(), q.dtype());
  if (k.requires_grad()) gk = same_kq ? gq : Tensor::zeros(k.shape(), k.dtype());
  if (v.requires_grad()) gv = same_vq ? gq : (same_vk ? gk : Tensor::zeros(v.shape(), v.dtype()));
}

}  // namespace detail
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
