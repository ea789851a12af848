#pragma once
// Reductions over one dim, softmax family. A reduced dim is seen as [outer, n, inner]; each
// output element is summed by one thread in index order, so results do not depend on threads.
#include "../core/tensor.hpp"

#if ATTN_HEADER_DEFINITIONS
#include <cmath>
#include <limits>
#include "cuda/reduce.hpp"
#include "detail/dims.hpp"

namespace attn {
namespace detail {

// Row-parallel traversal of [outer, n, inner]: f(o, i, ptr offset of element (o, 0, i)).
template <class F>
void for_each_lane(const DimSplit& d, int64_t work_per_lane, const F& f) {
  const int64_t lanes = d.outer * d.inner;
  parallel_for(0, lanes, rows_grain(kGrainLaneWork, work_per_lane), [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      const int64_t o = l / d.inner, i = l % d.inner;
      f(o * d.n * d.inner + i, l);
    }
  });
}

// Sum over one dim into a new tensor.
inline Tensor sum_dim_forward(const Tensor& x, int64_t dim, bool keepdim) {
  const DimSplit d = split_at(x.shape(), dim);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), dim, keepdim), x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), "sum", [&] {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    if (d.inner == 1) {
      for_each_lane(d, d.n, [&](int64_t base, int64_t l) {
        scalar_t acc = 0;
        for (int64_t j = 0; j < d.n; ++j) acc += px[base + j];
        po[l] = acc;
      });
    } else {
      // Accumulate whole rows so the inner loop is contiguous and vectorises.
      parallel_for(0, d.outer, 1, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          scalar_t* dst = po + o * d.inner;
          const scalar_t* src = px + o * d.n * d.inner;
          std::fill(dst, dst + d.inner, scalar_t(0));
          for (int64_t j = 0; j < d.n; ++j)
            for (int64_t i = 0; i < d.inner; ++i) dst[i] += src[j * d.inner + i];
        }
      });
    }
  });
  return out;
}

}  // namespace detail

// sum(x, dim) = sum_j x[..., j, ...]; dL/dx = g broadcast back along dim
ATTN_API Tensor sum(const Tensor& x, int64_t dim, bool keepdim) {
  dim = detail::wrap_dim(dim, x.dim(), "sum", x.shape());
  if (detail::on_cuda(x)) return cuda_ops::sum_dim(x, dim, keepdim);
  Tensor out = detail::sum_dim_forward(x, dim, keepdim);
  return record("sum", out, {x}, [s = x.shape(), dim](const std::vector<Tensor>& g) {
    Shape kept = s;
    if (!kept.empty()) kept[size_t(dim)] = 1;
    return std::vector<Tensor>{expand(reshape(g[0], kept), s)};
  }, {});
}

ATTN_API Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  std::vector<int64_t> ds;
  for (int64_t d : dims) ds.push_back(detail::wrap_dim(d, x.dim(), "sum", x.shape()));
  std::sort(ds.rbegin(), ds.rend());
  Tensor out = x;
  for (int64_t d : ds) out = sum(out, d, keepdim);
  return out;
}

// sum(x) over all elements: a flat view summed as one lane.
ATTN_API Tensor sum(const Tensor& x) { return reshape(sum(reshape(x, {x.numel()}), 0, false), {}); }

ATTN_API Tensor mean(const Tensor& x, int64_t dim, bool keepdim) {
  dim = detail::wrap_dim(dim, x.dim(), "mean", x.shape());
  const int64_t n = x.dim() ? x.shape()[size_t(dim)] : 1;
  return mul(sum(x, dim, keepdim), 1.0 / double(n));
}
ATTN_API Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  int64_t n = 1;
  for (int64_t d : dims) n *= x.shape()[size_t(detail::wrap_dim(d, x.dim(), "mean", x.shape()))];
  return mul(sum(x, dims, keepdim), 1.0 / double(n));
}
// mean of no elements is 0/0 = NaN, as in PyTorch (also for mean(x, dim) over an empty dim)
ATTN_API Tensor mean(const Tensor& x) { return mul(sum(x), 1.0 / double(x.numel())); }

