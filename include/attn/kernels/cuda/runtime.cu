// Device memory (a caching allocator) and device queries for attn::cuda.
#include <mutex>
#include <unordered_map>
#include <vector>
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

// ---- caching allocator ----
// cudaMalloc and cudaFree cost tens of microseconds each and cudaFree synchronises the device, so
// a training step that allocates every op's output would wait on them hundreds of times. Freed
// blocks are kept in per-size free lists (sizes rounded up to 512 B below 1 MiB, to 2 MiB above)
// and handed out again. Every kernel runs on the default stream, in order, so a block freed by the
// host may be reused at once: work queued on it earlier completes before work queued later.
// When cudaMalloc fails, the cached blocks are released and the allocation tried once more.
namespace {
struct BlockCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // rounded size -> blocks
  std::unordered_map<void*, size_t> live;                       // block -> rounded size
  size_t cached = 0;

  static size_t round(size_t bytes) {
    const size_t q = bytes <= (size_t(1) << 20) ? 512 : (size_t(2) << 20);
    return (bytes + q - 1) / q * q;
  }
  void release_all() {  // with mu held
    for (auto& [size, blocks] : free_blocks)
      for (void* p : blocks) cudaFree(p);
    free_blocks.clear();
    cached = 0;
  }
};
// Never destroyed: blocks may be freed by static destructors after this file's statics are gone,
// and the driver releases device memory at exit anyway.
BlockCache& block_cache() {
  static BlockCache* c = new BlockCache();
  return *c;
}
}  // namespace

void* malloc_bytes(size_t bytes) {
  if (bytes == 0) return nullptr;
  BlockCache& c = block_cache();
  const size_t size = BlockCache::round(bytes);
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.free_blocks.find(size);
  if (it != c.free_blocks.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    c.cached -= size;
    c.live.emplace(p, size);
    return p;
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation && c.cached > 0) {
    cudaGetLastError();
    c.release_all();
    e = cudaMalloc(&p, size);
  }
  ATTN_CUDA_CHECK(e);
  c.live.emplace(p, size);
  return p;
}

void free_bytes(void* p) noexcept {
  if (!p) return;
  BlockCache& c = block_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.live.find(p);
  if (it == c.live.end()) {  // not from malloc_bytes
    cudaFree(p);
    return;
  }
  c.free_blocks[it->second].push_back(p);
  c.cached += it->second;
  c.live.erase(it);
}

void empty_cache() {
  BlockCache& c = block_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.release_all();
}

size_t cached_bytes() {
  BlockCache& c = block_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
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
