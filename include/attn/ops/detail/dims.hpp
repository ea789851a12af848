#pragma once
// A tensor seen as [outer, n, inner] around one dim, and the shape left after reducing that dim:
// shared by the CPU reductions (ops/reduce.hpp) and their CUDA path (ops/cuda/reduce.hpp).
#include <cstdint>
#include "../../core/shapes.hpp"

namespace attn::detail {

struct DimSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
inline DimSplit split_at(const Shape& s, int64_t dim) {
  DimSplit d;
  for (int64_t i = 0; i < int64_t(s.size()); ++i) {
    if (i < dim) d.outer *= s[size_t(i)];
    else if (i == dim) d.n = s[size_t(i)];
    else d.inner *= s[size_t(i)];
  }
  return d;
}
inline Shape reduced_shape(const Shape& s, int64_t dim, bool keepdim) {
  Shape out = s;
  if (s.empty()) return out;
  if (keepdim) out[size_t(dim)] = 1;
  else out.erase(out.begin() + dim);
  return out;
}

}  // namespace attn::detail
