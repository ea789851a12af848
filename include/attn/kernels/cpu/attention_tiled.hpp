#pragma once
// Raw loops of the tiled scaled dot-product attention path (FlashAttention-2 style, on the CPU):
// online-softmax forward and block-recomputing backward over strided (batch, head) matrices.
// No Tensor, no autograd; ops/attention.hpp picks the path and records the node.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "../../core/parallel.hpp"
#include "attention_weights.hpp"
#include "gemm.hpp"
#include "vmath.hpp"

namespace attn::kernels::cpu {

// ---------------------------------------------------------------------------------------------
// Tiled path (FlashAttention-2 style, on the CPU). Taken by fused_attention when the weights are
// not requested and the mask needs no gradient: nothing of size L x S is allocated, the forward
// saves only the output and the per-row log-sum-exp, and the backward recomputes the weights
// block by block from them.
//
// Forward, per task (batch b, head h, block of kAttnRowBlock query rows), over key blocks of
// kFlashFwdKeyBlock keys (causal: only the keys some row of the block can see):
//   Z_blk = scale * Q_blk K_blk^T (+ masks, as the weights-storing kernel applies them)
//   m_new = max(m, rowmax(Z_blk));   c = exp(m - m_new)
//   P_blk = exp(Z_blk - m_new);      l = c * l + rowsum(P_blk)
//   acc   = c * acc + P'_blk V_blk   (P' = P * D / (1 - p) with dropout, D from attn_dropout_keep)
// then O = acc / l and LSE = m + log(l). A row whose keys are all masked keeps m = -inf, l = 0:
// O = 0 and LSE = -inf, which the backward reads as "P = 0 for the whole row" (zero gradient).
//
// Backward: with W = exp(Z - LSE) (the softmax, recomputed), W' = W * D / (1 - p), O = W' V:
//   dW' = dO V^T,  dW = dW' * D / (1 - p),  dZ = W * (dW - Di),  Di = rowsum(dW * W)
// and rowsum(dW * W) = sum_j dW'_j D_j/(1-p) W_j = sum_j dW'_j W'_j = sum_j (dO V^T)_j W'_j
//                    = dO . (W' V) = rowsum(dO * O)
// so Di = rowsum(dO * O) holds with dropout too (computed once per row, no L x S product).
//   dV = W'^T dO,  dK = scale * dZ^T Q,  dQ = scale * dZ K.
// Each (query block, key block) pair recomputes Z, W, dW' and dZ and adds its share to dV/dK of
// the key block and to dQ of the query block. Two schedules give the same bits:
//   per item: one task per (batch, head) loops key blocks (outer) and query blocks (inner);
//   two passes: tasks per (item, key block) loop query blocks for dK/dV, then tasks per
//               (item, query block) loop key blocks for dQ (more tasks, Z/W/dZ computed twice).
// In both, dK/dV of a key block add query blocks in ascending order and dQ of a query block adds
// key blocks in ascending order, with the same arithmetic, so results are bit-identical for any
// thread count (the schedule is picked from the thread count; both are tested).
constexpr int64_t kFlashKeyBlock = 256;     // keys per block in the backward
constexpr int64_t kFlashFwdKeyBlock = 512;  // keys per block in the forward (fewer rescalings)
static_assert(kFlashKeyBlock % kAttnRowBlock == 0, "causal block skipping assumes whole row blocks");

// Row stride of the per-task score blocks: a multiple of 16 elements, so every row starts at a
// vector boundary of the buffer (speed only: the softmax steps give the same bits at any alignment).
inline int64_t flash_ld(int64_t n) { return std::max<int64_t>(16, (n + 15) / 16 * 16); }

// Keys a query block [r0, r0 + m) can see at all: [0, flash_key_end).
inline int64_t flash_key_end(const AttnProblem& p, int64_t r0, int64_t m) {
  return p.causal_end(r0 + m - 1);
}

// Keys of a block [s0, s0 + n) that query row i can see before masks: [s0, s0 + result).
inline int64_t flash_visible(const AttnProblem& p, int64_t i, int64_t s0, int64_t n) {
  return std::clamp<int64_t>(p.causal_end(i) - s0, 0, n);
}

// zd[j] = w[j] * D / (1 - p) for keys s0 + j of one row, D = attn_dropout_keep(seed, base + j).
template <class T>
void flash_dropout_row(const AttnProblem& p, T keep_scale, uint64_t base, const T* w, T* zd, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    zd[j] = attn_dropout_keep(p.dropout_seed, base + uint64_t(j), p.dropout_p) ? w[j] * keep_scale : T(0);
}

// K^T [E, S] (and V^T [Ev, S]) of one (batch, K/V head) item, transposed once per task chunk so
// the products Q K^T and dO V^T read their right operand row by row (the GEMM packs it with plain
// copies instead of a strided gather). Reloaded only when the K/V item changes (the heads of a
// group share it).
template <class T>
struct FlashTransposed {
  std::vector<T> kt, vt;
  int64_t item = -1;
  void load(const AttnProblem& p, const T* K, AttnLayout lk, const T* V, AttnLayout lv, int64_t it, bool with_v) {
    const int64_t b = it / p.H, h = p.kv_head(it % p.H), S = p.S, kvi = b * (p.H / p.kv_group) + h;
    if (kvi == item) return;
    item = kvi;
    auto tr = [S](const T* src, int64_t ld, int64_t cols, std::vector<T>& dst) {
      dst.resize(size_t(cols * S));
      for (int64_t j = 0; j < S; ++j)
        for (int64_t c = 0; c < cols; ++c) dst[size_t(c * S + j)] = src[j * ld + c];
    };
    tr(K + lk.off + b * lk.sb + h * lk.sh, lk.ld, p.E, kt);
    if (with_v) tr(V + lv.off + b * lv.sb + h * lv.sh, lv.ld, p.Ev, vt);
  }
};

// Tiled forward. Writes O at its layout and, when LSE != nullptr, the log-sum-exp of each row
// ([B*H, L] contiguous; -inf for a row that sees no key).
template <class T>
void flash_forward_kernel(const AttnProblem& p, const T* Q, AttnLayout lq, const T* K, AttnLayout lk, const T* V,
                          AttnLayout lv, T* O, AttnLayout lo, const AttnMaskView& mask, const AttnMaskView& kpm,
                          T* LSE) {
  constexpr int64_t BQ = kAttnRowBlock, BK = kFlashFwdKeyBlock;
  const int64_t L = p.L, S = p.S, Ev = p.Ev, nq = (L + BQ - 1) / BQ, items = p.B * p.H;
  const int64_t ldz = flash_ld(std::min(BK, S));
  const bool drop = p.dropout_p > 0.0;
  const T keep_scale = drop ? T(1.0 / (1.0 - p.dropout_p)) : T(1);
  const T neg_inf = -std::numeric_limits<T>::infinity();
  parallel_for(0, items * nq, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> z(size_t(BQ * ldz)), zd(drop ? size_t(BQ * ldz) : 0), acc(size_t(BQ * std::max<int64_t>(Ev, 1)));
    T mrow[BQ], lrow[BQ];
    FlashTransposed<T> tr;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t it = t / nq, qb = t % nq, b = it / p.H, h = it % p.H;
      const int64_t r0 = qb * BQ, m = std::min(BQ, L - r0);
      const T* q = Q + lq.off + b * lq.sb + h * lq.sh + r0 * lq.ld;
      const T* k = K + lk.off + b * lk.sb + p.kv_head(h) * lk.sh;
      const T* v = V + lv.off + b * lv.sb + p.kv_head(h) * lv.sh;
      T* o = O + lo.off + b * lo.sb + h * lo.sh + r0 * lo.ld;
      const int64_t send = flash_key_end(p, r0, m);
      if (send <= BK) {
        // One key block: normalise first and write O = W' V directly, the very arithmetic of
        // attn_forward_kernel (so both paths give the same bits when S <= kFlashFwdKeyBlock).
        const int64_t n = send;
        kernels::cpu::gemm_serial<T>(false, true, m, n, p.E, T(p.scale), q, lq.ld, k, lk.ld, T(0), z.data(), ldz);
        mask_scores(p, mask, kpm, it, r0, m, 0, n, z.data(), ldz);
        for (int64_t r = 0; r < m; ++r) {
          T* zr = z.data() + r * ldz;
          const int64_t jv = flash_visible(p, r0 + r, 0, n);
          // every key masked: zero weights (a zero output row) and LSE -inf
          const T lse = softmax_n(zr, jv);
          std::fill(zr + jv, zr + n, T(0));
          if (LSE) LSE[it * L + r0 + r] = lse;
          if (drop) flash_dropout_row(p, keep_scale, uint64_t((it * L + r0 + r) * S), zr, zd.data() + r * ldz, n);
        }
        kernels::cpu::gemm_serial<T>(false, false, m, Ev, n, T(1), drop ? zd.data() : z.data(), ldz, v, lv.ld, T(0),
                                     o, lo.ld);
        continue;
      }
      tr.load(p, K, lk, V, lv, it, false);
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(mrow, mrow + m, neg_inf);
      std::fill(lrow, lrow + m, T(0));
      for (int64_t s0 = 0; s0 < send; s0 += BK) {
        const int64_t n = std::min(BK, send - s0);
        kernels::cpu::gemm_serial<T>(false, false, m, n, p.E, T(p.scale), q, lq.ld, tr.kt.data() + s0, S, T(0),
                                     z.data(), ldz);
        mask_scores(p, mask, kpm, it, r0, m, s0, n, z.data(), ldz);
        for (int64_t r = 0; r < m; ++r) {
          T* zr = z.data() + r * ldz;
          const int64_t jv = flash_visible(p, r0 + r, s0, n);
          const T mold = mrow[r], mnew = jv > 0 ? std::max(mold, max_n(zr, jv)) : mold;
          if (mnew == neg_inf) {  // every key so far masked: no contribution
            std::fill(zr, zr + n, T(0));
          } else {
            const T l = exp_shifted_n(zr, jv, mnew);  // masked keys (-inf) get exactly 0
            std::fill(zr + jv, zr + n, T(0));
            if (mold != mnew && mold != neg_inf) {  // rescale what earlier key blocks accumulated
              const T c = std::exp(mold - mnew);
              lrow[r] *= c;
              for (int64_t x = 0; x < Ev; ++x) acc[size_t(r * Ev + x)] *= c;
            }
            lrow[r] += l;
            mrow[r] = mnew;
          }
          if (drop) flash_dropout_row(p, keep_scale, uint64_t((it * L + r0 + r) * S + s0), zr, zd.data() + r * ldz, n);
        }
        kernels::cpu::gemm_serial<T>(false, false, m, Ev, n, T(1), drop ? zd.data() : z.data(), ldz, v + s0 * lv.ld,
                                     lv.ld, T(1), acc.data(), Ev);
      }
      for (int64_t r = 0; r < m; ++r) {
        T* orow = o + r * lo.ld;
        if (lrow[r] == T(0)) {  // no visible key: zero output
          std::fill(orow, orow + Ev, T(0));
          if (LSE) LSE[it * L + r0 + r] = neg_inf;
          continue;
        }
        const T inv = T(1) / lrow[r];
        for (int64_t x = 0; x < Ev; ++x) orow[x] = acc[size_t(r * Ev + x)] * inv;
        if (LSE) LSE[it * L + r0 + r] = mrow[r] + std::log(lrow[r]);
      }
    }
  });
}

