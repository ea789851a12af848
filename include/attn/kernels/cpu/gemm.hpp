#pragma once
// The one entry point for dense products on the CPU. Row-major, BLAS-like:
//   C = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T,  op(A): M x K, op(B): K x N.
// lda/ldb/ldc are the row strides of the stored matrices; transposes are read in place; with
// beta == 0 C is never read (it may hold NaN).
//
// Algorithm (GotoBLAS/BLIS style, see docs/bench-matmul.md):
//   for each K super-slice (up to kKSup deep), panel of columns (jc) and group of rows (ic):
//     one parallel region, a queue of tasks claimed through an atomic counter:
//       pack op(B) into NR-wide slivers, op(A) into MR-high slivers (shared by all threads;
//       operands that are cheaper to read in place are not packed, see gemm_packed; partial
//       slivers always are)
//       compute items of mc rows x jw columns of C: for each kc slice (ascending), for each
//       NR sliver, for each MR sliver: register-blocked micro-kernel (gemm.inc)
// Every blocking constant is fixed at compile time and the partition of C into items depends
// only on (M, N, K), never on the thread count; each C element is summed by one thread in the same
// order (k ascending inside a kc slice, slices ascending), so results are bit-identical for any
// number of threads, and gemm_serial gives exactly the same bits as gemm.
// Tiny products (and M == 1 or N == 1) take a direct loop path chosen from the shape alone.
//
// Instruction sets: gemm.inc holds the kernels and drivers; it is compiled once per path (baseline,
// AVX2 + FMA, AVX-512: kernels/cpu/isa_expand.inc) and every entry point below calls the path
// chosen at run time (attn::kernel_isa(), core/cpu_info.hpp). Bits are identical for any thread
// count within a path; the paths differ from each other by rounding (tile shapes, lane counts).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
#include "../../config.hpp"
#include "../../core/parallel.hpp"
#include "simd.hpp"

namespace attn::kernels::cpu {

namespace gemm_detail {

// How a micro-kernel writes its tile: C = alpha acc (kStore), C = alpha acc + beta C (kScale),
// C = alpha acc + C (kAccum: later kc slices, or beta == 1).
enum class Mode { kStore, kScale, kAccum };

// Blocking (elements). kc: depth of one packed slice; mc: rows of one work item (a multiple of MR);
// jw: columns of one work item (multiple of NR); nc: columns of one packed B panel; kMo: rows of
// op(A) packed at once. Chosen for 32 KiB L1d / 1 MiB L2 per core (AMD Zen 4); see the doc.
#ifndef ATTN_GEMM_KC
#define ATTN_GEMM_KC 256
#endif
#ifndef ATTN_GEMM_MC_SLIVERS
#define ATTN_GEMM_MC_SLIVERS 16
#endif
#ifndef ATTN_GEMM_JW_SLIVERS
#define ATTN_GEMM_JW_SLIVERS 4
#endif
constexpr int64_t kKc = ATTN_GEMM_KC;
constexpr int64_t kMcSlivers = ATTN_GEMM_MC_SLIVERS;
constexpr int64_t kJwSlivers = ATTN_GEMM_JW_SLIVERS;
#ifndef ATTN_GEMM_IN_PLACE
#define ATTN_GEMM_IN_PLACE 1
#endif
constexpr bool kInPlace = ATTN_GEMM_IN_PLACE;  // 0: always pack both operands (for comparisons)
constexpr int64_t kKSup = 8192;                // K super-slice: op(A)/op(B) packed this deep at once
// Packed op(B) panel cap (elements): 2^19 (2 MiB of float) keeps a 2048 x 2048 product's panel
// at 256 columns; 2^22 (the whole B) ran it 10-14 % slower on both vector paths.
constexpr int64_t kPackB = int64_t(1) << 19;
constexpr int64_t kPackA = int64_t(1) << 21;    // packed op(A) row-group cap (elements)

// Products with M*N*K below this (or M == 1, or N == 1) use the direct path.
constexpr int64_t kDirectMNK = 4096;
// So do products with at most this many rows and B transposed, A not (x W^T for a small batch,
// e.g. one step of a recurrent cell): packing W^T would cost more than the product itself, so
// each C(i, j) is a dot product of two contiguous rows (dot_rows).
constexpr int64_t kDotRows = 4;
// And products with that many rows and B not transposed, while B (K x N) has at most this many
// elements: C's rows are sums of B's rows in registers (axpy_rows), cheaper than packing A's few
// rows into a micro-kernel sliver of MR. Larger B stays on the packed path, which splits the
// columns over threads.
constexpr int64_t kAxpyRowsNK = int64_t(1) << 18;

// The shapes gemm_dispatch computes on the direct path (gemm_prepacked applies the same rule).
inline bool direct_shape(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  return M == 1 || N == 1 || double(M) * double(N) * double(K) < double(kDirectMNK) || (tb && !ta && M <= kDotRows) ||
         (!tb && M <= kDotRows && N * K <= kAxpyRowsNK);
}
// Below this many flops a call stays on one thread (results are identical either way).
constexpr double kParallelFlops = 1.5e6;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-thread 64-byte aligned scratch that only grows.
template <class T, int Slot>
T* scratch(size_t n) {
  struct Buf {
    T* p = nullptr;
    size_t cap = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.cap < n) {
    std::free(buf.p);
    const size_t bytes = round_up(int64_t(n * sizeof(T)), 64);
    buf.p = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!buf.p) {
      buf.cap = 0;
      throw std::bad_alloc();
    }
    buf.cap = n;
  }
  return buf.p;
}

// Per-thread "block packed" flags for gemm_packed, grown on demand.
inline std::atomic<int>* ready_flags(size_t n) {
  thread_local std::unique_ptr<std::atomic<int>[]> flags;
  thread_local size_t cap = 0;
  if (cap < n) {
    flags.reset(new std::atomic<int>[n]);
    cap = n;
  }
  return flags.get();
}

// Balanced slice depth for this K: ceil(K / kKc) slices of (almost) equal depth.
inline int64_t slice_depth(int64_t K) {
  const int64_t slices = (K + kKc - 1) / kKc;
  return (K + slices - 1) / slices;
}

}  // namespace gemm_detail

