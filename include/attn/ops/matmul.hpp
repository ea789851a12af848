#pragma once
// matmul with PyTorch's semantics (1-D, 2-D, batched with broadcast batch dims) and linear.
// All products go through kernels::cpu::gemm; transposed operands are never copied.
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"
#include "shape.hpp"

#if ATTN_HEADER_DEFINITIONS
#include <array>
#include <cstdlib>
#include <memory>
#include <vector>
#include "cuda/matmul.hpp"
#include "../kernels/cpu/gemm.hpp"

namespace attn {
namespace detail {

// Batched product of a [..., M, K] (or [..., K, M] if ta) and b [..., K, N] (or [..., N, K] if tb);
// batch dims broadcast. No autograd: the differentiable ops below call it.
inline Tensor bmm_raw(const Tensor& a, const Tensor& b, bool ta, bool tb, const char* op) {
  if (on_cuda(a, b)) return cuda_ops::bmm_raw(a, b, ta, tb, op);
  check_same_dtype(a, b, op);
  const BmmShape S = bmm_shape(a.shape(), b.shape(), ta, tb, op);
  const int64_t ar = S.ar, ac = S.ac, br = S.br, bc = S.bc, M = S.M, N = S.N, K = S.K;
  const Shape &ba = S.batch_a, &bb = S.batch_b, &bs = S.batch, &os = S.out;
  Tensor out = Tensor::empty(os, a.dtype());
  const int64_t batch = numel_of(bs);
  if (batch == 0 || M == 0 || N == 0) return Tensor::zeros(os, a.dtype());
  ATTN_DISPATCH_FLOATING(a.dtype(), op, [&] {
    const scalar_t *pa = a.data<scalar_t>(), *pb = b.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    if (bb.empty() || numel_of(bb) == 1) {
      if (!ta && numel_of(ba) == batch) {
        // b is one matrix: fold a's batch into its rows, one big product.
        kernels::cpu::gemm<scalar_t>(false, tb, batch * M, N, K, 1, pa, ac, pb, bc, 0, po, N);
        return;
      }
    }
    const bool sa_full = ba == bs, sb_full = bb == bs;
    if ((sa_full || numel_of(ba) == 1) && (sb_full || numel_of(bb) == 1)) {
      kernels::cpu::gemm_batched<scalar_t>(batch, ta, tb, M, N, K, 1, pa, ac, sa_full ? ar * ac : 0, pb, bc,
                                           sb_full ? br * bc : 0, 0, po, N, M * N);
      return;
    }
    // General broadcast of batch dims: map each output batch index to its a and b matrices.
    const auto sta = broadcast_strides(ba, bs), stb = broadcast_strides(bb, bs);
    parallel_for(0, batch, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        int64_t oa = 0, ob = 0, r = i;
        for (int64_t d = int64_t(bs.size()) - 1; d >= 0; --d) {
          const int64_t k = r % bs[size_t(d)];
          r /= bs[size_t(d)];
          oa += k * sta[size_t(d)];
          ob += k * stb[size_t(d)];
        }
        kernels::cpu::gemm_serial<scalar_t>(ta, tb, M, N, K, 1, pa + oa * ar * ac, ac, pb + ob * br * bc, bc, 0,
                                            po + i * M * N, N);
      }
    });
  });
  return out;
}

// Raw pieces of y = x W^T + b for fused nodes that run projections inside themselves (and for
// linear below). No autograd.
// dst [rows, N]: every row b1 + b2, or zeros when b1 is undefined (b2 may be undefined).
template <class T>
void fill_bias_rows(T* dst, int64_t rows, int64_t N, const Tensor& b1, const Tensor& b2 = Tensor()) {
  if (!b1.defined()) {
    std::fill(dst, dst + rows * N, T(0));
    return;
  }
  const T* p1 = b1.data<T>();
  const T* p2 = b2.defined() ? b2.data<T>() : nullptr;
  for (int64_t j = 0; j < N; ++j) dst[j] = p2 ? p1[j] + p2[j] : p1[j];
  for (int64_t r = 1; r < rows; ++r) std::copy(dst, dst + N, dst + r * N);
}

