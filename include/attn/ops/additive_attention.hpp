#pragma once
// Additive (Bahdanau) attention and self-attention pooling, each as one fused autograd node
// after the input projections (which go through attn::linear, i.e. one GEMM each).
//
//   additive_attention:  score_ij = v^T tanh(W_q q_i + b_q + W_k k_j + b_k)
//                        w_i = softmax_j(score_ij over keys allowed by the mask)
//                        context_i = sum_j w_ij values_j
//   attention_pooling:   score_t = w2^T tanh(a_t) + b2,  a_t = W1 h_t + b1 (given pre-activated)
//                        w = softmax_t(score), context = sum_t w_t h_t
//
// Masks are boolean with true = may attend. A query whose keys are all masked gets zero weights,
// a zero context and zero gradients (never NaN). Work is split so that every output element is
// computed by one thread in a fixed order: results do not depend on the thread count.
//
// Reading order: the public functions, then the fused nodes with their recorded backward, then the
// argument checks; the raw loops are in kernels/cpu/additive.hpp.
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"
#include "reduce.hpp"
#include "shape.hpp"

namespace attn {
ATTN_API std::pair<Tensor, Tensor> additive_attention(const Tensor& query, const Tensor& keys, const Tensor& values,
                                                      const Tensor& W_q, const Tensor& W_k, const Tensor& v,
                                                      const Tensor& mask = Tensor(), const Tensor& b_q = Tensor(),
                                                      const Tensor& b_k = Tensor());
ATTN_API std::pair<Tensor, Tensor> additive_attention_step(const Tensor& query, const Tensor& keys,
                                                           const Tensor& values, const Tensor& W_q, const Tensor& W_k,
                                                           const Tensor& v, const Tensor& mask = Tensor(),
                                                           const Tensor& b_q = Tensor(), const Tensor& b_k = Tensor());
ATTN_API std::pair<Tensor, Tensor> attention_pooling(const Tensor& h, const Tensor& W1, const Tensor& b1,
                                                     const Tensor& w2, const Tensor& b2, const Tensor& mask = Tensor());
ATTN_API Tensor lengths_to_mask(const std::vector<int64_t>& lengths, int64_t T);
namespace detail {
// The pooling core composed of plain ops (defined below), for nn::AttentionPooling on the GPU.
ATTN_API std::pair<Tensor, Tensor> pooling_composed(const Tensor& a, const Tensor& w2, const Tensor& b2,
                                                    const Tensor& h, const Tensor& mask,
                                                    Tensor (*normalize)(const Tensor&, int64_t) = nullptr);
}  // namespace detail
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>
#include "../kernels/cpu/additive.hpp"

namespace attn {
namespace detail {

// The key-mask view lives with the kernels (kernels/cpu/additive.hpp).
using kernels::cpu::AddMaskView;

// Defined below the public functions.
inline AddMaskView additive_mask_view(const Tensor& mask, int64_t B, int64_t Lq, int64_t S, const char* op,
                                      const Shape& qshape, const Shape& kshape);
inline int64_t check_additive_args(const char* op, const Tensor& query, const Tensor& keys, const Tensor& values,
                                   const Tensor& W_q, const Tensor& W_k, const Tensor& v, const Tensor& b_q,
                                   const Tensor& b_k);
inline std::pair<Tensor, Tensor> additive_core(const Tensor& pq, const Tensor& pk, const Tensor& v,
                                               const Tensor& values, const AddMaskView& mv, const Tensor& mask);
inline std::pair<Tensor, Tensor> pooling_core(const Tensor& a, const Tensor& w2, const Tensor& b2, const Tensor& h,
                                              const Tensor& mask);

}  // namespace detail

// Additive (Bahdanau) attention.
//   query [B, Lq, Dq], keys [B, S, Dk], values [B, S, Dv]; W_q [H, Dq], W_k [H, Dk], v [H] or [1, H]
//   (the weight of Linear(H, 1)); mask: bool [B, S] or [B, Lq, S], true = may attend;
//   b_q [H], b_k [H] optional biases.
// Returns (context [B, Lq, Dv], weights [B, Lq, S]). Time O(B Lq S H + B Lq S Dv), memory O(B Lq S).
ATTN_API std::pair<Tensor, Tensor> additive_attention(const Tensor& query, const Tensor& keys, const Tensor& values,
                                                    const Tensor& W_q, const Tensor& W_k, const Tensor& v,
                                                    const Tensor& mask, const Tensor& b_q,
                                                    const Tensor& b_k) {
  const char* op = "additive_attention";
  ATTN_CHECK(query.dim() == 3 && keys.dim() == 3 && values.dim() == 3, op, ": expected query [B, Lq, Dq], keys [B, S, Dk], values [B, S, Dv], got ",
             to_string(query.shape()), ", ", to_string(keys.shape()), ", ", to_string(values.shape()));
  const int64_t B = query.size(0), Lq = query.size(1), S = keys.size(1);
  const int64_t H = detail::check_additive_args(op, query, keys, values, W_q, W_k, v, b_q, b_k);
  const detail::AddMaskView mv = detail::additive_mask_view(mask, B, Lq, S, op, query.shape(), keys.shape());
  Tensor pq = linear(query, W_q, b_q), pk = linear(keys, W_k, b_k);
  return detail::additive_core(pq, pk, reshape(v, {H}), values, mv, mask);
}

// One step of additive attention for a decoder loop, as ONE autograd node with its projections:
//   query [B, Dq] (e.g. the decoder state s_{t-1}), keys [B, S, Dk], values [B, S, Dv],
//   W_q [H, Dq], W_k [H, Dk], v [H] or [1, H]; mask bool [B, S], true = may attend; b_q, b_k [H].
//   pq = query W_q^T + b_q,  pk_j = keys_j W_k^T + b_k,  score_j = v . tanh(pq + pk_j)
//   w = softmax_j(score) over allowed keys,  context = sum_j w_j values_j
// Returns (context [B, Dv], weights [B, S]): additive_attention with Lq = 1, squeezed.
ATTN_API std::pair<Tensor, Tensor> additive_attention_step(const Tensor& query, const Tensor& keys, const Tensor& values,
                                                         const Tensor& W_q, const Tensor& W_k, const Tensor& v,
                                                         const Tensor& mask, const Tensor& b_q,
                                                         const Tensor& b_k) {
  const char* op = "additive_attention_step";
  ATTN_CHECK(query.dim() == 2 && keys.dim() == 3 && values.dim() == 3, op,
             ": expected query [B, Dq], keys [B, S, Dk], values [B, S, Dv], got ", to_string(query.shape()), ", ",
             to_string(keys.shape()), ", ", to_string(values.shape()));
  const int64_t H = detail::check_additive_args(op, query, keys, values, W_q, W_k, v, b_q, b_k);
  const int64_t B = query.size(0), S = keys.size(1), Dv = values.size(2);
  const detail::AddMaskView mv = detail::additive_mask_view(mask, B, 1, S, op, query.shape(), keys.shape());
  const DType dt = query.dtype();
  Tensor pq = Tensor::empty({B, H}, dt), pk = Tensor::empty({B * S, H}, dt);
  Tensor ctx = Tensor::empty({B, Dv}, dt), w = Tensor::empty({B, S}, dt);
  // flops of the op (projections, scores, context): small steps stay on the calling thread
  const double flops = 2.0 * double(B) * double(H) * double(query.size(1) + S * keys.size(2)) +
                       double(B) * double(S) * double(4 * H + 2 * Dv);
  const bool par = detail::step_parallel(flops);
  ATTN_DISPATCH_FLOATING(dt, op, [&] {
    detail::fill_bias_rows<scalar_t>(pq.data<scalar_t>(), B, H, b_q);
    detail::linear_product<scalar_t>(query, W_q, 1, pq.data<scalar_t>(), par);
    detail::fill_bias_rows<scalar_t>(pk.data<scalar_t>(), B * S, H, b_k);
    detail::linear_product<scalar_t>(keys, W_k, 1, pk.data<scalar_t>(), par);
    parallel_for(0, B, par ? rows_grain(kGrainRowWork, S * H) : B, [&](int64_t r0, int64_t r1) {
      kernels::cpu::additive_forward_rows<scalar_t>(r0, r1, 1, S, H, Dv, pq.data<scalar_t>(), pk.data<scalar_t>(),
                                                    v.data<scalar_t>(), values.data<scalar_t>(), mv,
                                                    w.data<scalar_t>(), ctx.data<scalar_t>());
    });
  });
  // Backward: gpq, gpk, gv, gvalues from kernels::cpu::additive_backward_raw (formulas
  // beside detail::additive_core's backward), then the
  // projections: gquery = gpq W_q, gW_q = gpq^T query, gb_q = sum_rows gpq, and the same for the
  // keys with gpk, W_k, b_k.
  if (!is_grad_enabled() && !is_anomaly_enabled()) return {ctx, w};  // nothing to record
  record(op, std::vector<Tensor*>{&ctx, &w}, {query, keys, values, W_q, W_k, v, b_q, b_k},
         [query, keys, values, W_q, W_k, v, b_q, b_k, mv, mask, pq, pk, wd = w.detach(), par](const std::vector<Tensor>& g) {
           (void)mask;  // keeps the mask's storage alive for mv
           const int64_t B = query.size(0), S = keys.size(1), H = W_q.size(0), Dv = values.size(2);
           const DType dt = query.dtype();
           Tensor gpq = Tensor::zeros({B, H}, dt), gpk = Tensor::zeros({B * S, H}, dt);
           Tensor gv = Tensor::zeros(v.shape(), dt), gval = Tensor::zeros(values.shape(), dt);
           Tensor gq, gwq, gbq, gk, gwk, gbk;
           ATTN_DISPATCH_FLOATING(dt, "additive_attention_step_backward", [&] {
             auto ptr = [](const Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
             kernels::cpu::additive_backward_raw<scalar_t>(
                 B, 1, S, H, Dv, pq.data<scalar_t>(), pk.data<scalar_t>(), v.data<scalar_t>(),
                 values.data<scalar_t>(), wd.data<scalar_t>(), ptr(g[0]), ptr(g[1]), gpq.data<scalar_t>(),
                 gpk.data<scalar_t>(), gv.data<scalar_t>(), gval.data<scalar_t>(), par);
             detail::linear_grads<scalar_t>(gpq.data<scalar_t>(), query, W_q, b_q, gq, gwq, gbq, par);
             detail::linear_grads<scalar_t>(gpk.data<scalar_t>(), keys, W_k, b_k, gk, gwk, gbk, par);
           });
           return std::vector<Tensor>{gq, gk, gval, gwq, gwk, gv, gbq, gbk};
         },
         {query, keys, values, W_q, W_k, v, mask, w});
  return {ctx, w};
}

// Self-attention pooling (the sine-anomaly classifier of examples/sine_anomaly):
//   score_t = w2 . tanh(W1 h_t + b1) + b2,  w = softmax_t(score) over steps allowed by mask,
//   context = sum_t w_t h_t.
// h [B, T, D]; W1 [Hd, D], b1 [Hd] (optional), w2 [1, Hd] or [Hd], b2 [1] (optional);
// mask bool [B, T], true = valid step. Returns (context [B, D], weights [B, T]).
// The first projection is one GEMM (attn::linear); tanh, scoring, softmax and the weighted sum
// are one fused node.
ATTN_API std::pair<Tensor, Tensor> attention_pooling(const Tensor& h, const Tensor& W1, const Tensor& b1,
                                                   const Tensor& w2, const Tensor& b2, const Tensor& mask) {
  const char* op = "attention_pooling";
  ATTN_CHECK(h.dim() == 3, op, ": expected h [B, T, D], got ", to_string(h.shape()));
  ATTN_CHECK(W1.dim() == 2 && W1.size(1) == h.size(2), op, ": W1 ", to_string(W1.shape()), " does not match h ",
             to_string(h.shape()), " (need [hidden, D])");
  const int64_t Hd = W1.size(0);
  ATTN_CHECK(w2.numel() == Hd && (w2.dim() == 1 || (w2.dim() == 2 && w2.size(0) == 1)), op, ": w2 ",
             to_string(w2.shape()), " must be [1, ", Hd, "] or [", Hd, "]");
  ATTN_CHECK(!b2.defined() || b2.numel() == 1, op, ": b2 ", to_string(b2.defined() ? b2.shape() : Shape{}),
             " must hold one value");
  if (mask.defined()) {
    ATTN_CHECK(mask.dtype() == kBool && mask.shape() == Shape({h.size(0), h.size(1)}), op, ": mask ",
               to_string(mask.shape()), " (", dtype_name(mask.dtype()), ") must be bool [B, T] = ",
               to_string(Shape{h.size(0), h.size(1)}), " for h ", to_string(h.shape()));
  }
  Tensor a = linear(h, W1, b1);
  if (h.device() != Device::CPU)
    return detail::pooling_composed(a, reshape(w2, {Hd}), b2.defined() ? reshape(b2, {1}) : Tensor(), h, mask);
  return detail::pooling_core(a, reshape(w2, {Hd}), b2.defined() ? reshape(b2, {1}) : Tensor(), h, mask);
}

// Boolean mask [B, T] with mask[b, t] = t < lengths[b] (true = valid step).
ATTN_API Tensor lengths_to_mask(const std::vector<int64_t>& lengths, int64_t T) {
  std::vector<bool> m;
  m.reserve(lengths.size() * size_t(T));
  for (int64_t len : lengths) {
    ATTN_CHECK(len >= 0 && len <= T, "lengths_to_mask: length ", len, " outside [0, ", T, "]");
    for (int64_t t = 0; t < T; ++t) m.push_back(t < len);
  }
  return Tensor::from_vector(m, {int64_t(lengths.size()), T});
}

namespace detail {

// Fused core of additive attention. pq [B, Lq, H], pk [B, S, H], v [H], values [B, S, Dv].
inline std::pair<Tensor, Tensor> additive_core(const Tensor& pq, const Tensor& pk, const Tensor& v,
                                               const Tensor& values, const AddMaskView& mv, const Tensor& mask) {
  const int64_t B = pq.size(0), Lq = pq.size(1), H = pq.size(2), S = pk.size(1), Dv = values.size(2);
  Tensor ctx = Tensor::empty({B, Lq, Dv}, pq.dtype());
  Tensor w = Tensor::empty({B, Lq, S}, pq.dtype());
  ATTN_DISPATCH_FLOATING(pq.dtype(), "additive_attention", [&] {
    parallel_for(0, B * Lq, rows_grain(kGrainRowWork, S * H), [&](int64_t r0, int64_t r1) {
      kernels::cpu::additive_forward_rows<scalar_t>(r0, r1, Lq, S, H, Dv, pq.data<scalar_t>(), pk.data<scalar_t>(),
                                                    v.data<scalar_t>(), values.data<scalar_t>(), mv,
                                                    w.data<scalar_t>(), ctx.data<scalar_t>());
    });
  });
  std::vector<Tensor> inputs{pq, pk, v, values};
  // Backward (additive_backward_raw), t_ijh = tanh(pq_ih + pk_jh), score_ij = sum_h v_h t_ijh:
  //   gw~_ij = gw_ij + gctx_i . values_j;  ds_ij = w_ij (gw~_ij - sum_j' w_ij' gw~_ij')
  //   gpq_ih = sum_j ds_ij v_h (1 - t_ijh^2),  gpk_jh = sum_i ds_ij v_h (1 - t_ijh^2)
  //   gv_h = sum_{b,i,j} ds_ij t_ijh,  gvalues_j = sum_i w_ij gctx_i
  record("additive_attention", std::vector<Tensor*>{&ctx, &w}, inputs,
         [pq, pk, v, values, mv, mask, wd = w.detach()](const std::vector<Tensor>& g) {
           (void)mask;  // keeps the mask's storage alive for mv
           const int64_t B = pq.size(0), Lq = pq.size(1), H = pq.size(2), S = pk.size(1), Dv = values.size(2);
           Tensor gpq = Tensor::zeros(pq.shape(), pq.dtype()), gpk = Tensor::zeros(pk.shape(), pq.dtype());
           Tensor gv = Tensor::zeros(v.shape(), pq.dtype()), gval = Tensor::zeros(values.shape(), pq.dtype());
           ATTN_DISPATCH_FLOATING(pq.dtype(), "additive_attention_backward", [&] {
             auto ptr = [](const Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
             kernels::cpu::additive_backward_raw<scalar_t>(
                 B, Lq, S, H, Dv, pq.data<scalar_t>(), pk.data<scalar_t>(), v.data<scalar_t>(),
                 values.data<scalar_t>(), wd.data<scalar_t>(), ptr(g[0]), ptr(g[1]), gpq.data<scalar_t>(),
                 gpk.data<scalar_t>(), gv.data<scalar_t>(), gval.data<scalar_t>());
           });
           return std::vector<Tensor>{gpq, gpk, gv, gval};
         },
         {pq, pk, v, values, mask, w});
  return {ctx, w};
}

// Fused pooling core: a [B, T, H] (pre-tanh), w2 [H], b2 [1] or undefined, h [B, T, D], mask [B, T].
inline std::pair<Tensor, Tensor> pooling_core(const Tensor& a, const Tensor& w2, const Tensor& b2, const Tensor& h,
                                              const Tensor& mask) {
  const int64_t B = a.size(0), T = a.size(1), H = a.size(2), D = h.size(2);
  Tensor ctx = Tensor::empty({B, D}, h.dtype()), w = Tensor::empty({B, T}, h.dtype());
  std::vector<Tensor> inputs{a, w2, h};
  if (b2.defined()) inputs.push_back(b2);
  const bool track = grad_needed(inputs);
  Tensor u = track ? Tensor::empty(a.shape(), a.dtype()) : Tensor();  // tanh(a), kept for backward
  const uint8_t* M = mask.defined() ? mask.data<uint8_t>() : nullptr;
  ATTN_DISPATCH_FLOATING(a.dtype(), "attention_pooling", [&] {
    const scalar_t *Pa = a.data<scalar_t>(), *Pw2 = w2.data<scalar_t>(), *Ph = h.data<scalar_t>();
    const scalar_t bias = b2.defined() ? b2.data<scalar_t>()[0] : scalar_t(0);
    scalar_t *Pc = ctx.data<scalar_t>(), *Pw = w.data<scalar_t>(), *Pu = track ? u.data<scalar_t>() : nullptr;
    kernels::cpu::pooling_forward<scalar_t>(B, T, H, D, Pa, Pw2, bias, Ph, M, Pc, Pw, Pu);
  });
  // Backward. u = tanh(a), score_t = w2 . u_t + b2, w = softmax(score), ctx = sum_t w_t h_t:
  //   gw~_t = gw_t + gctx . h_t;  ds_t = w_t (gw~_t - sum_t' w_t' gw~_t')
  //   ga_tk = ds_t w2_k (1 - u_tk^2);  gw2_k = sum_{b,t} ds_t u_tk;  gb2 = sum_{b,t} ds_t
  //   gh_t  = w_t gctx
  // One thread per batch row (pooling_backward); the gw2/gb2 partials per row are summed in row order.
  record("attention_pooling", std::vector<Tensor*>{&ctx, &w}, inputs,
         [u, w2, h, has_b2 = b2.defined(), wd = w.detach()](const std::vector<Tensor>& g) {
           const int64_t B = u.size(0), T = u.size(1), H = u.size(2), D = h.size(2);
           Tensor ga = Tensor::empty(u.shape(), u.dtype()), gh = Tensor::empty(h.shape(), h.dtype());
           Tensor gw2p = Tensor::zeros({B, H + 1}, u.dtype());
           ATTN_DISPATCH_FLOATING(u.dtype(), "attention_pooling_backward", [&] {
             const scalar_t *Pu = u.data<scalar_t>(), *Pw2 = w2.data<scalar_t>(), *Ph = h.data<scalar_t>(),
                            *W = wd.data<scalar_t>();
             const scalar_t* Gc = g[0].defined() ? g[0].data<scalar_t>() : nullptr;
             const scalar_t* Gw = g[1].defined() ? g[1].data<scalar_t>() : nullptr;
             scalar_t *Ga = ga.data<scalar_t>(), *Gh = gh.data<scalar_t>(), *Gp = gw2p.data<scalar_t>();
             kernels::cpu::pooling_backward<scalar_t>(B, T, H, D, Pu, Pw2, Ph, W, Gc, Gw, Ga, Gh, Gp);
           });
           Tensor gsum = sum(gw2p, 0, false);  // ordered over b
           std::vector<Tensor> out{ga, narrow(gsum, 0, 0, H), gh};
           if (has_b2) out.push_back(narrow(gsum, 0, H, 1));
           return out;
         },
         {w2, h, w});
  return {ctx, w};
}

// The pooling core composed of plain ops, for tensors on the GPU (each op has a CUDA path; the
// fused pooling_core has only a CPU one). Same formulas and results; a fully masked row gets
// zero weights (softmax of an all -inf lane) and a zero context.
// `normalize` replaces softmax over time (sparsemax, entmax15: see AttentionPooling).
ATTN_API std::pair<Tensor, Tensor> pooling_composed(const Tensor& a, const Tensor& w2, const Tensor& b2,
                                                  const Tensor& h, const Tensor& mask,
                                                  Tensor (*normalize)(const Tensor&, int64_t)) {
  const int64_t B = a.size(0), T = a.size(1), Hd = a.size(2), D = h.size(2);
  Tensor score = reshape(matmul(tanh(a), reshape(w2, {Hd, 1})), {B, T});
  if (b2.defined()) score = add(score, b2);
  if (mask.defined()) {
    const auto m = mask.to_vector<uint8_t>();
    std::vector<float> additive(m.size());
    for (size_t i = 0; i < m.size(); ++i) additive[i] = m[i] ? 0.f : -std::numeric_limits<float>::infinity();
    score = add(score, Tensor::from_vector(additive, {B, T}).to(score.dtype()).to(a.device()));
  }
  Tensor w = normalize ? normalize(score, 1) : softmax(score, 1);
  return {reshape(matmul(reshape(w, {B, 1, T}), h), {B, D}), w};
}

// Checks the arguments shared by additive_attention and additive_attention_step (the query's
// rank is checked by the caller); returns the hidden size H.
inline int64_t check_additive_args(const char* op, const Tensor& query, const Tensor& keys, const Tensor& values,
                                   const Tensor& W_q, const Tensor& W_k, const Tensor& v, const Tensor& b_q,
                                   const Tensor& b_k) {
  const int64_t B = query.size(0), S = keys.size(1);
  ATTN_CHECK(keys.size(0) == B && values.size(0) == B && values.size(1) == S, op, ": batch/length mismatch: query ",
             to_string(query.shape()), ", keys ", to_string(keys.shape()), ", values ", to_string(values.shape()));
  ATTN_CHECK(W_q.dim() == 2 && W_k.dim() == 2 && W_q.size(1) == query.size(-1) && W_k.size(1) == keys.size(2) &&
                 W_q.size(0) == W_k.size(0),
             op, ": W_q ", to_string(W_q.shape()), " / W_k ", to_string(W_k.shape()), " do not match query ",
             to_string(query.shape()), " / keys ", to_string(keys.shape()), " (need [H, Dq] and [H, Dk])");
  const int64_t H = W_q.size(0);
  ATTN_CHECK(v.numel() == H && (v.dim() == 1 || (v.dim() == 2 && v.size(0) == 1)), op, ": v ", to_string(v.shape()),
             " must be [H] or [1, H] with H = ", H);
  for (const Tensor* b : {&b_q, &b_k})
    ATTN_CHECK(!b->defined() || b->shape() == Shape{H}, op, ": biases must be [", H, "], got ", to_string(b->shape()));
  for (const Tensor* t : {&keys, &values, &W_q, &W_k, &v, &b_q, &b_k})
    if (t->defined()) check_same_dtype(query, *t, op);
  return H;
}

inline AddMaskView additive_mask_view(const Tensor& mask, int64_t B, int64_t Lq, int64_t S, const char* op,
                                      const Shape& qshape, const Shape& kshape) {
  AddMaskView m;
  if (!mask.defined()) return m;
  ATTN_CHECK(mask.dtype() == kBool, op, ": mask must be bool, got ", dtype_name(mask.dtype()), " of shape ",
             to_string(mask.shape()));
  const Shape& s = mask.shape();
  const bool two = s == Shape{B, S}, three = s == Shape{B, Lq, S};
  ATTN_CHECK(two || three, op, ": mask ", to_string(s), " must be [B, S] = ", to_string(Shape{B, S}),
             " or [B, Lq, S] = ", to_string(Shape{B, Lq, S}), " (query ", to_string(qshape), ", keys ",
             to_string(kshape), ")");
  m.p = mask.data<uint8_t>();
  m.bstride = two ? S : Lq * S;
  m.qstride = two ? 0 : S;
  return m;
}

}  // namespace detail
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
