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
// visited by exactly one thread; callers that reduce must combine per-chunk results in a
// fixed order (see reduce_blocks) so results do not depend on the thread count.
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