// Products inside the per-step ops (a recurrent cell, an attention step) with fewer flops than
// this run on the calling thread. Such an op takes tens of microseconds and a loop runs thousands
// of them: a fork/join per product gains little on an idle machine, and when the cores are
// shared each one can wait for a descheduled thread (a 2-thread sine-prediction training step
// took 38 s instead of 1 s on a loaded 2-core machine). Results are the same either way.
constexpr double kStepParallelFlops = 1e7;
// A per-step op's batch: at most this many rows (one row group of the GEMM's packed path on the
// widest tile) read a parameter's kept transpose (linear_product).
constexpr int64_t kStepRows = 128;

// C = alpha op(A) op(B) + beta C through gemm (parallel when large) or gemm_serial.
template <class T>
void gemm_on(bool parallel, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
             const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (parallel) kernels::cpu::gemm<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else kernels::cpu::gemm_serial<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// W^T [K, N] of a parameter W [N, K] (a leaf that requires grad), kept per thread for the
// products x W^T with a few rows that a loop over time steps runs thousands of times (a cell's step
// in a free run, a decoder step). Through the rows of W^T such a product needs no horizontal sums
// (axpy_rows) and takes about half the time of dot products over W's rows, while transposing W on
// every call would cost as much as the product. The rows of W^T start on 64-byte boundaries (ld
// rounded up), so no vector load straddles two cache lines. An entry belongs to one W (its
// storage, held by weak_ptr so that a new tensor at the same address never matches, and its
// address in it) and is transposed again, in place, when W's version has moved: every in-place
// write through the API bumps it (optimizers, copy_, fill_, nn::init, checkpoint loads). A write
// through a raw data<T>() pointer does not, as it escapes autograd's saved-tensor check too; call
// attn::increment_version(w) after one. Only W with N >= 16 and N * K <= kAxpyRowsNK is kept (at
// most 8 entries per thread, a few MB; an evicted entry's buffer serves the next W when large
// enough); any other W (also K = 0) gives {nullptr, 0}.
template <class T>
std::pair<const T*, int64_t> transposed_parameter(const Tensor& w) {
  const int64_t N = w.size(0), K = w.size(1);
  if (!w.is_leaf() || !w.requires_grad() || N < 16 || K < 1 || N * K > kernels::cpu::gemm_detail::kAxpyRowsNK)
    return {nullptr, 0};
  struct Entry {
    std::weak_ptr<Storage> storage;
    const T* source = nullptr;
    int64_t N = 0, K = 0;
    uint64_t version = 0;
    std::unique_ptr<T, void (*)(void*)> wt{nullptr, &std::free};
    size_t capacity = 0;  // elements of wt (kept when the entry is reused for another W)
  };
  thread_local std::array<Entry, 8> cache;
  thread_local size_t next = 0;
  constexpr int64_t kLine = 64 / int64_t(sizeof(T));  // elements per cache line
  const int64_t ld = (N + kLine - 1) / kLine * kLine;
  const std::shared_ptr<Storage>& st = w.unsafe_impl()->storage;
  const T* src = w.data<T>();
  const uint64_t version = uint64_t(w._version());
  Entry* e = nullptr;
  for (Entry& c : cache)
    if (c.source == src && c.N == N && c.K == K && c.storage.lock() == st) {
      e = &c;
      break;
    }
  if (e && e->version == version) return {e->wt.get(), ld};
  if (!e) {
    e = &cache[next];
    next = (next + 1) % cache.size();
    const size_t need = size_t(K * ld);  // a multiple of 64 bytes, as aligned_alloc requires
    if (e->capacity < need) {
      T* wt = static_cast<T*>(std::aligned_alloc(64, need * sizeof(T)));
      if (!wt) throw std::bad_alloc();
      e->wt.reset(wt);
      e->capacity = need;
    }
    e->storage = st;
    e->source = src;
    e->N = N;
    e->K = K;
  }
  e->version = version;
  T* wt = e->wt.get();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) wt[k * ld + n] = src[n * K + k];
  return {wt, ld};
}

