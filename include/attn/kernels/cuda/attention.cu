// Fused scaled dot-product attention in the FlashAttention style, and windowed (band) attention.
//
// Forward (row groups of lanes over query rows, below; blocks of rows of one (batch, head) item):
// keys and values are streamed through shared memory in tiles; per tile each row computes its
// scores in registers, takes the tile's max, rescales its running sum l and output row once when
// the running max m grows (online softmax), and adds p_j v_j, so the L x S score matrix is never
// stored. It saves lse = m + log l per row.
// Backward recomputes P_ij = exp(s_ij - lse_i) from the saved lse:
//   D_i  = dO_i . O_i (+ sum_j W'_ij dW_ij when the weights' gradient is given)
//   dP_ij = (dO_i . V_j + dW_ij) * keep_ij / (1 - p)      (dropout; keep = 1, p = 0 without it)
//   dS_ij = P_ij (dP_ij - D_i)
//   dQ_i = scale sum_j dS_ij K_j          (kernel over query rows, tiles of keys)
//   dK_j = scale sum_i dS_ij Q_i,  dV_j = sum_i P_ij keep_ij/(1-p) dO_i   (kernel over key rows)
// Measured on an H100 (bench/cuda_attention, docs/cuda.md): the one-thread-per-row kernels with
// rows in shared memory ran at 2.7 TFLOP/s forward and 1.2 fwd+bwd; these keep rows in registers.
// Each result element is written by one lane after a fixed-order loop: no atomics, and the
// same results for any launch. A query that sees no key (lse = -inf) gets O = 0 and dQ = 0, and
// contributes nothing to dK/dV.
#include <cmath>
#include <string>
#include <type_traits>
#include "attention.cuh"

namespace attn::kernels::cuda {
using detail::attn_score;
using detail::dropout_keep;

namespace {
// Row groups. A row (a query row in the forward and dQ kernels, a key row in the dK/dV kernel) of
// up to 256 columns is held in registers by TPR = 1, 2, 4 or 8 adjacent lanes, 32 columns each
// (columns past E or Ev are zero); a dot product is each lane's partial sum followed by a
// butterfly of TPR lanes. A block of kThreads threads covers kThreads / TPR rows. Streamed tiles of
// kTile rows sit in shared memory with each lane's 32-column part padded to kPart floats, so the
// TPR lanes of a group read their parts from different banks.
constexpr int kThreads = 128;
constexpr int kCols = 32;  // columns per lane
template <int TPR>
constexpr int kTile = TPR == 8 ? 16 : 32;  // rows per streamed tile (two tiles stay within 48 KB)
constexpr int kPart = 36;  // floats per 32-column part in a tile row (padding against bank conflicts)

__device__ inline const float* row_ptr(const float* base, Layout l, int64_t b, int64_t h, int64_t r) {
  return base + l.off + b * l.sb + h * l.sh + r * l.ld;
}
__device__ inline float* row_ptr(float* base, Layout l, int64_t b, int64_t h, int64_t r) {
  return base + l.off + b * l.sb + h * l.sh + r * l.ld;
}

// This lane's 32 columns (part `part`) of row r of an operand with `cols` columns; zero past cols.
__device__ inline void load_part(float (&dst)[kCols], const float* src, Layout l, int64_t b, int64_t h, int64_t r,
                                 int part, int64_t cols) {
  const float* row = row_ptr(src, l, b, h, r);
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    const int64_t col = int64_t(part) * kCols + c;
    dst[c] = col < cols ? row[col] : 0.f;
  }
}

// Rows [r0, r0 + n) of an operand into a tile of kTile<TPR> rows x TPR parts (zero past cols and n).
template <int TPR>
__device__ inline void load_tile(float* tile, const float* src, Layout l, int64_t b, int64_t h, int64_t r0, int64_t n,
                                 int64_t cols) {
  constexpr int W = TPR * kCols;
  for (int x = threadIdx.x; x < kTile<TPR> * W; x += blockDim.x) {
    const int rr = x / W, col = x % W;
    tile[rr * TPR * kPart + (col / kCols) * kPart + col % kCols] =
        rr < n && col < cols ? row_ptr(src, l, b, h, r0 + rr)[col] : 0.f;
  }
}
template <int TPR>
__device__ inline const float* tile_part(const float* tile, int rr, int part) {
  return tile + rr * TPR * kPart + part * kPart;
}

// Partial dot product of this lane's 32 columns, summed over the TPR lanes of its row group.
template <int TPR>
__device__ inline float group_dot(const float (&a)[kCols], const float* b) {
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < kCols; c += 4) {
    const float4 v = *reinterpret_cast<const float4*>(b + c);
    s += a[c] * v.x + a[c + 1] * v.y + a[c + 2] * v.z + a[c + 3] * v.w;
  }
#pragma unroll
  for (int off = TPR / 2; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}
// acc += w * b over this lane's 32 columns.
__device__ inline void axpy(float (&acc)[kCols], float w, const float* b) {
#pragma unroll
  for (int c = 0; c < kCols; c += 4) {
    const float4 v = *reinterpret_cast<const float4*>(b + c);
    acc[c] += w * v.x;
    acc[c + 1] += w * v.y;
    acc[c + 2] += w * v.z;
    acc[c + 3] += w * v.w;
  }
}
__device__ inline void store_part(float* dst_row, const float (&src)[kCols], int part, int64_t cols) {
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    const int64_t col = int64_t(part) * kCols + c;
    if (col < cols) dst_row[col] = src[c];
  }
}

