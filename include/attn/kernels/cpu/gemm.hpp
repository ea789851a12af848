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
//       NR sliver, for each MR sliver: register-blocked micro-kernel (gemm_microkernel.hpp)
// Every blocking constant is fixed at compile time and the partition of C into items depends
// only on (M, N, K), never on the thread count; each C element is summed by one thread in the same
// order (k ascending inside a kc slice, slices ascending), so results are bit-identical for any
// number of threads, and gemm_serial gives exactly the same bits as gemm.
// Tiny products (and M == 1 or N == 1) take a direct loop path chosen from the shape alone.
#include <Eigen/Core>
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
#include "gemm_microkernel.hpp"

namespace attn::kernels::cpu {

// Eigen views of row-major strided matrices (kept for callers; gemm itself does not use Eigen).
template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

namespace gemm_detail {

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
constexpr int64_t kPackB = int64_t(1) << 22;    // packed op(B) panel cap (elements)
constexpr int64_t kPackA = int64_t(1) << 21;    // packed op(A) row-group cap (elements)

// Products with M*N*K below this (or M == 1, or N == 1) use the direct path.
constexpr int64_t kDirectMNK = 4096;
// So do products with at most this many rows and B transposed, A not (x W^T for a small batch,
// e.g. one step of a recurrent cell): packing W^T would cost more than the product itself, so
// each C(i, j) is a dot product of two contiguous rows (dot_rows).
constexpr int64_t kDotRows = 4;

// The shapes gemm_dispatch computes on the direct path (gemm_prepacked applies the same rule).
inline bool direct_shape(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  return M == 1 || N == 1 || double(M) * double(N) * double(K) < double(kDirectMNK) || (tb && !ta && M <= kDotRows);
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

// Pack op(B)[p0:p0+kc, j0 + s*NR ...] for slivers s in [s0, s1) into dst (sliver s at s*kc*NR),
// zero-padding columns >= n.
template <class T>
void pack_b(bool tb, const T* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t s0, int64_t s1,
            T* dst) {
  constexpr int64_t NR = kNR<T>;
  for (int64_t s = s0; s < s1; ++s) {
    T* d = dst + s * kc * NR;
    const int64_t jb = s * NR, w = std::min(NR, n - jb);
    if (!tb) {  // op(B)(k, j) = B[k * ldb + j]
      const T* src = B + p0 * ldb + j0 + jb;
      if (w == NR) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(d + k * NR, src + k * ldb, sizeof(T) * NR);
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int64_t j = 0; j < w; ++j) d[k * NR + j] = src[k * ldb + j];
          for (int64_t j = w; j < NR; ++j) d[k * NR + j] = T(0);
        }
      }
    } else {  // op(B)(k, j) = B[j * ldb + k]
      const T* src = B + (j0 + jb) * ldb + p0;
      for (int64_t j = 0; j < w; ++j)
        for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = src[j * ldb + k];
      if (w < NR)
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t j = w; j < NR; ++j) d[k * NR + j] = T(0);
    }
  }
}

// Pack op(A)[i0 + s*MR ..., p0:p0+kc] for slivers s in [s0, s1), zero-padding rows >= m.
template <class T>
void pack_a(bool ta, const T* A, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc, int64_t s0, int64_t s1,
            T* dst) {
  constexpr int64_t MR = kMR<T>;
  for (int64_t s = s0; s < s1; ++s) {
    T* d = dst + s * kc * MR;
    const int64_t ib = s * MR, h = std::min(MR, m - ib);
    if (ta) {  // op(A)(i, k) = A[k * lda + i]
      const T* src = A + p0 * lda + i0 + ib;
      if (h == MR) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(d + k * MR, src + k * lda, sizeof(T) * MR);
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int64_t i = 0; i < h; ++i) d[k * MR + i] = src[k * lda + i];
          for (int64_t i = h; i < MR; ++i) d[k * MR + i] = T(0);
        }
      }
    } else {  // op(A)(i, k) = A[i * lda + k]
      const T* src = A + (i0 + ib) * lda + p0;
      for (int64_t i = 0; i < h; ++i)
        for (int64_t k = 0; k < kc; ++k) d[k * MR + i] = src[i * lda + k];
      if (h < MR)
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t i = h; i < MR; ++i) d[k * MR + i] = T(0);
    }
  }
}