// out [rows, N] (+)= x W^T with x [rows, K] (the leading dims of x folded), W [N, K]; beta 0 or 1.
// parallel = false: on the calling thread (see kStepParallelFlops). For a parameter W and a batch
// of a step (at most kStepRows rows), through the kept W^T (transposed_parameter): with a few
// rows the same sums in another order (axpy_rows instead of dot_rows), so the results agree with
// the dot-product path to rounding; with more, the packed path's very same arithmetic, W^T read in
// place instead of packing W's columns on every call.
template <class T>
void linear_product(const Tensor& x, const Tensor& w, T beta, T* out, bool parallel = true) {
  const int64_t N = w.size(0), K = w.size(1), rows = x.numel() / std::max<int64_t>(K, 1);
  using kernels::cpu::gemm_detail::direct_shape;
  if (rows <= kernels::cpu::gemm_detail::kDotRows || (rows <= kStepRows && !direct_shape(false, true, rows, N, K)))
    if (const auto wt = transposed_parameter<T>(w); wt.first) {
      gemm_on<T>(parallel, false, false, rows, N, K, T(1), x.data<T>(), K, wt.first, wt.second, beta, out, N);
      return;
    }
  gemm_on<T>(parallel, false, true, rows, N, K, T(1), x.data<T>(), K, w.data<T>(), K, beta, out, N);
}

// Whether a per-step op doing about `flops` in its products should let them run in parallel.
inline bool step_parallel(double flops) { return flops >= kStepParallelFlops; }

// Column sums of d [rows, N] (rows added in order) as a new [N] tensor.
template <class T>
Tensor column_sums(const T* d, int64_t rows, int64_t N, DType dt) {
  Tensor out = Tensor::zeros({N}, dt);
  T* o = out.data<T>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < N; ++j) o[j] += d[r * N + j];
  return out;
}

// Gradients of y = x W^T + b from dy [rows, N]: dx = dy W (x's shape; added into dx when dx is
// already defined), dW = dy^T x, db = column sums of dy. Each only when its tensor requires
// grad (b may be undefined).
template <class T>
void linear_grads(const T* dy, const Tensor& x, const Tensor& w, const Tensor& b, Tensor& dx, Tensor& dw, Tensor& db,
                  bool parallel = true) {
  const int64_t N = w.size(0), K = w.size(1), rows = x.numel() / std::max<int64_t>(K, 1);
  if (x.requires_grad()) {
    const bool add = dx.defined();
    if (!add) dx = Tensor::empty(x.shape(), x.dtype());
    gemm_on<T>(parallel, false, false, rows, K, N, T(1), dy, N, w.data<T>(), K, add ? T(1) : T(0), dx.data<T>(), K);
  }
  if (w.requires_grad()) {
    dw = Tensor::empty(w.shape(), w.dtype());
    gemm_on<T>(parallel, true, false, N, K, rows, T(1), dy, N, x.data<T>(), K, T(0), dw.data<T>(), K);
  }
  if (b.defined() && b.requires_grad()) db = column_sums<T>(dy, rows, N, w.dtype());
}

}  // namespace detail

