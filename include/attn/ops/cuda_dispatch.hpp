#pragma once
// CUDA paths of attn's ops (compiled only with ATTN_WITH_CUDA; link attn::cuda). Each op in
// ops/*.hpp checks, at the top of its forward, whether its input lives on the GPU and then calls
// the function of the same name here, which runs the kernels of kernels/cuda/api.hpp and records
// a backward that runs on the GPU too. Ops without a CUDA path keep failing with "tensor lives on
// cuda; call .to(Device::CPU) first" (Tensor::data<T>()), and mixing devices in one op raises a
// ShapeError naming the op. The CUDA path supports float32 tensors only.
//
// Forward only (the op's CPU backward composes ops that dispatch here): binary_forward (add, sub,
// mul, div with broadcasting), bmm_raw (matmul). Forward + backward here: unary activations,
// sum over a dim, softmax / log_softmax, linear, layer_norm, fused attention, band attention,
// the LSTM step pointwise, Adam/AdamW.
#ifdef ATTN_WITH_CUDA
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>
#include "../core/shapes.hpp"
#include "../core/tensor.hpp"
#include "../kernels/cuda/api.hpp"

namespace attn {
namespace cuda_ops {
namespace kc = ::attn::kernels::cuda;

inline float* fp(const Tensor& t) { return static_cast<float*>(t.raw_data()); }
inline const float* cfp(const Tensor& t) { return t.defined() ? static_cast<const float*>(t.raw_data()) : nullptr; }
inline Tensor empty(const Shape& s) { return detail::cuda_empty(s, kFloat32); }
inline Tensor zeros(const Shape& s) { return detail::cuda_zeros(s, kFloat32); }
// A gradient handed to a CUDA backward lives on the GPU (moved there if a caller passed a CPU one).
inline Tensor on_cuda(const Tensor& g) { return g.device() == Device::CUDA ? g : g.detach().to(Device::CUDA); }

inline void check_f32(const Tensor& x, const char* op) {
  ATTN_CHECK(x.dtype() == kFloat32, op, ": the CUDA path supports float32 only, got ", dtype_name(x.dtype()), " ",
             to_string(x.shape()), " (convert with .to(kFloat32))");
}
// Same checks (and wording) as detail::check_same_dtype in ops/elementwise.hpp.
inline void check_pair(const Tensor& a, const Tensor& b, const char* op) {
  ATTN_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " ", to_string(a.shape()), " vs ",
             dtype_name(b.dtype()), " ", to_string(b.shape()), ")");
  ATTN_CHECK(a.device() == b.device(), op, ": tensors on different devices (", device_name(a.device()), " vs ",
             device_name(b.device()), ")");
  check_f32(a, op);
}
inline void check_on_cuda(const Tensor& t, const char* op, const char* what) {
  ATTN_CHECK(!t.defined() || t.device() == Device::CUDA, op, ": ", what, " ", to_string(t.shape()),
             " is on the cpu while the inputs are on cuda; move it with .to(Device::CUDA)");
}

// Element strides of `in` read at shape `out` (0 along broadcast dims); empty when it does not broadcast.
inline bool bstrides(const Shape& in, const Shape& out, std::vector<int64_t>& st) {
  st.assign(out.size(), 0);
  if (in.size() > out.size()) return false;
  int64_t s = 1;
  for (size_t k = 0; k < in.size(); ++k) {
    const size_t i = in.size() - 1 - k, o = out.size() - 1 - k;
    if (in[i] != out[o] && in[i] != 1) return false;
    st[o] = in[i] == 1 ? 0 : s;
    s *= in[i];
  }
  return true;
}
// ---------------- elementwise ----------------
// y = f(x); dL/dx = g f'(x) (the derivatives of ops/elementwise.hpp, in kernels/cuda/elementwise.cu)
inline Tensor unary(const Tensor& x, kc::Unary op, const char* name, double s = 0.0) {
  check_f32(x, name);
  Tensor y = empty(x.shape());
  kc::unary_forward(op, cfp(x), fp(y), x.numel(), float(s));
  return record(name, y, {x}, [xd = x.detach(), yd = y.detach(), op, s](const std::vector<Tensor>& g) {
    Tensor gg = on_cuda(g[0]), dx = empty(xd.shape());
    kc::unary_backward(op, cfp(gg), cfp(xd), cfp(yd), fp(dx), xd.numel(), float(s));
    return std::vector<Tensor>{dx};
  });
}

// Forward of add/sub/mul/div with broadcasting (the op's backward in ops/elementwise.hpp composes
// mul/div/neg/sum_to, which all come back here for CUDA tensors).
inline Tensor binary_forward(const Tensor& a, const Tensor& b, kc::Binary k, const char* op) {
  check_pair(a, b, op);
  const Shape os = detail::broadcast_shapes(a.shape(), b.shape(), op);
  ATTN_CHECK(os.size() <= size_t(kc::kMaxDims), op, ": the CUDA path handles at most ", kc::kMaxDims,
             " dims, got ", to_string(os));
  std::vector<int64_t> sa, sb;
  bstrides(a.shape(), os, sa);
  bstrides(b.shape(), os, sb);
  Tensor out = empty(os);
  kc::binary_forward(k, cfp(a), cfp(b), fp(out), int(os.size()), os.data(), sa.data(), sb.data());
  return out;
}
inline Tensor binary_forward(const Tensor& a, const Tensor& b, const char* op) {
  const std::string name = op;
  kc::Binary k;
  if (name == "add") k = kc::Binary::Add;
  else if (name == "sub") k = kc::Binary::Sub;
  else if (name == "mul") k = kc::Binary::Mul;
  else if (name == "div") k = kc::Binary::Div;
  else
    throw std::invalid_argument(name + ": no CUDA kernel for this op; move the tensors to the CPU with .to(Device::CPU)");
  return binary_forward(a, b, k, op);
}

// ---------------- reductions ----------------
inline void split_dim(const Shape& s, int64_t dim, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1;
  inner = 1;
  n = s.empty() ? 1 : s[size_t(dim)];
  for (int64_t d = 0; d < int64_t(s.size()); ++d) {
    if (d < dim) outer *= s[size_t(d)];
    if (d > dim) inner *= s[size_t(d)];
  }
}

// sum(x, dim) = sum_j x[..., j, ...]; dL/dx = g broadcast back along dim
inline Tensor sum_dim(const Tensor& x, int64_t dim, bool keepdim) {
  check_f32(x, "sum");
  int64_t outer, n, inner;
  split_dim(x.shape(), dim, outer, n, inner);
  Shape os = x.shape();
  if (!os.empty()) {
    if (keepdim) os[size_t(dim)] = 1;
    else os.erase(os.begin() + dim);
  }
  Tensor out = empty(os);
  kc::sum_dim(cfp(x), fp(out), outer, n, inner);
  return record("sum", out, {x}, [s = x.shape(), outer, n, inner](const std::vector<Tensor>& g) {
    Tensor gg = on_cuda(g[0]), dx = empty(s);
    kc::expand_dim(cfp(gg), fp(dx), outer, n, inner);
    return std::vector<Tensor>{dx};
  });
}

// softmax: y = exp(x - max) / sum;  dL/dx = y (g - sum g y)
// log_softmax: y = x - lse;         dL/dx = g - exp(y) sum g     (all -inf lanes: 0 / -inf, gradient g)
inline Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_f32(x, name);
  int64_t outer, n, inner;
  split_dim(x.shape(), dim, outer, n, inner);
  Tensor y = empty(x.shape());
  kc::softmax_forward(cfp(x), fp(y), outer, n, inner, log);
  return record(name, y, {x}, [yd = y.detach(), outer, n, inner, log](const std::vector<Tensor>& g) {
    Tensor gg = on_cuda(g[0]), dx = empty(yd.shape());
    kc::softmax_backward(cfp(gg), cfp(yd), fp(dx), outer, n, inner, log);
    return std::vector<Tensor>{dx};
  });
}

