// Fused LSTM / GRU layers on the GPU, one direction per call: the recurrence of ops/rnn.hpp with
// one cuBLAS GEMM per time step (h W_hh^T, or dA W_hh in the backward) and one pointwise kernel
// per step for the gate math. The input projection x W_ih^T + b and, in the backward, the weight
// gradients and dx are one GEMM each over all steps.
//
// Rows. Every [rows, .] buffer (input, output, saved gates and states, gate gradients) uses the
// layer input's row order: row(t, b) = t B + b (time-major) or b T + t (batch_first), so nothing
// is transposed; the B rows of one step are a strided set (ld = row_b * width) that cuBLAS reads
// and writes in place.
//
// Lengths (PyTorch's packed sequences): a step t >= len_b leaves series b's state unchanged and
// writes zero output; its gate gradients are zero and dh, dc pass through it unchanged. The
// reverse direction therefore starts each series at its last valid step from the initial state.
#include "api.hpp"
#include "common.cuh"

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

// LSTM step. G holds the pre-activations x W_ih^T + b_ih + b_hh + h W_hh^T of step t and gets the
// activations (i, f, g, o) in place:  c = f c_prev + i g,  h = o tanh(c).
__global__ void lstm_step_fwd_k(StepGeom s, float* G, float* h, float* c, float* out, float* Hprev, float* Cprev,
                                float* TC) {
  const int64_t H = s.H;
  ATTN_GRID_STRIDE(k, s.B * H) {
    const int64_t b = k / H, j = k % H, r = s.row(b);
    const float hp = h[k], cp = c[k];
    if (Hprev) Hprev[r * H + j] = hp;
    if (Cprev) Cprev[r * H + j] = cp;
    if (!s.valid(b)) {
      out[r * s.out_w + s.out_off + j] = 0.f;
      continue;
    }
    float* a = G + r * 4 * H;
    const float gi = sigm(a[j]), gf = sigm(a[H + j]), gg = tanhf(a[2 * H + j]), go = sigm(a[3 * H + j]);
    const float cn = gf * cp + gi * gg, tc = tanhf(cn), hn = go * tc;
    a[j] = gi;
    a[H + j] = gf;
    a[2 * H + j] = gg;
    a[3 * H + j] = go;
    if (TC) TC[r * H + j] = tc;
    c[k] = cn;
    h[k] = hn;
    out[r * s.out_w + s.out_off + j] = hn;
  }
}

// LSTM step backward, dh_t = dh + dout_t:
//   dc_t = dc + dh_t o (1 - tanh(c)^2)
//   dA = [dc_t g i (1 - i), dc_t c_prev f (1 - f), dc_t i (1 - g^2), dh_t tanh(c) o (1 - o)]
//   dc_prev = dc_t f;  dh_prev = dA W_hh (the GEMM after this kernel adds it to dh, set to 0 here)
__global__ void lstm_step_bwd_k(StepGeom s, const float* G, const float* Cprev, const float* TC, const float* dout,
                                float* dh, float* dc, float* dA) {
  const int64_t H = s.H;
  ATTN_GRID_STRIDE(k, s.B * H) {
    const int64_t b = k / H, j = k % H, r = s.row(b);
    float* d = dA + r * 4 * H;
    if (!s.valid(b)) {
      d[j] = d[H + j] = d[2 * H + j] = d[3 * H + j] = 0.f;
      continue;
    }
    const float* a = G + r * 4 * H;
    const float gi = a[j], gf = a[H + j], gg = a[2 * H + j], go = a[3 * H + j], tc = TC[r * H + j];
    const float dht = dh[k] + (dout ? dout[r * s.out_w + s.out_off + j] : 0.f);
    const float dct = dc[k] + dht * go * (1.f - tc * tc);
    d[j] = dct * gg * gi * (1.f - gi);
    d[H + j] = dct * Cprev[r * H + j] * gf * (1.f - gf);
    d[2 * H + j] = dct * gi * (1.f - gg * gg);
    d[3 * H + j] = dht * tc * go * (1.f - go);
    dc[k] = dct * gf;
    dh[k] = 0.f;
  }
}

