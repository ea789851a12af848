#pragma once
// Raw CPU loops of the fused LSTM / GRU recurrences (no autograd; ops/rnn.hpp wraps them).
//
// Layout. Every buffer the recurrence keeps (gates G, saved states) is
// time-major: row t * B + b, so the B rows of one step are contiguous (one small GEMM per block of
// rows, no strided or TLB-unfriendly access); column block d of a row holds direction d. Only the
// layer output uses the caller's layout (row b * T + t with batch_first); its gradient is handed
// in time-major.
//
// Work is split into units (direction, block of kRnnRowBlock batch rows). A unit is always
// computed by one thread with the same instructions, and the set of units depends only on the
// shapes, never on the number of threads: results are bit-identical for any thread count.
// Series never interact inside a recurrence, so each unit runs all of its time steps on its own:
// one fork/join per layer (e.g. the two directions of a bidirectional layer on two threads, or the 16
// row blocks of a batch of 980 split over the threads), never a barrier per step. The pointwise
// gate math of a row is one fused pass (each gate element loaded once, SIMD lanes of the kernel
// path in use: rnn.inc), and nothing is allocated inside the time loop.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>
#include "../../core/parallel.hpp"
#include "gemm.hpp"
#include "simd.hpp"

namespace attn::kernels::cpu {

constexpr int64_t kRnnRowBlock = 64;

struct RnnShape {
  int64_t T = 0, B = 0, H = 0, D = 1;
  bool batch_first = false;          // layout of the layer's output
  const int64_t* lengths = nullptr;  // B valid lengths, or null (all T)

  int64_t row(int64_t t, int64_t b) const { return t * B + b; }  // internal buffers: time-major
  int64_t orow(int64_t t, int64_t b) const { return batch_first ? b * T + t : t * B + b; }  // output rows
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

}  // namespace attn::kernels::cpu

#define ATTN_ISA_INC "rnn.inc"
#include "isa_expand.inc"
#undef ATTN_ISA_INC

namespace attn::kernels::cpu {
namespace rnn_detail {
// The gate math of one row (rnn.inc) on the kernel path in use.
template <class T>
inline void lstm_fwd_row(int64_t H, T* a, T* c, T* tc, T* h) { ATTN_ISA_DISPATCH(lstm_fwd_row<T>(H, a, c, tc, h)); }
template <class T>
inline void lstm_bwd_row(int64_t H, const T* a, const T* tc, const T* cp, const T* dh, T* dc, T* da) {
  ATTN_ISA_DISPATCH(lstm_bwd_row<T>(H, a, tc, cp, dh, dc, da));
}
template <class T>
inline void gru_fwd_row(int64_t H, T* a, const T* x, T* hn, T* h) { ATTN_ISA_DISPATCH(gru_fwd_row<T>(H, a, x, hn, h)); }
template <class T>
inline void gru_bwd_row(int64_t H, const T* a, const T* hn, const T* hp, T* dh, T* dx, T* dhg) {
  ATTN_ISA_DISPATCH(gru_bwd_row<T>(H, a, hn, hp, dh, dx, dhg));
}
template <class T>
inline void tanh_row(int64_t H, const T* x, T* y) { ATTN_ISA_DISPATCH(tanh_row<T>(H, x, y)); }
}  // namespace rnn_detail

// ---------------------------------------------------------------------------------------------
// Per-unit scratch for the inference path (nothing saved): the gate block [kRnnRowBlock, ld]
// (and for the GRU the input projection block) plus one row of H.
template <class T>
class RnnScratch {
 public:
  RnnScratch(const RnnShape& S, int64_t per_row) : per_unit_(kRnnRowBlock * per_row + S.H),
        buf_(size_t(S.D * S.blocks() * per_unit_)) {}
  T* unit(const RnnShape& S, int64_t d, int64_t bk) { return buf_.data() + (d * S.blocks() + bk) * per_unit_; }

