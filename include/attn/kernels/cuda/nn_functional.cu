// Layer norm of attn::cuda (kernels/cuda/nn_functional.hpp). One thread per row (statistics in
// double, as the CPU path accumulates them); the weight and bias gradients one thread per column,
// summing rows in order: no atomics, results independent of the launch geometry.
#include <cmath>
#include "common.cuh"
#include "nn_functional.hpp"

namespace attn::kernels::cuda {
using detail::grid_for;

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

}  // namespace attn::kernels::cuda
