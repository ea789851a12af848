#pragma once
// Raw loops of linear attention (phi = elu + 1): one batch item's forward (sums or running state)
// and backward (forward scan + reverse scan when causal). No Tensor, no autograd; the formulas are
// at the top of ops/linear_attention.hpp, which checks the arguments and records the node.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include "gemm.hpp"
#include "vmath.hpp"

namespace attn::kernels::cpu {

// g *= phi'(x) given f = phi(x): phi'(x) = 1 for x > 0 (where f > 1) and exp(x) = f for x <= 0,
// i.e. phi'(x) = min(f, 1), with no exponential.
template <class T>
void la_scale_by_phi_grad(T* g, const T* f, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] *= std::min(f[i], T(1));
}

// Rows of x [n, E] scaled by a (a == nullptr: x itself, nothing written); else written to buf.
template <class T>
const T* la_scaled_rows(const T* x, const T* a, T* buf, int64_t n, int64_t E) {
  if (!a) return x;
  for (int64_t j = 0; j < n; ++j)
    for (int64_t e = 0; e < E; ++e) buf[j * E + e] = a[j] * x[j * E + e];
  return buf;
}

// Elements of the scratch one batch item needs (the caller gives each thread one buffer, a
// tensor from the block cache: fresh std::vectors of megabytes were zero-filled and faulted in on
// every call, half the op's time at L = 16,384):
//   phi(q) [L, E], phi(k) [S, E] (and a_j phi(k_j) [S, E] with per-key factors), the state KV, z
//   (backward: also gKV, gz, and gnum [L, Ev], gden [L]).
inline int64_t la_scratch_size(int64_t L, int64_t S, int64_t E, int64_t Ev, bool factors, bool backward) {
  const int64_t state = E * Ev + E;
  return L * E + S * E * (factors ? 2 : 1) + (backward ? 2 * state + L * Ev + L : state);
}

// The start of work, shared by the forward and the backward of one item: phi(Q) [L, E], phi(K)
// [S, E], ka = a_j phi(k_j) (the numerator's keys; without per-key factors ka is phi(K) itself,
// else [S, E] more), then the state KV [E, Ev] and z [E] (not zeroed); the backward's buffers
// follow z.
template <class T>
struct LaFeatures {
  T* qf;
  T* kf;
  const T* ka;
  T* KV;
  T* z;
};
template <class T>
LaFeatures<T> la_features(const T* Q, const T* K, int64_t L, int64_t S, int64_t E, int64_t Ev, const T* A, T* work) {
  T* qf = work;
  T* kf = qf + L * E;
  // phi = elu + 1 in one vectorised pass (a scalar std::exp per element was a third of the op's
  // time; three passes over the span, min / exp_n / select, 14 % of it at L = 4,096)
  elu_plus_one_n(Q, qf, L * E);
  elu_plus_one_n(K, kf, S * E);
  const T* ka = la_scaled_rows(kf, A, kf + S * E, S, E);
  T* KV = kf + S * E * (A ? 2 : 1);
  return {qf, kf, ka, KV, KV + E * Ev};
}

