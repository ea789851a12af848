#pragma once
// The one place attn starts threads. Everything parallel goes through parallel_for, so a build
// without OpenMP still works and there is never more than one team (no nesting).
#include <algorithm>
#include <cstdint>
#include "../config.hpp"
#if ATTN_HAS_OPENMP
#include <omp.h>
#endif

namespace attn {

// Grain sizes for parallel_for. Below them, starting a team (microseconds) costs more than the
// loop saves. Flat loops over elements pass the constant itself; loops over rows pass
// rows_grain(constant, elements or work per row), so a task holds about that much work.
// Flat loops over elements:
constexpr int64_t kGrainFill = int64_t(1) << 16;         // stores only (fill)
constexpr int64_t kGrainElementwise = int64_t(1) << 15;  // one arithmetic op each (a + b, accumulation)
constexpr int64_t kGrainPointwise = int64_t(1) << 14;    // a transcendental or several ops each (activations
                                                          // and their derivatives, optimizer updates)
// Loops over rows, work per task in elements (or multiply-adds):
constexpr int64_t kGrainLaneWork = int64_t(1) << 14;  // summing reduction lanes; [B, T, F] layout swaps
constexpr int64_t kGrainRowCopy = 8192;               // strided row copies; band attention rows (W*E each)
constexpr int64_t kGrainRowWork = 4096;  // several ops per element: layer norm, where, additive attention
                                         // forward (S*H tanh per row)
constexpr int64_t kGrainRowWorkBackward = 2048;  // about twice that per element: additive attention backward

// Rows per task for a row loop: about `work_per_task` / `work_per_row`, at least 1.
inline int64_t rows_grain(int64_t work_per_task, int64_t work_per_row) {
  return std::max<int64_t>(1, work_per_task / std::max<int64_t>(work_per_row, 1));
}

inline int get_num_threads() {
#if ATTN_HAS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline void set_num_threads(int n) {
#if ATTN_HAS_OPENMP
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

inline bool in_parallel_region() {
#if ATTN_HAS_OPENMP
  return omp_in_parallel();
#else
  return false;
#endif
}

// Calls f(chunk_begin, chunk_end) over [begin, end). Chunks are contiguous and each index is
// visited by exactly one thread, but where the chunks end depends on the thread count. So callers
// that reduce sum each output inside one index (each output element of ops/reduce.hpp is summed
// by one thread, in index order), or split the work into fixed blocks and combine the blocks'
// results in block order, so results do not depend on the thread count.
// `grain`: the least work worth a thread of its own; [begin, end) runs on the calling thread when
// it holds no more than grain indices, and is split into at most ceil(n / grain) chunks.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  const int64_t n = end - begin;
  if (n <= 0) return;
#if ATTN_HAS_OPENMP
  const int threads = omp_get_max_threads();
  if (threads > 1 && n > grain && !omp_in_parallel()) {
    const int64_t tasks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
#pragma omp parallel num_threads(static_cast<int>(tasks))
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t chunk = (n + nt - 1) / nt;
      const int64_t b = begin + t * chunk, e = std::min(end, b + chunk);
      if (b < e) f(b, e);
    }
    return;
  }
#endif
  (void)grain;
  f(begin, end);
}

}  // namespace attn
