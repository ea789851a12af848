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
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>
#include <Eigen/Core>
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#ifdef ATTN_WITH_CUDA
#include "cuda_dispatch.hpp"
#endif
#include "attention_checks.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"

namespace attn {
namespace detail {

template <class T>
using BandMatMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <class T>
using BandCVecMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <class T>
using BandVecMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;

struct BandSpec {
  bool block_mode = false;
  int64_t left = 0, right = 0, block = 1, W = 1, L = 0, S = 0;
  bool causal = false;
  int64_t base(int64_t i) const { return block_mode ? (i / block) * block : i - left; }
  // Valid key range [lo, hi) of query i.
  void range(int64_t i, int64_t& lo, int64_t& hi) const {
    const int64_t b = base(i);
    lo = std::max<int64_t>(0, b);
    hi = std::min<int64_t>(S, b + W);
    if (causal) hi = std::min<int64_t>(hi, i + 1);
    if (hi < lo) hi = lo;
  }
  // Queries that may attend key j: a superset [qlo, qhi), filtered with range().
  void queries(int64_t j, int64_t& qlo, int64_t& qhi) const {
    if (block_mode) {
      qlo = (j / block) * block;
      qhi = std::min<int64_t>(L, qlo + block);
    } else {
      qlo = std::max<int64_t>(0, j - right);
      qhi = std::min<int64_t>(L, j + left + 1);
    }
    if (causal) qlo = std::max(qlo, j);
    if (qhi < qlo) qhi = qlo;
  }
};

struct BandInputs {
  const uint8_t* kpm = nullptr;  // key padding mask [B0, S], true = padded (ignored)
  int64_t kpm_div = 1;           // flat batch n uses mask row n / kpm_div
  int64_t bias_rows = 0;         // 0 = no bias; else rows of the bias table, row n % bias_rows
};

template <class T>
void band_forward(const BandSpec& bs, const BandInputs& bi, double scale_d, const T* Q, const T* K, const T* V,
                  const T* bias, T* O, T* P, int64_t N, int64_t E, int64_t Ev) {
  const int64_t L = bs.L, S = bs.S, W = bs.W;
  const T scale = T(scale_d);
  parallel_for(0, N * L, std::max<int64_t>(1, 8192 / std::max<int64_t>(W * E, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / L, i = r % L;
      const T* q = Q + r * E;
      const T* Kn = K + n * S * E;
      const T* Vn = V + n * S * Ev;
      const uint8_t* pad = bi.kpm ? bi.kpm + (n / bi.kpm_div) * S : nullptr;
      const T* br = bias ? bias + (n % bi.bias_rows) * W : nullptr;
      T* p = P + r * W;
      T* o = O + r * Ev;
      std::fill(p, p + W, T(0));
      std::fill(o, o + Ev, T(0));
      int64_t lo, hi;
      bs.range(i, lo, hi);
      const int64_t b = bs.base(i);
      if (hi <= lo) continue;
      // scores of the window: one matrix-vector product K[lo:hi] q (vectorised by Eigen)
      BandVecMap<T>(p + (lo - b), hi - lo).noalias() = scale * (BandMatMap<T>(Kn + lo * E, hi - lo, E) *
                                                                  BandCVecMap<T>(q, E));
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = lo; j < hi; ++j) {
        if (pad && pad[j]) {
          p[j - b] = T(0);
          continue;
        }
        if (br) p[j - b] += br[j - b];
        m = std::max(m, p[j - b]);
      }
      if (m == -std::numeric_limits<T>::infinity()) {  // nothing to attend: zeros
        std::fill(p, p + W, T(0));
        continue;
      }
      T sum = 0;
      for (int64_t j = lo; j < hi; ++j) {
        if (pad && pad[j]) continue;
        const T e = std::exp(p[j - b] - m);
        p[j - b] = e;
        sum += e;
      }
      const T inv = T(1) / sum;
      for (int64_t j = lo; j < hi; ++j) p[j - b] *= inv;
      // out_i = V[lo:hi]^T p
      BandVecMap<T>(o, Ev).noalias() = BandMatMap<T>(Vn + lo * Ev, hi - lo, Ev).transpose() *
                                       BandCVecMap<T>(p + (lo - b), hi - lo);
    }
  });
}

// Backward. s_ij = scale q_i.k_j + bias_o, w = softmax(s), out_i = sum_j w_ij v_j:
//   gw~_ij = gw_ij + g_i . v_j;  ds_ij = w_ij (gw~_ij - sum_j' w_ij' gw~_ij')
//   gq_i = scale sum_j ds_ij k_j;  gk_j = scale sum_i ds_ij q_i;  gv_j = sum_i w_ij g_i
//   gbias[h, o] = sum over rows n with n % H == h and queries i of ds at offset o
// Pass 1 over query rows (ds into a [N, L, W] buffer, gq); pass 2 over key rows gathers gk, gv
// from the queries whose window holds the key; pass 3 sums gbias per (h, o) in a fixed order.
template <class T>
void band_backward(const BandSpec& bs, const BandInputs& bi, double scale_d, const T* Q, const T* K, const T* V,
                   const T* P, const T* G, const T* GW, T* gQ, T* gK, T* gV, T* gB, T* DS, int64_t N, int64_t E,
                   int64_t Ev) {
  const int64_t L = bs.L, S = bs.S, W = bs.W;
  const T scale = T(scale_d);
  parallel_for(0, N * L, std::max<int64_t>(1, 8192 / std::max<int64_t>(W * E, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / L, i = r % L;
      const T* p = P + r * W;
      T* ds = DS + r * W;
      T* gq = gQ + r * E;
      std::fill(ds, ds + W, T(0));
      std::fill(gq, gq + E, T(0));
      int64_t lo, hi;
      bs.range(i, lo, hi);
      const int64_t b = bs.base(i);
      const T* g = G ? G + r * Ev : nullptr;
      const T* Vn = V + n * S * Ev;
      const T* Kn = K + n * S * E;
      if (hi <= lo) continue;
      // gw~ = V[lo:hi] g_i (+ gw), then ds = w (gw~ - w . gw~), gq_i = scale K[lo:hi]^T ds
      if (g)
        BandVecMap<T>(ds + (lo - b), hi - lo).noalias() = BandMatMap<T>(Vn + lo * Ev, hi - lo, Ev) *
                                                          BandCVecMap<T>(g, Ev);
      if (GW)
        for (int64_t j = lo; j < hi; ++j) ds[j - b] += GW[r * W + (j - b)];
      T dot = 0;
      for (int64_t j = lo; j < hi; ++j) dot += p[j - b] * ds[j - b];
      for (int64_t j = lo; j < hi; ++j) ds[j - b] = p[j - b] * (ds[j - b] - dot);
      BandVecMap<T>(gq, E).noalias() = scale * (BandMatMap<T>(Kn + lo * E, hi - lo, E).transpose() *
                                                BandCVecMap<T>(ds + (lo - b), hi - lo));
    }
  });
  parallel_for(0, N * S, std::max<int64_t>(1, 8192 / std::max<int64_t>(W * E, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / S, j = r % S;
      T* gk = gK + r * E;
      T* gv = gV + r * Ev;
      std::fill(gk, gk + E, T(0));
      std::fill(gv, gv + Ev, T(0));
      int64_t qlo, qhi;
      bs.queries(j, qlo, qhi);
      for (int64_t i = qlo; i < qhi; ++i) {
        int64_t lo, hi;
        bs.range(i, lo, hi);
        if (j < lo || j >= hi) continue;
        const int64_t o = j - bs.base(i);
        const int64_t row = n * L + i;
        const T d = DS[row * W + o], w = P[row * W + o];
        if (d != T(0)) {
          const T* qi = Q + row * E;
          const T c = scale * d;
          for (int64_t e = 0; e < E; ++e) gk[e] += c * qi[e];
        }
        if (G && w != T(0)) {
          const T* gi = G + row * Ev;
          for (int64_t d2 = 0; d2 < Ev; ++d2) gv[d2] += w * gi[d2];
        }
      }
    }
  });
  if (gB) {
    const int64_t Hb = bi.bias_rows;
    parallel_for(0, Hb * W, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t h = c / W, o = c % W;
        T acc = 0;
        for (int64_t n = h; n < N; n += Hb)
          for (int64_t i = 0; i < L; ++i) acc += DS[(n * L + i) * W + o];
        gB[c] = acc;
      }
    });
  }
}

