// Reductions over one dim and the softmax family of attn::cuda (kernels/cuda/reduce.hpp). Each
// output element is written by exactly one thread, and every sum runs in a fixed order in that
// thread: results do not depend on the launch geometry, and there are no atomics.
#include <cmath>
#include "api.hpp"  // malloc_bytes / free_bytes for the partial sums
#include "common.cuh"
#include "reduce.hpp"

namespace attn::kernels::cuda {
using detail::grid_for;

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

}  // namespace attn::kernels::cuda