 private:
  int64_t per_unit_;
  std::vector<T> buf_;
};

// LSTM forward over all steps.
//   whh[d]   W_hh^T packed ([H, 4H] as op(B); kernels/cpu/gemm.hpp PackedB)
//   h, c     [D, B, H]     initial state in, final state (h_n, c_n) out
//   out      [rows, D*H]   h_t, zero where t >= len_b
//   project(d, t, b0, nb, dst, ld) writes the input projection x W_ih^T + b_ih + b_hh of rows
//            b0..b0+nb at step t, direction d, into dst (row stride ld). It is called inside the
//            step, so the gate rows are still in cache for h W_hh^T and the gate math.
// Training (G != null): saved for the backward:
//   G      [rows, D*4H]  the activated gates (i, f, g, o)
//   Hprev / Cprev [rows, D*H] the state before the step, TC [rows, D*H] tanh(c_t).
// Inference (G, Hprev, Cprev, TC all null): the gates live in a per-unit scratch block and
// nothing is saved, so memory is O(B H) beyond the output.
//   i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o),  a = x W_ih^T + b_ih + h W_hh^T + b_hh
//   c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)
template <class T, class Project>
void lstm_forward(const RnnShape& S, const std::vector<PackedB<T>>& whh, T* h, T* c, T* G, T* Hprev, T* Cprev,
                  T* TC, T* out, const Project& project) {
  using namespace rnn_detail;
  const int64_t H = S.H, G4 = 4 * H, LDG = S.D * G4, LDH = S.D * H;
  RnnScratch<T> scratch(S, G ? 0 : G4);
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G4 * H), [&](int64_t d, int64_t s, int64_t bk) {
    const int64_t t = S.time_of(d, s), b0 = bk * kRnnRowBlock, nb = std::min(kRnnRowBlock, S.B - b0);
    T* scr = G ? nullptr : scratch.unit(S, d, bk);
    // gates of the block: the input projection, then += h W_hh^T in place
    const int64_t ldg = G ? LDG : G4;
    T* gates = G ? G + S.row(t, b0) * LDG + d * G4 : scr;
    project(d, t, b0, nb, gates, ldg);
    gemm_prepacked<T>(nb, T(1), h + (d * S.B + b0) * H, H, whh[size_t(d)], T(1), gates, ldg);
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      T* hb = h + (d * S.B + b) * H;
      T* cb = c + (d * S.B + b) * H;
      T* ob = out + S.orow(t, b) * LDH + d * H;
      if (Hprev) {
        std::copy(hb, hb + H, Hprev + r * LDH + d * H);
        std::copy(cb, cb + H, Cprev + r * LDH + d * H);
      }
      if (!S.valid(t, b)) {  // series b has ended: state unchanged, output 0
        std::fill(ob, ob + H, T(0));
        continue;
      }
      lstm_fwd_row<T>(H, gates + (b - b0) * ldg, cb, TC ? TC + r * LDH + d * H : scr + kRnnRowBlock * G4, hb);
      std::copy(hb, hb + H, ob);
    }
  });
}

// Weight and bias gradients of a layer, accumulated inside the backward loop while each step's
// gate gradients are still in cache (instead of a second pass over all T*B rows afterwards):
//   dW_ih += dX_t^T x_t,  dW_hh += dHG_t^T h_{t-1},  db_ih += 1^T dX_t,  db_hh += 1^T dHG_t
// (LSTM: dHG = dX = da). Each unit (direction, row block) sums into its own partial; reduce()
// adds the partials of a direction in block order, so the result never depends on the thread
// count. x is the time-major layer input [rows, I], Hprev the saved states [rows, D*H].
template <class T>
class RnnWeightGrads {
 public:
  RnnWeightGrads(const RnnShape& S, int64_t gates, const T* x, int64_t I, const T* Hprev, bool bias)
      : S_(S), GH_(gates * S.H), I_(I), x_(x), Hprev_(Hprev), bias_(bias),
        per_unit_(GH_ * (I + S.H) + (bias ? 2 * GH_ : 0)), buf_(size_t(S.D * S.blocks() * per_unit_), T(0)) {}