// One batch item, forward. Writes out [L, Ev]. A, Bd: the per-key factors a_j, b_j, or nullptr (all 1).
// work: la_scratch_size(L, S, E, Ev, A != nullptr, false) elements.
template <class T>
void la_forward_one(const T* Q, const T* K, const T* V, T* O, int64_t L, int64_t S, int64_t E, int64_t Ev,
                    bool causal, T eps, const T* A, const T* Bd, T* work) {
  const auto [qf, kf, ka, KV, z] = la_features(Q, K, L, S, E, Ev, A, work);
  std::fill(KV, z + E, T(0));
  if (!causal) {
    kernels::cpu::gemm_serial<T>(true, false, E, Ev, S, T(1), ka, E, V, Ev, T(0), KV, Ev);
    for (int64_t j = 0; j < S; ++j) {
      const T bj = Bd ? Bd[j] : T(1);
      for (int64_t e = 0; e < E; ++e) z[e] += bj * kf[j * E + e];
    }
    kernels::cpu::gemm_serial<T>(false, false, L, Ev, E, T(1), qf, E, KV, Ev, T(0), O, Ev);
    for (int64_t i = 0; i < L; ++i) {
      const T* q = qf + i * E;
      T den = eps;
      for (int64_t e = 0; e < E; ++e) den += q[e] * z[e];
      const T inv = T(1) / den;
      for (int64_t d = 0; d < Ev; ++d) O[i * Ev + d] *= inv;
    }
    return;
  }
  // Causal: S_i = S_{i-1} + phi(k_i) v_i^T, z_i = z_{i-1} + phi(k_i); out_i = S_i^T phi(q_i) / (phi(q_i).z_i + eps)
  for (int64_t i = 0; i < L; ++i) {
    const T* kr = kf + i * E;
    const T* kar = ka + i * E;
    const T bi = Bd ? Bd[i] : T(1);
    const T* vr = V + i * Ev;
    const T* q = qf + i * E;
    T* o = O + i * Ev;
    std::fill(o, o + Ev, T(0));
    T den = eps;
    for (int64_t e = 0; e < E; ++e) {
      T* row = KV + e * Ev;
      const T ke = kar[e], qe = q[e];
      for (int64_t d = 0; d < Ev; ++d) {
        row[d] += ke * vr[d];
        o[d] += qe * row[d];
      }
      z[e] += bi * kr[e];
      den += qe * z[e];
    }
    const T inv = T(1) / den;
    for (int64_t d = 0; d < Ev; ++d) o[d] *= inv;
  }
}

