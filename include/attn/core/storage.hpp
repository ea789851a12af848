#pragma once
// Memory of CPU tensors: the allocator (a size-keyed cache of big blocks, per-thread pools of small
// buffers and of the small objects every op creates), the memory statistics, and Storage, the raw
// buffer a tensor points into (on the CPU, or on a device through core/device.hpp).
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "device.hpp"
#include "error.hpp"

namespace attn {

namespace detail {
#if defined(__SANITIZE_ADDRESS__)
#define ATTN_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTN_UNDER_ASAN 1
#endif
#endif
#ifndef ATTN_UNDER_ASAN
#define ATTN_UNDER_ASAN 0
#endif

// Buffers from kMinBytes up are reused by exact size: training calls the same ops with the same
// shapes every step, and each fresh 4 KiB page costs a page fault (about 2 us on the VMs we
// measured). The C allocator returns big blocks (and the free top of its heap) to the system on
// free, so without the cache every step of a training loop faults its buffers in again: tens of
// milliseconds per call for a recurrent layer's saved states, seconds per training step of a
// per-step loop that saves a few hundred MB (bench_cells). Freed blocks are kept per size, at
// most limit() bytes in all (kDefaultLimitBytes, set_cache_limit() changes it); when that is
// full, whole size classes go, least recently used first. empty_cache() returns everything to
// the system. Under AddressSanitizer the cache is off, so a
// use after free is reported for every buffer.
#ifndef ATTN_BLOCK_CACHE_MIN_BYTES
#define ATTN_BLOCK_CACHE_MIN_BYTES (size_t(16) << 10)
#endif
class BlockCache {
 public:
  static constexpr bool kEnabled = !ATTN_UNDER_ASAN;
  static constexpr size_t kMinBytes = ATTN_BLOCK_CACHE_MIN_BYTES, kDefaultLimitBytes = size_t(1) << 30;
  static BlockCache& get() {
    static BlockCache* c = new BlockCache();  // never destroyed: tensors may outlive main()
    return *c;
  }
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lk(m_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.blocks.empty()) {
        void* p = it->second.blocks.back();
        it->second.blocks.pop_back();
        it->second.last_use = ++tick_;
        held_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) {  // out of memory: give the cached blocks back and try once more
      release();
      p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
  void give(void* p, size_t bytes) {
    std::vector<void*> drop;  // freed after the lock is released
    {
      std::lock_guard<std::mutex> lk(m_);
      Bucket& mine = free_[bytes];
      mine.last_use = ++tick_;
      while (held_ + bytes > limit_) {  // evict the least recently used other size class
        auto lru = free_.end();
        for (auto it = free_.begin(); it != free_.end(); ++it)
          if (it->first != bytes && !it->second.blocks.empty() &&
              (lru == free_.end() || it->second.last_use < lru->second.last_use))
            lru = it;
        if (lru == free_.end()) break;
        held_ -= lru->first * lru->second.blocks.size();
        drop.insert(drop.end(), lru->second.blocks.begin(), lru->second.blocks.end());
        lru->second.blocks.clear();
      }
      if (held_ + bytes <= limit_) {
        mine.blocks.push_back(p);
        held_ += bytes;
        p = nullptr;
      }
    }
    for (void* q : drop) std::free(q);
    std::free(p);
  }
  // Returns every cached block to the system.
  void release() {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lk(m_);
      for (auto& [bytes, b] : free_) drop.insert(drop.end(), b.blocks.begin(), b.blocks.end());
      free_.clear();
      held_ = 0;
    }
    for (void* q : drop) std::free(q);
  }
  size_t held() {
    std::lock_guard<std::mutex> lk(m_);
    return held_;
  }
  size_t limit() {
    std::lock_guard<std::mutex> lk(m_);
    return limit_;
  }
  // A new limit; cached blocks over it are returned to the system at once, largest sizes first.
  void set_limit(size_t bytes) {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lk(m_);
      limit_ = bytes;
      for (auto it = free_.begin(); held_ > limit_ && it != free_.end(); ++it) {
        held_ -= it->first * it->second.blocks.size();
        drop.insert(drop.end(), it->second.blocks.begin(), it->second.blocks.end());
        it->second.blocks.clear();
      }
    }
    for (void* q : drop) std::free(q);
  }