// ---------------- matrices ----------------
// Batched product as ops/matmul.hpp's detail::bmm_raw (no autograd): a [..., M, K] (or [..., K, M]
// if ta), b [..., K, N] (or [..., N, K] if tb); batch dims either equal or one side a single matrix.
inline Tensor bmm_raw(const Tensor& a, const Tensor& b, bool ta, bool tb, const char* op) {
  check_pair(a, b, op);
  const detail::BmmShape S = detail::bmm_shape(a.shape(), b.shape(), ta, tb, op);
  const int64_t ar = S.ar, ac = S.ac, br = S.br, bc = S.bc, M = S.M, N = S.N, K = S.K;
  const Shape &ba = S.batch_a, &bb = S.batch_b, &bs = S.batch, &os = S.out;
  const int64_t batch = numel_of(bs), na = numel_of(ba), nb = numel_of(bb);
  if (batch == 0 || M == 0 || N == 0 || K == 0) return zeros(os);
  ATTN_CHECK((na == batch || na == 1) && (nb == batch || nb == 1), op, ": the CUDA path broadcasts batch dims only ",
             "when one side is a single matrix; got ", to_string(a.shape()), " and ", to_string(b.shape()));
  Tensor out = empty(os);
  kc::gemm_strided_batched(ta, tb, M, N, K, 1.f, cfp(a), ac, na == 1 ? 0 : ar * ac, cfp(b), bc,
                           nb == 1 ? 0 : br * bc, 0.f, fp(out), N, M * N, batch);
  return out;
}