  // Rows b0..b0+nb of step t, direction d; dX / dHG point at the block's first row (stride ldg).
  void step(int64_t d, int64_t bk, int64_t t, int64_t nb, const T* dX, const T* dHG, int64_t ldg) {
    T* u = unit(d, bk);
    const int64_t H = S_.H, r0 = S_.row(t, bk * kRnnRowBlock);
    // dW_ih^T [I, GH] += x_t^T dX_t: for a univariate input one row of GH sums, not GH sums of one
    gemm_serial<T>(true, false, I_, GH_, nb, T(1), x_ + r0 * I_, I_, dX, ldg, T(1), u, GH_);
    gemm_serial<T>(true, false, GH_, H, nb, T(1), dHG, ldg, Hprev_ + r0 * S_.D * H + d * H, S_.D * H, T(1),
                   u + GH_ * I_, H);
    if (!bias_) return;
    T* bih = u + GH_ * (I_ + H);
    T* bhh = bih + GH_;
    for (int64_t i = 0; i < nb; ++i)
      for (int64_t j = 0; j < GH_; ++j) bih[j] += dX[i * ldg + j];
    if (dHG != dX)
      for (int64_t i = 0; i < nb; ++i)
        for (int64_t j = 0; j < GH_; ++j) bhh[j] += dHG[i * ldg + j];
  }

  // Sums of direction d: dW_ih [GH, I], dW_hh [GH, H], db_ih / db_hh [GH] (any may be null;
  // db_hh == db_ih's sums when dHG was dX).
  void reduce(int64_t d, T* dwih, T* dwhh, T* dbih, T* dbhh, bool hh_is_ih) const {
    const int64_t H = S_.H;
    auto sum = [&](T* dst, int64_t off, int64_t n) {
      if (!dst) return;
      std::fill(dst, dst + n, T(0));
      for (int64_t bk = 0; bk < S_.blocks(); ++bk) {
        const T* u = unit(d, bk) + off;
        for (int64_t j = 0; j < n; ++j) dst[j] += u[j];
      }
    };
    if (dwih) {  // kept transposed, [I, GH]
      std::vector<T> t(size_t(GH_ * I_));
      sum(t.data(), 0, GH_ * I_);
      for (int64_t j = 0; j < GH_; ++j)
        for (int64_t i = 0; i < I_; ++i) dwih[j * I_ + i] = t[size_t(i * GH_ + j)];
    }
    sum(dwhh, GH_ * I_, GH_ * H);
    if (!bias_) return;
    sum(dbih, GH_ * (I_ + H), GH_);
    sum(dbhh, GH_ * (I_ + H) + (hh_is_ih ? 0 : GH_), GH_);
  }

 private:
  T* unit(int64_t d, int64_t bk) { return buf_.data() + (d * S_.blocks() + bk) * per_unit_; }
  const T* unit(int64_t d, int64_t bk) const { return buf_.data() + (d * S_.blocks() + bk) * per_unit_; }
  RnnShape S_;
  int64_t GH_, I_;
  const T* x_;
  const T* Hprev_;
  bool bias_;
  int64_t per_unit_;
  std::vector<T> buf_;
};

