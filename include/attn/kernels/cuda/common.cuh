#pragma once
// Shared by attn's .cu files: error checking and launch helpers. Only nvcc sees this header.
#include <cuda_runtime.h>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace attn::kernels::cuda::detail {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("attn CUDA error: ") + call + " failed with " + cudaGetErrorName(e) + " (" +
                           cudaGetErrorString(e) + ") at " + file + ":" + std::to_string(line));
}

// Launch geometry for a flat loop over n elements (grid-stride loops take the rest).
inline unsigned grid_for(int64_t n, int threads = 256) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}

}  // namespace attn::kernels::cuda::detail

// Every CUDA runtime call goes through ATTN_CUDA_CHECK: an error becomes a C++ exception naming the call.
#define ATTN_CUDA_CHECK(call)                                                          \
  do {                                                                                 \
    cudaError_t attn_err_ = (call);                                                    \
    if (attn_err_ != cudaSuccess)                                                      \
      ::attn::kernels::cuda::detail::throw_cuda(attn_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors (and, in debug builds, faults) as exceptions.
#define ATTN_CUDA_LAUNCH_CHECK(name) ATTN_CUDA_CHECK(cudaGetLastError())

#define ATTN_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)
