#pragma once
// Elementwise ops with NumPy/PyTorch broadcasting, activations, comparisons and masking.
// Each op's backward follows its forward, with the derivative restated in a comment.
#include "../core/shapes.hpp"
#include "../core/tensor.hpp"

#if ATTN_HEADER_DEFINITIONS
#include <cmath>
#include <optional>
#include "../kernels/cpu/elementwise.hpp"
#include "../kernels/cpu/vmath.hpp"
#include "cuda/elementwise.hpp"
#include "detail/checks.hpp"

namespace attn {
namespace detail {

// out[i] = f(a[i'], b[i'']) with broadcasting; A, B, O are element types (the loop:
// kernels/cpu/elementwise.hpp).
template <class A, class B, class O, class F>
void broadcast_binary(const Tensor& a, const Tensor& b, Tensor& out, const F& f) {
  kernels::cpu::broadcast_binary<A, B, O>(a.data<A>(), a.shape(), b.data<B>(), b.shape(), out.data<O>(), out.shape(),
                                          f);
}

// Forward of a floating binary op: broadcast shape, dispatch on dtype. `cuda_kernel`: the op's
// kernel for CUDA tensors (none: the op has no CUDA path and fails there naming itself).
template <class F>
Tensor binary_forward(const Tensor& a, const Tensor& b, const char* op, const F& f,
                      std::optional<kernels::cuda::Binary> cuda_kernel = std::nullopt) {
  if (on_cuda(a, b)) return cuda_ops::binary_forward(a, b, cuda_kernel, op);
  check_same_dtype(a, b, op);
  Tensor out = Tensor::empty(a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), op), a.dtype());
  ATTN_DISPATCH_FLOATING(a.dtype(), op, [&] { broadcast_binary<scalar_t, scalar_t, scalar_t>(a, b, out, f); });
  return out;
}

// Forward of an elementwise unary op on a floating tensor, given as a span function
// f_span(const T* in, T* out, int64_t n) (the vectorised maps of kernels/cpu/vmath.hpp).
template <class FSpan>
Tensor unary_forward_span(const Tensor& x, const char* op, const FSpan& f_span) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), op, [&] {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(0, x.numel(), kGrainPointwise, [&](int64_t b, int64_t e) { f_span(px + b, po + b, e - b); });
  });
  return out;
}

// Forward of an elementwise unary op given per element, y = f(x).
template <class F>
Tensor unary_forward(const Tensor& x, const char* op, const F& f) {
  return unary_forward_span(x, op, [&](const auto* in, auto* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = f(in[i]);
  });
}

// grad_in[i] = g[i] * df(x[i], y[i]), for unary ops whose derivative needs input and/or output.
template <class DF>
Tensor unary_backward(const Tensor& g, const Tensor& x, const Tensor& y, const DF& df) {
  Tensor out = Tensor::empty(g.shape(), g.dtype());
  ATTN_DISPATCH_FLOATING(g.dtype(), "backward", [&] {
    const scalar_t *pg = g.data<scalar_t>(), *px = x.data<scalar_t>(), *py = y.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(0, g.numel(), kGrainPointwise, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) po[i] = pg[i] * df(px[i], py[i]);
    });
  });
  return out;
}

// Which of x and y a unary op's derivative df(x, y) reads: those are checked for in-place writes
// before its backward runs (record's `saved`).
enum class Reads { None, X, Y, XY };

// Records an elementwise unary op y (computed already), dL/dx = g * df(x, y).
template <class DF>
Tensor record_unary(const Tensor& x, Tensor y, const char* op, Reads reads, const DF& df) {
  BackwardFn fn = [x, yd = y.detach(), df](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{unary_backward(g[0], x, yd, df)};
  };
  switch (reads) {
    case Reads::None: return record(op, y, {x}, std::move(fn), {});
    case Reads::X: return record(op, y, {x}, std::move(fn), {x});
    case Reads::Y: return record(op, y, {x}, std::move(fn), {y});
    default: return record(op, y, {x}, std::move(fn), {x, y});
  }
}

// Records an elementwise unary op: y = f(x), dL/dx = g * df(x, y).
template <class F, class DF>
Tensor unary_op(const Tensor& x, const char* op, Reads reads, const F& f, const DF& df) {
  return record_unary(x, unary_forward(x, op, f), op, reads, df);
}

