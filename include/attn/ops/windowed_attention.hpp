#pragma once
// Windowed-sparse (local) attention and block-local attention as fused nodes that never build
// the L x S score matrix.
//
//   windowed:     query i attends keys j in [i - left, i + right] ∩ [0, S)
//                 (causal: [i - left, i], i.e. right is taken as 0)
//   block-local:  query i attends keys j in its block [b*block, (b+1)*block) ∩ [0, S), b = i / block
//                 (causal: also j <= i)
//   s_ij = scale * q_i . k_j + bias[h, j - i + left],  w_i = softmax over the window,
//   out_i = sum_j w_ij v_j
//
// Band weights are stored as [..., L, W]: entry (i, o) is the weight of key j = base(i) + o, with
// base(i) = i - left and W = left + right + 1 (windowed), or base(i) = (i / block) * block and
// W = block (block-local); positions outside [0, S), past i when causal, or padded get 0.
// Time O(N L W E), memory O(N L W). Rows are computed by one thread each, key gradients are
// gathered per key (no scatter), so results are bit-identical for any thread count.
//
// Reading order: the public functions, then the fused node with its recorded backward; the band
// loops are in kernels/cpu/windowed.hpp.
#include <limits>
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"

namespace attn {
ATTN_API std::pair<Tensor, Tensor> windowed_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t left,
                                                      int64_t right, bool causal = false,
                                                      double scale = std::numeric_limits<double>::quiet_NaN(),
                                                      const Tensor& key_padding_mask = Tensor(),
                                                      const Tensor& relative_bias = Tensor());
ATTN_API std::pair<Tensor, Tensor> block_local_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                                         int64_t block, bool causal = false,
                                                         double scale = std::numeric_limits<double>::quiet_NaN(),
                                                         const Tensor& key_padding_mask = Tensor());
ATTN_API Tensor band_to_dense(const Tensor& band, int64_t left, int64_t S, int64_t block = 0);
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>
#include "../kernels/cpu/windowed.hpp"
#include "attention_checks.hpp"
#include "cuda/attention.hpp"

namespace attn {
namespace detail {

// The band description and per-call inputs live with the kernels (kernels/cpu/windowed.hpp).
using kernels::cpu::BandInputs;
using kernels::cpu::BandSpec;

// Defined below the public functions.
inline std::pair<Tensor, Tensor> band_attention(const char* op, const BandSpec& spec_in, const Tensor& q,
                                                const Tensor& k, const Tensor& v, double scale,
                                                const Tensor& key_padding_mask, const Tensor& relative_bias);

}  // namespace detail

// Windowed (sliding-window, local) attention. q [..., L, E], k [..., S, E], v [..., S, Ev].
// Query i attends keys j in [i - left, i + right] ∩ [0, S); causal = true uses [i - left, i]
// (right is ignored). scale NaN -> 1/sqrt(E). key_padding_mask: bool [B, S] with B = q.size(0)
// (or [S] for 2-D q), true = padded key (ignored), as in PyTorch. relative_bias: [H or 1, W]
// with W = left + right + 1 (causal: left + 1), entry o added to the score of offset
// j - i = o - left; H = q.size(-3) for 4-D inputs [B, H, L, E].
// Returns (out [..., L, Ev], band weights [..., L, W]); band weight (i, o) belongs to key
// j = i - left + o. A query with nothing to attend gets a zero output and zero gradients.
ATTN_API std::pair<Tensor, Tensor> windowed_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t left,
                                                    int64_t right, bool causal,
                                                    double scale,
                                                    const Tensor& key_padding_mask,
                                                    const Tensor& relative_bias) {
  ATTN_CHECK(left >= 0 && right >= 0, "windowed_attention: window sizes must be >= 0, got left=", left,
             " right=", right, " for q ", to_string(q.shape()));
  detail::BandSpec bs;
  bs.left = left;
  bs.right = causal ? 0 : right;
  bs.causal = causal;
  bs.W = bs.left + bs.right + 1;
  return detail::band_attention("windowed_attention", bs, q, k, v, scale, key_padding_mask, relative_bias);
}

// Block-local attention: the sequence is cut into non-overlapping blocks of `block` positions
// (the last one may be shorter) and each query attends the keys of its own block (causal: only
// j <= i). Needs L == S. Returns (out [..., L, Ev], band weights [..., L, block]) where entry
// (i, o) is the weight of key (i / block) * block + o.
ATTN_API std::pair<Tensor, Tensor> block_local_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                                       int64_t block, bool causal,
                                                       double scale,
                                                       const Tensor& key_padding_mask) {
  ATTN_CHECK(block >= 1, "block_local_attention: block must be >= 1, got ", block, " for q ", to_string(q.shape()));
  ATTN_CHECK(q.dim() >= 2 && k.dim() >= 2 && q.size(-2) == k.size(-2), "block_local_attention: needs L == S, got q ",
             to_string(q.shape()), ", k ", to_string(k.shape()));
  detail::BandSpec bs;
  bs.block_mode = true;
  bs.block = block;
  bs.W = block;
  bs.causal = causal;
  return detail::band_attention("block_local_attention", bs, q, k, v, scale, key_padding_mask, Tensor());
}