// Grid: (items, row blocks); the row of this thread's group and its part. Rows past `n` are
// clamped to the last row (they compute with everyone, for the shuffles, and store nothing).
template <int TPR>
struct RowSlot {
  int64_t r;
  int part;
  bool active;
  __device__ RowSlot(int64_t n) {
    r = int64_t(blockIdx.y) * (kThreads / TPR) + threadIdx.x / TPR;
    part = threadIdx.x % TPR;
    active = r < n;
    if (!active) r = n - 1;
  }
};

// Forward. Per tile: the scores of the kTile<TPR> keys (in registers), the tile's max, one rescale of
// the running sum l and the output row, then o += p_j v_j (online softmax; O = o / l at the end).
template <int TPR>
__global__ void __launch_bounds__(kThreads) sdpa_fwd_k(AttnParams p, const float* Q, Layout lq, const float* K,
                                                       Layout lk, const float* V, Layout lv, float* O, Layout lo,
                                                       float* lse) {
  __shared__ __align__(16) float ks[kTile<TPR> * TPR * kPart];
  __shared__ __align__(16) float vs[kTile<TPR> * TPR * kPart];
  const int64_t it = blockIdx.x, b = it / p.H, h = it % p.H;
  const RowSlot<TPR> slot(p.L);
  const int64_t i = slot.r;
  float q[kCols], o[kCols];
  load_part(q, Q, lq, b, h, i, slot.part, p.E);
#pragma unroll
  for (int c = 0; c < kCols; ++c) o[c] = 0.f;
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  // causal: no query of this block sees keys past its last row
  const int64_t last_row = int64_t(blockIdx.y + 1) * (kThreads / TPR) - 1;
  const int64_t kend = p.causal ? (last_row + 1 < p.S ? last_row + 1 : p.S) : p.S;
  float m = -INFINITY, l = 0.f;
  for (int64_t j0 = 0; j0 < kend; j0 += kTile<TPR>) {
    const int64_t nk = kend - j0 < kTile<TPR> ? kend - j0 : kTile<TPR>;
    __syncthreads();  // previous tile fully consumed
    load_tile<TPR>(ks, K, lk, b, h, j0, nk, p.E);
    load_tile<TPR>(vs, V, lv, b, h, j0, nk, p.Ev);
    __syncthreads();
    float s[kTile<TPR>];
    float tmax = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kTile<TPR>; ++jj) {
      const float dot = group_dot<TPR>(q, tile_part<TPR>(ks, jj, slot.part));
      float add;
      s[jj] = -INFINITY;
      if (jj < nk && detail::attn_visible(p, it, b, i, j0 + jj, add)) s[jj] = p.scale * dot + add;
      tmax = fmaxf(tmax, s[jj]);
    }
    if (tmax == -INFINITY) continue;  // nothing visible in this tile
    if (tmax > m) {  // new running max: rescale what was accumulated (exp(-inf) = 0 at the start)
      const float corr = expf(m - tmax);
      l *= corr;
#pragma unroll
      for (int c = 0; c < kCols; ++c) o[c] *= corr;
      m = tmax;
    }
#pragma unroll
    for (int jj = 0; jj < kTile<TPR>; ++jj) {
      if (s[jj] == -INFINITY) continue;
      const float pj = expf(s[jj] - m);
      l += pj;
      float pw = pj;
      if (p.dropout_p > 0.0)
        pw = dropout_keep(p.dropout_seed, uint64_t((it * p.L + i) * p.S + j0 + jj), p.dropout_p) ? pj * keep_scale
                                                                                              : 0.f;
      if (pw != 0.f) axpy(o, pw, tile_part<TPR>(vs, jj, slot.part));
    }
  }
  if (!slot.active) return;
  if (l == 0.f) {  // no visible key: zero output
#pragma unroll
    for (int c = 0; c < kCols; ++c) o[c] = 0.f;
  } else {
    const float inv = 1.f / l;
#pragma unroll
    for (int c = 0; c < kCols; ++c) o[c] *= inv;
  }
  store_part(row_ptr(O, lo, b, h, i), o, slot.part, p.Ev);
  if (slot.part == 0) lse[it * p.L + i] = l == 0.f ? -INFINITY : m + logf(l);
}