// Tiled backward (see the derivation above). O/dO at layout lo, LSE [B*H, L]. Adds into dQ/dK/dV
// (zero-filled by the caller; may be null; disjoint regions of one buffer are fine).
// schedule: 0 = auto (per item when the items split evenly over the threads or there are many,
// else two passes), 1 = per item, 2 = two passes.
template <class T>
void flash_backward_kernel(const AttnProblem& p, const T* Q, AttnLayout lq, const T* K, AttnLayout lk, const T* V,
                           AttnLayout lv, const T* O, const T* dO, AttnLayout lo, const T* LSE,
                           const AttnMaskView& mask, const AttnMaskView& kpm, T* dQ, T* dK, T* dV, int schedule) {
  constexpr int64_t BQ = kAttnRowBlock, BK = kFlashKeyBlock;
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev, items = p.B * p.H;
  const int64_t nq = (L + BQ - 1) / BQ, nk = (S + BK - 1) / BK;
  const int64_t ldz = flash_ld(std::min(BK, S));
  const bool drop = p.dropout_p > 0.0;
  const T keep_scale = drop ? T(1.0 / (1.0 - p.dropout_p)) : T(1);
  const T neg_inf = -std::numeric_limits<T>::infinity();
  if (items == 0 || L == 0 || S == 0 || (!dQ && !dK && !dV)) return;
  // Di = rowsum(dO * O), one row per index, summed in column order.
  std::vector<T> Drow(size_t(items * L));
  parallel_for(0, items * L, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t x = i0; x < i1; ++x) {
      const int64_t it = x / L, i = x % L, b = it / p.H, h = it % p.H;
      const int64_t off = lo.off + b * lo.sb + h * lo.sh + i * lo.ld;
      T s = T(0);
      for (int64_t c = 0; c < Ev; ++c) s += dO[off + c] * O[off + c];
      Drow[size_t(x)] = s;
    }
  });
  struct Scratch {
    std::vector<T> z, dz, zd;
    FlashTransposed<T> tr;
  };
  // One (query block, key block) pair: recompute W (in z), W' (in zd), dZ (in dz); add
  // dV += W'^T dO and dK += scale dZ^T Q when kv, dQ += scale dZ K when qd.
  auto pair = [&](Scratch& sc, int64_t it, int64_t qb, int64_t kb, bool kv, bool qd) {
    const int64_t b = it / p.H, h = it % p.H, r0 = qb * BQ, m = std::min(BQ, L - r0), s0 = kb * BK;
    const int64_t n = std::min(BK, flash_key_end(p, r0, m) - s0);
    const bool want_dv = kv && dV, want_dz = (kv && dK) || (qd && dQ);
    const T* q = Q + lq.off + b * lq.sb + h * lq.sh + r0 * lq.ld;
    const T* k = K + lk.off + b * lk.sb + p.kv_head(h) * lk.sh + s0 * lk.ld;
    const T* dout = dO + lo.off + b * lo.sb + h * lo.sh + r0 * lo.ld;
    T *z = sc.z.data(), *dz = sc.dz.data(), *zd = sc.zd.data();
    sc.tr.load(p, K, lk, V, lv, it, true);
    kernels::cpu::gemm_serial<T>(false, false, m, n, E, T(p.scale), q, lq.ld, sc.tr.kt.data() + s0, S, T(0), z, ldz);
    mask_scores(p, mask, kpm, it, r0, m, s0, n, z, ldz);
    if (want_dz)
      kernels::cpu::gemm_serial<T>(false, false, m, n, Ev, T(1), dout, lo.ld, sc.tr.vt.data() + s0, S, T(0), dz, ldz);
    for (int64_t r = 0; r < m; ++r) {
      const int64_t row = it * L + r0 + r;
      const T lse = LSE[row];
      T *zr = z + r * ldz, *dzr = dz + r * ldz, *zdr = zd + r * ldz;
      // keys [jv, n) are above the diagonal (causal): W = 0, dZ = 0 there
      const int64_t jv = lse == neg_inf ? 0 : flash_visible(p, r0 + r, s0, n);  // LSE = -inf: the row sees no key
      exp_shifted_n(zr, jv, lse);  // W = exp(Z - LSE); masked keys (-inf) get exactly 0
      std::fill(zr + jv, zr + n, T(0));
      if (drop) {
        const uint64_t base = uint64_t(row * S + s0);
        for (int64_t j = 0; j < jv; ++j) {
          const bool keep = attn_dropout_keep(p.dropout_seed, base + uint64_t(j), p.dropout_p);
          if (want_dv) zdr[j] = keep ? zr[j] * keep_scale : T(0);
          if (want_dz) dzr[j] = keep ? dzr[j] * keep_scale : T(0);
        }
        if (want_dv) std::fill(zdr + jv, zdr + n, T(0));
      }
      if (want_dz) {
        const T d = Drow[size_t(row)];
        for (int64_t j = 0; j < jv; ++j) dzr[j] = zr[j] * (dzr[j] - d);
        std::fill(dzr + jv, dzr + n, T(0));
      }
    }
    if (kv) {
      T* dv = dV ? dV + lv.off + b * lv.sb + p.kv_head(h) * lv.sh + s0 * lv.ld : nullptr;
      T* dk = dK ? dK + lk.off + b * lk.sb + p.kv_head(h) * lk.sh + s0 * lk.ld : nullptr;
      if (dv) kernels::cpu::gemm_serial<T>(true, false, n, Ev, m, T(1), drop ? zd : z, ldz, dout, lo.ld, T(1), dv, lv.ld);
      if (dk) kernels::cpu::gemm_serial<T>(true, false, n, E, m, T(p.scale), dz, ldz, q, lq.ld, T(1), dk, lk.ld);
    }
    if (qd && dQ) {
      T* dq = dQ + lq.off + b * lq.sb + h * lq.sh + r0 * lq.ld;
      kernels::cpu::gemm_serial<T>(false, false, m, E, n, T(p.scale), dz, ldz, k, lk.ld, T(1), dq, lq.ld);
    }
  };
  auto make_scratch = [&] {
    Scratch sc;
    sc.z.resize(size_t(BQ * ldz));
    sc.dz.resize(size_t(BQ * ldz));
    if (drop) sc.zd.resize(size_t(BQ * ldz));
    return sc;
  };
  // first query block that sees key block kb (causal: rows i >= s0 - q_offset)
  auto first_qb = [&](int64_t kb) {
    return p.causal ? std::min(nq, std::max<int64_t>(0, kb * BK - p.q_offset) / BQ) : int64_t(0);
  };
  // key blocks seen by query block qb
  auto key_blocks = [&](int64_t qb) {
    const int64_t r0 = qb * BQ;
    return (flash_key_end(p, r0, std::min(BQ, L - r0)) + BK - 1) / BK;
  };
  // dK/dV of a K/V head sum over the kv_group query heads that read it: one task owns a K/V item
  // (or a key block of it) and adds the heads of its group in order.
  const int64_t G = p.kv_group, kv_items = items / G;
  if (schedule != 1 && schedule != 2) {
    const int64_t nt = in_parallel_region() ? 1 : get_num_threads();
    schedule = (kv_items % nt == 0 || kv_items >= 4 * nt) ? 1 : 2;
  }
  if (schedule == 1) {
    parallel_for(0, kv_items, 1, [&](int64_t t0, int64_t t1) {
      Scratch sc = make_scratch();
      for (int64_t kvi = t0; kvi < t1; ++kvi)
        for (int64_t it = kvi * G; it < (kvi + 1) * G; ++it)
          for (int64_t kb = 0; kb < nk; ++kb)
            for (int64_t qb = first_qb(kb); qb < nq; ++qb) pair(sc, it, qb, kb, true, true);
    });
    return;
  }
  if (dK || dV)
    parallel_for(0, kv_items * nk, 1, [&](int64_t t0, int64_t t1) {
      Scratch sc = make_scratch();
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t kvi = t / nk, kb = t % nk;
        for (int64_t it = kvi * G; it < (kvi + 1) * G; ++it)
          for (int64_t qb = first_qb(kb); qb < nq; ++qb) pair(sc, it, qb, kb, true, false);
      }
    });
  if (dQ)
    parallel_for(0, items * nq, 1, [&](int64_t t0, int64_t t1) {
      Scratch sc = make_scratch();
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t it = t / nq, qb = t % nq, nkb = key_blocks(qb);
        for (int64_t kb = 0; kb < nkb; ++kb) pair(sc, it, qb, kb, false, true);
      }
    });
}

}  // namespace attn::kernels::cpu