// LSTM backward through time. whh[d]: W_hh packed ([4H, H] as op(B)); the weight gradients are
// accumulated into wgrads step by step.
//   dout [rows, D*H] time-major (row t * B + b, whatever the output's layout: read step by step,
//        a batch-first gradient would be T*D*H elements apart per series) or null;
//   dh / dc [D, B, H]: dL/dh_n, dL/dc_n in; dL/dh_0, dL/dc_0 out.
//   dG [rows, D*4H]: dL/da for every (t, b) (zero where t >= len_b), which is also dL/dX.
//   dh_t += dout_t;  do = dh tanh(c_t);  dc_t = dc + dh o (1 - tanh^2 c_t)
//   di = dc_t g,  df = dc_t c_{t-1},  dg = dc_t i,  dc_{t-1} = dc_t f
//   da = (di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)),  dh_{t-1} = da W_hh
// Steps t >= len_b: da = 0, dh and dc pass through unchanged, dout there is ignored (the output
// is the constant 0).
template <class T>
void lstm_backward(const RnnShape& S, const std::vector<PackedB<T>>& whh, const T* G, const T* Cprev, const T* TC,
                   const T* dout, T* dh, T* dc, T* dG, RnnWeightGrads<T>& wgrads) {
  using namespace rnn_detail;
  const int64_t H = S.H, G4 = 4 * H, LDG = S.D * G4, LDH = S.D * H;
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G4 * H), [&](int64_t d, int64_t s_rev, int64_t bk) {
    const int64_t s = S.T - 1 - s_rev, t = S.time_of(d, s), b0 = bk * kRnnRowBlock,
                  nb = std::min(kRnnRowBlock, S.B - b0);
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      T* da = dG + r * LDG + d * G4;
      if (!S.valid(t, b)) {
        std::fill(da, da + G4, T(0));
        continue;
      }
      T* dhb = dh + (d * S.B + b) * H;
      if (dout) {
        const T* go = dout + r * LDH + d * H;
        for (int64_t j = 0; j < H; ++j) dhb[j] += go[j];
      }
      lstm_bwd_row<T>(H, G + r * LDG + d * G4, TC + r * LDH + d * H, Cprev + r * LDH + d * H, dhb,
                      dc + (d * S.B + b) * H, da);
      std::fill(dhb, dhb + H, T(0));  // replaced by da W_hh below
    }
    // rows with t >= len_b have da = 0: their dh passes through unchanged (beta = 1)
    const T* dab = dG + S.row(t, b0) * LDG + d * G4;
    gemm_prepacked<T>(nb, T(1), dab, LDG, whh[size_t(d)], T(1), dh + (d * S.B + b0) * H, H);
    wgrads.step(d, bk, t, nb, dab, dab, LDG);
  });
}

// ---------------------------------------------------------------------------------------------
// GRU forward (PyTorch's formulation, gate order r, z, n). whh[d]: W_hh^T packed ([H, 3H]).
//   X = x W_ih^T + b_ih (written by project(d, t, b0, nb, dst, ld) into a per-unit scratch block,
//   as for the LSTM; not saved);  hg = h W_hh^T + b_hh
//   r = s(x_r + hg_r),  z = s(x_z + hg_z),  n = tanh(x_n + r * hg_n),  h_t = n + z * (h_{t-1} - n)
// Training: saved G [rows, D*3H] (r, z, n), HN [rows, D*H] hg_n, Hprev [rows, D*H].
// Inference (G, HN, Hprev all null): the gates and hg_n live in the scratch too; nothing is saved.
template <class T, class Project>
void gru_forward(const RnnShape& S, const std::vector<PackedB<T>>& whh, const std::vector<const T*>& bhh, T* h, T* G,
                 T* HN, T* Hprev, T* out, const Project& project) {
  using namespace rnn_detail;
  const int64_t H = S.H, G3 = 3 * H, LDG = S.D * G3, LDH = S.D * H;
  RnnScratch<T> scratch(S, G ? G3 : 2 * G3);  // per row: X (training) or [gates | X] (inference)
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G3 * H), [&](int64_t d, int64_t s, int64_t bk) {
    const int64_t t = S.time_of(d, s), b0 = bk * kRnnRowBlock, nb = std::min(kRnnRowBlock, S.B - b0);
    T* scr = scratch.unit(S, d, bk);
    const int64_t ldg = G ? LDG : 2 * G3, ldx = G ? G3 : 2 * G3;
    T* gates = G ? G + S.row(t, b0) * LDG + d * G3 : scr;
    T* xb = G ? scr : scr + G3;
    project(d, t, b0, nb, xb, ldx);
    gemm_prepacked<T>(nb, T(1), h + (d * S.B + b0) * H, H, whh[size_t(d)], T(0), gates, ldg);
    const T* bias = bhh[size_t(d)];
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      T* hb = h + (d * S.B + b) * H;
      T* ob = out + S.orow(t, b) * LDH + d * H;
      if (Hprev) std::copy(hb, hb + H, Hprev + r * LDH + d * H);
      if (!S.valid(t, b)) {
        std::fill(ob, ob + H, T(0));
        continue;
      }
      T* a = gates + (b - b0) * ldg;
      if (bias)
        for (int64_t j = 0; j < G3; ++j) a[j] += bias[j];
      gru_fwd_row<T>(H, a, xb + (b - b0) * ldx, HN ? HN + r * LDH + d * H : scr + kRnnRowBlock * 2 * G3, hb);
      std::copy(hb, hb + H, ob);
    }
  });
}