// GRU step (PyTorch's formulation). G holds x W_ih^T + b_ih of step t, gh = h W_hh^T:
//   r = sigmoid(x_r + gh_r + b_hr), z = sigmoid(x_z + gh_z + b_hz), hn = gh_n + b_hn,
//   n = tanh(x_n + r hn), h = (1 - z) n + z h_prev.  G gets (r, z, n) in place, HN gets hn.
__global__ void gru_step_fwd_k(StepGeom s, float* G, const float* gh, const float* b_hh, float* h, float* out,
                               float* Hprev, float* HN) {
  const int64_t H = s.H;
  ATTN_GRID_STRIDE(k, s.B * H) {
    const int64_t b = k / H, j = k % H, r = s.row(b);
    const float hp = h[k];
    if (Hprev) Hprev[r * H + j] = hp;
    if (!s.valid(b)) {
      out[r * s.out_w + s.out_off + j] = 0.f;
      continue;
    }
    float* a = G + r * 3 * H;
    const float* q = gh + b * 3 * H;
    const float br = b_hh ? b_hh[j] : 0.f, bz = b_hh ? b_hh[H + j] : 0.f, bn = b_hh ? b_hh[2 * H + j] : 0.f;
    const float rg = sigm(a[j] + q[j] + br), zg = sigm(a[H + j] + q[H + j] + bz);
    const float hn = q[2 * H + j] + bn, n = tanhf(a[2 * H + j] + rg * hn);
    const float hnew = (1.f - zg) * n + zg * hp;
    a[j] = rg;
    a[H + j] = zg;
    a[2 * H + j] = n;
    if (HN) HN[r * H + j] = hn;
    h[k] = hnew;
    out[r * s.out_w + s.out_off + j] = hnew;
  }
}

// GRU step backward, dh_t = dh + dout_t:
//   dn = dh_t (1 - z) (1 - n^2),  dz = dh_t (h_prev - n) z (1 - z),  dr = dn hn r (1 - r)
//   input side dX = [dr, dz, dn], hidden side dHG = [dr, dz, dn r]
//   dh_prev = dh_t z + dHG W_hh (the GEMM after this kernel adds the product)
__global__ void gru_step_bwd_k(StepGeom s, const float* G, const float* HN, const float* Hprev, const float* dout,
                               float* dh, float* dX, float* dHG) {
  const int64_t H = s.H;
  ATTN_GRID_STRIDE(k, s.B * H) {
    const int64_t b = k / H, j = k % H, r = s.row(b);
    float* dx = dX + r * 3 * H;
    float* dg = dHG + r * 3 * H;
    if (!s.valid(b)) {
      dx[j] = dx[H + j] = dx[2 * H + j] = 0.f;
      dg[j] = dg[H + j] = dg[2 * H + j] = 0.f;
      continue;
    }
    const float* a = G + r * 3 * H;
    const float rg = a[j], zg = a[H + j], n = a[2 * H + j], hn = HN[r * H + j], hp = Hprev[r * H + j];
    const float dht = dh[k] + (dout ? dout[r * s.out_w + s.out_off + j] : 0.f);
    const float dn = dht * (1.f - zg) * (1.f - n * n);
    const float dz = dht * (hp - n) * zg * (1.f - zg);
    const float dr = dn * hn * rg * (1.f - rg);
    dx[j] = dr;
    dx[H + j] = dz;
    dx[2 * H + j] = dn;
    dg[j] = dr;
    dg[H + j] = dz;
    dg[2 * H + j] = dn * rg;
    dh[k] = dht * zg;
  }
}

StepGeom geom(const RnnDirection& p, int64_t t) {
  StepGeom s;
  s.B = p.B;
  s.H = p.H;
  s.t = t;
  s.row_t = p.batch_first ? 1 : p.B;
  s.row_b = p.batch_first ? p.T : 1;
  s.out_w = p.D * p.H;
  s.out_off = p.d * p.H;
  s.len = p.lengths;
  return s;
}
// Time step of the s-th iteration of the forward recurrence.
int64_t time_of(const RnnDirection& p, int64_t step) { return p.d == 0 ? step : p.T - 1 - step; }

// Weight and input gradients after the backward loop: dW_ih = dA^T x, dW_hh = dAh^T Hprev,
// db_ih = column sums of dA, db_hh = column sums of dAh, dx (+)= dA W_ih.
void layer_grads(const RnnDirection& p, int64_t GH, const float* X, const float* Hprev, const float* dA,
                 const float* dAh, const float* w_ih, float* dx, bool dx_accumulate, float* dw_ih, float* dw_hh,
                 float* db_ih, float* db_hh) {
  const int64_t rows = p.T * p.B;
  if (dw_ih) gemm(true, false, GH, p.I, rows, 1.f, dA, GH, X, p.I, 0.f, dw_ih, p.I);
  if (dw_hh) gemm(true, false, GH, p.H, rows, 1.f, dAh, GH, Hprev, p.H, 0.f, dw_hh, p.H);
  if (db_ih) sum_rows(dA, db_ih, rows, GH);
  if (db_hh) sum_rows(dAh, db_hh, rows, GH);
  if (dx) gemm(false, false, rows, p.I, GH, 1.f, dA, GH, w_ih, p.I, dx_accumulate ? 1.f : 0.f, dx, p.I);
}

}  // namespace

