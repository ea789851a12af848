#pragma once
// ProbSparse self-attention (Informer, Zhou et al., AAAI 2021) as one fused node.
//
//   U = min(L_K, factor * ceil(ln L_K)) keys sampled at random for each query (samp [L_Q, U])
//   M_i = max_{j in samp(i)} q_i.k_j - mean_{j in samp(i)} q_i.k_j        (query sparsity measure)
//   the n_top = min(L_Q, factor * ceil(ln L_Q)) queries of largest M get full attention:
//       out_i = softmax_j(scale q_i.k_j) V                     (causal: over j <= i)
//   every other query gets the mean of V                       (causal: the mean of v_0..v_i)
//
// Differences from the official Informer code, on purpose: M's mean is over the U sampled keys
// (the code divides the sampled sum by L_K), and the causal lazy rows are the running mean of V
// (the code uses the running sum, whose scale grows with i). The sampling and the top-n choice
// are not differentiated (as in the paper); the gradients flow through the selected rows' softmax
// attention and the mean rows.
// q [..., L, E], k [..., S, E], v [..., S, Ev]; one sample [L, U] shared by every batch item and
// head (as in the official code). Time O(N (L U E + n_top S (E + Ev))), memory O(N (L Ev + n_top S)):
// no L x S buffer. Parallel over the flattened leading dims, one item per thread: bit-identical
// for any thread count.
#include "../core/parallel.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "attention.hpp"
#include "elementwise.hpp"

namespace attn {
ATTN_API int64_t probsparse_top_count(int64_t n, int64_t factor);
ATTN_API Tensor probsparse_sample_keys(int64_t L_Q, int64_t L_K, int64_t factor, Generator& gen = default_generator());
ATTN_API Tensor probsparse_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& sample_index,
                                     int64_t n_top, bool causal = false, double scale = kDefaultAttnScale);
ATTN_API Tensor probsparse_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t factor = 5,
                                     bool causal = false, Generator& gen = default_generator());
}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cmath>
#include <vector>
#include "../kernels/cpu/probsparse.hpp"
#include "attention_checks.hpp"