// linear(x, W, b) = x W^T + b; dL/dx = g W, dL/dW = g^T x, dL/db = sum_rows g
inline Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_pair(x, weight, "linear");
  if (bias.defined()) check_pair(x, bias, "linear");
  const int64_t in = weight.size(1), outf = weight.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  Shape os = x.shape();
  os.back() = outf;
  Tensor out = rows * outf > 0 && in > 0 ? empty(os) : zeros(os);
  if (rows > 0 && outf > 0 && in > 0)
    kc::gemm(false, true, rows, outf, in, 1.f, cfp(x), in, cfp(weight), in, 0.f, fp(out), outf);
  if (bias.defined()) kc::add_row_bias(fp(out), cfp(bias), rows, outf);
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("linear", out, inputs,
                [xd = x.detach(), wd = weight.detach(), xr = x.requires_grad(), wr = weight.requires_grad(),
                 has_bias = bias.defined(), rows, in, outf](const std::vector<Tensor>& g) {
                  Tensor gg = on_cuda(g[0]);
                  std::vector<Tensor> gs(has_bias ? 3 : 2);
                  const bool live = rows > 0 && outf > 0 && in > 0;
                  if (xr) {
                    gs[0] = live ? empty(xd.shape()) : zeros(xd.shape());
                    if (live) kc::gemm(false, false, rows, in, outf, 1.f, cfp(gg), outf, cfp(wd), in, 0.f, fp(gs[0]), in);
                  }
                  if (wr) {
                    gs[1] = live ? empty(wd.shape()) : zeros(wd.shape());
                    if (live) kc::gemm(true, false, outf, in, rows, 1.f, cfp(gg), outf, cfp(xd), in, 0.f, fp(gs[1]), in);
                  }
                  if (has_bias) {
                    gs[2] = empty({outf});
                    kc::sum_rows(cfp(gg), fp(gs[2]), rows, outf);
                  }
                  return gs;
                });
}