// One batch item, backward. G: dL/dout [L, Ev], O: the forward output. Writes gQ, gK, gV.
// With num_i = KV^T qf_i, den_i = qf_i . z + eps, out_i = num_i / den_i:
//   gnum_i = g_i / den_i,  gden_i = -(g_i . out_i) / den_i
//   gqf_i  = KV gnum_i + gden_i z
//   gKV    = sum_i qf_i gnum_i^T,  gz = sum_i gden_i qf_i          (causal: sums over i >= j)
//   gkf_j  = a_j gKV v_j + b_j gz,  gv_j = gKV^T (a_j kf_j)
//   gq = gqf * phi'(q), gk = gkf * phi'(k),  phi'(x) = 1 (x > 0), exp(x) (x <= 0)
// work: la_scratch_size(L, S, E, Ev, A != nullptr, true) elements.
template <class T>
void la_backward_one(const T* Q, const T* K, const T* V, const T* O, const T* G, T* gQ, T* gK, T* gV, int64_t L,
                     int64_t S, int64_t E, int64_t Ev, bool causal, T eps, const T* A, const T* Bd, T* work) {
  // Named copies, not a structured binding: row_grads captures them, which C++17 allows only for
  // variables (Clang before 16 rejects a lambda capturing a binding).
  const LaFeatures<T> f = la_features(Q, K, L, S, E, Ev, A, work);
  T* const qf = f.qf;
  const T* const kf = f.kf;
  const T* const ka = f.ka;
  T* const KV = f.KV;
  T* const z = f.z;
  T* gKV = z + E;
  T* gz = gKV + E * Ev;
  std::fill(KV, gz + E, T(0));
  T* gnum = gz + E;
  T* gden = gnum + L * Ev;
  auto row_grads = [&](int64_t i) {  // gnum_i, gden_i from den_i (needs z for row i)
    const T* q = qf + i * E;
    T den = eps;
    for (int64_t e = 0; e < E; ++e) den += q[e] * z[e];
    const T inv = T(1) / den;
    T go = 0;
    for (int64_t d = 0; d < Ev; ++d) {
      gnum[i * Ev + d] = G[i * Ev + d] * inv;
      go += G[i * Ev + d] * O[i * Ev + d];
    }
    gden[i] = -go * inv;
  };
  if (!causal) {
    kernels::cpu::gemm_serial<T>(true, false, E, Ev, S, T(1), ka, E, V, Ev, T(0), KV, Ev);
    for (int64_t j = 0; j < S; ++j) {
      const T bj = Bd ? Bd[j] : T(1);
      for (int64_t e = 0; e < E; ++e) z[e] += bj * kf[j * E + e];
    }
    for (int64_t i = 0; i < L; ++i) row_grads(i);
    // gqf = gnum KV^T + gden z^T  (written into gQ, then scaled by phi')
    kernels::cpu::gemm_serial<T>(false, true, L, E, Ev, T(1), gnum, Ev, KV, Ev, T(0), gQ, E);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t e = 0; e < E; ++e) gQ[i * E + e] += gden[i] * z[e];
    kernels::cpu::gemm_serial<T>(true, false, E, Ev, L, T(1), qf, E, gnum, Ev, T(0), gKV, Ev);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t e = 0; e < E; ++e) gz[e] += gden[i] * qf[i * E + e];
    kernels::cpu::gemm_serial<T>(false, true, S, E, Ev, T(1), V, Ev, gKV, Ev, T(0), gK, E);
    for (int64_t j = 0; j < S; ++j) {
      const T aj = A ? A[j] : T(1), bj = Bd ? Bd[j] : T(1);
      for (int64_t e = 0; e < E; ++e) gK[j * E + e] = aj * gK[j * E + e] + bj * gz[e];
    }
    kernels::cpu::gemm_serial<T>(false, false, S, Ev, E, T(1), ka, E, gKV, Ev, T(0), gV, Ev);
  } else {
    // Forward re-scan: rebuild S_i, z_i step by step; gqf_i = S_i gnum_i + gden_i z_i.
    for (int64_t i = 0; i < L; ++i) {
      const T* kr = kf + i * E;
      const T* kar = ka + i * E;
      const T bi = Bd ? Bd[i] : T(1);
      const T* vr = V + i * Ev;
      for (int64_t e = 0; e < E; ++e) {
        T* row = KV + e * Ev;
        for (int64_t d = 0; d < Ev; ++d) row[d] += kar[e] * vr[d];
        z[e] += bi * kr[e];
      }
      row_grads(i);
      const T* gn = gnum + i * Ev;
      for (int64_t e = 0; e < E; ++e) {
        const T* row = KV + e * Ev;
        T acc = gden[i] * z[e];
        for (int64_t d = 0; d < Ev; ++d) acc += row[d] * gn[d];
        gQ[i * E + e] = acc;
      }
    }
    // Reverse scan: gKV_j = sum_{i >= j} qf_i gnum_i^T, gz_j = sum_{i >= j} gden_i qf_i.
    for (int64_t j = L - 1; j >= 0; --j) {
      const T* q = qf + j * E;
      const T* gn = gnum + j * Ev;
      const T* kar = ka + j * E;
      const T aj = A ? A[j] : T(1), bj = Bd ? Bd[j] : T(1);
      const T* vr = V + j * Ev;
      T* gv = gV + j * Ev;
      std::fill(gv, gv + Ev, T(0));
      for (int64_t e = 0; e < E; ++e) {
        T* row = gKV + e * Ev;
        T acc = 0;
        for (int64_t d = 0; d < Ev; ++d) {
          row[d] += q[e] * gn[d];
          acc += row[d] * vr[d];
          gv[d] += row[d] * kar[e];
        }
        gz[e] += gden[j] * q[e];
        gK[j * E + e] = aj * acc + bj * gz[e];
      }
    }
  }
  la_scale_by_phi_grad(gQ, qf, L * E);
  la_scale_by_phi_grad(gK, kf, S * E);
}

}  // namespace attn::kernels::cpu