 private:
  struct Bucket {
    std::vector<void*> blocks;
    uint64_t last_use = 0;
  };
  std::mutex m_;
  std::unordered_map<size_t, Bucket> free_;
  size_t held_ = 0, limit_ = kDefaultLimitBytes;
  uint64_t tick_ = 0;
};
// Buffers under BlockCache::kMinBytes: a per-thread free list per 64-byte size class. A chain of
// small ops allocates and frees a few buffers per op; the C allocator's aligned allocation
// (memalign) takes its slow path every time and fragments the heap (malloc_consolidate was a
// tenth of a tiny-op chain's time). At most kMaxHeld bytes are kept per thread; a block freed on
// another thread joins that thread's lists. Off under AddressSanitizer.
class SmallBlockPool {
 public:
  static constexpr size_t kClasses = BlockCache::kMinBytes / 64, kMaxHeld = size_t(8) << 20;
  // The calling thread's pool, or null once it has been destroyed (thread exit, static teardown).
  static SmallBlockPool* mine() {
    if (dead()) return nullptr;
    thread_local SmallBlockPool pool;
    return &pool;
  }
  // bytes: a multiple of 64 in (0, BlockCache::kMinBytes).
  void* take(size_t bytes) {
    std::vector<void*>& l = lists_[bytes / 64];
    if (!l.empty()) {
      void* p = l.back();
      l.pop_back();
      held_ -= bytes;
      return p;
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void give(void* p, size_t bytes) {
    if (held_ + bytes > kMaxHeld) return std::free(p);
    lists_[bytes / 64].push_back(p);
    held_ += bytes;
  }
  ~SmallBlockPool() {
    dead() = true;
    for (auto& l : lists_)
      for (void* p : l) std::free(p);
  }

 private:
  static bool& dead() {
    thread_local bool d = false;  // trivially destructible: readable after the pool is gone
    return d;
  }
  std::vector<void*> lists_[kClasses];
  size_t held_ = 0;
};

// The small objects every op creates with their shared_ptr control blocks (TensorImpl, Storage,
// Node: make_impl, make_storage, record) come from per-thread free lists of fixed-size blocks
// through PoolAllocator, instead of one malloc and free each (a chain of tiny ops spent half its
// time in the C allocator). At most kMaxFree blocks per size and thread are kept (a free list as
// long as a big training graph's would hand out blocks scattered over its heap: a tiny-op chain
// ran 2x slower after a sine-prediction training step with 65536). Off under AddressSanitizer.
template <size_t Size>
class FixedPool {
 public:
  static constexpr size_t kMaxFree = 1 << 12;
  static FixedPool* mine() {
    if (dead()) return nullptr;
    thread_local FixedPool pool;
    return &pool;
  }
  void* take() {
    if (free_.empty()) return ::operator new(Size);
    void* p = free_.back();
    free_.pop_back();
    return p;
  }
  void give(void* p) {
    if (free_.size() < kMaxFree) free_.push_back(p);
    else ::operator delete(p);
  }
  ~FixedPool() {
    dead() = true;
    for (void* p : free_) ::operator delete(p);
  }

 private:
  static bool& dead() {
    thread_local bool d = false;  // trivially destructible: readable after the pool is gone
    return d;
  }
  std::vector<void*> free_;
};

template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n == 1 && BlockCache::kEnabled)
      if (FixedPool<sizeof(T)>* pool = FixedPool<sizeof(T)>::mine()) return static_cast<T*>(pool->take());
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (n == 1 && BlockCache::kEnabled)
      if (FixedPool<sizeof(T)>* pool = FixedPool<sizeof(T)>::mine()) return pool->give(p);
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const PoolAllocator<U>&) const { return false; }
};

