#pragma once
// Raw loops of Performer / FAVOR+ attention for one batch item; the op, its checks and its
// autograd node are in ops/performer_attention.hpp (formulas there). Everything is GEMMs on
// [rows, m] feature blocks; nothing of size L x S.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "gemm.hpp"
#include "vmath.hpp"

namespace attn::kernels::cpu {

struct FavorShape {
  int64_t L, S, E, Ev, m;
  bool causal;
  int64_t chunk;  // causal: rows per chunk
};

// F = exp(s4 X W^T - s4^2 |x|^2 / 2 - c) / sqrt(m) for X [n, E] -> F [n, m]; c per row (arg[i] =
// the feature holding the row max) or, when !per_row, one c over all (arg[0] = i * m + r of it).
template <class T>
void favor_features(const T* X, const T* W, int64_t n, int64_t E, int64_t m, bool per_row, T* F, int64_t* arg) {
  const T s4 = T(std::pow(double(E), -0.25)), log_sqrt_m = T(0.5 * std::log(double(m)));
  gemm_serial<T>(false, true, n, m, E, s4, X, E, W, E, T(0), F, m);
  T gmax = -std::numeric_limits<T>::infinity();
  if (!per_row) arg[0] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * E;
    const T sq = dot_n(x, x, E) * (s4 * s4 / T(2));
    T* f = F + i * m;
    for (int64_t r = 0; r < m; ++r) f[r] -= sq;
    const T mx = max_n(f, m);
    if (!per_row && !(mx > gmax)) continue;
    const int64_t a = std::find(f, f + m, mx) - f;  // the first entry holding the max (m: NaN)
    if (!per_row) {
      gmax = mx, arg[0] = i * m + (a < m ? a : 0);
      continue;
    }
    arg[i] = a < m ? a : 0;
    // exp(x - c) / sqrt(m) = exp(x - c - ln sqrt(m)); the row is still in L1
    const T c = mx + log_sqrt_m;
    for (int64_t r = 0; r < m; ++r) f[r] -= c;
    exp_n(f, f, m);
  }
  if (per_row) return;
  const T c = gmax + log_sqrt_m;
  for (int64_t i = 0; i < n * m; ++i) F[i] -= c;
  exp_n(F, F, n * m);
}

// Backward of favor_features: gF [n, m] (overwritten) -> gX [n, E] (written).
//   gLg = gF * F;  c: gLg[c's entry] -= sum of gLg over what c was subtracted from;
//   gX = s4 gLg W - s4^2 x rowsum(gLg)
template <class T>
void favor_features_backward(const T* X, const T* W, const T* F, const int64_t* arg, int64_t n, int64_t E, int64_t m,
                             bool per_row, T* gF, T* gX) {
  const T s4 = T(std::pow(double(E), -0.25));
  T total = 0;
  for (int64_t i = 0; i < n; ++i) {
    T* g = gF + i * m;
    const T* f = F + i * m;
    for (int64_t r = 0; r < m; ++r) g[r] *= f[r];
    const T rs = sum_n(g, m);
    if (per_row) g[arg[i]] -= rs;
    total += rs;
  }
  if (!per_row) gF[arg[0]] -= total;
  gemm_serial<T>(false, false, n, E, m, s4, gF, m, W, E, T(0), gX, E);
  if (per_row) return;  // c's entry took each row's sum: rowsum(gLg) = 0
  for (int64_t i = 0; i < n; ++i) {
    const T rs = sum_n(gF + i * m, m) * (s4 * s4);
    const T* x = X + i * E;
    for (int64_t e = 0; e < E; ++e) gX[i * E + e] -= x[e] * rs;
  }
}

// [V | 1]: values with a column of ones, so one product gives numerator and denominator.
template <class T>
void favor_values(const T* V, int64_t S, int64_t Ev, T* Vz) {
  for (int64_t j = 0; j < S; ++j) {
    std::copy(V + j * Ev, V + j * Ev + Ev, Vz + j * (Ev + 1));
    Vz[j * (Ev + 1) + Ev] = T(1);
  }
}

