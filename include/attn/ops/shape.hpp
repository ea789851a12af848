#pragma once
// Layout ops. reshape shares storage (all storage is contiguous); every other op copies through
// one strided-copy kernel, so the layout logic lives in a single place (on the GPU too: outputs
// are allocated on the input's device and strided_copy runs the device kernel there).
#include "../core/tensor.hpp"

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <limits>
#include <numeric>

namespace attn {
namespace detail {

inline std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = int64_t(s.size()) - 2; i >= 0; --i) st[size_t(i)] = st[size_t(i) + 1] * s[size_t(i) + 1];
  return st;
}

// dst[dst_off + sum_i idx_i * dst_st_i] (+)= src[src_off + sum_i idx_i * src_st_i] over `shape`.
// Strides may be 0 (broadcast) or negative (flip). With Accumulate, dst strides must not alias.
template <bool Accumulate = false>
void strided_copy(const Tensor& src, int64_t src_off, const std::vector<int64_t>& src_st, const Tensor& dst,
                  int64_t dst_off, const std::vector<int64_t>& dst_st, const Shape& shape) {
  const int64_t n = numel_of(shape);
  if (n == 0) return;
  if (src.device() != Device::CPU || dst.device() != Device::CPU)
    return device_strided_copy(src, src_off, src_st, dst, dst_off, dst_st, shape, Accumulate);
  const int64_t nd = int64_t(shape.size());
  const int64_t inner = nd ? shape.back() : 1;
  const int64_t ss = nd ? src_st.back() : 0, ds = nd ? dst_st.back() : 0;
  const int64_t rows = n / inner;
  ATTN_DISPATCH_ALL(src.dtype(), "strided_copy", [&] {
    const scalar_t* ps = src.data<scalar_t>() + src_off;
    scalar_t* pd = dst.data<scalar_t>() + dst_off;
    parallel_for(0, rows, rows_grain(kGrainRowCopy, inner), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int64_t so = 0, doff = 0, rem = r;
        for (int64_t d = nd - 2; d >= 0; --d) {
          const int64_t i = rem % shape[size_t(d)];
          rem /= shape[size_t(d)];
          so += i * src_st[size_t(d)];
          doff += i * dst_st[size_t(d)];
        }
        const scalar_t* s = ps + so;
        scalar_t* o = pd + doff;
        if (!Accumulate && ss == 1 && ds == 1) std::copy(s, s + inner, o);
        else if (Accumulate) for (int64_t i = 0; i < inner; ++i) o[i * ds] += s[i * ss];
        else for (int64_t i = 0; i < inner; ++i) o[i * ds] = s[i * ss];
      }
    });
  });
}

inline Shape infer_shape(const Shape& requested, int64_t numel, const Shape& from) {
  Shape s = requested;
  int64_t infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      ATTN_CHECK(infer < 0, "reshape: more than one -1 in ", to_string(requested));
      infer = int64_t(i);
      s[i] = 1;
    } else {
      ATTN_CHECK(s[i] >= 0, "reshape: negative size in ", to_string(requested));
    }
  }
  if (infer >= 0) {
    const int64_t known = checked_numel(s, "reshape");
    ATTN_CHECK(known > 0 && numel % known == 0, "reshape: shape ", to_string(from), " cannot be viewed as ",
               to_string(requested));
    s[size_t(infer)] = numel / known;
  }
  ATTN_CHECK(checked_numel(s, "reshape") == numel, "reshape: shape ", to_string(from), " (", numel,
             " elements) cannot be viewed as ", to_string(requested));
  return s;
}

}  // namespace detail

// reshape(x, s): same data, new shape; dL/dx = reshape(g, x.shape)
ATTN_API Tensor reshape(const Tensor& x, const Shape& shape) {
  const Shape s = detail::infer_shape(shape, x.numel(), x.shape());
  if (s == x.shape()) return x;
  Tensor out = x.detach();
  out.unsafe_impl()->shape = s;
  return record("reshape", out, {x}, [from = x.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{reshape(g[0], from)};
  }, {});
}