// One thread per (item, i, j): W_ij = exp(s_ij - lse_i) (0 when not visible), optionally dropped.
__global__ void sdpa_weights_k(AttnParams p, const float* Q, Layout lq, const float* K, Layout lk, const float* lse,
                               float* W, bool dropped) {
  const int64_t total = p.B * p.H * p.L * p.S;
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  ATTN_GRID_STRIDE(x, total) {
    const int64_t j = x % p.S, i = (x / p.S) % p.L, it = x / (p.S * p.L), b = it / p.H, h = it % p.H;
    const float li = lse[it * p.L + i];
    float s, w = 0.f;
    if (li != -INFINITY && attn_score(p, row_ptr(Q, lq, b, h, i), row_ptr(K, lk, b, h, j), it, b, i, j, s))
      w = expf(s - li);
    if (dropped && p.dropout_p > 0.0)
      w = dropout_keep(p.dropout_seed, uint64_t(x), p.dropout_p) ? w * keep_scale : 0.f;
    W[x] = w;
  }
}

// D_i = dO_i . O_i (+ sum_j W'_ij dW_ij): one thread per (item, i).
__global__ void sdpa_delta_k(AttnParams p, const float* Q, Layout lq, const float* K, Layout lk, const float* O,
                             const float* dO, Layout lo, const float* lse, const float* dW, float* Dout) {
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  ATTN_GRID_STRIDE(x, p.B * p.H * p.L) {
    const int64_t i = x % p.L, it = x / p.L, b = it / p.H, h = it % p.H;
    const float* o = row_ptr(O, lo, b, h, i);
    const float* g = row_ptr(dO, lo, b, h, i);
    float d = 0.f;
    for (int64_t c = 0; c < p.Ev; ++c) d += g[c] * o[c];
    const float li = lse[x];
    if (dW && li != -INFINITY) {
      const float* q = row_ptr(Q, lq, b, h, i);
      for (int64_t j = 0; j < p.S; ++j) {
        float s;
        if (!attn_score(p, q, row_ptr(K, lk, b, h, j), it, b, i, j, s)) continue;
        float w = expf(s - li);
        const uint64_t idx = uint64_t(x * p.S + j);
        if (p.dropout_p > 0.0) w = dropout_keep(p.dropout_seed, idx, p.dropout_p) ? w * keep_scale : 0.f;
        d += w * dW[x * p.S + j];
      }
    }
    Dout[x] = d;
  }
}

