#pragma once
// Raw loops of scaled dot-product attention, weights-storing path: scores, masks, softmax,
// dropout and the products, over strided (batch, head) matrices. No Tensor, no autograd: callers
// (ops/attention.hpp) pass pointers, layouts and the problem sizes. The formulas are in
// ops/attention.hpp; the tiled (FlashAttention-2 style) kernels are in attention_tiled.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "../../core/dtype.hpp"
#include "../../core/parallel.hpp"
#include "../../core/random.hpp"
#include "attention_problem.hpp"
#include "gemm.hpp"
#include "vmath.hpp"

namespace attn::kernels::cpu {

constexpr int64_t kAttnRowBlock = 64;

// Counter-based keep/drop decision: the same for any thread count or task order.
inline bool attn_dropout_keep(uint64_t seed, uint64_t idx, double p) {
  return double(splitmix64(seed + 0x9E3779B97F4A7C15ull * idx) >> 11) * 0x1.0p-53 >= p;
}

// Applies masks to the scores block z [m x n] (row stride ldz) of item `it`, query rows r0..,
// keys s0..: adds a float mask, sets -inf where a bool mask is false, where the key is padded,
// or where j > i (causal). Returns whether any entry may have become -inf. Shared by the
// weights-storing kernel (one block of all S keys) and the tiled one (blocks of keys).
template <class T>
bool mask_scores(const AttnProblem& p, const AttnMaskView& mask, const AttnMaskView& kpm, int64_t it, int64_t r0,
                      int64_t m, int64_t s0, int64_t n, T* z, int64_t ldz) {
  const bool diag = p.causal && s0 + n - 1 > r0 + p.q_offset;  // some key of the block lies above some row's diagonal
  if (!mask.data && !kpm.data && !diag && !p.alibi) return false;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = r0 + r;
    T* zr = z + r * ldz;
    int64_t jend = n;
    if (p.causal) {
      jend = std::clamp<int64_t>(p.causal_end(i) - s0, 0, n);
      for (int64_t j = jend; j < n; ++j) zr[j] = neg_inf;
    }
    if (p.alibi) {  // z += -m_h * distance(query position, key position)
      const double slope = p.alibi[it % p.H];
      const int64_t qpos = i + p.q_offset - s0;
      for (int64_t j = 0; j < jend; ++j) {
        const int64_t d = qpos - j;
        zr[j] -= T(slope * double(d < 0 ? -d : d));
      }
    }
    if (mask.data) {
      const int64_t base = mask.item_off[size_t(it)] + i * mask.sl + s0 * mask.ss;
      if (mask.dtype == kBool) {
        const uint8_t* mb = static_cast<const uint8_t*>(mask.data) + base;
        for (int64_t j = 0; j < jend; ++j)
          if (!mb[j * mask.ss]) zr[j] = neg_inf;
      } else {
        ATTN_DISPATCH_FLOATING(mask.dtype, "scaled_dot_product_attention", [&] {
          const scalar_t* mf = static_cast<const scalar_t*>(mask.data) + base;
          for (int64_t j = 0; j < jend; ++j) zr[j] += T(mf[j * mask.ss]);
        });
      }
    }
    if (kpm.data) {
      const uint8_t* kb = static_cast<const uint8_t*>(kpm.data) + kpm.item_off[size_t(it)] + s0 * kpm.ss;
      for (int64_t j = 0; j < jend; ++j)
        if (kb[j * kpm.ss]) zr[j] = neg_inf;
    }
  }
  return true;
}

