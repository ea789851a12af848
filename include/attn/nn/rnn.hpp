#pragma once
// Recurrent layers with PyTorch's shapes, parameter names, layouts and init:
//   nn::LSTMCell, nn::GRUCell         one step
//   nn::LSTM, nn::GRU                 stacked, optionally bidirectional sequences, with optional
//                                     per-series lengths (like packed sequences)
// Gate order i, f, g, o (LSTM) and r, z, n (GRU); parameters weight_ih_l{k}[_reverse] [G*H, in],
// weight_hh_l{k}[_reverse] [G*H, H], bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse] [G*H], all
// initialised U(-1/sqrt(H), 1/sqrt(H)). See docs/recurrent.md.
//
// Two implementations of the sequence layers, selected by the options' fused(bool):
//   fused (default): per layer ONE autograd node (ops/rnn.hpp: lstm_layer / gru_layer): one GEMM
//     for the input projection of all steps and directions, the recurrence, and a hand-written
//     backward through time;
//   composed: step by step from attn's differentiable ops (linear, sigmoid, tanh, mul, add), the
//     reference the fused path is tested against.
// The cells are one node per step (lstm_cell / gru_cell in ops/rnn.hpp); their composed form,
// detail::lstm_cell_composed / gru_cell_composed, is the reference in the tests.
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>
#include "../ops/elementwise.hpp"
#include "../ops/matmul.hpp"
#include "../ops/nn_functional.hpp"
#include "../ops/rnn.hpp"
#include "../ops/shape.hpp"
#include "init.hpp"
#include "module.hpp"

