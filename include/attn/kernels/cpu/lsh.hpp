#pragma once
// Raw loops of LSH attention (Reformer, Kitaev et al., ICLR 2020) for one batch item; the op,
// its checks and its autograd node are in ops/lsh_attention.hpp. Formulas there.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "gemm.hpp"

namespace attn::kernels::cpu {

struct LshShape {
  int64_t L, E, Ev, n_hashes, half_buckets, chunk;
  bool causal;
  int64_t chunks() const { return (L + chunk - 1) / chunk; }
  int64_t width() const { return chunks() > 1 ? 2 * chunk : chunk; }  // keys per query row, at most
};

// Keys of sorted chunk a: its own rows, then (when there are >= 2 chunks) the previous chunk's,
// with chunk 0 looking back at the last one. Fills keys (positions in the sequence).
inline int64_t lsh_chunk_keys(const LshShape& s, const int64_t* perm, int64_t a, int64_t* keys) {
  const int64_t nc = s.chunks();
  auto span = [&](int64_t c, int64_t* out) {
    const int64_t b = c * s.chunk, e = std::min(s.L, b + s.chunk);
    std::copy(perm + b, perm + e, out);
    return e - b;
  };
  int64_t n = span(a, keys);
  if (nc > 1) n += span((a + nc - 1) % nc, keys + n);
  return n;
}

// Bucket of each row for one round (argmax over [xR, -xR], the first on ties) and the rows
// sorted by (bucket, position): perm [L].
template <class T>
void lsh_hash_sort(const LshShape& s, const T* X, const T* R, int64_t* perm, std::vector<T>& rot,
                   std::vector<int64_t>& bucket) {
  const int64_t nb2 = s.half_buckets;
  rot.resize(size_t(s.L * nb2));
  gemm_serial<T>(false, false, s.L, nb2, s.E, T(1), X, s.E, R, nb2, T(0), rot.data(), nb2);
  bucket.resize(size_t(s.L));
  for (int64_t i = 0; i < s.L; ++i) {
    const T* r = rot.data() + i * nb2;
    int64_t best = 0;
    T bv = r[0];
    for (int64_t b = 1; b < 2 * nb2; ++b) {
      const T x = b < nb2 ? r[b] : -r[b - nb2];
      if (x > bv) bv = x, best = b;
    }
    bucket[size_t(i)] = best;
  }
  // Counting sort by bucket; positions stay ascending within a bucket.
  std::vector<int64_t> start(size_t(2 * nb2 + 1), 0);
  for (int64_t i = 0; i < s.L; ++i) ++start[size_t(bucket[size_t(i)] + 1)];
  for (int64_t b = 0; b < 2 * nb2; ++b) start[size_t(b + 1)] += start[size_t(b)];
  for (int64_t i = 0; i < s.L; ++i) perm[start[size_t(bucket[size_t(i)])]++] = i;
}

// Whether query i may attend key j inside its chunk pair: never itself unless nothing else
// is visible (decided by the caller), never a later position when causal.
inline bool lsh_visible(const LshShape& s, int64_t i, int64_t j) { return j != i && (!s.causal || j <= i); }

// Forward of one item. X [L, E] the shared query/key rows, Kn [L, E] the unit-norm keys,
// R [n_hashes, E, half_buckets]. Writes per round r: perm [L], P [L, width] (row t = the query
// at sorted slot t), lse [L] and Or [L, Ev] (by position); then O [L, Ev].
template <class T>
void lsh_forward(const LshShape& s, const T* X, const T* Kn, const T* V, const T* R, T scale, int64_t* perm, T* P,
                 T* lse, T* Or, T* O) {
  const int64_t W = s.width(), nc = s.chunks(), E = s.E, Ev = s.Ev, L = s.L;
  std::vector<T> rot, qc(size_t(s.chunk * E)), kc(size_t(W * E)), vc(size_t(W * Ev)), oc(size_t(s.chunk * Ev));
  std::vector<int64_t> bucket, keys(static_cast<size_t>(W));
  for (int64_t r = 0; r < s.n_hashes; ++r) {
    int64_t* pr = perm + r * L;
    T* Pr = P + r * L * W;
    T* lr = lse + r * L;
    T* orr = Or + r * L * Ev;
    lsh_hash_sort<T>(s, X, R + r * E * s.half_buckets, pr, rot, bucket);
    for (int64_t a = 0; a < nc; ++a) {
      const int64_t t0 = a * s.chunk, cq = std::min(L, t0 + s.chunk) - t0;
      const int64_t nk = lsh_chunk_keys(s, pr, a, keys.data());
      for (int64_t t = 0; t < cq; ++t) std::copy(X + pr[t0 + t] * E, X + pr[t0 + t] * E + E, qc.data() + t * E);
      for (int64_t u = 0; u < nk; ++u) {
        std::copy(Kn + keys[size_t(u)] * E, Kn + keys[size_t(u)] * E + E, kc.data() + u * E);
        std::copy(V + keys[size_t(u)] * Ev, V + keys[size_t(u)] * Ev + Ev, vc.data() + u * Ev);
      }
      T* Pa = Pr + t0 * W;  // [cq, W], the first nk columns used
      gemm_serial<T>(false, true, cq, nk, E, scale, qc.data(), E, kc.data(), E, T(0), Pa, W);
      for (int64_t t = 0; t < cq; ++t) {
        const int64_t i = pr[t0 + t];
        T* p = Pa + t * W;
        bool any = false;
        for (int64_t u = 0; u < nk; ++u) any = any || lsh_visible(s, i, keys[size_t(u)]);
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t u = 0; u < nk; ++u) {
          const int64_t j = keys[size_t(u)];
          const bool ok = any ? lsh_visible(s, i, j) : j == i;
          if (!ok) p[u] = -std::numeric_limits<T>::infinity();
          mx = std::max(mx, p[u]);
        }
        T den = 0;
        for (int64_t u = 0; u < nk; ++u) den += (p[u] = p[u] == -std::numeric_limits<T>::infinity() ? T(0) : std::exp(p[u] - mx));
        for (int64_t u = 0; u < nk; ++u) p[u] /= den;
        std::fill(p + nk, p + W, T(0));
        lr[i] = mx + std::log(den);
      }
      gemm_serial<T>(false, false, cq, Ev, nk, T(1), Pa, W, vc.data(), Ev, T(0), oc.data(), Ev);
      for (int64_t t = 0; t < cq; ++t) std::copy(oc.data() + t * Ev, oc.data() + t * Ev + Ev, orr + pr[t0 + t] * Ev);
    }
  }
  // Rounds combined by their log-sum-exp: out_i = sum_r exp(lse_ir - logsumexp_r lse_ir) o_ir.
  for (int64_t i = 0; i < L; ++i) {
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < s.n_hashes; ++r) mx = std::max(mx, lse[r * L + i]);
    T den = 0;
    for (int64_t r = 0; r < s.n_hashes; ++r) den += std::exp(lse[r * L + i] - mx);
    T* o = O + i * Ev;
    std::fill(o, o + Ev, T(0));
    for (int64_t r = 0; r < s.n_hashes; ++r) {
      const T w = std::exp(lse[r * L + i] - mx) / den;
      const T* orow = Or + (r * L + i) * Ev;
      for (int64_t d = 0; d < Ev; ++d) o[d] += w * orow[d];
    }
  }
}

