#pragma once
// Fused recurrent layers: one LSTM / GRU layer (all time steps, one or two directions) as ONE
// autograd node with a hand-written backward through time. Raw loops: kernels/cpu/rnn.hpp.
//
//   lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first) -> {output, h_n, c_n}
//   gru_layer (x, h0,     w_ih, w_hh, b_ih, b_hh, lengths, batch_first) -> {output, h_n}
//
// Forward: the recurrence runs step by step; per step and block of series, the input projection
// x_t W_ih^T + b and h W_hh^T (two small GEMMs with packed weights) and then the pointwise gate
// math, all on the same gate rows while they are in cache, saving the gates and states the
// backward needs. In
// inference (no input requires grad, or under NoGradGuard) nothing is saved and each step's input
// projection is computed inside the recurrence, so memory stays O(B H) beyond the output.
// Backward: one reverse loop over time gives the gate gradients dA of every step (per step one
// small GEMM dA W_hh for dh_{t-1}, and dW_ih += dA^T x_t, dW_hh += dA^T h_{t-1}, db += column
// sums of dA while dA is in cache); then, for all steps at once, dx = dA [W_ih^0; W_ih^1] (one GEMM).
//
// Shapes (PyTorch's): x [T, B, I] ([B, T, I] with batch_first); h0, c0 [D, B, H] or undefined
// (zeros); w_ih: D tensors [G*H, I], w_hh: D tensors [G*H, H], b_ih / b_hh: D tensors [G*H] or
// empty (no bias), G = 4 (LSTM gates i, f, g, o) or 3 (GRU gates r, z, n); direction 1 runs
// backwards in time. output [T, B, D*H] ([B, T, D*H]), direction d in columns [d*H, (d+1)*H);
// h_n, c_n [D, B, H].
// lengths: empty (every series has T steps) or B values in [1, T]: steps t >= len_b leave the
// state of series b unchanged and give zero output, the reverse direction starts at len_b - 1,
// and h_n / c_n are the states after each series' last valid step (PyTorch's packed sequences).
//
// One step of a cell, also one node (nn::LSTMCell / nn::GRUCell; PyTorch's lstm_cell / gru_cell):
//
//   lstm_cell(x, {h, c}, w_ih, w_hh, b_ih, b_hh) -> {h', c'}
//   gru_cell (x, h,      w_ih, w_hh, b_ih, b_hh) -> h'
//
// The same gate math as the layers (kernels/cpu/rnn.hpp), between two products in the forward
// and four in the backward. detail::lstm_cell_composed / gru_cell_composed build the same step
// from basic differentiable ops: the reference in the tests, and the path for tensors on a GPU.
//
// Layout: this file holds the public ops and their recorded backward; ops/detail/rnn.hpp the
// argument checks and the tensor-level helpers (input projection, weight packing, gradients of
// the inputs); kernels/cpu/rnn.hpp the loops; ops/cuda/rnn.hpp the CUDA path.
#include "../core/tensor.hpp"