// var(x, dim) = sum (x - mean)^2 / (n - unbiased)
ATTN_API Tensor var(const Tensor& x, int64_t dim, bool unbiased, bool keepdim) {
  dim = detail::wrap_dim(dim, x.dim(), "var", x.shape());
  const int64_t n = x.shape()[size_t(dim)];
  ATTN_CHECK(n > (unbiased ? 1 : 0), "var: dim ", dim, " of shape ", to_string(x.shape()), " too small");
  Tensor c = sub(x, mean(x, dim, true));
  return mul(sum(mul(c, c), dim, keepdim), 1.0 / double(n - (unbiased ? 1 : 0)));
}

namespace detail {
// max/min over a dim with indices; dL/dx = g scattered to the arg position.
inline std::pair<Tensor, Tensor> extreme(const Tensor& x, int64_t dim, bool keepdim, bool is_max, const char* op) {
  dim = wrap_dim(dim, x.dim(), op, x.shape());
  ATTN_CHECK(x.dim() == 0 || x.shape()[size_t(dim)] > 0, op, ": empty dim ", dim, " in shape ", to_string(x.shape()));
  const DimSplit d = split_at(x.shape(), dim);
  const Shape rs = reduced_shape(x.shape(), dim, keepdim);
  Tensor values = Tensor::empty(rs, x.dtype()), indices = Tensor::empty(rs, kInt64);
  ATTN_DISPATCH_FLOATING(x.dtype(), op, [&] {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* pv = values.data<scalar_t>();
    int64_t* pi = indices.data<int64_t>();
    for_each_lane(d, d.n, [&](int64_t base, int64_t l) {
      int64_t best = 0;
      scalar_t bv = px[base];
      for (int64_t j = 1; j < d.n; ++j) {
        const scalar_t v = px[base + j * d.inner];
        if (std::isnan(bv)) break;  // NaN propagates, as in PyTorch
        if (std::isnan(v) || (is_max ? v > bv : v < bv)) { bv = v; best = j; }
      }
      pv[l] = bv;
      pi[l] = best;
    });
  });
  record(op, std::vector<Tensor*>{&values, &indices}, {x}, [s = x.shape(), dim, indices = indices.detach(), d](const std::vector<Tensor>& g) {
    Tensor gx = Tensor::zeros(s, g[0].dtype());
    ATTN_DISPATCH_FLOATING(gx.dtype(), "max_backward", [&] {
      const scalar_t* pg = g[0].data<scalar_t>();
      const int64_t* pi = indices.data<int64_t>();
      scalar_t* px = gx.data<scalar_t>();
      for (int64_t l = 0; l < d.outer * d.inner; ++l) {
        const int64_t o = l / d.inner, i = l % d.inner;
        px[o * d.n * d.inner + pi[l] * d.inner + i] += pg[l];
      }
    });
    return std::vector<Tensor>{gx};
  }, {indices});
  return {values, indices};
}
}  // namespace detail

ATTN_API std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  return detail::extreme(x, dim, keepdim, true, "max");
}
ATTN_API std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  return detail::extreme(x, dim, keepdim, false, "min");
}
ATTN_API Tensor max(const Tensor& x) { return reshape(max(reshape(x, {x.numel()}), 0, false).first, {}); }
ATTN_API Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return detail::extreme(x, dim, keepdim, true, "argmax").second;  // errors name argmax, not max
}

namespace detail {
// Stable softmax / log-softmax along a dim. A lane whose entries are all -inf (every key
// masked) gives zeros from softmax, never NaN.
template <bool Log>
Tensor softmax_forward(const Tensor& x, int64_t dim) {
  const DimSplit d = split_at(x.shape(), dim);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), Log ? "log_softmax" : "softmax", [&] {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    const int64_t st = d.inner;
    for_each_lane(d, d.n * 4, [&](int64_t base, int64_t) {
      scalar_t m = -std::numeric_limits<scalar_t>::infinity();
      for (int64_t j = 0; j < d.n; ++j) m = std::max(m, px[base + j * st]);
      if (m == -std::numeric_limits<scalar_t>::infinity()) {
        for (int64_t j = 0; j < d.n; ++j) po[base + j * st] = Log ? m : scalar_t(0);
        return;
      }
      scalar_t s = 0;
      for (int64_t j = 0; j < d.n; ++j) {
        const scalar_t e = std::exp(px[base + j * st] - m);
        if (!Log) po[base + j * st] = e;
        s += e;
      }
      if (Log) {
        const scalar_t lse = m + std::log(s);
        for (int64_t j = 0; j < d.n; ++j) po[base + j * st] = px[base + j * st] - lse;
      } else {
        const scalar_t inv = scalar_t(1) / s;
        for (int64_t j = 0; j < d.n; ++j) po[base + j * st] *= inv;
      }
    });
  });
  return out;
}

