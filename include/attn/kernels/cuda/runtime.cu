// Device memory and device queries for attn::cuda.
#include "api.hpp"
#include "common.cuh"

namespace attn::kernels::cuda {

namespace {
cudaError_t& count_error() {
  static cudaError_t e = cudaSuccess;
  return e;
}
}  // namespace

int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  count_error() = e;
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device"/"no driver" error
    return 0;
  }
  return n;
}

const char* device_count_error() {
  return count_error() == cudaSuccess ? "" : cudaGetErrorString(count_error());
}

void* malloc_bytes(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  ATTN_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void free_bytes(void* p) noexcept {
  if (p) cudaFree(p);
}

void memcpy_h2d(void* dst, const void* src, size_t bytes) {
  if (bytes) ATTN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void memcpy_d2h(void* dst, const void* src, size_t bytes) {
  if (bytes) ATTN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void memcpy_d2d(void* dst, const void* src, size_t bytes) {
  if (bytes) ATTN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
void memset_zero(void* dst, size_t bytes) {
  if (bytes) ATTN_CUDA_CHECK(cudaMemset(dst, 0, bytes));
}
void synchronize() { ATTN_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace attn::kernels::cuda