ATTN_API Tensor flatten(const Tensor& x, int64_t start, int64_t end) {
  if (x.dim() == 0) return reshape(x, {1});
  start = detail::wrap_dim(start, x.dim(), "flatten", x.shape());
  end = detail::wrap_dim(end, x.dim(), "flatten", x.shape());
  Shape s(x.shape().begin(), x.shape().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= x.shape()[size_t(i)];
  s.push_back(m);
  s.insert(s.end(), x.shape().begin() + end + 1, x.shape().end());
  return reshape(x, s);
}

ATTN_API Tensor unsqueeze(const Tensor& x, int64_t dim) {
  dim = detail::wrap_dim(dim, x.dim() + 1, "unsqueeze", x.shape());
  Shape s = x.shape();
  s.insert(s.begin() + dim, 1);
  return reshape(x, s);
}
ATTN_API Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return x;
  dim = detail::wrap_dim(dim, x.dim(), "squeeze", x.shape());
  if (x.shape()[size_t(dim)] != 1) return x;
  Shape s = x.shape();
  s.erase(s.begin() + dim);
  return reshape(x, s);
}
ATTN_API Tensor squeeze(const Tensor& x) {
  Shape s;
  for (int64_t d : x.shape()) if (d != 1) s.push_back(d);
  return reshape(x, s);
}

// permute(x, p): out[i_p0, i_p1, ...] = x[i_0, i_1, ...]; dL/dx = permute(g, inverse(p))
ATTN_API Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  ATTN_CHECK(int64_t(dims.size()) == x.dim(), "permute: ", dims.size(), " dims given for shape ", to_string(x.shape()));
  std::vector<int64_t> p(dims.size()), inv(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    p[i] = detail::wrap_dim(dims[i], x.dim(), "permute", x.shape());
    ATTN_CHECK(inv[size_t(p[i])] < 0, "permute: repeated dim ", dims[i], " for shape ", to_string(x.shape()));
    inv[size_t(p[i])] = int64_t(i);
  }
  const auto st = detail::contiguous_strides(x.shape());
  Shape s(p.size());
  std::vector<int64_t> src_st(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    s[i] = x.shape()[size_t(p[i])];
    src_st[i] = st[size_t(p[i])];
  }
  Tensor out = detail::empty_on(x.device(), s, x.dtype());
  detail::strided_copy(x, 0, src_st, out, 0, detail::contiguous_strides(s), s);
  return record("permute", out, {x}, [inv](const std::vector<Tensor>& g) { return std::vector<Tensor>{permute(g[0], inv)}; }, {});
}

ATTN_API Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  d0 = detail::wrap_dim(d0, x.dim(), "transpose", x.shape());
  d1 = detail::wrap_dim(d1, x.dim(), "transpose", x.shape());
  if (d0 == d1) return x;
  std::vector<int64_t> p(size_t(x.dim()));
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[size_t(d0)], p[size_t(d1)]);
  return permute(x, p);
}

// slice(x, dim, start, end, step) = x[..., start:end:step, ...]; dL/dx = g placed back, zeros elsewhere
ATTN_API Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  dim = detail::wrap_dim(dim, x.dim(), "slice", x.shape());
  const int64_t n = x.shape()[size_t(dim)];
  ATTN_CHECK(step > 0, "slice: step must be positive, got ", step, " for shape ", to_string(x.shape()));
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  const int64_t len = (end - start + step - 1) / step;
  Shape s = x.shape();
  s[size_t(dim)] = len;
  const auto st = detail::contiguous_strides(x.shape());
  std::vector<int64_t> src_st = st;
  src_st[size_t(dim)] *= step;
  const int64_t off = start * st[size_t(dim)];
  Tensor out = detail::empty_on(x.device(), s, x.dtype());
  detail::strided_copy(x, off, src_st, out, 0, detail::contiguous_strides(s), s);
  return record("slice", out, {x}, [xs = x.shape(), s, off, src_st](const std::vector<Tensor>& g) {
    Tensor gx = detail::zeros_on(g[0].device(), xs, g[0].dtype());
    detail::strided_copy(g[0], 0, detail::contiguous_strides(s), gx, off, src_st, s);
    return std::vector<Tensor>{gx};
  }, {});
}

ATTN_API Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  dim = detail::wrap_dim(dim, x.dim(), "narrow", x.shape());
  const int64_t n = x.shape()[size_t(dim)];
  if (start < 0) start += n;
  ATTN_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ", start + length,
             ") out of bounds for dim ", dim, " of shape ", to_string(x.shape()));
  return slice(x, dim, start, start + length, 1);
}