// Forward over all items. W (pre-dropout weights, [B*H, L, S] contiguous) is written when non-null;
// Wd (post-dropout) when non-null and dropout is on. With W == nullptr each task uses scratch.
template <class T>
void attn_forward_kernel(const AttnProblem& p, const T* Q, AttnLayout lq, const T* K, AttnLayout lk, const T* V,
                         AttnLayout lv, T* O, AttnLayout lo, const AttnMaskView& mask, const AttnMaskView& kpm,
                         T* W, T* Wd) {
  const int64_t L = p.L, S = p.S, nblk = (L + kAttnRowBlock - 1) / kAttnRowBlock;
  const int64_t items = p.B * p.H, tasks = items * nblk;
  const bool drop = p.dropout_p > 0.0;
  const T keep_scale = drop ? T(1.0 / (1.0 - p.dropout_p)) : T(1);
  parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> scratch, drop_scratch;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t it = t / nblk, blk = t % nblk, b = it / p.H, h = it % p.H;
      const int64_t r0 = blk * kAttnRowBlock, m = std::min(kAttnRowBlock, L - r0);
      const T* q = Q + lq.off + b * lq.sb + h * lq.sh + r0 * lq.ld;
      const T* k = K + lk.off + b * lk.sb + p.kv_head(h) * lk.sh;
      const T* v = V + lv.off + b * lv.sb + p.kv_head(h) * lv.sh;
      T* o = O + lo.off + b * lo.sb + h * lo.sh + r0 * lo.ld;
      T* w;
      if (W) {
        w = W + (it * L + r0) * S;
      } else {
        scratch.resize(size_t(m * S));
        w = scratch.data();
      }
      // scores = scale * Q K^T  (K read transposed in place)
      kernels::cpu::gemm_serial<T>(false, true, m, S, p.E, T(p.scale), q, lq.ld, k, lk.ld, T(0), w, S);
      mask_scores(p, mask, kpm, it, r0, m, 0, S, w, S);
      for (int64_t r = 0; r < m; ++r) {
        T* z = w + r * S;
        const int64_t jend = p.causal_end(r0 + r);
        // stable softmax over the visible prefix [0, jend); -inf entries get exactly 0, and a row
        // with every key masked zero weights (so a zero output row)
        softmax_n(z, jend);
        for (int64_t j = jend; j < S; ++j) z[j] = T(0);
      }
      const T* wv = w;
      if (drop) {
        T* wd;
        if (Wd) {
          wd = Wd + (it * L + r0) * S;
        } else {
          drop_scratch.resize(size_t(m * S));
          wd = drop_scratch.data();
        }
        for (int64_t r = 0; r < m; ++r)
          for (int64_t j = 0; j < S; ++j) {
            const uint64_t idx = uint64_t((it * L + r0 + r) * S + j);
            wd[r * S + j] = attn_dropout_keep(p.dropout_seed, idx, p.dropout_p) ? w[r * S + j] * keep_scale : T(0);
          }
        wv = wd;
      }
      // O = W' V (causal: only the keys the last row of the block sees can be non-zero)
      const int64_t kc = p.causal_end(r0 + m - 1);
      kernels::cpu::gemm_serial<T>(false, false, m, p.Ev, kc, T(1), wv, S, v, lv.ld, T(0), o, lo.ld);
    }
  });
}

