// Fused scaled dot-product attention in the FlashAttention style, and windowed (band) attention.
//
// Forward (one thread per query row, blocks of kRows rows of one (batch, head) item): keys and
// values are streamed through shared memory in tiles of kKeys; each thread keeps a running max m,
// a running sum l and its output row (in shared memory), rescaling them when m grows (online
// softmax), so the L x S score matrix is never stored. It saves lse = m + log l per row.
// Backward recomputes P_ij = exp(s_ij - lse_i) from the saved lse:
//   D_i  = dO_i . O_i (+ sum_j W'_ij dW_ij when the weights' gradient is given)
//   dP_ij = (dO_i . V_j + dW_ij) * keep_ij / (1 - p)      (dropout; keep = 1, p = 0 without it)
//   dS_ij = P_ij (dP_ij - D_i)
//   dQ_i = scale sum_j dS_ij K_j          (kernel over query rows, tiles of keys)
//   dK_j = scale sum_i dS_ij Q_i,  dV_j = sum_i P_ij keep_ij/(1-p) dO_i   (kernel over key rows)
// Each result element is written by one thread after a fixed-order loop: no atomics, and the
// same results for any launch. A query that sees no key (lse = -inf) gets O = 0 and dQ = 0, and
// contributes nothing to dK/dV.
#include <cmath>
#include "attention.cuh"

