#pragma once
// CUDA path of the attention family (see ops/cuda/common.hpp): fused scaled dot-product attention
// (ops/attention.hpp) and windowed / block-local band attention (ops/windowed_attention.hpp),
// forward and backward. Kernels: kernels/cuda/attention.cu.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>
#include "../../kernels/cuda/attention.hpp"
#include "../attention_args.hpp"
#include "../attention_checks.hpp"
#include "common.hpp"

namespace attn::cuda_ops {

#ifdef ATTN_WITH_CUDA
// ---------------- fused scaled dot-product attention ----------------
template <class L>
kc::Layout to_layout(const L& l) {
  kc::Layout k;
  k.off = l.off;
  k.sb = l.sb;
  k.sh = l.sh;
  k.ld = l.ld;
  return k;
}

// The CUDA path of ops/attention.hpp's detail::fused_attention (Args = detail::FusedAttnArgs,
// MaskView = detail::make_mask_view, passed in by the caller: templates only so that this header
// needs no declaration order with attention.hpp). Same masks, layouts, dropout stream and outputs;
// the backward recomputes the weights from the saved log-sum-exp instead of storing them. Not
// supported here: a float attn_mask that requires grad.
template <class Args, class MaskView>
std::pair<Tensor, Tensor> fused_attention(const Args& a, const char* op, const MaskView& mask_view) {
  const Tensor &q = a.q, &k = a.k, &v = a.v;
  check_pair(q, k, op);
  check_pair(q, v, op);
  ATTN_CHECK(a.p.kv_group == 1 && a.p.q_offset == 0 && !a.p.alibi, op, ": grouped-query attention (", a.p.H,
             " query heads over ", a.p.H / std::max<int64_t>(a.p.kv_group, 1), " key/value heads), ALiBi and the",
             " end-aligned causal mask of a KV cache are CPU-only for now; q ", to_string(q.shape()), ", k ",
             to_string(k.shape()));
  kc::AttnParams p;
  p.B = a.p.B;
  p.H = a.p.H;
  p.L = a.p.L;
  p.S = a.p.S;
  p.E = a.p.E;
  p.Ev = a.p.Ev;
  p.scale = float(a.p.scale);
  p.causal = a.p.causal;
  p.dropout_p = a.p.dropout_p;
  p.dropout_seed = a.p.dropout_seed;
  Tensor item_off;  // device int64 [B*H]
  if (a.attn_mask.defined()) {
    const Tensor& m = a.attn_mask;
    check_on_cuda(m, op, "attn_mask");
    // The per-item offsets and strides of the CPU path (detail::make_mask_view, which also checks
    // that the mask broadcasts to the scores).
    const auto view = mask_view(m, a.scores_shape, op, "attn_mask");
    ATTN_CHECK(m.dtype() == kBool || m.dtype() == kFloat32, op, ": on CUDA attn_mask must be bool or float32, got ",
               dtype_name(m.dtype()));
    ATTN_CHECK(!(m.is_floating_point() && m.requires_grad()), op,
               ": a float attn_mask that requires grad is not supported on CUDA (its gradient needs the score matrix)");
    item_off = Tensor::from_vector(view.item_off, {int64_t(view.item_off.size())}).to(Device::CUDA);
    p.mask = m.raw_data();
    p.mask_is_bool = m.dtype() == kBool;
    p.mask_item_off = static_cast<const int64_t*>(item_off.raw_data());
    p.mask_sl = view.sl;
    p.mask_ss = view.ss;
  }
  if (a.key_padding_mask.defined()) {
    const Tensor& m = a.key_padding_mask;
    check_on_cuda(m, op, "key_padding_mask");
    detail::check_key_padding_mask(m, a.p, a.scores_shape, op);
    p.kpm = static_cast<const uint8_t*>(m.raw_data());
  }
  const kc::Layout lq = to_layout(a.lq), lk = to_layout(a.lk), lv = to_layout(a.lv), lo = to_layout(a.lo);
  const bool track = is_grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  Tensor out = zeros(a.out_shape), lse = empty({std::max<int64_t>(p.B * p.H * p.L, 1)});
  kc::attention_forward(p, cfp(q), lq, cfp(k), lk, cfp(v), lv, fp(out), lo, fp(lse));
  Tensor weights;
  if (a.need_weights) {
    weights = empty(a.scores_shape);
    kc::attention_weights(p, cfp(q), lq, cfp(k), lk, cfp(lse), fp(weights), true);
  }
  if (!track) return {out, weights};
  std::vector<Tensor> inputs{q, k, v};
  // Saved: inputs, masks (held by `a`), the output and the per-row log-sum-exp.
  auto fn = [a, p, lq, lk, lv, lo, item_off, lse, od = out.detach()](const std::vector<Tensor>& g) {
    const Tensor &q = a.q, &k = a.k, &v = a.v;
    // Operand aliasing exactly as the CPU path: a packed projection gets one gradient buffer.
    const auto [same_kq, same_vq, same_vk] = detail::attn_operand_aliasing(a);
    Tensor gq, gk, gv;
    if (q.requires_grad()) gq = zeros(q.shape());
    if (k.requires_grad()) gk = same_kq ? gq : zeros(k.shape());
    if (v.requires_grad()) gv = same_vq ? gq : (same_vk ? gk : zeros(v.shape()));
    const Tensor gout = g[0].defined() ? grad_on_cuda(g[0]) : zeros(a.out_shape);
    const Tensor gw = g.size() > 1 && g[1].defined() ? grad_on_cuda(g[1]) : Tensor();
    Tensor scratch = empty({std::max<int64_t>(p.B * p.H * p.L, 1)});
    kc::attention_backward(p, cfp(q), lq, cfp(k), lk, cfp(v), lv, cfp(od), cfp(gout), lo, cfp(lse), cfp(gw),
                           gq.defined() ? fp(gq) : nullptr, gk.defined() ? fp(gk) : nullptr,
                           gv.defined() ? fp(gv) : nullptr, fp(scratch));
    return std::vector<Tensor>{gq, same_kq ? Tensor() : gk, (same_vq || same_vk) ? Tensor() : gv};
  };
  if (a.need_weights) record(op, std::vector<Tensor*>{&out, &weights}, inputs, fn);
  else record(op, std::vector<Tensor*>{&out}, inputs, fn);
  return {out, weights};
}

// ---------------- windowed / block-local attention ----------------
// The CUDA path of ops/windowed_attention.hpp's detail::band_attention (Spec = detail::BandSpec),
// called after that function's shape checks.
template <class Spec>
std::pair<Tensor, Tensor> band_attention(const char* op, const Spec& spec, const Tensor& q, const Tensor& k,
                                         const Tensor& v, double scale, const Tensor& key_padding_mask,
                                         const Tensor& relative_bias) {
  check_pair(q, k, op);
  check_pair(q, v, op);
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2), Ev = v.size(-1);
  kc::BandParams p;
  p.block_mode = spec.block_mode;
  p.causal = spec.causal;
  p.left = spec.left;
  p.right = spec.right;
  p.block = spec.block;
  p.W = spec.W;
  p.L = L;
  p.S = S;
  p.E = E;
  p.Ev = Ev;
  p.N = q.numel() / std::max<int64_t>(L * E, 1);
  if (std::isnan(scale)) scale = 1.0 / std::sqrt(double(std::max<int64_t>(E, 1)));
  p.scale = float(scale);
  if (key_padding_mask.defined()) {
    check_on_cuda(key_padding_mask, op, "key_padding_mask");
    const int64_t mask_rows = detail::check_batch_key_padding_mask(op, q, k, S, key_padding_mask);
    p.kpm = static_cast<const uint8_t*>(key_padding_mask.raw_data());
    p.kpm_div = p.N / std::max<int64_t>(mask_rows, 1);
  }
  Tensor bias;
  if (relative_bias.defined()) {
    detail::check_relative_bias(op, q, relative_bias, p.W, p.block_mode, p.causal, p.right);
    check_pair(q, relative_bias, op);
    bias = relative_bias;
    p.bias = cfp(bias);
    p.bias_rows = relative_bias.size(0);
  }
  Shape os = q.shape(), ws = q.shape();
  os.back() = Ev;
  ws.back() = p.W;
  Tensor out = empty(os), P = empty(ws);
  kc::band_forward(p, cfp(q), cfp(k), cfp(v), fp(out), fp(P));
  std::vector<Tensor> inputs{q, k, v};
  if (bias.defined()) inputs.push_back(bias);
  record(op, std::vector<Tensor*>{&out, &P}, inputs,
         [q = q.detach(), k = k.detach(), v = v.detach(), bias, kpm = key_padding_mask, p,
          Pd = P.detach()](const std::vector<Tensor>& g) {
           (void)kpm;  // keeps the mask's device memory alive for p.kpm
           Tensor gq = empty(q.shape()), gk = empty(k.shape()), gv = empty(v.shape());
           Tensor gb = bias.defined() ? empty(bias.shape()) : Tensor();
           Tensor ds = empty(Pd.shape());
           const Tensor G = g[0].defined() ? grad_on_cuda(g[0]) : Tensor();
           const Tensor GW = g.size() > 1 && g[1].defined() ? grad_on_cuda(g[1]) : Tensor();
           kc::band_backward(p, cfp(q), cfp(k), cfp(v), cfp(Pd), cfp(G), cfp(GW), fp(gq), fp(gk), fp(gv),
                             gb.defined() ? fp(gb) : nullptr, fp(ds));
           std::vector<Tensor> grads{gq, gk, gv};
           if (bias.defined()) grads.push_back(gb);
           return grads;
         });
  return {out, P};
}
#else
template <class Args, class MaskView>
std::pair<Tensor, Tensor> fused_attention(const Args& a, const char* op, const MaskView&) {
  built_without_cuda(op, a.q, a.k, a.v);
}
template <class Spec>
std::pair<Tensor, Tensor> band_attention(const char* op, const Spec&, const Tensor& q, const Tensor& k,
                                         const Tensor& v, double, const Tensor&, const Tensor&) {
  built_without_cuda(op, q, k, v);
}
#endif

}  // namespace attn::cuda_ops