template <class T>
class PackedB;

}  // namespace attn::kernels::cpu

#define ATTN_ISA_INC "gemm.inc"
#include "isa_expand.inc"
#undef ATTN_ISA_INC

namespace attn::kernels::cpu {

// Name of the kernel path the products run with: "avx512", "avx2" or "baseline".
inline const char* gemm_isa() { return isa_name(kernel_isa()); }

// Single-threaded product; bit-identical to gemm() with the same arguments.
template <class T>
void gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc) {
  ATTN_ISA_DISPATCH(gemm_dispatch<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, false));
}

// Parallel (through attn::parallel_for) when large enough and not already inside a parallel region.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  ATTN_ISA_DISPATCH(gemm_dispatch<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, true));
}

// op(B) (K x N) packed once for many products with the same right operand, e.g. W_hh^T at every
// step of a recurrence. The layout is gemm_packed's for one K super-slice and one column panel,
// so gemm_prepacked gives the same bits as gemm_serial with the same operands. B itself is also
// kept (not owned: it must outlive this) for the shapes gemm_serial computes without packing.
// The layout is the kernel path's (its sliver width); the path is fixed for the process.
template <class T>
class PackedB {
 public:
  PackedB(bool tb, int64_t K, int64_t N, const T* B, int64_t ldb)
      : tb_(tb), B_(B), ldb_(ldb), K_(K), N_(N), kc_(gemm_detail::slice_depth(std::max<int64_t>(K, 1))),
        data_(static_cast<T*>(std::aligned_alloc(64, size_t(gemm_detail::round_up(
                                                         int64_t(sizeof(T)) * std::max<int64_t>(K, 1) * padded_n(N), 64)))),
              &std::free) {
    if (!data_) throw std::bad_alloc();
    if (K > 0) pack(tb, B, ldb, K, N, padded_n(N) / sliver_width(), data_.get());
  }
  int64_t K() const { return K_; }
  int64_t N() const { return N_; }
  int64_t slice_depth() const { return kc_; }
  const T* data() const { return data_.get(); }
  bool transposed() const { return tb_; }
  const T* source() const { return B_; }
  int64_t source_ld() const { return ldb_; }

 private:
  static int64_t sliver_width() { ATTN_ISA_DISPATCH(packed_width<T>()); }
  static int64_t padded_n(int64_t N) { return gemm_detail::round_up(std::max<int64_t>(N, 1), sliver_width()); }
  static void pack(bool tb, const T* B, int64_t ldb, int64_t K, int64_t N, int64_t slivers, T* dst) {
    ATTN_ISA_DISPATCH(pack_b<T>(tb, B, ldb, 0, K, 0, N, 0, slivers, dst));
  }
  bool tb_ = false;
  const T* B_ = nullptr;
  int64_t ldb_ = 0, K_ = 0, N_ = 0, kc_ = 1;
  std::unique_ptr<T, void (*)(void*)> data_{nullptr, &std::free};
};

// C = alpha * A op(B) + beta * C on one thread with op(B) prepacked (A [M, K] not transposed, row
// stride lda); bit-identical to gemm_serial(false, B.transposed(), M, N, K, ...).
template <class T>
void gemm_prepacked(int64_t M, T alpha, const T* A, int64_t lda, const PackedB<T>& B, T beta, T* C, int64_t ldc) {
  ATTN_ISA_DISPATCH(gemm_prepacked<T>(M, alpha, A, lda, B, beta, C, ldc));
}

// `batch` independent products with element strides between consecutive matrices (0 = shared).
// Many small matrices run one per task (gemm_serial); otherwise one after another, each parallel.
// Both give the same bits, so the choice (which may depend on the thread count) is free.
template <class T>
void gemm_batched(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                  int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                  int64_t ldc, int64_t stride_c) {
  if (batch <= 0) return;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const int64_t threads = get_num_threads();
  const bool per_matrix = batch > 1 && threads > 1 && !in_parallel_region() &&
                          (flops < 3e7 || batch % threads == 0 || batch >= 4 * threads);
  if (!per_matrix) {
    for (int64_t i = 0; i < batch; ++i)
      gemm(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
    return;
  }
  parallel_for(0, batch, std::max<int64_t>(1, int64_t(2e5 / std::max(flops, 1.0))), [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i)
      gemm_serial(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
  });
}

}  // namespace attn::kernels::cpu