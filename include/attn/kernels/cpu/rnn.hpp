#pragma once
// Raw CPU loops of the fused LSTM / GRU recurrences (no autograd; ops/rnn.hpp wraps them).
//
// Layout. A layer with D directions (1, or 2 with direction 1 running backwards in time) works on
// "row" matrices whose rows are (t, b) pairs in the layout of the layer input:
//   time-major  row(t, b) = t * B + b        batch-first  row(t, b) = b * T + t
// so the rows of one time step are B rows with a fixed row stride (1 or T rows). Column block d
// of a row holds direction d. The per-step products h W_hh^T then run in place on those strided
// rows (the GEMM takes a leading dimension), and the gradient of the whole input projection is
// the dgates matrix itself, in the input's layout, with no transposition.
//
// Work is split into units (direction, block of kRnnRowBlock batch rows). A unit is always
// computed by one thread with the same instructions, and the set of units depends only on the
// shapes, never on the number of threads: results are bit-identical for any thread count.
// When D == 2 and the batch fits one block (small recurrences, e.g. B = 32, H = 32), each thread
// runs one whole direction (one fork/join for the whole sequence); otherwise each time step runs
// its units in parallel when the step is large enough to pay for a fork/join.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>
#include "../../core/parallel.hpp"
#include "gemm.hpp"

namespace attn::kernels::cpu {

constexpr int64_t kRnnRowBlock = 64;

struct RnnShape {
  int64_t T = 0, B = 0, H = 0, D = 1;
  bool batch_first = false;
  const int64_t* lengths = nullptr;  // B valid lengths, or null (all T)

  int64_t row(int64_t t, int64_t b) const { return batch_first ? b * T + t : t * B + b; }
  int64_t row_stride() const { return batch_first ? T : 1; }  // rows between batch b and b + 1
  bool valid(int64_t t, int64_t b) const { return lengths == nullptr || t < lengths[b]; }
  int64_t time_of(int64_t d, int64_t s) const { return d == 0 ? s : T - 1 - s; }  // step s of direction d
  int64_t blocks() const { return (B + kRnnRowBlock - 1) / kRnnRowBlock; }
};

// Runs unit(d, s, blk) for every direction d, step s (in order) and row block blk.
template <class F>
void rnn_schedule(const RnnShape& S, double flops_per_unit_step, const F& unit) {
  const int64_t nblk = S.blocks();
  if (S.D > 1 && nblk == 1) {
    parallel_for(0, S.D, 1, [&](int64_t d0, int64_t d1) {
      for (int64_t d = d0; d < d1; ++d)
        for (int64_t s = 0; s < S.T; ++s) unit(d, s, 0);
    });
    return;
  }
  const int64_t units = S.D * nblk;
  const bool par = units > 1 && flops_per_unit_step * double(units) > 2e5;
  for (int64_t s = 0; s < S.T; ++s) {
    auto run = [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) unit(u / nblk, s, u % nblk);
    };
    if (par) parallel_for(0, units, 1, run);
    else run(0, units);
  }
}

namespace rnn_detail {
template <class T>
using Arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <class T, class E>
auto sigmoid(const E& x) {
  return T(1) / (T(1) + (-x).exp());
}
}  // namespace rnn_detail

// ---------------------------------------------------------------------------------------------
// LSTM forward over all steps.
//   X      [rows, D*4H]  x_t W_ih^T + b_ih (gate order i, f, g, o)
//   whh[d] [4H, H], bhh[d] [4H] or null
//   h, c   [D, B, H]     initial state in, final state (h_n, c_n) out
// Saved for the backward: G [rows, D*4H] activated gates (i, f, g, o), Hprev / Cprev [rows, D*H]
// the state before the step, TC [rows, D*H] tanh(c_t). out [rows, D*H]: h_t, zero where t >= len_b.
//   i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o),  a = x W_ih^T + b_ih + h W_hh^T + b_hh
//   c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)
template <class T>
void lstm_forward(const RnnShape& S, const T* X, const std::vector<const T*>& whh, const std::vector<const T*>& bhh,
                  T* h, T* c, T* G, T* Hprev, T* Cprev, T* TC, T* out) {
  using namespace rnn_detail;
  const int64_t H = S.H, G4 = 4 * H, LDG = S.D * G4, LDH = S.D * H, rs = S.row_stride();
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G4 * H), [&](int64_t d, int64_t s, int64_t blk) {
    const int64_t t = S.time_of(d, s), b0 = blk * kRnnRowBlock, nb = std::min(kRnnRowBlock, S.B - b0);
    T* hd = h + d * S.B * H;
    T* cd = c + d * S.B * H;
    const int64_t r0 = S.row(t, b0);
    // gates of the block = h W_hh^T, written straight into the strided rows of G
    gemm_serial<T>(false, true, nb, G4, H, T(1), hd + b0 * H, H, whh[size_t(d)], H, T(0), G + r0 * LDG + d * G4,
                   rs * LDG);
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      T* hb = hd + b * H;
      T* cb = cd + b * H;
      std::copy(hb, hb + H, Hprev + r * LDH + d * H);
      std::copy(cb, cb + H, Cprev + r * LDH + d * H);
      T* ob = out + r * LDH + d * H;
      if (!S.valid(t, b)) {
        std::fill(ob, ob + H, T(0));
        continue;
      }
      Arr<T> a(G + r * LDG + d * G4, G4);
      a += CArr<T>(X + r * LDG + d * G4, G4);
      if (bhh[size_t(d)]) a += CArr<T>(bhh[size_t(d)], G4);
      a.segment(0, 2 * H) = sigmoid<T>(a.segment(0, 2 * H));
      a.segment(2 * H, H) = a.segment(2 * H, H).tanh();
      a.segment(3 * H, H) = sigmoid<T>(a.segment(3 * H, H));
      Arr<T> cm(cb, H), hm(hb, H), tc(TC + r * LDH + d * H, H);
      cm = a.segment(H, H) * cm + a.segment(0, H) * a.segment(2 * H, H);
      tc = cm.tanh();
      hm = a.segment(3 * H, H) * tc;
      std::copy(hb, hb + H, ob);
    }
  });
}

