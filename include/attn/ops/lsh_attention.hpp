#pragma once
// LSH attention (Reformer, Kitaev et al., ICLR 2020) as one fused node with a hand-written
// backward (kernels/cpu/lsh.hpp).
//
//   shared QK: queries are the rows x_i, keys their unit vectors k_j = x_j / |x_j|
//   each of n_hashes rounds r: angular LSH by a random rotation R_r [E, n_buckets / 2],
//       bucket_i = argmax([x_i R_r, -x_i R_r]);
//     the rows sorted by (bucket, position) and cut into chunks of chunk_size; a query attends
//     the keys of its chunk and of the previous chunk (chunk 0: the last one), never itself
//     unless nothing else is visible, never a later position when causal:
//       s_ij = scale x_i . k_j,  p = softmax(s),  o_ir = sum_j p_ij v_j,  lse_ir = logsumexp_j s_ij
//   rounds combined by their log-sum-exp: out_i = sum_r exp(lse_ir - logsumexp_r lse_ir) o_ir
//   (= one softmax over the union of the rounds' keys, a key counted once per round that finds it;
//   the paper's optional de-duplication of repeated keys is not done).
//
// The hashing and sorting are not differentiated (as in the paper). x [..., L, E], v [..., L, Ev],
// rotations [n_hashes, E, n_buckets / 2] shared by every batch item and head. Time
// O(N n_hashes L (chunk (E + Ev) + E n_buckets)), memory O(N n_hashes L (chunk + Ev)) saved plus
// O(L (E + Ev + n_buckets)) scratch per thread (tensors, counted by memory_stats): no L x L
// buffer. Parallel over the flattened leading dims, one item per thread: bit-identical for any
// thread count.
#include "../core/parallel.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "attention.hpp"
#include "elementwise.hpp"