// GRU backward through time (whh[d]: W_hh packed, [3H, H] as op(B); dout time-major or null and
// weight gradients into wgrads, as for the LSTM). dX [rows, D*3H] = dL/dX,
// dHG [rows, D*3H] = dL/dhg (both zero where t >= len_b); dh [D, B, H]: dL/dh_n in, dL/dh_0 out.
//   dn = dh (1 - z),  dz = dh (h_{t-1} - n),  dan = dn (1 - n^2),  dr = dan hg_n
//   dX = (dr r(1-r), dz z(1-z), dan),  dHG = (dr r(1-r), dz z(1-z), dan r)
//   dh_{t-1} = dh z + dHG W_hh
template <class T>
void gru_backward(const RnnShape& S, const std::vector<PackedB<T>>& whh, const T* G, const T* HN, const T* Hprev,
                  const T* dout, T* dh, T* dX, T* dHG, RnnWeightGrads<T>& wgrads) {
  using namespace rnn_detail;
  const int64_t H = S.H, G3 = 3 * H, LDG = S.D * G3, LDH = S.D * H;
  rnn_schedule(S, 2.0 * double(std::min(S.B, kRnnRowBlock)) * double(G3 * H), [&](int64_t d, int64_t s_rev, int64_t bk) {
    const int64_t s = S.T - 1 - s_rev, t = S.time_of(d, s), b0 = bk * kRnnRowBlock,
                  nb = std::min(kRnnRowBlock, S.B - b0);
    for (int64_t b = b0; b < b0 + nb; ++b) {
      const int64_t r = S.row(t, b);
      T* dx = dX + r * LDG + d * G3;
      T* dhg = dHG + r * LDG + d * G3;
      if (!S.valid(t, b)) {
        std::fill(dx, dx + G3, T(0));
        std::fill(dhg, dhg + G3, T(0));
        continue;
      }
      T* dhb = dh + (d * S.B + b) * H;
      if (dout) {
        const T* go = dout + r * LDH + d * H;
        for (int64_t j = 0; j < H; ++j) dhb[j] += go[j];
      }
      gru_bwd_row<T>(H, G + r * LDG + d * G3, HN + r * LDH + d * H, Hprev + r * LDH + d * H, dhb, dx, dhg);
    }
    const int64_t r0 = S.row(t, b0);
    gemm_prepacked<T>(nb, T(1), dHG + r0 * LDG + d * G3, LDG, whh[size_t(d)], T(1), dh + (d * S.B + b0) * H, H);
    wgrads.step(d, bk, t, nb, dX + r0 * LDG + d * G3, dHG + r0 * LDG + d * G3, LDG);
  });
}

// ---------------------------------------------------------------------------------------------
// One step of a cell for B rows (nn::LSTMCell / nn::GRUCell as one autograd node, ops/rnn.hpp):
// the layers' fused gate math (lstm_fwd_row, ...), the products around it are the caller's.
//
// LSTM forward. a [B, 4H]: x W_ih^T + b_ih + h W_hh^T + b_hh in, activated gates (i, f, g, o)
// out; c [B, H] the state before (read only); c_out, h_out [B, H] the new state.
//   c_out = f c + i g,  h_out = o tanh(c_out)
template <class T>
void lstm_cell_forward(int64_t B, int64_t H, T* a, const T* c, T* c_out, T* h_out) {
  T stack_tc[256];
  std::vector<T> heap_tc(H > 256 ? static_cast<size_t>(H) : 0);
  T* tc = H > 256 ? heap_tc.data() : stack_tc;  // tanh(c_t) of one row (not needed after the row)
  for (int64_t b = 0; b < B; ++b) {
    std::copy(c + b * H, c + (b + 1) * H, c_out + b * H);
    rnn_detail::lstm_fwd_row<T>(H, a + b * 4 * H, c_out + b * H, tc, h_out + b * H);
  }
}