template <class F>
Tensor compare(const Tensor& a, const Tensor& b, const char* op, const F& f) {
  check_same_dtype(a, b, op);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), op), kBool);
  ATTN_DISPATCH_ALL(a.dtype(), op, [&] {
    broadcast_binary<scalar_t, scalar_t, uint8_t>(a, b, out, [&](scalar_t x, scalar_t y) { return uint8_t(f(x, y)); });
  });
  return out;
}

inline Tensor scalar_like(double s, const Tensor& like) { return Tensor::full({}, s, like.dtype()); }

}  // namespace detail

// add(a, b) = a + b; dL/da = sum_to(g, a.shape), dL/db = sum_to(g, b.shape)
ATTN_API Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward(a, b, "add", [](auto x, auto y) { return x + y; }, kernels::cuda::Binary::Add);
  // the shapes are kept only when broadcasting (a closure without them allocates less)
  const bool same = a.shape() == b.shape();
  return record("add", out, {a, b}, [same, sa = same ? Shape() : a.shape(), sb = same ? Shape() : b.shape()](
                                        const std::vector<Tensor>& g) {
    if (same) return std::vector<Tensor>{g[0], g[0]};
    return std::vector<Tensor>{sum_to(g[0], sa), sum_to(g[0], sb)};
  }, {});
}

// sub(a, b) = a - b; dL/da = sum_to(g), dL/db = -sum_to(g)
ATTN_API Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward(a, b, "sub", [](auto x, auto y) { return x - y; }, kernels::cuda::Binary::Sub);
  const bool same = a.shape() == b.shape();
  return record("sub", out, {a, b}, [same, sa = same ? Shape() : a.shape(), sb = same ? Shape() : b.shape()](
                                        const std::vector<Tensor>& g) {
    if (same) return std::vector<Tensor>{g[0], neg(g[0])};
    return std::vector<Tensor>{sum_to(g[0], sa), neg(sum_to(g[0], sb))};
  }, {});
}

// mul(a, b) = a * b; dL/da = sum_to(g * b), dL/db = sum_to(g * a)
ATTN_API Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward(a, b, "mul", [](auto x, auto y) { return x * y; }, kernels::cuda::Binary::Mul);
  return record("mul", out, {a, b}, [a, b](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{a.requires_grad() ? sum_to(mul(g[0], b), a.shape()) : Tensor(),
                               b.requires_grad() ? sum_to(mul(g[0], a), b.shape()) : Tensor()};
  }, {a, b});
}

// div(a, b) = a / b; dL/da = sum_to(g / b), dL/db = sum_to(-g * a / b^2)
ATTN_API Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward(a, b, "div", [](auto x, auto y) { return x / y; }, kernels::cuda::Binary::Div);
  return record("div", out, {a, b}, [a, b, od = out.detach()](const std::vector<Tensor>& g) {
    Tensor gb_full;
    if (b.requires_grad()) gb_full = neg(div(mul(g[0], od), b));  // -g * (a/b) / b
    return std::vector<Tensor>{a.requires_grad() ? sum_to(div(g[0], b), a.shape()) : Tensor(),
                               b.requires_grad() ? sum_to(gb_full, b.shape()) : Tensor()};
  }, {b, out});
}

namespace detail {
// Shared by maximum/minimum: the winner takes g; on ties each side takes g/2 (as PyTorch).
inline Tensor select_grad(const Tensor& g, const Tensor& a, const Tensor& b, bool for_a, bool is_max) {
  Tensor w = binary_forward(a, b, "max_grad", [for_a, is_max](auto x, auto y) {
    using T = decltype(x);
    if (x == y) return T(0.5);
    const bool a_wins = is_max ? x > y : x < y;
    return T(a_wins == for_a ? 1 : 0);
  });
  return mul(g, w);
}
}  // namespace detail

