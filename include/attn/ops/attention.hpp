#pragma once
// Scaled dot-product attention as ONE fused autograd node per call.
//
//   Z = scale * Q K^T + M          (M: additive float mask, or -inf where a bool mask is false,
//                                   where the key is padded, or above the diagonal if causal)
//   W = softmax_rows(Z)            (a row whose keys are all masked gets W = 0, never NaN)
//   W' = W * D / (1 - p)           (dropout mask D ~ Bernoulli(1 - p), only when p > 0)
//   O = W' V
//
// Shapes: Q [..., L, E], K [..., S, E], V [..., S, Ev] -> O [..., L, Ev], W' [..., L, S].
// The kernel works on strided layouts: each (batch, head) matrix is addressed as
// base + b*sb + h*sh + row*ld + col, so multi-head attention reads Q/K/V straight out of a packed
// projection [B, L, 3E] and writes heads already merged into [B, L, E] (no split/merge copies).
// Work is split into fixed tasks of (batch, head, block of 64 rows): each element of every result
// is computed by one task in a fixed order, so results are bit-identical for any thread count.
//
// Two CPU paths: the weights-storing kernels (attn_forward_kernel / attn_backward_kernel: W is
// saved, [B*H, L, S]) serve need_weights = true, a float mask that needs a gradient, and small
// problems; the tiled kernels (flash_forward_kernel / flash_backward_kernel, FlashAttention-2
// style: online softmax, only the per-row log-sum-exp saved, weights recomputed in backward)
// serve the rest once the weights would take min_weight_bytes (see FlashAttnConfig).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>
#include <Eigen/Core>
#include "../core/tensor.hpp"
#include "cuda/attention.hpp"
#include "../kernels/cpu/gemm.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"
#include "shape.hpp"

