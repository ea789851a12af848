#pragma once
// Raw loops of windowed (sliding-window) and block-local attention: the band of each query row,
// its softmax, and the three backward passes (query rows, key rows, bias offsets). No Tensor, no
// autograd; ops/windowed_attention.hpp checks the arguments and records the node.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include "../../core/parallel.hpp"
#include "gemm.hpp"
#include "vmath.hpp"

namespace attn::kernels::cpu {

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
  parallel_for(0, N * L, rows_grain(kGrainRowCopy, W * E), [&](int64_t r0, int64_t r1) {
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
      // scores of the window: one matrix-vector product scale K[lo:hi] q (as the row q^T K[lo:hi]^T),
      // plus the bias; padded keys get -inf, so weight 0 in the softmax
      T* s = p + (lo - b);
      gemm_serial<T>(false, true, 1, hi - lo, E, scale, q, E, Kn + lo * E, E, T(0), s, hi - lo);
      for (int64_t j = lo; j < hi; ++j) {
        if (pad && pad[j]) s[j - lo] = -std::numeric_limits<T>::infinity();
        else if (br) s[j - lo] += br[j - b];
      }
      if (softmax_n(s, hi - lo) == -std::numeric_limits<T>::infinity()) continue;  // nothing to attend: zeros
      // out_i = V[lo:hi]^T p (as the row p^T V[lo:hi])
      gemm_serial<T>(false, false, 1, Ev, hi - lo, T(1), s, hi - lo, Vn + lo * Ev, Ev, T(0), o, Ev);
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
  parallel_for(0, N * L, rows_grain(kGrainRowCopy, W * E), [&](int64_t r0, int64_t r1) {
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
      if (g) gemm_serial<T>(false, true, 1, hi - lo, Ev, T(1), g, Ev, Vn + lo * Ev, Ev, T(0), ds + (lo - b), hi - lo);
      if (GW)
        for (int64_t j = lo; j < hi; ++j) ds[j - b] += GW[r * W + (j - b)];
      softmax_backward_n(p + (lo - b), ds + (lo - b), hi - lo);
      gemm_serial<T>(false, false, 1, E, hi - lo, scale, ds + (lo - b), hi - lo, Kn + lo * E, E, T(0), gq, E);
    }
  });
  parallel_for(0, N * S, rows_grain(kGrainRowCopy, W * E), [&](int64_t r0, int64_t r1) {
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

}  // namespace attn::kernels::cpu