// maximum(a, b) = max(a, b) elementwise; dL/da = g where a > b (g/2 on ties)
ATTN_API Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward(a, b, "maximum", [](auto x, auto y) { return x > y ? x : y; });
  return record("maximum", out, {a, b}, [a, b](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(detail::select_grad(g[0], a, b, true, true), a.shape()),
                               sum_to(detail::select_grad(g[0], a, b, false, true), b.shape())};
  }, {a, b});
}
// minimum(a, b) = min(a, b) elementwise; dL/da = g where a < b (g/2 on ties)
ATTN_API Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward(a, b, "minimum", [](auto x, auto y) { return x < y ? x : y; });
  return record("minimum", out, {a, b}, [a, b](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(detail::select_grad(g[0], a, b, true, false), a.shape()),
                               sum_to(detail::select_grad(g[0], a, b, false, false), b.shape())};
  }, {a, b});
}

// Scalar forms: y = x + s (dy/dx = 1), y = x * s (dy/dx = s), y = s - x, y = s / x (dy/dx = -s/x^2)
ATTN_API Tensor add(const Tensor& x, double s) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::AddScalar, "add_scalar", s);
  return detail::unary_op(x, "add_scalar", detail::Reads::None, [s](auto v) { return v + decltype(v)(s); }, [](auto, auto) { return 1; });
}
ATTN_API Tensor mul(const Tensor& x, double s) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::MulScalar, "mul_scalar", s);
  return detail::unary_op(x, "mul_scalar", detail::Reads::None, [s](auto v) { return v * decltype(v)(s); },
                          [s](auto v, auto) { return decltype(v)(s); });
}
ATTN_API Tensor rsub(double s, const Tensor& x) {
  return detail::unary_op(x, "rsub", detail::Reads::None, [s](auto v) { return decltype(v)(s) - v; }, [](auto, auto) { return -1; });
}
ATTN_API Tensor rdiv(double s, const Tensor& x) {
  return detail::unary_op(x, "rdiv", detail::Reads::XY, [s](auto v) { return decltype(v)(s) / v; },
                          [](auto v, auto y) { return -y / v; });
}
// neg(x) = -x; dL/dx = -g
ATTN_API Tensor neg(const Tensor& x) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::Neg, "neg");
  return detail::unary_op(x, "neg", detail::Reads::None, [](auto v) { return -v; }, [](auto, auto) { return -1; });
}
// pow(x, e) = x^e; dL/dx = g * e * x^(e-1)
ATTN_API Tensor pow(const Tensor& x, double e) {
  return detail::unary_op(x, "pow", detail::Reads::X, [e](auto v) { return decltype(v)(std::pow(v, e)); },
                          [e](auto v, auto) { return decltype(v)(e * std::pow(v, e - 1)); });
}
// sqrt(x); dL/dx = g / (2 sqrt(x))
ATTN_API Tensor sqrt(const Tensor& x) {
  return detail::unary_op(x, "sqrt", detail::Reads::Y, [](auto v) { return std::sqrt(v); }, [](auto, auto y) { return decltype(y)(0.5) / y; });
}
// exp(x); dL/dx = g * exp(x)
ATTN_API Tensor exp(const Tensor& x) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::Exp, "exp");
  return detail::record_unary(
      x, detail::unary_forward_span(x, "exp", [](const auto* in, auto* out, int64_t n) { kernels::cpu::exp_n(in, out, n); }),
      "exp", detail::Reads::Y, [](auto, auto y) { return y; });
}
// log(x); dL/dx = g / x
ATTN_API Tensor log(const Tensor& x) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::Log, "log");
  return detail::unary_op(x, "log", detail::Reads::X, [](auto v) { return std::log(v); }, [](auto v, auto) { return 1 / v; });
}
// abs(x); dL/dx = g * sign(x) (0 at 0, as PyTorch)
ATTN_API Tensor abs(const Tensor& x) {
  return detail::unary_op(x, "abs", detail::Reads::X, [](auto v) { return std::abs(v); },
                          [](auto v, auto) { return decltype(v)((v > 0) - (v < 0)); });
}
// sin(x); dL/dx = g cos(x)
ATTN_API Tensor sin(const Tensor& x) {
  return detail::unary_op(x, "sin", detail::Reads::X, [](auto v) { return std::sin(v); }, [](auto v, auto) { return std::cos(v); });
}
// cos(x); dL/dx = -g sin(x)
ATTN_API Tensor cos(const Tensor& x) {
  return detail::unary_op(x, "cos", detail::Reads::X, [](auto v) { return std::cos(v); }, [](auto v, auto) { return -std::sin(v); });
}
// clamp(x, lo, hi); dL/dx = g where lo <= x <= hi, else 0
ATTN_API Tensor clamp(const Tensor& x, double lo, double hi) {
  ATTN_CHECK(lo <= hi, "clamp: min ", lo, " > max ", hi, " for shape ", to_string(x.shape()));
  return detail::unary_op(x, "clamp", detail::Reads::X,
                          [lo, hi](auto v) { using T = decltype(v); return v < T(lo) ? T(lo) : (v > T(hi) ? T(hi) : v); },
                          [lo, hi](auto v, auto) { using T = decltype(v); return T(v >= T(lo) && v <= T(hi)); });
}
// tanh(x); dL/dx = g (1 - y^2)
ATTN_API Tensor tanh(const Tensor& x) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::Tanh, "tanh");
  return detail::record_unary(
      x, detail::unary_forward_span(x, "tanh", [](const auto* in, auto* out, int64_t n) { kernels::cpu::tanh_n(in, out, n); }),
      "tanh", detail::Reads::Y, [](auto, auto y) { return 1 - y * y; });
}
// sigmoid(x) = 1 / (1 + e^-x); dL/dx = g y (1 - y)
ATTN_API Tensor sigmoid(const Tensor& x) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::Sigmoid, "sigmoid");
  return detail::record_unary(
      x,
      detail::unary_forward_span(x, "sigmoid",
                                 [](const auto* in, auto* out, int64_t n) { kernels::cpu::sigmoid_n(in, out, n); }),
      "sigmoid", detail::Reads::Y, [](auto, auto y) { return y * (1 - y); });
}
// relu(x) = max(x, 0); dL/dx = g [x > 0]
ATTN_API Tensor relu(const Tensor& x) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::Relu, "relu");
  return detail::unary_op(x, "relu", detail::Reads::X, [](auto v) { return v > 0 ? v : decltype(v)(0); },
                          [](auto v, auto) { return decltype(v)(v > 0); });
}
// leaky_relu(x) = x if x > 0 else a x; dL/dx = g (1 or a)
ATTN_API Tensor leaky_relu(const Tensor& x, double a) {
  return detail::unary_op(x, "leaky_relu", detail::Reads::X, [a](auto v) { return v > 0 ? v : decltype(v)(a) * v; },
                          [a](auto v, auto) { return v > 0 ? decltype(v)(1) : decltype(v)(a); });
}
// elu(x) = x if x > 0 else alpha (e^x - 1); dL/dx = g (1 or y + alpha)
ATTN_API Tensor elu(const Tensor& x, double alpha) {
  return detail::unary_op(x, "elu", detail::Reads::XY, [alpha](auto v) { return v > 0 ? v : decltype(v)(alpha) * std::expm1(v); },
                          [alpha](auto v, auto y) { return v > 0 ? decltype(v)(1) : y + decltype(v)(alpha); });
}
// gelu(x) = x Phi(x) (exact, erf form); dL/dx = g (Phi(x) + x phi(x))
ATTN_API Tensor gelu(const Tensor& x) {
  if (detail::on_cuda(x)) return cuda_ops::unary(x, kernels::cuda::Unary::Gelu, "gelu");
  return detail::unary_op(
      x, "gelu", detail::Reads::X, [](auto v) { using T = decltype(v); return T(0.5) * v * (1 + std::erf(v * T(M_SQRT1_2))); },
      [](auto v, auto) {
        using T = decltype(v);
        const T cdf = T(0.5) * (1 + std::erf(v * T(M_SQRT1_2)));
        const T pdf = std::exp(T(-0.5) * v * v) * T(0.3989422804014327);
        return cdf + v * pdf;
      });
}
// softplus(x) = log(1 + e^(beta x)) / beta, linear above threshold; dL/dx = g sigmoid(beta x)
ATTN_API Tensor softplus(const Tensor& x, double beta, double threshold) {
  return detail::unary_op(
      x, "softplus", detail::Reads::X,
      [beta, threshold](auto v) {
        using T = decltype(v);
        return v * T(beta) > T(threshold) ? v : std::log1p(std::exp(v * T(beta))) / T(beta);
      },
      [beta, threshold](auto v, auto) {
        using T = decltype(v);
        return v * T(beta) > T(threshold) ? T(1) : 1 / (1 + std::exp(-v * T(beta)));
      });
}

