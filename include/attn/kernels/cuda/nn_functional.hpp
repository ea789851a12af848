#pragma once
// Host entry points of attn's CUDA layer norm kernels (kernels/cuda/nn_functional.cu), built into
// attn::cuda only with ATTN_WITH_CUDA. Plain C++ like kernels/cuda/api.hpp: no CUDA header, so
// ops/cuda/nn_functional.hpp includes it in every build (without ATTN_WITH_CUDA these are declared and
// never called). Every pointer is a device pointer; sizes are element counts; tensors are
// float32, contiguous, row-major.
#include <cstdint>

namespace attn::kernels::cuda {

// ---- layer norm over rows of length D (weight/bias may be null) ----
void layer_norm_forward(const float* x, const float* w, const float* b, float* y, float* xhat, float* rstd,
                        int64_t rows, int64_t D, double eps);
// dx = rstd (g w - mean(g w) - xhat mean(g w xhat)); dw = sum_r g xhat; db = sum_r g (dw/db may be null)
void layer_norm_backward(const float* g, const float* xhat, const float* rstd, const float* w, float* dx, float* dw,
                         float* db, int64_t rows, int64_t D);

}  // namespace attn::kernels::cuda