// LSTM backward of one step. a: the activated gates; c, c_out: the states before and after;
// dh, dc [B, H]: dL/dh_out, dL/dc_out (either may be null: zero). Out: da [B, 4H] = dL/da and
// dc_prev [B, H] = dL/dc. tanh(c_out) is recomputed (same bits as the forward's).
//   dc_t = dc + dh o (1 - tanh^2 c_out);  da = (dc_t g i(1-i), dc_t c f(1-f), dc_t i (1-g^2),
//   dh tanh(c_out) o(1-o));  dc_prev = dc_t f
template <class T>
void lstm_cell_backward(int64_t B, int64_t H, const T* a, const T* c, const T* c_out, const T* dh, const T* dc, T* da,
                        T* dc_prev) {
  std::vector<T> tc(static_cast<size_t>(H)), zero(dh ? 0 : static_cast<size_t>(H), T(0));
  for (int64_t b = 0; b < B; ++b) {
    T* dcb = dc_prev + b * H;
    if (dc) std::copy(dc + b * H, dc + (b + 1) * H, dcb);
    else std::fill(dcb, dcb + H, T(0));
    rnn_detail::tanh_row<T>(H, c_out + b * H, tc.data());
    rnn_detail::lstm_bwd_row<T>(H, a + b * 4 * H, tc.data(), c + b * H, dh ? dh + b * H : zero.data(), dcb,
                                da + b * 4 * H);
  }
}

// GRU forward of one step. gi [B, 3H] = x W_ih^T + b_ih (read); gh [B, 3H] = h W_hh^T + b_hh in,
// gates (r, z, n) out; hn [B, H] out: hg_n (saved for the backward); h [B, H] the state before;
// h_out [B, H] the new state.
//   r = s(gi_r + gh_r), z = s(gi_z + gh_z), n = tanh(gi_n + r gh_n), h_out = n + z (h - n)
template <class T>
void gru_cell_forward(int64_t B, int64_t H, const T* gi, T* gh, T* hn, const T* h, T* h_out) {
  for (int64_t b = 0; b < B; ++b) {
    std::copy(h + b * H, h + (b + 1) * H, h_out + b * H);
    rnn_detail::gru_fwd_row<T>(H, gh + b * 3 * H, gi + b * 3 * H, hn + b * H, h_out + b * H);
  }
}

// GRU backward of one step. g: gates (r, z, n), hn: hg_n, h: the state before; dh [B, H]
// dL/dh_out (not null). Out: dx [B, 3H] = dL/dgi, dhg [B, 3H] = dL/dgh, dh_prev [B, H] = dh z
// (the part of dL/dh not through W_hh; the caller adds dhg W_hh).
//   dn = dh (1 - z), dz = dh (h - n), dan = dn (1 - n^2), dr = dan hg_n
//   dx = (dr r(1-r), dz z(1-z), dan),  dhg = (dr r(1-r), dz z(1-z), dan r)
template <class T>
void gru_cell_backward(int64_t B, int64_t H, const T* g, const T* hn, const T* h, const T* dh, T* dx, T* dhg,
                       T* dh_prev) {
  for (int64_t b = 0; b < B; ++b) {
    T* d = dh_prev + b * H;
    std::copy(dh + b * H, dh + (b + 1) * H, d);
    rnn_detail::gru_bwd_row<T>(H, g + b * 3 * H, hn + b * H, h + b * H, d, dx + b * 3 * H, dhg + b * 3 * H);
  }
}

// [B, T, F] <-> [T, B, F] copy (to_time_major: src is [B, T, F]).
template <class T>
void swap_bt(const T* src, T* dst, int64_t B, int64_t Tn, int64_t F, bool to_time_major) {
  parallel_for(0, B, rows_grain(kGrainLaneWork, Tn * F), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t bt = (b * Tn + t) * F, tb = (t * B + b) * F;
        if (to_time_major) std::copy_n(src + bt, F, dst + tb);
        else std::copy_n(src + tb, F, dst + bt);
      }
  });
}

}  // namespace attn::kernels::cpu
