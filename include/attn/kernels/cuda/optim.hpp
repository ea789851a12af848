#pragma once
// Host entry points of attn's CUDA optimizer kernels (kernels/cuda/optim.cu), built into
// attn::cuda only with ATTN_WITH_CUDA. Plain C++ like kernels/cuda/api.hpp: no CUDA header, so
// ops/cuda/optim.hpp includes it in every build (without ATTN_WITH_CUDA these are declared and
// never called). Every pointer is a device pointer; sizes are element counts; tensors are
// float32, contiguous, row-major.
#include <cstdint>

namespace attn::kernels::cuda {

// ---- optimizer ----
// One Adam / AdamW step, the formula of optim::Adam::step (PyTorch's single-tensor path).
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, float b1, float b2, float eps,
               float wd, float step_size, float decay, float sqrt_bc2, bool decoupled);

}  // namespace attn::kernels::cuda
