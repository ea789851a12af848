// Fused LSTM / GRU layers on the GPU, all directions of one layer per call: the recurrence of
// ops/rnn.hpp. The input projection x W_ih^T + b and, in the backward, the weight gradients and
// dx are one cuBLAS GEMM each over all steps. The recurrence itself runs one of two ways:
//  - persistent (when W_hh fits in shared memory: H up to 118 for an LSTM, 137 for a GRU on an
//    H100's 227 KB per block): one launch runs every step of every direction, a block per
//    direction and kSeries series, with W_hh, the states and the step's hidden-side products in
//    shared memory; a step is two phases between barriers (the product h W_hh^T or dA W_hh, then
//    the gate math). Small recurrent layers are bound by the launches of the per-step form (two
//    per step and direction, thousands per batch), which this removes.
//  - per step (larger H): one cuBLAS GEMM per step (h W_hh^T, or dA W_hh in the backward) and one
//    pointwise kernel per step, direction after direction.
// Both call the same per-element gate math (lstm_cell_fwd / lstm_cell_bwd / gru_cell_fwd /
// gru_cell_bwd below), so they give the same results up to the order of the GEMM's sums.
//
// Rows. Every [rows, .] buffer (input, output, saved gates and states, gate gradients) uses the
// layer input's row order: row(t, b) = t B + b (time-major) or b T + t (batch_first), so nothing
// is transposed; the B rows of one step are a strided set (ld = row_b * width) that cuBLAS reads
// and writes in place.
//
// Lengths (PyTorch's packed sequences): a step t >= len_b leaves series b's state unchanged and
// writes zero output; its gate gradients are zero and dh, dc pass through it unchanged. The
// reverse direction therefore starts each series at its last valid step from the initial state.
#include <string>
#include "common.cuh"
#include "matmul.hpp"  // gemm
#include "rnn.hpp"