namespace attn::nn {

// Options of nn::LSTM and nn::GRU (also spelled LSTMOptions / GRUOptions).
struct RNNOptions {
  RNNOptions(int64_t input_size, int64_t hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
#define ATTN_RNN_OPTION(type, name)          \
  RNNOptions& name(type v) {                 \
    name##_ = v;                             \
    return *this;                            \
  }                                          \
  type name() const { return name##_; }
  ATTN_RNN_OPTION(int64_t, input_size)
  ATTN_RNN_OPTION(int64_t, hidden_size)
  ATTN_RNN_OPTION(int64_t, num_layers)
  ATTN_RNN_OPTION(bool, bias)
  ATTN_RNN_OPTION(bool, batch_first)
  ATTN_RNN_OPTION(double, dropout)
  ATTN_RNN_OPTION(bool, bidirectional)
  ATTN_RNN_OPTION(bool, fused)
#undef ATTN_RNN_OPTION

 private:
  int64_t input_size_, hidden_size_, num_layers_ = 1;
  bool bias_ = true, batch_first_ = false;
  double dropout_ = 0.0;
  bool bidirectional_ = false, fused_ = true;
};
using LSTMOptions = RNNOptions;
using GRUOptions = RNNOptions;

namespace detail {

inline Tensor rnn_uniform(const Shape& s, int64_t hidden) {
  const double k = 1.0 / std::sqrt(double(hidden));
  Tensor t = Tensor::empty(s);
  init::uniform_(t, -k, k);
  return t;
}

// One step composed of basic ops (ops/rnn.hpp): the reference the fused cells are tested against,
// and the step of the composed layers.
using attn::detail::gru_cell_composed;
using attn::detail::lstm_cell_composed;

inline void check_cell_input(const char* op, const Tensor& x, int64_t input_size, const Tensor& w) {
  ATTN_CHECK(x.dim() == 2 && x.size(1) == input_size, op, ": expected input [B, ", input_size, "], got ",
             to_string(x.shape()));
  ATTN_CHECK(x.dtype() == w.dtype(), op, ": input is ", dtype_name(x.dtype()), " but the parameters are ",
             dtype_name(w.dtype()), " (convert with module.to(dtype))");
}
inline void check_cell_state(const char* op, const char* what, const Tensor& s, int64_t B, int64_t H, DType dt) {
  if (!s.defined()) return;
  ATTN_CHECK(s.dim() == 2 && s.size(0) == B && s.size(1) == H && s.dtype() == dt, op, ": expected ", what, " [", B,
             ", ", H, "] ", dtype_name(dt), ", got ", to_string(s.shape()), " ", dtype_name(s.dtype()));
}

// Shared machinery of nn::LSTM and nn::GRU.
class RNNBase : public Module {
 public:
  RNNBase(const char* name, int64_t gates, const RNNOptions& o) : name_(name), gates_(gates), opt_(o) {
    ATTN_CHECK(o.input_size() > 0 && o.hidden_size() > 0 && o.num_layers() > 0, name_, ": input_size (",
               o.input_size(), "), hidden_size (", o.hidden_size(), ") and num_layers (", o.num_layers(),
               ") must be positive");
    ATTN_CHECK(o.dropout() >= 0 && o.dropout() <= 1, name_, ": dropout must be in [0, 1], got ", o.dropout());
    const int64_t L = o.num_layers(), D = dirs(), H = o.hidden_size();
    w_ih.resize(size_t(L * D));
    w_hh.resize(size_t(L * D));
    b_ih.resize(size_t(L * D));
    b_hh.resize(size_t(L * D));
    for (int64_t l = 0; l < L; ++l)
      for (int64_t d = 0; d < D; ++d) {
        const size_t k = size_t(l * D + d);
        const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
        const int64_t in = l == 0 ? o.input_size() : D * H;
        w_ih[k] = rnn_uniform({gates * H, in}, H);
        w_hh[k] = rnn_uniform({gates * H, H}, H);
        register_parameter("weight_ih" + sfx, w_ih[k]);
        register_parameter("weight_hh" + sfx, w_hh[k]);
        if (o.bias()) {
          b_ih[k] = rnn_uniform({gates * H}, H);
          b_hh[k] = rnn_uniform({gates * H}, H);
          register_parameter("bias_ih" + sfx, b_ih[k]);
          register_parameter("bias_hh" + sfx, b_hh[k]);
        }
      }
  }

  const RNNOptions& options() const { return opt_; }

  // Parameters of layer l, direction d (bias undefined without bias).
  std::vector<Tensor> w_ih, w_hh, b_ih, b_hh;

 protected:
  int64_t dirs() const { return opt_.bidirectional() ? 2 : 1; }

  // Validates x, the initial states and lengths.
  void check_inputs(const Tensor& x, const std::vector<const Tensor*>& states,
                    const std::vector<int64_t>& lengths) const {
    const int64_t L = opt_.num_layers(), D = dirs(), H = opt_.hidden_size();
    ATTN_CHECK(x.dim() == 3, name_, ": expected a 3-D input ", opt_.batch_first() ? "[B, T, " : "[T, B, ",
               opt_.input_size(), "], got ", to_string(x.shape()));
    ATTN_CHECK(x.size(2) == opt_.input_size(), name_, ": input ", to_string(x.shape()), " has ", x.size(2),
               " features, expected input_size ", opt_.input_size());
    ATTN_CHECK(x.dtype() == w_ih[0].dtype(), name_, ": input is ", dtype_name(x.dtype()), " but the parameters are ",
               dtype_name(w_ih[0].dtype()), " (convert with module.to(dtype))");
    const int64_t B = x.size(opt_.batch_first() ? 0 : 1), T = x.size(opt_.batch_first() ? 1 : 0);
    ATTN_CHECK(T > 0 && B > 0, name_, ": empty input ", to_string(x.shape()));
    const Shape st{L * D, B, H};
    for (const Tensor* s : states)
      if (s->defined())
        ATTN_CHECK(s->shape() == st && s->dtype() == x.dtype(), name_, ": expected initial state ", to_string(st), " ",
                   dtype_name(x.dtype()), " for input ", to_string(x.shape()), ", got ", to_string(s->shape()), " ",
                   dtype_name(s->dtype()));
    attn::detail::check_rnn_lengths(name_, lengths, B, T);
  }

  // Runs all layers. Returns output, h_n, c_n (c_n only for LSTM).
  std::vector<Tensor> run(const Tensor& x, const Tensor& h0, const Tensor& c0, const std::vector<int64_t>& lengths) const {
    const bool lstm = gates_ == 4;
    check_inputs(x, {&h0, &c0}, lengths);
    const int64_t L = opt_.num_layers(), D = dirs();
    Tensor inp = x;
    std::vector<Tensor> hns, cns;
    for (int64_t l = 0; l < L; ++l) {
      if (l > 0) inp = dropout(inp, opt_.dropout(), is_training());
      const Tensor h0l = h0.defined() ? narrow(h0, 0, l * D, D) : Tensor();
      const Tensor c0l = c0.defined() ? narrow(c0, 0, l * D, D) : Tensor();
      std::vector<Tensor> r = opt_.fused() ? layer_fused(inp, h0l, c0l, l, lengths) : layer_composed(inp, h0l, c0l, l, lengths);
      inp = r[0];
      hns.push_back(r[1]);
      if (lstm) cns.push_back(r[2]);
    }
    std::vector<Tensor> res{inp, L == 1 ? hns[0] : cat(hns, 0)};
    if (lstm) res.push_back(L == 1 ? cns[0] : cat(cns, 0));
    return res;
  }

 private:
  std::vector<Tensor> layer_fused(const Tensor& inp, const Tensor& h0, const Tensor& c0, int64_t l,
                                  const std::vector<int64_t>& lengths) const {
    const int64_t D = dirs();
    const auto k = long(l * D);
    const std::vector<Tensor> wih(w_ih.begin() + k, w_ih.begin() + k + D), whh(w_hh.begin() + k, w_hh.begin() + k + D);
    std::vector<Tensor> bih, bhh;
    if (opt_.bias()) {
      bih.assign(b_ih.begin() + k, b_ih.begin() + k + D);
      bhh.assign(b_hh.begin() + k, b_hh.begin() + k + D);
    }
    if (gates_ == 4) return lstm_layer(inp, h0, c0, wih, whh, bih, bhh, lengths, opt_.batch_first());
    return gru_layer(inp, h0, wih, whh, bih, bhh, lengths, opt_.batch_first());
  }

  std::vector<Tensor> layer_composed(const Tensor& inp, const Tensor& h0, const Tensor& c0, int64_t l,
                                     const std::vector<int64_t>& lengths) const {
    const int64_t D = dirs(), H = opt_.hidden_size();
    const int64_t tdim = opt_.batch_first() ? 1 : 0, T = inp.size(tdim), B = inp.size(1 - tdim);
    std::vector<Tensor> outs, hns, cns;
    for (int64_t d = 0; d < D; ++d) {
      const size_t k = size_t(l * D + d);
      Tensor h = h0.defined() ? select(h0, 0, d) : Tensor::zeros({B, H}, inp.dtype());
      Tensor c = c0.defined() ? select(c0, 0, d) : Tensor::zeros({B, H}, inp.dtype());
      std::vector<Tensor> seq(static_cast<size_t>(T));
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = d == 0 ? s : T - 1 - s;
        const Tensor xt = select(inp, tdim, t);
        Tensor h2, c2;
        if (gates_ == 4) std::tie(h2, c2) = lstm_cell_composed(xt, h, c, w_ih[k], w_hh[k], b_ih[k], b_hh[k]);
        else h2 = gru_cell_composed(xt, h, w_ih[k], w_hh[k], b_ih[k], b_hh[k]);
        if (lengths.empty()) {
          h = h2;
          if (gates_ == 4) c = c2;
          seq[size_t(t)] = h2;
          continue;
        }
        std::vector<bool> valid(static_cast<size_t>(B));
        for (int64_t b = 0; b < B; ++b) valid[size_t(b)] = t < lengths[size_t(b)];
        const Tensor m = Tensor::from_vector(valid, {B, 1});
        h = where(m, h2, h);
        if (gates_ == 4) c = where(m, c2, c);
        seq[size_t(t)] = where(m, h2, Tensor::zeros({1, 1}, inp.dtype()));
      }
      outs.push_back(stack(seq, tdim));
      hns.push_back(unsqueeze(h, 0));
      if (gates_ == 4) cns.push_back(unsqueeze(c, 0));
    }
    std::vector<Tensor> r{D == 1 ? outs[0] : cat(outs, -1), D == 1 ? hns[0] : cat(hns, 0)};
    if (gates_ == 4) r.push_back(D == 1 ? cns[0] : cat(cns, 0));
    return r;
  }

  const char* name_;
  int64_t gates_;
  RNNOptions opt_;
};

}  // namespace detail

// LSTM over a sequence. input [T, B, I] ([B, T, I] with batch_first); state (h_0, c_0), each
// [num_layers * D, B, H] (undefined = zeros). Returns (output [T, B, D*H], (h_n, c_n)).
class LSTM : public detail::RNNBase {
 public:
  explicit LSTM(const LSTMOptions& o) : RNNBase("LSTM", 4, o) {}
  LSTM(int64_t input_size, int64_t hidden_size) : LSTM(LSTMOptions(input_size, hidden_size)) {}

