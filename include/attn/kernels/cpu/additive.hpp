#pragma once
// Raw loops of additive (Bahdanau) attention and attention pooling: masked softmax rows, the
// per-row forward, and the backward passes (query rows, key rows / batch rows). No Tensor, no
// autograd; the formulas are in ops/additive_attention.hpp, which checks the arguments and
// records the nodes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>
#include "../../core/parallel.hpp"
#include "vmath.hpp"

namespace attn::kernels::cpu {

// Boolean key mask seen as [B, Lq or 1, S]; null pointer = everything allowed.
struct AddMaskView {
  const uint8_t* p = nullptr;
  int64_t bstride = 0, qstride = 0;
  bool ok(int64_t b, int64_t i, int64_t j) const { return !p || p[b * bstride + i * qstride + j] != 0; }
};

// In-place stable softmax of s[0..n) restricted to allowed[j] (the others get -inf, so weight 0;
// vectorised through softmax_n); returns false (and zeros) when none allowed.
template <class T>
bool add_masked_softmax_row(T* s, const uint8_t* allowed, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    if (!allowed[j]) s[j] = -std::numeric_limits<T>::infinity();
  return softmax_n(s, n) != -std::numeric_limits<T>::infinity();
}

// t[h] = tanh(q[h] + k[h]), h < n (vectorised tanh).
template <class T>
void tanh_of_sum(const T* q, const T* k, T* t, int64_t n) {
  for (int64_t h = 0; h < n; ++h) t[h] = q[h] + k[h];
  kernels::cpu::tanh_n(t, t, n);
}

// Raw forward of additive attention for query rows r in [r0, r1) (r = b * Lq + i):
// Pq [B*Lq, H], Pk [B*S, H] projected queries and keys, Pv [H], Vv [B*S, Dv] values;
// writes the weights Pw [B*Lq, S] and contexts Pc [B*Lq, Dv].
template <class T>
void additive_forward_rows(int64_t r0, int64_t r1, int64_t Lq, int64_t S, int64_t H, int64_t Dv, const T* Pq,
                           const T* Pk, const T* Pv, const T* Vv, const AddMaskView& mv, T* Pw, T* Pc) {
  std::vector<uint8_t> allowed(static_cast<size_t>(S));
  std::vector<T> t(static_cast<size_t>(H));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / Lq, i = r % Lq;
    const T* qi = Pq + r * H;
    T* wr = Pw + r * S;
    for (int64_t j = 0; j < S; ++j) {
      allowed[size_t(j)] = mv.ok(b, i, j);
      if (!allowed[size_t(j)]) continue;
      tanh_of_sum(qi, Pk + (b * S + j) * H, t.data(), H);
      wr[j] = dot_n(Pv, t.data(), H);
    }
    add_masked_softmax_row(wr, allowed.data(), S);
    T* c = Pc + r * Dv;
    std::fill(c, c + Dv, T(0));
    for (int64_t j = 0; j < S; ++j) {
      const T wj = wr[j];
      if (wj == T(0)) continue;
      const T* vj = Vv + (b * S + j) * Dv;
      for (int64_t d = 0; d < Dv; ++d) c[d] += wj * vj[d];
    }
  }
}

// Raw backward of additive attention. With t_ijh = tanh(pq_ih + pk_jh), score_ij = sum_h v_h t_ijh,
// w = softmax(score):
//   gw~_ij  = gw_ij + gctx_i . values_j                 (weights used directly and through ctx)
//   ds_ij   = w_ij (gw~_ij - sum_j' w_ij' gw~_ij')       (softmax; 0 where masked)
//   gpq_ih  = sum_j ds_ij v_h (1 - t_ijh^2),  gpk_jh = sum_i ds_ij v_h (1 - t_ijh^2)
//   gv_h    = sum_{b,i,j} ds_ij t_ijh,        gvalues_j = sum_i w_ij gctx_i
// Pass 1 runs over query rows (ds, gpq, a per-row partial of gv); pass 2 over key rows
// (gpk, gvalues); the gv partials are summed in row order. tanh is recomputed, never stored.
// W [B*Lq, S] the weights; Gc [B*Lq, Dv] / Gw [B*Lq, S] the output gradients (either may be
// null). Gq [B*Lq, H], Gk [B*S, H], Gval [B*S, Dv] and Gv [H] must be zero on entry.
template <class T>
void additive_backward_raw(int64_t B, int64_t Lq, int64_t S, int64_t H, int64_t Dv, const T* Pq, const T* Pk,
                           const T* Pv, const T* Vv, const T* W, const T* Gc, const T* Gw, T* Gq, T* Gk, T* Gv,
                           T* Gval, bool parallel = true) {
  std::vector<T> ds(static_cast<size_t>(B * Lq * S)), gvpart(static_cast<size_t>(B * Lq * H), T(0));
  T *Ds = ds.data(), *Gvp = gvpart.data();
  parallel_for(0, B * Lq, parallel ? rows_grain(kGrainRowWorkBackward, S * H) : B * Lq,
               [&](int64_t r0, int64_t r1) {
    std::vector<T> tv(static_cast<size_t>(H));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / Lq;
      const T* wr = W + r * S;
      T* dr = Ds + r * S;
      T dot = 0;
      for (int64_t j = 0; j < S; ++j) {
        T gt = Gw ? Gw[r * S + j] : T(0);
        if (Gc) gt += dot_n(Gc + r * Dv, Vv + (b * S + j) * Dv, Dv);
        dr[j] = gt;
        dot += wr[j] * gt;
      }
      const T* qi = Pq + r * H;
      T* gq = Gq + r * H;
      T* gvp = Gvp + r * H;
      for (int64_t j = 0; j < S; ++j) {
        dr[j] = wr[j] * (dr[j] - dot);
        const T d = dr[j];
        if (d == T(0)) continue;
        tanh_of_sum(qi, Pk + (b * S + j) * H, tv.data(), H);
        for (int64_t h = 0; h < H; ++h) {
          const T t = tv[size_t(h)];
          gq[h] += d * Pv[h] * (T(1) - t * t);
          gvp[h] += d * t;
        }
      }
    }
  });
  parallel_for(0, B * S, parallel ? rows_grain(kGrainRowWorkBackward, Lq * H) : B * S,
               [&](int64_t r0, int64_t r1) {
    std::vector<T> tv(static_cast<size_t>(H));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / S, j = r % S;
      const T* kj = Pk + r * H;
      T* gk = Gk + r * H;
      T* gvl = Gval + r * Dv;
      for (int64_t i = 0; i < Lq; ++i) {
        const T d = Ds[(b * Lq + i) * S + j];
        if (d != T(0)) {
          tanh_of_sum(Pq + (b * Lq + i) * H, kj, tv.data(), H);
          for (int64_t h = 0; h < H; ++h) {
            const T t = tv[size_t(h)];
            gk[h] += d * Pv[h] * (T(1) - t * t);
          }
        }
        const T wij = W[(b * Lq + i) * S + j];
        if (Gc && wij != T(0)) {
          const T* gc = Gc + (b * Lq + i) * Dv;
          for (int64_t d2 = 0; d2 < Dv; ++d2) gvl[d2] += wij * gc[d2];
        }
      }
    }
  });
  for (int64_t r = 0; r < B * Lq; ++r)
    for (int64_t h = 0; h < H; ++h) Gv[h] += Gvp[r * H + h];
}

