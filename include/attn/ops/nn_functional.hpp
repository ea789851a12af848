#pragma once
// Losses and layer functions: MSE, L1, BCE-with-logits, NLL / cross-entropy, dropout,
// layer norm (fused forward and backward), embedding lookup.
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"
#include "shape.hpp"

#if ATTN_HEADER_DEFINITIONS
#include <cmath>
#include "cuda/elementwise.hpp"
#include "cuda/nn_functional.hpp"

namespace attn {
namespace detail {
inline Tensor reduce(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::None: return loss;
    case Reduction::Sum: return sum(loss);
    case Reduction::Mean: return mean(loss);
  }
  return loss;
}
inline void check_loss_shapes(const Tensor& input, const Tensor& target, const char* op) {
  ATTN_CHECK(input.shape() == target.shape(), op, ": input ", to_string(input.shape()), " and target ",
             to_string(target.shape()), " must have the same shape");
}
}  // namespace detail

// mse_loss = reduce((x - y)^2)
ATTN_API Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  detail::check_loss_shapes(input, target, "mse_loss");
  Tensor d = sub(input, target);
  return detail::reduce(mul(d, d), r);
}

// l1_loss = reduce(|x - y|)
ATTN_API Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) {
  detail::check_loss_shapes(input, target, "l1_loss");
  return detail::reduce(abs(sub(input, target)), r);
}

// bce_with_logits(x, y) = max(x, 0) - x y + log(1 + e^-|x|)   (stable for any x)
// dL/dx = g (sigmoid(x) - y),  dL/dy = -g x
ATTN_API Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction r) {
  detail::check_loss_shapes(logits, target, "binary_cross_entropy_with_logits");
  detail::check_same_dtype(logits, target, "binary_cross_entropy_with_logits");
  auto forward = [](const Tensor& x, const Tensor& y, bool grad) {
    if (detail::on_cuda(x))
      return cuda_ops::binary_forward(x, y, grad ? kernels::cuda::Binary::SigmoidSub : kernels::cuda::Binary::BceWithLogits,
                                      "binary_cross_entropy_with_logits");
    if (grad)
      return detail::binary_forward(x, y, "bce_backward", [](auto a, auto b) {
        using T = decltype(a);
        return T(1) / (T(1) + std::exp(-a)) - b;
      });
    return detail::binary_forward(x, y, "binary_cross_entropy_with_logits", [](auto a, auto b) {
      using T = decltype(a);
      return std::max(a, T(0)) - a * b + std::log1p(std::exp(-std::abs(a)));
    });
  };
  Tensor loss = forward(logits, target, false);
  loss = record("binary_cross_entropy_with_logits", loss, {logits, target}, [logits, target, forward](const std::vector<Tensor>& g) {
    Tensor gx = forward(logits, target, true);
    return std::vector<Tensor>{mul(g[0], gx), target.requires_grad() ? mul(g[0], neg(logits)) : Tensor()};
  }, {logits, target});
  return detail::reduce(loss, r);
}

namespace detail {
// Scores [N, C] and int64 class targets [N] in [0, C); `op` and `what` name the caller's arguments.
inline std::vector<int64_t> check_class_targets(const Tensor& scores, const Tensor& target, const char* op,
                                                const char* what) {
  ATTN_CHECK(scores.dim() == 2 && target.dim() == 1 && target.size(0) == scores.size(0) && target.dtype() == kInt64,
             op, ": expected ", what, " [N, C] and int64 target [N], got ", to_string(scores.shape()), " and ",
             dtype_name(target.dtype()), " ", to_string(target.shape()));
  const int64_t N = scores.size(0), C = scores.size(1);
  auto t = target.to_vector<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    ATTN_CHECK(t[size_t(i)] >= 0 && t[size_t(i)] < C, op, ": target ", t[size_t(i)], " at index ", i,
               " out of range for ", C, " classes (shape ", to_string(scores.shape()), ")");
  return t;
}
}  // namespace detail