namespace attn {

// Informer's sample size for a length: factor * ceil(ln n), at most n and at least 1.
ATTN_API int64_t probsparse_top_count(int64_t n, int64_t factor) {
  ATTN_CHECK(n > 0 && factor > 0, "probsparse_top_count: need length > 0 and factor > 0, got ", n, " and ", factor);
  const int64_t c = factor * int64_t(std::ceil(std::log(double(n))));
  return std::max<int64_t>(1, std::min<int64_t>(n, c));
}

// For each of L_Q queries, U = probsparse_top_count(L_K, factor) key indices drawn uniformly with
// replacement from [0, L_K) (torch.randint, as Informer draws them): int64 [L_Q, U].
ATTN_API Tensor probsparse_sample_keys(int64_t L_Q, int64_t L_K, int64_t factor, Generator& gen) {
  ATTN_CHECK(L_Q > 0 && L_K > 0 && factor > 0, "probsparse_sample_keys: need L_Q, L_K, factor > 0, got ", L_Q, ", ",
             L_K, ", ", factor);
  const int64_t U = probsparse_top_count(L_K, factor);
  Tensor s = Tensor::empty({L_Q, U}, kInt64);
  int64_t* p = s.data<int64_t>();
  auto g = gen.lock();
  for (int64_t i = 0; i < L_Q * U; ++i) p[i] = int64_t(g.next_u64() % uint64_t(L_K));
  return s;
}

// ProbSparse attention with a given key sample [L, U] (int64, values in [0, S)) and n_top
// selected queries. scale NaN means 1/sqrt(E). causal needs L == S.
ATTN_API Tensor probsparse_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& sample_index,
                                   int64_t n_top, bool causal, double scale) {
  const char* op = "probsparse_attention";
  detail::check_qkv(op, q, k, v, true);
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2), Ev = v.size(-1);
  ATTN_CHECK(!causal || L == S, op, ": causal needs L == S, got q ", to_string(q.shape()), ", k ", to_string(k.shape()));
  ATTN_CHECK(sample_index.defined() && sample_index.dtype() == kInt64 && sample_index.dim() == 2 &&
                 sample_index.size(0) == L && sample_index.size(1) > 0,
             op, ": sample_index must be int64 [L, U] with L = ", L, " and U > 0, got ",
             sample_index.defined() ? to_string(sample_index.shape()) + " " + dtype_name(sample_index.dtype())
                                    : std::string("undefined"));
  ATTN_CHECK(n_top >= 1 && n_top <= L, op, ": n_top must be in [1, ", L, "], got ", n_top);
  detail::check_same_dtype(q, k, op);
  detail::check_same_dtype(q, v, op);
  const int64_t U = sample_index.size(1);
  {
    const int64_t* s = sample_index.data<int64_t>();
    for (int64_t i = 0; i < L * U; ++i)
      ATTN_CHECK(s[i] >= 0 && s[i] < S, op, ": sample_index ", to_string(sample_index.shape()), " holds ", s[i],
                 " at flat index ", i, ", outside [0, ", S, ")");
  }
  const double sc = std::isnan(scale) ? 1.0 / std::sqrt(double(E)) : scale;
  const int64_t N = q.numel() / (L * E);
  Shape os = q.shape();
  os.back() = Ev;
  Tensor out = Tensor::empty(os, q.dtype());
  Tensor top = Tensor::empty({N, n_top}, kInt64);
  Tensor P = Tensor::empty({N, n_top, S}, q.dtype());
  ATTN_DISPATCH_FLOATING(q.dtype(), op, [&] {
    const scalar_t *Q = q.data<scalar_t>(), *K = k.data<scalar_t>(), *V = v.data<scalar_t>();
    const int64_t* samp = sample_index.data<int64_t>();
    scalar_t *O = out.data<scalar_t>(), *Pp = P.data<scalar_t>();
    int64_t* tp = top.data<int64_t>();
    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
      std::vector<scalar_t> m, ws;
      for (int64_t n = n0; n < n1; ++n) {
        kernels::cpu::probsparse_select<scalar_t>(Q + n * L * E, K + n * S * E, samp, L, E, U, n_top, tp + n * n_top, m);
        kernels::cpu::probsparse_forward<scalar_t>(Q + n * L * E, K + n * S * E, V + n * S * Ev, tp + n * n_top, L, S,
                                                   E, Ev, n_top, causal, scalar_t(sc), O + n * L * Ev,
                                                   Pp + n * n_top * S, ws);
      }
    });
  });
  // Backward: kernels::cpu::probsparse_backward (formulas there).
  return record(causal ? "probsparse_attention_causal" : "probsparse_attention", out, {q, k, v},
                [q, k, v, top, P, causal, sc, N, L, S, E, Ev, n_top](const std::vector<Tensor>& g) {
                  Tensor gq = Tensor::empty(q.shape(), q.dtype()), gk = Tensor::empty(k.shape(), q.dtype()),
                         gv = Tensor::empty(v.shape(), q.dtype());
                  ATTN_DISPATCH_FLOATING(q.dtype(), "probsparse_attention_backward", [&] {
                    const scalar_t *Q = q.data<scalar_t>(), *K = k.data<scalar_t>(), *V = v.data<scalar_t>(),
                                   *Pp = P.data<scalar_t>(), *G = g[0].data<scalar_t>();
                    const int64_t* tp = top.data<int64_t>();
                    scalar_t *GQ = gq.data<scalar_t>(), *GK = gk.data<scalar_t>(), *GV = gv.data<scalar_t>();
                    parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
                      std::vector<scalar_t> ws;
                      for (int64_t n = n0; n < n1; ++n)
                        kernels::cpu::probsparse_backward<scalar_t>(
                            Q + n * L * E, K + n * S * E, V + n * S * Ev, tp + n * n_top, Pp + n * n_top * S,
                            G + n * L * Ev, L, S, E, Ev, n_top, causal, scalar_t(sc), GQ + n * L * E, GK + n * S * E,
                            GV + n * S * Ev, ws);
                    });
                  });
                  return std::vector<Tensor>{gq, gk, gv};
                }, {q, k, v});
}

// The same, drawing the key sample from gen and taking n_top = probsparse_top_count(L, factor).
ATTN_API Tensor probsparse_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t factor,
                                   bool causal, Generator& gen) {
  ATTN_CHECK(q.dim() >= 2 && k.dim() >= 2, "probsparse_attention: expected q [..., L, E] and k [..., S, E], got ",
             to_string(q.shape()), ", ", to_string(k.shape()));
  ATTN_CHECK(factor > 0, "probsparse_attention: factor must be > 0, got ", factor);
  const int64_t L = q.size(-2), S = k.size(-2);
  ATTN_CHECK(L > 0 && S > 0, "probsparse_attention: empty q ", to_string(q.shape()), " or k ", to_string(k.shape()));
  return probsparse_attention(q, k, v, probsparse_sample_keys(L, S, factor, gen), probsparse_top_count(L, factor),
                              causal);
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