namespace attn::kernels::cuda {
using detail::attn_score;
using detail::dropout_keep;

namespace {
constexpr int kRows = 64;  // query (or key) rows per block, one per thread
constexpr int kKeys = 32;  // rows per streamed tile

__device__ inline const float* row_ptr(const float* base, Layout l, int64_t b, int64_t h, int64_t r) {
  return base + l.off + b * l.sb + h * l.sh + r * l.ld;
}
__device__ inline float* row_ptr(float* base, Layout l, int64_t b, int64_t h, int64_t r) {
  return base + l.off + b * l.sb + h * l.sh + r * l.ld;
}

// Loads rows [r0, r0 + n) of an operand (cols columns) into dst[n][cols], all threads cooperating.
__device__ inline void load_tile(float* dst, const float* src, Layout l, int64_t b, int64_t h, int64_t r0, int64_t n,
                                 int64_t cols) {
  for (int64_t x = threadIdx.x; x < n * cols; x += blockDim.x) dst[x] = row_ptr(src, l, b, h, r0 + x / cols)[x % cols];
}

// grid: (items, query blocks); block: kRows threads.
// smem: q rows [kRows][E+1], o rows [kRows][Ev+1], K tile [kKeys][E], V tile [kKeys][Ev]
__global__ void sdpa_fwd_k(AttnParams p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                           Layout lv, float* O, Layout lo, float* lse) {
  extern __shared__ float smem[];
  const int64_t E = p.E, Ev = p.Ev;
  float* qs = smem;
  float* os = qs + kRows * (E + 1);
  float* ks = os + kRows * (Ev + 1);
  float* vs = ks + kKeys * E;
  const int64_t it = blockIdx.x, b = it / p.H, h = it % p.H;
  const int64_t i = int64_t(blockIdx.y) * kRows + threadIdx.x;
  const bool active = i < p.L;
  float* qi = qs + threadIdx.x * (E + 1);
  float* oi = os + threadIdx.x * (Ev + 1);
  if (active) {
    const float* q = row_ptr(Q, lq, b, h, i);
    for (int64_t e = 0; e < E; ++e) qi[e] = q[e];
    for (int64_t c = 0; c < Ev; ++c) oi[c] = 0.f;
  }
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  // causal: no query of this block sees keys past its last row
  const int64_t last_row = int64_t(blockIdx.y) * kRows + kRows - 1;
  const int64_t kend = p.causal ? (last_row + 1 < p.S ? last_row + 1 : p.S) : p.S;
  float m = -INFINITY, l = 0.f;
  for (int64_t j0 = 0; j0 < kend; j0 += kKeys) {
    const int64_t nk = kend - j0 < kKeys ? kend - j0 : kKeys;
    __syncthreads();  // previous tile fully consumed
    load_tile(ks, K, lk, b, h, j0, nk, E);
    load_tile(vs, V, lv, b, h, j0, nk, Ev);
    __syncthreads();
    if (!active) continue;
    for (int64_t jj = 0; jj < nk; ++jj) {
      const int64_t j = j0 + jj;
      float s;
      if (!attn_score(p, qi, ks + jj * E, it, b, i, j, s)) continue;
      if (s > m) {  // new running max: rescale what was accumulated (exp(-inf) = 0 on the first key)
        const float corr = expf(m - s);
        l *= corr;
        for (int64_t c = 0; c < Ev; ++c) oi[c] *= corr;
        m = s;
      }
      const float pj = expf(s - m);
      l += pj;
      float pw = pj;
      if (p.dropout_p > 0.0)
        pw = dropout_keep(p.dropout_seed, uint64_t((it * p.L + i) * p.S + j), p.dropout_p) ? pj * keep_scale : 0.f;
      if (pw != 0.f)
        for (int64_t c = 0; c < Ev; ++c) oi[c] += pw * vs[jj * Ev + c];
    }
  }
  if (!active) return;
  float* o = row_ptr(O, lo, b, h, i);
  if (l == 0.f) {  // no visible key: zero output
    for (int64_t c = 0; c < Ev; ++c) o[c] = 0.f;
    lse[it * p.L + i] = -INFINITY;
    return;
  }
  const float inv = 1.f / l;
  for (int64_t c = 0; c < Ev; ++c) o[c] = oi[c] * inv;
  lse[it * p.L + i] = m + logf(l);
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

// dQ: grid (items, query blocks), kRows threads, one query row each.
// smem: q [kRows][E+1], dO [kRows][Ev+1], dq [kRows][E+1], K tile [kKeys][E], V tile [kKeys][Ev]
__global__ void sdpa_bwd_dq_k(AttnParams p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                              Layout lv, const float* dO, Layout lo, const float* lse, const float* Dv,
                              const float* dW, float* dQ) {
  extern __shared__ float smem[];
  const int64_t E = p.E, Ev = p.Ev;
  float* qs = smem;
  float* gs = qs + kRows * (E + 1);
  float* dqs = gs + kRows * (Ev + 1);
  float* ks = dqs + kRows * (E + 1);
  float* vs = ks + kKeys * E;
  const int64_t it = blockIdx.x, b = it / p.H, h = it % p.H;
  const int64_t i = int64_t(blockIdx.y) * kRows + threadIdx.x;
  const bool active = i < p.L;
  float* qi = qs + threadIdx.x * (E + 1);
  float* gi = gs + threadIdx.x * (Ev + 1);
  float* dqi = dqs + threadIdx.x * (E + 1);
  float li = -INFINITY, Di = 0.f;
  if (active) {
    const float* q = row_ptr(Q, lq, b, h, i);
    const float* g = row_ptr(dO, lo, b, h, i);
    for (int64_t e = 0; e < E; ++e) {
      qi[e] = q[e];
      dqi[e] = 0.f;
    }
    for (int64_t c = 0; c < Ev; ++c) gi[c] = g[c];
    li = lse[it * p.L + i];
    Di = Dv[it * p.L + i];
  }
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  const int64_t last_row = int64_t(blockIdx.y) * kRows + kRows - 1;
  const int64_t kend = p.causal ? (last_row + 1 < p.S ? last_row + 1 : p.S) : p.S;
  for (int64_t j0 = 0; j0 < kend; j0 += kKeys) {
    const int64_t nk = kend - j0 < kKeys ? kend - j0 : kKeys;
    __syncthreads();
    load_tile(ks, K, lk, b, h, j0, nk, E);
    load_tile(vs, V, lv, b, h, j0, nk, Ev);
    __syncthreads();
    if (!active || li == -INFINITY) continue;
    for (int64_t jj = 0; jj < nk; ++jj) {
      const int64_t j = j0 + jj;
      float s;
      if (!attn_score(p, qi, ks + jj * E, it, b, i, j, s)) continue;
      const float P = expf(s - li);
      float dp = 0.f;
      for (int64_t c = 0; c < Ev; ++c) dp += gi[c] * vs[jj * Ev + c];
      const uint64_t idx = uint64_t((it * p.L + i) * p.S + j);
      if (dW) dp += dW[idx];
      if (p.dropout_p > 0.0) dp = dropout_keep(p.dropout_seed, idx, p.dropout_p) ? dp * keep_scale : 0.f;
      const float ds = P * (dp - Di) * p.scale;
      for (int64_t e = 0; e < E; ++e) dqi[e] += ds * ks[jj * E + e];
    }
  }
  if (!active) return;
  float* dq = row_ptr(dQ, lq, b, h, i);
  for (int64_t e = 0; e < E; ++e) dq[e] = dqi[e];
}

// dK, dV: grid (items, key blocks), kRows threads, one key row each; query rows streamed in tiles.
// smem: k [kRows][E+1], v [kRows][Ev+1], dk [kRows][E+1], dv [kRows][Ev+1],
//       Q tile [kKeys][E], dO tile [kKeys][Ev], lse tile [kKeys], D tile [kKeys]
__global__ void sdpa_bwd_dkv_k(AttnParams p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                               Layout lv, const float* dO, Layout lo, const float* lse, const float* Dv,
                               const float* dW, float* dK, float* dV) {
  extern __shared__ float smem[];
  const int64_t E = p.E, Ev = p.Ev;
  float* kr = smem;
  float* vr = kr + kRows * (E + 1);
  float* dkr = vr + kRows * (Ev + 1);
  float* dvr = dkr + kRows * (E + 1);
  float* qt = dvr + kRows * (Ev + 1);
  float* gt = qt + kKeys * E;
  float* lt = gt + kKeys * Ev;
  float* dt = lt + kKeys;
  const int64_t it = blockIdx.x, b = it / p.H, h = it % p.H;
  const int64_t j = int64_t(blockIdx.y) * kRows + threadIdx.x;
  const bool active = j < p.S;
  float* kj = kr + threadIdx.x * (E + 1);
  float* vj = vr + threadIdx.x * (Ev + 1);
  float* dkj = dkr + threadIdx.x * (E + 1);
  float* dvj = dvr + threadIdx.x * (Ev + 1);
  if (active) {
    const float* k = row_ptr(K, lk, b, h, j);
    const float* v = row_ptr(V, lv, b, h, j);
    for (int64_t e = 0; e < E; ++e) {
      kj[e] = k[e];
      dkj[e] = 0.f;
    }
    for (int64_t c = 0; c < Ev; ++c) {
      vj[c] = v[c];
      dvj[c] = 0.f;
    }
  }
  const float keep_scale = p.dropout_p > 0.0 ? float(1.0 / (1.0 - p.dropout_p)) : 1.f;
  // causal: key j is seen only by queries i >= j; the block's first key bounds the first query
  const int64_t first_key = int64_t(blockIdx.y) * kRows;
  const int64_t istart = p.causal ? (first_key < p.L ? first_key : p.L) : 0;
  for (int64_t i0 = istart; i0 < p.L; i0 += kKeys) {
    const int64_t nq = p.L - i0 < kKeys ? p.L - i0 : kKeys;
    __syncthreads();
    load_tile(qt, Q, lq, b, h, i0, nq, E);
    load_tile(gt, dO, lo, b, h, i0, nq, Ev);
    for (int64_t x = threadIdx.x; x < nq; x += blockDim.x) {
      lt[x] = lse[it * p.L + i0 + x];
      dt[x] = Dv[it * p.L + i0 + x];
    }
    __syncthreads();
    if (!active) continue;
    for (int64_t ii = 0; ii < nq; ++ii) {
      const int64_t i = i0 + ii;
      const float li = lt[ii];
      if (li == -INFINITY) continue;
      float s;
      if (!attn_score(p, qt + ii * E, kj, it, b, i, j, s)) continue;
      const float P = expf(s - li);
      const uint64_t idx = uint64_t((it * p.L + i) * p.S + j);
      const bool keep = p.dropout_p > 0.0 ? dropout_keep(p.dropout_seed, idx, p.dropout_p) : true;
      const float* g = gt + ii * Ev;
      const float pd = keep ? P * keep_scale : 0.f;
      float dp = 0.f;
      for (int64_t c = 0; c < Ev; ++c) {
        dp += g[c] * vj[c];
        if (pd != 0.f) dvj[c] += pd * g[c];
      }
      if (dW) dp += dW[idx];
      dp = keep ? dp * keep_scale : 0.f;
      const float ds = P * (dp - dt[ii]) * p.scale;
      for (int64_t e = 0; e < E; ++e) dkj[e] += ds * qt[ii * E + e];
    }
  }
  if (!active) return;
  if (dK) {
    float* dk = row_ptr(dK, lk, b, h, j);
    for (int64_t e = 0; e < E; ++e) dk[e] = dkj[e];
  }
  if (dV) {
    float* dv = row_ptr(dV, lv, b, h, j);
    for (int64_t c = 0; c < Ev; ++c) dv[c] = dvj[c];
  }
}

void check_grid(const AttnParams& p, int64_t rows) {
  if (p.B * p.H > 2147483647LL || (rows + kRows - 1) / kRows > 65535)
    throw std::runtime_error("attn CUDA attention: too many (batch, head) items or rows for one launch");
}

}  // namespace

void attention_forward(const AttnParams& p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                       Layout lv, float* O, Layout lo, float* lse) {
  const int64_t items = p.B * p.H;
  if (items <= 0 || p.L <= 0) return;
  check_grid(p, p.L);
  const size_t smem = sizeof(float) * size_t(kRows * (p.E + 1) + kRows * (p.Ev + 1) + kKeys * (p.E + p.Ev));
  detail::allow_smem(sdpa_fwd_k, smem, "attention_forward");
  const dim3 grid(unsigned(items), unsigned((p.L + kRows - 1) / kRows));
  sdpa_fwd_k<<<grid, kRows, smem>>>(p, Q, lq, K, lk, V, lv, O, lo, lse);
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
  const int64_t items = p.B * p.H;
  if (items <= 0) return;
  if (p.L > 0) {
    sdpa_delta_k<<<detail::grid_for(items * p.L), 256>>>(p, Q, lq, K, lk, O, dO, lo, lse, dW, scratch);
    ATTN_CUDA_LAUNCH_CHECK("attention_backward(delta)");
  }
  if (dQ && p.L > 0) {
    check_grid(p, p.L);
    const size_t smem =
        sizeof(float) * size_t(2 * kRows * (p.E + 1) + kRows * (p.Ev + 1) + kKeys * (p.E + p.Ev));
    detail::allow_smem(sdpa_bwd_dq_k, smem, "attention_backward(dQ)");
    const dim3 grid(unsigned(items), unsigned((p.L + kRows - 1) / kRows));
    sdpa_bwd_dq_k<<<grid, kRows, smem>>>(p, Q, lq, K, lk, V, lv, dO, lo, lse, scratch, dW, dQ);
    ATTN_CUDA_LAUNCH_CHECK("attention_backward(dQ)");
  }
  if ((dK || dV) && p.S > 0) {
    check_grid(p, p.S);
    const size_t smem = sizeof(float) * size_t(2 * kRows * (p.E + 1) + 2 * kRows * (p.Ev + 1) +
                                               kKeys * (p.E + p.Ev) + 2 * kKeys);
    detail::allow_smem(sdpa_bwd_dkv_k, smem, "attention_backward(dK, dV)");
    const dim3 grid(unsigned(items), unsigned((p.S + kRows - 1) / kRows));
    sdpa_bwd_dkv_k<<<grid, kRows, smem>>>(p, Q, lq, K, lk, V, lv, dO, lo, lse, scratch, dW, dK, dV);
    ATTN_CUDA_LAUNCH_CHECK("attention_backward(dK, dV)");
  }
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
