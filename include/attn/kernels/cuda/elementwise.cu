// Elementwise, reduction, normalisation, LSTM-gate and optimizer kernels of attn::cuda.
// Each output element is written by exactly one thread, and every sum runs in a fixed order in
// that thread: results do not depend on the launch geometry, and there are no atomics.
// Arithmetic is float (as the CPU path for float32), except layer norm's mean/variance, which the
// CPU path accumulates in double and so does this one.
#include <cmath>
#include <string>
#include "api.hpp"
#include "common.cuh"

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

// ---------------- reductions over [outer, n, inner] ----------------
// One thread per lane (o, i) sums its lane in index order, as the CPU path does, when the lanes
// are many or short. Few long lanes (the sum of a whole tensor, a bias gradient over thousands of
// rows) would leave the GPU to a handful of threads each walking n elements, so those are summed
// in two passes: fixed chunks of kSumChunk elements (each in index order) into partial sums, then
// the partials in order. The chunking depends only on the shape: the same bits on every run.
constexpr int64_t kSumChunk = 256;
__global__ void sum_chunks_k(const float* x, float* part, int64_t outer, int64_t n, int64_t inner, int64_t chunks) {
  ATTN_GRID_STRIDE(l, outer * chunks * inner) {
    const int64_t i = l % inner, c = (l / inner) % chunks, o = l / (inner * chunks);
    const int64_t j0 = c * kSumChunk, j1 = j0 + kSumChunk < n ? j0 + kSumChunk : n;
    const float* p = x + o * n * inner + i;
    float acc = 0.f;
    for (int64_t j = j0; j < j1; ++j) acc += p[j * inner];
    part[l] = acc;
  }
}
__global__ void sum_dim_k(const float* x, float* out, int64_t outer, int64_t n, int64_t inner) {
  ATTN_GRID_STRIDE(l, outer * inner) {
    const int64_t o = l / inner, i = l % inner;
    const float* p = x + o * n * inner + i;
    float acc = 0.f;
    for (int64_t j = 0; j < n; ++j) acc += p[j * inner];
    out[l] = acc;
  }
}
void sum_dim(const float* x, float* out, int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner <= 0) return;
  if (n > 4 * kSumChunk && outer * inner < (int64_t(1) << 15)) {
    const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
    float* part = static_cast<float*>(malloc_bytes(sizeof(float) * size_t(outer * chunks * inner)));
    sum_chunks_k<<<grid_for(outer * chunks * inner), 256>>>(x, part, outer, n, inner, chunks);
    ATTN_CUDA_LAUNCH_CHECK("sum_dim");
    sum_dim(part, out, outer, chunks, inner);
    free_bytes(part);  // the cache hands it out again only to work queued after this (one stream)
    return;
  }
  sum_dim_k<<<grid_for(outer * inner), 256>>>(x, out, outer, n, inner);
  ATTN_CUDA_LAUNCH_CHECK("sum_dim");
}
__global__ void expand_dim_k(const float* g, float* dx, int64_t outer, int64_t n, int64_t inner) {
  ATTN_GRID_STRIDE(k, outer * n * inner) {
    const int64_t i = k % inner, o = k / (n * inner);
    dx[k] = g[o * inner + i];
  }
}
void expand_dim(const float* g, float* dx, int64_t outer, int64_t n, int64_t inner) {
  if (outer * n * inner <= 0) return;
  expand_dim_k<<<grid_for(outer * n * inner), 256>>>(g, dx, outer, n, inner);
  ATTN_CUDA_LAUNCH_CHECK("expand_dim");
}

__global__ void softmax_fwd_k(const float* x, float* y, int64_t outer, int64_t n, int64_t inner, bool log) {
  ATTN_GRID_STRIDE(l, outer * inner) {
    const int64_t o = l / inner, i = l % inner, base = o * n * inner + i;
    float m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) m = fmaxf(m, x[base + j * inner]);
    if (m == -INFINITY) {  // every entry -inf (all keys masked): zeros, never NaN
      for (int64_t j = 0; j < n; ++j) y[base + j * inner] = log ? -INFINITY : 0.f;
      continue;
    }
    float s = 0.f;
    for (int64_t j = 0; j < n; ++j) {
      const float e = expf(x[base + j * inner] - m);
      if (!log) y[base + j * inner] = e;
      s += e;
    }
    if (log) {
      const float lse = m + logf(s);
      for (int64_t j = 0; j < n; ++j) y[base + j * inner] = x[base + j * inner] - lse;
    } else {
      const float inv = 1.f / s;
      for (int64_t j = 0; j < n; ++j) y[base + j * inner] *= inv;
    }
  }
}
void softmax_forward(const float* x, float* y, int64_t outer, int64_t n, int64_t inner, bool log) {
  if (outer * inner <= 0) return;
  softmax_fwd_k<<<grid_for(outer * inner), 256>>>(x, y, outer, n, inner, log);
  ATTN_CUDA_LAUNCH_CHECK("softmax_forward");
}
__global__ void softmax_bwd_k(const float* g, const float* y, float* dx, int64_t outer, int64_t n, int64_t inner,
                              bool log) {
  ATTN_GRID_STRIDE(l, outer * inner) {
    const int64_t o = l / inner, i = l % inner, base = o * n * inner + i;
    float dot = 0.f;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t k = base + j * inner;
      dot += log ? g[k] : g[k] * y[k];
    }
    for (int64_t j = 0; j < n; ++j) {
      const int64_t k = base + j * inner;
      dx[k] = log ? g[k] - expf(y[k]) * dot : y[k] * (g[k] - dot);
    }
  }
}
void softmax_backward(const float* g, const float* y, float* dx, int64_t outer, int64_t n, int64_t inner, bool log) {
  if (outer * inner <= 0) return;
  softmax_bwd_k<<<grid_for(outer * inner), 256>>>(g, y, dx, outer, n, inner, log);
  ATTN_CUDA_LAUNCH_CHECK("softmax_backward");
}