// Bytes of CPU tensor storage alive now and at most since the last reset.
class MemoryCounter {
 public:
  static MemoryCounter& get() {
    static MemoryCounter c;
    return c;
  }
  void add(int64_t bytes) {
    const int64_t now = current_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    int64_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  void sub(int64_t bytes) { current_.fetch_sub(bytes, std::memory_order_relaxed); }
  int64_t current() const { return current_.load(std::memory_order_relaxed); }
  int64_t peak() const { return peak_.load(std::memory_order_relaxed); }
  void reset_peak() { peak_.store(current(), std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> current_{0}, peak_{0};
};
}  // namespace detail

// Memory held by CPU tensors (their storage buffers; kernels' small per-task scratch is not
// counted): bytes alive now, and the most alive at once since reset_peak_memory() (or start-up).
// Like torch.cuda.memory_allocated / max_memory_allocated, for the CPU.
// cached_bytes: freed buffers kept for reuse (not counted in current_bytes), as PyTorch's
// memory_reserved - memory_allocated; empty_cache() returns them to the system.
struct MemoryStats {
  int64_t current_bytes = 0, peak_bytes = 0, cached_bytes = 0;
};
inline MemoryStats memory_stats() {
  const auto& c = detail::MemoryCounter::get();
  return {c.current(), c.peak(), int64_t(detail::BlockCache::get().held())};
}
inline void reset_peak_memory() { detail::MemoryCounter::get().reset_peak(); }
inline void empty_cache() { detail::BlockCache::get().release(); }
// The most bytes of freed CPU buffers (16 KiB and up) kept for reuse; 1 GiB by default. A loop
// whose steps allocate more than the limit faults fresh pages in on every step (about 0.5 s per
// GiB on the VMs we measured); a larger limit avoids that at the cost of memory held between
// steps. Lowering it returns the excess to the system at once; 0 turns the cache off.
inline void set_cache_limit(int64_t bytes) {
  ATTN_CHECK(bytes >= 0, "set_cache_limit: bytes must be >= 0, got ", bytes);
  detail::BlockCache::get().set_limit(size_t(bytes));
}
inline int64_t cache_limit() { return int64_t(detail::BlockCache::get().limit()); }

// Raw buffer, 64-byte aligned so Eigen maps and SIMD loads are aligned.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::CPU;
  // Releases device memory (the backend's free_bytes, set by detail::cuda_empty in
  // core/device_tensor.hpp); empty for CPU storage, which goes back to the allocator above.
  std::function<void(void*)> deleter;
  // Version counter (PyTorch's VariableVersion), shared by every view of this storage: each
  // in-place write bumps it, and a backward checks that the tensors it saved are still at the
  // version they had when the op was recorded.
  std::atomic<uint64_t> version{0};

  explicit Storage(size_t bytes) : nbytes(bytes) {
    const size_t rounded = ((bytes + 63) / 64) * 64;
    if (detail::BlockCache::kEnabled && rounded >= detail::BlockCache::kMinBytes) {
      data = detail::BlockCache::get().take(rounded);
      cached_bytes_ = rounded;
    } else if (detail::SmallBlockPool* pool = detail::BlockCache::kEnabled && rounded ? detail::SmallBlockPool::mine()
                                                                                   : nullptr) {
      data = pool->take(rounded);
      pooled_bytes_ = rounded;
    } else {
      data = rounded ? std::aligned_alloc(64, rounded) : nullptr;
      if (rounded && !data) throw std::bad_alloc();
    }
    detail::MemoryCounter::get().add(int64_t(nbytes));
  }
  Storage(void* ptr, size_t bytes, Device dev, std::function<void(void*)> del)
      : data(ptr), nbytes(bytes), device(dev), deleter(std::move(del)) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (deleter) {
      deleter(data);
      return;
    }
    detail::MemoryCounter::get().sub(int64_t(nbytes));
    if (cached_bytes_) {
      detail::BlockCache::get().give(data, cached_bytes_);
    } else if (detail::SmallBlockPool* pool = pooled_bytes_ ? detail::SmallBlockPool::mine() : nullptr) {
      pool->give(data, pooled_bytes_);
    } else {
      std::free(data);
    }
  }

 private:
  size_t cached_bytes_ = 0, pooled_bytes_ = 0;
};

}  // namespace attn