  using State = std::pair<Tensor, Tensor>;
  std::pair<Tensor, State> forward(const Tensor& x, const State& state = {}) const {
    return forward(x, state, {});
  }
  std::pair<Tensor, State> forward(const Tensor& x, const std::vector<int64_t>& lengths) const {
    return forward(x, State{}, lengths);
  }
  std::pair<Tensor, State> forward(const Tensor& x, const State& state, const std::vector<int64_t>& lengths) const {
    auto r = run(x, state.first, state.second, lengths);
    return {r[0], {r[1], r[2]}};
  }
};

// GRU over a sequence; like LSTM without the cell state. Returns (output, h_n).
class GRU : public detail::RNNBase {
 public:
  explicit GRU(const GRUOptions& o) : RNNBase("GRU", 3, o) {}
  GRU(int64_t input_size, int64_t hidden_size) : GRU(GRUOptions(input_size, hidden_size)) {}

  std::pair<Tensor, Tensor> forward(const Tensor& x, const Tensor& h0 = Tensor()) const { return forward(x, h0, {}); }
  std::pair<Tensor, Tensor> forward(const Tensor& x, const std::vector<int64_t>& lengths) const {
    return forward(x, Tensor(), lengths);
  }
  std::pair<Tensor, Tensor> forward(const Tensor& x, const Tensor& h0, const std::vector<int64_t>& lengths) const {
    auto r = run(x, h0, Tensor(), lengths);
    return {r[0], r[1]};
  }
};

// One LSTM step: forward(x [B, I], (h, c) [B, H] each, undefined = zeros) -> (h', c'); one
// autograd node (ops/rnn.hpp: lstm_cell).
class LSTMCell : public Module {
 public:
  LSTMCell(int64_t input_size, int64_t hidden_size, bool bias = true) : in_(input_size), hidden_(hidden_size) {
    ATTN_CHECK(input_size > 0 && hidden_size > 0, "LSTMCell: sizes must be positive, got input_size=", input_size,
               " hidden_size=", hidden_size);
    weight_ih = detail::rnn_uniform({4 * hidden_size, input_size}, hidden_size);
    weight_hh = detail::rnn_uniform({4 * hidden_size, hidden_size}, hidden_size);
    register_parameter("weight_ih", weight_ih);
    register_parameter("weight_hh", weight_hh);
    if (bias) {
      bias_ih = detail::rnn_uniform({4 * hidden_size}, hidden_size);
      bias_hh = detail::rnn_uniform({4 * hidden_size}, hidden_size);
      register_parameter("bias_ih", bias_ih);
      register_parameter("bias_hh", bias_hh);
    }
  }
  std::pair<Tensor, Tensor> forward(const Tensor& x, const std::pair<Tensor, Tensor>& state = {}) const {
    detail::check_cell_input("LSTMCell", x, in_, weight_ih);
    const int64_t B = x.size(0);
    detail::check_cell_state("LSTMCell", "h", state.first, B, hidden_, x.dtype());
    detail::check_cell_state("LSTMCell", "c", state.second, B, hidden_, x.dtype());
    return lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh);
  }
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;

