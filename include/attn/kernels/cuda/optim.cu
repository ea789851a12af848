// The Adam / AdamW step of attn::cuda (kernels/cuda/optim.hpp), one thread per element.
#include <cmath>
#include "common.cuh"
#include "optim.hpp"

namespace attn::kernels::cuda {
using detail::grid_for;

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