// One tile, possibly cut by the edges of C (then computed through an MR x NR scratch tile with the
// very same arithmetic).
// Operand forms (as, bs) as in gemm_microkernel.hpp.
template <class T>
inline void tile(int64_t kc, const T* Ap, int64_t as, const T* Bp, int64_t bs, T* C, int64_t ldc, int64_t h,
                 int64_t w, T alpha, T beta, Mode mode) {
  constexpr int64_t MR = kMR<T>, NR = kNR<T>;
  if (h == MR && w == NR) {
    micro_kernel<T>(kc, Ap, as, Bp, bs, C, ldc, alpha, beta, mode);
    return;
  }
  alignas(64) T t[MR * NR];
  if (mode != Mode::kStore)
    for (int64_t i = 0; i < h; ++i) std::memcpy(t + i * NR, C + i * ldc, sizeof(T) * w);
  micro_kernel<T>(kc, Ap, as, Bp, bs, t, NR, alpha, beta, mode);
  for (int64_t i = 0; i < h; ++i) std::memcpy(C + i * ldc, t + i * NR, sizeof(T) * w);
}

// out[r * N + j] = sum_k A[r * lda + k] B[j * ldb + k] for r < R (R <= 4) and j < N: dot
// products of contiguous rows in SIMD lanes (lane l sums k = l, l + W, ...; the lanes are added by
// a fixed reduction tree; without AVX-512 the k past the last multiple of W are added after, in
// order). R rows of A and 4 rows of B at a time share their loads. Each result depends only on K
// and the data, never on R, j or the thread.
#if defined(__AVX512F__)
// AVX-512: the same lanes, with the last partial chunk read through masked loads into the
// accumulators (no scalar tail per dot product), and one horizontal sum per result.
template <class T>
struct Dot512;
template <>
struct Dot512<double> {
  using V = __m512d;
  using M = __mmask8;
  static constexpr int W = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V load(M m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static double sum(V v) { return _mm512_reduce_add_pd(v); }
};
template <>
struct Dot512<float> {
  using V = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(M m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }
};
#endif

template <class T, int R>
void dot_rows(const T* A, int64_t lda, const T* B, int64_t ldb, int64_t N, int64_t K, T* out) {
#if defined(__AVX512F__)
  {
    using D = Dot512<T>;
    using V = typename D::V;
    constexpr int W = D::W;
    const int64_t Kv = K / W * W;
    const typename D::M tail = typename D::M((1u << (K - Kv)) - 1u);
    auto chunk = [&](const T* p, int64_t k) { return k < Kv ? D::load(p + k) : D::load(tail, p + k); };
    int64_t j = 0;
    for (; j + 4 <= N; j += 4) {
      const T* b[4] = {B + j * ldb, B + (j + 1) * ldb, B + (j + 2) * ldb, B + (j + 3) * ldb};
      V acc[R][4];
      for (int r = 0; r < R; ++r)
        for (int q = 0; q < 4; ++q) acc[r][q] = D::zero();
      for (int64_t k = 0; k < K; k += W) {
        const V b0 = chunk(b[0], k), b1 = chunk(b[1], k), b2 = chunk(b[2], k), b3 = chunk(b[3], k);
        for (int r = 0; r < R; ++r) {
          const V av = chunk(A + r * lda, k);
          acc[r][0] = D::fma(av, b0, acc[r][0]);
          acc[r][1] = D::fma(av, b1, acc[r][1]);
          acc[r][2] = D::fma(av, b2, acc[r][2]);
          acc[r][3] = D::fma(av, b3, acc[r][3]);
        }
      }
      for (int r = 0; r < R; ++r)
        for (int q = 0; q < 4; ++q) out[r * N + j + q] = D::sum(acc[r][q]);
    }
    for (; j < N; ++j) {
      const T* bj = B + j * ldb;
      for (int r = 0; r < R; ++r) {
        V acc = D::zero();
        for (int64_t k = 0; k < K; k += W) acc = D::fma(chunk(A + r * lda, k), chunk(bj, k), acc);
        out[r * N + j] = D::sum(acc);
      }
    }
    return;
  }
#endif
  constexpr int W = Eigen::internal::packet_traits<T>::size;
  using P = Eigen::Array<T, W, 1>;
  using CM = Eigen::Map<const P>;
  const int64_t Kv = K / W * W;
  auto finish = [&](const P& acc, const T* a, const T* b) {
    T s = acc.sum();
    for (int64_t k = Kv; k < K; ++k) s += a[k] * b[k];
    return s;
  };
  int64_t j = 0;
  for (; j + 4 <= N; j += 4) {
    const T* b[4] = {B + j * ldb, B + (j + 1) * ldb, B + (j + 2) * ldb, B + (j + 3) * ldb};
    P acc[R][4];
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < 4; ++q) acc[r][q] = P::Zero();
    for (int64_t k = 0; k < Kv; k += W) {
      const P b0 = CM(b[0] + k), b1 = CM(b[1] + k), b2 = CM(b[2] + k), b3 = CM(b[3] + k);
      for (int r = 0; r < R; ++r) {
        const P av = CM(A + r * lda + k);
        acc[r][0] += av * b0;
        acc[r][1] += av * b1;
        acc[r][2] += av * b2;
        acc[r][3] += av * b3;
      }
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < 4; ++q) out[r * N + j + q] = finish(acc[r][q], A + r * lda, b[q]);
  }
  for (; j < N; ++j) {
    const T* bj = B + j * ldb;
    for (int r = 0; r < R; ++r) {
      P acc = P::Zero();
      for (int64_t k = 0; k < Kv; k += W) acc += CM(A + r * lda + k) * CM(bj + k);
      out[r * N + j] = finish(acc, A + r * lda, bj);
    }
  }
}