// LSTM backward through time.
//   dout [rows, D*H] or null, dh / dc [D, B, H]: dL/dh_n, dL/dc_n in; dL/dh_0, dL/dc_0 out.
//   dG [rows, D*4H]: dL/da for every (t, b) (zero where t >= len_b), which is also dL/dX.
//   dh_t += dout_t;  do = dh tanh(c_t);  dc_t = dc + dh o (1 - tanh^2 c_t)
//   di = dc_t g,  df = dc_t c_{t-1},  dg = dc_t i,  dc_{t-1} = dc_t f
//   da = (di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)),  dh_{t-1} = da W_hh
template <class T>
void lstm_backward(const RnnShape& S, const std::vector<const T*>& whh, const T* G, const T* Cprev, const T* TC,
                   const T* dout, T* dh, T* dc, T* dG) {
  using namespace rnn_detail;
  const int64_t H = S.H, G4 = 4 * H, LDG = S.D * G4, LDH = S.D * H, rs = S.row_stride();
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G4 * H), [&](int64_t d, int64_t s_rev, int64_t blk) {
    const int64_t s = S.T - 1 - s_rev, t = S.time_of(d, s), b0 = blk * kRnnRowBlock,
                  nb = std::min(kRnnRowBlock, S.B - b0);
    T* dhd = dh + d * S.B * H;
    T* dcd = dc + d * S.B * H;
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      Arr<T> dg(dG + r * LDG + d * G4, G4);
      if (!S.valid(t, b)) {
        dg.setZero();
        continue;
      }
      Arr<T> dhb(dhd + b * H, H), dcb(dcd + b * H, H);
      if (dout) dhb += CArr<T>(dout + r * LDH + d * H, H);
      CArr<T> a(G + r * LDG + d * G4, G4), tc(TC + r * LDH + d * H, H), cp(Cprev + r * LDH + d * H, H);
      auto i = a.segment(0, H), f = a.segment(H, H), g = a.segment(2 * H, H), o = a.segment(3 * H, H);
      dcb += dhb * o * (T(1) - tc * tc);  // dc_t
      dg.segment(0, H) = dcb * g * i * (T(1) - i);
      dg.segment(H, H) = dcb * cp * f * (T(1) - f);
      dg.segment(2 * H, H) = dcb * i * (T(1) - g * g);
      dg.segment(3 * H, H) = dhb * tc * o * (T(1) - o);
      dcb *= f;          // dc_{t-1}
      dhb.setZero();     // replaced by da W_hh below
    }
    const int64_t r0 = S.row(t, b0);
    // rows with t >= len_b have da = 0: their dh passes through unchanged (beta = 1)
    gemm_serial<T>(false, false, nb, H, G4, T(1), dG + r0 * LDG + d * G4, rs * LDG, whh[size_t(d)], H, T(1),
                   dhd + b0 * H, H);
  });
}