// The backward's per-pair quantities: dS_ij * scale from s_ij (visible), dP_ij = dO_i . V_j.
__device__ inline float dscore(const AttnParams& p, float P, float dp, float Di, const float* dW, uint64_t idx,
                               float keep_scale) {
  if (dW) dp += dW[idx];
  if (p.dropout_p > 0.0) dp = dropout_keep(p.dropout_seed, idx, p.dropout_p) ? dp * keep_scale : 0.f;
  return P * (dp - Di) * p.scale;
}

// dQ_i = scale sum_j dS_ij K_j: row groups over query rows, key tiles streamed.
template <int TPR>
__global__ void __launch_bounds__(kThreads) sdpa_bwd_dq_k(AttnParams p, const float* Q, Layout lq, const float* K,
                                                          Layout lk, const float* V, Layout lv, const float* dO,
                                                          Layout lo, const float* lse, const float* Dv,
                                                          const float* dW, float* dQ) {
  __shared__ __align__(16) float ks[kTile<TPR> * TPR * kPart];
  __shared__ __align__(16) float vs[kTile<TPR> * TPR * kPart];
  const int64_t it = blockIdx.x, b = it / p.H, h = it % p.H;
  const RowSlot<TPR> slot(p.L);
  const int64_t i = slot.r;
  float q[kCols], g[kCols], dq[kCols];
  load_part(q, Q, lq, b, h, i, slot.part, p.E);
  load_part(g, dO, lo, b, h, i, slot.part, p.Ev);
#pragma unroll
  for (int c = 0; c < kCols; ++c) dq[c] = 0.f;
  const float li = lse[it * p.L + i], Di = Dv[it * p.L + i];
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  const int64_t last_row = int64_t(blockIdx.y + 1) * (kThreads / TPR) - 1;
  const int64_t kend = p.causal ? (last_row + 1 < p.S ? last_row + 1 : p.S) : p.S;
  for (int64_t j0 = 0; j0 < kend; j0 += kTile<TPR>) {
    const int64_t nk = kend - j0 < kTile<TPR> ? kend - j0 : kTile<TPR>;
    __syncthreads();
    load_tile<TPR>(ks, K, lk, b, h, j0, nk, p.E);
    load_tile<TPR>(vs, V, lv, b, h, j0, nk, p.Ev);
    __syncthreads();
#pragma unroll 4
    for (int jj = 0; jj < kTile<TPR>; ++jj) {
      const float* kj = tile_part<TPR>(ks, jj, slot.part);
      const float dot = group_dot<TPR>(q, kj);
      const float dp = group_dot<TPR>(g, tile_part<TPR>(vs, jj, slot.part));
      const int64_t j = j0 + jj;
      float add;
      if (jj >= nk || li == -INFINITY || !detail::attn_visible(p, it, b, i, j, add)) continue;
      const float s = p.scale * dot + add;
      if (s == -INFINITY) continue;
      const float ds = dscore(p, expf(s - li), dp, Di, dW, uint64_t((it * p.L + i) * p.S + j), keep_scale);
      axpy(dq, ds, kj);
    }
  }
  if (slot.active) store_part(row_ptr(dQ, lq, b, h, i), dq, slot.part, p.E);
}