// Direct path: C(i, j) = alpha * sum_k op(A)(i, k) op(B)(k, j) + beta * C(i, j), one accumulator
// per element (k ascending; with B transposed and A not, dot_rows' lanes); rows [r0, r1).
template <class T>
void direct_rows(bool ta, bool tb, int64_t r0, int64_t r1, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const T* B, int64_t ldb, T beta, T* C, int64_t ldc, T* acc) {
  auto store = [&](int64_t i, const T* a) {
    T* c = C + i * ldc;
    if (beta == T(0))
      for (int64_t j = 0; j < N; ++j) c[j] = alpha * a[j];
    else
      for (int64_t j = 0; j < N; ++j) c[j] = alpha * a[j] + beta * c[j];
  };
  if (tb && !ta) {  // dot products, up to 4 rows at a time (acc holds 4 N)
    for (int64_t i = r0; i < r1; i += 4) {
      const int64_t R = std::min<int64_t>(4, r1 - i);
      const T* a = A + i * lda;
      if (R == 4) dot_rows<T, 4>(a, lda, B, ldb, N, K, acc);
      else if (R == 3) dot_rows<T, 3>(a, lda, B, ldb, N, K, acc);
      else if (R == 2) dot_rows<T, 2>(a, lda, B, ldb, N, K, acc);
      else dot_rows<T, 1>(a, lda, B, ldb, N, K, acc);
      for (int64_t r = 0; r < R; ++r) store(i + r, acc + r * N);
    }
    return;
  }
  for (int64_t i = r0; i < r1; ++i) {
    for (int64_t j = 0; j < N; ++j) acc[j] = T(0);
    if (!tb) {
      for (int64_t k = 0; k < K; ++k) {
        const T a = ta ? A[k * lda + i] : A[i * lda + k];
        const T* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) acc[j] += a * b[j];
      }
    } else {
      for (int64_t j = 0; j < N; ++j) {
        const T* b = B + j * ldb;
        T s = T(0);
        for (int64_t k = 0; k < K; ++k) s += A[k * lda + i] * b[k];
        acc[j] = s;
      }
    }
    store(i, acc);
  }
}

