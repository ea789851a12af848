// Elementwise kernels of attn::cuda (kernels/cuda/elementwise.hpp), and the memory kernels of
// kernels/cuda/api.hpp that reuse their strided index walk (strided_copy, add_inplace).
// Each output element is written by exactly one thread: results do not depend on the launch
// geometry, and there are no atomics. Arithmetic is float (as the CPU path for float32).
#include <cmath>
#include <string>
#include "api.hpp"
#include "common.cuh"
#include "elementwise.hpp"

namespace attn::kernels::cuda {
using detail::grid_for;

// ---------------- unary ----------------
__device__ inline float unary_f(Unary op, float v, float s) {
  switch (op) {
    case Unary::Tanh: return tanhf(v);
    case Unary::Sigmoid: return 1.f / (1.f + expf(-v));
    case Unary::Relu: return v > 0.f ? v : 0.f;
    case Unary::Exp: return expf(v);
    case Unary::Log: return logf(v);
    case Unary::Neg: return -v;
    case Unary::Gelu: return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    case Unary::AddScalar: return v + s;
    case Unary::MulScalar: return v * s;
  }
  return 0.f;
}
// derivative of f at x (y = f(x)), as the CPU path writes it in ops/elementwise.hpp
__device__ inline float unary_df(Unary op, float x, float y, float s) {
  switch (op) {
    case Unary::Tanh: return 1.f - y * y;
    case Unary::Sigmoid: return y * (1.f - y);
    case Unary::Relu: return x > 0.f ? 1.f : 0.f;
    case Unary::Exp: return y;
    case Unary::Log: return 1.f / x;
    case Unary::Neg: return -1.f;
    case Unary::Gelu: {
      const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
      const float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
      return cdf + x * pdf;
    }
    case Unary::AddScalar: return 1.f;
    case Unary::MulScalar: return s;
  }
  return 0.f;
}

__global__ void unary_fwd_k(Unary op, const float* x, float* y, int64_t n, float s) {
  ATTN_GRID_STRIDE(i, n) y[i] = unary_f(op, x[i], s);
}
__global__ void unary_bwd_k(Unary op, const float* g, const float* x, const float* y, float* dx, int64_t n, float s) {
  ATTN_GRID_STRIDE(i, n) dx[i] = g[i] * unary_df(op, x[i], y[i], s);
}

void unary_forward(Unary op, const float* x, float* y, int64_t n, float s) {
  if (n <= 0) return;
  unary_fwd_k<<<grid_for(n), 256>>>(op, x, y, n, s);
  ATTN_CUDA_LAUNCH_CHECK("unary_forward");
}
void unary_backward(Unary op, const float* g, const float* x, const float* y, float* dx, int64_t n, float s) {
  if (n <= 0) return;
  unary_bwd_k<<<grid_for(n), 256>>>(op, g, x, y, dx, n, s);
  ATTN_CUDA_LAUNCH_CHECK("unary_backward");
}

// ---------------- binary with broadcasting ----------------
// An index space `shape` read through two sets of element strides (sa, sb): the two operands of a
// binary op, or the source and destination of a strided copy.
struct BinaryGeom {
  int ndim;
  int64_t shape[kMaxDims], sa[kMaxDims], sb[kMaxDims];
};
BinaryGeom make_geom(const char* op, int ndim, const int64_t* shape, const int64_t* sa, const int64_t* sb,
                     int64_t& n) {
  if (ndim > kMaxDims) throw std::runtime_error(std::string("attn CUDA ") + op + ": more than 8 dims");
  BinaryGeom g{};
  g.ndim = ndim;
  n = 1;
  for (int d = 0; d < ndim; ++d) {
    g.shape[d] = shape[d];
    g.sa[d] = sa[d];
    g.sb[d] = sb[d];
    n *= shape[d];
  }
  return g;
}
__global__ void binary_k(Binary op, const float* a, const float* b, float* out, int64_t n, BinaryGeom geo) {
  ATTN_GRID_STRIDE(i, n) {
    int64_t r = i, oa = 0, ob = 0;
    for (int d = geo.ndim - 1; d >= 0; --d) {
      const int64_t k = r % geo.shape[d];
      r /= geo.shape[d];
      oa += k * geo.sa[d];
      ob += k * geo.sb[d];
    }
    const float x = a[oa], y = b[ob];
    float z = 0.f;
    switch (op) {
      case Binary::Add: z = x + y; break;
      case Binary::Sub: z = x - y; break;
      case Binary::Mul: z = x * y; break;
      case Binary::Div: z = x / y; break;
      case Binary::BceWithLogits: z = fmaxf(x, 0.f) - x * y + log1pf(expf(-fabsf(x))); break;
      case Binary::SigmoidSub: z = 1.f / (1.f + expf(-x)) - y; break;
    }
    out[i] = z;
  }
}
void binary_forward(Binary op, const float* a, const float* b, float* out, int ndim, const int64_t* shape,
                    const int64_t* sa, const int64_t* sb) {
  int64_t n = 0;
  const BinaryGeom g = make_geom("binary op", ndim, shape, sa, sb, n);
  if (n <= 0) return;
  binary_k<<<grid_for(n), 256>>>(op, a, b, out, n, g);
  ATTN_CUDA_LAUNCH_CHECK("binary_forward");
}

template <class T>
__global__ void add_inplace_k(T* acc, const T* g, int64_t n) {
  ATTN_GRID_STRIDE(i, n) acc[i] += g[i];
}
void add_inplace(float* acc, const float* g, int64_t n) {
  if (n <= 0) return;
  add_inplace_k<float><<<grid_for(n), 256>>>(acc, g, n);
  ATTN_CUDA_LAUNCH_CHECK("add_inplace");
}
void add_inplace_f64(double* acc, const double* g, int64_t n) {
  if (n <= 0) return;
  add_inplace_k<double><<<grid_for(n), 256>>>(acc, g, n);
  ATTN_CUDA_LAUNCH_CHECK("add_inplace_f64");
}

// ---------------- strided copy (every layout op: permute, slice, cat, expand, flip, ...) ----------------
template <class T>
__global__ void strided_copy_k(const T* src, T* dst, BinaryGeom g, int64_t n, bool accumulate) {
  ATTN_GRID_STRIDE(i, n) {
    int64_t rem = i, so = 0, doff = 0;
    for (int d = g.ndim - 1; d >= 0; --d) {
      const int64_t k = rem % g.shape[d];
      rem /= g.shape[d];
      so += k * g.sa[d];
      doff += k * g.sb[d];
    }
    if (accumulate) dst[doff] += src[so];
    else dst[doff] = src[so];
  }
}
void strided_copy(const void* src, void* dst, int elem_bytes, bool is_double, int ndim, const int64_t* shape,
                  const int64_t* src_st, const int64_t* dst_st, bool accumulate) {
  int64_t n = 0;
  const BinaryGeom g = make_geom("strided_copy", ndim, shape, src_st, dst_st, n);
  if (n <= 0) return;
  if (accumulate && elem_bytes == 4)
    strided_copy_k<float><<<grid_for(n), 256>>>(static_cast<const float*>(src), static_cast<float*>(dst), g, n, true);
  else if (accumulate && elem_bytes == 8 && is_double)
    strided_copy_k<double><<<grid_for(n), 256>>>(static_cast<const double*>(src), static_cast<double*>(dst), g, n, true);
  else if (accumulate)
    throw std::runtime_error("attn CUDA strided_copy: accumulation needs float32 or float64");
  else if (elem_bytes == 1)
    strided_copy_k<uint8_t><<<grid_for(n), 256>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), g, n, false);
  else if (elem_bytes == 4)
    strided_copy_k<uint32_t><<<grid_for(n), 256>>>(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), g, n, false);
  else if (elem_bytes == 8)
    strided_copy_k<uint64_t><<<grid_for(n), 256>>>(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), g, n, false);
  else
    throw std::runtime_error("attn CUDA strided_copy: unsupported element size " + std::to_string(elem_bytes));
  ATTN_CUDA_LAUNCH_CHECK("strided_copy");
}

}  // namespace attn::kernels::cuda