// dK_j = scale sum_i dS_ij Q_i, dV_j = sum_i P_ij keep_ij / (1 - p) dO_i: row groups over key
// rows, tiles of query rows (Q, dO, lse, D) streamed.
template <int TPR>
__global__ void __launch_bounds__(kThreads) sdpa_bwd_dkv_k(AttnParams p, const float* Q, Layout lq, const float* K,
                                                           Layout lk, const float* V, Layout lv, const float* dO,
                                                           Layout lo, const float* lse, const float* Dv,
                                                           const float* dW, float* dK, float* dV) {
  __shared__ __align__(16) float qt[kTile<TPR> * TPR * kPart];
  __shared__ __align__(16) float gt[kTile<TPR> * TPR * kPart];
  __shared__ float lt[kTile<TPR>], dt[kTile<TPR>];
  const int64_t it = blockIdx.x, b = it / p.H, h = it % p.H;
  const RowSlot<TPR> slot(p.S);
  const int64_t j = slot.r;
  float k[kCols], v[kCols], dk[kCols], dv[kCols];
  load_part(k, K, lk, b, h, j, slot.part, p.E);
  load_part(v, V, lv, b, h, j, slot.part, p.Ev);
#pragma unroll
  for (int c = 0; c < kCols; ++c) dk[c] = dv[c] = 0.f;
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  // causal: key j is seen only by queries i >= j; the block's first key bounds the first query
  const int64_t first_key = int64_t(blockIdx.y) * (kThreads / TPR);
  const int64_t istart = p.causal ? (first_key < p.L ? first_key : p.L) : 0;
  for (int64_t i0 = istart; i0 < p.L; i0 += kTile<TPR>) {
    const int64_t nq = p.L - i0 < kTile<TPR> ? p.L - i0 : kTile<TPR>;
    __syncthreads();
    load_tile<TPR>(qt, Q, lq, b, h, i0, nq, p.E);
    load_tile<TPR>(gt, dO, lo, b, h, i0, nq, p.Ev);
    for (int x = threadIdx.x; x < kTile<TPR>; x += blockDim.x) {
      lt[x] = x < nq ? lse[it * p.L + i0 + x] : -INFINITY;
      dt[x] = x < nq ? Dv[it * p.L + i0 + x] : 0.f;
    }
    __syncthreads();
#pragma unroll 4
    for (int ii = 0; ii < kTile<TPR>; ++ii) {
      const float* qi = tile_part<TPR>(qt, ii, slot.part);
      const float* gi = tile_part<TPR>(gt, ii, slot.part);
      const float dot = group_dot<TPR>(k, qi);
      const float dp = group_dot<TPR>(v, gi);
      const int64_t i = i0 + ii;
      const float li = lt[ii];
      float add;
      if (ii >= nq || li == -INFINITY || !detail::attn_visible(p, it, b, i, j, add)) continue;
      const float s = p.scale * dot + add;
      if (s == -INFINITY) continue;
      const float P = expf(s - li);
      const uint64_t idx = uint64_t((it * p.L + i) * p.S + j);
      const bool keep = p.dropout_p > 0.0 ? dropout_keep(p.dropout_seed, idx, p.dropout_p) : true;
      if (keep) axpy(dv, P * keep_scale, gi);
      axpy(dk, dscore(p, P, dp, dt[ii], dW, idx, keep_scale), qi);
    }
  }
  if (!slot.active) return;
  if (dK) store_part(row_ptr(dK, lk, b, h, j), dk, slot.part, p.E);
  if (dV) store_part(row_ptr(dV, lv, b, h, j), dv, slot.part, p.Ev);
}