namespace attn {
namespace detail {

// Where the (b, h) matrix of an operand lives: element (b, h, r, c) = data + off + b*sb + h*sh + r*ld + c.
struct AttnLayout {
  int64_t off = 0, sb = 0, sh = 0, ld = 0;
};

struct AttnProblem {
  int64_t B = 1, H = 1, L = 0, S = 0, E = 0, Ev = 0;
  double scale = 1.0;
  bool causal = false;       // key j visible to query i iff j <= i + q_offset
  // Query row i sits at key position i + q_offset (the causal mask and ALiBi use it). 0: top-left
  // aligned (like tril, is_causal); S - L: aligned to the end of the keys, so the L newest
  // queries of a KV cache see the whole cache up to themselves. Never negative.
  int64_t q_offset = 0;
  // ALiBi (Press et al., 2022): when non-null, H slopes m_h, and the score of query i, key j in
  // head h gets -m_h * |i + q_offset - j| (the paper's -m_h (i - j) on the keys a causal mask
  // leaves, and symmetric without one), computed in the kernels, so no [H, L, S] bias is stored
  // and the tiled path stays available.
  const double* alibi = nullptr;
  // Query heads per key/value head (grouped-query attention): head h reads K/V head h / kv_group,
  // straight from the K/V tensors with H / kv_group heads (no copy). 1: one K/V head per head.
  int64_t kv_group = 1;
  int64_t kv_head(int64_t h) const { return h / kv_group; }
  // Last key (exclusive) query row i sees before masks: [0, causal_end(i)).
  int64_t causal_end(int64_t i) const { return causal ? std::clamp<int64_t>(i + q_offset + 1, 0, S) : S; }
  double dropout_p = 0.0;
  uint64_t dropout_seed = 0;
};

// A mask read as a tensor of the scores' shape [B*H items, L, S]: item offsets + row/col strides.
struct AttnMaskView {
  const void* data = nullptr;
  DType dtype = kBool;
  std::vector<int64_t> item_off;  // per (b*H + h)
  int64_t sl = 0, ss = 0;
};

constexpr int64_t kAttnRowBlock = 64;

// Counter-based keep/drop decision: the same for any thread count or task order.
inline bool attn_dropout_keep(uint64_t seed, uint64_t idx, double p) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (idx + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53 >= p;
}

// Builds the per-item view of a mask broadcast to `scores_shape` (= batch dims..., L, S, whose
// batch dims multiply to B*H). Throws ShapeError naming `op` when it does not broadcast.
inline AttnMaskView make_mask_view(const Tensor& m, const Shape& scores_shape, const char* op, const char* what) {
  AttnMaskView v;
  if (!m.defined()) return v;
  bool ok = m.dim() >= 1 && m.dim() <= int64_t(scores_shape.size());
  for (int64_t i = 1; ok && i <= m.dim(); ++i) {
    const int64_t a = m.shape()[size_t(m.dim() - i)], b = scores_shape[scores_shape.size() - size_t(i)];
    ok = a == b || a == 1;
  }
  ATTN_CHECK(ok, op, ": ", what, " ", to_string(m.shape()), " cannot be broadcast to the attention scores ",
             to_string(scores_shape), " (expected [L, S], [B, 1, L, S] or [B, H, L, S] style shapes)");
  ATTN_CHECK(m.dtype() == kBool || m.is_floating_point(), op, ": ", what, " must be bool or floating, got ",
             dtype_name(m.dtype()));
  const auto st = broadcast_strides(m.shape(), scores_shape);
  const size_t nb = scores_shape.size() - 2;
  int64_t items = 1;
  for (size_t d = 0; d < nb; ++d) items *= scores_shape[d];
  v.item_off.resize(size_t(items));
  for (int64_t it = 0; it < items; ++it) {
    int64_t r = it, off = 0;
    for (size_t d = nb; d-- > 0;) {
      off += (r % scores_shape[d]) * st[d];
      r /= scores_shape[d];
    }
    v.item_off[size_t(it)] = off;
  }
  v.sl = st[nb];
  v.ss = st[nb + 1];
  v.data = m.raw_data();
  v.dtype = m.dtype();
  return v;
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
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const bool may_mask = mask.data != nullptr || kpm.data != nullptr;
  parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    // Eigen's vectorised exp peels scalar iterations until its destination is aligned, so the
    // destination must have a fixed alignment for results not to depend on the thread/buffer.
    using AlignedVec = std::vector<T, Eigen::aligned_allocator<T>>;
    AlignedVec scratch, drop_scratch, ebuf(static_cast<size_t>(S));
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
        // stable softmax over the visible prefix [0, jend); -inf entries get exactly 0
        using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
        ArrMap zv(z, jend), ev(ebuf.data(), jend);
        const T mx = jend > 0 ? zv.maxCoeff() : neg_inf;
        if (mx == neg_inf) {  // every key masked: zero weights, zero output row
          std::fill(z, z + S, T(0));
          continue;
        }
        ev = (zv - mx).exp();
        if (may_mask) ev = (zv == neg_inf).select(T(0), ev);  // Eigen's exp(-inf) is tiny, not 0
        const T inv = T(1) / ev.sum();
        zv = ev * inv;
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
        using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
        using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
        ArrMap dv(d, S);
        CArrMap wv(wr, S);
        const T dot = (dv * wv).sum();  // rows are at fixed offsets of 64-byte aligned buffers
        dv = wv * (dv - dot);
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

// Knobs of the tiled path (tests and benchmarks use them to force one path or schedule).
struct FlashAttnConfig {
  // The tiled path is used when need_weights is false, the attn_mask needs no gradient, and the
  // weights the other path would store, B*H*L*S elements, take at least min_weight_bytes. Below
  // that the weights-storing path is faster (measured, docs/attention-dense.md: the tiled
  // backward recomputes Q K^T, one product in seven more, which pays off only once the [B*H, L, S]
  // buffers no longer fit in the caches). 0: always; INT64_MAX: never. The choice depends on the
  // shapes and dtype only, never on the thread count, so results stay thread-independent.
  int64_t min_weight_bytes = int64_t(8) << 20;
  // Backward schedule: 0 = auto (per item when the items split evenly over the threads or there
  // are many, else two passes), 1 = per item, 2 = two passes.
  int backward_schedule = 0;
};
inline FlashAttnConfig& flash_attn_config() {
  static FlashAttnConfig c;
  return c;
}

// Whether fused_attention takes the tiled path for this call.
inline bool use_tiled_attention(const AttnProblem& p, DType dt, bool need_weights, bool mask_grad) {
  if (need_weights || mask_grad) return false;
  const double bytes = double(p.B) * double(p.H) * double(p.L) * double(p.S) * double(dtype_size(dt));
  return bytes >= double(flash_attn_config().min_weight_bytes);
}

// Row stride of the per-task score blocks: a multiple of 16 elements, so every row starts at the
// same alignment (Eigen peels scalar iterations up to an aligned address, and the scalar exp and
// the vector exp can differ in the last bit: a fixed alignment keeps results thread-independent).
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
  using AlignedVec = std::vector<T, Eigen::aligned_allocator<T>>;
  using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  constexpr int64_t BQ = kAttnRowBlock, BK = kFlashFwdKeyBlock;
  const int64_t L = p.L, S = p.S, Ev = p.Ev, nq = (L + BQ - 1) / BQ, items = p.B * p.H;
  const int64_t ldz = flash_ld(std::min(BK, S));
  const bool drop = p.dropout_p > 0.0;
  const T keep_scale = drop ? T(1.0 / (1.0 - p.dropout_p)) : T(1);
  const T neg_inf = -std::numeric_limits<T>::infinity();
  parallel_for(0, items * nq, 1, [&](int64_t t0, int64_t t1) {
    AlignedVec z(size_t(BQ * ldz)), zd(drop ? size_t(BQ * ldz) : 0), acc(size_t(BQ * std::max<int64_t>(Ev, 1)));
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
        const bool masked = mask_scores(p, mask, kpm, it, r0, m, 0, n, z.data(), ldz);
        for (int64_t r = 0; r < m; ++r) {
          T* zr = z.data() + r * ldz;
          const int64_t jv = flash_visible(p, r0 + r, 0, n);
          ArrMap zv(zr, jv);
          const T mx = jv > 0 ? zv.maxCoeff() : neg_inf;
          if (mx == neg_inf) {  // every key masked: zero weights, zero output row
            std::fill(zr, zr + n, T(0));
            if (LSE) LSE[it * L + r0 + r] = neg_inf;
          } else {
            if (masked) zv = (zv == neg_inf).select(T(0), (zv - mx).exp());  // Eigen's exp(-inf) is tiny, not 0
            else zv = (zv - mx).exp();
            const T l = zv.sum();
            zv *= T(1) / l;
            std::fill(zr + jv, zr + n, T(0));
            if (LSE) LSE[it * L + r0 + r] = mx + std::log(l);
          }
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
        const bool masked = mask_scores(p, mask, kpm, it, r0, m, s0, n, z.data(), ldz);
        for (int64_t r = 0; r < m; ++r) {
          T* zr = z.data() + r * ldz;
          const int64_t jv = flash_visible(p, r0 + r, s0, n);
          ArrMap zv(zr, jv);
          const T mold = mrow[r], mnew = jv > 0 ? std::max(mold, zv.maxCoeff()) : mold;
          if (mnew == neg_inf) {  // every key so far masked: no contribution
            std::fill(zr, zr + n, T(0));
          } else {
            if (masked) zv = (zv == neg_inf).select(T(0), (zv - mnew).exp());
            else zv = (zv - mnew).exp();
            std::fill(zr + jv, zr + n, T(0));
            if (mold != mnew && mold != neg_inf) {  // rescale what earlier key blocks accumulated
              const T c = std::exp(mold - mnew);
              lrow[r] *= c;
              for (int64_t x = 0; x < Ev; ++x) acc[size_t(r * Ev + x)] *= c;
            }
            lrow[r] += zv.sum();
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
template <class T>
void flash_backward_kernel(const AttnProblem& p, const T* Q, AttnLayout lq, const T* K, AttnLayout lk, const T* V,
                           AttnLayout lv, const T* O, const T* dO, AttnLayout lo, const T* LSE,
                           const AttnMaskView& mask, const AttnMaskView& kpm, T* dQ, T* dK, T* dV) {
  using AlignedVec = std::vector<T, Eigen::aligned_allocator<T>>;
  using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
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
    AlignedVec z, dz, zd;
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
    const bool masked = mask_scores(p, mask, kpm, it, r0, m, s0, n, z, ldz);
    if (want_dz)
      kernels::cpu::gemm_serial<T>(false, false, m, n, Ev, T(1), dout, lo.ld, sc.tr.vt.data() + s0, S, T(0), dz, ldz);
    for (int64_t r = 0; r < m; ++r) {
      const int64_t row = it * L + r0 + r;
      const T lse = LSE[row];
      T *zr = z + r * ldz, *dzr = dz + r * ldz, *zdr = zd + r * ldz;
      // keys [jv, n) are above the diagonal (causal): W = 0, dZ = 0 there
      const int64_t jv = lse == neg_inf ? 0 : flash_visible(p, r0 + r, s0, n);  // LSE = -inf: the row sees no key
      ArrMap zv(zr, jv), dzv(dzr, jv);
      if (masked) zv = (zv == neg_inf).select(T(0), (zv - lse).exp());
      else zv = (zv - lse).exp();
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
        dzv = zv * (dzv - Drow[size_t(row)]);
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
  int schedule = flash_attn_config().backward_schedule;
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

// The fused differentiable node behind scaled_dot_product_attention and MultiheadAttention.
// q/k/v are tensors holding the operands at the given layouts (q, k and v may be the same tensor,
// e.g. a packed [B, L, 3E] projection). `out_shape`/`lo` describe the freshly allocated output.
// `scores_shape` is the shape masks broadcast against (product = B*H*L*S); the returned weights
// (when need_weights) have that shape. Masks: attn_mask bool (true = may attend) or float
// (additive, differentiable); key_padding_mask bool [B, S] (true = padded), read per batch b.
struct FusedAttnArgs {
  Tensor q, k, v;
  AttnLayout lq, lk, lv, lo;
  Shape out_shape, scores_shape;
  AttnProblem p;
  Tensor attn_mask, key_padding_mask;
  Tensor alibi_slopes;  // float64 [H] or undefined; fused_attention points p.alibi at it
  bool need_weights = false;
};

// Gradient buffers of q, k, v for the backward of a fused attention node. One tensor may hold
// several operands (a packed [B, L, 3E] projection): then the gradients go into one buffer at
// their disjoint offsets. Operands that alias at the same offset (sdpa(x, x, x)) get buffers of
// their own and the engine sums them. Buffers are zero-filled.
struct AttnGradBuffers {
  Tensor gq, gk, gv;
  bool same_kq = false, same_vq = false, same_vk = false;
  explicit AttnGradBuffers(const FusedAttnArgs& a) {
    const Tensor &q = a.q, &k = a.k, &v = a.v;
    const bool kq = k.is_same(q), vq = v.is_same(q), vk = v.is_same(k);
    same_kq = kq && a.lk.off != a.lq.off;
    const bool vq_ok = vq && a.lv.off != a.lq.off, vk_ok = vk && a.lv.off != a.lk.off;
    same_vq = vq_ok && (!vk || vk_ok);
    same_vk = !same_vq && vk_ok && (!vq || vq_ok);
    if (q.requires_grad()) gq = Tensor::zeros(q.shape(), q.dtype());
    if (k.requires_grad()) gk = same_kq ? gq : Tensor::zeros(k.shape(), k.dtype());
    if (v.requires_grad()) gv = same_vq ? gq : (same_vk ? gk : Tensor::zeros(v.shape(), v.dtype()));
  }
  // One gradient per input q, k, v (a shared buffer is returned once, with the first input).
  std::vector<Tensor> results() const {
    return {gq, same_kq ? Tensor() : gk, (same_vq || same_vk) ? Tensor() : gv};
  }
};

// The tiled node (no weights, no mask gradient): forward saves O and LSE [B*H, L]; the backward
// recomputes the weights block by block (flash_forward_kernel / flash_backward_kernel).
inline Tensor fused_attention_tiled(const FusedAttnArgs& a, const char* op, const AttnMaskView& mview,
                                    const AttnMaskView& kview, bool track) {
  const Tensor& q = a.q;
  Tensor out = Tensor::empty(a.out_shape, q.dtype());
  Tensor lse;
  if (track) lse = Tensor::empty({a.p.B * a.p.H, a.p.L}, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    flash_forward_kernel<scalar_t>(a.p, q.data<scalar_t>(), a.lq, a.k.data<scalar_t>(), a.lk, a.v.data<scalar_t>(),
                                   a.lv, out.data<scalar_t>(), a.lo, mview, kview,
                                   track ? lse.data<scalar_t>() : nullptr);
  });
  if (!track) {
    if (is_anomaly_enabled()) check_finite(out, op, "forward output");
    return out;
  }
  // Saved: inputs (and masks, through `a` and the views), the output and LSE; the dropout mask
  // is regenerated from the seed.
  auto fn = [a, mview, kview, o = out.detach(), lse](const std::vector<Tensor>& g) {
    const Tensor& q = a.q;
    AttnGradBuffers gb(a);
    const Tensor gout = g[0].defined() ? g[0] : Tensor::zeros(a.out_shape, q.dtype());
    // The output gradient is contiguous in out_shape, i.e. laid out like the output.
    ATTN_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention_backward", [&] {
      flash_backward_kernel<scalar_t>(a.p, q.data<scalar_t>(), a.lq, a.k.data<scalar_t>(), a.lk,
                                      a.v.data<scalar_t>(), a.lv, o.data<scalar_t>(), gout.data<scalar_t>(), a.lo,
                                      lse.data<scalar_t>(), mview, kview,
                                      gb.gq.defined() ? gb.gq.data<scalar_t>() : nullptr,
                                      gb.gk.defined() ? gb.gk.data<scalar_t>() : nullptr,
                                      gb.gv.defined() ? gb.gv.data<scalar_t>() : nullptr);
    });
    return gb.results();
  };
  record(op, std::vector<Tensor*>{&out}, {a.q, a.k, a.v}, fn, {a.q, a.k, a.v, a.attn_mask, a.key_padding_mask, out});
  return out;
}

inline std::pair<Tensor, Tensor> fused_attention(const FusedAttnArgs& args, const char* op) {
  FusedAttnArgs a = args;  // the backward keeps this copy: its p.alibi points into its alibi_slopes
  if (a.alibi_slopes.defined()) {
    ATTN_CHECK(a.alibi_slopes.dtype() == kFloat64 && a.alibi_slopes.dim() == 1 && a.alibi_slopes.size(0) == a.p.H, op,
               ": ALiBi slopes ", to_string(a.alibi_slopes.shape()), " (", dtype_name(a.alibi_slopes.dtype()),
               ") must be float64 [H] with H = ", a.p.H);
    a.p.alibi = a.alibi_slopes.data<double>();
  }
  if (on_cuda(a.q, a.k, a.v)) return cuda_ops::fused_attention(a, op, make_mask_view);
  const Tensor &q = a.q, &k = a.k, &v = a.v;
  const AttnProblem& p = a.p;
  check_same_dtype(q, k, op);
  check_same_dtype(q, v, op);
  AttnMaskView mview = make_mask_view(a.attn_mask, a.scores_shape, op, "attn_mask");
  AttnMaskView kview;
  if (a.key_padding_mask.defined()) {
    const Tensor& m = a.key_padding_mask;
    ATTN_CHECK(m.dtype() == kBool, op, ": key_padding_mask must be bool (true = padded), got ", dtype_name(m.dtype()));
    ATTN_CHECK((m.dim() == 2 && m.size(0) == p.B && m.size(1) == p.S) || (m.dim() == 1 && p.B == 1 && m.size(0) == p.S),
               op, ": key_padding_mask ", to_string(m.shape()), " must be [B, S] = [", p.B, ", ", p.S,
               "] for attention scores ", to_string(a.scores_shape));
    kview.data = m.raw_data();
    kview.dtype = kBool;
    kview.ss = 1;
    kview.item_off.resize(size_t(p.B * p.H));
    for (int64_t it = 0; it < p.B * p.H; ++it) kview.item_off[size_t(it)] = (it / p.H) * p.S;
  }
  const bool mask_grad = a.attn_mask.defined() && a.attn_mask.is_floating_point() && a.attn_mask.requires_grad();
  const bool track = is_grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad() || mask_grad);
  if (use_tiled_attention(p, q.dtype(), a.need_weights, mask_grad))
    return {fused_attention_tiled(a, op, mview, kview, track), Tensor()};
  const bool drop = p.dropout_p > 0.0;
  Tensor out = Tensor::empty(a.out_shape, q.dtype());
  Tensor W, Wd;
  if (track || a.need_weights) W = Tensor::empty(a.scores_shape, q.dtype());
  if (drop && a.need_weights) Wd = Tensor::empty(a.scores_shape, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    attn_forward_kernel<scalar_t>(p, q.data<scalar_t>(), a.lq, k.data<scalar_t>(), a.lk, v.data<scalar_t>(), a.lv,
                                  out.data<scalar_t>(), a.lo, mview, kview, W.defined() ? W.data<scalar_t>() : nullptr,
                                  Wd.defined() ? Wd.data<scalar_t>() : nullptr);
  });
  Tensor weights;
  if (a.need_weights) weights = drop ? Wd : W.detach();
  if (!track) {
    // Not recorded, so record() does not see the outputs: check them here in anomaly mode.
    if (is_anomaly_enabled()) {
      check_finite(out, op, "forward output");
      check_finite(weights, op, "forward output (weights)");
    }
    return {out, weights};
  }
  std::vector<Tensor> inputs{q, k, v};
  if (mask_grad) inputs.push_back(a.attn_mask);
  // Saved: inputs, pre-dropout W and the dropout seed (the mask is regenerated from it).
  auto fn = [a, W = W.detach(), mask_grad](const std::vector<Tensor>& g) {
    const Tensor &q = a.q, &k = a.k, &v = a.v;
    AttnGradBuffers gb(a);
    Tensor &gq = gb.gq, &gk = gb.gk, &gv = gb.gv;
    Tensor dZ = Tensor::empty(a.scores_shape, q.dtype());
    Tensor gout = g[0].defined() ? g[0] : Tensor::zeros(a.out_shape, q.dtype());
    const Tensor gw = g.size() > 1 ? g[1] : Tensor();
    // The output gradient is contiguous in out_shape, i.e. laid out like the output.
    ATTN_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention_backward", [&] {
      attn_backward_kernel<scalar_t>(a.p, q.data<scalar_t>(), a.lq, k.data<scalar_t>(), a.lk, v.data<scalar_t>(), a.lv,
                                     gout.data<scalar_t>(), a.lo, W.data<scalar_t>(),
                                     gw.defined() ? gw.data<scalar_t>() : nullptr,
                                     gq.defined() ? gq.data<scalar_t>() : nullptr,
                                     gk.defined() ? gk.data<scalar_t>() : nullptr,
                                     gv.defined() ? gv.data<scalar_t>() : nullptr, dZ.data<scalar_t>());
    });
    std::vector<Tensor> res = gb.results();
    if (mask_grad) {
      Tensor gm = sum_to(dZ, a.attn_mask.shape());
      res.push_back(gm.dtype() == a.attn_mask.dtype() ? gm : gm.to(a.attn_mask.dtype()));
    }
    return res;
  };
  std::vector<Tensor*> outputs{&out};
  if (a.need_weights) outputs.push_back(&weights);
  record(op, outputs, inputs, fn, {q, k, v, a.attn_mask, a.key_padding_mask, W});
  return {out, weights};
}

inline std::pair<Tensor, Tensor> sdpa_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                           bool is_causal, double dropout_p, double scale,
                                           const Tensor& key_padding_mask, bool need_weights) {
  const char* op = "scaled_dot_product_attention";
  ATTN_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, op, ": q ", to_string(q.shape()), ", k ",
             to_string(k.shape()), ", v ", to_string(v.shape()), " must be at least 2-D [..., L, E]");
  ATTN_CHECK(q.size(-1) == k.size(-1), op, ": q ", to_string(q.shape()), " and k ", to_string(k.shape()),
             " must have the same last dim E");
  ATTN_CHECK(k.size(-2) == v.size(-2), op, ": k ", to_string(k.shape()), " and v ", to_string(v.shape()),
             " must have the same number of keys S (dim -2)");
  ATTN_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, op, ": dropout_p must be in [0, 1), got ", dropout_p);
  // Grouped-query / multi-query attention: q [B, H, L, E], k [B, Hkv, S, E], v [B, Hkv, S, Ev]
  // with H a multiple of Hkv (PyTorch 2.5's enable_gqa): query head h reads K/V head
  // h / (H / Hkv) in place, no expanded copy of K and V (a plain broadcast would copy them through
  // expand). CUDA tensors keep the broadcasting copy (its kernels read one K/V head per head).
  const bool gqa = q.device() == Device::CPU && q.dim() == 4 && k.dim() == 4 && v.dim() == 4 &&
                   q.size(0) == k.size(0) && k.size(0) == v.size(0) && k.size(1) == v.size(1) && k.size(1) > 0 &&
                   k.size(1) != q.size(1) && q.size(1) % k.size(1) == 0;
  const Shape bq(q.shape().begin(), q.shape().end() - 2), bk(k.shape().begin(), k.shape().end() - 2),
      bv(v.shape().begin(), v.shape().end() - 2);
  const Shape bs = gqa ? bq : broadcast_shapes(broadcast_shapes(bq, bk, op), bv, op);
  auto full = [&](const Tensor& t, const Shape& tb) {
    if (tb == bs) return t;
    Shape s = bs;
    s.push_back(t.size(-2));
    s.push_back(t.size(-1));
    return expand(t, s);  // differentiable: its backward sums over the broadcast dims
  };
  const int64_t L = q.size(-2), S = k.size(-2), E = q.size(-1), Ev = v.size(-1);
  FusedAttnArgs a;
  if (gqa) {
    a.q = q;
    a.k = k;
    a.v = v;
    a.p.B = q.size(0);
    a.p.H = q.size(1);
    a.p.kv_group = q.size(1) / k.size(1);
  } else {
    a.q = full(q, bq);
    a.k = full(k, bk);
    a.v = full(v, bv);
    a.p.B = bs.empty() ? 1 : bs[0];
    a.p.H = numel_of(bs) / std::max<int64_t>(a.p.B, 1);
    if (numel_of(bs) == 0) a.p.H = 0;
  }
  const int64_t Hkv = a.p.H / a.p.kv_group;
  a.p.L = L;
  a.p.S = S;
  a.p.E = E;
  a.p.Ev = Ev;
  a.p.scale = std::isnan(scale) ? 1.0 / std::sqrt(double(E)) : scale;
  a.p.causal = is_causal;
  a.p.dropout_p = dropout_p;
  if (dropout_p > 0.0) a.p.dropout_seed = default_generator().next_u64();
  // contiguous [B, H, rows, cols] layouts (H = product of the remaining batch dims)
  a.lq = {0, a.p.H * L * E, L * E, E};
  a.lk = {0, Hkv * S * E, S * E, E};
  a.lv = {0, Hkv * S * Ev, S * Ev, Ev};
  a.lo = {0, a.p.H * L * Ev, L * Ev, Ev};
  a.out_shape = bs;
  a.out_shape.push_back(L);
  a.out_shape.push_back(Ev);
  a.scores_shape = bs;
  a.scores_shape.push_back(L);
  a.scores_shape.push_back(S);
  a.attn_mask = attn_mask;
  a.key_padding_mask = key_padding_mask;
  a.need_weights = need_weights;
  if (key_padding_mask.defined())
    ATTN_CHECK(!bs.empty() || key_padding_mask.dim() == 1, op, ": key_padding_mask ",
               to_string(key_padding_mask.shape()), " given for unbatched q ", to_string(q.shape()),
               " must be [S]");
  return fused_attention(a, op);
}

}  // namespace detail