void lstm_layer_forward(const RnnDirection& p, const float* X, const float* w_ih, const float* w_hh,
                        const float* b_ih, const float* b_hh, float* G, float* h, float* c, float* out, float* Hprev,
                        float* Cprev, float* TC) {
  const int64_t GH = 4 * p.H, rows = p.T * p.B;
  gemm(false, true, rows, GH, p.I, 1.f, X, p.I, w_ih, p.I, 0.f, G, GH);
  if (b_ih) add_row_bias(G, b_ih, rows, GH);
  if (b_hh) add_row_bias(G, b_hh, rows, GH);
  for (int64_t step = 0; step < p.T; ++step) {
    const StepGeom s = geom(p, time_of(p, step));
    // the B gate rows of step t (strided by row_b) += h W_hh^T
    gemm(false, true, p.B, GH, p.H, 1.f, h, p.H, w_hh, p.H, 1.f, G + s.t * s.row_t * GH, s.row_b * GH);
    lstm_step_fwd_k<<<grid_for(p.B * p.H), 256>>>(s, G, h, c, out, Hprev, Cprev, TC);
    ATTN_CUDA_LAUNCH_CHECK("lstm_layer_forward");
  }
}

void lstm_layer_backward(const RnnDirection& p, const float* X, const float* w_ih, const float* w_hh, const float* G,
                         const float* Hprev, const float* Cprev, const float* TC, const float* dout, float* dh,
                         float* dc, float* dA, float* dx, bool dx_accumulate, float* dw_ih, float* dw_hh,
                         float* db_ih, float* db_hh) {
  const int64_t GH = 4 * p.H;
  for (int64_t step = p.T - 1; step >= 0; --step) {
    const StepGeom s = geom(p, time_of(p, step));
    lstm_step_bwd_k<<<grid_for(p.B * p.H), 256>>>(s, G, Cprev, TC, dout, dh, dc, dA);
    ATTN_CUDA_LAUNCH_CHECK("lstm_layer_backward");
    gemm(false, false, p.B, p.H, GH, 1.f, dA + s.t * s.row_t * GH, s.row_b * GH, w_hh, p.H, 1.f, dh, p.H);
  }
  layer_grads(p, GH, X, Hprev, dA, dA, w_ih, dx, dx_accumulate, dw_ih, dw_hh, db_ih, db_hh);
}

void gru_layer_forward(const RnnDirection& p, const float* X, const float* w_ih, const float* w_hh,
                       const float* b_ih, const float* b_hh, float* G, float* gh, float* h, float* out, float* Hprev,
                       float* HN) {
  const int64_t GH = 3 * p.H, rows = p.T * p.B;
  gemm(false, true, rows, GH, p.I, 1.f, X, p.I, w_ih, p.I, 0.f, G, GH);
  if (b_ih) add_row_bias(G, b_ih, rows, GH);
  for (int64_t step = 0; step < p.T; ++step) {
    const StepGeom s = geom(p, time_of(p, step));
    gemm(false, true, p.B, GH, p.H, 1.f, h, p.H, w_hh, p.H, 0.f, gh, GH);  // gh = h W_hh^T
    gru_step_fwd_k<<<grid_for(p.B * p.H), 256>>>(s, G, gh, b_hh, h, out, Hprev, HN);
    ATTN_CUDA_LAUNCH_CHECK("gru_layer_forward");
  }
}

void gru_layer_backward(const RnnDirection& p, const float* X, const float* w_ih, const float* w_hh, const float* G,
                        const float* Hprev, const float* HN, const float* dout, float* dh, float* dX, float* dHG,
                        float* dx, bool dx_accumulate, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh) {
  const int64_t GH = 3 * p.H;
  for (int64_t step = p.T - 1; step >= 0; --step) {
    const StepGeom s = geom(p, time_of(p, step));
    gru_step_bwd_k<<<grid_for(p.B * p.H), 256>>>(s, G, HN, Hprev, dout, dh, dX, dHG);
    ATTN_CUDA_LAUNCH_CHECK("gru_layer_backward");
    gemm(false, false, p.B, p.H, GH, 1.f, dHG + s.t * s.row_t * GH, s.row_b * GH, w_hh, p.H, 1.f, dh, p.H);
  }
  layer_grads(p, GH, X, Hprev, dX, dHG, w_ih, dx, dx_accumulate, dw_ih, dw_hh, db_ih, db_hh);
}

}  // namespace attn::kernels::cuda
