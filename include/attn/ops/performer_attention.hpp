#pragma once
// Performer / FAVOR+ attention (Choromanski et al., ICLR 2021): softmax attention approximated
// with positive orthogonal random features, as one fused node with a hand-written backward
// (kernels/cpu/performer.hpp).
//
//   x' = x / E^(1/4)  (so that q'.k' = q.k / sqrt(E), softmax attention's default scale)
//   phi(x) = exp(w_r . x' - |x'|^2 / 2 - c) / sqrt(m),  r = 1..m,  W = features [m, E]
//   c: a stabiliser (the paper's max subtraction), the row max of w.x' - |x'|^2/2 for queries,
//   the max over all keys and features for keys: a constant per query row / per item, so with
//   eps = 0 it cancels in the ratio below; it is differentiated like any max, so the gradient
//   is exact for eps > 0 too.
//   non-causal: out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j) + eps)
//   causal:     the sums run over j <= i: chunks of C rows, within a chunk the masked products
//               tril(phi(Q_c) phi(K_c)^T) (C x C), across chunks the running state sum phi(k) v^T.
//   Backward (with Vz = [V | 1], NUM = numerators | denominators):
//     gNUM = [g / den | -(g . out) / den],  gFq = gNUM (Fk^T Vz)^T,  gKV = Fq^T gNUM,
//     gFk = Vz gKV^T,  gVz = Fk gKV  (causal: the same per chunk, with a forward scan for the
//     state before each chunk and a reverse scan for the gradient of the states after it);
//     through phi: gLg = gF * F (minus its sum at c's entry), gx = s4 gLg W - s4^2 x rowsum(gLg).
//
// E[phi(q) . phi(k)] = exp(q.k / sqrt(E)) for w ~ N(0, I) (the positive random features of the
// paper); orthogonal rows lower the variance. Time O(N (L + S) m (E + Ev)) (+ O(N L C m) causal),
// memory: saved for the backward (non-causal, when a gradient is tracked) the numerators and
// denominators and KV = Fk^T Vz, O(N (L + m) Ev); plus O((L + S) m) scratch per thread (a
// tensor, counted by memory_stats). The backward recomputes the features (and, causal, the
// chunk products): keeping them would cost (L + S) m per item, several times the output. Parallel over the flattened leading dims, one item per thread:
// bit-identical for any thread count.
#include "../core/parallel.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "elementwise.hpp"

namespace attn {
ATTN_API Tensor orthogonal_random_features(int64_t m, int64_t E, Generator& gen = default_generator(),
                                           DType dtype = kFloat32);
ATTN_API Tensor performer_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& features,
                                    bool causal = false, double eps = 1e-6, int64_t chunk = 0);
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cmath>
#include <vector>
#include "../kernels/cpu/performer.hpp"
#include "attention_checks.hpp"

