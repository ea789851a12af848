#pragma once
// Fused recurrences: a whole LSTM / GRU layer (all time steps, one or two directions) as ONE
// autograd node with a hand-written backward through time. The input projection x W_ih^T + b_ih
// of all steps is computed before (one `linear`, i.e. one GEMM) and passed in as `xproj`; its
// gradient is the matrix of gate gradients this node returns, so the backward of the projection is
// again one GEMM for all steps. The raw loops are in kernels/cpu/rnn.hpp.
//
//   lstm_fused(xproj, h0, c0, w_hh, b_hh, lengths, batch_first) -> {output, h_n, c_n}
//   gru_fused (xproj, h0,     w_hh, b_hh, lengths, batch_first) -> {output, h_n}
//
// xproj: [T, B, D*G*H] (or [B, T, D*G*H] with batch_first), G = 4 (LSTM: i, f, g, o) or 3 (GRU:
// r, z, n), direction d in columns [d*G*H, (d+1)*G*H); direction 1 runs backwards in time.
// h0, c0: [D, B, H] or undefined (zeros). w_hh: D tensors [G*H, H]; b_hh: D tensors [G*H], or empty.
// lengths: empty (every series has T steps) or B values in [1, T]: steps t >= len_b leave the
// state of series b unchanged and give zero output, the reverse direction starts at len_b - 1,
// and h_n / c_n are the states after each series' last valid step (PyTorch's packed sequences).
// output: [T, B, D*H] (or [B, T, D*H]); h_n, c_n: [D, B, H].
#include <string>
#include <vector>
#include "../core/tensor.hpp"
#include "../kernels/cpu/gemm.hpp"
#include "../kernels/cpu/rnn.hpp"