ATTN_API Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  dim = detail::wrap_dim(dim, x.dim(), "select", x.shape());
  const int64_t n = x.shape()[size_t(dim)];
  ATTN_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", dim, " of shape ",
             to_string(x.shape()));
  return squeeze(narrow(x, dim, index < 0 ? index + n : index, 1), dim);
}

// cat(xs, dim): inputs side by side along dim; dL/dx_k = the matching slice of g
ATTN_API Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  ATTN_CHECK(!xs.empty(), "cat: no tensors given");
  const Tensor& f = xs[0];
  dim = detail::wrap_dim(dim, f.dim(), "cat", f.shape());
  Shape s = f.shape();
  int64_t total = 0;
  for (const Tensor& x : xs) {
    ATTN_CHECK(x.device() == f.device(), "cat: tensors on different devices (", device_name(f.device()), " vs ",
               device_name(x.device()), ")");
    bool ok = x.dim() == f.dim() && x.dtype() == f.dtype();
    for (int64_t i = 0; ok && i < f.dim(); ++i) ok = i == dim || x.shape()[size_t(i)] == f.shape()[size_t(i)];
    ATTN_CHECK(ok, "cat: shapes ", to_string(f.shape()), " and ", to_string(x.shape()), " (", dtype_name(f.dtype()),
               ", ", dtype_name(x.dtype()), ") do not match outside dim ", dim);
    const int64_t len = x.shape()[size_t(dim)];
    ATTN_CHECK(total <= std::numeric_limits<int64_t>::max() - len, "cat: sizes along dim ", dim,
               " add up to more than 2^63 - 1");
    total += len;
  }
  s[size_t(dim)] = total;
  Tensor out = detail::empty_on(f.device(), s, f.dtype());
  const auto ost = detail::contiguous_strides(s);
  std::vector<int64_t> starts;
  int64_t at = 0;
  for (const Tensor& x : xs) {
    starts.push_back(at);
    detail::strided_copy(x, 0, detail::contiguous_strides(x.shape()), out, at * ost[size_t(dim)], ost, x.shape());
    at += x.shape()[size_t(dim)];
  }
  std::vector<int64_t> lens;
  for (const Tensor& x : xs) lens.push_back(x.shape()[size_t(dim)]);
  return record("cat", out, xs, [dim, starts, lens](const std::vector<Tensor>& g) {
    std::vector<Tensor> gs;
    for (size_t k = 0; k < starts.size(); ++k) gs.push_back(narrow(g[0], dim, starts[k], lens[k]));
    return gs;
  }, {});
}

ATTN_API Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  ATTN_CHECK(!xs.empty(), "stack: no tensors given");
  dim = detail::wrap_dim(dim, xs[0].dim() + 1, "stack", xs[0].shape());
  std::vector<Tensor> us;
  for (const Tensor& x : xs) {
    ATTN_CHECK(x.shape() == xs[0].shape(), "stack: shapes ", to_string(xs[0].shape()), " and ", to_string(x.shape()),
               " differ");
    us.push_back(unsqueeze(x, dim));
  }
  return cat(us, dim);
}

ATTN_API std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  dim = detail::wrap_dim(dim, x.dim(), "split", x.shape());
  ATTN_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  std::vector<Tensor> out;
  const int64_t n = x.shape()[size_t(dim)];
  for (int64_t s = 0; s < n; s += split_size) out.push_back(narrow(x, dim, s, std::min(split_size, n - s)));
  return out;
}
ATTN_API std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  ATTN_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int64_t n = x.shape()[size_t(detail::wrap_dim(dim, x.dim(), "chunk", x.shape()))];
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}
ATTN_API std::vector<Tensor> unbind(const Tensor& x, int64_t dim) {
  dim = detail::wrap_dim(dim, x.dim(), "unbind", x.shape());
  std::vector<Tensor> out;
  for (int64_t i = 0; i < x.shape()[size_t(dim)]; ++i) out.push_back(select(x, dim, i));
  return out;
}

