#pragma once
// CUDA path of ops/rnn.hpp (see ops/cuda/common.hpp): the fused LSTM / GRU layers and the
// pointwise part of one LSTM step (cuda_lstm_cell_pointwise / cuda_lstm_cell, public).
// Kernels: kernels/cuda/rnn.cu.
#include <utility>
#include <vector>
#include "../../kernels/cuda/rnn.hpp"
#include "../elementwise.hpp"
#include "../matmul.hpp"
#include "common.hpp"

namespace attn {

#ifdef ATTN_WITH_CUDA
namespace cuda_ops {
// ---------------- fused LSTM / GRU layers ----------------
// The CUDA path of lstm_layer / gru_layer (ops/rnn.hpp, which checked the shapes): the same outputs
// and node inputs (x, h0, c0, then per direction w_ih, w_hh, b_ih, b_hh), the recurrence and its
// backward in kernels/cuda/rnn.cu (formulas there). Saved for the backward per direction: the
// activated gates, the states before each step and tanh(c_t) (LSTM) or h W_hn^T + b_hn (GRU).
inline std::vector<Tensor> rnn_layer(bool lstm, int64_t T, int64_t B, int64_t H, const Tensor& x, const Tensor& h0,
                                     const Tensor& c0, const std::vector<Tensor>& w_ih,
                                     const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_ih,
                                     const std::vector<Tensor>& b_hh, const std::vector<int64_t>& lengths,
                                     bool batch_first, const std::vector<Tensor>& inputs) {
  const char* op = lstm ? "lstm_layer" : "gru_layer";
  check_f32(x, op);
  for (const Tensor& t : inputs)
    ATTN_CHECK(!t.defined() || t.device() == Device::CUDA, op, ": input is on cuda but a state or weight ",
               to_string(t.shape()), " is on the cpu; move the module with .to(Device::CUDA)");
  const int64_t D = int64_t(w_hh.size()), GH = (lstm ? 4 : 3) * H, rows = T * B;
  Tensor out = empty(batch_first ? Shape{B, T, D * H} : Shape{T, B, D * H});
  auto state = [&](const Tensor& s) { return s.defined() ? s.detach().clone() : zeros({D, B, H}); };
  Tensor hn = state(h0), cn = lstm ? state(c0) : Tensor();
  const Tensor lens = lengths.empty() ? Tensor() : Tensor::from_vector(lengths, {B}).to(Device::CUDA);
  const bool track = grad_needed(inputs);
  kc::RnnLayer L;
  L.lstm = lstm, L.T = T, L.B = B, L.I = x.size(2), L.H = H, L.D = D, L.batch_first = batch_first;
  L.lengths = lens.defined() ? static_cast<const int64_t*>(lens.raw_data()) : nullptr;
  // Per direction: the activated gates, and for the backward the states before each step and
  // tanh(c_t) (LSTM) or h W_hn^T + b_hn (GRU), in this order.
  std::vector<Tensor> saved;
  for (int64_t d = 0; d < D; ++d) {
    kc::RnnDirBuffers& P = L.dir[d];
    const size_t k = size_t(d);
    P.w_ih = cfp(w_ih[k]), P.w_hh = cfp(w_hh[k]);
    P.b_ih = b_ih.empty() ? nullptr : cfp(b_ih[k]), P.b_hh = b_hh.empty() ? nullptr : cfp(b_hh[k]);
    saved.push_back(empty({rows, GH}));
    P.G = fp(saved.back());
    if (!track) continue;
    for (float** dst : {&P.Hprev, &P.Aux, lstm ? &P.Cprev : static_cast<float**>(nullptr)}) {
      if (!dst) continue;
      saved.push_back(empty({rows, H}));
      *dst = fp(saved.back());
    }
  }
  const Tensor xd = x.detach(), gh = lstm ? Tensor() : empty({B, GH});
  kc::rnn_layer_forward(L, cfp(xd), fp(hn), lstm ? fp(cn) : nullptr, lstm ? nullptr : fp(gh), fp(out));
  std::vector<Tensor*> outs{&out, &hn};
  if (lstm) outs.push_back(&cn);
  record(op, outs, inputs, [L, lens, saved, xd, inputs](const std::vector<Tensor>& g) {
    (void)lens, (void)saved;  // keep the device lengths and the saved tensors that L points at alive
    kc::RnnLayer Lb = L;
    const int64_t GHb = (L.lstm ? 4 : 3) * L.H, rowsb = L.T * L.B;
    auto grad_or_zeros = [&](size_t i) {
      return i < g.size() && g[i].defined() ? grad_on_cuda(g[i]).clone() : zeros({L.D, L.B, L.H});
    };
    Tensor dh = grad_or_zeros(1), dc = L.lstm ? grad_or_zeros(2) : Tensor();
    const Tensor dout = g[0].defined() ? grad_on_cuda(g[0]) : Tensor();
    std::vector<Tensor> gs(inputs.size()), scratch;
    if (inputs[0].requires_grad()) gs[0] = empty(xd.shape());
    auto grad_of = [&](size_t i) {
      const Tensor& t = inputs[i];
      if (t.defined() && t.requires_grad()) gs[i] = empty(t.shape());
      return gs[i].defined() ? fp(gs[i]) : nullptr;
    };
    for (int64_t d = 0; d < L.D; ++d) {
      kc::RnnDirBuffers& P = Lb.dir[d];
      const size_t w = 3 + 4 * size_t(d);  // node inputs of direction d: w_ih, w_hh, b_ih, b_hh
      P.w_ih = cfp(inputs[w]), P.w_hh = cfp(inputs[w + 1]);  // where the weights live now
      P.dw_ih = grad_of(w), P.dw_hh = grad_of(w + 1), P.db_ih = grad_of(w + 2), P.db_hh = grad_of(w + 3);
      scratch.push_back(empty({rowsb, GHb}));
      P.dA = fp(scratch.back());
      if (!L.lstm) {
        scratch.push_back(empty({rowsb, GHb}));
        P.dHG = fp(scratch.back());
      }
    }
    kc::rnn_layer_backward(Lb, cfp(xd), cfp(dout), fp(dh), L.lstm ? fp(dc) : nullptr,
                           gs[0].defined() ? fp(gs[0]) : nullptr);
    gs[1] = dh;
    if (L.lstm) gs[2] = dc;
    return gs;
  });
  if (lstm) return {out, hn, cn};
  return {out, hn};
}
}  // namespace cuda_ops

// ---------------- LSTM step ----------------
// One LSTM step's pointwise part on the GPU. gates [B, 4H] = x W_ih^T + b_ih + h W_hh^T + b_hh
// (order i, f, g, o), c_prev [B, H] -> (h, c):
//   i, f, o = sigmoid(.), g = tanh(.), c = f c_prev + i g, h = o tanh(c)
// Backward (kernels/cuda/rnn.cu): dc_t = dc + dh o (1 - tanh(c)^2),
//   d gates = [dc_t g i(1-i), dc_t c_prev f(1-f), dc_t i (1-g^2), dh tanh(c) o(1-o)], dc_prev = dc_t f
inline std::pair<Tensor, Tensor> cuda_lstm_cell_pointwise(const Tensor& gates, const Tensor& c_prev) {
  const char* op = "cuda_lstm_cell_pointwise";
  ATTN_CHECK(gates.dim() == 2 && c_prev.dim() == 2 && gates.size(0) == c_prev.size(0) &&
                 gates.size(1) == 4 * c_prev.size(1),
             op, ": gates ", to_string(gates.shape()), " must be [B, 4H] for c_prev ", to_string(c_prev.shape()),
             " [B, H]");
  cuda_ops::check_pair(gates, c_prev, op);
  ATTN_CHECK(gates.device() == Device::CUDA, op, ": inputs must live on cuda, got ", device_name(gates.device()));
  const int64_t B = c_prev.size(0), H = c_prev.size(1);
  Tensor h = cuda_ops::empty({B, H}), c = cuda_ops::empty({B, H}), acts = cuda_ops::empty({B, 4 * H}),
         tc = cuda_ops::empty({B, H});
  kernels::cuda::lstm_pointwise_forward(cuda_ops::cfp(gates), cuda_ops::cfp(c_prev), cuda_ops::fp(h),
                                        cuda_ops::fp(c), cuda_ops::fp(acts), cuda_ops::fp(tc), B, H);
  record(op, std::vector<Tensor*>{&h, &c}, {gates, c_prev},
         [acts, tc, cp = c_prev.detach(), B, H](const std::vector<Tensor>& g) {
           const Tensor dh = g[0].defined() ? cuda_ops::grad_on_cuda(g[0]) : Tensor();
           const Tensor dc = g.size() > 1 && g[1].defined() ? cuda_ops::grad_on_cuda(g[1]) : Tensor();
           Tensor dg = cuda_ops::empty({B, 4 * H}), dcp = cuda_ops::empty({B, H});
           kernels::cuda::lstm_pointwise_backward(cuda_ops::cfp(dh), cuda_ops::cfp(dc), cuda_ops::cfp(acts),
                                                  cuda_ops::cfp(tc), cuda_ops::cfp(cp), cuda_ops::fp(dg),
                                                  cuda_ops::fp(dcp), B, H);
           return std::vector<Tensor>{dg, dcp};
         });
  return {h, c};
}
#else
namespace cuda_ops {
inline std::vector<Tensor> rnn_layer(bool lstm, int64_t, int64_t, int64_t, const Tensor& x, const Tensor& h0,
                                     const Tensor& c0, const std::vector<Tensor>&, const std::vector<Tensor>&,
                                     const std::vector<Tensor>&, const std::vector<Tensor>&,
                                     const std::vector<int64_t>&, bool, const std::vector<Tensor>&) {
  built_without_cuda(lstm ? "lstm_layer" : "gru_layer", x, h0, c0);
}
}  // namespace cuda_ops
inline std::pair<Tensor, Tensor> cuda_lstm_cell_pointwise(const Tensor& gates, const Tensor& c_prev) {
  cuda_ops::built_without_cuda("cuda_lstm_cell_pointwise", gates, c_prev);
}
#endif

// A whole LSTMCell step on the GPU: gates from two linears (cuBLAS), then the fused pointwise.
// Weights as nn::LSTMCell's (weight_ih [4H, I], weight_hh [4H, H], biases [4H] or undefined).
inline std::pair<Tensor, Tensor> cuda_lstm_cell(const Tensor& x, const Tensor& h, const Tensor& c,
                                                const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                                                const Tensor& b_hh) {
  Tensor gates = add(linear(x, w_ih, b_ih), linear(h, w_hh, b_hh));
  return cuda_lstm_cell_pointwise(gates, c);
}

}  // namespace attn