// nll_loss(logp [N, C], t [N]) = reduce(-logp[n, t_n]); dL/dlogp[n, t_n] = -g_n
ATTN_API Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction r) {
  const auto t = detail::check_class_targets(log_probs, target, "nll_loss", "log_probs");
  const int64_t N = log_probs.size(0), C = log_probs.size(1);
  Tensor loss = Tensor::empty({N}, log_probs.dtype());
  ATTN_DISPATCH_FLOATING(log_probs.dtype(), "nll_loss", [&] {
    const scalar_t* p = log_probs.data<scalar_t>();
    scalar_t* o = loss.data<scalar_t>();
    for (int64_t i = 0; i < N; ++i) o[i] = -p[i * C + t[size_t(i)]];
  });
  loss = record("nll_loss", loss, {log_probs}, [t, N, C](const std::vector<Tensor>& g) {
    Tensor gx = Tensor::zeros({N, C}, g[0].dtype());
    ATTN_DISPATCH_FLOATING(gx.dtype(), "nll_loss_backward", [&] {
      const scalar_t* pg = g[0].data<scalar_t>();
      scalar_t* o = gx.data<scalar_t>();
      for (int64_t i = 0; i < N; ++i) o[i * C + t[size_t(i)]] = -pg[i];
    });
    return std::vector<Tensor>{gx};
  }, {});
  return detail::reduce(loss, r);
}

ATTN_API Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction r) {
  detail::check_class_targets(logits, target, "cross_entropy (log_softmax then nll_loss)", "logits");
  return nll_loss(log_softmax(logits, -1), target, r);
}

// dropout(x) = x * m / (1 - p), m ~ Bernoulli(1 - p); dL/dx = g * m / (1 - p)
ATTN_API Tensor dropout(const Tensor& x, double p, bool training) {
  ATTN_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  Tensor mask = Tensor::empty(x.shape(), x.dtype());  // drawn on the host: the same mask on every device
  ATTN_DISPATCH_FLOATING(x.dtype(), "dropout", [&] {
    scalar_t* m = mask.data<scalar_t>();
    const scalar_t keep = scalar_t(1.0 / (1.0 - p));
    auto g = default_generator().lock();
    for (int64_t i = 0, n = x.numel(); i < n; ++i) m[i] = g.uniform() >= p ? keep : scalar_t(0);
  });
  return mul(x, mask.to(x.device()));
}