// ---------------- layer norm ----------------
// y = xhat w + b, xhat = (x - mu) rstd;  dL/dx = rstd (g w - mean(g w) - xhat mean(g w xhat)),
// dL/dw = sum_rows g xhat,  dL/db = sum_rows g
inline Tensor layer_norm(const Tensor& x, int64_t D, const Tensor& weight, const Tensor& bias, double eps) {
  check_f32(x, "layer_norm");
  if (weight.defined()) check_pair(x, weight, "layer_norm");
  if (bias.defined()) check_pair(x, bias, "layer_norm");
  const int64_t R = x.numel() / std::max<int64_t>(D, 1);
  Tensor y = empty(x.shape()), xhat = empty(x.shape()), rstd = empty({R});
  kc::layer_norm_forward(cfp(x), cfp(weight), cfp(bias), fp(y), fp(xhat), fp(rstd), R, D, eps);
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  return record("layer_norm", y, inputs,
                [xhat, rstd, wd = weight.defined() ? weight.detach() : Tensor(), ws = weight.defined() ? weight.shape() : Shape{},
                 bs = bias.defined() ? bias.shape() : Shape{}, has_b = bias.defined(), D, R](const std::vector<Tensor>& g) {
                  Tensor gg = on_cuda(g[0]), gx = empty(xhat.shape());
                  Tensor gw = wd.defined() ? empty({D}) : Tensor(), gb = has_b ? empty({D}) : Tensor();
                  kc::layer_norm_backward(cfp(gg), cfp(xhat), cfp(rstd), cfp(wd), fp(gx),
                                          gw.defined() ? fp(gw) : nullptr, gb.defined() ? fp(gb) : nullptr, R, D);
                  std::vector<Tensor> out{gx};
                  if (gw.defined()) out.push_back(reshape(gw, ws));
                  if (has_b) out.push_back(reshape(gb, bs));
                  return out;
                });
}

// ---------------- fused scaled dot-product attention ----------------
template <class L>
kc::Layout to_layout(const L& l) {
  kc::Layout k;
  k.off = l.off;
  k.sb = l.sb;
  k.sh = l.sh;
  k.ld = l.ld;
  return k;
}