inline std::pair<Tensor, Tensor> band_attention(const char* op, const BandSpec& spec_in, const Tensor& q,
                                                const Tensor& k, const Tensor& v, double scale,
                                                const Tensor& key_padding_mask, const Tensor& relative_bias) {
  check_qkv(op, q, k, v);
  const int64_t nd = q.dim();
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2), Ev = v.size(-1);
  check_same_dtype(q, k, op);
  check_same_dtype(q, v, op);
#ifdef ATTN_WITH_CUDA
  if (q.device() == Device::CUDA) return cuda_ops::band_attention(op, spec_in, q, k, v, scale, key_padding_mask, relative_bias);
#endif
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
    ATTN_CHECK(!bs.block_mode, op, ": relative_bias is not supported here");
    const int64_t Hq = nd >= 4 ? q.size(-3) : 1;
    const bool ok = relative_bias.dim() == 2 && relative_bias.size(1) == bs.W &&
                    (relative_bias.size(0) == 1 || relative_bias.size(0) == Hq);
    ATTN_CHECK(ok, op, ": relative_bias ", to_string(relative_bias.shape()), " must be [H or 1, ", bs.W,
               "] (one value per offset -left..", bs.causal ? 0 : bs.right, ", H = ", Hq, ") for q ",
               to_string(q.shape()));
    check_same_dtype(q, relative_bias, op);
    bias = relative_bias;
    bi.bias_rows = relative_bias.size(0);
  }
  Shape os = q.shape(), ws = q.shape();
  os.back() = Ev;
  ws.back() = bs.W;
  Tensor out = Tensor::empty(os, q.dtype()), P = Tensor::empty(ws, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    band_forward<scalar_t>(bs, bi, scale, q.data<scalar_t>(), k.data<scalar_t>(), v.data<scalar_t>(),
                           bias.defined() ? bias.data<scalar_t>() : nullptr, out.data<scalar_t>(),
                           P.data<scalar_t>(), N, E, Ev);
  });
  std::vector<Tensor> inputs{q, k, v};
  if (bias.defined()) inputs.push_back(bias);
  record(op, std::vector<Tensor*>{&out, &P}, inputs,
         [q, k, v, bias, kpm = key_padding_mask, bs, bi, scale, N, E, Ev, Pd = P.detach()](const std::vector<Tensor>& g) {
           (void)kpm;  // keeps the mask's storage alive for bi.kpm
           Tensor gq = Tensor::empty(q.shape(), q.dtype()), gk = Tensor::empty(k.shape(), q.dtype()),
                  gv = Tensor::empty(v.shape(), q.dtype());
           Tensor gb = bias.defined() ? Tensor::empty(bias.shape(), q.dtype()) : Tensor();
           Tensor ds = Tensor::empty(Pd.shape(), q.dtype());
           ATTN_DISPATCH_FLOATING(q.dtype(), "windowed_attention_backward", [&] {
             band_backward<scalar_t>(bs, bi, scale, q.data<scalar_t>(), k.data<scalar_t>(), v.data<scalar_t>(),
                                     Pd.data<scalar_t>(), g[0].defined() ? g[0].data<scalar_t>() : nullptr,
                                     g[1].defined() ? g[1].data<scalar_t>() : nullptr, gq.data<scalar_t>(),
                                     gk.data<scalar_t>(), gv.data<scalar_t>(),
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

// Windowed (sliding-window, local) attention. q [..., L, E], k [..., S, E], v [..., S, Ev].
// Query i attends keys j in [i - left, i + right] ∩ [0, S); causal = true uses [i - left, i]
// (right is ignored). scale NaN -> 1/sqrt(E). key_padding_mask: bool [B, S] with B = q.size(0)
// (or [S] for 2-D q), true = padded key (ignored), as in PyTorch. relative_bias: [H or 1, W]
// with W = left + right + 1 (causal: left + 1), entry o added to the score of offset
// j - i = o - left; H = q.size(-3) for 4-D inputs [B, H, L, E].
// Returns (out [..., L, Ev], band weights [..., L, W]); band weight (i, o) belongs to key
// j = i - left + o. A query with nothing to attend gets a zero output and zero gradients.
inline std::pair<Tensor, Tensor> windowed_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t left,
                                                    int64_t right, bool causal = false,
                                                    double scale = std::numeric_limits<double>::quiet_NaN(),
                                                    const Tensor& key_padding_mask = Tensor(),
                                                    const Tensor& relative_bias = Tensor()) {
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
inline std::pair<Tensor, Tensor> block_local_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                                       int64_t block, bool causal = false,
                                                       double scale = std::numeric_limits<double>::quiet_NaN(),
                                                       const Tensor& key_padding_mask = Tensor()) {
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
inline Tensor band_to_dense(const Tensor& band, int64_t left, int64_t S, int64_t block = 0) {
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

}  // namespace attn