// ---------------- layer norm (one thread per row; statistics in double, as the CPU path) ----------------
__global__ void layer_norm_fwd_k(const float* x, const float* w, const float* b, float* y, float* xhat, float* rstd,
                                 int64_t rows, int64_t D, double eps) {
  ATTN_GRID_STRIDE(r, rows) {
    const float* xr = x + r * D;
    double mu = 0, var = 0;
    for (int64_t j = 0; j < D; ++j) mu += xr[j];
    mu /= double(D);
    for (int64_t j = 0; j < D; ++j) var += (xr[j] - mu) * (xr[j] - mu);
    const float rs = float(1.0 / sqrt(var / double(D) + eps));
    rstd[r] = rs;
    for (int64_t j = 0; j < D; ++j) {
      const float h = float(xr[j] - mu) * rs;
      xhat[r * D + j] = h;
      y[r * D + j] = h * (w ? w[j] : 1.f) + (b ? b[j] : 0.f);
    }
  }
}
__global__ void layer_norm_bwd_rows_k(const float* g, const float* xhat, const float* rstd, const float* w, float* dx,
                                      int64_t rows, int64_t D) {
  ATTN_GRID_STRIDE(r, rows) {
    double m1 = 0, m2 = 0;
    for (int64_t j = 0; j < D; ++j) {
      const double gw = double(g[r * D + j]) * (w ? w[j] : 1.0);
      m1 += gw;
      m2 += gw * xhat[r * D + j];
    }
    m1 /= double(D);
    m2 /= double(D);
    for (int64_t j = 0; j < D; ++j) {
      const double gw = double(g[r * D + j]) * (w ? w[j] : 1.0);
      dx[r * D + j] = float(rstd[r] * (gw - m1 - xhat[r * D + j] * m2));
    }
  }
}
// one thread per column; rows summed in order (float, as the CPU path)
__global__ void layer_norm_bwd_cols_k(const float* g, const float* xhat, float* dw, float* db, int64_t rows, int64_t D) {
  ATTN_GRID_STRIDE(j, D) {
    float aw = 0.f, ab = 0.f;
    for (int64_t r = 0; r < rows; ++r) {
      aw += g[r * D + j] * xhat[r * D + j];
      ab += g[r * D + j];
    }
    if (dw) dw[j] = aw;
    if (db) db[j] = ab;
  }
}
void layer_norm_forward(const float* x, const float* w, const float* b, float* y, float* xhat, float* rstd,
                        int64_t rows, int64_t D, double eps) {
  if (rows <= 0) return;
  layer_norm_fwd_k<<<grid_for(rows, 128), 128>>>(x, w, b, y, xhat, rstd, rows, D, eps);
  ATTN_CUDA_LAUNCH_CHECK("layer_norm_forward");
}
void layer_norm_backward(const float* g, const float* xhat, const float* rstd, const float* w, float* dx, float* dw,
                         float* db, int64_t rows, int64_t D) {
  if (rows <= 0 || D <= 0) return;
  layer_norm_bwd_rows_k<<<grid_for(rows, 128), 128>>>(g, xhat, rstd, w, dx, rows, D);
  ATTN_CUDA_LAUNCH_CHECK("layer_norm_backward(rows)");
  if (dw || db) {
    layer_norm_bwd_cols_k<<<grid_for(D, 128), 128>>>(g, xhat, dw, db, rows, D);
    ATTN_CUDA_LAUNCH_CHECK("layer_norm_backward(cols)");
  }
}

// ---------------- bias helpers for linear ----------------
__global__ void add_row_bias_k(float* y, const float* bias, int64_t rows, int64_t cols) {
  ATTN_GRID_STRIDE(k, rows * cols) y[k] += bias[k % cols];
}
void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols) {
  if (rows * cols <= 0) return;
  add_row_bias_k<<<grid_for(rows * cols), 256>>>(y, bias, rows, cols);
  ATTN_CUDA_LAUNCH_CHECK("add_row_bias");
}
void sum_rows(const float* g, float* out, int64_t rows, int64_t cols) { sum_dim(g, out, 1, rows, cols); }

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