// The CUDA path of ops/attention.hpp's detail::fused_attention (Args = detail::FusedAttnArgs; a
// template only so that this header needs no declaration order with attention.hpp). Same masks,
// layouts, dropout stream and outputs; the backward recomputes the weights from the saved
// log-sum-exp instead of storing them. Not supported here: a float attn_mask that requires grad.
template <class Args>
std::pair<Tensor, Tensor> fused_attention(const Args& a, const char* op) {
  const Tensor &q = a.q, &k = a.k, &v = a.v;
  check_pair(q, k, op);
  check_pair(q, v, op);
  ATTN_CHECK(a.p.kv_group == 1 && a.p.q_offset == 0 && !a.p.alibi, op, ": grouped-query attention (", a.p.H,
             " query heads over ", a.p.H / std::max<int64_t>(a.p.kv_group, 1), " key/value heads), ALiBi and the",
             " end-aligned causal mask of a KV cache are CPU-only for now; q ", to_string(q.shape()), ", k ",
             to_string(k.shape()));
  kc::AttnParams p;
  p.B = a.p.B;
  p.H = a.p.H;
  p.L = a.p.L;
  p.S = a.p.S;
  p.E = a.p.E;
  p.Ev = a.p.Ev;
  p.scale = float(a.p.scale);
  p.causal = a.p.causal;
  p.dropout_p = a.p.dropout_p;
  p.dropout_seed = a.p.dropout_seed;
  Tensor item_off;  // device int64 [B*H]
  if (a.attn_mask.defined()) {
    const Tensor& m = a.attn_mask;
    check_on_cuda(m, op, "attn_mask");
    std::vector<int64_t> st;
    const bool ok = m.dim() >= 1 && bstrides(m.shape(), a.scores_shape, st);
    ATTN_CHECK(ok, op, ": attn_mask ", to_string(m.shape()), " cannot be broadcast to the attention scores ",
               to_string(a.scores_shape), " (expected [L, S], [B, 1, L, S] or [B, H, L, S] style shapes)");
    ATTN_CHECK(m.dtype() == kBool || m.dtype() == kFloat32, op, ": on CUDA attn_mask must be bool or float32, got ",
               dtype_name(m.dtype()));
    ATTN_CHECK(!(m.is_floating_point() && m.requires_grad()), op,
               ": a float attn_mask that requires grad is not supported on CUDA (its gradient needs the score matrix)");
    const size_t nb = a.scores_shape.size() - 2;
    const int64_t items = p.B * p.H;
    std::vector<int64_t> offs(size_t(std::max<int64_t>(items, 0)));
    for (int64_t it = 0; it < items; ++it) {
      int64_t r = it, off = 0;
      for (size_t d = nb; d-- > 0;) {
        off += (r % a.scores_shape[d]) * st[d];
        r /= a.scores_shape[d];
      }
      offs[size_t(it)] = off;
    }
    item_off = Tensor::from_vector(offs, {int64_t(offs.size())}).to(Device::CUDA);
    p.mask = m.raw_data();
    p.mask_is_bool = m.dtype() == kBool;
    p.mask_item_off = static_cast<const int64_t*>(item_off.raw_data());
    p.mask_sl = st[nb];
    p.mask_ss = st[nb + 1];
  }
  if (a.key_padding_mask.defined()) {
    const Tensor& m = a.key_padding_mask;
    check_on_cuda(m, op, "key_padding_mask");
    ATTN_CHECK(m.dtype() == kBool, op, ": key_padding_mask must be bool (true = padded), got ", dtype_name(m.dtype()));
    ATTN_CHECK((m.dim() == 2 && m.size(0) == p.B && m.size(1) == p.S) || (m.dim() == 1 && p.B == 1 && m.size(0) == p.S),
               op, ": key_padding_mask ", to_string(m.shape()), " must be [B, S] = [", p.B, ", ", p.S,
               "] for attention scores ", to_string(a.scores_shape));
    p.kpm = static_cast<const uint8_t*>(m.raw_data());
  }
  const kc::Layout lq = to_layout(a.lq), lk = to_layout(a.lk), lv = to_layout(a.lv), lo = to_layout(a.lo);
  const bool track = is_grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  Tensor out = zeros(a.out_shape), lse = empty({std::max<int64_t>(p.B * p.H * p.L, 1)});
  kc::attention_forward(p, cfp(q), lq, cfp(k), lk, cfp(v), lv, fp(out), lo, fp(lse));
  Tensor weights;
  if (a.need_weights) {
    weights = empty(a.scores_shape);
    kc::attention_weights(p, cfp(q), lq, cfp(k), lk, cfp(lse), fp(weights), true);
  }
  if (!track) return {out, weights};
  std::vector<Tensor> inputs{q, k, v};
  // Saved: inputs, masks (held by `a`), the output and the per-row log-sum-exp.
  auto fn = [a, p, lq, lk, lv, lo, item_off, lse, od = out.detach()](const std::vector<Tensor>& g) {
    const Tensor &q = a.q, &k = a.k, &v = a.v;
    // Operand aliasing exactly as the CPU path: a packed projection gets one gradient buffer.
    const bool kq = k.is_same(q), vq = v.is_same(q), vk = v.is_same(k);
    const bool same_kq = kq && a.lk.off != a.lq.off;
    const bool vq_ok = vq && a.lv.off != a.lq.off, vk_ok = vk && a.lv.off != a.lk.off;
    const bool same_vq = vq_ok && (!vk || vk_ok), same_vk = !same_vq && vk_ok && (!vq || vq_ok);
    Tensor gq, gk, gv;
    if (q.requires_grad()) gq = zeros(q.shape());
    if (k.requires_grad()) gk = same_kq ? gq : zeros(k.shape());
    if (v.requires_grad()) gv = same_vq ? gq : (same_vk ? gk : zeros(v.shape()));
    const Tensor gout = g[0].defined() ? on_cuda(g[0]) : zeros(a.out_shape);
    const Tensor gw = g.size() > 1 && g[1].defined() ? on_cuda(g[1]) : Tensor();
    Tensor scratch = empty({std::max<int64_t>(p.B * p.H * p.L, 1)});
    kc::attention_backward(p, cfp(q), lq, cfp(k), lk, cfp(v), lv, cfp(od), cfp(gout), lo, cfp(lse), cfp(gw),
                           gq.defined() ? fp(gq) : nullptr, gk.defined() ? fp(gk) : nullptr,
                           gv.defined() ? fp(gv) : nullptr, fp(scratch));
    return std::vector<Tensor>{gq, same_kq ? Tensor() : gk, (same_vq || same_vk) ? Tensor() : gv};
  };
  if (a.need_weights) record(op, std::vector<Tensor*>{&out, &weights}, inputs, fn);
  else record(op, std::vector<Tensor*>{&out}, inputs, fn);
  return {out, weights};
}