constexpr double kDefaultAttnScale = std::numeric_limits<double>::quiet_NaN();

// softmax(q k^T * scale + mask) v over q [..., L, E], k [..., S, E], v [..., S, Ev] -> [..., L, Ev].
// Leading dims broadcast as in PyTorch. Grouped-query attention: 4-D q [B, H, L, E] with k, v
// [B, Hkv, S, .] where Hkv divides H (Hkv = 1: multi-query) shares each K/V head among H / Hkv
// consecutive query heads without copying K and V (PyTorch 2.5's enable_gqa = true).
// attn_mask: bool (true = may attend) or additive float, broadcastable to [..., L, S]. is_causal:
// query i sees keys j <= i. key_padding_mask: bool [B, S] (true = padded key, PyTorch's
// nn.MultiheadAttention convention), B = the first leading dim.
// scale NaN means 1/sqrt(E). dropout_p > 0 applies dropout to the weights (this functional form
// always applies it when p > 0; modules pass p only in training). Queries that see no key at all
// get zero output and zero gradient.
inline Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const Tensor& attn_mask = Tensor(), bool is_causal = false,
                                           double dropout_p = 0.0, double scale = kDefaultAttnScale,
                                           const Tensor& key_padding_mask = Tensor()) {
  return detail::sdpa_impl(q, k, v, attn_mask, is_causal, dropout_p, scale, key_padding_mask, false).first;
}

// Same, also returning the attention weights [..., L, S] (after dropout, as PyTorch's MHA returns
// them). The weights are differentiable too.
inline std::pair<Tensor, Tensor> scaled_dot_product_attention_with_weights(
    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask = Tensor(), bool is_causal = false,
    double dropout_p = 0.0, double scale = kDefaultAttnScale, const Tensor& key_padding_mask = Tensor()) {
  return detail::sdpa_impl(q, k, v, attn_mask, is_causal, dropout_p, scale, key_padding_mask, true);
}

// Bool mask [L, S] (S defaults to L), true on and below the diagonal: query i may attend keys
// j <= i. Pass it as attn_mask (bool: true = may attend).
inline Tensor causal_mask(int64_t L, int64_t S = -1) {
  if (S < 0) S = L;
  ATTN_CHECK(L >= 0 && S >= 0, "causal_mask: sizes must be non-negative, got ", L, " x ", S);
  Tensor m = Tensor::zeros({L, S}, kBool);
  uint8_t* p = m.data<uint8_t>();
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j <= std::min(i, S - 1); ++j) p[i * S + j] = 1;
  return m;
}

}  // namespace attn