void check_shape(const AttnParams& p, int64_t rows, int rows_per_block) {
  if (p.E > 8 * kCols || p.Ev > 8 * kCols)
    throw std::runtime_error("attn CUDA attention: head dims E = " + std::to_string(p.E) + ", Ev = " +
                             std::to_string(p.Ev) + " above " + std::to_string(8 * kCols) + " are not supported");
  if (p.B * p.H > 2147483647LL || (rows + rows_per_block - 1) / rows_per_block > 65535)
    throw std::runtime_error("attn CUDA attention: too many (batch, head) items or rows for one launch");
}
// Lanes per row: the smallest power of two with 32 * TPR >= max(E, Ev).
int lanes_per_row(const AttnParams& p) {
  const int64_t e = p.E > p.Ev ? p.E : p.Ev;
  int t = 1;
  while (t * kCols < e) t *= 2;
  return t;
}
// Calls f(std::integral_constant<int, TPR>) for this shape's TPR.
template <class F>
void with_tpr(const AttnParams& p, const F& f) {
  switch (lanes_per_row(p)) {
    case 1: return f(std::integral_constant<int, 1>());
    case 2: return f(std::integral_constant<int, 2>());
    case 4: return f(std::integral_constant<int, 4>());
    default: return f(std::integral_constant<int, 8>());
  }
}
dim3 grid_of(const AttnParams& p, int64_t rows, int tpr) {
  check_shape(p, rows, kThreads / tpr);
  const int rpb = kThreads / tpr;
  return dim3(unsigned(p.B * p.H), unsigned((rows + rpb - 1) / rpb));
}

}  // namespace

void attention_forward(const AttnParams& p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                       Layout lv, float* O, Layout lo, float* lse) {
  if (p.B * p.H <= 0 || p.L <= 0) return;
  with_tpr(p, [&](auto tpr) {
    sdpa_fwd_k<tpr()><<<grid_of(p, p.L, tpr()), kThreads>>>(p, Q, lq, K, lk, V, lv, O, lo, lse);
  });
  ATTN_CUDA_LAUNCH_CHECK("attention_forward");
}

void attention_weights(const AttnParams& p, const float* Q, Layout lq, const float* K, Layout lk, const float* lse,
                       float* W, bool dropped) {
  const int64_t total = p.B * p.H * p.L * p.S;
  if (total <= 0) return;
  sdpa_weights_k<<<detail::grid_for(total), 256>>>(p, Q, lq, K, lk, lse, W, dropped);
  ATTN_CUDA_LAUNCH_CHECK("attention_weights");
}

void attention_backward(const AttnParams& p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                        Layout lv, const float* O, const float* dO, Layout lo, const float* lse, const float* dW,
                        float* dQ, float* dK, float* dV, float* scratch) {
  if (p.B * p.H <= 0) return;
  if (p.L > 0) {
    sdpa_delta_k<<<detail::grid_for(p.B * p.H * p.L), 256>>>(p, Q, lq, K, lk, O, dO, lo, lse, dW, scratch);
    ATTN_CUDA_LAUNCH_CHECK("attention_backward(delta)");
  }
  with_tpr(p, [&](auto tpr) {
    if (dQ && p.L > 0) {
      sdpa_bwd_dq_k<tpr()><<<grid_of(p, p.L, tpr()), kThreads>>>(p, Q, lq, K, lk, V, lv, dO, lo, lse, scratch, dW, dQ);
      ATTN_CUDA_LAUNCH_CHECK("attention_backward(dQ)");
    }
    if ((dK || dV) && p.S > 0) {
      sdpa_bwd_dkv_k<tpr()><<<grid_of(p, p.S, tpr()), kThreads>>>(p, Q, lq, K, lk, V, lv, dO, lo, lse, scratch, dW,
                                                                  dK, dV);
      ATTN_CUDA_LAUNCH_CHECK("attention_backward(dK, dV)");
    }
  });
}

