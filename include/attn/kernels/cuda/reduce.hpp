#pragma once
// Host entry points of attn's CUDA reduction and softmax kernels (kernels/cuda/reduce.cu), built into
// attn::cuda only with ATTN_WITH_CUDA. Plain C++ like kernels/cuda/api.hpp: no CUDA header, so
// ops/cuda/reduce.hpp includes it in every build (without ATTN_WITH_CUDA these are declared and
// never called). Every pointer is a device pointer; sizes are element counts; tensors are
// float32, contiguous, row-major.
#include <cstdint>

namespace attn::kernels::cuda {

// ---- reductions over one dim of a tensor seen as [outer, n, inner] ----
void sum_dim(const float* x, float* out, int64_t outer, int64_t n, int64_t inner);          // out [outer, inner]
void expand_dim(const float* g, float* dx, int64_t outer, int64_t n, int64_t inner);        // dx[o,j,i] = g[o,i]
// Stable softmax (log_softmax when log); an all -inf lane gives 0 (softmax) or -inf (log_softmax).
void softmax_forward(const float* x, float* y, int64_t outer, int64_t n, int64_t inner, bool log);
// softmax: dx = y (g - sum g y);  log_softmax: dx = g - exp(y) sum g
void softmax_backward(const float* g, const float* y, float* dx, int64_t outer, int64_t n, int64_t inner, bool log);

}  // namespace attn::kernels::cuda