// Backward of one item. G = dL/dout [L, Ev]; O the output. Writes gX [L, E], gV [L, Ev].
//   w_ir = exp(lse_ir - logsumexp_r lse_ir):  go_ir = w_ir g_i,  glse_ir = w_ir g_i . (o_ir - out_i)
//   per round, row i, keys j:  gp_ij = go_ir . v_j,  gs_ij = p_ij (gp_ij - go_ir . o_ir + glse_ir)
//   gx_i += scale sum_j gs_ij k_j,  gk_j += scale sum_i gs_ij x_i,  gv_j += sum_i p_ij go_ir
//   k_j = x_j / |x_j|:  gx_j += (gk_j - k_j (k_j . gk_j)) / |x_j|
template <class T>
void lsh_backward(const LshShape& s, const T* X, const T* Kn, const T* norms, const T* V, const int64_t* perm,
                  const T* P, const T* lse, const T* Or, const T* O, const T* G, T scale, T* gX, T* gV) {
  const int64_t W = s.width(), nc = s.chunks(), E = s.E, Ev = s.Ev, L = s.L, nh = s.n_hashes;
  std::vector<T> gKn(size_t(L * E), T(0)), go(size_t(nh * L * Ev)), glse(size_t(nh * L));
  std::fill(gX, gX + L * E, T(0));
  std::fill(gV, gV + L * Ev, T(0));
  for (int64_t i = 0; i < L; ++i) {
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < nh; ++r) mx = std::max(mx, lse[r * L + i]);
    T den = 0;
    for (int64_t r = 0; r < nh; ++r) den += std::exp(lse[r * L + i] - mx);
    const T* g = G + i * Ev;
    T g_out = 0;
    for (int64_t d = 0; d < Ev; ++d) g_out += g[d] * O[i * Ev + d];
    for (int64_t r = 0; r < nh; ++r) {
      const T w = std::exp(lse[r * L + i] - mx) / den;
      const T* orow = Or + (r * L + i) * Ev;
      T g_or = 0;
      for (int64_t d = 0; d < Ev; ++d) {
        go[size_t((r * L + i) * Ev + d)] = w * g[d];
        g_or += g[d] * orow[d];
      }
      glse[size_t(r * L + i)] = w * (g_or - g_out);
    }
  }
  std::vector<T> qc(size_t(s.chunk * E)), kc(size_t(W * E)), vc(size_t(W * Ev)), gc(size_t(s.chunk * Ev)),
      gs(size_t(s.chunk * W)), gq(size_t(s.chunk * E)), gk(size_t(W * E)), gv(size_t(W * Ev));
  std::vector<int64_t> keys(static_cast<size_t>(W));
  for (int64_t r = 0; r < nh; ++r) {
    const int64_t* pr = perm + r * L;
    const T* Pr = P + r * L * W;
    for (int64_t a = 0; a < nc; ++a) {
      const int64_t t0 = a * s.chunk, cq = std::min(L, t0 + s.chunk) - t0;
      const int64_t nk = lsh_chunk_keys(s, pr, a, keys.data());
      for (int64_t t = 0; t < cq; ++t) {
        const int64_t i = pr[t0 + t];
        std::copy(X + i * E, X + i * E + E, qc.data() + t * E);
        std::copy(go.data() + (r * L + i) * Ev, go.data() + (r * L + i) * Ev + Ev, gc.data() + t * Ev);
      }
      for (int64_t u = 0; u < nk; ++u) {
        std::copy(Kn + keys[size_t(u)] * E, Kn + keys[size_t(u)] * E + E, kc.data() + u * E);
        std::copy(V + keys[size_t(u)] * Ev, V + keys[size_t(u)] * Ev + Ev, vc.data() + u * Ev);
      }
      const T* Pa = Pr + t0 * W;
      gemm_serial<T>(false, true, cq, nk, Ev, T(1), gc.data(), Ev, vc.data(), Ev, T(0), gs.data(), W);
      for (int64_t t = 0; t < cq; ++t) {
        const int64_t i = pr[t0 + t];
        const T* p = Pa + t * W;
        T* gr = gs.data() + t * W;
        T dot = 0;
        for (int64_t u = 0; u < nk; ++u) dot += p[u] * gr[u];
        const T gl = glse[size_t(r * L + i)];
        for (int64_t u = 0; u < nk; ++u) gr[u] = scale * p[u] * (gr[u] - dot + gl);
      }
      gemm_serial<T>(false, false, cq, E, nk, T(1), gs.data(), W, kc.data(), E, T(0), gq.data(), E);
      gemm_serial<T>(true, false, nk, E, cq, T(1), gs.data(), W, qc.data(), E, T(0), gk.data(), E);
      gemm_serial<T>(true, false, nk, Ev, cq, T(1), Pa, W, gc.data(), Ev, T(0), gv.data(), Ev);
      for (int64_t t = 0; t < cq; ++t) {
        T* dst = gX + pr[t0 + t] * E;
        for (int64_t e = 0; e < E; ++e) dst[e] += gq[size_t(t * E + e)];
      }
      for (int64_t u = 0; u < nk; ++u) {
        T* dk = gKn.data() + keys[size_t(u)] * E;
        T* dv = gV + keys[size_t(u)] * Ev;
        for (int64_t e = 0; e < E; ++e) dk[e] += gk[size_t(u * E + e)];
        for (int64_t d = 0; d < Ev; ++d) dv[d] += gv[size_t(u * Ev + d)];
      }
    }
  }
  for (int64_t j = 0; j < L; ++j) {
    if (norms[j] == T(0)) continue;  // k_j = 0: its gradient is taken as 0
    const T* k = Kn + j * E;
    const T* gkj = gKn.data() + j * E;
    T dot = 0;
    for (int64_t e = 0; e < E; ++e) dot += k[e] * gkj[e];
    for (int64_t e = 0; e < E; ++e) gX[j * E + e] += (gkj[e] - k[e] * dot) / norms[j];
  }
}

}  // namespace attn::kernels::cpu