// Scratch of one item, reused across items by a thread: views into one caller-owned block of
// favor_scratch_size(s) elements (the op allocates it as a tensor, so memory_stats counts it and
// the block cache reuses it) and L + 1 indices.
template <class T>
struct FavorScratch {
  T *fq, *fk, *vz, *st, *num, *a, *g1, *g2, *gvz, *gkv, *ga, *ks;
  int64_t *aq, *ak;
};
inline int64_t favor_scratch_size(const FavorShape& s) {
  const int64_t Z = s.Ev + 1, C = s.causal ? s.chunk : 0;
  return 2 * (s.L + s.S) * s.m + 2 * s.S * Z + 2 * s.m * Z + s.L * Z + 2 * C * C + s.m;
}
template <class T>
FavorScratch<T> favor_bind(const FavorShape& s, T* p, int64_t* idx) {
  const int64_t Z = s.Ev + 1, C = s.causal ? s.chunk : 0;
  FavorScratch<T> w;
  auto take = [&p](int64_t n) { T* r = p; p += n; return r; };
  w.fq = take(s.L * s.m), w.fk = take(s.S * s.m), w.g1 = take(s.L * s.m), w.g2 = take(s.S * s.m);
  w.vz = take(s.S * Z), w.gvz = take(s.S * Z), w.st = take(s.m * Z), w.gkv = take(s.m * Z), w.num = take(s.L * Z);
  w.a = take(C * C), w.ga = take(C * C), w.ks = take(s.m);
  w.aq = idx, w.ak = idx + s.L;
  return w;
}

// dst[r * dst_stride] = sum_i w_i F[i, r] over the n rows of F [n, m], w_i = 1 when w is null, else
// w[i * w_stride]; ks: m elements of scratch. The ones column of [V | 1] (and its gradient) of
// the non-causal products: inside a product that one column would cost a whole register tile
// (N = Ev + 1 = 65 runs as 96 columns).
template <class T>
void favor_ones_column(const T* F, int64_t n, int64_t m, const T* w, int64_t w_stride, T* dst, int64_t dst_stride,
                       T* ks) {
  std::fill(ks, ks + m, T(0));
  for (int64_t i = 0; i < n; ++i) {
    const T wi = w ? w[i * w_stride] : T(1);
    const T* f = F + i * m;
    for (int64_t r = 0; r < m; ++r) ks[r] += wi * f[r];
  }
  for (int64_t r = 0; r < m; ++r) dst[r * dst_stride] = ks[r];
}

// Fq, Fk and Vz of one item into ws.
template <class T>
void favor_prepare(const FavorShape& s, const T* Q, const T* K, const T* V, const T* W, FavorScratch<T>& ws) {
  favor_features(Q, W, s.L, s.E, s.m, true, ws.fq, ws.aq);
  favor_features(K, W, s.S, s.E, s.m, false, ws.fk, ws.ak);
  favor_values(V, s.S, s.Ev, ws.vz);
}

// NUM [L, Ev + 1] = (numerators | denominators - eps) of one item into ws.num, and (non-causal)
// KV = Fk^T Vz into ws.st; also leaves fq, fk, vz in ws.
template <class T>
void favor_numden(const FavorShape& s, const T* Q, const T* K, const T* V, const T* W, FavorScratch<T>& ws) {
  const int64_t L = s.L, S = s.S, m = s.m, Z = s.Ev + 1;
  std::fill(ws.st, ws.st + m * Z, T(0));
  favor_prepare(s, Q, K, V, W, ws);
  if (!s.causal) {  // KV = Fk^T Vz, NUM = Fq KV; the ones column apart (favor_ones_column)
    const int64_t Ev = s.Ev;
    gemm_serial<T>(true, false, m, Ev, S, T(1), ws.fk, m, ws.vz, Z, T(0), ws.st, Z);
    favor_ones_column<T>(ws.fk, S, m, nullptr, 0, ws.st + Ev, Z, ws.ks);
    gemm_serial<T>(false, false, L, Ev, m, T(1), ws.fq, m, ws.st, Z, T(0), ws.num, Z);
    for (int64_t i = 0; i < L; ++i) ws.num[i * Z + Ev] = dot_n(ws.fq + i * m, ws.ks, m);
    return;
  }
  // Causal, chunk by chunk: NUM_c = tril(Fq_c Fk_c^T) Vz_c + Fq_c St_c, then St += Fk_c^T Vz_c.
  const int64_t C = s.chunk;
  for (int64_t r0 = 0; r0 < L; r0 += C) {
    const int64_t n = std::min(C, L - r0);
    const T *fq = ws.fq + r0 * m, *fk = ws.fk + r0 * m, *vz = ws.vz + r0 * Z;
    T* num = ws.num + r0 * Z;
    gemm_serial<T>(false, true, n, n, m, T(1), fq, m, fk, m, T(0), ws.a, n);
    for (int64_t i = 0; i < n; ++i) std::fill(ws.a + i * n + i + 1, ws.a + (i + 1) * n, T(0));
    gemm_serial<T>(false, false, n, Z, n, T(1), ws.a, n, vz, Z, T(0), num, Z);
    gemm_serial<T>(false, false, n, Z, m, T(1), fq, m, ws.st, Z, T(1), num, Z);
    gemm_serial<T>(true, false, m, Z, n, T(1), fk, m, vz, Z, T(1), ws.st, Z);
  }
}