// ---------------------------------------------------------------------------------------------
// GRU forward (PyTorch's formulation, gate order r, z, n).
//   X [rows, D*3H] = x W_ih^T + b_ih;  hg = h W_hh^T + b_hh
//   r = s(x_r + hg_r),  z = s(x_z + hg_z),  n = tanh(x_n + r * hg_n),  h_t = n + z * (h_{t-1} - n)
// Saved: G [rows, D*3H] (r, z, n), HN [rows, D*H] hg_n, Hprev [rows, D*H].
template <class T>
void gru_forward(const RnnShape& S, const T* X, const std::vector<const T*>& whh, const std::vector<const T*>& bhh,
                 T* h, T* G, T* HN, T* Hprev, T* out) {
  using namespace rnn_detail;
  const int64_t H = S.H, G3 = 3 * H, LDG = S.D * G3, LDH = S.D * H, rs = S.row_stride();
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G3 * H), [&](int64_t d, int64_t s, int64_t blk) {
    const int64_t t = S.time_of(d, s), b0 = blk * kRnnRowBlock, nb = std::min(kRnnRowBlock, S.B - b0);
    T* hd = h + d * S.B * H;
    const int64_t r0 = S.row(t, b0);
    gemm_serial<T>(false, true, nb, G3, H, T(1), hd + b0 * H, H, whh[size_t(d)], H, T(0), G + r0 * LDG + d * G3,
                   rs * LDG);
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      T* hb = hd + b * H;
      std::copy(hb, hb + H, Hprev + r * LDH + d * H);
      T* ob = out + r * LDH + d * H;
      if (!S.valid(t, b)) {
        std::fill(ob, ob + H, T(0));
        continue;
      }
      Arr<T> a(G + r * LDG + d * G3, G3), hn(HN + r * LDH + d * H, H), hm(hb, H);
      CArr<T> x(X + r * LDG + d * G3, G3);
      if (bhh[size_t(d)]) a += CArr<T>(bhh[size_t(d)], G3);
      hn = a.segment(2 * H, H);
      a.segment(0, 2 * H) = sigmoid<T>(x.segment(0, 2 * H) + a.segment(0, 2 * H));
      a.segment(2 * H, H) = (x.segment(2 * H, H) + a.segment(0, H) * hn).tanh();
      hm = a.segment(2 * H, H) + a.segment(H, H) * (hm - a.segment(2 * H, H));
      std::copy(hb, hb + H, ob);
    }
  });
}

// GRU backward through time. dX [rows, D*3H] = dL/dX, dHG [rows, D*3H] = dL/dhg (both zero where
// t >= len_b); dh [D, B, H]: dL/dh_n in, dL/dh_0 out.
//   dn = dh (1 - z),  dz = dh (h_{t-1} - n),  dan = dn (1 - n^2),  dr = dan hg_n
//   dX = (dr r(1-r), dz z(1-z), dan),  dHG = (dr r(1-r), dz z(1-z), dan r)
//   dh_{t-1} = dh z + dHG W_hh
template <class T>
void gru_backward(const RnnShape& S, const std::vector<const T*>& whh, const T* G, const T* HN, const T* Hprev,
                  const T* dout, T* dh, T* dX, T* dHG) {
  using namespace rnn_detail;
  const int64_t H = S.H, G3 = 3 * H, LDG = S.D * G3, LDH = S.D * H, rs = S.row_stride();
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G3 * H), [&](int64_t d, int64_t s_rev, int64_t blk) {
    const int64_t s = S.T - 1 - s_rev, t = S.time_of(d, s), b0 = blk * kRnnRowBlock,
                  nb = std::min(kRnnRowBlock, S.B - b0);
    T* dhd = dh + d * S.B * H;
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      Arr<T> dx(dX + r * LDG + d * G3, G3), dhg(dHG + r * LDG + d * G3, G3);
      if (!S.valid(t, b)) {
        dx.setZero();
        dhg.setZero();
        continue;
      }
      Arr<T> dhb(dhd + b * H, H);
      if (dout) dhb += CArr<T>(dout + r * LDH + d * H, H);
      CArr<T> a(G + r * LDG + d * G3, G3), hn(HN + r * LDH + d * H, H), hp(Hprev + r * LDH + d * H, H);
      auto rg = a.segment(0, H), z = a.segment(H, H), n = a.segment(2 * H, H);
      dx.segment(2 * H, H) = dhb * (T(1) - z) * (T(1) - n * n);
      dx.segment(0, H) = dx.segment(2 * H, H) * hn * rg * (T(1) - rg);
      dx.segment(H, H) = dhb * (hp - n) * z * (T(1) - z);
      dhg.segment(0, 2 * H) = dx.segment(0, 2 * H);
      dhg.segment(2 * H, H) = dx.segment(2 * H, H) * rg;
      dhb *= z;
    }
    const int64_t r0 = S.row(t, b0);
    gemm_serial<T>(false, false, nb, H, G3, T(1), dHG + r0 * LDG + d * G3, rs * LDG, whh[size_t(d)], H, T(1),
                   dhd + b0 * H, H);
  });
}

}  // namespace attn::kernels::cpu
