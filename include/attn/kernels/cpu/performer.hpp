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
  const T s4 = T(std::pow(double(E), -0.25)), inv_sqrt_m = T(1) / std::sqrt(T(m));
  gemm_serial<T>(false, true, n, m, E, s4, X, E, W, E, T(0), F, m);
  T gmax = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * E;
    T sq = 0;
    for (int64_t e = 0; e < E; ++e) sq += x[e] * x[e];
    sq *= s4 * s4 / T(2);
    T* f = F + i * m;
    int64_t a = 0;
    for (int64_t r = 0; r < m; ++r) {
      f[r] -= sq;
      if (f[r] > f[a]) a = r;
    }
    if (per_row) arg[i] = a;
    if (!per_row && f[a] > gmax) gmax = f[a], arg[0] = i * m + a;
  }
  for (int64_t i = 0; i < n; ++i) {
    T* f = F + i * m;
    const T c = per_row ? f[arg[i]] : gmax;
    for (int64_t r = 0; r < m; ++r) f[r] = std::exp(f[r] - c) * inv_sqrt_m;
  }
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
    T rs = 0;
    for (int64_t r = 0; r < m; ++r) rs += (g[r] *= f[r]);
    if (per_row) g[arg[i]] -= rs;
    total += rs;
  }
  if (!per_row) gF[arg[0]] -= total;
  gemm_serial<T>(false, false, n, E, m, s4, gF, m, W, E, T(0), gX, E);
  for (int64_t i = 0; i < n; ++i) {
    const T* g = gF + i * m;
    T rs = 0;
    for (int64_t r = 0; r < m; ++r) rs += g[r];
    const T* x = X + i * E;
    for (int64_t e = 0; e < E; ++e) gX[i * E + e] -= s4 * s4 * x[e] * rs;
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

// Scratch of one item, reused across items by a thread.
template <class T>
struct FavorScratch {
  std::vector<T> fq, fk, vz, st, num, a, g1, g2;
  std::vector<int64_t> aq, ak;
};

// NUM [L, Ev + 1] = (numerators | denominators - eps) of one item; also leaves fq, fk, vz in ws.
template <class T>
void favor_numden(const FavorShape& s, const T* Q, const T* K, const T* V, const T* W, FavorScratch<T>& ws) {
  const int64_t L = s.L, S = s.S, m = s.m, Z = s.Ev + 1;
  ws.fq.resize(size_t(L * m));
  ws.fk.resize(size_t(S * m));
  ws.vz.resize(size_t(S * Z));
  ws.aq.resize(size_t(L));
  ws.ak.resize(1);
  ws.num.resize(size_t(L * Z));
  ws.st.assign(size_t(m * Z), T(0));
  favor_features(Q, W, L, s.E, m, true, ws.fq.data(), ws.aq.data());
  favor_features(K, W, S, s.E, m, false, ws.fk.data(), ws.ak.data());
  favor_values(V, S, s.Ev, ws.vz.data());
  if (!s.causal) {
    gemm_serial<T>(true, false, m, Z, S, T(1), ws.fk.data(), m, ws.vz.data(), Z, T(0), ws.st.data(), Z);
    gemm_serial<T>(false, false, L, Z, m, T(1), ws.fq.data(), m, ws.st.data(), Z, T(0), ws.num.data(), Z);
    return;
  }
  // Causal, chunk by chunk: NUM_c = tril(Fq_c Fk_c^T) Vz_c + Fq_c St, then St += Fk_c^T Vz_c.
  const int64_t C = s.chunk;
  ws.a.resize(size_t(C * C));
  for (int64_t r0 = 0; r0 < L; r0 += C) {
    const int64_t n = std::min(C, L - r0);
    const T *fq = ws.fq.data() + r0 * m, *fk = ws.fk.data() + r0 * m, *vz = ws.vz.data() + r0 * Z;
    T* num = ws.num.data() + r0 * Z;
    gemm_serial<T>(false, true, n, n, m, T(1), fq, m, fk, m, T(0), ws.a.data(), n);
    for (int64_t i = 0; i < n; ++i) std::fill(ws.a.data() + i * n + i + 1, ws.a.data() + (i + 1) * n, T(0));
    gemm_serial<T>(false, false, n, Z, n, T(1), ws.a.data(), n, vz, Z, T(0), num, Z);
    gemm_serial<T>(false, false, n, Z, m, T(1), fq, m, ws.st.data(), Z, T(1), num, Z);
    gemm_serial<T>(true, false, m, Z, n, T(1), fk, m, vz, Z, T(1), ws.st.data(), Z);
  }
}

template <class T>
void favor_forward(const FavorShape& s, const T* Q, const T* K, const T* V, const T* W, T eps, T* O,
                   FavorScratch<T>& ws) {
  favor_numden(s, Q, K, V, W, ws);
  const int64_t Z = s.Ev + 1;
  for (int64_t i = 0; i < s.L; ++i) {
    const T* num = ws.num.data() + i * Z;
    const T inv = T(1) / (num[s.Ev] + eps);
    for (int64_t d = 0; d < s.Ev; ++d) O[i * s.Ev + d] = num[d] * inv;
  }
}

// Backward of one item: G = dL/dout [L, Ev] -> gQ [L, E], gK [S, E], gV [S, Ev] (written).
template <class T>
void favor_backward(const FavorShape& s, const T* Q, const T* K, const T* V, const T* W, T eps, const T* G, T* gQ,
                    T* gK, T* gV, FavorScratch<T>& ws) {
  favor_numden(s, Q, K, V, W, ws);
  const int64_t L = s.L, S = s.S, m = s.m, Ev = s.Ev, Z = Ev + 1;
  // gNUM: [g / den | -(g . out) / den]   (written over num)
  for (int64_t i = 0; i < L; ++i) {
    T* num = ws.num.data() + i * Z;
    const T inv = T(1) / (num[Ev] + eps);
    T go = 0;
    for (int64_t d = 0; d < Ev; ++d) {
      go += G[i * Ev + d] * num[d] * inv;
      num[d] = G[i * Ev + d] * inv;
    }
    num[Ev] = -go * inv;
  }
  const T* gn = ws.num.data();
  std::vector<T>& gfq = ws.g1;
  std::vector<T>& gfk = ws.g2;
  gfq.resize(size_t(L * m));
  gfk.resize(size_t(S * m));
  std::vector<T> gvz(size_t(S * Z));
  if (!s.causal) {
    // st = KV = Fk^T Vz (from favor_numden).  gFq = gNUM KV^T,  gKV = Fq^T gNUM,
    // gFk = Vz gKV^T,  gVz = Fk gKV.
    std::vector<T> gkv(size_t(m * Z));
    gemm_serial<T>(false, true, L, m, Z, T(1), gn, Z, ws.st.data(), Z, T(0), gfq.data(), m);
    gemm_serial<T>(true, false, m, Z, L, T(1), ws.fq.data(), m, gn, Z, T(0), gkv.data(), Z);
    gemm_serial<T>(false, true, S, m, Z, T(1), ws.vz.data(), Z, gkv.data(), Z, T(0), gfk.data(), m);
    gemm_serial<T>(false, false, S, Z, m, T(1), ws.fk.data(), m, gkv.data(), Z, T(0), gvz.data(), Z);
  } else {
    // Per chunk c with St_c = sum of Fk^T Vz over the chunks before c, A_c = tril(Fq_c Fk_c^T):
    //   gA = tril(gNUM_c Vz_c^T),  gFq_c = gA Fk_c + gNUM_c St_c^T,
    //   gFk_c = gA^T Fq_c + Vz_c Gs_c^T,  gVz_c = A_c^T gNUM_c + Fk_c Gs_c,
    //   Gs_c = sum over the chunks after c of Fq^T gNUM (a reverse scan).
    const int64_t C = s.chunk;
    std::vector<T> ga(size_t(C * C));
    ws.st.assign(size_t(m * Z), T(0));
    for (int64_t r0 = 0; r0 < L; r0 += C) {  // forward scan: gFq
      const int64_t n = std::min(C, L - r0);
      const T *fk = ws.fk.data() + r0 * m, *vz = ws.vz.data() + r0 * Z, *g = gn + r0 * Z;
      gemm_serial<T>(false, true, n, n, Z, T(1), g, Z, vz, Z, T(0), ga.data(), n);
      for (int64_t i = 0; i < n; ++i) std::fill(ga.data() + i * n + i + 1, ga.data() + (i + 1) * n, T(0));
      gemm_serial<T>(false, false, n, m, n, T(1), ga.data(), n, fk, m, T(0), gfq.data() + r0 * m, m);
      gemm_serial<T>(false, true, n, m, Z, T(1), g, Z, ws.st.data(), Z, T(1), gfq.data() + r0 * m, m);
      gemm_serial<T>(true, false, m, Z, n, T(1), fk, m, vz, Z, T(1), ws.st.data(), Z);
    }
    ws.st.assign(size_t(m * Z), T(0));  // now Gs, the reverse scan
    for (int64_t r0 = (L - 1) / C * C; r0 >= 0; r0 -= C) {
      const int64_t n = std::min(C, L - r0);
      const T *fq = ws.fq.data() + r0 * m, *fk = ws.fk.data() + r0 * m, *vz = ws.vz.data() + r0 * Z, *g = gn + r0 * Z;
      gemm_serial<T>(false, true, n, n, Z, T(1), g, Z, vz, Z, T(0), ga.data(), n);
      gemm_serial<T>(false, true, n, n, m, T(1), fq, m, fk, m, T(0), ws.a.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        std::fill(ga.data() + i * n + i + 1, ga.data() + (i + 1) * n, T(0));
        std::fill(ws.a.data() + i * n + i + 1, ws.a.data() + (i + 1) * n, T(0));
      }
      gemm_serial<T>(true, false, n, m, n, T(1), ga.data(), n, fq, m, T(0), gfk.data() + r0 * m, m);
      gemm_serial<T>(false, true, n, m, Z, T(1), vz, Z, ws.st.data(), Z, T(1), gfk.data() + r0 * m, m);
      gemm_serial<T>(true, false, n, Z, n, T(1), ws.a.data(), n, g, Z, T(0), gvz.data() + r0 * Z, Z);
      gemm_serial<T>(false, false, n, Z, m, T(1), fk, m, ws.st.data(), Z, T(1), gvz.data() + r0 * Z, Z);
      gemm_serial<T>(true, false, m, Z, n, T(1), fq, m, g, Z, T(1), ws.st.data(), Z);
    }
  }
  for (int64_t j = 0; j < S; ++j) std::copy(gvz.data() + j * Z, gvz.data() + j * Z + Ev, gV + j * Ev);
  favor_features_backward(Q, W, ws.fq.data(), ws.aq.data(), L, s.E, m, true, gfq.data(), gQ);
  favor_features_backward(K, W, ws.fk.data(), ws.ak.data(), S, s.E, m, false, gfk.data(), gK);
}

}  // namespace attn::kernels::cpu