// ---- comparisons and masks (not differentiable; results are bool tensors) ----
ATTN_API Tensor gt(const Tensor& a, const Tensor& b) { return detail::compare(a, b, "gt", [](auto x, auto y) { return x > y; }); }
ATTN_API Tensor lt(const Tensor& a, const Tensor& b) { return detail::compare(a, b, "lt", [](auto x, auto y) { return x < y; }); }
ATTN_API Tensor ge(const Tensor& a, const Tensor& b) { return detail::compare(a, b, "ge", [](auto x, auto y) { return x >= y; }); }
ATTN_API Tensor le(const Tensor& a, const Tensor& b) { return detail::compare(a, b, "le", [](auto x, auto y) { return x <= y; }); }
ATTN_API Tensor eq(const Tensor& a, const Tensor& b) { return detail::compare(a, b, "eq", [](auto x, auto y) { return x == y; }); }
ATTN_API Tensor ne(const Tensor& a, const Tensor& b) { return detail::compare(a, b, "ne", [](auto x, auto y) { return x != y; }); }
ATTN_API Tensor logical_and(const Tensor& a, const Tensor& b) {
  return detail::compare(a.to(kBool), b.to(kBool), "logical_and", [](auto x, auto y) { return x && y; });
}
ATTN_API Tensor logical_or(const Tensor& a, const Tensor& b) {
  return detail::compare(a.to(kBool), b.to(kBool), "logical_or", [](auto x, auto y) { return x || y; });
}
ATTN_API Tensor logical_not(const Tensor& m) {
  Tensor b = m.to(kBool), out = Tensor::empty(m.shape(), kBool);
  const uint8_t* p = b.data<uint8_t>();
  uint8_t* o = out.data<uint8_t>();
  for (int64_t i = 0, n = m.numel(); i < n; ++i) o[i] = !p[i];
  return out;
}