// index_select(x, dim, idx): out[..., k, ...] = x[..., idx[k], ...]; dL/dx[idx[k]] += g[k]
ATTN_API Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = detail::wrap_dim(dim, x.dim(), "index_select", x.shape());
  ATTN_CHECK(index.dtype() == kInt64 && index.dim() <= 1, "index_select: index must be a 1-D int64 tensor, got ",
             dtype_name(index.dtype()), " ", to_string(index.shape()));
  const auto idx = index.to_vector<int64_t>();
  const int64_t n = x.shape()[size_t(dim)];
  for (int64_t i : idx)
    ATTN_CHECK(i >= 0 && i < n, "index_select: index ", i, " out of range for dim ", dim, " of shape ", to_string(x.shape()));
  const auto xst = detail::contiguous_strides(x.shape());
  Shape s = x.shape();
  s[size_t(dim)] = 1;
  Shape os = x.shape();
  os[size_t(dim)] = int64_t(idx.size());
  Tensor out = detail::empty_on(x.device(), os, x.dtype());
  const auto ost = detail::contiguous_strides(os);
  for (size_t k = 0; k < idx.size(); ++k)
    detail::strided_copy(x, idx[k] * xst[size_t(dim)], xst, out, int64_t(k) * ost[size_t(dim)], ost, s);
  return record("index_select", out, {x}, [xs = x.shape(), dim, idx, s, xst, ost](const std::vector<Tensor>& g) {
    Tensor gx = detail::zeros_on(g[0].device(), xs, g[0].dtype());
    for (size_t k = 0; k < idx.size(); ++k)
      detail::strided_copy<true>(g[0], int64_t(k) * ost[size_t(dim)], ost, gx, idx[k] * xst[size_t(dim)], xst, s);
    return std::vector<Tensor>{gx};
  }, {});
}

// flip(x, dims): reverses the order along dims; dL/dx = flip(g, dims)
ATTN_API Tensor flip(const Tensor& x, const std::vector<int64_t>& dims) {
  auto st = detail::contiguous_strides(x.shape());
  int64_t off = 0;
  for (int64_t d : dims) {
    d = detail::wrap_dim(d, x.dim(), "flip", x.shape());
    off += (x.shape()[size_t(d)] - 1) * st[size_t(d)];
    st[size_t(d)] = -st[size_t(d)];
  }
  Tensor out = detail::empty_on(x.device(), x.shape(), x.dtype());
  if (x.numel()) detail::strided_copy(x, off, st, out, 0, detail::contiguous_strides(x.shape()), x.shape());
  return record("flip", out, {x}, [dims](const std::vector<Tensor>& g) { return std::vector<Tensor>{flip(g[0], dims)}; }, {});
}

// expand(x, s): x broadcast to s (materialised); dL/dx = sum_to(g, x.shape)
ATTN_API Tensor expand(const Tensor& x, const Shape& shape) {
  Shape s = shape;
  ATTN_CHECK(s.size() >= x.shape().size(), "expand: shape ", to_string(x.shape()), " cannot expand to ", to_string(shape));
  const size_t lead = s.size() - x.shape().size();
  for (size_t i = 0; i < x.shape().size(); ++i) {
    if (s[lead + i] == -1) s[lead + i] = x.shape()[i];
    ATTN_CHECK(x.shape()[i] == s[lead + i] || x.shape()[i] == 1, "expand: shape ", to_string(x.shape()),
               " cannot expand to ", to_string(shape));
  }
  // New leading dims (and -1 there) must be sizes too; caught here rather than by Tensor::empty.
  for (int64_t d : s) ATTN_CHECK(d >= 0, "expand: shape ", to_string(x.shape()), " cannot expand to ", to_string(shape));
  detail::checked_numel(s, "expand");
  if (s == x.shape()) return x;
  Tensor out = detail::empty_on(x.device(), s, x.dtype());
  std::vector<int64_t> st(s.size(), 0);
  const auto xst = detail::contiguous_strides(x.shape());
  for (size_t i = 0; i < x.shape().size(); ++i) st[lead + i] = x.shape()[i] == 1 ? 0 : xst[i];
  detail::strided_copy(x, 0, st, out, 0, detail::contiguous_strides(s), s);
  return record("expand", out, {x}, [xs = x.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(g[0], xs)};
  }, {});
}
ATTN_API Tensor broadcast_to(const Tensor& x, const Shape& shape) { return expand(x, shape); }

// Each row (along dim 0) repeated `repeats` times in place: [a, b] -> [a, a, b, b].
ATTN_API Tensor repeat_interleave_rows(const Tensor& x, int64_t repeats) {
  Shape s = x.shape();
  s.insert(s.begin() + 1, repeats);
  Shape r = x.shape();
  r[0] *= repeats;
  return reshape(expand(unsqueeze(x, 1), s), r);
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
