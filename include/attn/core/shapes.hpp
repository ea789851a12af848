#pragma once
// Shape arithmetic shared by the CPU ops and the CUDA paths: broadcasting, and the operand
// shapes of a batched matrix product. Pure functions of shapes; they throw ShapeError naming the op.
#include <algorithm>
#include <limits>
#include <vector>
#include "dtype.hpp"
#include "error.hpp"

namespace attn::detail {

inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Element count of a shape asked for by `op`, checked: no negative size, and a product of the
// sizes that fits in int64 even when one of them is 0 (as in PyTorch: strides and partial
// products of such a shape would overflow too).
inline int64_t checked_numel(const Shape& s, const char* op) {
  int64_t n = 1;
  bool zero = false;
  for (int64_t d : s) {
    ATTN_CHECK(d >= 0, op, ": negative size in shape ", to_string(s));
    if (d == 0) {
      zero = true;
      continue;
    }
    ATTN_CHECK(n <= std::numeric_limits<int64_t>::max() / d, op, ": shape ", to_string(s),
               " has more than 2^63 - 1 elements");
    n *= d;
  }
  return zero ? 0 : n;
}

inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ATTN_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", to_string(a), " and ", to_string(b),
               " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  checked_numel(out, op);
  return out;
}

// Element strides of `in` read as a tensor of shape `out` (0 along broadcast dims).
inline std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  int64_t s = 1;
  for (size_t k = 0; k < in.size(); ++k) {
    const size_t i = in.size() - 1 - k, o = out.size() - 1 - k;
    st[o] = in[i] == 1 ? 0 : s;
    s *= in[i];
  }
  return st;
}

// Shapes of a batched product op(a) @ op(b): a [..., M, K] (or [..., K, M] if ta), b [..., K, N]
// (or [..., N, K] if tb), batch dims broadcast. ar/ac/br/bc are the stored matrix dims.
struct BmmShape {
  int64_t M = 0, N = 0, K = 0, ar = 0, ac = 0, br = 0, bc = 0;
  Shape batch_a, batch_b, batch, out;
};
inline BmmShape bmm_shape(const Shape& a, const Shape& b, bool ta, bool tb, const char* op) {
  ATTN_CHECK(a.size() >= 2 && b.size() >= 2, op, ": need at least 2-D operands, got ", to_string(a), " and ",
             to_string(b));
  BmmShape s;
  s.ar = a[a.size() - 2];
  s.ac = a.back();
  s.br = b[b.size() - 2];
  s.bc = b.back();
  s.M = ta ? s.ac : s.ar;
  s.K = ta ? s.ar : s.ac;
  s.N = tb ? s.br : s.bc;
  const int64_t Kb = tb ? s.bc : s.br;
  ATTN_CHECK(s.K == Kb, op, ": shapes ", to_string(a), " and ", to_string(b), " are incompatible (inner dims ", s.K,
             " != ", Kb, ")");
  s.batch_a.assign(a.begin(), a.end() - 2);
  s.batch_b.assign(b.begin(), b.end() - 2);
  s.batch = broadcast_shapes(s.batch_a, s.batch_b, op);
  s.out = s.batch;
  s.out.push_back(s.M);
  s.out.push_back(s.N);
  checked_numel(s.out, op);
  return s;
}

// A shape for a new tensor: sizes >= 0, and an element count and a byte size that fit in int64.
inline int64_t check_shape(const Shape& shape, const char* op, DType dtype = kFloat32) {
  const int64_t n = checked_numel(shape, op);
  ATTN_CHECK(n <= std::numeric_limits<int64_t>::max() / int64_t(dtype_size(dtype)), op, ": shape ",
             attn::to_string(shape), " of ", dtype_name(dtype), " needs more than 2^63 - 1 bytes");
  return n;
}
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op, const Shape& shape) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  ATTN_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " out of range for shape ", attn::to_string(shape));
  return dim < 0 ? dim + n : dim;
}

}  // namespace attn::detail