// ---------------- windowed / block-local attention ----------------
// The CUDA path of ops/windowed_attention.hpp's detail::band_attention (Spec = detail::BandSpec),
// called after that function's shape checks.
template <class Spec>
std::pair<Tensor, Tensor> band_attention(const char* op, const Spec& spec, const Tensor& q, const Tensor& k,
                                         const Tensor& v, double scale, const Tensor& key_padding_mask,
                                         const Tensor& relative_bias) {
  check_pair(q, k, op);
  check_pair(q, v, op);
  const int64_t nd = q.dim(), L = q.size(-2), E = q.size(-1), S = k.size(-2), Ev = v.size(-1);
  kc::BandParams p;
  p.block_mode = spec.block_mode;
  p.causal = spec.causal;
  p.left = spec.left;
  p.right = spec.right;
  p.block = spec.block;
  p.W = spec.W;
  p.L = L;
  p.S = S;
  p.E = E;
  p.Ev = Ev;
  p.N = q.numel() / std::max<int64_t>(L * E, 1);
  if (std::isnan(scale)) scale = 1.0 / std::sqrt(double(std::max<int64_t>(E, 1)));
  p.scale = float(scale);
  if (key_padding_mask.defined()) {
    const Shape want{nd > 2 ? q.size(0) : 1, S};
    check_on_cuda(key_padding_mask, op, "key_padding_mask");
    ATTN_CHECK(key_padding_mask.dtype() == kBool &&
                   (key_padding_mask.shape() == want || (nd == 2 && key_padding_mask.shape() == Shape{S})),
               op, ": key_padding_mask ", to_string(key_padding_mask.shape()), " (",
               dtype_name(key_padding_mask.dtype()), ") must be bool ", to_string(want), " for q ",
               to_string(q.shape()), ", k ", to_string(k.shape()));
    p.kpm = static_cast<const uint8_t*>(key_padding_mask.raw_data());
    p.kpm_div = p.N / std::max<int64_t>(want[0], 1);
  }
  Tensor bias;
  if (relative_bias.defined()) {
    ATTN_CHECK(!p.block_mode, op, ": relative_bias is not supported here");
    const int64_t Hq = nd >= 4 ? q.size(-3) : 1;
    const bool ok = relative_bias.dim() == 2 && relative_bias.size(1) == p.W &&
                    (relative_bias.size(0) == 1 || relative_bias.size(0) == Hq);
    ATTN_CHECK(ok, op, ": relative_bias ", to_string(relative_bias.shape()), " must be [H or 1, ", p.W,
               "] (one value per offset -left..", p.causal ? 0 : p.right, ", H = ", Hq, ") for q ",
               to_string(q.shape()));
    check_pair(q, relative_bias, op);
    bias = relative_bias;
    p.bias = cfp(bias);
    p.bias_rows = relative_bias.size(0);
  }
  Shape os = q.shape(), ws = q.shape();
  os.back() = Ev;
  ws.back() = p.W;
  Tensor out = empty(os), P = empty(ws);
  kc::band_forward(p, cfp(q), cfp(k), cfp(v), fp(out), fp(P));
  std::vector<Tensor> inputs{q, k, v};
  if (bias.defined()) inputs.push_back(bias);
  record(op, std::vector<Tensor*>{&out, &P}, inputs,
         [q = q.detach(), k = k.detach(), v = v.detach(), bias, kpm = key_padding_mask, p,
          Pd = P.detach()](const std::vector<Tensor>& g) {
           (void)kpm;  // keeps the mask's device memory alive for p.kpm
           Tensor gq = empty(q.shape()), gk = empty(k.shape()), gv = empty(v.shape());
           Tensor gb = bias.defined() ? empty(bias.shape()) : Tensor();
           Tensor ds = empty(Pd.shape());
           const Tensor G = g[0].defined() ? on_cuda(g[0]) : Tensor();
           const Tensor GW = g.size() > 1 && g[1].defined() ? on_cuda(g[1]) : Tensor();
           kc::band_backward(p, cfp(q), cfp(k), cfp(v), cfp(Pd), cfp(G), cfp(GW), fp(gq), fp(gk), fp(gv),
                             gb.defined() ? fp(gb) : nullptr, fp(ds));
           std::vector<Tensor> grads{gq, gk, gv};
           if (bias.defined()) grads.push_back(gb);
           return grads;
         });
  return {out, P};
}

