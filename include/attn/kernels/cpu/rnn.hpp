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
// Series never interact inside a recurrence, so each unit runs all of its time steps on its own:
// one fork/join per layer (e.g. the two directions of task A's layer on two threads, or the 16
// row blocks of a batch of 980 split over the threads), never a barrier per step. The pointwise
// gate math works on whole blocks (Eigen array expressions over strided row blocks), and each
// unit's scratch is allocated once, not per step.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <memory>
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

// Runs unit(d, s, blk) for every direction d, row block blk and step s. Rows of different
// series never interact in a recurrence, so a unit (d, blk) runs all its steps in order without
// waiting for the others: one fork/join per layer, not one per step.
template <class F>
void rnn_schedule(const RnnShape& S, double flops_per_unit_step, const F& unit) {
  const int64_t nblk = S.blocks(), units = S.D * nblk;
  const bool par = units > 1 && flops_per_unit_step * double(S.T) > 2e5;
  auto run = [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u)
      for (int64_t s = 0; s < S.T; ++s) unit(u / nblk, s, u % nblk);
  };
  if (par) parallel_for(0, units, 1, run);
  else run(0, units);
}

namespace rnn_detail {
// Row-major 2-D views with a row stride: a block of rows of a gate / state matrix.
template <class T>
using Blk = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                       Eigen::OuterStride<>>;
template <class T>
using CBlk = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                        Eigen::OuterStride<>>;
template <class T>
Blk<T> blk(T* p, int64_t rows, int64_t cols, int64_t ld) {
  return Blk<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class T>
CBlk<T> cblk(const T* p, int64_t rows, int64_t cols, int64_t ld) {
  return CBlk<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class E>
auto sigmoid(const E& x) {
  using T = typename E::Scalar;
  return T(1) / (T(1) + (-x).exp());
}
// Per-unit scratch, reused across steps (no allocation inside the time loop).
template <class T>
struct Scratch {
  std::vector<T> a, b, c;
  explicit Scratch(int64_t n) : a(size_t(n)), b(size_t(n)), c(size_t(n)) {}
};
// True when every series of rows [b0, b0 + nb) is still running at time t.
inline bool all_valid(const RnnShape& S, int64_t t, int64_t b0, int64_t nb) {
  if (!S.lengths) return true;
  for (int64_t b = b0; b < b0 + nb; ++b)
    if (t >= S.lengths[b]) return false;
  return true;
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
  const int64_t nbmax = std::min(S.B, kRnnRowBlock);
  // one scratch per unit, created lazily by the thread that runs it
  std::vector<std::unique_ptr<Scratch<T>>> scratch(size_t(S.D * S.blocks()));
  rnn_schedule(S, 2.0 * double(nbmax) * double(G4 * H), [&](int64_t d, int64_t s, int64_t bk) {
    const int64_t t = S.time_of(d, s), b0 = bk * kRnnRowBlock, nb = std::min(kRnnRowBlock, S.B - b0);
    auto& sc = scratch[size_t(d * S.blocks() + bk)];
    if (!sc) sc = std::make_unique<Scratch<T>>(nbmax * H);
    T* hd = h + (d * S.B + b0) * H;
    T* cd = c + (d * S.B + b0) * H;
    const int64_t r0 = S.row(t, b0);
    T* Gt = G + r0 * LDG + d * G4;
    // gates of the block = h W_hh^T, written straight into the strided rows of G
    gemm_serial<T>(false, true, nb, G4, H, T(1), hd, H, whh[size_t(d)], H, T(0), Gt, rs * LDG);
    auto a = blk(Gt, nb, G4, rs * LDG);
    a += cblk(X + r0 * LDG + d * G4, nb, G4, rs * LDG);
    if (bhh[size_t(d)]) a.rowwise() += cblk(bhh[size_t(d)], 1, G4, G4).row(0);
    a.leftCols(2 * H) = sigmoid(a.leftCols(2 * H));
    a.middleCols(2 * H, H) = a.middleCols(2 * H, H).tanh();
    a.rightCols(H) = sigmoid(a.rightCols(H));
    auto hs = blk(hd, nb, H, H), cs = blk(cd, nb, H, H);
    blk(Hprev + r0 * LDH + d * H, nb, H, rs * LDH) = hs;
    blk(Cprev + r0 * LDH + d * H, nb, H, rs * LDH) = cs;
    auto tc = blk(TC + r0 * LDH + d * H, nb, H, rs * LDH);
    auto ob = blk(out + r0 * LDH + d * H, nb, H, rs * LDH);
    if (all_valid(S, t, b0, nb)) {
      cs = a.middleCols(H, H) * cs + a.leftCols(H) * a.middleCols(2 * H, H);
      tc = cs.tanh();
      hs = a.rightCols(H) * tc;
      ob = hs;
      return;
    }
    auto cn = blk(sc->a.data(), nb, H, H), hn = blk(sc->b.data(), nb, H, H);
    cn = a.middleCols(H, H) * cs + a.leftCols(H) * a.middleCols(2 * H, H);
    tc = cn.tanh();
    hn = a.rightCols(H) * tc;
    for (int64_t i = 0; i < nb; ++i) {
      if (S.valid(t, b0 + i)) {
        cs.row(i) = cn.row(i);
        hs.row(i) = hn.row(i);
        ob.row(i) = hn.row(i);
      } else {
        ob.row(i).setZero();
      }
    }
  });
}

// LSTM backward through time.
//   dout [rows, D*H] or null, dh / dc [D, B, H]: dL/dh_n, dL/dc_n in; dL/dh_0, dL/dc_0 out.
//   dG [rows, D*4H]: dL/da for every (t, b) (zero where t >= len_b), which is also dL/dX.
//   dh_t += dout_t;  do = dh tanh(c_t);  dc_t = dc + dh o (1 - tanh^2 c_t)
//   di = dc_t g,  df = dc_t c_{t-1},  dg = dc_t i,  dc_{t-1} = dc_t f
//   da = (di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)),  dh_{t-1} = da W_hh
// Steps t >= len_b: da = 0, dh and dc pass through unchanged, dout there is ignored (the output
// is the constant 0).
template <class T>
void lstm_backward(const RnnShape& S, const std::vector<const T*>& whh, const T* G, const T* Cprev, const T* TC,
                   const T* dout, T* dh, T* dc, T* dG) {
  using namespace rnn_detail;
  const int64_t H = S.H, G4 = 4 * H, LDG = S.D * G4, LDH = S.D * H, rs = S.row_stride();
  const int64_t nbmax = std::min(S.B, kRnnRowBlock);
  std::vector<std::unique_ptr<Scratch<T>>> scratch(size_t(S.D * S.blocks()));
  rnn_schedule(S, 2.0 * double(nbmax) * double(G4 * H), [&](int64_t d, int64_t s_rev, int64_t bk) {
    const int64_t s = S.T - 1 - s_rev, t = S.time_of(d, s), b0 = bk * kRnnRowBlock,
                  nb = std::min(kRnnRowBlock, S.B - b0);
    auto& sc = scratch[size_t(d * S.blocks() + bk)];
    if (!sc) sc = std::make_unique<Scratch<T>>(nbmax * H);
    T* dhd = dh + (d * S.B + b0) * H;
    T* dcd = dc + (d * S.B + b0) * H;
    const int64_t r0 = S.row(t, b0);
    T* dGt = dG + r0 * LDG + d * G4;
    auto da = blk(dGt, nb, G4, rs * LDG);
    auto a = cblk(G + r0 * LDG + d * G4, nb, G4, rs * LDG);
    auto tc = cblk(TC + r0 * LDH + d * H, nb, H, rs * LDH), cp = cblk(Cprev + r0 * LDH + d * H, nb, H, rs * LDH);
    auto i = a.leftCols(H), f = a.middleCols(H, H), g = a.middleCols(2 * H, H), o = a.rightCols(H);
    auto dhs = blk(dhd, nb, H, H), dcs = blk(dcd, nb, H, H);
    const bool full = all_valid(S, t, b0, nb);
    auto dht = blk(sc->a.data(), nb, H, H), dct = blk(sc->b.data(), nb, H, H);
    if (dout) dht = dhs + cblk(dout + r0 * LDH + d * H, nb, H, rs * LDH);
    else dht = dhs;
    dct = dcs + dht * o * (T(1) - tc * tc);  // dc_t
    da.leftCols(H) = dct * g * i * (T(1) - i);
    da.middleCols(H, H) = dct * cp * f * (T(1) - f);
    da.middleCols(2 * H, H) = dct * i * (T(1) - g * g);
    da.rightCols(H) = dht * tc * o * (T(1) - o);
    if (full) {
      dcs = dct * f;  // dc_{t-1}
      dhs.setZero();  // replaced by da W_hh below
    } else {
      for (int64_t k = 0; k < nb; ++k) {
        if (S.valid(t, b0 + k)) {
          dcs.row(k) = dct.row(k) * f.row(k);
          dhs.row(k).setZero();
        } else {
          da.row(k).setZero();
        }
      }
    }
    // rows with t >= len_b have da = 0: their dh passes through unchanged (beta = 1)
    gemm_serial<T>(false, false, nb, H, G4, T(1), dGt, rs * LDG, whh[size_t(d)], H, T(1), dhd, H);
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
  const int64_t nbmax = std::min(S.B, kRnnRowBlock);
  std::vector<std::unique_ptr<Scratch<T>>> scratch(size_t(S.D * S.blocks()));
  rnn_schedule(S, 2.0 * double(nbmax) * double(G3 * H), [&](int64_t d, int64_t s, int64_t bk) {
    const int64_t t = S.time_of(d, s), b0 = bk * kRnnRowBlock, nb = std::min(kRnnRowBlock, S.B - b0);
    auto& sc = scratch[size_t(d * S.blocks() + bk)];
    if (!sc) sc = std::make_unique<Scratch<T>>(nbmax * H);
    T* hd = h + (d * S.B + b0) * H;
    const int64_t r0 = S.row(t, b0);
    T* Gt = G + r0 * LDG + d * G3;
    gemm_serial<T>(false, true, nb, G3, H, T(1), hd, H, whh[size_t(d)], H, T(0), Gt, rs * LDG);
    auto a = blk(Gt, nb, G3, rs * LDG);
    auto x = cblk(X + r0 * LDG + d * G3, nb, G3, rs * LDG);
    if (bhh[size_t(d)]) a.rowwise() += cblk(bhh[size_t(d)], 1, G3, G3).row(0);
    auto hn = blk(HN + r0 * LDH + d * H, nb, H, rs * LDH);
    hn = a.rightCols(H);
    a.leftCols(2 * H) = sigmoid(x.leftCols(2 * H) + a.leftCols(2 * H));
    a.rightCols(H) = (x.rightCols(H) + a.leftCols(H) * hn).tanh();
    auto hs = blk(hd, nb, H, H);
    blk(Hprev + r0 * LDH + d * H, nb, H, rs * LDH) = hs;
    auto ob = blk(out + r0 * LDH + d * H, nb, H, rs * LDH);
    auto n = a.rightCols(H), z = a.middleCols(H, H);
    if (all_valid(S, t, b0, nb)) {
      hs = n + z * (hs - n);
      ob = hs;
      return;
    }
    auto hnew = blk(sc->a.data(), nb, H, H);
    hnew = n + z * (hs - n);
    for (int64_t i = 0; i < nb; ++i) {
      if (S.valid(t, b0 + i)) {
        hs.row(i) = hnew.row(i);
        ob.row(i) = hnew.row(i);
      } else {
        ob.row(i).setZero();
      }
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
  const int64_t nbmax = std::min(S.B, kRnnRowBlock);
  std::vector<std::unique_ptr<Scratch<T>>> scratch(size_t(S.D * S.blocks()));
  rnn_schedule(S, 2.0 * double(nbmax) * double(G3 * H), [&](int64_t d, int64_t s_rev, int64_t bk) {
    const int64_t s = S.T - 1 - s_rev, t = S.time_of(d, s), b0 = bk * kRnnRowBlock,
                  nb = std::min(kRnnRowBlock, S.B - b0);
    auto& sc = scratch[size_t(d * S.blocks() + bk)];
    if (!sc) sc = std::make_unique<Scratch<T>>(nbmax * H);
    T* dhd = dh + (d * S.B + b0) * H;
    const int64_t r0 = S.row(t, b0);
    auto dx = blk(dX + r0 * LDG + d * G3, nb, G3, rs * LDG);
    T* dHGt = dHG + r0 * LDG + d * G3;
    auto dhg = blk(dHGt, nb, G3, rs * LDG);
    auto a = cblk(G + r0 * LDG + d * G3, nb, G3, rs * LDG);
    auto hn = cblk(HN + r0 * LDH + d * H, nb, H, rs * LDH), hp = cblk(Hprev + r0 * LDH + d * H, nb, H, rs * LDH);
    auto rg = a.leftCols(H), z = a.middleCols(H, H), n = a.rightCols(H);
    auto dhs = blk(dhd, nb, H, H);
    auto dht = blk(sc->a.data(), nb, H, H);
    if (dout) dht = dhs + cblk(dout + r0 * LDH + d * H, nb, H, rs * LDH);
    else dht = dhs;
    dx.rightCols(H) = dht * (T(1) - z) * (T(1) - n * n);
    dx.leftCols(H) = dx.rightCols(H) * hn * rg * (T(1) - rg);
    dx.middleCols(H, H) = dht * (hp - n) * z * (T(1) - z);
    dhg.leftCols(2 * H) = dx.leftCols(2 * H);
    dhg.rightCols(H) = dx.rightCols(H) * rg;
    if (all_valid(S, t, b0, nb)) {
      dhs = dht * z;
    } else {
      for (int64_t k = 0; k < nb; ++k) {
        if (S.valid(t, b0 + k)) {
          dhs.row(k) = dht.row(k) * z.row(k);
        } else {
          dx.row(k).setZero();
          dhg.row(k).setZero();
        }
      }
    }
    gemm_serial<T>(false, false, nb, H, G3, T(1), dHGt, rs * LDG, whh[size_t(d)], H, T(1), dhd, H);
  });
}

}  // namespace attn::kernels::cpu