template <class T>
void gemm_direct(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc, bool allow_parallel) {
  const double row_flops = 2.0 * double(N) * double(std::max<int64_t>(K, 1));
  const int64_t grain = std::max<int64_t>(1, int64_t(kParallelFlops / row_flops));
  auto body = [&](int64_t r0, int64_t r1) {
    T* acc = scratch<T, 2>(size_t(4 * std::max<int64_t>(N, 1)));
    direct_rows<T>(ta, tb, r0, r1, N, K, alpha, A, lda, B, ldb, beta, C, ldc, acc);
  };
  if (allow_parallel && M > grain) parallel_for(0, M, grain, body);
  else body(0, M);
}

// Balanced slice depth for this K: ceil(K / kKc) slices of (almost) equal depth.
inline int64_t slice_depth(int64_t K) {
  const int64_t slices = (K + kKc - 1) / kKc;
  return (K + slices - 1) / slices;
}

// Packed path. For each K super-slice (p0), panel of columns (jc) and group of rows (ic), ONE
// parallel region runs a queue of tasks claimed through an atomic counter: first the packing tasks
// (one per block of jw columns of op(B), one per block of mc rows of op(A)), then the compute items
// (mc rows x jw columns of C, looping over the kc slices in ascending order). A compute item waits
// until its two packed blocks are marked ready. Which thread runs which task does not matter: each
// task's arithmetic is fixed, so the bits of C are the same for any number of threads.
template <class T>
void gemm_packed(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc, bool par) {
  constexpr int64_t MR = kMR<T>, NR = kNR<T>, MC = MR * kMcSlivers, JW = NR * kJwSlivers;
  const int64_t kcb = slice_depth(K);
  const int64_t ksup = std::min(K, kcb * std::max<int64_t>(1, kKSup / kcb));
  const int64_t nc_max = std::min(round_up(N, NR), std::max(JW, kPackB / ksup / JW * JW));
  const int64_t mo_max = std::min(round_up(M, MR), std::max(MC, kPackA / ksup / MC * MC));
  T* bp = scratch<T, 0>(size_t(ksup * nc_max));
  T* ap = scratch<T, 1>(size_t(ksup * mo_max));
  const int64_t max_blocks = (nc_max + JW - 1) / JW + (mo_max + MC - 1) / MC;
  std::atomic<int>* ready = ready_flags(size_t(max_blocks));
  for (int64_t p0 = 0; p0 < K; p0 += ksup) {
    const int64_t kk = std::min(ksup, K - p0);
    const Mode first = p0 > 0 ? Mode::kAccum
                              : (beta == T(0) ? Mode::kStore : (beta == T(1) ? Mode::kAccum : Mode::kScale));
    for (int64_t jc = 0; jc < N; jc += nc_max) {
      const int64_t nc = std::min(nc_max, N - jc), nsl = (nc + NR - 1) / NR, jblocks = (nsl + kJwSlivers - 1) / kJwSlivers;
      for (int64_t ic = 0; ic < M; ic += mo_max) {
        const int64_t mo = std::min(mo_max, M - ic), msl = (mo + MR - 1) / MR, mblocks = (msl + kMcSlivers - 1) / kMcSlivers;
        // Operands read in place by the micro-kernel (full slivers only; partial ones are packed):
        // op(A) = A always; op(A) = A^T when each A sliver serves one column item only (N <= JW:
        // packing it would cost as much as using it); op(B) = B when each B sliver serves at most
        // one row item (M <= MC). Large products pack, for cache and TLB locality.
        const bool direct_a = kInPlace && (!ta || N <= JW);
        const bool direct_b = kInPlace && !tb && M <= MC;
        const int64_t full_msl = mo / MR, full_nsl = nc / NR;
        const bool pack_b_now = ic == 0;  // the B panel stays valid for every row group of this jc
        const int64_t n_packb = pack_b_now ? jblocks : 0, n_pack = n_packb + mblocks;
        const int64_t n_tasks = n_pack + mblocks * jblocks;
        std::atomic<int>* ready_b = ready;
        std::atomic<int>* ready_a = ready + jblocks;
        for (int64_t b = 0; b < jblocks; ++b) ready_b[b].store(pack_b_now ? 0 : 1, std::memory_order_relaxed);
        for (int64_t b = 0; b < mblocks; ++b) ready_a[b].store(0, std::memory_order_relaxed);
        std::atomic<int64_t> next{0};
        auto worker = [&](int64_t, int64_t) {
          for (;;) {
            const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
            if (t >= n_tasks) break;
            if (t < n_packb) {
              const int64_t s0 = t * kJwSlivers, s1 = std::min(nsl, s0 + kJwSlivers);
              pack_b<T>(tb, B, ldb, p0, kk, jc, nc, direct_b ? std::max(s0, full_nsl) : s0, s1, bp);
              ready_b[t].store(1, std::memory_order_release);
            } else if (t < n_pack) {
              const int64_t mb = t - n_packb, s0 = mb * kMcSlivers, s1 = std::min(msl, s0 + kMcSlivers);
              // Direct A: only a partial last sliver needs packing.
              pack_a<T>(ta, A, lda, ic, mo, p0, kk, direct_a ? std::max(s0, full_msl) : s0, s1, ap);
              ready_a[mb].store(1, std::memory_order_release);
            } else {
              const int64_t item = t - n_pack, mb = item / jblocks, jb = item % jblocks;
              // Packing tasks were all claimed before this one; wait for the ones still running.
              while (!ready_a[mb].load(std::memory_order_acquire) || !ready_b[jb].load(std::memory_order_acquire))
                std::this_thread::yield();
              const int64_t js0 = jb * kJwSlivers, js1 = std::min(nsl, js0 + kJwSlivers);
              const int64_t is0 = mb * kMcSlivers, is1 = std::min(msl, is0 + kMcSlivers);
              for (int64_t q = 0; q < kk; q += kcb) {
                const int64_t kc = std::min(kcb, kk - q);
                const Mode mode = q == 0 ? first : Mode::kAccum;
                for (int64_t js = js0; js < js1; ++js) {
                  const int64_t j = js * NR, w = std::min(NR, nc - j);
                  const bool bd = direct_b && js < full_nsl;
                  const T* bsl = bd ? B + (p0 + q) * ldb + jc + j : bp + js * kk * NR + q * NR;
                  for (int64_t is = is0; is < is1; ++is) {
                    const int64_t i = is * MR, h = std::min(MR, mo - i);
                    T* c = C + (ic + i) * ldc + jc + j;
                    if (direct_a && is < full_msl) {
                      if (ta) tile<T>(kc, A + (p0 + q) * lda + ic + i, -lda, bsl, bd ? ldb : 0, c, ldc, h, w, alpha, beta, mode);
                      else tile<T>(kc, A + (ic + i) * lda + p0 + q, lda, bsl, bd ? ldb : 0, c, ldc, h, w, alpha, beta, mode);
                    } else {
                      tile<T>(kc, ap + is * kk * MR + q * MR, 0, bsl, bd ? ldb : 0, c, ldc, h, w, alpha, beta, mode);
                    }
                  }
                }
              }
            }
          }
        };
        if (par) parallel_for(0, get_num_threads(), 1, worker);
        else worker(0, 1);
      }
    }
  }
}