// ---------------- optimizer ----------------
// Moves a tensor's storage to `device` in place (handles held elsewhere see the move).
inline void move_storage(Tensor& t, Device device) {
  if (!t.defined() || t.device() == device) return;
  NoGradGuard ng;
  Tensor c = t.detach().to(device);
  TensorImpl* impl = t.unsafe_impl();
  impl->storage = c.unsafe_impl()->storage;
  impl->offset = 0;
  impl->grad.reset();
}

// One Adam/AdamW step of a CUDA parameter (the formula of optim::Adam::step). The optimizer's
// state buffers are created on the CPU; they move to the GPU on the first step.
inline void adam_step(const Tensor& p, const Tensor& g, Tensor& m, Tensor& v, Tensor* vmax, double b1, double b2,
                      double eps, double wd, double lr, double bc1, double bc2, bool decoupled) {
  const char* op = decoupled ? "AdamW" : "Adam";
  check_f32(p, op);
  ATTN_CHECK(g.device() == Device::CUDA && g.dtype() == kFloat32 && g.shape() == p.shape(), op,
             ": gradient ", to_string(g.shape()), " on ", device_name(g.device()), " does not match the CUDA parameter ",
             to_string(p.shape()));
  move_storage(m, Device::CUDA);
  move_storage(v, Device::CUDA);
  if (vmax) move_storage(*vmax, Device::CUDA);
  kc::adam_step(fp(p), cfp(g), fp(m), fp(v), vmax ? fp(*vmax) : nullptr, p.numel(), float(b1), float(b2), float(eps),
                float(wd), float(lr / bc1), float(1 - lr * wd), float(std::sqrt(bc2)), decoupled);
}

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
      return i < g.size() && g[i].defined() ? on_cuda(g[i]).clone() : zeros({L.D, L.B, L.H});
    };
    Tensor dh = grad_or_zeros(1), dc = L.lstm ? grad_or_zeros(2) : Tensor();
    const Tensor dout = g[0].defined() ? on_cuda(g[0]) : Tensor();
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
// Backward (kernels/cuda/elementwise.cu): dc_t = dc + dh o (1 - tanh(c)^2),
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
           const Tensor dh = g[0].defined() ? cuda_ops::on_cuda(g[0]) : Tensor();
           const Tensor dc = g.size() > 1 && g[1].defined() ? cuda_ops::on_cuda(g[1]) : Tensor();
           Tensor dg = cuda_ops::empty({B, 4 * H}), dcp = cuda_ops::empty({B, H});
           kernels::cuda::lstm_pointwise_backward(cuda_ops::cfp(dh), cuda_ops::cfp(dc), cuda_ops::cfp(acts),
                                                  cuda_ops::cfp(tc), cuda_ops::cfp(cp), cuda_ops::fp(dg),
                                                  cuda_ops::fp(dcp), B, H);
           return std::vector<Tensor>{dg, dcp};
         });
  return {h, c};
}

// A whole LSTMCell step on the GPU: gates from two linears (cuBLAS), then the fused pointwise.
// Weights as nn::LSTMCell's (weight_ih [4H, I], weight_hh [4H, H], biases [4H] or undefined).
inline std::pair<Tensor, Tensor> cuda_lstm_cell(const Tensor& x, const Tensor& h, const Tensor& c,
                                                const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                                                const Tensor& b_hh) {
  Tensor gates = add(linear(x, w_ih, b_ih), linear(h, w_hh, b_hh));
  return cuda_lstm_cell_pointwise(gates, c);
}

}  // namespace attn
#endif  // ATTN_WITH_CUDA