namespace attn {
ATTN_API Tensor lsh_random_rotations(int64_t E, int64_t n_hashes, int64_t n_buckets,
                                     Generator& gen = default_generator(), DType dtype = kFloat32);
ATTN_API int64_t lsh_default_buckets(int64_t L, int64_t chunk_size);
ATTN_API Tensor lsh_attention(const Tensor& x, const Tensor& v, const Tensor& rotations, int64_t chunk_size = 64,
                              bool causal = false, double scale = kDefaultAttnScale);
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cmath>
#include <vector>
#include "../kernels/cpu/lsh.hpp"

namespace attn {

// Random rotations for LSH: [n_hashes, E, n_buckets / 2] standard normal, from gen.
ATTN_API Tensor lsh_random_rotations(int64_t E, int64_t n_hashes, int64_t n_buckets, Generator& gen,
                                   DType dtype) {
  ATTN_CHECK(E > 0 && n_hashes > 0 && n_buckets >= 2 && n_buckets % 2 == 0, "lsh_random_rotations: need E > 0, ",
             "n_hashes > 0 and an even n_buckets >= 2, got E = ", E, ", n_hashes = ", n_hashes, ", n_buckets = ",
             n_buckets);
  std::vector<double> r(size_t(n_hashes * E * (n_buckets / 2)));
  {
    auto g = gen.lock();
    for (double& x : r) x = g.normal();
  }
  Tensor t = Tensor::from_vector(r, {n_hashes, E, n_buckets / 2});
  return dtype == kFloat64 ? t : t.to(dtype);
}

// The bucket count Reformer uses for a length: about one chunk per bucket, even, at least 2.
ATTN_API int64_t lsh_default_buckets(int64_t L, int64_t chunk_size) {
  ATTN_CHECK(L > 0 && chunk_size > 0, "lsh_default_buckets: need L > 0 and chunk_size > 0, got ", L, " and ",
             chunk_size);
  const int64_t n = (L + chunk_size - 1) / chunk_size;
  return std::max<int64_t>(2, (n + 1) / 2 * 2);
}

// LSH self-attention with shared queries/keys x [..., L, E] and values v [..., L, Ev].
// scale NaN means 1/sqrt(E).
ATTN_API Tensor lsh_attention(const Tensor& x, const Tensor& v, const Tensor& rotations, int64_t chunk_size,
                            bool causal, double scale) {
  const char* op = "lsh_attention";
  ATTN_CHECK(x.dim() >= 2 && v.dim() == x.dim(), op, ": expected qk [..., L, E] and v [..., L, Ev] with equal ranks, got ",
             to_string(x.shape()), ", ", to_string(v.shape()));
  for (int64_t d = 0; d < x.dim() - 1; ++d)
    ATTN_CHECK(x.size(d) == v.size(d), op, ": qk ", to_string(x.shape()), " and v ", to_string(v.shape()),
               " differ before the last dim");
  const int64_t L = x.size(-2), E = x.size(-1), Ev = v.size(-1);
  ATTN_CHECK(L > 0 && E > 0, op, ": empty qk ", to_string(x.shape()));
  ATTN_CHECK(rotations.defined() && rotations.dim() == 3 && rotations.size(1) == E && rotations.size(0) > 0 &&
                 rotations.size(2) > 0,
             op, ": rotations must be [n_hashes, E, n_buckets / 2] with E = ", E, ", got ",
             rotations.defined() ? to_string(rotations.shape()) : std::string("undefined"));
  ATTN_CHECK(chunk_size > 0, op, ": chunk_size must be > 0, got ", chunk_size);
  detail::check_same_dtype(x, v, op);
  detail::check_same_dtype(x, rotations, op);
  const double sc = std::isnan(scale) ? 1.0 / std::sqrt(double(E)) : scale;
  const kernels::cpu::LshShape s{L, E, Ev, rotations.size(0), rotations.size(2), std::min(chunk_size, L), causal};
  const int64_t N = x.numel() / (L * E), W = s.width(), nh = s.n_hashes;
  Tensor out = Tensor::empty(v.shape(), x.dtype());
  Tensor perm = Tensor::empty({N, nh, L}, kInt64), P = Tensor::empty({N, nh, L, W}, x.dtype()),
         lse = Tensor::empty({N, nh, L}, x.dtype()), Or = Tensor::empty({N, nh, L, Ev}, x.dtype()),
         norms = Tensor::empty({N, L}, x.dtype());
  ATTN_DISPATCH_FLOATING(x.dtype(), op, [&] {
    const scalar_t *X = x.data<scalar_t>(), *V = v.data<scalar_t>(), *R = rotations.data<scalar_t>();
    scalar_t *O = out.data<scalar_t>(), *Pp = P.data<scalar_t>(), *Lp = lse.data<scalar_t>(),
             *Op = Or.data<scalar_t>(), *Nr = norms.data<scalar_t>();
    int64_t* pp = perm.data<int64_t>();
    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
      Tensor buf = Tensor::empty({kernels::cpu::lsh_scratch_size(s, false)}, x.dtype()),
             idx = Tensor::empty({kernels::cpu::lsh_index_size(s)}, kInt64);
      auto ws = kernels::cpu::lsh_bind(s, false, buf.data<scalar_t>(), idx.data<int64_t>());
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t i = 0; i < L; ++i) {  // |x_i|: the keys are k_i = x_i / |x_i| (0 for a zero row)
          const scalar_t* xi = X + (n * L + i) * E;
          Nr[n * L + i] = std::sqrt(kernels::cpu::dot_n(xi, xi, E));
        }
        kernels::cpu::lsh_forward<scalar_t>(s, X + n * L * E, Nr + n * L, V + n * L * Ev, R, scalar_t(sc),
                                            pp + n * nh * L, Pp + n * nh * L * W, Lp + n * nh * L,
                                            Op + n * nh * L * Ev, O + n * L * Ev, ws);
      }
    });
  });
  return record(causal ? "lsh_attention_causal" : "lsh_attention", out, {x, v},
                [x, v, s, sc, N, W, perm, P, lse, Or, norms, od = out.detach()](const std::vector<Tensor>& g) {
                  Tensor gx = Tensor::empty(x.shape(), x.dtype()), gv = Tensor::empty(v.shape(), x.dtype());
                  const int64_t L = s.L, E = s.E, Ev = s.Ev, nh = s.n_hashes;
                  ATTN_DISPATCH_FLOATING(x.dtype(), "lsh_attention_backward", [&] {
                    const scalar_t *X = x.data<scalar_t>(), *V = v.data<scalar_t>(), *Pp = P.data<scalar_t>(),
                                   *Lp = lse.data<scalar_t>(), *Op = Or.data<scalar_t>(),
                                   *Nr = norms.data<scalar_t>(), *O = od.data<scalar_t>(), *G = g[0].data<scalar_t>();
                    const int64_t* pp = perm.data<int64_t>();
                    scalar_t *GX = gx.data<scalar_t>(), *GV = gv.data<scalar_t>();
                    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
                      Tensor buf = Tensor::empty({kernels::cpu::lsh_scratch_size(s, true)}, x.dtype()),
                             idx = Tensor::empty({kernels::cpu::lsh_index_size(s)}, kInt64);
                      auto ws = kernels::cpu::lsh_bind(s, true, buf.data<scalar_t>(), idx.data<int64_t>());
                      for (int64_t n = n0; n < n1; ++n)
                        kernels::cpu::lsh_backward<scalar_t>(s, X + n * L * E, Nr + n * L,
                                                             V + n * L * Ev, pp + n * nh * L, Pp + n * nh * L * W,
                                                             Lp + n * nh * L, Op + n * nh * L * Ev, O + n * L * Ev,
                                                             G + n * L * Ev, scalar_t(sc), GX + n * L * E,
                                                             GV + n * L * Ev, ws);
                    });
                  });
                  return std::vector<Tensor>{gx, gv};
                }, {x, v, out});
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
