#pragma once
// Raw loops of block-sparse attention: per (item, query block) forward over the kept key blocks,
// and the two backward passes (query blocks, then key blocks over the transposed layout). No
// Tensor, no autograd. `Layout` is ops/block_sparse_attention.hpp's BlockSparseLayout (read
// through num_query_blocks, num_key_blocks, nnz, causal, row_ptr, cols, col_ptr, col_entries,
// entry_row), which checks the arguments and records the node.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "../../core/parallel.hpp"
#include "gemm.hpp"

namespace attn::kernels::cpu {

struct BsaDims {
  int64_t N, L, S, E, Ev, B;  // items, lengths, widths, block
  const uint8_t* kpm = nullptr;  // key padding mask [B0, S], true = padded
  int64_t kpm_div = 1;           // item n uses mask row n / kpm_div
};

// Forward, one task per (item n, query block qb). P holds the weights of every entry of the
// layout: P[n, e] is a block x block tile (rows: queries of qb, cols: keys of cols[e]).
//   Z_e = scale Q_qb K_e^T (-inf where j > i when causal, or key padded)
//   W = softmax over the row of all tiles;  O_qb = sum_e W_e V_e
template <class T, class Layout>
void bsa_forward(const Layout& lay, const BsaDims& d, T scale, const T* Q, const T* K, const T* V, T* O,
                 T* P) {
  const int64_t B = d.B, nq = lay.num_query_blocks(), nnz = lay.nnz(), BB = B * B;
  const auto &rp = lay.row_ptr(), &cols = lay.cols();
  const T ninf = -std::numeric_limits<T>::infinity();
  parallel_for(0, d.N * nq, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> mx, sum;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / nq, qb = t % nq, i0 = qb * B, m = std::min(d.L, i0 + B) - i0;
      const T* Qb = Q + (n * d.L + i0) * d.E;
      T* Ob = O + (n * d.L + i0) * d.Ev;
      const uint8_t* pad = d.kpm ? d.kpm + (n / d.kpm_div) * d.S : nullptr;
      mx.assign(size_t(m), ninf);
      sum.assign(size_t(m), T(0));
      for (int64_t e = rp[size_t(qb)]; e < rp[size_t(qb + 1)]; ++e) {
        const int64_t j0 = cols[size_t(e)] * B, w = std::min(d.S, j0 + B) - j0;
        T* Pe = P + (n * nnz + e) * BB;
        std::fill(Pe, Pe + BB, T(0));
        kernels::cpu::gemm_serial<T>(false, true, m, w, d.E, scale, Qb, d.E, K + (n * d.S + j0) * d.E, d.E, T(0), Pe,
                                     B);
        for (int64_t r = 0; r < m; ++r) {
          T* z = Pe + r * B;
          for (int64_t c = 0; c < w; ++c)
            if ((lay.causal() && j0 + c > i0 + r) || (pad && pad[j0 + c])) z[c] = ninf;
          for (int64_t c = 0; c < w; ++c) mx[size_t(r)] = std::max(mx[size_t(r)], z[c]);
        }
      }
      for (int64_t e = rp[size_t(qb)]; e < rp[size_t(qb + 1)]; ++e) {
        const int64_t j0 = cols[size_t(e)] * B, w = std::min(d.S, j0 + B) - j0;
        T* Pe = P + (n * nnz + e) * BB;
        for (int64_t r = 0; r < m; ++r) {
          T* z = Pe + r * B;
          const T mr = mx[size_t(r)];
          for (int64_t c = 0; c < w; ++c) {
            z[c] = mr == ninf ? T(0) : std::exp(z[c] - mr);  // a row with nothing to attend: zeros
            sum[size_t(r)] += z[c];
          }
        }
      }
      std::fill(Ob, Ob + m * d.Ev, T(0));
      for (int64_t e = rp[size_t(qb)]; e < rp[size_t(qb + 1)]; ++e) {
        const int64_t j0 = cols[size_t(e)] * B, w = std::min(d.S, j0 + B) - j0;
        T* Pe = P + (n * nnz + e) * BB;
        for (int64_t r = 0; r < m; ++r) {
          const T inv = sum[size_t(r)] > T(0) ? T(1) / sum[size_t(r)] : T(0);
          for (int64_t c = 0; c < w; ++c) Pe[r * B + c] *= inv;
        }
        kernels::cpu::gemm_serial<T>(false, false, m, d.Ev, w, T(1), Pe, B, V + (n * d.S + j0) * d.Ev, d.Ev, T(1), Ob,
                                     d.Ev);
      }
    }
  });
}