// softmax:     dL/dx_j = y_j (g_j - sum_k g_k y_k)
// log_softmax: dL/dx_j = g_j - exp(y_j) sum_k g_k      (exp(-inf) = 0 keeps masked lanes at g)
template <bool Log>
Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t dim) {
  const DimSplit d = split_at(y.shape(), dim);
  Tensor gx = Tensor::empty(y.shape(), y.dtype());
  ATTN_DISPATCH_FLOATING(y.dtype(), "softmax_backward", [&] {
    const scalar_t *pg = g.data<scalar_t>(), *py = y.data<scalar_t>();
    scalar_t* po = gx.data<scalar_t>();
    const int64_t st = d.inner;
    for_each_lane(d, d.n * 3, [&](int64_t base, int64_t) {
      scalar_t dot = 0;
      for (int64_t j = 0; j < d.n; ++j) dot += Log ? pg[base + j * st] : pg[base + j * st] * py[base + j * st];
      for (int64_t j = 0; j < d.n; ++j) {
        const int64_t k = base + j * st;
        po[k] = Log ? pg[k] - std::exp(py[k]) * dot : py[k] * (pg[k] - dot);
      }
    });
  });
  return gx;
}
}  // namespace detail

ATTN_API Tensor softmax(const Tensor& x, int64_t dim) {
  dim = detail::wrap_dim(dim, x.dim(), "softmax", x.shape());
  if (detail::on_cuda(x)) return cuda_ops::softmax(x, dim, false);
  Tensor y = detail::softmax_forward<false>(x, dim);
  return record("softmax", y, {x}, [yd = y.detach(), dim](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{detail::softmax_backward<false>(g[0], yd, dim)};
  }, {y});
}
ATTN_API Tensor log_softmax(const Tensor& x, int64_t dim) {
  dim = detail::wrap_dim(dim, x.dim(), "log_softmax", x.shape());
  if (detail::on_cuda(x)) return cuda_ops::softmax(x, dim, true);
  Tensor y = detail::softmax_forward<true>(x, dim);
  return record("log_softmax", y, {x}, [yd = y.detach(), dim](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{detail::softmax_backward<true>(g[0], yd, dim)};
  }, {y});
}
// logsumexp(x, dim) = m + log sum exp(x - m), composed from differentiable pieces
ATTN_API Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  dim = detail::wrap_dim(dim, x.dim(), "logsumexp", x.shape());
  Tensor m;
  {
    NoGradGuard ng;
    m = max(x, dim, true).first;
  }
  Tensor r = add(log(sum(exp(sub(x, m)), dim, true)), m);
  return keepdim ? r : squeeze(r, dim);
}

// sum_to(x, shape): sums the dims that broadcasting added or stretched, so that the result
// has `shape`. The backward of every broadcasting op goes through here.
ATTN_API Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  ATTN_CHECK(int64_t(shape.size()) <= x.dim(), "sum_to: cannot reduce ", to_string(x.shape()), " to ",
             to_string(shape));
  Tensor out = x;
  const int64_t lead = x.dim() - int64_t(shape.size());
  for (int64_t i = 0; i < lead; ++i) out = sum(out, 0, false);
  for (int64_t i = 0; i < int64_t(shape.size()); ++i)
    if (shape[size_t(i)] == 1 && out.shape()[size_t(i)] != 1) out = sum(out, i, true);
  ATTN_CHECK(out.shape() == shape, "sum_to: cannot reduce ", to_string(x.shape()), " to ", to_string(shape));
  return out;
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
