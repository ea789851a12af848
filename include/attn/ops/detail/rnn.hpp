#pragma once
// Helpers of the recurrent ops (ops/rnn.hpp): argument checks, the layers' input side (time-major
// input, input projection, packed weights), the gradients of a layer's inputs after its backward
// loop, and the cells' composed reference, checks and parameter gradients.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>
#include "../../core/tensor.hpp"
#include "../../kernels/cpu/gemm.hpp"
#include "../../kernels/cpu/rnn.hpp"
#include "../elementwise.hpp"
#include "../matmul.hpp"
#include "../shape.hpp"

namespace attn {
namespace detail {

inline std::string lengths_to_string(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Checks `lengths` against batch B and T steps (empty = all T).
ATTN_API void check_rnn_lengths(const char* op, const std::vector<int64_t>& lengths, int64_t B, int64_t T) {
  if (lengths.empty()) return;
  ATTN_CHECK(int64_t(lengths.size()) == B, op, ": got ", lengths.size(), " lengths ", lengths_to_string(lengths),
             " for a batch of ", B, " (need one length per series)");
  for (size_t b = 0; b < lengths.size(); ++b)
    ATTN_CHECK(lengths[b] >= 1 && lengths[b] <= T, op, ": length ", lengths[b], " of series ", b,
               " is outside [1, ", T, "] (lengths ", lengths_to_string(lengths), ", ", T, " time steps)");
}

inline kernels::cpu::RnnShape check_rnn_layer(const char* op, int64_t gates, const Tensor& x, const Tensor& h0,
                                              const Tensor& c0, const std::vector<Tensor>& w_ih,
                                              const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_ih,
                                              const std::vector<Tensor>& b_hh, const std::vector<int64_t>& lengths,
                                              bool batch_first) {
  kernels::cpu::RnnShape S;
  const int64_t D = int64_t(w_hh.size());
  ATTN_CHECK((D == 1 || D == 2) && w_ih.size() == w_hh.size(), op, ": need 1 or 2 directions, got ", w_ih.size(),
             " w_ih and ", w_hh.size(), " w_hh tensors");
  ATTN_CHECK((b_ih.empty() && b_hh.empty()) || (b_ih.size() == w_hh.size() && b_hh.size() == w_hh.size()), op, ": ",
             b_ih.size(), " b_ih and ", b_hh.size(), " b_hh tensors for ", D, " direction(s) (give all or none)");
  ATTN_CHECK(x.dim() == 3, op, ": input must be 3-D ", batch_first ? "[B, T, I]" : "[T, B, I]", ", got ",
             to_string(x.shape()));
  ATTN_CHECK(w_hh[0].dim() == 2 && w_hh[0].size(0) == gates * w_hh[0].size(1), op, ": w_hh must be [", gates,
             "*H, H], got ", to_string(w_hh[0].shape()));
  const int64_t H = w_hh[0].size(1), I = x.size(2);
  S.T = x.size(batch_first ? 1 : 0);
  S.B = x.size(batch_first ? 0 : 1);
  S.H = H;
  S.D = D;
  S.batch_first = batch_first;
  ATTN_CHECK(S.T > 0 && S.B > 0 && H > 0, op, ": empty input ", to_string(x.shape()), " or hidden size ", H);
  const Shape wi{gates * H, I}, wh{gates * H, H}, bs{gates * H};
  for (size_t d = 0; d < size_t(D); ++d) {
    ATTN_CHECK(w_ih[d].shape() == wi && w_ih[d].dtype() == x.dtype(), op, ": w_ih[", d, "] must be ", to_string(wi),
               " ", dtype_name(x.dtype()), " for input ", to_string(x.shape()), " and hidden size ", H, ", got ",
               to_string(w_ih[d].shape()), " ", dtype_name(w_ih[d].dtype()));
    ATTN_CHECK(w_hh[d].shape() == wh && w_hh[d].dtype() == x.dtype(), op, ": w_hh[", d, "] must be ", to_string(wh),
               " ", dtype_name(x.dtype()), ", got ", to_string(w_hh[d].shape()), " ", dtype_name(w_hh[d].dtype()));
    for (const std::vector<Tensor>* bv : {&b_ih, &b_hh})
      if (!bv->empty())
        ATTN_CHECK((*bv)[d].defined() && (*bv)[d].shape() == bs && (*bv)[d].dtype() == x.dtype(), op,
                   ": biases must be ", to_string(bs), " ", dtype_name(x.dtype()), ", got ",
                   (*bv)[d].defined() ? to_string((*bv)[d].shape()) : std::string("undefined"));
  }
  const Shape st{D, S.B, H};
  for (const Tensor* s : {&h0, &c0})
    if (s->defined())
      ATTN_CHECK(s->shape() == st && s->dtype() == x.dtype(), op, ": initial state must be ", to_string(st), " ",
                 dtype_name(x.dtype()), " for input ", to_string(x.shape()), ", got ", to_string(s->shape()), " ",
                 dtype_name(s->dtype()));
  check_rnn_lengths(op, lengths, S.B, S.T);
  return S;
}

template <class T>
std::vector<const T*> ptrs(const std::vector<Tensor>& ts, size_t n) {
  std::vector<const T*> p(n, nullptr);
  for (size_t i = 0; i < ts.size() && i < n; ++i) p[i] = ts[i].defined() ? ts[i].data<T>() : nullptr;
  return p;
}

inline Tensor state_or_zeros(const Tensor& s, const Shape& shape, DType dt) {
  if (!s.defined()) return Tensor::zeros(shape, dt);
  NoGradGuard ng;
  Tensor t = Tensor::empty(shape, dt);
  t.copy_(s);
  return t;
}

// The layer input as a time-major [T*B, I] tensor (x itself when already time-major).
template <class T>
Tensor time_major(const Tensor& x, bool batch_first) {
  if (!batch_first) return x.detach();
  Tensor out = Tensor::empty({x.size(1), x.size(0), x.size(2)}, x.dtype());
  kernels::cpu::swap_bt<T>(x.data<T>(), out.data<T>(), x.size(0), x.size(1), x.size(2), true);
  return out;
}

// [W^0; W^1] stacked on rows: [D*G*H, I].
template <class T>
Tensor stack_rows(const std::vector<Tensor>& ws, DType dt) {
  const int64_t r = ws[0].size(0), c = ws[0].size(1);
  Tensor out = Tensor::empty({int64_t(ws.size()) * r, c}, dt);
  for (size_t d = 0; d < ws.size(); ++d) std::copy_n(ws[d].data<T>(), r * c, out.data<T>() + int64_t(d) * r * c);
  return out;
}

// o[j] += x[0] w(0, j) + x[1] w(1, j) + ... (i ascending) for j < GH, w(i, j) = w[i * is + j * js]:
// a handful of input features times their rows of W_ih^T (is = row stride, js = 1) or columns of
// W_ih (is = 1, js = I).
template <class T>
void add_feature_products(const T* x, int64_t I, const T* w, int64_t is, int64_t js, int64_t GH, T* o) {
  for (int64_t i = 0; i < I; ++i) {
    const T xi = x[i];
    const T* wi = w + i * is;
    for (int64_t j = 0; j < GH; ++j) o[j] += xi * wi[j * js];
  }
}

// The input projection of a layer, x W_ih^T + b_ih (+ b_hh when fold_hh), of one direction for a
// block of rows of x (time-major [T*B, I]), computed inside the recurrence step (rows()) so the
// gate block is still in cache for h W_hh^T and the gate math, and the [T*B, D*G*H] projection
// never exists. For a handful of input features (I <= 4, e.g. a univariate series) a direct loop,
// which avoids a GEMM with a degenerate inner dimension; else a GEMM with W_ih^T packed once.
template <class T>
class InputProjection {
 public:
  InputProjection(const kernels::cpu::RnnShape& S, int64_t gates, const Tensor& x, const std::vector<Tensor>& w_ih,
                  const std::vector<Tensor>& b_ih, const std::vector<Tensor>& b_hh, bool fold_hh)
      : x_(x.data<T>()), I_(x.size(-1)), GH_(gates * S.H),
        wcat_(S.D == 1 ? w_ih[0] : stack_rows<T>(w_ih, x.dtype())), bias_(size_t(S.D * GH_), T(0)) {
    has_bias_ = !b_ih.empty();
    if (has_bias_)
      for (int64_t d = 0; d < S.D; ++d)
        for (int64_t j = 0; j < GH_; ++j)
          bias_[size_t(d * GH_ + j)] = b_ih[size_t(d)].data<T>()[j] + (fold_hh ? b_hh[size_t(d)].data<T>()[j] : T(0));
    const T* pw = wcat_.data<T>();
    if (I_ <= 4) {  // W_cat^T [I, D*GH] for the direct loop
      const int64_t N = S.D * GH_;
      wt_.resize(size_t(I_ * N));
      for (int64_t j = 0; j < N; ++j)
        for (int64_t i = 0; i < I_; ++i) wt_[size_t(i * N + j)] = pw[j * I_ + i];
    } else {  // W_ih^T of each direction, packed for the per-step GEMM
      for (int64_t d = 0; d < S.D; ++d) packed_.emplace_back(true, I_, GH_, pw + d * GH_ * I_, I_);
    }
  }
  const Tensor& wcat() const { return wcat_; }  // [D*G*H, I], for the backward

  // Rows [r0, r0 + nr) of direction d into dst (row stride ld).
  void rows(int64_t r0, int64_t nr, int64_t d, T* dst, int64_t ld) const {
    const T* b = bias_.data() + d * GH_;
    if (I_ <= 4) {
      const int64_t N = int64_t(bias_.size());
      for (int64_t r = r0; r < r0 + nr; ++r) {
        T* o = dst + (r - r0) * ld;
        std::copy_n(b, GH_, o);
        add_feature_products<T>(x_ + r * I_, I_, wt_.data() + d * GH_, N, 1, GH_, o);
      }
      return;
    }
    if (has_bias_)
      for (int64_t r = 0; r < nr; ++r) std::copy_n(b, GH_, dst + r * ld);
    kernels::cpu::gemm_prepacked<T>(nr, T(1), x_ + r0 * I_, I_, packed_[size_t(d)], has_bias_ ? T(1) : T(0), dst, ld);
  }

 private:
  const T* x_;
  int64_t I_, GH_;
  Tensor wcat_;
  std::vector<T> bias_, wt_;
  std::vector<kernels::cpu::PackedB<T>> packed_;
  bool has_bias_ = false;
};

// W_hh of every direction packed for the per-step products: as op(B) = W_hh^T [H, G*H] for the
// forward (h W_hh^T), or W_hh [G*H, H] for the backward (dA W_hh).
template <class T>
std::vector<kernels::cpu::PackedB<T>> pack_whh(const std::vector<Tensor>& w_hh, bool for_backward) {
  std::vector<kernels::cpu::PackedB<T>> p;
  for (const Tensor& w : w_hh) {
    const int64_t GH = w.size(0), H = w.size(1);
    if (for_backward) p.emplace_back(false, GH, H, w.data<T>(), H);
    else p.emplace_back(true, H, GH, w.data<T>(), H);
  }
  return p;
}

// Gradients of a layer's inputs after the backward loop. dX: [rows, D*G*H] gradient of the input
// projection; the weight and bias gradients were accumulated during the loop (wg).
// Input order of the node: x, h0, c0, then per direction w_ih, w_hh, b_ih, b_hh.
template <class T>
void rnn_layer_grads(const kernels::cpu::RnnShape& S, int64_t gates, const Tensor& x, const Tensor& wcat, const T* dX,
                     const kernels::cpu::RnnWeightGrads<T>& wg, const std::vector<Tensor>& w_ih,
                     const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b_ih, const std::vector<Tensor>& b_hh,
                     std::vector<Tensor>& gs) {
  const int64_t rows = S.T * S.B, GH = gates * S.H, N = S.D * GH, I = x.size(2), H = S.H;
  const DType dt = x.dtype();
  if (x.requires_grad()) {  // dx = dX W_cat: one GEMM for all steps and directions (time-major)
    Tensor dx = Tensor::empty(x.shape(), dt);
    if (!S.batch_first) {
      kernels::cpu::gemm<T>(false, false, rows, I, N, T(1), dX, N, wcat.data<T>(), I, T(0), dx.data<T>(), I);
    } else {
      Tensor tmp = Tensor::empty({rows, I}, dt);
      kernels::cpu::gemm<T>(false, false, rows, I, N, T(1), dX, N, wcat.data<T>(), I, T(0), tmp.data<T>(), I);
      kernels::cpu::swap_bt<T>(tmp.data<T>(), dx.data<T>(), S.B, S.T, I, false);
    }
    gs[0] = dx;
  }
  const bool bias = !b_ih.empty();
  for (int64_t d = 0; d < S.D; ++d) {
    const size_t k = size_t(d);
    Tensor dwih = w_ih[k].requires_grad() ? Tensor::empty({GH, I}, dt) : Tensor();
    Tensor dwhh = w_hh[k].requires_grad() ? Tensor::empty({GH, H}, dt) : Tensor();
    Tensor dbih = bias && b_ih[k].requires_grad() ? Tensor::empty({GH}, dt) : Tensor();
    Tensor dbhh = bias && b_hh[k].requires_grad() ? Tensor::empty({GH}, dt) : Tensor();
    auto ptr = [](Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
    wg.reduce(d, ptr(dwih), ptr(dwhh), ptr(dbih), ptr(dbhh), gates == 4);
    gs[4 * k + 3] = dwih;
    gs[4 * k + 4] = dwhh;
    gs[4 * k + 5] = dbih;
    gs[4 * k + 6] = dbhh;
  }
}

inline std::vector<Tensor> rnn_layer_inputs(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                            const std::vector<Tensor>& w_ih, const std::vector<Tensor>& w_hh,
                                            const std::vector<Tensor>& b_ih, const std::vector<Tensor>& b_hh) {
  std::vector<Tensor> in{x, h0, c0};
  for (size_t d = 0; d < w_hh.size(); ++d) {
    in.push_back(w_ih[d]);
    in.push_back(w_hh[d]);
    in.push_back(b_ih.empty() ? Tensor() : b_ih[d]);
    in.push_back(b_hh.empty() ? Tensor() : b_hh[d]);
  }
  return in;
}

}  // namespace detail

namespace detail {

// One LSTM step composed of basic ops: returns (h', c'). The reference for lstm_cell.
ATTN_API std::pair<Tensor, Tensor> lstm_cell_composed(const Tensor& x, const Tensor& h, const Tensor& c,
                                                    const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                                                    const Tensor& b_hh) {
  const auto gs = chunk(add(linear(x, w_ih, b_ih), linear(h, w_hh, b_hh)), 4, 1);
  const Tensor i = sigmoid(gs[0]), f = sigmoid(gs[1]), g = tanh(gs[2]), o = sigmoid(gs[3]);
  const Tensor c2 = add(mul(f, c), mul(i, g));
  return {mul(o, tanh(c2)), c2};
}

// One GRU step composed of basic ops: h' = n + z (h - n), n = tanh(x_n + r (h W_hn^T + b_hn)).
ATTN_API Tensor gru_cell_composed(const Tensor& x, const Tensor& h, const Tensor& w_ih, const Tensor& w_hh,
                                const Tensor& b_ih, const Tensor& b_hh) {
  const auto gi = chunk(linear(x, w_ih, b_ih), 3, 1), gh = chunk(linear(h, w_hh, b_hh), 3, 1);
  const Tensor r = sigmoid(add(gi[0], gh[0])), z = sigmoid(add(gi[1], gh[1]));
  const Tensor n = tanh(add(gi[2], mul(r, gh[2])));
  return add(n, mul(z, sub(h, n)));
}

// Checks the arguments of lstm_cell / gru_cell (G = 4 or 3 gates); returns H.
inline int64_t check_cell(const char* op, int64_t gates, const Tensor& x, const std::vector<const Tensor*>& states,
                          const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh) {
  ATTN_CHECK(x.defined() && w_ih.defined() && w_hh.defined(), op, ": input, w_ih and w_hh must be defined");
  ATTN_CHECK(x.dim() == 2, op, ": input must be 2-D [B, I], got ", to_string(x.shape()));
  ATTN_CHECK(w_hh.dim() == 2 && w_hh.size(0) == gates * w_hh.size(1) && w_hh.size(1) > 0, op, ": w_hh must be [",
             gates, "*H, H], got ", to_string(w_hh.shape()));
  const int64_t H = w_hh.size(1), B = x.size(0), I = x.size(1);
  const Shape wi{gates * H, I}, bs{gates * H}, st{B, H};
  ATTN_CHECK(w_ih.shape() == wi, op, ": w_ih must be ", to_string(wi), " for input ", to_string(x.shape()),
             " and hidden size ", H, ", got ", to_string(w_ih.shape()));
  ATTN_CHECK(b_ih.defined() == b_hh.defined(), op, ": give both biases or none (b_ih ",
             b_ih.defined() ? to_string(b_ih.shape()) : std::string("undefined"), ", b_hh ",
             b_hh.defined() ? to_string(b_hh.shape()) : std::string("undefined"), ")");
  for (const Tensor* b : {&b_ih, &b_hh})
    if (b->defined())
      ATTN_CHECK(b->shape() == bs, op, ": biases must be ", to_string(bs), ", got ", to_string(b->shape()));
  auto same_kind = [&](const Tensor& t) {
    if (t.defined())
      ATTN_CHECK(t.dtype() == x.dtype() && t.device() == x.device(), op, ": input is ", dtype_name(x.dtype()), " on ",
                 device_name(x.device()), " but the state or parameter of shape ", to_string(t.shape()), " is ",
                 dtype_name(t.dtype()), " on ", device_name(t.device()));
  };
  for (const Tensor* t : {&w_ih, &w_hh, &b_ih, &b_hh}) same_kind(*t);
  for (const Tensor* s : states) {
    if (s->defined())
      ATTN_CHECK(s->shape() == st, op, ": state must be ", to_string(st), " for input ", to_string(x.shape()),
                 " and hidden size ", H, ", got ", to_string(s->shape()));
    same_kind(*s);
  }
  return H;
}

// dst [B, G*H] = x W_ih^T + b_ih (+ b_hh when given): for a handful of input features (I <= 4,
// e.g. a univariate series) a direct loop with the arithmetic of InputProjection::rows, else a GEMM.
template <class T>
void cell_input_projection(const Tensor& x, const Tensor& w_ih, const Tensor& b_ih, const Tensor& b_hh,
                           T* dst, bool parallel) {
  const int64_t B = x.size(0), GH = w_ih.size(0), I = x.size(1);
  fill_bias_rows<T>(dst, B, GH, b_ih, b_hh);
  if (I <= 4) {  // the bias plus each feature times its column of W_ih, as InputProjection::rows
    const T *px = x.data<T>(), *pw = w_ih.data<T>();
    for (int64_t r = 0; r < B; ++r) add_feature_products<T>(px + r * I, I, pw, 1, I, GH, dst + r * GH);
    return;
  }
  linear_product<T>(x, w_ih, 1, dst, parallel);
}

// Gradients of a cell's inputs from the gate gradients of its input side (dGi) and hidden side
// (dGh; the same pointer for the LSTM), two linear maps:
//   dx = dGi W_ih,  dW_ih = dGi^T x,  db_ih = sum_rows dGi
//   dh (+)= dGh W_hh (added to a defined dh, e.g. the GRU's dh' z),  dW_hh = dGh^T h,  db_hh = sum_rows dGh
struct CellGrads {
  Tensor dx, dh, dw_ih, dw_hh, db_ih, db_hh;
};
template <class T>
void cell_param_grads(const T* dGi, const T* dGh, const Tensor& x, const Tensor& h, const Tensor& w_ih,
                      const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, CellGrads& r, bool parallel) {
  linear_grads<T>(dGi, x, w_ih, b_ih, r.dx, r.dw_ih, r.db_ih, parallel);
  linear_grads<T>(dGh, h, w_hh, b_hh, r.dh, r.dw_hh, r.db_hh, parallel);
}

// The products' flops of one cell step (forward), for step_parallel.
inline double cell_flops(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh) {
  return 2.0 * double(x.size(0)) * double(w_ih.size(0)) * double(w_ih.size(1) + w_hh.size(1));
}

}  // namespace detail

}  // namespace attn