// ---------------- windowed / block-local band attention ----------------
namespace {
__device__ inline int64_t band_base(const BandParams& p, int64_t i) {
  return p.block_mode ? (i / p.block) * p.block : i - p.left;
}
__device__ inline void band_range(const BandParams& p, int64_t i, int64_t& lo, int64_t& hi) {
  const int64_t b = band_base(p, i);
  lo = b > 0 ? b : 0;
  hi = b + p.W < p.S ? b + p.W : p.S;
  if (p.causal && hi > i + 1) hi = i + 1;
  if (hi < lo) hi = lo;
}
__device__ inline void band_queries(const BandParams& p, int64_t j, int64_t& qlo, int64_t& qhi) {
  if (p.block_mode) {
    qlo = (j / p.block) * p.block;
    qhi = qlo + p.block < p.L ? qlo + p.block : p.L;
  } else {
    qlo = j - p.right > 0 ? j - p.right : 0;
    qhi = j + p.left + 1 < p.L ? j + p.left + 1 : p.L;
  }
  if (p.causal && qlo < j) qlo = j;
  if (qhi < qlo) qhi = qlo;
}

// one thread per query row r = n*L + i (the formulas of ops/windowed_attention.hpp's band_forward)
__global__ void band_fwd_k(BandParams p, const float* Q, const float* K, const float* V, float* O, float* P) {
  ATTN_GRID_STRIDE(r, p.N * p.L) {
    const int64_t n = r / p.L, i = r % p.L;
    const float* q = Q + r * p.E;
    const uint8_t* pad = p.kpm ? p.kpm + (n / p.kpm_div) * p.S : nullptr;
    const float* br = p.bias ? p.bias + (n % p.bias_rows) * p.W : nullptr;
    float* pr = P + r * p.W;
    float* o = O + r * p.Ev;
    for (int64_t w = 0; w < p.W; ++w) pr[w] = 0.f;
    for (int64_t c = 0; c < p.Ev; ++c) o[c] = 0.f;
    int64_t lo, hi;
    band_range(p, i, lo, hi);
    const int64_t b = band_base(p, i);
    float m = -INFINITY;
    for (int64_t j = lo; j < hi; ++j) {
      if (pad && pad[j]) continue;
      const float* k = K + (n * p.S + j) * p.E;
      float dot = 0.f;
      for (int64_t e = 0; e < p.E; ++e) dot += q[e] * k[e];
      const float s = p.scale * dot + (br ? br[j - b] : 0.f);
      pr[j - b] = s;
      m = fmaxf(m, s);
    }
    if (m == -INFINITY) {  // nothing to attend: zeros
      for (int64_t w = 0; w < p.W; ++w) pr[w] = 0.f;
      continue;
    }
    float sum = 0.f;
    for (int64_t j = lo; j < hi; ++j) {
      if (pad && pad[j]) continue;
      const float e = expf(pr[j - b] - m);
      pr[j - b] = e;
      sum += e;
    }
    const float inv = 1.f / sum;
    for (int64_t j = lo; j < hi; ++j) pr[j - b] *= inv;
    for (int64_t j = lo; j < hi; ++j) {
      const float w = pr[j - b];
      if (w == 0.f) continue;
      const float* v = V + (n * p.S + j) * p.Ev;
      for (int64_t c = 0; c < p.Ev; ++c) o[c] += w * v[c];
    }
  }
}

// pass 1, one thread per query row: ds = p (gw~ - p . gw~), gq = scale sum ds k
__global__ void band_bwd_rows_k(BandParams p, const float* K, const float* V, const float* P, const float* G,
                                const float* GW, float* gQ, float* DS) {
  ATTN_GRID_STRIDE(r, p.N * p.L) {
    const int64_t n = r / p.L, i = r % p.L;
    const float* pr = P + r * p.W;
    float* ds = DS + r * p.W;
    float* gq = gQ + r * p.E;
    for (int64_t w = 0; w < p.W; ++w) ds[w] = 0.f;
    for (int64_t e = 0; e < p.E; ++e) gq[e] = 0.f;
    int64_t lo, hi;
    band_range(p, i, lo, hi);
    const int64_t b = band_base(p, i);
    const float* g = G ? G + r * p.Ev : nullptr;
    for (int64_t j = lo; j < hi; ++j) {
      float d = 0.f;
      if (g) {
        const float* v = V + (n * p.S + j) * p.Ev;
        for (int64_t c = 0; c < p.Ev; ++c) d += v[c] * g[c];
      }
      if (GW) d += GW[r * p.W + (j - b)];
      ds[j - b] = d;
    }
    float dot = 0.f;
    for (int64_t j = lo; j < hi; ++j) dot += pr[j - b] * ds[j - b];
    for (int64_t j = lo; j < hi; ++j) ds[j - b] = pr[j - b] * (ds[j - b] - dot);
    for (int64_t j = lo; j < hi; ++j) {
      const float c = p.scale * ds[j - b];
      const float* k = K + (n * p.S + j) * p.E;
      for (int64_t e = 0; e < p.E; ++e) gq[e] += c * k[e];
    }
  }
}

// pass 2, one thread per key row: gather from the queries whose window holds the key
__global__ void band_bwd_keys_k(BandParams p, const float* Q, const float* P, const float* G, const float* DS,
                                float* gK, float* gV) {
  ATTN_GRID_STRIDE(r, p.N * p.S) {
    const int64_t n = r / p.S, j = r % p.S;
    float* gk = gK + r * p.E;
    float* gv = gV + r * p.Ev;
    for (int64_t e = 0; e < p.E; ++e) gk[e] = 0.f;
    for (int64_t c = 0; c < p.Ev; ++c) gv[c] = 0.f;
    int64_t qlo, qhi;
    band_queries(p, j, qlo, qhi);
    for (int64_t i = qlo; i < qhi; ++i) {
      int64_t lo, hi;
      band_range(p, i, lo, hi);
      if (j < lo || j >= hi) continue;
      const int64_t o = j - band_base(p, i), row = n * p.L + i;
      const float d = DS[row * p.W + o], w = P[row * p.W + o];
      if (d != 0.f) {
        const float* qi = Q + row * p.E;
        const float c = p.scale * d;
        for (int64_t e = 0; e < p.E; ++e) gk[e] += c * qi[e];
      }
      if (G && w != 0.f) {
        const float* gi = G + row * p.Ev;
        for (int64_t c = 0; c < p.Ev; ++c) gv[c] += w * gi[c];
      }
    }
  }
}

// pass 3, one thread per (h, o): gbias[h, o] = sum over n = h (mod rows), i of DS[n, i, o]
__global__ void band_bwd_bias_k(BandParams p, const float* DS, float* gB) {
  ATTN_GRID_STRIDE(c, p.bias_rows * p.W) {
    const int64_t h = c / p.W, o = c % p.W;
    float acc = 0.f;
    for (int64_t n = h; n < p.N; n += p.bias_rows)
      for (int64_t i = 0; i < p.L; ++i) acc += DS[(n * p.L + i) * p.W + o];
    gB[c] = acc;
  }
}
}  // namespace

