#pragma once
// Devices, and the seam between the core and a device backend. The core never includes a backend:
// it reaches device memory through DeviceMemory, a table of plain functions that the backend
// registers. The CUDA backend registers its table in include/attn/kernels/cuda/memory.hpp, which
// <attn/attn.hpp> includes when ATTN_WITH_CUDA is defined (the target attn::cuda defines it).
// With no table registered, attn has no CUDA: cuda_device_count() is 0 and to(Device::CUDA)
// throws, saying to build with ATTN_WITH_CUDA.
#include <cstddef>
#include <cstdint>
#include <string>

namespace attn {

enum class Device { CPU, CUDA };
inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

// Device memory as the core needs it: allocation, copies, and the gradient accumulation of the
// backward engine. Every pointer is a device pointer unless named host_*; sizes are bytes unless
// named n (elements). Each function throws std::runtime_error on a device error.
struct DeviceMemory {
  int (*device_count)();                // 0 when no device or no driver (never throws)
  const char* (*device_count_error)();  // why device_count() is 0 ("" when it is not)
  void* (*malloc_bytes)(size_t bytes);  // nullptr for 0 bytes
  void (*free_bytes)(void* p) noexcept;
  void (*empty_cache)();  // returns the memory the backend caches for reuse
  void (*memcpy_h2d)(void* dst, const void* host_src, size_t bytes);
  void (*memcpy_d2h)(void* host_dst, const void* src, size_t bytes);
  void (*memcpy_d2d)(void* dst, const void* src, size_t bytes);
  void (*memset_zero)(void* dst, size_t bytes);
  // dst[sum_d i_d dst_st[d]] (+)= src[sum_d i_d src_st[d]] over `shape` (strides in elements;
  // src/dst already offset); elements of elem_bytes bytes; accumulate only for float32/float64.
  void (*strided_copy)(const void* src, void* dst, int elem_bytes, bool is_double, int ndim, const int64_t* shape,
                       const int64_t* src_st, const int64_t* dst_st, bool accumulate);
  void (*add_inplace)(float* acc, const float* g, int64_t n);  // acc += g
  void (*add_inplace_f64)(double* acc, const double* g, int64_t n);
};

namespace detail {
inline const DeviceMemory*& cuda_memory_slot() {
  static const DeviceMemory* table = nullptr;
  return table;
}
}  // namespace detail

// Installs the CUDA backend's memory functions (kernels/cuda/memory.hpp does it during static
// initialisation). Returns true, so it can initialise a variable.
inline bool register_cuda_memory(const DeviceMemory* table) {
  detail::cuda_memory_slot() = table;
  return true;
}
// The CUDA backend's memory functions, or null when attn was built without ATTN_WITH_CUDA.
inline const DeviceMemory* cuda_memory() { return detail::cuda_memory_slot(); }

// Number of CUDA devices this process can use; 0 when attn was built without ATTN_WITH_CUDA,
// when there is no GPU, or no driver (never throws).
inline int cuda_device_count() {
  const DeviceMemory* mem = cuda_memory();
  if (!mem) return 0;
  static const int n = mem->device_count();
  return n;
}
inline bool cuda_is_available() { return cuda_device_count() > 0; }
// Releases the GPU memory that attn's caching allocator holds for reuse (torch.cuda.empty_cache);
// memory of live tensors stays. A no-op without ATTN_WITH_CUDA.
inline void cuda_empty_cache() {
  if (const DeviceMemory* mem = cuda_memory()) mem->empty_cache();
}

namespace detail {
// The error for a move to a device this build has no backend for.
inline std::string no_cuda_build_message(Device device) {
  return std::string("attn was built without ATTN_WITH_CUDA; cannot move a tensor to ") + device_name(device) +
         " (configure with -DATTN_WITH_CUDA=ON and link attn::cuda to use Device::CUDA)";
}
// Why CUDA is unusable, for error messages.
inline std::string cuda_unavailable_reason() {
  const DeviceMemory* mem = cuda_memory();
  if (!mem) return no_cuda_build_message(Device::CUDA);
  std::string why = mem->device_count_error();
  return "attn: no CUDA device is available" + (why.empty() ? std::string() : " (" + why + ")") +
         "; attn was built with ATTN_WITH_CUDA but this machine has no usable GPU";
}
}  // namespace detail

}  // namespace attn
