#pragma once
// Host entry points of attn's CUDA kernels (built into the static library attn::cuda, only with
// ATTN_WITH_CUDA). Plain C++: no CUDA header is included here, so the header-only side of attn
// compiles with any C++17 compiler. Every pointer is a device pointer unless named host_*;
// sizes are element counts; every tensor is float32, contiguous, row-major. Calls run on the
// default stream and are synchronous with respect to the host where they return data
// (memcpy to host); every CUDA/cuBLAS error is thrown as std::runtime_error naming the call.
#include <cstddef>
#include <cstdint>

namespace attn::kernels::cuda {

// ---- runtime ----
int device_count();                        // 0 when no device or no driver (never throws)
const char* device_count_error();          // why device_count() is 0 ("" when it is not)
void* malloc_bytes(size_t bytes);          // a cached block or cudaMalloc (runtime.cu); nullptr for 0 bytes
void free_bytes(void* p) noexcept;         // back to the cache (used in deleters)
void empty_cache();                        // cudaFree every cached block (as torch.cuda.empty_cache)
size_t cached_bytes();                     // bytes held in the cache, not in use
void memcpy_h2d(void* dst, const void* host_src, size_t bytes);
void memcpy_d2h(void* host_dst, const void* src, size_t bytes);
void memcpy_d2d(void* dst, const void* src, size_t bytes);
void memset_zero(void* dst, size_t bytes);
void synchronize();

// ---- memory: layout copies and gradient accumulation (core/device.hpp; defined in elementwise.cu) ----
constexpr int kMaxDims = 8;  // most dims of a strided copy or a broadcast binary op
// dst[sum_d i_d dst_st[d]] (+)= src[sum_d i_d src_st[d]] over `shape` (ndim <= kMaxDims; host
// arrays; strides in elements, may be 0 or negative; src/dst already offset). Elements of
// 1, 4 or 8 bytes; accumulate only for float32 / float64 (is_double), and dst must not alias.
void strided_copy(const void* src, void* dst, int elem_bytes, bool is_double, int ndim, const int64_t* shape,
                  const int64_t* src_st, const int64_t* dst_st, bool accumulate);
void add_inplace(float* acc, const float* g, int64_t n);     // acc += g
void add_inplace_f64(double* acc, const double* g, int64_t n);

// The op families' kernels are declared per family, next to their .cu files: elementwise.hpp,
// reduce.hpp, nn_functional.hpp, matmul.hpp, rnn.hpp, attention.hpp, optim.hpp.

}  // namespace attn::kernels::cuda