// What the non-causal backward of an item can take from its forward instead of recomputing two
// of its products: NUM [L, Ev + 1] then KV [m, Ev + 1].
inline int64_t favor_saved_size(const FavorShape& s) { return s.causal ? 0 : (s.L + s.m) * (s.Ev + 1); }

// Forward of one item: O [L, Ev]; with saved (non-causal, favor_saved_size elements), NUM and KV
// are also kept there for favor_backward.
template <class T>
void favor_forward(const FavorShape& s, const T* Q, const T* K, const T* V, const T* W, T eps, T* O,
                   FavorScratch<T>& ws, T* saved = nullptr) {
  favor_numden(s, Q, K, V, W, ws);
  const int64_t Z = s.Ev + 1;
  for (int64_t i = 0; i < s.L; ++i) {
    const T* num = ws.num + i * Z;
    const T inv = T(1) / (num[s.Ev] + eps);
    for (int64_t d = 0; d < s.Ev; ++d) O[i * s.Ev + d] = num[d] * inv;
  }
  if (saved && !s.causal) {
    std::copy(ws.num, ws.num + s.L * Z, saved);
    std::copy(ws.st, ws.st + s.m * Z, saved + s.L * Z);
  }
}

// Backward of one item: G = dL/dout [L, Ev] -> gQ [L, E], gK [S, E], gV [S, Ev] (written).
// saved: what favor_forward kept (non-causal), or nullptr to recompute it.
template <class T>
void favor_backward(const FavorShape& s, const T* Q, const T* K, const T* V, const T* W, T eps, const T* G, T* gQ,
                    T* gK, T* gV, FavorScratch<T>& ws, const T* saved = nullptr) {
  if (saved && !s.causal) {
    favor_prepare(s, Q, K, V, W, ws);
    const int64_t LZ = s.L * (s.Ev + 1);
    std::copy(saved, saved + LZ, ws.num);
    std::copy(saved + LZ, saved + LZ + s.m * (s.Ev + 1), ws.st);
  } else {
    favor_numden(s, Q, K, V, W, ws);
  }
  const int64_t L = s.L, S = s.S, m = s.m, Ev = s.Ev, Z = Ev + 1;
  // gNUM: [g / den | -(g . out) / den]   (written over num)
  for (int64_t i = 0; i < L; ++i) {
    T* num = ws.num + i * Z;
    const T inv = T(1) / (num[Ev] + eps);
    T go = 0;
    for (int64_t d = 0; d < Ev; ++d) {
      go += G[i * Ev + d] * num[d] * inv;
      num[d] = G[i * Ev + d] * inv;
    }
    num[Ev] = -go * inv;
  }
  const T* gn = ws.num;
  T *gfq = ws.g1, *gfk = ws.g2, *gvz = ws.gvz;
  if (!s.causal) {
    // st = KV = Fk^T Vz (from favor_numden).  gFq = gNUM KV^T,  gKV = Fq^T gNUM,
    // gFk = Vz gKV^T,  gVz = Fk gKV.
    // (the ones column of gKV apart, and gVz's not computed: it is the gradient of the ones)
    T* gkv = ws.gkv;
    gemm_serial<T>(false, true, L, m, Z, T(1), gn, Z, ws.st, Z, T(0), gfq, m);
    gemm_serial<T>(true, false, m, Ev, L, T(1), ws.fq, m, gn, Z, T(0), gkv, Z);
    favor_ones_column<T>(ws.fq, L, m, gn + Ev, Z, gkv + Ev, Z, ws.ks);
    gemm_serial<T>(false, true, S, m, Z, T(1), ws.vz, Z, gkv, Z, T(0), gfk, m);
    gemm_serial<T>(false, false, S, Ev, m, T(1), ws.fk, m, gkv, Z, T(0), gV, Ev);
  } else {
    // Per chunk c with St_c = sum of Fk^T Vz over the chunks before c, A_c = tril(Fq_c Fk_c^T):
    //   gA = tril(gNUM_c Vz_c^T),  gFq_c = gA Fk_c + gNUM_c St_c^T,
    //   gFk_c = gA^T Fq_c + Vz_c Gs_c^T,  gVz_c = A_c^T gNUM_c + Fk_c Gs_c,
    //   Gs_c = sum over the chunks after c of Fq^T gNUM (a reverse scan).
    const int64_t C = s.chunk;
    T* ga = ws.ga;
    std::fill(ws.st, ws.st + m * Z, T(0));
    for (int64_t r0 = 0; r0 < L; r0 += C) {  // forward scan: gFq
      const int64_t n = std::min(C, L - r0);
      const T *fk = ws.fk + r0 * m, *vz = ws.vz + r0 * Z, *g = gn + r0 * Z;
      gemm_serial<T>(false, true, n, n, Z, T(1), g, Z, vz, Z, T(0), ga, n);
      for (int64_t i = 0; i < n; ++i) std::fill(ga + i * n + i + 1, ga + (i + 1) * n, T(0));
      gemm_serial<T>(false, false, n, m, n, T(1), ga, n, fk, m, T(0), gfq + r0 * m, m);
      gemm_serial<T>(false, true, n, m, Z, T(1), g, Z, ws.st, Z, T(1), gfq + r0 * m, m);
      gemm_serial<T>(true, false, m, Z, n, T(1), fk, m, vz, Z, T(1), ws.st, Z);
    }
    std::fill(ws.st, ws.st + m * Z, T(0));  // now Gs, the reverse scan
    for (int64_t r0 = (L - 1) / C * C; r0 >= 0; r0 -= C) {
      const int64_t n = std::min(C, L - r0);
      const T *fq = ws.fq + r0 * m, *fk = ws.fk + r0 * m, *vz = ws.vz + r0 * Z, *g = gn + r0 * Z;
      gemm_serial<T>(false, true, n, n, Z, T(1), g, Z, vz, Z, T(0), ga, n);
      gemm_serial<T>(false, true, n, n, m, T(1), fq, m, fk, m, T(0), ws.a, n);
      for (int64_t i = 0; i < n; ++i) {
        std::fill(ga + i * n + i + 1, ga + (i + 1) * n, T(0));
        std::fill(ws.a + i * n + i + 1, ws.a + (i + 1) * n, T(0));
      }
      gemm_serial<T>(true, false, n, m, n, T(1), ga, n, fq, m, T(0), gfk + r0 * m, m);
      gemm_serial<T>(false, true, n, m, Z, T(1), vz, Z, ws.st, Z, T(1), gfk + r0 * m, m);
      gemm_serial<T>(true, false, n, Z, n, T(1), ws.a, n, g, Z, T(0), gvz + r0 * Z, Z);
      gemm_serial<T>(false, false, n, Z, m, T(1), fk, m, ws.st, Z, T(1), gvz + r0 * Z, Z);
      gemm_serial<T>(true, false, m, Z, n, T(1), fq, m, g, Z, T(1), ws.st, Z);
    }
  }
  if (s.causal)
    for (int64_t j = 0; j < S; ++j) std::copy(gvz + j * Z, gvz + j * Z + Ev, gV + j * Ev);
  favor_features_backward(Q, W, ws.fq, ws.aq, L, s.E, m, true, gfq, gQ);
  favor_features_backward(K, W, ws.fk, ws.ak, S, s.E, m, false, gfk, gK);
}

}  // namespace attn::kernels::cpu