template <class T>
void gemm_dispatch(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                   int64_t ldb, T beta, T* C, int64_t ldc, bool allow_parallel) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // C = beta * C (beta == 0: zeros, C not read)
    for (int64_t i = 0; i < M; ++i) {
      T* c = C + i * ldc;
      if (beta == T(0)) std::fill(c, c + N, T(0));
      else if (beta != T(1))
        for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
    return;
  }
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const bool par = allow_parallel && flops >= kParallelFlops && get_num_threads() > 1 && !in_parallel_region();
  if (direct_shape(ta, tb, M, N, K)) {
    gemm_direct<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, par);
    return;
  }
  gemm_packed<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, par);
}

}  // namespace gemm_detail

// Name of the micro-kernel instruction set compiled in ("avx512", "avx2" or "scalar").
inline const char* gemm_isa() { return ATTN_GEMM_ISA; }

// Single-threaded product; bit-identical to gemm() with the same arguments.
template <class T>
void gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc) {
  gemm_detail::gemm_dispatch<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, false);
}

// Parallel (through attn::parallel_for) when large enough and not already inside a parallel region.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  gemm_detail::gemm_dispatch<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, true);
}

// op(B) (K x N) packed once for many products with the same right operand, e.g. W_hh^T at every
// step of a recurrence. The layout is gemm_packed's for one K super-slice and one column panel,
// so gemm_prepacked gives the same bits as gemm_serial with the same operands. B itself is also
// kept (not owned: it must outlive this) for the shapes gemm_serial computes without packing.
template <class T>
class PackedB {
 public:
  PackedB(bool tb, int64_t K, int64_t N, const T* B, int64_t ldb)
      : tb_(tb), B_(B), ldb_(ldb), K_(K), N_(N), kc_(gemm_detail::slice_depth(std::max<int64_t>(K, 1))),
        data_(static_cast<T*>(std::aligned_alloc(64, size_t(gemm_detail::round_up(
                                                         int64_t(sizeof(T)) * std::max<int64_t>(K, 1) * padded_n(N), 64)))),
              &std::free) {
    if (!data_) throw std::bad_alloc();
    const int64_t slivers = padded_n(N) / gemm_detail::kNR<T>;
    if (K > 0) gemm_detail::pack_b<T>(tb, B, ldb, 0, K, 0, N, 0, slivers, data_.get());
  }
  int64_t K() const { return K_; }
  int64_t N() const { return N_; }
  int64_t slice_depth() const { return kc_; }
  const T* data() const { return data_.get(); }
  bool transposed() const { return tb_; }
  const T* source() const { return B_; }
  int64_t source_ld() const { return ldb_; }

