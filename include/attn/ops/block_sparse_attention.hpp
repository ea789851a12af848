#pragma once
// Block-sparse attention: one kernel for the sparse patterns of the Sparse Transformer (strided),
// Longformer (dilated sliding window, global tokens + sliding window) and BigBird (global +
// window + random blocks).
//
// The sequence is cut into blocks of `block` positions (the last one may be shorter). A
// BlockSparseLayout lists, for every query block, the key blocks it attends (CSR: row_ptr, cols).
// Query i attends key j when block(j) is kept for block(i) (and j <= i when causal, and key j is
// not padded):
//   s_ij = scale * q_i . k_j,   w_i = softmax over the kept keys,   out_i = sum_j w_ij v_j
// This is dense attention with layout.to_mask() as a bool mask (the reference of the tests).
//
// Storage: the weights of every kept block, [N, nnz, block, block] (N = product of the leading
// dims, nnz = kept blocks), and the same again in backward for dW; time O(N nnz block^2 E).
// Nothing of size L x S is ever allocated, so time and memory grow with the number of kept
// blocks. Forward and dQ: one task per (item, query block); dK, dV: one task per (item, key
// block) that gathers from the query blocks attending it in ascending order (the transposed
// layout), so every result is computed by one thread in a fixed order: bit-identical results for
// any thread count. Products go through the dispatched GEMM (kernels/cpu/gemm.hpp).
#include "../core/parallel.hpp"
#include "../core/random.hpp"
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>
#include "../core/tensor.hpp"
#include "elementwise.hpp"

namespace attn {
// Which key blocks each query block attends. Build it with one of the pattern factories below or
// from explicit lists (from_rows); it is validated on construction and immutable afterwards.
class BlockSparseLayout {
 public:
  // rows[qb] = key blocks of query block qb (any order, duplicates removed). L, S: query and key
  // lengths; block: positions per block; causal: blocks above the diagonal are dropped and the
  // kernel masks j > i inside the diagonal blocks (needs L == S).
  static BlockSparseLayout from_rows(int64_t L, int64_t S, int64_t block, std::vector<std::vector<int64_t>> rows,
                                     bool causal = false) {
    ATTN_CHECK(L >= 1 && S >= 1 && block >= 1, "BlockSparseLayout: L, S and block must be >= 1, got L=", L, " S=", S,
               " block=", block);
    ATTN_CHECK(!causal || L == S, "BlockSparseLayout: causal needs L == S, got L=", L, " S=", S);
    BlockSparseLayout t;
    t.L_ = L;
    t.S_ = S;
    t.block_ = block;
    t.causal_ = causal;
    const int64_t nq = t.num_query_blocks(), nk = t.num_key_blocks();
    ATTN_CHECK(int64_t(rows.size()) == nq, "BlockSparseLayout: ", rows.size(), " rows given, expected ", nq,
               " query blocks (L=", L, ", block=", block, ")");
    t.row_ptr_.assign(size_t(nq + 1), 0);
    for (int64_t qb = 0; qb < nq; ++qb) {
      auto& r = rows[size_t(qb)];
      for (int64_t kb : r)
        ATTN_CHECK(kb >= 0 && kb < nk, "BlockSparseLayout: query block ", qb, " lists key block ", kb,
                   ", outside [0, ", nk, ") (S=", S, ", block=", block, ")");
      std::sort(r.begin(), r.end());
      r.erase(std::unique(r.begin(), r.end()), r.end());
      for (int64_t kb : r)
        if (!causal || kb <= qb) t.cols_.push_back(kb);
      t.row_ptr_[size_t(qb + 1)] = int64_t(t.cols_.size());
    }
    // Transposed layout: for key block kb, the entries (indices into cols_) that attend it, in
    // ascending query block order.
    t.col_ptr_.assign(size_t(nk + 1), 0);
    for (int64_t kb : t.cols_) ++t.col_ptr_[size_t(kb + 1)];
    for (int64_t kb = 0; kb < nk; ++kb) t.col_ptr_[size_t(kb + 1)] += t.col_ptr_[size_t(kb)];
    t.col_entries_.resize(t.cols_.size());
    t.entry_row_.resize(t.cols_.size());
    std::vector<int64_t> fill(t.col_ptr_.begin(), t.col_ptr_.end() - 1);
    for (int64_t qb = 0; qb < nq; ++qb)
      for (int64_t e = t.row_ptr_[size_t(qb)]; e < t.row_ptr_[size_t(qb + 1)]; ++e) {
        t.entry_row_[size_t(e)] = qb;
        t.col_entries_[size_t(fill[size_t(t.cols_[size_t(e)])]++)] = e;
      }
    return t;
  }