namespace attn::kernels::cuda {
using detail::grid_for;

namespace {

__device__ inline float sigm(float v) { return 1.f / (1.f + expf(-v)); }

struct StepGeom {
  int64_t B, H, t, row_t, row_b, out_w, out_off;  // out_w: columns of the output (D H); out_off: d H
  const int64_t* len;
  __device__ int64_t row(int64_t b) const { return t * row_t + b * row_b; }
  __device__ bool valid(int64_t b) const { return len == nullptr || t < len[b]; }
};

// ---------------- gate math of one element (b, j) of one step ----------------

// LSTM. G row r holds x W_ih^T + b_ih + b_hh (+ h W_hh^T when hid is null); hid: the row's
// h W_hh^T, or null. Activations (i, f, g, o) replace the pre-activations in G:
//   c = f c_prev + i g,  h = o tanh(c)
__device__ inline void lstm_cell_fwd(const StepGeom& s, int64_t b, int64_t j, float* G, const float* hid, float& h,
                                     float& c, float* out, float* Hprev, float* Cprev, float* TC) {
  const int64_t H = s.H, r = s.row(b);
  if (Hprev) Hprev[r * H + j] = h;
  if (Cprev) Cprev[r * H + j] = c;
  if (!s.valid(b)) {
    out[r * s.out_w + s.out_off + j] = 0.f;
    return;
  }
  float* a = G + r * 4 * H;
  float pre[4];
  for (int q = 0; q < 4; ++q) pre[q] = a[q * H + j] + (hid ? hid[q * H + j] : 0.f);
  const float gi = sigm(pre[0]), gf = sigm(pre[1]), gg = tanhf(pre[2]), go = sigm(pre[3]);
  const float cn = gf * c + gi * gg, tc = tanhf(cn);
  a[j] = gi;
  a[H + j] = gf;
  a[2 * H + j] = gg;
  a[3 * H + j] = go;
  if (TC) TC[r * H + j] = tc;
  c = cn;
  h = go * tc;
  out[r * s.out_w + s.out_off + j] = h;
}

// LSTM backward, dh_t = dh + dout_t:
//   dc_t = dc + dh_t o (1 - tanh(c)^2)
//   dA = [dc_t g i (1 - i), dc_t c_prev f (1 - f), dc_t i (1 - g^2), dh_t tanh(c) o (1 - o)]
//   dc_prev = dc_t f;  dh_prev = dA W_hh (added by the caller; dh is set to 0 here)
// dA row r gets the gate gradients; hid_grad (may be null) a copy for the caller's dA W_hh.
__device__ inline void lstm_cell_bwd(const StepGeom& s, int64_t b, int64_t j, const float* G, const float* Cprev,
                                     const float* TC, const float* dout, float& dh, float& dc, float* dA,
                                     float* hid_grad) {
  const int64_t H = s.H, r = s.row(b);
  float* d = dA + r * 4 * H;
  float v[4] = {0.f, 0.f, 0.f, 0.f};
  if (s.valid(b)) {
    const float* a = G + r * 4 * H;
    const float gi = a[j], gf = a[H + j], gg = a[2 * H + j], go = a[3 * H + j], tc = TC[r * H + j];
    const float dht = dh + (dout ? dout[r * s.out_w + s.out_off + j] : 0.f);
    const float dct = dc + dht * go * (1.f - tc * tc);
    v[0] = dct * gg * gi * (1.f - gi);
    v[1] = dct * Cprev[r * H + j] * gf * (1.f - gf);
    v[2] = dct * gi * (1.f - gg * gg);
    v[3] = dht * tc * go * (1.f - go);
    dc = dct * gf;
    dh = 0.f;
  }
  for (int q = 0; q < 4; ++q) {
    d[q * H + j] = v[q];
    if (hid_grad) hid_grad[q * H + j] = v[q];
  }
}

// GRU (PyTorch's formulation). G row r holds x W_ih^T + b_ih; q: the row's h W_hh^T:
//   r = sigmoid(x_r + q_r + b_hr), z = sigmoid(x_z + q_z + b_hz), hn = q_n + b_hn,
//   n = tanh(x_n + r hn), h = (1 - z) n + z h_prev.  G gets (r, z, n) in place, HN gets hn.
__device__ inline void gru_cell_fwd(const StepGeom& s, int64_t b, int64_t j, float* G, const float* q,
                                    const float* b_hh, float& h, float* out, float* Hprev, float* HN) {
  const int64_t H = s.H, r = s.row(b);
  if (Hprev) Hprev[r * H + j] = h;
  if (!s.valid(b)) {
    out[r * s.out_w + s.out_off + j] = 0.f;
    return;
  }
  float* a = G + r * 3 * H;
  const float br = b_hh ? b_hh[j] : 0.f, bz = b_hh ? b_hh[H + j] : 0.f, bn = b_hh ? b_hh[2 * H + j] : 0.f;
  const float rg = sigm(a[j] + q[j] + br), zg = sigm(a[H + j] + q[H + j] + bz);
  const float hn = q[2 * H + j] + bn, n = tanhf(a[2 * H + j] + rg * hn);
  a[j] = rg;
  a[H + j] = zg;
  a[2 * H + j] = n;
  if (HN) HN[r * H + j] = hn;
  h = (1.f - zg) * n + zg * h;
  out[r * s.out_w + s.out_off + j] = h;
}

// GRU backward, dh_t = dh + dout_t:
//   dn = dh_t (1 - z) (1 - n^2),  dz = dh_t (h_prev - n) z (1 - z),  dr = dn hn r (1 - r)
//   input side dX = [dr, dz, dn], hidden side dHG = [dr, dz, dn r]
//   dh_prev = dh_t z + dHG W_hh (the product added by the caller)
// hid_grad (may be null) gets a copy of the dHG row.
__device__ inline void gru_cell_bwd(const StepGeom& s, int64_t b, int64_t j, const float* G, const float* HN,
                                    const float* Hprev, const float* dout, float& dh, float* dX, float* dHG,
                                    float* hid_grad) {
  const int64_t H = s.H, r = s.row(b);
  float x[3] = {0.f, 0.f, 0.f}, g[3] = {0.f, 0.f, 0.f};
  if (s.valid(b)) {
    const float* a = G + r * 3 * H;
    const float rg = a[j], zg = a[H + j], n = a[2 * H + j], hn = HN[r * H + j], hp = Hprev[r * H + j];
    const float dht = dh + (dout ? dout[r * s.out_w + s.out_off + j] : 0.f);
    const float dn = dht * (1.f - zg) * (1.f - n * n);
    const float dz = dht * (hp - n) * zg * (1.f - zg);
    const float dr = dn * hn * rg * (1.f - rg);
    x[0] = g[0] = dr;
    x[1] = g[1] = dz;
    x[2] = dn;
    g[2] = dn * rg;
    dh = dht * zg;
  }
  for (int q = 0; q < 3; ++q) {
    dX[r * 3 * H + q * H + j] = x[q];
    dHG[r * 3 * H + q * H + j] = g[q];
    if (hid_grad) hid_grad[q * H + j] = g[q];
  }
}

// ---------------- per-step kernels (the cuBLAS GEMM runs between them) ----------------

__global__ void lstm_step_fwd_k(StepGeom s, float* G, float* h, float* c, float* out, float* Hprev, float* Cprev,
                                float* TC) {
  ATTN_GRID_STRIDE(k, s.B * s.H)
  lstm_cell_fwd(s, k / s.H, k % s.H, G, nullptr, h[k], c[k], out, Hprev, Cprev, TC);
}
__global__ void lstm_step_bwd_k(StepGeom s, const float* G, const float* Cprev, const float* TC, const float* dout,
                                float* dh, float* dc, float* dA) {
  ATTN_GRID_STRIDE(k, s.B * s.H)
  lstm_cell_bwd(s, k / s.H, k % s.H, G, Cprev, TC, dout, dh[k], dc[k], dA, nullptr);
}
__global__ void gru_step_fwd_k(StepGeom s, float* G, const float* gh, const float* b_hh, float* h, float* out,
                               float* Hprev, float* HN) {
  ATTN_GRID_STRIDE(k, s.B * s.H) {
    const int64_t b = k / s.H;
    gru_cell_fwd(s, b, k % s.H, G, gh + b * 3 * s.H, b_hh, h[k], out, Hprev, HN);
  }
}
__global__ void gru_step_bwd_k(StepGeom s, const float* G, const float* HN, const float* Hprev, const float* dout,
                               float* dh, float* dX, float* dHG) {
  ATTN_GRID_STRIDE(k, s.B * s.H)
  gru_cell_bwd(s, k / s.H, k % s.H, G, HN, Hprev, dout, dh[k], dX, dHG, nullptr);
}

// Time step of the s-th iteration of direction d's recurrence, and the geometry of step t.
__host__ __device__ inline int64_t time_of(const RnnLayer& L, int d, int64_t step) {
  return d == 0 ? step : L.T - 1 - step;
}
__host__ __device__ inline StepGeom geom(const RnnLayer& L, int d, int64_t t) {
  StepGeom s;
  s.B = L.B;
  s.H = L.H;
  s.t = t;
  s.row_t = L.batch_first ? 1 : L.B;
  s.row_b = L.batch_first ? L.T : 1;
  s.out_w = L.D * L.H;
  s.out_off = d * L.H;
  s.len = L.lengths;
  return s;
}

// ---------------- persistent kernels (every step in one launch) ----------------
constexpr int kSeries = 4;           // series per block
constexpr int kPersistThreads = 256;

// Shared memory: W_hh [GH][H + 1] (padded rows: the lanes of a warp read different banks), the
// states (h, and c or dc) [kSeries][H] each, the step's hidden-side rows [kSeries][GH].
size_t persistent_smem(int64_t G, int64_t H) {
  return sizeof(float) * size_t(G * H * (H + 1) + 2 * kSeries * H + kSeries * G * H);
}
__device__ inline void load_whh(float* Ws, const float* w_hh, int64_t GH, int64_t H) {
  for (int64_t x = threadIdx.x; x < GH * H; x += blockDim.x) Ws[(x / H) * (H + 1) + x % H] = w_hh[x];
}

// Forward of series [b0, b0 + nb) of direction blockIdx.y: per step, hid[s][g] =
// sum_k h[s][k] W_hh[g][k], then the gate math. h (and c) stay in shared memory from the first
// step to the last. Both directions of a layer run side by side in one launch.
template <bool LSTM>
__global__ void __launch_bounds__(kPersistThreads) rnn_fwd_persist_k(RnnLayer L, float* h_state, float* c_state,
                                                                    float* out) {
  extern __shared__ float sm[];
  const int d = int(blockIdx.y);
  const RnnDirBuffers& P = L.dir[d];
  const int64_t H = L.H, GH = (LSTM ? 4 : 3) * H, W = H + 1;
  float* Ws = sm;
  float* hs = Ws + GH * W;
  float* cs = hs + kSeries * H;
  float* hid = cs + kSeries * H;
  const int64_t b0 = int64_t(blockIdx.x) * kSeries, nb = L.B - b0 < kSeries ? L.B - b0 : kSeries;
  float* hg = h_state + (d * L.B + b0) * H;
  float* cg = LSTM ? c_state + (d * L.B + b0) * H : nullptr;
  load_whh(Ws, P.w_hh, GH, H);
  for (int64_t x = threadIdx.x; x < nb * H; x += blockDim.x) {
    hs[x] = hg[x];
    if (LSTM) cs[x] = cg[x];
  }
  __syncthreads();
  for (int64_t step = 0; step < L.T; ++step) {
    const StepGeom s = geom(L, d, time_of(L, d, step));
    for (int64_t x = threadIdx.x; x < nb * GH; x += blockDim.x) {
      const int64_t sb = x / GH, g = x % GH;
      const float* hr = hs + sb * H;
      const float* wr = Ws + g * W;
      float acc = 0.f;
      for (int64_t k = 0; k < H; ++k) acc += hr[k] * wr[k];
      hid[x] = acc;
    }
    __syncthreads();
    for (int64_t x = threadIdx.x; x < nb * H; x += blockDim.x) {
      const int64_t sb = x / H, j = x % H;
      if (LSTM)
        lstm_cell_fwd(s, b0 + sb, j, P.G, hid + sb * GH, hs[x], cs[x], out, P.Hprev, P.Cprev, P.Aux);
      else
        gru_cell_fwd(s, b0 + sb, j, P.G, hid + sb * GH, P.b_hh, hs[x], out, P.Hprev, P.Aux);
    }
    __syncthreads();
  }
  for (int64_t x = threadIdx.x; x < nb * H; x += blockDim.x) {
    hg[x] = hs[x];
    if (LSTM) cg[x] = cs[x];
  }
}

// Backward of series [b0, b0 + nb) of direction blockIdx.y, steps in reverse: the gate gradients
// (dA, or dA and dHG for the GRU, written for the weight GEMMs; the hidden-side row kept in
// shared memory), then dh[s][k] += sum_g hid_grad[s][g] W_hh[g][k].
template <bool LSTM>
__global__ void __launch_bounds__(kPersistThreads) rnn_bwd_persist_k(RnnLayer L, const float* dout, float* dh_state,
                                                                    float* dc_state) {
  extern __shared__ float sm[];
  const int d = int(blockIdx.y);
  const RnnDirBuffers& P = L.dir[d];
  const int64_t H = L.H, GH = (LSTM ? 4 : 3) * H, W = H + 1;
  float* Ws = sm;
  float* dhs = Ws + GH * W;
  float* dcs = dhs + kSeries * H;
  float* hg = dcs + kSeries * H;
  const int64_t b0 = int64_t(blockIdx.x) * kSeries, nb = L.B - b0 < kSeries ? L.B - b0 : kSeries;
  float* dhg = dh_state + (d * L.B + b0) * H;
  float* dcg = LSTM ? dc_state + (d * L.B + b0) * H : nullptr;
  load_whh(Ws, P.w_hh, GH, H);
  for (int64_t x = threadIdx.x; x < nb * H; x += blockDim.x) {
    dhs[x] = dhg[x];
    if (LSTM) dcs[x] = dcg[x];
  }
  __syncthreads();
  for (int64_t step = L.T - 1; step >= 0; --step) {
    const StepGeom s = geom(L, d, time_of(L, d, step));
    for (int64_t x = threadIdx.x; x < nb * H; x += blockDim.x) {
      const int64_t sb = x / H, j = x % H;
      if (LSTM)
        lstm_cell_bwd(s, b0 + sb, j, P.G, P.Cprev, P.Aux, dout, dhs[x], dcs[x], P.dA, hg + sb * GH);
      else
        gru_cell_bwd(s, b0 + sb, j, P.G, P.Aux, P.Hprev, dout, dhs[x], P.dA, P.dHG, hg + sb * GH);
    }
    __syncthreads();
    for (int64_t x = threadIdx.x; x < nb * H; x += blockDim.x) {
      const int64_t sb = x / H, k = x % H;
      const float* gr = hg + sb * GH;
      float acc = 0.f;
      for (int64_t g = 0; g < GH; ++g) acc += gr[g] * Ws[g * W + k];
      dhs[x] += acc;
    }
    __syncthreads();
  }
  for (int64_t x = threadIdx.x; x < nb * H; x += blockDim.x) {
    dhg[x] = dhs[x];
    if (LSTM) dcg[x] = dcs[x];
  }
}

// Whether the persistent kernels take this layer: W_hh and the block's rows fit in the shared
// memory one block may use (opting in above 48 KB).
template <class Kernel>
bool use_persistent(Kernel k, int64_t G, int64_t H) {
  int dev = 0, optin = 0;
  ATTN_CUDA_CHECK(cudaGetDevice(&dev));
  ATTN_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const size_t bytes = persistent_smem(G, H);
  if (bytes > size_t(optin)) return false;
  if (bytes > 48 * 1024) ATTN_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  return true;
}
dim3 persistent_grid(const RnnLayer& L) { return dim3(unsigned((L.B + kSeries - 1) / kSeries), unsigned(L.D)); }

}  // namespace

// x W_ih^T + b_ih (+ b_hh for the LSTM, whose hidden bias sits outside any nonlinearity) for
// every step, then the recurrence of every direction.
void rnn_layer_forward(const RnnLayer& L, const float* X, float* h, float* c, float* gh, float* out) {
  const int64_t G = L.lstm ? 4 : 3, GH = G * L.H, rows = L.T * L.B;
  for (int d = 0; d < L.D; ++d) {
    const RnnDirBuffers& P = L.dir[d];
    gemm(false, true, rows, GH, L.I, 1.f, X, L.I, P.w_ih, L.I, 0.f, P.G, GH);
    if (P.b_ih) add_row_bias(P.G, P.b_ih, rows, GH);
    if (L.lstm && P.b_hh) add_row_bias(P.G, P.b_hh, rows, GH);
  }
  auto kernel = L.lstm ? rnn_fwd_persist_k<true> : rnn_fwd_persist_k<false>;
  if (use_persistent(kernel, G, L.H)) {
    kernel<<<persistent_grid(L), kPersistThreads, persistent_smem(G, L.H)>>>(L, h, c, out);
    ATTN_CUDA_LAUNCH_CHECK("rnn_layer_forward");
    return;
  }
  for (int d = 0; d < L.D; ++d) {
    const RnnDirBuffers& P = L.dir[d];
    float* hd = h + d * L.B * L.H;
    float* cd = c ? c + d * L.B * L.H : nullptr;
    for (int64_t step = 0; step < L.T; ++step) {
      const StepGeom s = geom(L, d, time_of(L, d, step));
      if (L.lstm) {  // the B gate rows of step t (strided by row_b) += h W_hh^T
        gemm(false, true, L.B, GH, L.H, 1.f, hd, L.H, P.w_hh, L.H, 1.f, P.G + s.t * s.row_t * GH, s.row_b * GH);
        lstm_step_fwd_k<<<grid_for(L.B * L.H), 256>>>(s, P.G, hd, cd, out, P.Hprev, P.Cprev, P.Aux);
      } else {
        gemm(false, true, L.B, GH, L.H, 1.f, hd, L.H, P.w_hh, L.H, 0.f, gh, GH);  // gh = h W_hh^T
        gru_step_fwd_k<<<grid_for(L.B * L.H), 256>>>(s, P.G, gh, P.b_hh, hd, out, P.Hprev, P.Aux);
      }
      ATTN_CUDA_LAUNCH_CHECK("rnn_layer_forward");
    }
  }
}

// The recurrence backward of every direction (gate gradients into dA / dHG), then per direction
// dW_ih = dA^T x, dW_hh = dAh^T Hprev, db_ih = column sums of dA, db_hh = column sums of dAh
// (dAh = dA for the LSTM, dHG for the GRU), dx = sum_d dA_d W_ih_d.
void rnn_layer_backward(const RnnLayer& L, const float* X, const float* dout, float* dh, float* dc, float* dx) {
  const int64_t G = L.lstm ? 4 : 3, GH = G * L.H, rows = L.T * L.B;
  auto kernel = L.lstm ? rnn_bwd_persist_k<true> : rnn_bwd_persist_k<false>;
  if (use_persistent(kernel, G, L.H)) {
    kernel<<<persistent_grid(L), kPersistThreads, persistent_smem(G, L.H)>>>(L, dout, dh, dc);
    ATTN_CUDA_LAUNCH_CHECK("rnn_layer_backward");
  } else {
    for (int d = 0; d < L.D; ++d) {
      const RnnDirBuffers& P = L.dir[d];
      float* dhd = dh + d * L.B * L.H;
      float* dcd = dc ? dc + d * L.B * L.H : nullptr;
      const float* dAh = L.lstm ? P.dA : P.dHG;
      for (int64_t step = L.T - 1; step >= 0; --step) {
        const StepGeom s = geom(L, d, time_of(L, d, step));
        if (L.lstm) lstm_step_bwd_k<<<grid_for(L.B * L.H), 256>>>(s, P.G, P.Cprev, P.Aux, dout, dhd, dcd, P.dA);
        else gru_step_bwd_k<<<grid_for(L.B * L.H), 256>>>(s, P.G, P.Aux, P.Hprev, dout, dhd, P.dA, P.dHG);
        ATTN_CUDA_LAUNCH_CHECK("rnn_layer_backward");
        gemm(false, false, L.B, L.H, GH, 1.f, dAh + s.t * s.row_t * GH, s.row_b * GH, P.w_hh, L.H, 1.f, dhd, L.H);
      }
    }
  }
  for (int d = 0; d < L.D; ++d) {
    const RnnDirBuffers& P = L.dir[d];
    const float* dAh = L.lstm ? P.dA : P.dHG;
    if (P.dw_ih) gemm(true, false, GH, L.I, rows, 1.f, P.dA, GH, X, L.I, 0.f, P.dw_ih, L.I);
    if (P.dw_hh) gemm(true, false, GH, L.H, rows, 1.f, dAh, GH, P.Hprev, L.H, 0.f, P.dw_hh, L.H);
    if (P.db_ih) sum_rows(P.dA, P.db_ih, rows, GH);
    if (P.db_hh) sum_rows(dAh, P.db_hh, rows, GH);
    if (dx) gemm(false, false, rows, L.I, GH, 1.f, P.dA, GH, P.w_ih, L.I, d > 0 ? 1.f : 0.f, dx, L.I);
  }
}

// ---------------- LSTM step pointwise ----------------
// i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o)
// c = f c_prev + i g,  h = o tanh(c)
__global__ void lstm_fwd_k(const float* gates, const float* c_prev, float* h, float* c, float* acts, float* tanh_c,
                           int64_t B, int64_t H) {
  ATTN_GRID_STRIDE(k, B * H) {
    const int64_t b = k / H, j = k % H;
    const float* a = gates + b * 4 * H;
    const float gi = sigm(a[j]), gf = sigm(a[H + j]), gg = tanhf(a[2 * H + j]), go = sigm(a[3 * H + j]);
    const float cn = gf * c_prev[k] + gi * gg;
    const float tc = tanhf(cn);
    c[k] = cn;
    h[k] = go * tc;
    float* s = acts + b * 4 * H;
    s[j] = gi;
    s[H + j] = gf;
    s[2 * H + j] = gg;
    s[3 * H + j] = go;
    tanh_c[k] = tc;
  }
}
// dc_t = dc + dh o (1 - tanh(c)^2)
// d a_i = dc_t g i (1 - i), d a_f = dc_t c_prev f (1 - f), d a_g = dc_t i (1 - g^2), d a_o = dh tanh(c) o (1 - o)
// dc_prev = dc_t f
__global__ void lstm_bwd_k(const float* dh, const float* dc, const float* acts, const float* tanh_c,
                           const float* c_prev, float* dgates, float* dc_prev, int64_t B, int64_t H) {
  ATTN_GRID_STRIDE(k, B * H) {
    const int64_t b = k / H, j = k % H;
    const float* s = acts + b * 4 * H;
    const float gi = s[j], gf = s[H + j], gg = s[2 * H + j], go = s[3 * H + j], tc = tanh_c[k];
    const float dhk = dh ? dh[k] : 0.f;
    const float dct = (dc ? dc[k] : 0.f) + dhk * go * (1.f - tc * tc);
    float* d = dgates + b * 4 * H;
    d[j] = dct * gg * gi * (1.f - gi);
    d[H + j] = dct * c_prev[k] * gf * (1.f - gf);
    d[2 * H + j] = dct * gi * (1.f - gg * gg);
    d[3 * H + j] = dhk * tc * go * (1.f - go);
    dc_prev[k] = dct * gf;
  }
}
void lstm_pointwise_forward(const float* gates, const float* c_prev, float* h, float* c, float* acts, float* tanh_c,
                            int64_t B, int64_t H) {
  if (B * H <= 0) return;
  lstm_fwd_k<<<grid_for(B * H), 256>>>(gates, c_prev, h, c, acts, tanh_c, B, H);
  ATTN_CUDA_LAUNCH_CHECK("lstm_pointwise_forward");
}
void lstm_pointwise_backward(const float* dh, const float* dc, const float* acts, const float* tanh_c,
                             const float* c_prev, float* dgates, float* dc_prev, int64_t B, int64_t H) {
  if (B * H <= 0) return;
  lstm_bwd_k<<<grid_for(B * H), 256>>>(dh, dc, acts, tanh_c, c_prev, dgates, dc_prev, B, H);
  ATTN_CUDA_LAUNCH_CHECK("lstm_pointwise_backward");
}

}  // namespace attn::kernels::cuda
