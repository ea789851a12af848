#pragma once
// Linear attention (Katharopoulos et al. 2020) with the feature map phi(x) = elu(x) + 1, as one
// fused node with a hand-written backward.
//
//   non-causal: out_i = phi(q_i)^T KV / (phi(q_i) . z + eps),  KV = sum_j phi(k_j) v_j^T  [E, Ev],
//                                                               z  = sum_j phi(k_j)        [E]
//   causal:     the same with KV_i, z_i summed over j <= i only (prefix sums / running state).
//
// q [..., L, E], k [..., S, E], v [..., S, Ev] (leading dims equal); causal needs L == S.
// Key padding and dropout enter as per-key factors a_j (numerator) and b_j (denominator):
//   KV = sum_j a_j phi(k_j) v_j^T,  z = sum_j b_j phi(k_j)
// a padded key has a_j = b_j = 0 (it is ignored); dropout keeps key j of item n with probability
// 1 - p, a_j = keep_nj / (1 - p), b_j = 1: the columns of the implicit weight matrix
// w_ij = phi(q_i).phi(k_j) / (phi(q_i).z + eps) are dropped after normalisation, as softmax
// attention drops weights (E[out] is the output without dropout). The mask is one draw per
// (item, key), shared by all queries of that item, since the weights are never formed.
// Time O(N (L + S) E Ev), extra memory O((L + S) E) per thread (a scratch tensor, counted by
// memory_stats); the L x S matrix is never formed. The causal backward recomputes the running state by a forward scan and gets
// the key/value gradients by a reverse scan, so no per-step state is stored.
// Parallel over the flattened leading dims, one batch item per thread in a fixed order:
// bit-identical results for any thread count.
#include "../core/parallel.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "elementwise.hpp"

namespace attn {
ATTN_API Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                                 double eps = 1e-6, const Tensor& key_padding_mask = Tensor(), double dropout_p = 0.0);
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cmath>
#include <vector>
#include "../kernels/cpu/linear_attention.hpp"
#include "attention_checks.hpp"