// ---------------- LSTM step pointwise ----------------
// i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o)
// c = f c_prev + i g,  h = o tanh(c)
__device__ inline float sigm(float v) { return 1.f / (1.f + expf(-v)); }
__global__ void lstm_fwd_k(const float* gates, const float* c_prev, float* h, float* c, float* acts, float* tanh_c,
                           int64_t B, int64_t H) {
  ATTN_GRID_STRIDE(k, B * H) {
    const int64_t b = k / H, j = k % H;
    const float* a = gates + b * 4 * H;
    const float gi = sigm(a[j]), gf = sigm(a[H + j]), gg = tanhf(a[2 * H + j]), go = sigm(a[3 * H + j]);
    const float cn = gf * c_prev[k] + gi * gg;
    const float tc = tanhf(cn);
    c[k] = cn;
    h[k] = go * tc;
    float* s = acts + b * 4 * H;
    s[j] = gi;
    s[H + j] = gf;
    s[2 * H + j] = gg;
    s[3 * H + j] = go;
    tanh_c[k] = tc;
  }
}
// dc_t = dc + dh o (1 - tanh(c)^2)
// d a_i = dc_t g i (1 - i), d a_f = dc_t c_prev f (1 - f), d a_g = dc_t i (1 - g^2), d a_o = dh tanh(c) o (1 - o)
// dc_prev = dc_t f
__global__ void lstm_bwd_k(const float* dh, const float* dc, const float* acts, const float* tanh_c,
                           const float* c_prev, float* dgates, float* dc_prev, int64_t B, int64_t H) {
  ATTN_GRID_STRIDE(k, B * H) {
    const int64_t b = k / H, j = k % H;
    const float* s = acts + b * 4 * H;
    const float gi = s[j], gf = s[H + j], gg = s[2 * H + j], go = s[3 * H + j], tc = tanh_c[k];
    const float dhk = dh ? dh[k] : 0.f;
    const float dct = (dc ? dc[k] : 0.f) + dhk * go * (1.f - tc * tc);
    float* d = dgates + b * 4 * H;
    d[j] = dct * gg * gi * (1.f - gi);
    d[H + j] = dct * c_prev[k] * gf * (1.f - gf);
    d[2 * H + j] = dct * gi * (1.f - gg * gg);
    d[3 * H + j] = dhk * tc * go * (1.f - go);
    dc_prev[k] = dct * gf;
  }
}
void lstm_pointwise_forward(const float* gates, const float* c_prev, float* h, float* c, float* acts, float* tanh_c,
                            int64_t B, int64_t H) {
  if (B * H <= 0) return;
  lstm_fwd_k<<<grid_for(B * H), 256>>>(gates, c_prev, h, c, acts, tanh_c, B, H);
  ATTN_CUDA_LAUNCH_CHECK("lstm_pointwise_forward");
}
void lstm_pointwise_backward(const float* dh, const float* dc, const float* acts, const float* tanh_c,
                             const float* c_prev, float* dgates, float* dc_prev, int64_t B, int64_t H) {
  if (B * H <= 0) return;
  lstm_bwd_k<<<grid_for(B * H), 256>>>(dh, dc, acts, tanh_c, c_prev, dgates, dc_prev, B, H);
  ATTN_CUDA_LAUNCH_CHECK("lstm_pointwise_backward");
}

// ---------------- Adam / AdamW ----------------
// AdamW: p *= 1 - lr wd; Adam: g += wd p.  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
// (amsgrad) vmax = max(vmax, v);  p -= lr/bc1 * m / (sqrt(v or vmax)/sqrt(bc2) + eps)
__global__ void adam_k(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, float b1, float b2,
                       float eps, float wd, float step_size, float decay, float sqrt_bc2, bool decoupled) {
  ATTN_GRID_STRIDE(k, n) {
    float gk = g[k];
    if (decoupled) p[k] *= decay;
    else gk += wd * p[k];
    m[k] = b1 * m[k] + (1.f - b1) * gk;
    v[k] = b2 * v[k] + (1.f - b2) * gk * gk;
    float vk = v[k];
    if (vmax) vk = vmax[k] = fmaxf(vmax[k], v[k]);
    p[k] -= step_size * m[k] / (sqrtf(vk) / sqrt_bc2 + eps);
  }
}
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, float b1, float b2, float eps,
               float wd, float step_size, float decay, float sqrt_bc2, bool decoupled) {
  if (n <= 0) return;
  adam_k<<<grid_for(n), 256>>>(p, g, m, v, vmax, n, b1, b2, eps, wd, step_size, decay, sqrt_bc2, decoupled);
  ATTN_CUDA_LAUNCH_CHECK("adam_step");
}

}  // namespace attn::kernels::cuda