namespace attn {
namespace detail {

inline std::string lengths_to_string(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Checks `lengths` against batch B and T steps (empty = all T).
inline void check_rnn_lengths(const char* op, const std::vector<int64_t>& lengths, int64_t B, int64_t T) {
  if (lengths.empty()) return;
  ATTN_CHECK(int64_t(lengths.size()) == B, op, ": got ", lengths.size(), " lengths ", lengths_to_string(lengths),
             " for a batch of ", B, " (need one length per series)");
  for (size_t b = 0; b < lengths.size(); ++b)
    ATTN_CHECK(lengths[b] >= 1 && lengths[b] <= T, op, ": length ", lengths[b], " of series ", b,
               " is outside [1, ", T, "] (lengths ", lengths_to_string(lengths), ", ", T, " time steps)");
}

struct RnnCheck {
  kernels::cpu::RnnShape S;
  int64_t gates = 0;
};

inline RnnCheck check_rnn_fused(const char* op, int64_t gates, const Tensor& xproj, const Tensor& h0, const Tensor& c0,
                                const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_hh,
                                const std::vector<int64_t>& lengths, bool batch_first) {
  RnnCheck rc;
  auto& S = rc.S;
  rc.gates = gates;
  const int64_t D = int64_t(w_hh.size());
  ATTN_CHECK(D == 1 || D == 2, op, ": need 1 or 2 directions (w_hh tensors), got ", D);
  ATTN_CHECK(b_hh.empty() || b_hh.size() == w_hh.size(), op, ": ", b_hh.size(), " b_hh tensors for ", D,
             " directions");
  ATTN_CHECK(xproj.dim() == 3, op, ": xproj must be 3-D [T, B, D*", gates, "*H], got ", to_string(xproj.shape()));
  ATTN_CHECK(w_hh[0].dim() == 2 && w_hh[0].size(0) == gates * w_hh[0].size(1), op, ": w_hh must be [", gates,
             "*H, H], got ", to_string(w_hh[0].shape()));
  const int64_t H = w_hh[0].size(1);
  S.T = xproj.size(batch_first ? 1 : 0);
  S.B = xproj.size(batch_first ? 0 : 1);
  S.H = H;
  S.D = D;
  S.batch_first = batch_first;
  ATTN_CHECK(xproj.size(2) == D * gates * H, op, ": xproj ", to_string(xproj.shape()), " needs last dim D*", gates,
             "*H = ", D * gates * H, " for w_hh ", to_string(w_hh[0].shape()), " and ", D, " direction(s)");
  for (int64_t d = 0; d < D; ++d) {
    ATTN_CHECK(w_hh[size_t(d)].shape() == w_hh[0].shape() && w_hh[size_t(d)].dtype() == xproj.dtype(), op, ": w_hh[",
               d, "] ", to_string(w_hh[size_t(d)].shape()), " ", dtype_name(w_hh[size_t(d)].dtype()),
               " does not match w_hh[0] ", to_string(w_hh[0].shape()), " / xproj ", dtype_name(xproj.dtype()));
    if (!b_hh.empty() && b_hh[size_t(d)].defined())
      ATTN_CHECK(b_hh[size_t(d)].shape() == Shape{gates * H} && b_hh[size_t(d)].dtype() == xproj.dtype(), op,
                 ": b_hh[", d, "] must be [", gates * H, "] ", dtype_name(xproj.dtype()), ", got ",
                 to_string(b_hh[size_t(d)].shape()), " ", dtype_name(b_hh[size_t(d)].dtype()));
  }
  const Shape st{D, S.B, H};
  for (const Tensor* s : {&h0, &c0})
    if (s->defined())
      ATTN_CHECK(s->shape() == st && s->dtype() == xproj.dtype(), op, ": initial state must be ", to_string(st), " ",
                 dtype_name(xproj.dtype()), ", got ", to_string(s->shape()), " ", dtype_name(s->dtype()));
  check_rnn_lengths(op, lengths, S.B, S.T);
  return rc;
}

template <class T>
std::vector<const T*> ptrs(const std::vector<Tensor>& ts) {
  std::vector<const T*> p;
  for (const Tensor& t : ts) p.push_back(t.defined() ? t.data<T>() : nullptr);
  return p;
}

inline Tensor state_or_zeros(const Tensor& s, const Shape& shape, DType dt) {
  if (!s.defined()) return Tensor::zeros(shape, dt);
  NoGradGuard ng;
  Tensor t = Tensor::empty(shape, dt);
  t.copy_(s);
  return t;
}

// Gradients of the recurrent weights from the gate gradients dA [rows, D*G*H] and the states
// before each step Hprev [rows, D*H]: dW_hh[d] = dA_d^T Hprev_d (one GEMM), db_hh[d] = column sums.
template <class T>
void rnn_weight_grads(const kernels::cpu::RnnShape& S, int64_t gates, const T* dA, const T* Hprev,
                      const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_hh, std::vector<Tensor>& gs,
                      size_t first) {
  const int64_t rows = S.T * S.B, GH = gates * S.H, LDA = S.D * GH, LDH = S.D * S.H;
  Tensor ones;
  for (int64_t d = 0; d < S.D; ++d) {
    if (w_hh[size_t(d)].requires_grad()) {
      Tensor dw = Tensor::empty({GH, S.H}, w_hh[0].dtype());
      kernels::cpu::gemm<T>(true, false, GH, S.H, rows, T(1), dA + d * GH, LDA, Hprev + d * S.H, LDH, T(0),
                            dw.data<T>(), S.H);
      gs[first + size_t(2 * d)] = dw;
    }
    if (!b_hh.empty() && b_hh[size_t(d)].defined() && b_hh[size_t(d)].requires_grad()) {
      if (!ones.defined()) ones = Tensor::ones({rows}, w_hh[0].dtype());
      Tensor db = Tensor::empty({GH}, w_hh[0].dtype());
      kernels::cpu::gemm<T>(false, false, 1, GH, rows, T(1), ones.data<T>(), rows, dA + d * GH, LDA, T(0),
                            db.data<T>(), GH);
      gs[first + size_t(2 * d + 1)] = db;
    }
  }
}

}  // namespace detail

inline std::vector<Tensor> lstm_fused(const Tensor& xproj, const Tensor& h0, const Tensor& c0,
                                      const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_hh,
                                      const std::vector<int64_t>& lengths = {}, bool batch_first = false) {
  auto rc = detail::check_rnn_fused("lstm_fused", 4, xproj, h0, c0, w_hh, b_hh, lengths, batch_first);
  auto S = rc.S;
  const int64_t rows = S.T * S.B, D = S.D, H = S.H;
  const DType dt = xproj.dtype();
  const Shape os = batch_first ? Shape{S.B, S.T, D * H} : Shape{S.T, S.B, D * H};
  Tensor out = Tensor::empty(os, dt);
  Tensor hn = detail::state_or_zeros(h0, {D, S.B, H}, dt), cn = detail::state_or_zeros(c0, {D, S.B, H}, dt);
  Tensor G = Tensor::empty({rows, D * 4 * H}, dt), Hprev = Tensor::empty({rows, D * H}, dt),
         Cprev = Tensor::empty({rows, D * H}, dt), TC = Tensor::empty({rows, D * H}, dt);
  auto lens = std::make_shared<std::vector<int64_t>>(lengths);
  S.lengths = lens->empty() ? nullptr : lens->data();
  ATTN_DISPATCH_FLOATING(dt, "lstm_fused", [&] {
    kernels::cpu::lstm_forward<scalar_t>(S, xproj.data<scalar_t>(), detail::ptrs<scalar_t>(w_hh),
                                         detail::ptrs<scalar_t>(b_hh.empty() ? std::vector<Tensor>(size_t(D)) : b_hh),
                                         hn.data<scalar_t>(), cn.data<scalar_t>(), G.data<scalar_t>(),
                                         Hprev.data<scalar_t>(), Cprev.data<scalar_t>(), TC.data<scalar_t>(),
                                         out.data<scalar_t>());
  });
  std::vector<Tensor> inputs{xproj, h0, c0};
  for (int64_t d = 0; d < D; ++d) {
    inputs.push_back(w_hh[size_t(d)]);
    inputs.push_back(b_hh.empty() ? Tensor() : b_hh[size_t(d)]);
  }
  // Backward through time (formulas in kernels::cpu::lstm_backward): da for every step, then
  // dxproj = da, dW_hh = da^T h_{t-1} and db_hh = sum of da (one GEMM each, all steps).
  record("lstm_fused", std::vector<Tensor*>{&out, &hn, &cn}, inputs,
         [S, lens, G, Hprev, Cprev, TC, w_hh, b_hh, xshape = xproj.shape(), dt,
          n_in = inputs.size()](const std::vector<Tensor>& g) {
           auto S2 = S;
           S2.lengths = lens->empty() ? nullptr : lens->data();
           const Shape st{S.D, S.B, S.H};
           Tensor dh = g[1].defined() ? g[1].clone() : Tensor::zeros(st, dt);
           Tensor dc = g[2].defined() ? g[2].clone() : Tensor::zeros(st, dt);
           Tensor dA = Tensor::empty(xshape, dt);
           std::vector<Tensor> gs(n_in);
           ATTN_DISPATCH_FLOATING(dt, "lstm_fused_backward", [&] {
             kernels::cpu::lstm_backward<scalar_t>(S2, detail::ptrs<scalar_t>(w_hh), G.data<scalar_t>(),
                                                   Cprev.data<scalar_t>(), TC.data<scalar_t>(),
                                                   g[0].defined() ? g[0].data<scalar_t>() : nullptr,
                                                   dh.data<scalar_t>(), dc.data<scalar_t>(), dA.data<scalar_t>());
             detail::rnn_weight_grads<scalar_t>(S2, 4, dA.data<scalar_t>(), Hprev.data<scalar_t>(), w_hh, b_hh, gs, 3);
           });
           gs[0] = dA;
           gs[1] = dh;
           gs[2] = dc;
           return gs;
         });
  return {out, hn, cn};
}

inline std::vector<Tensor> gru_fused(const Tensor& xproj, const Tensor& h0, const std::vector<Tensor>& w_hh,
                                     const std::vector<Tensor>& b_hh, const std::vector<int64_t>& lengths = {},
                                     bool batch_first = false) {
  auto rc = detail::check_rnn_fused("gru_fused", 3, xproj, h0, Tensor(), w_hh, b_hh, lengths, batch_first);
  auto S = rc.S;
  const int64_t rows = S.T * S.B, D = S.D, H = S.H;
  const DType dt = xproj.dtype();
  const Shape os = batch_first ? Shape{S.B, S.T, D * H} : Shape{S.T, S.B, D * H};
  Tensor out = Tensor::empty(os, dt);
  Tensor hn = detail::state_or_zeros(h0, {D, S.B, H}, dt);
  Tensor G = Tensor::empty({rows, D * 3 * H}, dt), HN = Tensor::empty({rows, D * H}, dt),
         Hprev = Tensor::empty({rows, D * H}, dt);
  auto lens = std::make_shared<std::vector<int64_t>>(lengths);
  S.lengths = lens->empty() ? nullptr : lens->data();
  ATTN_DISPATCH_FLOATING(dt, "gru_fused", [&] {
    kernels::cpu::gru_forward<scalar_t>(S, xproj.data<scalar_t>(), detail::ptrs<scalar_t>(w_hh),
                                        detail::ptrs<scalar_t>(b_hh.empty() ? std::vector<Tensor>(size_t(D)) : b_hh),
                                        hn.data<scalar_t>(), G.data<scalar_t>(), HN.data<scalar_t>(),
                                        Hprev.data<scalar_t>(), out.data<scalar_t>());
  });
  std::vector<Tensor> inputs{xproj, h0};
  for (int64_t d = 0; d < D; ++d) {
    inputs.push_back(w_hh[size_t(d)]);
    inputs.push_back(b_hh.empty() ? Tensor() : b_hh[size_t(d)]);
  }
  // Backward through time (formulas in kernels::cpu::gru_backward): dxproj = dX, and from the
  // hidden-side gate gradients dHG: dW_hh = dHG^T h_{t-1}, db_hh = sum of dHG.
  record("gru_fused", std::vector<Tensor*>{&out, &hn}, inputs,
         [S, lens, G, HN, Hprev, w_hh, b_hh, xshape = xproj.shape(), dt,
          n_in = inputs.size()](const std::vector<Tensor>& g) {
           auto S2 = S;
           S2.lengths = lens->empty() ? nullptr : lens->data();
           Tensor dh = g[1].defined() ? g[1].clone() : Tensor::zeros({S.D, S.B, S.H}, dt);
           Tensor dX = Tensor::empty(xshape, dt), dHG = Tensor::empty(xshape, dt);
           std::vector<Tensor> gs(n_in);
           ATTN_DISPATCH_FLOATING(dt, "gru_fused_backward", [&] {
             kernels::cpu::gru_backward<scalar_t>(S2, detail::ptrs<scalar_t>(w_hh), G.data<scalar_t>(),
                                                  HN.data<scalar_t>(), Hprev.data<scalar_t>(),
                                                  g[0].defined() ? g[0].data<scalar_t>() : nullptr,
                                                  dh.data<scalar_t>(), dX.data<scalar_t>(), dHG.data<scalar_t>());
             detail::rnn_weight_grads<scalar_t>(S2, 3, dHG.data<scalar_t>(), Hprev.data<scalar_t>(), w_hh, b_hh, gs, 2);
           });
           gs[0] = dX;
           gs[1] = dh;
           return gs;
         });
  return {out, hn};
}

}  // namespace attn
