#pragma once
// Raw loops of LSH attention (Reformer, Kitaev et al., ICLR 2020) for one batch item; the op,
// its checks and its autograd node are in ops/lsh_attention.hpp. Formulas there.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include "gemm.hpp"
#include "vmath.hpp"

namespace attn::kernels::cpu {

struct LshShape {
  int64_t L, E, Ev, n_hashes, half_buckets, chunk;
  bool causal;
  int64_t chunks() const { return (L + chunk - 1) / chunk; }
  int64_t width() const { return chunks() > 1 ? 2 * chunk : chunk; }  // keys per query row, at most
};

// Scratch of one item, reused across items by a thread: views into caller-owned blocks of
// lsh_scratch_size(s, backward) elements of T and lsh_index_size(s) indices (the op allocates them as
// tensors, so memory_stats counts them and the block cache reuses them). Per round the rows are
// gathered once in sorted order (xs, ks, vs; the backward also gos), so that every chunk and the
// chunk before it are contiguous blocks the products read in place.
template <class T>
struct LshScratch {
  T *xs, *ks, *vs, *rot, *oc;                // forward and backward
  T *gos, *gxs, *gks, *gvs, *wr, *gl, *gs;  // backward only
  int64_t *bucket, *start;
};
inline int64_t lsh_scratch_size(const LshShape& s, bool backward) {
  const int64_t L = s.L, E = s.E, Ev = s.Ev;
  return 2 * L * E + L * Ev + L * s.half_buckets + s.chunk * Ev +
         (backward ? 3 * L * E + 2 * L * Ev + 2 * s.n_hashes * L + s.chunk * s.width() : 0);
}
inline int64_t lsh_index_size(const LshShape& s) { return s.L + 2 * s.half_buckets + 1; }
template <class T>
LshScratch<T> lsh_bind(const LshShape& s, bool backward, T* p, int64_t* idx) {
  const int64_t L = s.L, E = s.E, Ev = s.Ev;
  LshScratch<T> w{};
  auto take = [&p](int64_t n) { T* r = p; p += n; return r; };
  w.xs = take(L * E), w.ks = take(L * E), w.vs = take(L * Ev), w.rot = take(L * s.half_buckets), w.oc = take(s.chunk * Ev);
  if (backward) {
    w.gos = take(L * Ev), w.gxs = take(L * E), w.gks = take(L * E), w.gvs = take(L * Ev);
    w.wr = take(s.n_hashes * L), w.gl = take(s.n_hashes * L), w.gs = take(s.chunk * s.width());
  }
  w.bucket = idx, w.start = idx + L;
  return w;
}

// Bucket of each row for one round (argmax over [xR, -xR], the first on ties) and the rows
// sorted by (bucket, position): perm [L].
template <class T>
void lsh_hash_sort(const LshShape& s, const T* X, const T* R, int64_t* perm, LshScratch<T>& ws) {
  const int64_t nb2 = s.half_buckets;
  gemm_serial<T>(false, false, s.L, nb2, s.E, T(1), X, s.E, R, nb2, T(0), ws.rot, nb2);
  for (int64_t i = 0; i < s.L; ++i) {
    const T* r = ws.rot + i * nb2;
    int64_t best = 0;
    T bv = r[0];
    for (int64_t b = 1; b < 2 * nb2; ++b) {
      const T x = b < nb2 ? r[b] : -r[b - nb2];
      if (x > bv) bv = x, best = b;
    }
    ws.bucket[i] = best;
  }
  // Counting sort by bucket; positions stay ascending within a bucket.
  int64_t* start = ws.start;
  std::fill(start, start + 2 * nb2 + 1, int64_t(0));
  for (int64_t i = 0; i < s.L; ++i) ++start[ws.bucket[i] + 1];
  for (int64_t b = 0; b < 2 * nb2; ++b) start[b + 1] += start[b];
  for (int64_t i = 0; i < s.L; ++i) perm[start[ws.bucket[i]]++] = i;
}

// xs row t = X row perm[t] and ks row t = the unit key of that row (x / |x|, 0 for a zero row),
// for t < L.
template <class T>
void lsh_gather_rows(const T* X, const T* norms, const int64_t* perm, int64_t L, int64_t E, T* xs, T* ks) {
  for (int64_t t = 0; t < L; ++t) {
    const T *x = X + perm[t] * E, nrm = norms[perm[t]];
    T *xd = xs + t * E, *kd = ks + t * E;
    for (int64_t e = 0; e < E; ++e) xd[e] = x[e];
    for (int64_t e = 0; e < E; ++e) kd[e] = nrm > 0 ? x[e] / nrm : T(0);
  }
}

// dst row t = src row perm[t] (rows of n elements), for t < L.
template <class T>
void lsh_gather(const T* src, const int64_t* perm, int64_t L, int64_t n, T* dst) {
  for (int64_t t = 0; t < L; ++t) std::copy(src + perm[t] * n, src + perm[t] * n + n, dst + t * n);
}
// dst row perm[t] += src row t.
template <class T>
void lsh_scatter_add(const T* src, const int64_t* perm, int64_t L, int64_t n, T* dst) {
  for (int64_t t = 0; t < L; ++t) {
    T* d = dst + perm[t] * n;
    const T* x = src + t * n;
    for (int64_t e = 0; e < n; ++e) d[e] += x[e];
  }
}

// The chunk pair of sorted chunk a: its own slots [t0, t0 + cq), then (when there are >= 2
// chunks) the previous chunk's [tb, tb + cb), chunk 0 looking back at the last one. Key column u
// of a query row is slot t0 + u for u < cq, tb + u - cq after; a query at slot t0 + t is key t.
struct LshPair {
  int64_t t0, cq, tb, cb;
  int64_t keys() const { return cq + cb; }
};
inline LshPair lsh_pair(const LshShape& s, int64_t a) {
  const int64_t nc = s.chunks(), b = (a + nc - 1) % nc;
  LshPair c{a * s.chunk, std::min(s.L, (a + 1) * s.chunk) - a * s.chunk, 0, 0};
  if (nc > 1) c.tb = b * s.chunk, c.cb = std::min(s.L, (b + 1) * s.chunk) - c.tb;
  return c;
}

// C [cq, *] (= or +=) A [cq or keys, *] times the pair's two blocks of a sorted matrix: the
// products of the chunk pair as two in-place GEMMs (own block, previous block).
//   scores:  C[:, u] = alpha A_a . B_u                  (tb: B is keys x n, C ldc = width)
//   values:  C = P[:, :cq] B_own + P[:, cq:] B_prev      (B rows of n)
template <class T>
void lsh_pair_scores(const LshPair& c, int64_t n, T alpha, const T* A, const T* B, T* C, int64_t ldc) {
  gemm_serial<T>(false, true, c.cq, c.cq, n, alpha, A, n, B + c.t0 * n, n, T(0), C, ldc);
  if (c.cb > 0) gemm_serial<T>(false, true, c.cq, c.cb, n, alpha, A, n, B + c.tb * n, n, T(0), C + c.cq, ldc);
}
template <class T>
void lsh_pair_values(const LshPair& c, int64_t n, const T* P, int64_t ldp, const T* B, T* C) {
  gemm_serial<T>(false, false, c.cq, n, c.cq, T(1), P, ldp, B + c.t0 * n, n, T(0), C, n);
  if (c.cb > 0) gemm_serial<T>(false, false, c.cq, n, c.cb, T(1), P + c.cq, ldp, B + c.tb * n, n, T(1), C, n);
}
// The transposed products: D[own block] += P[:, :cq]^T A, D[previous block] += P[:, cq:]^T A.
template <class T>
void lsh_pair_accumulate(const LshPair& c, int64_t n, const T* P, int64_t ldp, const T* A, T* D) {
  gemm_serial<T>(true, false, c.cq, n, c.cq, T(1), P, ldp, A, n, T(1), D + c.t0 * n, n);
  if (c.cb > 0) gemm_serial<T>(true, false, c.cb, n, c.cq, T(1), P + c.cq, ldp, A, n, T(1), D + c.tb * n, n);
}

// Forward of one item. X [L, E] the shared query/key rows, norms [L] their norms,
// R [n_hashes, E, half_buckets]. Writes per round r: perm [L], P [L, width] (row t = the query
// at sorted slot t), lse [L] and Or [L, Ev] (by position); then O [L, Ev].
template <class T>
void lsh_forward(const LshShape& s, const T* X, const T* norms, const T* V, const T* R, T scale, int64_t* perm, T* P,
                 T* lse, T* Or, T* O, LshScratch<T>& ws) {
  const int64_t W = s.width(), nc = s.chunks(), E = s.E, Ev = s.Ev, L = s.L;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < s.n_hashes; ++r) {
    int64_t* pr = perm + r * L;
    T* lr = lse + r * L;
    lsh_hash_sort<T>(s, X, R + r * E * s.half_buckets, pr, ws);
    lsh_gather_rows(X, norms, pr, L, E, ws.xs, ws.ks);
    lsh_gather(V, pr, L, Ev, ws.vs);
    for (int64_t a = 0; a < nc; ++a) {
      const LshPair c = lsh_pair(s, a);
      const int64_t nk = c.keys();
      T* Pa = P + (r * L + c.t0) * W;  // [cq, W], the first nk columns used
      lsh_pair_scores(c, E, scale, ws.xs + c.t0 * E, ws.ks, Pa, W);
      for (int64_t t = 0; t < c.cq; ++t) {
        const int64_t i = pr[c.t0 + t];
        T* p = Pa + t * W;
        // never itself (key t) unless nothing else is visible, never a later position when causal
        const T self = p[t];
        int64_t visible = nk - 1;
        p[t] = kNegInf;
        if (s.causal)
          for (int64_t u = 0; u < nk; ++u)
            if (u != t && pr[u < c.cq ? c.t0 + u : c.tb + u - c.cq] > i) p[u] = kNegInf, --visible;
        std::fill(p + nk, p + W, T(0));
        if (visible == 0) {
          std::fill(p, p + nk, T(0));
          p[t] = T(1);
          lr[i] = self;
          continue;
        }
        lr[i] = softmax_n(p, nk);  // masked entries: exp(-inf) = 0
      }
      lsh_pair_values(c, Ev, Pa, W, ws.vs, ws.oc);
      for (int64_t t = 0; t < c.cq; ++t)
        std::copy(ws.oc + t * Ev, ws.oc + (t + 1) * Ev, Or + (r * L + pr[c.t0 + t]) * Ev);
    }
  }
  // Rounds combined by their log-sum-exp: out_i = sum_r exp(lse_ir - logsumexp_r lse_ir) o_ir.
  for (int64_t i = 0; i < L; ++i) {
    T mx = kNegInf;
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
// Each round works in sorted order (gathered rows, gradients accumulated by slot) and adds its
// gradients back by position at its end.
template <class T>
void lsh_backward(const LshShape& s, const T* X, const T* norms, const T* V, const int64_t* perm,
                  const T* P, const T* lse, const T* Or, const T* O, const T* G, T scale, T* gX, T* gV,
                  LshScratch<T>& ws) {
  const int64_t W = s.width(), nc = s.chunks(), E = s.E, Ev = s.Ev, L = s.L, nh = s.n_hashes;
  T* gs = ws.gs;
  std::fill(gX, gX + L * E, T(0));
  std::fill(gV, gV + L * Ev, T(0));
  for (int64_t i = 0; i < L; ++i) {  // w_ir and glse_ir
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < nh; ++r) mx = std::max(mx, lse[r * L + i]);
    T den = 0;
    for (int64_t r = 0; r < nh; ++r) den += std::exp(lse[r * L + i] - mx);
    const T* g = G + i * Ev;
    const T g_out = dot_n(g, O + i * Ev, Ev);
    for (int64_t r = 0; r < nh; ++r) {
      const T w = std::exp(lse[r * L + i] - mx) / den;
      ws.wr[r * L + i] = w;
      ws.gl[r * L + i] = w * (dot_n(g, Or + (r * L + i) * Ev, Ev) - g_out);
    }
  }
  for (int64_t r = 0; r < nh; ++r) {
    const int64_t* pr = perm + r * L;
    lsh_gather_rows(X, norms, pr, L, E, ws.xs, ws.ks);
    lsh_gather(V, pr, L, Ev, ws.vs);
    for (int64_t t = 0; t < L; ++t) {  // go in sorted order
      const T w = ws.wr[r * L + pr[t]];
      const T* g = G + pr[t] * Ev;
      for (int64_t d = 0; d < Ev; ++d) ws.gos[t * Ev + d] = w * g[d];
    }
    std::fill(ws.gks, ws.gks + L * E, T(0));
    std::fill(ws.gvs, ws.gvs + L * Ev, T(0));
    for (int64_t a = 0; a < nc; ++a) {
      const LshPair c = lsh_pair(s, a);
      const int64_t nk = c.keys();
      const T* Pa = P + (r * L + c.t0) * W;
      const T* gc = ws.gos + c.t0 * Ev;
      lsh_pair_scores(c, Ev, T(1), gc, ws.vs, gs, W);  // gp
      for (int64_t t = 0; t < c.cq; ++t) {
        const T* p = Pa + t * W;
        T* gr = gs + t * W;
        const T shift = ws.gl[r * L + pr[c.t0 + t]] - dot_n(p, gr, nk);
        for (int64_t u = 0; u < nk; ++u) gr[u] = scale * p[u] * (gr[u] + shift);
      }
      lsh_pair_values(c, E, gs, W, ws.ks, ws.gxs + c.t0 * E);       // gx (queries), each slot once
      lsh_pair_accumulate(c, E, gs, W, ws.xs + c.t0 * E, ws.gks);   // gk
      lsh_pair_accumulate(c, Ev, Pa, W, gc, ws.gvs);                // gv
    }
    for (int64_t t = 0; t < L; ++t) {  // through k = x / |x| (linear in gk: per round, by slot)
      const T nrm = norms[pr[t]];
      if (nrm == T(0)) continue;  // k = 0: its gradient is taken as 0
      const T *k = ws.ks + t * E, *gk = ws.gks + t * E;
      const T dot = dot_n(k, gk, E);
      T* gx = ws.gxs + t * E;
      for (int64_t e = 0; e < E; ++e) gx[e] += (gk[e] - k[e] * dot) / nrm;
    }
    lsh_scatter_add(ws.gxs, pr, L, E, gX);
    lsh_scatter_add(ws.gvs, pr, L, Ev, gV);
  }
}

}  // namespace attn::kernels::cpu