 private:
  static int64_t padded_n(int64_t N) { return gemm_detail::round_up(std::max<int64_t>(N, 1), gemm_detail::kNR<T>); }
  bool tb_ = false;
  const T* B_ = nullptr;
  int64_t ldb_ = 0, K_ = 0, N_ = 0, kc_ = 1;
  std::unique_ptr<T, void (*)(void*)> data_{nullptr, &std::free};
};

// C = alpha * A op(B) + beta * C on one thread with op(B) prepacked (A [M, K] not transposed, row
// stride lda); bit-identical to gemm_serial(false, B.transposed(), M, N, K, ...).
template <class T>
void gemm_prepacked(int64_t M, T alpha, const T* A, int64_t lda, const PackedB<T>& B, T beta, T* C, int64_t ldc) {
  using namespace gemm_detail;
  constexpr int64_t MR = kMR<T>, NR = kNR<T>;
  const int64_t K = B.K(), N = B.N(), kcb = B.slice_depth();
  if (M <= 0 || N <= 0) return;
  // shapes that gemm_dispatch does not send through the packed path (same rule as there)
  if (K <= 0 || direct_shape(false, B.transposed(), M, N, K) || K > kKSup) {
    gemm_serial<T>(false, B.transposed(), M, N, K, alpha, A, lda, B.source(), B.source_ld(), beta, C, ldc);
    return;
  }
  const Mode first = beta == T(0) ? Mode::kStore : (beta == T(1) ? Mode::kAccum : Mode::kScale);
  const int64_t full = M / MR, nsl = (N + NR - 1) / NR;
  T* tail = nullptr;  // the partial last MR sliver of A, packed (zero-padded)
  if (full * MR < M) {
    tail = scratch<T, 1>(size_t(K * MR));
    pack_a<T>(false, A, lda, full * MR, M - full * MR, 0, K, 0, 1, tail);
  }
  for (int64_t q = 0; q < K; q += kcb) {
    const int64_t kc = std::min(kcb, K - q);
    const Mode mode = q == 0 ? first : Mode::kAccum;
    for (int64_t js = 0; js < nsl; ++js) {
      const int64_t j = js * NR, w = std::min(NR, N - j);
      const T* bs = B.data() + js * K * NR + q * NR;
      for (int64_t is = 0; is * MR < M; ++is) {
        const int64_t i = is * MR, h = std::min(MR, M - i);
        if (is < full) tile<T>(kc, A + i * lda + q, lda, bs, 0, C + i * ldc + j, ldc, h, w, alpha, beta, mode);
        else tile<T>(kc, tail + q * MR, 0, bs, 0, C + i * ldc + j, ldc, h, w, alpha, beta, mode);
      }
    }
  }
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