// Backward. With W the saved weights, G = dL/dO:
//   dW_e = G_qb V_e^T;  dZ_e = W_e * (dW_e - D),  D_i = g_i . o_i  (= sum_j W_ij dW_ij)
//   dQ_qb = scale sum_e dZ_e K_e;  dK_kb = scale sum_{e -> kb} dZ_e^T Q_qb(e);  dV_kb = sum_{e -> kb} W_e^T G_qb(e)
// Pass 1 (per item, query block) writes dZ into DZ (same layout as P) and dQ; pass 2 (per item,
// key block) gathers dK and dV over the entries of the transposed layout in ascending order.
template <class T, class Layout>
void bsa_backward(const Layout& lay, const BsaDims& d, T scale, const T* Q, const T* K, const T* V,
                  const T* O, const T* P, const T* G, T* gQ, T* gK, T* gV, T* DZ) {
  const int64_t B = d.B, nq = lay.num_query_blocks(), nk = lay.num_key_blocks(), nnz = lay.nnz(), BB = B * B;
  const auto &rp = lay.row_ptr(), &cols = lay.cols();
  parallel_for(0, d.N * nq, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> D;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / nq, qb = t % nq, i0 = qb * B, m = std::min(d.L, i0 + B) - i0;
      const T* Gb = G + (n * d.L + i0) * d.Ev;
      const T* Ob = O + (n * d.L + i0) * d.Ev;
      T* gq = gQ + (n * d.L + i0) * d.E;
      D.assign(size_t(m), T(0));
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < d.Ev; ++c) D[size_t(r)] += Gb[r * d.Ev + c] * Ob[r * d.Ev + c];
      std::fill(gq, gq + m * d.E, T(0));
      for (int64_t e = rp[size_t(qb)]; e < rp[size_t(qb + 1)]; ++e) {
        const int64_t j0 = cols[size_t(e)] * B, w = std::min(d.S, j0 + B) - j0;
        const T* Pe = P + (n * nnz + e) * BB;
        T* Ze = DZ + (n * nnz + e) * BB;
        std::fill(Ze, Ze + BB, T(0));
        kernels::cpu::gemm_serial<T>(false, true, m, w, d.Ev, T(1), Gb, d.Ev, V + (n * d.S + j0) * d.Ev, d.Ev, T(0),
                                     Ze, B);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t c = 0; c < w; ++c) Ze[r * B + c] = Pe[r * B + c] * (Ze[r * B + c] - D[size_t(r)]);
        kernels::cpu::gemm_serial<T>(false, false, m, d.E, w, scale, Ze, B, K + (n * d.S + j0) * d.E, d.E, T(1), gq,
                                     d.E);
      }
    }
  });
  const auto &cp = lay.col_ptr(), &ce = lay.col_entries(), &er = lay.entry_row();
  parallel_for(0, d.N * nk, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / nk, kb = t % nk, j0 = kb * B, w = std::min(d.S, j0 + B) - j0;
      T* gk = gK + (n * d.S + j0) * d.E;
      T* gv = gV + (n * d.S + j0) * d.Ev;
      std::fill(gk, gk + w * d.E, T(0));
      std::fill(gv, gv + w * d.Ev, T(0));
      for (int64_t x = cp[size_t(kb)]; x < cp[size_t(kb + 1)]; ++x) {
        const int64_t e = ce[size_t(x)], i0 = er[size_t(e)] * B, m = std::min(d.L, i0 + B) - i0;
        kernels::cpu::gemm_serial<T>(true, false, w, d.E, m, scale, DZ + (n * nnz + e) * BB, B,
                                     Q + (n * d.L + i0) * d.E, d.E, T(1), gk, d.E);
        kernels::cpu::gemm_serial<T>(true, false, w, d.Ev, m, T(1), P + (n * nnz + e) * BB, B,
                                     G + (n * d.L + i0) * d.Ev, d.Ev, T(1), gv, d.Ev);
      }
    }
  });
}

}  // namespace attn::kernels::cpu