  // Longformer's (dilated) sliding window over blocks: query block qb attends key blocks
  // qb + dilation * t for t in [-window, window] (causal: t <= 0).
  static BlockSparseLayout sliding_window(int64_t L, int64_t block, int64_t window, int64_t dilation = 1,
                                          bool causal = false) {
    check_pattern("sliding_window", L, block, window >= 0 && dilation >= 1, "window >= 0 and dilation >= 1", window,
                  dilation);
    return pattern(L, block, causal, [&](int64_t qb, std::vector<int64_t>& r) { add_window(r, qb, window, dilation); });
  }

  // Sparse Transformer's strided pattern at block level: the `local` previous blocks (and the next
  // `local` ones when not causal) plus every block kb with (qb - kb) % stride == 0.
  static BlockSparseLayout strided(int64_t L, int64_t block, int64_t local, int64_t stride, bool causal = false) {
    check_pattern("strided", L, block, local >= 0 && stride >= 1, "local >= 0 and stride >= 1", local, stride);
    const int64_t nb = ceil_div(L, block);
    return pattern(L, block, causal, [&](int64_t qb, std::vector<int64_t>& r) {
      add_window(r, qb, local, 1);
      for (int64_t kb = qb % stride; kb < nb; kb += stride) r.push_back(kb);
    });
  }

  // Longformer's global tokens + sliding window: the first `global` blocks attend every block and
  // every block attends them; the others attend their window of +-window blocks.
  static BlockSparseLayout global_window(int64_t L, int64_t block, int64_t window, int64_t global,
                                         bool causal = false) {
    check_pattern("global_window", L, block, window >= 0 && global >= 0, "window >= 0 and global >= 0", window,
                  global);
    return bigbird_rows("global_window", L, block, window, global, 0, nullptr, causal);
  }

  // BigBird: global blocks + sliding window + `random` random key blocks per query block, drawn
  // from gen (default: the global generator) so a seeded run repeats. random = 0 gives
  // global_window; window = global = 0 gives purely random blocks (plus the diagonal block, so no
  // row is empty).
  static BlockSparseLayout bigbird(int64_t L, int64_t block, int64_t window, int64_t global, int64_t random,
                                   Generator* gen = nullptr, bool causal = false) {
    check_pattern("bigbird", L, block, window >= 0 && global >= 0 && random >= 0,
                  "window, global and random >= 0", window, global);
    return bigbird_rows("bigbird", L, block, window, global, random, gen ? gen : &default_generator(), causal);
  }

  int64_t L() const { return L_; }
  int64_t S() const { return S_; }
  int64_t block() const { return block_; }
  bool causal() const { return causal_; }
  int64_t num_query_blocks() const { return ceil_div(L_, block_); }
  int64_t num_key_blocks() const { return ceil_div(S_, block_); }
  int64_t nnz() const { return int64_t(cols_.size()); }  // kept blocks
  const std::vector<int64_t>& row_ptr() const { return row_ptr_; }
  const std::vector<int64_t>& cols() const { return cols_; }
  const std::vector<int64_t>& col_ptr() const { return col_ptr_; }
  const std::vector<int64_t>& col_entries() const { return col_entries_; }
  const std::vector<int64_t>& entry_row() const { return entry_row_; }
  // Share of the L x S score matrix that is computed (kept blocks x block^2 / (L S)).
  double density() const { return double(nnz()) * double(block_) * double(block_) / (double(L_) * double(S_)); }