// where(c, a, b) = c ? a : b; dL/da = sum_to(g [c]), dL/db = sum_to(g [!c])
ATTN_API Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::check_same_dtype(a, b, "where");
  const Shape s = detail::broadcast_shapes(detail::broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  const Tensor c = cond.to(kBool);
  Tensor out = Tensor::empty(s, a.dtype());
  ATTN_DISPATCH_FLOATING(a.dtype(), "where", [&] {
    kernels::cpu::broadcast_where<scalar_t>(c.data<uint8_t>(), c.shape(), a.data<scalar_t>(), a.shape(),
                                            b.data<scalar_t>(), b.shape(), out.data<scalar_t>(), s);
  });
  return record("where", out, {a, b}, [c, sa = a.shape(), sb = b.shape()](const std::vector<Tensor>& g) {
    Tensor zero = Tensor::zeros({}, g[0].dtype());
    return std::vector<Tensor>{sum_to(where(c, g[0], zero), sa), sum_to(where(c, zero, g[0]), sb)};
  }, {c});
}

// masked_fill(x, m, v) = m ? v : x; dL/dx = g [!m]
ATTN_API Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  ATTN_CHECK(detail::broadcast_shapes(x.shape(), mask.shape(), "masked_fill") == x.shape(),
             "masked_fill: mask of shape ", to_string(mask.shape()), " does not broadcast to input shape ",
             to_string(x.shape()));
  return where(mask, detail::scalar_like(value, x), x);
}

ATTN_API bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(std::abs(x[i] - y[i]) <= atol + rtol * std::abs(y[i]))) return false;
  return true;
}

// ---- operators ----
ATTN_API Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
ATTN_API Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
ATTN_API Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
ATTN_API Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
ATTN_API Tensor operator+(const Tensor& a, double s) { return add(a, s); }
ATTN_API Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
ATTN_API Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
ATTN_API Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
ATTN_API Tensor operator+(double s, const Tensor& a) { return add(a, s); }
ATTN_API Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
ATTN_API Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
ATTN_API Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