 private:
  int64_t in_, hidden_;
};

// One GRU step: forward(x [B, I], h [B, H] or undefined) -> h'; one autograd node (gru_cell).
class GRUCell : public Module {
 public:
  GRUCell(int64_t input_size, int64_t hidden_size, bool bias = true) : in_(input_size), hidden_(hidden_size) {
    ATTN_CHECK(input_size > 0 && hidden_size > 0, "GRUCell: sizes must be positive, got input_size=", input_size,
               " hidden_size=", hidden_size);
    weight_ih = detail::rnn_uniform({3 * hidden_size, input_size}, hidden_size);
    weight_hh = detail::rnn_uniform({3 * hidden_size, hidden_size}, hidden_size);
    register_parameter("weight_ih", weight_ih);
    register_parameter("weight_hh", weight_hh);
    if (bias) {
      bias_ih = detail::rnn_uniform({3 * hidden_size}, hidden_size);
      bias_hh = detail::rnn_uniform({3 * hidden_size}, hidden_size);
      register_parameter("bias_ih", bias_ih);
      register_parameter("bias_hh", bias_hh);
    }
  }
  Tensor forward(const Tensor& x, const Tensor& h0 = Tensor()) const {
    detail::check_cell_input("GRUCell", x, in_, weight_ih);
    const int64_t B = x.size(0);
    detail::check_cell_state("GRUCell", "h", h0, B, hidden_, x.dtype());
    return gru_cell(x, h0, weight_ih, weight_hh, bias_ih, bias_hh);
  }
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;

 private:
  int64_t in_, hidden_;
};

}  // namespace attn::nn