  // The pattern as a dense bool mask [L, S], true = may attend (for tests and plots; O(L S)).
  Tensor to_mask() const {
    Tensor m = Tensor::zeros({L_, S_}, kBool);
    uint8_t* p = m.data<uint8_t>();
    for (int64_t qb = 0; qb < num_query_blocks(); ++qb)
      for (int64_t e = row_ptr_[size_t(qb)]; e < row_ptr_[size_t(qb + 1)]; ++e) {
        const int64_t kb = cols_[size_t(e)];
        for (int64_t i = qb * block_; i < std::min(L_, (qb + 1) * block_); ++i)
          for (int64_t j = kb * block_; j < std::min(S_, (kb + 1) * block_); ++j)
            if (!causal_ || j <= i) p[i * S_ + j] = 1;
      }
    return m;
  }

 private:
  static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
  static void check_pattern(const char* name, int64_t L, int64_t block, bool ok, const char* rule, int64_t a,
                            int64_t b) {
    ATTN_CHECK(L >= 1 && block >= 1, "BlockSparseLayout::", name, ": L and block must be >= 1, got L=", L,
               " block=", block);
    ATTN_CHECK(ok, "BlockSparseLayout::", name, ": needs ", rule, ", got ", a, ", ", b, " (L=", L, ", block=", block,
               ")");
  }
  static void add_window(std::vector<int64_t>& r, int64_t qb, int64_t window, int64_t dilation) {
    for (int64_t t = -window; t <= window; ++t) {
      const int64_t kb = qb + t * dilation;
      if (kb >= 0) r.push_back(kb);  // too large ones are cut by pattern()
    }
  }
  template <class F>
  static BlockSparseLayout pattern(int64_t L, int64_t block, bool causal, F&& rows_of) {
    const int64_t nb = ceil_div(L, block);
    std::vector<std::vector<int64_t>> rows(static_cast<size_t>(nb));
    for (int64_t qb = 0; qb < nb; ++qb) {
      auto& r = rows[size_t(qb)];
      rows_of(qb, r);
      r.erase(std::remove_if(r.begin(), r.end(), [nb](int64_t kb) { return kb < 0 || kb >= nb; }), r.end());
    }
    return from_rows(L, L, block, std::move(rows), causal);
  }
  static BlockSparseLayout bigbird_rows(const char*, int64_t L, int64_t block, int64_t window, int64_t global,
                                        int64_t random, Generator* gen, bool causal) {
    const int64_t nb = ceil_div(L, block), g = std::min(global, nb);
    std::vector<std::vector<int64_t>> rows(static_cast<size_t>(nb));
    for (int64_t qb = 0; qb < nb; ++qb) {
      auto& r = rows[size_t(qb)];
      if (qb < g) {  // a global block attends everything
        for (int64_t kb = 0; kb < nb; ++kb) r.push_back(kb);
        continue;
      }
      for (int64_t kb = 0; kb < g; ++kb) r.push_back(kb);
      add_window(r, qb, window, 1);
      r.push_back(qb);
    }
    if (random > 0 && gen) {  // drawn in a fixed order (query block by query block) so a seed repeats
      auto lk = gen->lock();
      for (int64_t qb = g; qb < nb; ++qb) {
        const int64_t span = causal ? qb + 1 : nb;  // causal: only blocks at or before qb
        for (int64_t t = 0; t < random; ++t)
          rows[size_t(qb)].push_back(int64_t(lk.next_u64() % uint64_t(span)));
      }
    }
    for (auto& r : rows)
      r.erase(std::remove_if(r.begin(), r.end(), [nb](int64_t kb) { return kb < 0 || kb >= nb; }), r.end());
    return from_rows(L, L, block, std::move(rows), causal);
  }

  int64_t L_ = 0, S_ = 0, block_ = 1;
  bool causal_ = false;
  std::vector<int64_t> row_ptr_, cols_;           // CSR over query blocks
  std::vector<int64_t> col_ptr_, col_entries_;    // CSC: entries per key block, ascending query block
  std::vector<int64_t> entry_row_;                // query block of each entry
};

ATTN_API Tensor block_sparse_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const BlockSparseLayout& layout,
                                       double scale = std::numeric_limits<double>::quiet_NaN(),
                                       const Tensor& key_padding_mask = Tensor());
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include "../kernels/cpu/block_sparse.hpp"
#include "attention_checks.hpp"