// layer_norm over the trailing dims in normalized_shape:
//   mu = mean(x), rstd = 1/sqrt(var(x) + eps), xhat = (x - mu) rstd, y = xhat w + b
//   dL/dx = rstd (g w - mean(g w) - xhat mean(g w xhat)),  dL/dw = sum g xhat,  dL/db = sum g
ATTN_API Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                         double eps) {
  const int64_t k = int64_t(normalized_shape.size());
  bool ok = k >= 1 && x.dim() >= k;
  for (int64_t i = 0; ok && i < k; ++i) ok = x.shape()[size_t(x.dim() - k + i)] == normalized_shape[size_t(i)];
  ATTN_CHECK(ok, "layer_norm: input ", to_string(x.shape()), " does not end with normalized_shape ",
             to_string(normalized_shape));
  ATTN_CHECK(!weight.defined() || weight.shape() == normalized_shape, "layer_norm: weight ",
             to_string(weight.shape()), " must have shape ", to_string(normalized_shape));
  ATTN_CHECK(!bias.defined() || bias.shape() == normalized_shape, "layer_norm: bias ", to_string(bias.shape()),
             " must have shape ", to_string(normalized_shape));
  const int64_t D = numel_of(normalized_shape), R = x.numel() / std::max<int64_t>(D, 1);
  if (detail::on_cuda(x)) return cuda_ops::layer_norm(x, D, weight, bias, eps);
  Tensor y = Tensor::empty(x.shape(), x.dtype()), xhat = Tensor::empty(x.shape(), x.dtype()),
         rstd = Tensor::empty({R}, x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), "layer_norm", [&] {
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t* pw = weight.defined() ? weight.data<scalar_t>() : nullptr;
    const scalar_t* pb = bias.defined() ? bias.data<scalar_t>() : nullptr;
    scalar_t *py = y.data<scalar_t>(), *ph = xhat.data<scalar_t>(), *pr = rstd.data<scalar_t>();
    parallel_for(0, R, rows_grain(kGrainRowWork, D), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* xr = px + r * D;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < D; ++j) mu += xr[j];
        mu /= double(D);
        for (int64_t j = 0; j < D; ++j) var += (xr[j] - mu) * (xr[j] - mu);
        const scalar_t rs = scalar_t(1.0 / std::sqrt(var / double(D) + eps));
        pr[r] = rs;
        for (int64_t j = 0; j < D; ++j) {
          const scalar_t h = scalar_t(xr[j] - mu) * rs;
          ph[r * D + j] = h;
          py[r * D + j] = h * (pw ? pw[j] : scalar_t(1)) + (pb ? pb[j] : scalar_t(0));
        }
      }
    });
  });
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  return record("layer_norm", y, inputs, [xhat, rstd, weight, bias, D, R](const std::vector<Tensor>& g) {
    Tensor gx = Tensor::empty(xhat.shape(), xhat.dtype());
    Tensor gw = weight.defined() ? Tensor::zeros({D}, xhat.dtype()) : Tensor();
    Tensor gb = bias.defined() ? Tensor::zeros({D}, xhat.dtype()) : Tensor();
    ATTN_DISPATCH_FLOATING(xhat.dtype(), "layer_norm_backward", [&] {
      const scalar_t *pg = g[0].data<scalar_t>(), *ph = xhat.data<scalar_t>(), *pr = rstd.data<scalar_t>();
      const scalar_t* pw = weight.defined() ? weight.data<scalar_t>() : nullptr;
      scalar_t* po = gx.data<scalar_t>();
      parallel_for(0, R, rows_grain(kGrainRowWork, D), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          double m1 = 0, m2 = 0;
          for (int64_t j = 0; j < D; ++j) {
            const double gw_j = double(pg[r * D + j]) * (pw ? pw[j] : 1.0);
            m1 += gw_j;
            m2 += gw_j * ph[r * D + j];
          }
          m1 /= double(D);
          m2 /= double(D);
          for (int64_t j = 0; j < D; ++j) {
            const double gw_j = double(pg[r * D + j]) * (pw ? pw[j] : 1.0);
            po[r * D + j] = scalar_t(pr[r] * (gw_j - m1 - ph[r * D + j] * m2));
          }
        }
      });
      // Parameter gradients summed over rows in row order (thread-count independent).
      scalar_t* pgw = gw.defined() ? gw.data<scalar_t>() : nullptr;
      scalar_t* pgb = gb.defined() ? gb.data<scalar_t>() : nullptr;
      for (int64_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < D; ++j) {
          if (pgw) pgw[j] += pg[r * D + j] * ph[r * D + j];
          if (pgb) pgb[j] += pg[r * D + j];
        }
    });
    std::vector<Tensor> out{gx};
    if (weight.defined()) out.push_back(reshape(gw, weight.shape()));
    if (bias.defined()) out.push_back(reshape(gb, bias.shape()));
    return out;
  }, {weight});
}

// embedding(W, idx) = W[idx]; dL/dW[idx[k]] += g[k]
ATTN_API Tensor embedding(const Tensor& weight, const Tensor& indices) {
  ATTN_CHECK(weight.dim() == 2, "embedding: weight must be 2-D, got ", to_string(weight.shape()));
  // Checked here so the errors name embedding and the weight's shape, not index_select.
  ATTN_CHECK(indices.dtype() == kInt64, "embedding: indices must be int64, got ", dtype_name(indices.dtype()), " ",
             to_string(indices.shape()), " for weight ", to_string(weight.shape()));
  for (int64_t i : indices.to_vector<int64_t>())
    ATTN_CHECK(i >= 0 && i < weight.size(0), "embedding: index ", i, " out of range for weight ",
               to_string(weight.shape()), " (indices ", to_string(indices.shape()), ")");
  Tensor flat = reshape(indices, {indices.numel()});
  Tensor rows = index_select(weight, 0, flat);
  Shape s = indices.shape();
  s.push_back(weight.size(1));
  return reshape(rows, s);
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
