#pragma once
// Performer / FAVOR+ attention (Choromanski et al., ICLR 2021): softmax attention approximated
// with positive orthogonal random features, composed from differentiable primitives (the
// products are GEMMs; autograd gives the backward).
//
//   x' = x / E^(1/4)  (so that q'.k' = q.k / sqrt(E), softmax attention's default scale)
//   phi(x) = exp(w_r . x' - |x'|^2 / 2 - c) / sqrt(m),  r = 1..m,  W = features [m, E]
//   c: a stabiliser (the paper's max subtraction), the row max of w.x' - |x'|^2/2 for queries,
//   the max over all keys and features for keys: a constant per query row / per item, so with
//   eps = 0 it cancels in the ratio below; it is differentiated like any max, so the gradient
//   is exact for eps > 0 too.
//   non-causal: out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j) + eps)
//   causal:     the sums run over j <= i: chunks of C rows, within a chunk the masked products
//               phi(Q_c) phi(K_c)^T (C x C), across chunks the running state sum phi(k) v^T
//               before the chunk (an exclusive prefix sum over chunks).
//
// E[phi(q) . phi(k)] = exp(q.k / sqrt(E)) for w ~ N(0, I) (the positive random features of the
// paper); orthogonal rows lower the variance. Time O(N L m (E + Ev)), plus O(N L C m + N (L/C)^2 m Ev)
// when causal; memory O(N L m): no L x S buffer. Results depend only on the inputs and the
// features, so they repeat for any thread count.
#include <algorithm>
#include <cmath>
#include <vector>
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"
#include "reduce.hpp"
#include "shape.hpp"