// Backward. Inputs: W (pre-dropout), dO, optional dWout (gradient of the returned post-dropout
// weights). Writes dQ/dK/dV (may be null) at their layouts and dZ ([B*H, L, S]) into dZbuf.
//   dW' = dO V^T + dWout;   dW = dW' * D / (1 - p);   dZ = W * (dW - rowsum(dW * W))
//   dV = W'^T dO;   dQ = scale * dZ K;   dK = scale * dZ^T Q
template <class T>
void attn_backward_kernel(const AttnProblem& p, const T* Q, AttnLayout lq, const T* K, AttnLayout lk, const T* V,
                          AttnLayout lv, const T* dO, AttnLayout ldo, const T* W, const T* dWout, T* dQ, T* dK,
                          T* dV, T* dZbuf) {
  const int64_t L = p.L, S = p.S, items = p.B * p.H;
  const bool drop = p.dropout_p > 0.0;
  const T keep_scale = drop ? T(1.0 / (1.0 - p.dropout_p)) : T(1);
  const int64_t lblk = (L + kAttnRowBlock - 1) / kAttnRowBlock, sblk = (S + kAttnRowBlock - 1) / kAttnRowBlock;
  auto wd_at = [&](int64_t it, int64_t i, int64_t j) {
    const T w = W[(it * L + i) * S + j];
    return attn_dropout_keep(p.dropout_seed, uint64_t((it * L + i) * S + j), p.dropout_p) ? w * keep_scale : T(0);
  };
  // Phase 1: per (item, block of query rows): dZ rows, dQ rows.
  parallel_for(0, items * lblk, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t it = t / lblk, blk = t % lblk, b = it / p.H, h = it % p.H;
      const int64_t r0 = blk * kAttnRowBlock, m = std::min(kAttnRowBlock, L - r0);
      const T* dout = dO + ldo.off + b * ldo.sb + h * ldo.sh + r0 * ldo.ld;
      const T* v = V + lv.off + b * lv.sb + p.kv_head(h) * lv.sh;
      const T* w = W + (it * L + r0) * S;
      T* dz = dZbuf + (it * L + r0) * S;
      kernels::cpu::gemm_serial<T>(false, true, m, S, p.Ev, T(1), dout, ldo.ld, v, lv.ld, T(0), dz, S);
      if (dWout) {
        const T* g = dWout + (it * L + r0) * S;
        for (int64_t x = 0; x < m * S; ++x) dz[x] += g[x];
      }
      for (int64_t r = 0; r < m; ++r) {
        T* d = dz + r * S;
        const T* wr = w + r * S;
        if (drop)
          for (int64_t j = 0; j < S; ++j)
            d[j] = attn_dropout_keep(p.dropout_seed, uint64_t((it * L + r0 + r) * S + j), p.dropout_p)
                       ? d[j] * keep_scale
                       : T(0);
        softmax_backward_n(wr, d, S);
      }
      if (dQ) {
        const T* k = K + lk.off + b * lk.sb + p.kv_head(h) * lk.sh;
        T* dq = dQ + lq.off + b * lq.sb + h * lq.sh + r0 * lq.ld;
        const int64_t kc = p.causal_end(r0 + m - 1);
        kernels::cpu::gemm_serial<T>(false, false, m, p.E, kc, T(p.scale), dz, S, k, lk.ld, T(0), dq, lq.ld);
      }
    }
  });
  // Phase 2: per (K/V item, block of key rows): dK and dV rows, sums over all query rows of the
  // kv_group heads that read them (added head after head, so the order is fixed).
  if (!dK && !dV) return;
  std::vector<T> wdrop;
  if (drop && dV) {
    wdrop.resize(size_t(items * L * S));
    parallel_for(0, items * L, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < S; ++j) wdrop[size_t(r * S + j)] = wd_at(r / L, r % L, j);
    });
  }
  const T* Wv = drop ? wdrop.data() : W;
  const int64_t G = p.kv_group, kv_items = items / G;
  parallel_for(0, kv_items * sblk, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t kvi = t / sblk, blk = t % sblk, b = kvi / (p.H / G), kh = kvi % (p.H / G);
      const int64_t s0 = blk * kAttnRowBlock, m = std::min(kAttnRowBlock, S - s0);
      // causal: key s is seen only by queries i >= s - q_offset
      const int64_t i0 = p.causal ? std::clamp<int64_t>(s0 - p.q_offset, 0, L) : 0, rows = L - i0;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t h = kh * G + g, it = b * p.H + h;
        const T beta = g == 0 ? T(0) : T(1);
        if (dV) {
          T* dv = dV + lv.off + b * lv.sb + kh * lv.sh + s0 * lv.ld;
          const T* dout = dO + ldo.off + b * ldo.sb + h * ldo.sh + i0 * ldo.ld;
          kernels::cpu::gemm_serial<T>(true, false, m, p.Ev, rows, T(1), Wv + (it * L + i0) * S + s0, S, dout, ldo.ld,
                                       beta, dv, lv.ld);
        }
        if (dK) {
          T* dk = dK + lk.off + b * lk.sb + kh * lk.sh + s0 * lk.ld;
          const T* q = Q + lq.off + b * lq.sb + h * lq.sh + i0 * lq.ld;
          kernels::cpu::gemm_serial<T>(true, false, m, p.E, rows, T(p.scale), dZbuf + (it * L + i0) * S + s0, S, q,
                                       lq.ld, beta, dk, lk.ld);
        }
      }
    }
  });
}

}  // namespace attn::kernels::cpu