namespace attn {
ATTN_API std::vector<Tensor> lstm_layer(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                        const std::vector<Tensor>& w_ih, const std::vector<Tensor>& w_hh,
                                        const std::vector<Tensor>& b_ih = {}, const std::vector<Tensor>& b_hh = {},
                                        const std::vector<int64_t>& lengths = {}, bool batch_first = false);
ATTN_API std::vector<Tensor> gru_layer(const Tensor& x, const Tensor& h0, const std::vector<Tensor>& w_ih,
                                       const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_ih = {},
                                       const std::vector<Tensor>& b_hh = {}, const std::vector<int64_t>& lengths = {},
                                       bool batch_first = false);
ATTN_API std::pair<Tensor, Tensor> lstm_cell(const Tensor& x, const std::pair<Tensor, Tensor>& hx, const Tensor& w_ih,
                                             const Tensor& w_hh, const Tensor& b_ih = Tensor(),
                                             const Tensor& b_hh = Tensor());
ATTN_API Tensor gru_cell(const Tensor& x, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                         const Tensor& b_ih = Tensor(), const Tensor& b_hh = Tensor());
namespace detail {
// Used by nn::RNNBase (defined in ops/detail/rnn.hpp): the `lengths` check, and one step composed
// of basic ops, the reference for lstm_cell / gru_cell and their path on other devices.
ATTN_API void check_rnn_lengths(const char* op, const std::vector<int64_t>& lengths, int64_t B, int64_t T);
ATTN_API std::pair<Tensor, Tensor> lstm_cell_composed(const Tensor& x, const Tensor& h, const Tensor& c,
                                                      const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                                                      const Tensor& b_hh);
ATTN_API Tensor gru_cell_composed(const Tensor& x, const Tensor& h, const Tensor& w_ih, const Tensor& w_hh,
                                  const Tensor& b_ih, const Tensor& b_hh);
}  // namespace detail
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <memory>
#include <vector>
#include "../kernels/cpu/rnn.hpp"
#include "cuda/rnn.hpp"
#include "detail/rnn.hpp"

namespace attn {

ATTN_API std::vector<Tensor> lstm_layer(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                      const std::vector<Tensor>& w_ih, const std::vector<Tensor>& w_hh,
                                      const std::vector<Tensor>& b_ih, const std::vector<Tensor>& b_hh,
                                      const std::vector<int64_t>& lengths, bool batch_first) {
  auto S = detail::check_rnn_layer("lstm_layer", 4, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first);
  const int64_t rows = S.T * S.B, D = S.D, H = S.H;
  const DType dt = x.dtype();
  const auto inputs = detail::rnn_layer_inputs(x, h0, c0, w_ih, w_hh, b_ih, b_hh);
  if (detail::on_cuda(x))
    return cuda_ops::rnn_layer(true, S.T, S.B, H, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, batch_first, inputs);
  const Shape os = batch_first ? Shape{S.B, S.T, D * H} : Shape{S.T, S.B, D * H};
  Tensor out = Tensor::empty(os, dt);
  Tensor hn = detail::state_or_zeros(h0, {D, S.B, H}, dt), cn = detail::state_or_zeros(c0, {D, S.B, H}, dt);
  const bool track = grad_needed(inputs);
  // Saved for the backward (training only): activated gates, states before each step, tanh(c_t).
  Tensor G, Hprev, Cprev, TC, wcat, xt;
  if (track) {
    G = Tensor::empty({rows, D * 4 * H}, dt);
    Hprev = Tensor::empty({rows, D * H}, dt);
    Cprev = Tensor::empty({rows, D * H}, dt);
    TC = Tensor::empty({rows, D * H}, dt);
  }
  auto lens = std::make_shared<const std::vector<int64_t>>(lengths);
  S.lengths = lens->empty() ? nullptr : lens->data();
  ATTN_DISPATCH_FLOATING(dt, "lstm_layer", [&] {
    xt = detail::time_major<scalar_t>(x, batch_first);
    const detail::InputProjection<scalar_t> proj(S, 4, xt, w_ih, b_ih, b_hh, /*fold_hh=*/true);
    wcat = proj.wcat();
    auto project = [&](int64_t d, int64_t t, int64_t b0, int64_t nb, scalar_t* dst, int64_t ld) {
      proj.rows(S.row(t, b0), nb, d, dst, ld);
    };
    auto ptr = [](Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
    kernels::cpu::lstm_forward<scalar_t>(S, detail::pack_whh<scalar_t>(w_hh, false), hn.data<scalar_t>(),
                                         cn.data<scalar_t>(), ptr(G), ptr(Hprev), ptr(Cprev), ptr(TC),
                                         out.data<scalar_t>(), project);
  });
  // Backward through time (formulas in kernels::cpu::lstm_backward) gives da for every step and,
  // inside the loop, dW_ih += da^T x_t, dW_hh += da^T h_{t-1}, db_ih = db_hh += sum of da
  // (RnnWeightGrads); then dx = da W_ih for all steps at once.
  record("lstm_layer", std::vector<Tensor*>{&out, &hn, &cn}, inputs,
         [S, lens, G, Hprev, Cprev, TC, x, xt, wcat, w_ih, w_hh, b_ih, b_hh, dt,
          n_in = inputs.size()](const std::vector<Tensor>& g) {
           auto S2 = S;
           S2.lengths = lens->empty() ? nullptr : lens->data();
           const Shape st{S.D, S.B, S.H};
           Tensor dh = g[1].defined() ? g[1].clone() : Tensor::zeros(st, dt);
           Tensor dc = g[2].defined() ? g[2].clone() : Tensor::zeros(st, dt);
           Tensor dA = Tensor::empty({S.T * S.B, S.D * 4 * S.H}, dt);
           std::vector<Tensor> gs(n_in);
           ATTN_DISPATCH_FLOATING(dt, "lstm_layer_backward", [&] {
             const Tensor dout = g[0].defined() ? detail::time_major<scalar_t>(g[0], S.batch_first) : Tensor();
             kernels::cpu::RnnWeightGrads<scalar_t> wg(S2, 4, xt.data<scalar_t>(), xt.size(-1), Hprev.data<scalar_t>(),
                                                       !b_ih.empty());
             kernels::cpu::lstm_backward<scalar_t>(S2, detail::pack_whh<scalar_t>(w_hh, true), G.data<scalar_t>(),
                                                   Cprev.data<scalar_t>(), TC.data<scalar_t>(),
                                                   dout.defined() ? dout.data<scalar_t>() : nullptr,
                                                   dh.data<scalar_t>(), dc.data<scalar_t>(), dA.data<scalar_t>(), wg);
             detail::rnn_layer_grads<scalar_t>(S2, 4, x, wcat, dA.data<scalar_t>(), wg, w_ih, w_hh, b_ih, b_hh, gs);
           });
           gs[1] = dh;
           gs[2] = dc;
           return gs;
         });
  return {out, hn, cn};
}

ATTN_API std::vector<Tensor> gru_layer(const Tensor& x, const Tensor& h0, const std::vector<Tensor>& w_ih,
                                     const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_ih,
                                     const std::vector<Tensor>& b_hh, const std::vector<int64_t>& lengths,
                                     bool batch_first) {
  auto S = detail::check_rnn_layer("gru_layer", 3, x, h0, Tensor(), w_ih, w_hh, b_ih, b_hh, lengths, batch_first);
  const int64_t rows = S.T * S.B, D = S.D, H = S.H;
  const DType dt = x.dtype();
  const auto inputs = detail::rnn_layer_inputs(x, h0, Tensor(), w_ih, w_hh, b_ih, b_hh);
  if (detail::on_cuda(x))
    return cuda_ops::rnn_layer(false, S.T, S.B, H, x, h0, Tensor(), w_ih, w_hh, b_ih, b_hh, lengths, batch_first,
                               inputs);
  const Shape os = batch_first ? Shape{S.B, S.T, D * H} : Shape{S.T, S.B, D * H};
  Tensor out = Tensor::empty(os, dt);
  Tensor hn = detail::state_or_zeros(h0, {D, S.B, H}, dt);
  const bool track = grad_needed(inputs);
  // Saved for the backward (training only): gates (r, z, n), hg_n, states before each step.
  Tensor G, HN, Hprev, wcat, xt;
  if (track) {
    G = Tensor::empty({rows, D * 3 * H}, dt);
    HN = Tensor::empty({rows, D * H}, dt);
    Hprev = Tensor::empty({rows, D * H}, dt);
  }
  auto lens = std::make_shared<const std::vector<int64_t>>(lengths);
  S.lengths = lens->empty() ? nullptr : lens->data();
  ATTN_DISPATCH_FLOATING(dt, "gru_layer", [&] {
    xt = detail::time_major<scalar_t>(x, batch_first);
    const detail::InputProjection<scalar_t> proj(S, 3, xt, w_ih, b_ih, b_hh, /*fold_hh=*/false);
    wcat = proj.wcat();
    auto project = [&](int64_t d, int64_t t, int64_t b0, int64_t nb, scalar_t* dst, int64_t ld) {
      proj.rows(S.row(t, b0), nb, d, dst, ld);
    };
    auto ptr = [](Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
    kernels::cpu::gru_forward<scalar_t>(S, detail::pack_whh<scalar_t>(w_hh, false),
                                        detail::ptrs<scalar_t>(b_hh, size_t(D)), hn.data<scalar_t>(), ptr(G), ptr(HN),
                                        ptr(Hprev), out.data<scalar_t>(), project);
  });
  // Backward through time (formulas in kernels::cpu::gru_backward) gives dX (input side) and dHG
  // (hidden side) for every step and, inside the loop, dW_ih += dX^T x_t, dW_hh += dHG^T h_{t-1},
  // db_ih += sum of dX, db_hh += sum of dHG (RnnWeightGrads); then dx = dX W_ih for all steps.
  record("gru_layer", std::vector<Tensor*>{&out, &hn}, inputs,
         [S, lens, G, HN, Hprev, x, xt, wcat, w_ih, w_hh, b_ih, b_hh, dt,
          n_in = inputs.size()](const std::vector<Tensor>& g) {
           auto S2 = S;
           S2.lengths = lens->empty() ? nullptr : lens->data();
           Tensor dh = g[1].defined() ? g[1].clone() : Tensor::zeros({S.D, S.B, S.H}, dt);
           Tensor dX = Tensor::empty({S.T * S.B, S.D * 3 * S.H}, dt), dHG = Tensor::empty(dX.shape(), dt);
           std::vector<Tensor> gs(n_in);
           ATTN_DISPATCH_FLOATING(dt, "gru_layer_backward", [&] {
             const Tensor dout = g[0].defined() ? detail::time_major<scalar_t>(g[0], S.batch_first) : Tensor();
             kernels::cpu::RnnWeightGrads<scalar_t> wg(S2, 3, xt.data<scalar_t>(), xt.size(-1), Hprev.data<scalar_t>(),
                                                       !b_ih.empty());
             kernels::cpu::gru_backward<scalar_t>(S2, detail::pack_whh<scalar_t>(w_hh, true), G.data<scalar_t>(),
                                                  HN.data<scalar_t>(), Hprev.data<scalar_t>(),
                                                  dout.defined() ? dout.data<scalar_t>() : nullptr,
                                                  dh.data<scalar_t>(), dX.data<scalar_t>(), dHG.data<scalar_t>(), wg);
             detail::rnn_layer_grads<scalar_t>(S2, 3, x, wcat, dX.data<scalar_t>(), wg, w_ih, w_hh, b_ih, b_hh, gs);
           });
           gs[1] = dh;
           return gs;
         });
  return {out, hn};
}

// One LSTM step as one autograd node. x [B, I]; hx = (h, c), each [B, H] or undefined (zeros);
// w_ih [4H, I], w_hh [4H, H], b_ih, b_hh [4H] (both or neither). Returns (h', c').
//   a = x W_ih^T + b_ih + h W_hh^T + b_hh;  i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o)
//   c' = f c + i g;  h' = o tanh(c')
// Saved: the activated gates [B, 4H] (tanh(c') is recomputed from c' in the backward).
ATTN_API std::pair<Tensor, Tensor> lstm_cell(const Tensor& x, const std::pair<Tensor, Tensor>& hx, const Tensor& w_ih,
                                           const Tensor& w_hh, const Tensor& b_ih,
                                           const Tensor& b_hh) {
  const int64_t H = detail::check_cell("lstm_cell", 4, x, {&hx.first, &hx.second}, w_ih, w_hh, b_ih, b_hh);
  const int64_t B = x.size(0), G4 = 4 * H;
  const DType dt = x.dtype();
  const Tensor h = hx.first.defined() ? hx.first : Tensor::zeros({B, H}, dt).to(x.device());
  const Tensor c = hx.second.defined() ? hx.second : Tensor::zeros({B, H}, dt).to(x.device());
  if (x.device() != Device::CPU) return detail::lstm_cell_composed(x, h, c, w_ih, w_hh, b_ih, b_hh);
  Tensor gates = Tensor::empty({B, G4}, dt), h2 = Tensor::empty({B, H}, dt), c2 = Tensor::empty({B, H}, dt);
  ATTN_DISPATCH_FLOATING(dt, "lstm_cell", [&] {
    scalar_t* a = gates.data<scalar_t>();
    const bool par = detail::step_parallel(detail::cell_flops(x, w_ih, w_hh));
    detail::cell_input_projection<scalar_t>(x, w_ih, b_ih, b_hh, a, par);
    if (hx.first.defined()) detail::linear_product<scalar_t>(h, w_hh, 1, a, par);  // h = 0 adds nothing
    kernels::cpu::lstm_cell_forward<scalar_t>(B, H, a, c.data<scalar_t>(), c2.data<scalar_t>(), h2.data<scalar_t>());
  });
  // Backward (kernels::cpu::lstm_cell_backward): with dh', dc' the output gradients
  //   dc_t = dc' + dh' o (1 - tanh^2 c');  da = (dc_t g i(1-i), dc_t c f(1-f), dc_t i (1-g^2), dh' tanh(c') o(1-o))
  //   dc = dc_t f;  dx = da W_ih;  dh = da W_hh;  dW_ih = da^T x;  dW_hh = da^T h;  db_ih = db_hh = sum_rows da
  if (!is_grad_enabled() && !is_anomaly_enabled()) return {h2, c2};  // nothing to record (a free run)
  record("lstm_cell", std::vector<Tensor*>{&h2, &c2}, {x, hx.first, hx.second, w_ih, w_hh, b_ih, b_hh},
         [x, h, c, w_ih, w_hh, b_ih, b_hh, gates, c2d = c2.detach()](const std::vector<Tensor>& g) {
           const int64_t B = x.size(0), H = w_hh.size(1);
           Tensor da = Tensor::empty({B, 4 * H}, x.dtype()), dc = Tensor::empty({B, H}, x.dtype());
           detail::CellGrads r;
           ATTN_DISPATCH_FLOATING(x.dtype(), "lstm_cell_backward", [&] {
             auto ptr = [](const Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
             kernels::cpu::lstm_cell_backward<scalar_t>(B, H, gates.data<scalar_t>(), c.data<scalar_t>(),
                                                        c2d.data<scalar_t>(), ptr(g[0]), ptr(g[1]),
                                                        da.data<scalar_t>(), dc.data<scalar_t>());
             const scalar_t* pda = da.data<scalar_t>();
             detail::cell_param_grads<scalar_t>(pda, pda, x, h, w_ih, w_hh, b_ih, b_hh, r,
                                                detail::step_parallel(2 * detail::cell_flops(x, w_ih, w_hh)));
           });
           return std::vector<Tensor>{r.dx, r.dh, dc, r.dw_ih, r.dw_hh, r.db_ih, r.db_hh};
         },
         {x, hx.first, hx.second, w_ih, w_hh, c2});
  return {h2, c2};
}

// One GRU step as one autograd node. x [B, I]; hx [B, H] or undefined (zeros); w_ih [3H, I],
// w_hh [3H, H], b_ih, b_hh [3H] (both or neither). Returns h'.
//   gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh
//   r = s(gi_r + gh_r), z = s(gi_z + gh_z), n = tanh(gi_n + r gh_n), h' = n + z (h - n)
// Saved: the gates (r, z, n) [B, 3H] and gh_n [B, H].
ATTN_API Tensor gru_cell(const Tensor& x, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                       const Tensor& b_ih, const Tensor& b_hh) {
  const int64_t H = detail::check_cell("gru_cell", 3, x, {&hx}, w_ih, w_hh, b_ih, b_hh);
  const int64_t B = x.size(0), G3 = 3 * H;
  const DType dt = x.dtype();
  const Tensor h = hx.defined() ? hx : Tensor::zeros({B, H}, dt).to(x.device());
  if (x.device() != Device::CPU) return detail::gru_cell_composed(x, h, w_ih, w_hh, b_ih, b_hh);
  Tensor gi = Tensor::empty({B, G3}, dt), gates = Tensor::empty({B, G3}, dt), hn = Tensor::empty({B, H}, dt);
  Tensor h2 = Tensor::empty({B, H}, dt);
  ATTN_DISPATCH_FLOATING(dt, "gru_cell", [&] {
    scalar_t *pi = gi.data<scalar_t>(), *ph = gates.data<scalar_t>();
    const bool par = detail::step_parallel(detail::cell_flops(x, w_ih, w_hh));
    detail::cell_input_projection<scalar_t>(x, w_ih, b_ih, Tensor(), pi, par);
    detail::fill_bias_rows<scalar_t>(ph, B, G3, b_hh);
    if (hx.defined()) detail::linear_product<scalar_t>(h, w_hh, 1, ph, par);  // h = 0 adds nothing
    kernels::cpu::gru_cell_forward<scalar_t>(B, H, pi, ph, hn.data<scalar_t>(), h.data<scalar_t>(),
                                             h2.data<scalar_t>());
  });
  // Backward (kernels::cpu::gru_cell_backward): with dh' the output gradient
  //   dn = dh' (1 - z), dz = dh' (h - n), dan = dn (1 - n^2), dr = dan gh_n
  //   dGi = (dr r(1-r), dz z(1-z), dan),  dGh = (dr r(1-r), dz z(1-z), dan r)
  //   dx = dGi W_ih;  dh = dh' z + dGh W_hh;  dW_ih = dGi^T x;  dW_hh = dGh^T h;
  //   db_ih = sum_rows dGi;  db_hh = sum_rows dGh
  if (!is_grad_enabled() && !is_anomaly_enabled()) return h2;  // nothing to record
  return record("gru_cell", h2, {x, hx, w_ih, w_hh, b_ih, b_hh},
                [x, h, w_ih, w_hh, b_ih, b_hh, gates, hn](const std::vector<Tensor>& g) {
                  const int64_t B = x.size(0), H = w_hh.size(1);
                  Tensor dgi = Tensor::empty({B, 3 * H}, x.dtype()), dgh = Tensor::empty({B, 3 * H}, x.dtype());
                  detail::CellGrads r;
                  r.dh = Tensor::empty({B, H}, x.dtype());
                  ATTN_DISPATCH_FLOATING(x.dtype(), "gru_cell_backward", [&] {
                    kernels::cpu::gru_cell_backward<scalar_t>(B, H, gates.data<scalar_t>(), hn.data<scalar_t>(),
                                                              h.data<scalar_t>(), g[0].data<scalar_t>(),
                                                              dgi.data<scalar_t>(), dgh.data<scalar_t>(),
                                                              r.dh.data<scalar_t>());
                    detail::cell_param_grads<scalar_t>(dgi.data<scalar_t>(), dgh.data<scalar_t>(), x, h, w_ih, w_hh,
                                                       b_ih, b_hh, r,
                                                       detail::step_parallel(2 * detail::cell_flops(x, w_ih, w_hh)));
                  });
                  return std::vector<Tensor>{r.dx, r.dh, r.dw_ih, r.dw_hh, r.db_ih, r.db_hh};
                },
                {x, hx, w_ih, w_hh});
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