namespace attn {

namespace detail {
// The problem sizes live with the kernels (kernels/cpu/block_sparse.hpp).
using kernels::cpu::BsaDims;
}  // namespace detail

// Block-sparse attention. q [..., L, E], k [..., S, E], v [..., S, Ev] (leading dims equal) ->
// [..., L, Ev]. layout: the kept blocks (its L and S must match q and k). scale NaN -> 1/sqrt(E).
// key_padding_mask: bool [B, S] with B = q.size(0) (or [S] for 2-D q), true = padded key.
// A query with nothing to attend gets a zero output and zero gradients.
ATTN_API Tensor block_sparse_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const BlockSparseLayout& layout,
                                     double scale,
                                     const Tensor& key_padding_mask) {
  const char* op = "block_sparse_attention";
  detail::check_qkv(op, q, k, v);
  detail::BsaDims d;
  d.L = q.size(-2);
  d.E = q.size(-1);
  d.S = k.size(-2);
  d.Ev = v.size(-1);
  d.B = layout.block();
  ATTN_CHECK(layout.L() == d.L && layout.S() == d.S, op, ": layout is for L=", layout.L(), ", S=", layout.S(),
             " but q ", to_string(q.shape()), ", k ", to_string(k.shape()));
  ATTN_CHECK(q.device() == Device::CPU, op, ": CPU tensors only (no CUDA kernel), got q on ",
             q.device() == Device::CUDA ? "cuda" : "another device");
  detail::check_same_dtype(q, k, op);
  detail::check_same_dtype(q, v, op);
  d.N = q.numel() / std::max<int64_t>(d.L * d.E, 1);
  if (std::isnan(scale)) scale = 1.0 / std::sqrt(double(std::max<int64_t>(d.E, 1)));
  if (key_padding_mask.defined()) {
    const int64_t kpm_batch = detail::check_batch_key_padding_mask(op, q, k, d.S, key_padding_mask);
    d.kpm = key_padding_mask.data<uint8_t>();
    d.kpm_div = d.N / std::max<int64_t>(kpm_batch, 1);
  }
  Shape os = q.shape();
  os.back() = d.Ev;
  Tensor out = Tensor::empty(os, q.dtype());
  Tensor P = Tensor::empty({d.N, layout.nnz(), d.B, d.B}, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    kernels::cpu::bsa_forward<scalar_t>(layout, d, scalar_t(scale), q.data<scalar_t>(), k.data<scalar_t>(),
                                        v.data<scalar_t>(), out.data<scalar_t>(), P.data<scalar_t>());
  });
  if (!grad_needed({q, k, v})) return out;
  auto lay = std::make_shared<const BlockSparseLayout>(layout);
  // Backward (bsa_backward), W the saved weights, G = dL/dO, per kept tile e:
  //   dZ_e = W_e * (G_qb V_e^T - D),  D_i = g_i . o_i;  dQ_qb = scale sum_e dZ_e K_e
  //   dK_kb = scale sum_{e -> kb} dZ_e^T Q_qb(e);  dV_kb = sum_{e -> kb} W_e^T G_qb(e)
  return record(op, out, {q, k, v},
                [qc = q, kc = k, vc = v, lay, d, scale, od = out.detach(), Pd = P](const std::vector<Tensor>& g) {
                  // d.kpm is not read here: padded keys already have weight 0 in Pd.
                  Tensor gq = Tensor::empty(qc.shape(), qc.dtype()), gk = Tensor::empty(kc.shape(), qc.dtype()),
                         gv = Tensor::empty(vc.shape(), qc.dtype()), dz = Tensor::empty(Pd.shape(), qc.dtype());
                  ATTN_DISPATCH_FLOATING(qc.dtype(), "block_sparse_attention_backward", [&] {
                    kernels::cpu::bsa_backward<scalar_t>(
                        *lay, d, scalar_t(scale), qc.data<scalar_t>(), kc.data<scalar_t>(), vc.data<scalar_t>(),
                        od.data<scalar_t>(), Pd.data<scalar_t>(), g[0].data<scalar_t>(), gq.data<scalar_t>(),
                        gk.data<scalar_t>(), gv.data<scalar_t>(), dz.data<scalar_t>());
                  });
                  return std::vector<Tensor>{gq, gk, gv};
                },
                {q, k, v, out});
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
