#pragma once
// Raw loops of ProbSparse attention (Informer, Zhou et al., AAAI 2021) for one batch item; the
// op, its checks and its autograd node are in ops/probsparse_attention.hpp.
//
//   sparsity measure  M_i = max_{j in samp(i)} q_i.k_j - mean_{j in samp(i)} q_i.k_j
//   top               the n_top queries of largest M (ties: the lower index)
//   selected row i    out_i = softmax_j(scale q_i.k_j [j <= i if causal]) V
//   other rows        out_i = mean_j v_j           (causal: (1 / (i + 1)) sum_{j <= i} v_j)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>
#include "gemm.hpp"

namespace attn::kernels::cpu {

// Fills top[0..n_top) with the selected query rows, ascending. samp: [L, U] key indices.
template <class T>
void probsparse_select(const T* Q, const T* K, const int64_t* samp, int64_t L, int64_t E, int64_t U, int64_t n_top,
                       int64_t* top, std::vector<T>& m) {
  m.resize(size_t(L));
  // The sampled keys are random rows of K: once K outgrows the cache (L = 65,536, E = 64: 16 MiB
  // per head) each row is a miss the hardware cannot predict, so the rows kPrefetch samples
  // ahead are requested early (lines of 64 bytes).
  constexpr int64_t kPrefetch = 4;
  const int64_t n_samp = L * U;
  for (int64_t i = 0; i < L; ++i) {
    const T* q = Q + i * E;
    T mx = -std::numeric_limits<T>::infinity(), sum = 0;
    for (int64_t u = 0; u < U; ++u) {
      if (i * U + u + kPrefetch < n_samp) {
        const char* ahead = reinterpret_cast<const char*>(K + samp[i * U + u + kPrefetch] * E);
        for (int64_t b = 0; b < E * int64_t(sizeof(T)); b += 64) __builtin_prefetch(ahead + b);
      }
      const T* k = K + samp[i * U + u] * E;
      T d = 0;
      for (int64_t e = 0; e < E; ++e) d += q[e] * k[e];
      mx = std::max(mx, d);
      sum += d;
    }
    m[size_t(i)] = mx - sum / T(U);
  }
  std::vector<int64_t> idx(static_cast<size_t>(L));
  std::iota(idx.begin(), idx.end(), int64_t(0));
  std::partial_sort(idx.begin(), idx.begin() + n_top, idx.end(), [&](int64_t a, int64_t b) {
    return m[size_t(a)] > m[size_t(b)] || (m[size_t(a)] == m[size_t(b)] && a < b);
  });
  std::copy(idx.begin(), idx.begin() + n_top, top);
  std::sort(top, top + n_top);
}

// Forward of one item: out [L, Ev], P [n_top, S] (the selected rows' softmax weights).
template <class T>
void probsparse_forward(const T* Q, const T* K, const T* V, const int64_t* top, int64_t L, int64_t S, int64_t E,
                        int64_t Ev, int64_t n_top, bool causal, T scale, T* O, T* P, std::vector<T>& qs) {
  // Unselected rows: the mean of V (causal: the running mean of V[0..i]).
  std::vector<T> acc(size_t(Ev), T(0));
  if (!causal) {
    for (int64_t j = 0; j < S; ++j)
      for (int64_t d = 0; d < Ev; ++d) acc[size_t(d)] += V[j * Ev + d];
    for (int64_t i = 0; i < L; ++i)
      for (int64_t d = 0; d < Ev; ++d) O[i * Ev + d] = acc[size_t(d)] / T(S);
  } else {
    for (int64_t i = 0; i < L; ++i) {
      for (int64_t d = 0; d < Ev; ++d) {
        acc[size_t(d)] += V[i * Ev + d];
        O[i * Ev + d] = acc[size_t(d)] / T(i + 1);
      }
    }
  }
  // Selected rows: full softmax attention. scores = scale Qsel K^T [n_top, S].
  qs.resize(size_t(n_top * (E + Ev)));
  T* Qsel = qs.data();
  T* Osel = Qsel + n_top * E;
  for (int64_t t = 0; t < n_top; ++t) std::copy(Q + top[t] * E, Q + top[t] * E + E, Qsel + t * E);
  gemm_serial<T>(false, true, n_top, S, E, scale, Qsel, E, K, E, T(0), P, S);
  for (int64_t t = 0; t < n_top; ++t) {
    T* p = P + t * S;
    const int64_t end = causal ? top[t] + 1 : S;  // keys j < end are visible
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < end; ++j) mx = std::max(mx, p[j]);
    T den = 0;
    for (int64_t j = 0; j < end; ++j) den += (p[j] = std::exp(p[j] - mx));
    for (int64_t j = 0; j < end; ++j) p[j] /= den;
    std::fill(p + end, p + S, T(0));
  }
  gemm_serial<T>(false, false, n_top, Ev, S, T(1), P, S, V, Ev, T(0), Osel, Ev);
  for (int64_t t = 0; t < n_top; ++t) std::copy(Osel + t * Ev, Osel + t * Ev + Ev, O + top[t] * Ev);
}