// matmul(a, b) = a @ b;  dL/da = sum_to(g @ b^T, a.shape),  dL/db = sum_to(a^T @ g, b.shape)
ATTN_API Tensor matmul(const Tensor& a, const Tensor& b) {
  ATTN_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: shapes ", to_string(a.shape()), " and ", to_string(b.shape()),
             " need at least 1 dim");
  {
    // Checked here, with the shapes as given: the 1-D and batched paths below would otherwise
    // report unsqueezed shapes or only the batch dims.
    const int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
    bool ok = ka == kb;
    const size_t na = a.dim() > 2 ? size_t(a.dim() - 2) : 0, nb = b.dim() > 2 ? size_t(b.dim() - 2) : 0;
    for (size_t i = 1; ok && i <= std::min(na, nb); ++i) {
      const int64_t da = a.shape()[na - i], db = b.shape()[nb - i];
      ok = da == db || da == 1 || db == 1;
    }
    ATTN_CHECK(ok, "matmul: shapes ", to_string(a.shape()), " and ", to_string(b.shape()), " are incompatible");
  }
  // 1-D @ 1-D is a dot product: a 0-d result (squeezing -2 of the 1-D intermediate would throw).
  if (a.dim() == 1 && b.dim() == 1) return reshape(matmul(unsqueeze(a, 0), unsqueeze(b, 1)), {});
  if (a.dim() == 1) return squeeze(matmul(unsqueeze(a, 0), b), -2);
  if (b.dim() == 1) return squeeze(matmul(a, unsqueeze(b, 1)), -1);
  Tensor out = detail::bmm_raw(a, b, false, false, "matmul");
  return record("matmul", out, {a, b}, [a, b](const std::vector<Tensor>& g) {
    Tensor ga, gb;
    if (a.requires_grad()) ga = sum_to(detail::bmm_raw(g[0], b, false, true, "matmul_backward"), a.shape());
    if (b.requires_grad()) {
      if (b.dim() == 2 && a.dim() > 2) {
        // Shared weight: one product over all folded batch rows.
        Tensor a2 = reshape(a, {-1, a.size(-1)}), g2 = reshape(g[0], {-1, g[0].size(-1)});
        gb = detail::bmm_raw(a2, g2, true, false, "matmul_backward");
      } else {
        gb = sum_to(detail::bmm_raw(a, g[0], true, false, "matmul_backward"), b.shape());
      }
    }
    return std::vector<Tensor>{ga, gb};
  }, {a, b});
}

// linear(x, W, b) = x W^T + b over the last dim of x; W: [out, in], b: [out] or undefined.
// dL/dx = g W,  dL/dW = g^T x (all leading dims folded),  dL/db = sum of g over rows
ATTN_API Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  ATTN_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", to_string(x.shape()),
             " does not match weight ", to_string(weight.shape()), " (expected last dim ",
             weight.dim() == 2 ? weight.size(1) : -1, ")");
  ATTN_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), "linear: bias ",
             to_string(bias.defined() ? bias.shape() : Shape{}), " does not match weight ", to_string(weight.shape()));
  detail::check_same_dtype(x, weight, "linear");
  if (detail::on_cuda(x)) return cuda_ops::linear(x, weight, bias);
  const int64_t in = weight.size(1), outf = weight.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  Shape os = x.shape();
  os.back() = outf;
  Tensor out = Tensor::empty(os, x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), "linear", [&] {
    scalar_t* po = out.data<scalar_t>();
    if (bias.defined()) detail::fill_bias_rows<scalar_t>(po, rows, outf, bias);
    detail::linear_product<scalar_t>(x, weight, bias.defined() ? 1 : 0, po);
  });
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("linear", out, inputs, [x, weight, has_bias = bias.defined(), rows, in, outf](const std::vector<Tensor>& g) {
    const Tensor g2 = reshape(g[0], {rows, outf});
    std::vector<Tensor> gs(has_bias ? 3 : 2);
    if (x.requires_grad()) gs[0] = reshape(detail::bmm_raw(g2, weight, false, false, "linear_backward"), x.shape());
    if (weight.requires_grad())
      gs[1] = detail::bmm_raw(g2, reshape(x, {rows, in}), true, false, "linear_backward");
    if (has_bias) gs[2] = sum(g2, 0, false);
    return gs;
  }, {x, weight});
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