// Expands band weights [..., L, W] to dense [..., L, S] (for plots at small L; O(L S) memory).
// base(i) = i - left for windowed weights; pass block > 0 for block-local weights.
ATTN_API Tensor band_to_dense(const Tensor& band, int64_t left, int64_t S, int64_t block) {
  ATTN_CHECK(band.dim() >= 2 && S >= 0 && left >= 0, "band_to_dense: band ", to_string(band.shape()), ", left ", left,
             ", S ", S);
  const int64_t L = band.size(-2), W = band.size(-1), N = band.numel() / std::max<int64_t>(L * W, 1);
  Shape os = band.shape();
  os.back() = S;
  Tensor out = Tensor::zeros(os, band.dtype());
  ATTN_DISPATCH_FLOATING(band.dtype(), "band_to_dense", [&] {
    const scalar_t* p = band.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < L; ++i) {
        const int64_t b = block > 0 ? (i / block) * block : i - left;
        for (int64_t w = 0; w < W; ++w) {
          const int64_t j = b + w;
          if (j >= 0 && j < S) o[(n * L + i) * S + j] = p[(n * L + i) * W + w];
        }
      }
  });
  return out;
}

namespace detail {

// The fused band node behind windowed_attention and block_local_attention: band_forward computes
// the window scores, their softmax w and out_i = sum_j w_ij v_j; the band weights are saved.
inline std::pair<Tensor, Tensor> band_attention(const char* op, const BandSpec& spec_in, const Tensor& q,
                                                const Tensor& k, const Tensor& v, double scale,
                                                const Tensor& key_padding_mask, const Tensor& relative_bias) {
  check_qkv(op, q, k, v);
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2), Ev = v.size(-1);
  check_same_dtype(q, k, op);
  check_same_dtype(q, v, op);
  if (on_cuda(q)) return cuda_ops::band_attention(op, spec_in, q, k, v, scale, key_padding_mask, relative_bias);
  BandSpec bs = spec_in;
  bs.L = L;
  bs.S = S;
  const int64_t N = q.numel() / std::max<int64_t>(L * E, 1);
  if (std::isnan(scale)) scale = 1.0 / std::sqrt(double(std::max<int64_t>(E, 1)));
  BandInputs bi;
  if (key_padding_mask.defined()) {
    const int64_t kpm_batch = check_batch_key_padding_mask(op, q, k, S, key_padding_mask);
    bi.kpm = key_padding_mask.data<uint8_t>();
    bi.kpm_div = N / std::max<int64_t>(kpm_batch, 1);
  }
  Tensor bias;
  if (relative_bias.defined()) {
    check_relative_bias(op, q, relative_bias, bs.W, bs.block_mode, bs.causal, bs.right);
    check_same_dtype(q, relative_bias, op);
    bias = relative_bias;
    bi.bias_rows = relative_bias.size(0);
  }
  Shape os = q.shape(), ws = q.shape();
  os.back() = Ev;
  ws.back() = bs.W;
  Tensor out = Tensor::empty(os, q.dtype()), P = Tensor::empty(ws, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    kernels::cpu::band_forward<scalar_t>(bs, bi, scale, q.data<scalar_t>(), k.data<scalar_t>(), v.data<scalar_t>(),
                                         bias.defined() ? bias.data<scalar_t>() : nullptr, out.data<scalar_t>(),
                                         P.data<scalar_t>(), N, E, Ev);
  });
  std::vector<Tensor> inputs{q, k, v};
  if (bias.defined()) inputs.push_back(bias);
  // Backward (g: gradient of out, gw: gradient of the returned band weights; band_backward):
  //   ds_ij = w_ij (gw~_ij - sum_j' w_ij' gw~_ij'),  gw~_ij = gw_ij + g_i . v_j
  //   gq_i = scale sum_j ds_ij k_j;  gk_j = scale sum_i ds_ij q_i;  gv_j = sum_i w_ij g_i
  //   gbias[h, o] = sum of ds at offset o over the rows n with n % H == h
  record(op, std::vector<Tensor*>{&out, &P}, inputs,
         [q, k, v, bias, kpm = key_padding_mask, bs, bi, scale, N, E, Ev, Pd = P.detach()](const std::vector<Tensor>& g) {
           (void)kpm;  // keeps the mask's storage alive for bi.kpm
           Tensor gq = Tensor::empty(q.shape(), q.dtype()), gk = Tensor::empty(k.shape(), q.dtype()),
                  gv = Tensor::empty(v.shape(), q.dtype());
           Tensor gb = bias.defined() ? Tensor::empty(bias.shape(), q.dtype()) : Tensor();
           Tensor ds = Tensor::empty(Pd.shape(), q.dtype());
           ATTN_DISPATCH_FLOATING(q.dtype(), "windowed_attention_backward", [&] {
             kernels::cpu::band_backward<scalar_t>(
                 bs, bi, scale, q.data<scalar_t>(), k.data<scalar_t>(), v.data<scalar_t>(), Pd.data<scalar_t>(),
                 g[0].defined() ? g[0].data<scalar_t>() : nullptr, g[1].defined() ? g[1].data<scalar_t>() : nullptr,
                 gq.data<scalar_t>(), gk.data<scalar_t>(), gv.data<scalar_t>(),
                 gb.defined() ? gb.data<scalar_t>() : nullptr, ds.data<scalar_t>(), N, E, Ev);
           });
           std::vector<Tensor> grads{gq, gk, gv};
           if (bias.defined()) grads.push_back(gb);
           return grads;
         },
         {q, k, v, bias, key_padding_mask, P});
  return {out, P};
}

}  // namespace detail
}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