// Backward of one item. G: dL/dout [L, Ev]. Writes gQ [L, E], gK [S, E], gV [S, Ev].
//   mean rows:     gv_j += sum_{i unselected} g_i / S        (causal: sum_{i >= j, unselected} g_i / (i + 1))
//   selected rows: gV += P^T Gsel,  gP = Gsel V^T,  gs = scale P * (gP - rowsum(P * gP)),
//                  gQsel = gs K,  gK = gs^T Qsel;  unselected rows get gq = 0
template <class T>
void probsparse_backward(const T* Q, const T* K, const T* V, const int64_t* top, const T* P, const T* G, int64_t L,
                         int64_t S, int64_t E, int64_t Ev, int64_t n_top, bool causal, T scale, T* gQ, T* gK, T* gV,
                         std::vector<T>& ws) {
  std::vector<uint8_t> sel(size_t(L), 0);
  for (int64_t t = 0; t < n_top; ++t) sel[size_t(top[t])] = 1;
  std::vector<T> acc(size_t(Ev), T(0));
  if (!causal) {
    for (int64_t i = 0; i < L; ++i)
      if (!sel[size_t(i)])
        for (int64_t d = 0; d < Ev; ++d) acc[size_t(d)] += G[i * Ev + d];
    for (int64_t j = 0; j < S; ++j)
      for (int64_t d = 0; d < Ev; ++d) gV[j * Ev + d] = acc[size_t(d)] / T(S);
  } else {
    for (int64_t j = L - 1; j >= 0; --j) {
      if (!sel[size_t(j)])
        for (int64_t d = 0; d < Ev; ++d) acc[size_t(d)] += G[j * Ev + d] / T(j + 1);
      for (int64_t d = 0; d < Ev; ++d) gV[j * Ev + d] = acc[size_t(d)];
    }
  }
  ws.resize(size_t(n_top * (E + Ev + S + E)));
  T* Qsel = ws.data();
  T* Gsel = Qsel + n_top * E;
  T* gS = Gsel + n_top * Ev;
  T* gQsel = gS + n_top * S;
  for (int64_t t = 0; t < n_top; ++t) {
    std::copy(Q + top[t] * E, Q + top[t] * E + E, Qsel + t * E);
    std::copy(G + top[t] * Ev, G + top[t] * Ev + Ev, Gsel + t * Ev);
  }
  gemm_serial<T>(true, false, S, Ev, n_top, T(1), P, S, Gsel, Ev, T(1), gV, Ev);
  gemm_serial<T>(false, true, n_top, S, Ev, T(1), Gsel, Ev, V, Ev, T(0), gS, S);
  for (int64_t t = 0; t < n_top; ++t) {
    const T* p = P + t * S;
    T* gs = gS + t * S;
    T dot = 0;
    for (int64_t j = 0; j < S; ++j) dot += p[j] * gs[j];
    for (int64_t j = 0; j < S; ++j) gs[j] = scale * p[j] * (gs[j] - dot);
  }
  gemm_serial<T>(false, false, n_top, E, S, T(1), gS, S, K, E, T(0), gQsel, E);
  gemm_serial<T>(true, false, S, E, n_top, T(1), gS, S, Qsel, E, T(0), gK, E);
  std::fill(gQ, gQ + L * E, T(0));
  for (int64_t t = 0; t < n_top; ++t) std::copy(gQsel + t * E, gQsel + t * E + E, gQ + top[t] * E);
}

}  // namespace attn::kernels::cpu