namespace attn {

// m x E positive orthogonal random features (FAVOR+): blocks of E rows from Gaussian matrices
// orthogonalised by Gram-Schmidt, each row rescaled to the norm of an independent Gaussian
// vector of dimension E (so every row is marginally N(0, I)). Drawn from gen.
inline Tensor orthogonal_random_features(int64_t m, int64_t E, Generator& gen = default_generator(),
                                         DType dtype = kFloat32) {
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

namespace detail {
// [n, n] of ones on and below the diagonal (strict: below only), zeros elsewhere.
inline Tensor tril_ones(int64_t n, bool strict, DType dtype) {
  Tensor t = Tensor::zeros({n, n}, kFloat64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < (strict ? i : i + 1); ++j) p[i * n + j] = 1.0;
  return dtype == kFloat64 ? t : t.to(dtype);
}

// phi(x) for x [..., L, E], features [m, E] -> [..., L, m]; per_row: the stabiliser is per row
// (queries), else one per item over all rows and features (keys).
inline Tensor favor_features(const Tensor& x, const Tensor& features, bool per_row) {
  const double m = double(features.size(0)), E = double(x.size(-1));
  Tensor xs = mul(x, std::pow(E, -0.25));
  Tensor logits = sub(matmul(xs, transpose(features, 0, 1)), mul(sum(mul(xs, xs), -1, true), 0.5));
  Tensor c = max(logits, -1, true).first;
  if (!per_row) c = max(c, -2, true).first;
  return mul(exp(sub(logits, c)), 1.0 / std::sqrt(m));
}
}  // namespace detail

// FAVOR+ attention. q [..., L, E], k [..., S, E], v [..., S, Ev], features [m, E] (same dtype;
// see orthogonal_random_features). causal needs L == S; chunk: rows per causal chunk (0 = 64).
inline Tensor performer_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& features,
                                  bool causal = false, double eps = 1e-6, int64_t chunk = 0) {
  const char* op = "performer_attention";
  ATTN_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": expected q [..., L, E], k [..., S, E], v [..., S, Ev] with equal ranks, got ", to_string(q.shape()),
             ", ", to_string(k.shape()), ", ", to_string(v.shape()));
  for (int64_t d = 0; d < q.dim() - 2; ++d)
    ATTN_CHECK(q.size(d) == k.size(d) && q.size(d) == v.size(d), op, ": leading dims differ: q ",
               to_string(q.shape()), ", k ", to_string(k.shape()), ", v ", to_string(v.shape()));
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2);
  ATTN_CHECK(k.size(-1) == E && v.size(-2) == S && L > 0 && S > 0, op, ": q ", to_string(q.shape()), ", k ",
             to_string(k.shape()), ", v ", to_string(v.shape()), " (need k [..., S, E], v [..., S, Ev], L, S > 0)");
  ATTN_CHECK(features.defined() && features.dim() == 2 && features.size(1) == E && features.size(0) > 0, op,
             ": features must be [m, E] with E = ", E, ", got ",
             features.defined() ? to_string(features.shape()) : std::string("undefined"));
  ATTN_CHECK(!causal || L == S, op, ": causal needs L == S, got q ", to_string(q.shape()), ", k ", to_string(k.shape()));
  ATTN_CHECK(eps >= 0 && chunk >= 0, op, ": eps and chunk must be >= 0, got ", eps, " and ", chunk);
  detail::check_same_dtype(q, k, op);
  detail::check_same_dtype(q, v, op);
  detail::check_same_dtype(q, features, op);
  const Tensor fq = detail::favor_features(q, features, true), fk = detail::favor_features(k, features, false);
  if (!causal) {
    const Tensor kv = matmul(transpose(fk, -2, -1), v);           // [..., m, Ev]
    const Tensor z = unsqueeze(sum(fk, -2), -1);                   // [..., m, 1]
    return div(matmul(fq, kv), add(matmul(fq, z), eps));
  }
  // Causal, in chunks of C rows (the last one padded with zero rows, which add nothing).
  const int64_t C = std::min<int64_t>(chunk > 0 ? chunk : 64, L), nc = (L + C - 1) / C, Lp = nc * C;
  const int64_t m = features.size(0), Ev = v.size(-1);
  Shape lead(q.shape().begin(), q.shape().end() - 2);
  auto pad_rows = [&](const Tensor& x) {
    if (Lp == L) return x;
    Shape ps = x.shape();
    ps[ps.size() - 2] = Lp - L;
    return cat({x, Tensor::zeros(ps, x.dtype())}, -2);
  };
  auto chunked = [&](const Tensor& x, int64_t w) {  // [..., Lp, w] -> [..., nc, C, w]
    Shape s = lead;
    s.insert(s.end(), {nc, C, w});
    return reshape(pad_rows(x), s);
  };
  Shape ones_shape = lead;
  ones_shape.insert(ones_shape.end(), {L, 1});
  // v with a column of ones: the same products then give the numerator and the denominator.
  const Tensor Qc = chunked(fq, m), Kc = chunked(fk, m),
               Vz = chunked(cat({v, Tensor::ones(ones_shape, q.dtype())}, -1), Ev + 1);  // [..., nc, C, Ev + 1]
  const Tensor intra = mul(matmul(Qc, transpose(Kc, -2, -1)), detail::tril_ones(C, false, q.dtype()));  // [..., nc, C, C]
  const Tensor state = matmul(transpose(Kc, -2, -1), Vz);                           // [..., nc, m, Ev + 1]
  Shape flat = lead;
  flat.insert(flat.end(), {nc, m * (Ev + 1)});
  Shape back = lead;
  back.insert(back.end(), {nc, m, Ev + 1});
  const Tensor before = reshape(matmul(detail::tril_ones(nc, true, q.dtype()), reshape(state, flat)), back);  // exclusive prefix
  const Tensor nd = add(matmul(intra, Vz), matmul(Qc, before));                       // [..., nc, C, Ev + 1]
  Shape os = lead;
  os.insert(os.end(), {Lp, Ev + 1});
  const Tensor ndr = narrow(reshape(nd, os), -2, 0, L);
  return div(narrow(ndr, -1, 0, Ev), add(narrow(ndr, -1, Ev, 1), eps));
}

}  // namespace attn