// Attention pooling forward (formulas in ops/additive_attention.hpp), one task per batch row b:
// Pa [B, T, H] pre-tanh activations, Pw2 [H], bias b2, Ph [B, T, D], M bool [B, T] (true = valid;
// null = all). Writes the weights Pw [B, T], the contexts Pc [B, D] and, when Pu is non-null,
// u = tanh(a) [B, T, H] for the backward.
template <class scalar_t>
void pooling_forward(int64_t B, int64_t T, int64_t H, int64_t D, const scalar_t* Pa, const scalar_t* Pw2,
                     scalar_t bias, const scalar_t* Ph, const uint8_t* M, scalar_t* Pc, scalar_t* Pw, scalar_t* Pu) {
  const bool track = Pu != nullptr;
  parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<uint8_t> allowed(static_cast<size_t>(T), 1);
    std::vector<scalar_t> scratch(track ? 0 : size_t(T * H));  // tanh(a) of one series
    for (int64_t b = b0; b < b1; ++b) {
      scalar_t* wr = Pw + b * T;
      scalar_t* ub = track ? Pu + b * T * H : scratch.data();
      kernels::cpu::tanh_n(Pa + b * T * H, ub, T * H);
      for (int64_t t = 0; t < T; ++t) {
        wr[t] = dot_n(Pw2, ub + t * H, H) + bias;  // a vector dot product: a scalar one is a chain of H dependent adds
        if (M) allowed[size_t(t)] = M[b * T + t];
      }
      add_masked_softmax_row(wr, allowed.data(), T);
      scalar_t* c = Pc + b * D;
      std::fill(c, c + D, scalar_t(0));
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t wt = wr[t];
        const scalar_t* ht = Ph + (b * T + t) * D;
        for (int64_t d = 0; d < D; ++d) c[d] += wt * ht[d];
      }
    }
  });
}

// Attention pooling backward (formulas beside the recorded backward in ops/additive_attention.hpp),
// one task per batch row b: Pu = tanh(a) [B, T, H], W the weights [B, T], Gc [B, D] / Gw [B, T]
// the output gradients (either may be null). Writes Ga [B, T, H], Gh [B, T, D] and adds the
// per-row partials of gw2 and gb2 into Gp [B, H + 1] (zero on entry).
template <class scalar_t>
void pooling_backward(int64_t B, int64_t T, int64_t H, int64_t D, const scalar_t* Pu, const scalar_t* Pw2,
                      const scalar_t* Ph, const scalar_t* W, const scalar_t* Gc, const scalar_t* Gw, scalar_t* Ga,
                      scalar_t* Gh, scalar_t* Gp) {
  parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> gt(static_cast<size_t>(T));
    for (int64_t b = b0; b < b1; ++b) {
      const scalar_t* wr = W + b * T;
      const scalar_t* gc = Gc ? Gc + b * D : nullptr;
      scalar_t dot = 0;
      for (int64_t t = 0; t < T; ++t) {
        scalar_t x = Gw ? Gw[b * T + t] : scalar_t(0);
        const scalar_t* ht = Ph + (b * T + t) * D;
        scalar_t* ght = Gh + (b * T + t) * D;
        if (gc) {
          x += dot_n(gc, ht, D);
          for (int64_t d = 0; d < D; ++d) ght[d] = wr[t] * gc[d];
        } else {
          std::fill(ght, ght + D, scalar_t(0));
        }
        gt[size_t(t)] = x;
        dot += wr[t] * x;
      }
      scalar_t* gp = Gp + b * (H + 1);
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t ds = wr[t] * (gt[size_t(t)] - dot);
        const scalar_t* ut = Pu + (b * T + t) * H;
        scalar_t* gat = Ga + (b * T + t) * H;
        for (int64_t k = 0; k < H; ++k) {
          gat[k] = ds * Pw2[k] * (scalar_t(1) - ut[k] * ut[k]);
          gp[k] += ds * ut[k];
        }
        gp[H] += ds;
      }
    }
  });
}

}  // namespace attn::kernels::cpu