namespace attn {

// m x E positive orthogonal random features (FAVOR+): blocks of E rows from Gaussian matrices
// orthogonalised by Gram-Schmidt, each row rescaled to the norm of an independent Gaussian
// vector of dimension E (so every row is marginally N(0, I)). Drawn from gen.
ATTN_API Tensor orthogonal_random_features(int64_t m, int64_t E, Generator& gen,
                                         DType dtype) {
  ATTN_CHECK(m > 0 && E > 0, "orthogonal_random_features: need m > 0 and E > 0, got ", m, " and ", E);
  std::vector<double> w(size_t(m * E));
  auto g = gen.lock();
  for (int64_t r0 = 0; r0 < m; r0 += E) {
    const int64_t rows = std::min(E, m - r0);
    std::vector<double> blk(size_t(E * E));
    for (double& x : blk) x = g.normal();
    for (int64_t r = 0; r < E; ++r) {  // modified Gram-Schmidt over the E rows of the block
      double* a = blk.data() + r * E;
      for (int64_t p = 0; p < r; ++p) {
        const double* b = blk.data() + p * E;
        double d = 0;
        for (int64_t e = 0; e < E; ++e) d += a[e] * b[e];
        for (int64_t e = 0; e < E; ++e) a[e] -= d * b[e];
      }
      double nrm = 0;
      for (int64_t e = 0; e < E; ++e) nrm += a[e] * a[e];
      nrm = std::sqrt(nrm);
      for (int64_t e = 0; e < E; ++e) a[e] /= nrm;
    }
    for (int64_t r = 0; r < rows; ++r) {
      double chi = 0;
      for (int64_t e = 0; e < E; ++e) {
        const double z = g.normal();
        chi += z * z;
      }
      chi = std::sqrt(chi);
      for (int64_t e = 0; e < E; ++e) w[size_t((r0 + r) * E + e)] = blk[size_t(r * E + e)] * chi;
    }
  }
  Tensor t = Tensor::from_vector(w, {m, E});
  return dtype == kFloat64 ? t : t.to(dtype);
}

// FAVOR+ attention. q [..., L, E], k [..., S, E], v [..., S, Ev], features [m, E] (same dtype, no gradient;
// see orthogonal_random_features). causal needs L == S; chunk: rows per causal chunk (0 = 64).
ATTN_API Tensor performer_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& features,
                                  bool causal, double eps, int64_t chunk) {
  const char* op = "performer_attention";
  detail::check_qkv(op, q, k, v, true);
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2);
  ATTN_CHECK(features.defined() && features.dim() == 2 && features.size(1) == E && features.size(0) > 0, op,
             ": features must be [m, E] with E = ", E, ", got ",
             features.defined() ? to_string(features.shape()) : std::string("undefined"));
  ATTN_CHECK(!causal || L == S, op, ": causal needs L == S, got q ", to_string(q.shape()), ", k ", to_string(k.shape()));
  ATTN_CHECK(eps >= 0 && chunk >= 0, op, ": eps and chunk must be >= 0, got ", eps, " and ", chunk);
  detail::check_same_dtype(q, k, op);
  detail::check_same_dtype(q, v, op);
  detail::check_same_dtype(q, features, op);
  const int64_t Ev = v.size(-1), N = q.numel() / (L * E);
  const kernels::cpu::FavorShape fs{L, S, E, Ev, features.size(0), causal, std::min<int64_t>(chunk > 0 ? chunk : 64, L)};
  Shape os = q.shape();
  os.back() = Ev;
  Tensor out = Tensor::empty(os, q.dtype());
  const bool track = is_grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  const int64_t saved_size = kernels::cpu::favor_saved_size(fs);
  const Tensor saved = track && saved_size > 0 ? Tensor::empty({N, saved_size}, q.dtype()) : Tensor();
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    const scalar_t *Q = q.data<scalar_t>(), *K = k.data<scalar_t>(), *V = v.data<scalar_t>(),
                   *Wf = features.data<scalar_t>();
    scalar_t *O = out.data<scalar_t>(), *SV = saved.defined() ? saved.data<scalar_t>() : nullptr;
    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
      Tensor buf = Tensor::empty({kernels::cpu::favor_scratch_size(fs)}, q.dtype()), idx = Tensor::empty({L + 1}, kInt64);
      auto ws = kernels::cpu::favor_bind(fs, buf.data<scalar_t>(), idx.data<int64_t>());
      for (int64_t n = n0; n < n1; ++n)
        kernels::cpu::favor_forward<scalar_t>(fs, Q + n * L * E, K + n * S * E, V + n * S * Ev, Wf, scalar_t(eps),
                                              O + n * L * Ev, ws, SV ? SV + n * saved_size : nullptr);
    });
  });
  return record(causal ? "performer_attention_causal" : "performer_attention", out, {q, k, v},
                [q, k, v, features, fs, eps, N, saved, saved_size](const std::vector<Tensor>& g) {
                  const int64_t L = fs.L, S = fs.S, E = fs.E, Ev = fs.Ev;
                  Tensor gq = Tensor::empty(q.shape(), q.dtype()), gk = Tensor::empty(k.shape(), q.dtype()),
                         gv = Tensor::empty(v.shape(), q.dtype());
                  ATTN_DISPATCH_FLOATING(q.dtype(), "performer_attention_backward", [&] {
                    const scalar_t *Q = q.data<scalar_t>(), *K = k.data<scalar_t>(), *V = v.data<scalar_t>(),
                                   *Wf = features.data<scalar_t>(), *G = g[0].data<scalar_t>(),
                                   *SV = saved.defined() ? saved.data<scalar_t>() : nullptr;
                    scalar_t *GQ = gq.data<scalar_t>(), *GK = gk.data<scalar_t>(), *GV = gv.data<scalar_t>();
                    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
                      Tensor buf = Tensor::empty({kernels::cpu::favor_scratch_size(fs)}, q.dtype()),
                             idx = Tensor::empty({L + 1}, kInt64);
                      auto ws = kernels::cpu::favor_bind(fs, buf.data<scalar_t>(), idx.data<int64_t>());
                      for (int64_t n = n0; n < n1; ++n)
                        kernels::cpu::favor_backward<scalar_t>(fs, Q + n * L * E, K + n * S * E, V + n * S * Ev, Wf,
                                                               scalar_t(eps), G + n * L * Ev, GQ + n * L * E,
                                                               GK + n * S * E, GV + n * S * Ev, ws,
                                                               SV ? SV + n * saved_size : nullptr);
                    });
                  });
                  return std::vector<Tensor>{gq, gk, gv};
                }, {q, k, v, features});
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