void band_forward(const BandParams& p, const float* Q, const float* K, const float* V, float* O, float* P) {
  if (p.N * p.L <= 0) return;
  band_fwd_k<<<detail::grid_for(p.N * p.L, 128), 128>>>(p, Q, K, V, O, P);
  ATTN_CUDA_LAUNCH_CHECK("band_forward");
}

void band_backward(const BandParams& p, const float* Q, const float* K, const float* V, const float* P,
                   const float* G, const float* GW, float* gQ, float* gK, float* gV, float* gB, float* DS) {
  if (p.N * p.L > 0) {
    band_bwd_rows_k<<<detail::grid_for(p.N * p.L, 128), 128>>>(p, K, V, P, G, GW, gQ, DS);
    ATTN_CUDA_LAUNCH_CHECK("band_backward(rows)");
  }
  if (p.N * p.S > 0) {
    band_bwd_keys_k<<<detail::grid_for(p.N * p.S, 128), 128>>>(p, Q, P, G, DS, gK, gV);
    ATTN_CUDA_LAUNCH_CHECK("band_backward(keys)");
  }
  if (gB && p.bias_rows * p.W > 0) {
    band_bwd_bias_k<<<detail::grid_for(p.bias_rows * p.W, 128), 128>>>(p, DS, gB);
    ATTN_CUDA_LAUNCH_CHECK("band_backward(bias)");
  }
}

}  // namespace attn::kernels::cuda
