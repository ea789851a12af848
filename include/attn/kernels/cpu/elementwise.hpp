#pragma once
// Raw CPU loops of the broadcasting elementwise ops (no autograd, no dtype dispatch;
// ops/elementwise.hpp wraps them): the layout of a broadcast loop, binary ops and where().
#include <algorithm>
#include <cstdint>
#include <vector>
#include "../../core/parallel.hpp"
#include "../../core/shapes.hpp"

namespace attn::kernels::cpu {

// Layout of a broadcast loop over up to three operands, with adjacent dims merged where all
// operands stay linear, so the common cases collapse to one or two flat loops.
struct BroadcastLoop {
  std::vector<int64_t> sizes;                  // outer..inner after merging
  std::vector<std::vector<int64_t>> strides;   // per operand, per dim
  int64_t rows = 1, inner = 1;

  BroadcastLoop(const Shape& out, const std::vector<Shape>& ins) {
    std::vector<std::vector<int64_t>> st;
    for (const Shape& s : ins) st.push_back(::attn::detail::broadcast_strides(s, out));
    for (size_t d = 0; d < out.size(); ++d) {
      if (out[d] == 1) continue;
      bool merge = !sizes.empty();
      for (size_t k = 0; merge && k < st.size(); ++k) merge = strides[k].back() == st[k][d] * out[d];
      if (merge) {
        sizes.back() *= out[d];
        for (size_t k = 0; k < st.size(); ++k) strides[k].back() = st[k][d];
      } else {
        sizes.push_back(out[d]);
        strides.resize(st.size());
        for (size_t k = 0; k < st.size(); ++k) strides[k].push_back(st[k][d]);
      }
    }
    if (sizes.empty()) {
      sizes.push_back(1);
      strides.assign(st.size(), std::vector<int64_t>{0});
    }
    inner = sizes.back();
    rows = ::attn::detail::shape_numel(sizes) / std::max<int64_t>(inner, 1);
  }
  // Offset of row r (a multi-index over all but the innermost dim) in operand k.
  int64_t row_offset(size_t k, int64_t r) const {
    int64_t off = 0;
    for (int64_t d = int64_t(sizes.size()) - 2; d >= 0; --d) {
      off += (r % sizes[size_t(d)]) * strides[k][size_t(d)];
      r /= sizes[size_t(d)];
    }
    return off;
  }
};

// po[i] = f(pa[i'], pb[i'']) over the output shape `os` with broadcasting (a of shape `as`, b of
// shape `bs`, all contiguous); A, B, O are element types.
template <class A, class B, class O, class F>
void broadcast_binary(const A* pa, const Shape& as, const B* pb, const Shape& bs, O* po, const Shape& os, const F& f) {
  if (as == bs) {  // no broadcasting (the common case): one flat loop, no layout to build
    parallel_for(0, ::attn::detail::shape_numel(os), kGrainElementwise, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) po[i] = f(pa[i], pb[i]);
    });
    return;
  }
  BroadcastLoop L(os, {as, bs});
  const int64_t sa = L.strides[0].back(), sb = L.strides[1].back(), inner = L.inner;
  auto run_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const A* x = pa + L.row_offset(0, r);
      const B* y = pb + L.row_offset(1, r);
      O* o = po + r * inner;
      if (sa == 1 && sb == 1) for (int64_t i = 0; i < inner; ++i) o[i] = f(x[i], y[i]);
      else if (sa == 1 && sb == 0) for (int64_t i = 0; i < inner; ++i) o[i] = f(x[i], y[0]);
      else if (sa == 0 && sb == 1) for (int64_t i = 0; i < inner; ++i) o[i] = f(x[0], y[i]);
      else for (int64_t i = 0; i < inner; ++i) o[i] = f(x[i * sa], y[i * sb]);
    }
  };
  if (L.rows == 1) {
    parallel_for(0, inner, kGrainElementwise, [&](int64_t b0, int64_t b1) {
      const A* x = pa;
      const B* y = pb;
      for (int64_t i = b0; i < b1; ++i) po[i] = f(x[i * sa], y[i * sb]);
    });
  } else {
    parallel_for(0, L.rows, rows_grain(kGrainElementwise, inner), run_rows);
  }
}

// po[i] = c ? a : b, each read at its broadcast position, over the output shape `os` (where()).
template <class T>
void broadcast_where(const uint8_t* pc, const Shape& cs, const T* pa, const Shape& as, const T* pb, const Shape& bs,
                     T* po, const Shape& os) {
  BroadcastLoop L(os, {cs, as, bs});
  const int64_t sc = L.strides[0].back(), sa = L.strides[1].back(), sb = L.strides[2].back();
  parallel_for(0, L.rows, rows_grain(kGrainRowWork, L.inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* x = pc + L.row_offset(0, r);
      const T* y = pa + L.row_offset(1, r);
      const T* z = pb + L.row_offset(2, r);
      T* o = po + r * L.inner;
      for (int64_t i = 0; i < L.inner; ++i) o[i] = x[i * sc] ? y[i * sa] : z[i * sb];
    }
  });
}

}  // namespace attn::kernels::cpu