namespace attn {

// Linear attention with phi = elu + 1. q [..., L, E], k [..., S, E], v [..., S, Ev] -> [..., L, Ev].
// key_padding_mask: bool [B, S] with B = q.size(0) (or [S] for 2-D q), true = padded key (ignored).
// dropout_p > 0: key dropout as described at the top (one draw per item and key from the global
// generator, in order item by item, key by key: uniform() >= p keeps), as in F.dropout on the
// weights of softmax attention; pass 0 in evaluation.
ATTN_API Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                               double eps, const Tensor& key_padding_mask,
                               double dropout_p) {
  const char* op = "linear_attention";
  detail::check_qkv(op, q, k, v);
  const int64_t nd = q.dim();
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2), Ev = v.size(-1);
  ATTN_CHECK(!causal || L == S, op, ": causal needs L == S, got q ", to_string(q.shape()), ", k ",
             to_string(k.shape()));
  ATTN_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  ATTN_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, op, ": dropout_p must be in [0, 1), got ", dropout_p, " for q ",
             to_string(q.shape()));
  detail::check_same_dtype(q, k, op);
  detail::check_same_dtype(q, v, op);
  const int64_t N = q.numel() / std::max<int64_t>(L * E, 1);
  // Per-key factors [N, S] (a: numerator, b: denominator), only when a mask or dropout is given.
  Tensor fa, fb;
  if (key_padding_mask.defined() || dropout_p > 0.0) {
    const Shape want{nd > 2 ? q.size(0) : 1, S};
    if (key_padding_mask.defined()) detail::check_batch_key_padding_mask(op, q, k, S, key_padding_mask);
    fa = Tensor::empty({N, S}, q.dtype());
    fb = Tensor::empty({N, S}, q.dtype());
    ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
      const uint8_t* pad = key_padding_mask.defined() ? key_padding_mask.data<uint8_t>() : nullptr;
      const int64_t div = N / std::max<int64_t>(want[0], 1);
      scalar_t *a = fa.data<scalar_t>(), *b = fb.data<scalar_t>();
      const scalar_t keep = scalar_t(1.0 / (1.0 - dropout_p));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < S; ++j) {
          const scalar_t live = pad && pad[(n / div) * S + j] ? scalar_t(0) : scalar_t(1);
          a[n * S + j] = b[n * S + j] = live;
        }
      if (dropout_p > 0.0) {
        auto gen = default_generator().lock();
        for (int64_t i = 0; i < N * S; ++i) a[i] *= gen.uniform() >= dropout_p ? keep : scalar_t(0);
      }
    });
  }
  Shape os = q.shape();
  os.back() = Ev;
  Tensor out = Tensor::empty(os, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    const scalar_t *Q = q.data<scalar_t>(), *K = k.data<scalar_t>(), *V = v.data<scalar_t>();
    scalar_t* O = out.data<scalar_t>();
    const scalar_t* A = fa.defined() ? fa.data<scalar_t>() : nullptr;
    const scalar_t* Bd = fb.defined() ? fb.data<scalar_t>() : nullptr;
    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
      Tensor work = Tensor::empty({kernels::cpu::la_scratch_size(L, S, E, Ev, A != nullptr, false)}, q.dtype());
      for (int64_t n = n0; n < n1; ++n)
        kernels::cpu::la_forward_one<scalar_t>(Q + n * L * E, K + n * S * E, V + n * S * Ev, O + n * L * Ev, L, S, E, Ev,
                                         causal, scalar_t(eps), A ? A + n * S : nullptr, Bd ? Bd + n * S : nullptr,
                                         work.data<scalar_t>());
    });
  });
  // Backward (la_backward_one), num_i = KV^T phi(q_i), den_i = phi(q_i) . z + eps:
  //   gnum_i = g_i / den_i,  gden_i = -(g_i . out_i) / den_i,  gphi(q_i) = KV gnum_i + gden_i z
  //   gKV = sum_i phi(q_i) gnum_i^T,  gz = sum_i gden_i phi(q_i)   (causal: sums over i >= j)
  //   gphi(k_j) = a_j gKV v_j + b_j gz,  gv_j = gKV^T (a_j phi(k_j)),  gx = gphi(x) * phi'(x)
  return record(causal ? "linear_attention_causal" : "linear_attention", out, {q, k, v},
                [q, k, v, od = out.detach(), fa, fb, causal, eps, N, L, S, E, Ev](const std::vector<Tensor>& g) {
                  Tensor gq = Tensor::empty(q.shape(), q.dtype()), gk = Tensor::empty(k.shape(), q.dtype()),
                         gv = Tensor::empty(v.shape(), q.dtype());
                  ATTN_DISPATCH_FLOATING(q.dtype(), "linear_attention_backward", [&] {
                    const scalar_t *Q = q.data<scalar_t>(), *K = k.data<scalar_t>(), *V = v.data<scalar_t>(),
                                   *O = od.data<scalar_t>(), *G = g[0].data<scalar_t>();
                    scalar_t *GQ = gq.data<scalar_t>(), *GK = gk.data<scalar_t>(), *GV = gv.data<scalar_t>();
                    const scalar_t* A = fa.defined() ? fa.data<scalar_t>() : nullptr;
                    const scalar_t* Bd = fb.defined() ? fb.data<scalar_t>() : nullptr;
                    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
                      Tensor work = Tensor::empty(
                          {kernels::cpu::la_scratch_size(L, S, E, Ev, A != nullptr, true)}, q.dtype());
                      for (int64_t n = n0; n < n1; ++n)
                        kernels::cpu::la_backward_one<scalar_t>(Q + n * L * E, K + n * S * E, V + n * S * Ev, O + n * L * Ev,
                                                          G + n * L * Ev, GQ + n * L * E, GK + n * S * E,
                                                          GV + n * S * Ev, L, S, E, Ev, causal, scalar_t(eps),
                                                          A ? A + n * S : nullptr, Bd ? Bd + n * S : nullptr,
                                                          work.data<scalar_t>());
                    });
                  });
                  return std::vector<Tensor>{gq, gk, gv};
                }, {q, k, v, out});
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
