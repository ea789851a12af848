#pragma once
// Positional encodings as modules: sinusoidal (fixed), learned (a table), relative position bias
// (an additive attention bias per head), and rotary (RoPE, see ops/positional.hpp).
#include <cmath>
#include "../ops/nn_functional.hpp"
#include "../ops/positional.hpp"
#include "../ops/shape.hpp"
#include "init.hpp"
#include "layers.hpp"
#include "module.hpp"

namespace attn::nn {

// x + pe[offset : offset + L] with the standard sin/cos table, x: [..., L, d_model] (positions
// along dim -2, e.g. [B, L, d] batch first). max_len = 0: any length (the table is computed for
// the length asked and cached); max_len > 0: an error past it.
class SinusoidalPositionalEncoding : public Module {
 public:
  explicit SinusoidalPositionalEncoding(int64_t d_model, int64_t max_len = 0) : d_(d_model), max_len_(max_len) {
    ATTN_CHECK(d_model > 0 && max_len >= 0, "SinusoidalPositionalEncoding: need d_model > 0 and max_len >= 0, got ",
               d_model, " and ", max_len);
  }
  // The table [L, d_model] for positions offset .. offset+L-1.
  Tensor encoding(int64_t L, int64_t offset = 0, DType dtype = kFloat32) const {
    ATTN_CHECK(max_len_ == 0 || offset + L <= max_len_, "SinusoidalPositionalEncoding: positions up to ", offset + L,
               " exceed max_len ", max_len_);
    return sinusoidal_encoding(L, d_, offset, dtype);
  }
  Tensor forward(const Tensor& x, int64_t offset = 0) const {
    ATTN_CHECK(x.dim() >= 2 && x.size(-1) == d_, "SinusoidalPositionalEncoding: x ", to_string(x.shape()),
               " must be [..., L, ", d_, "]");
    return add(x, encoding(x.size(-2), offset, x.dtype()));
  }

 private:
  int64_t d_, max_len_;
};

// x + weight[offset : offset + L], weight [max_len, d_model] learned (init N(0, 0.02)).
class LearnedPositionalEncoding : public Module {
 public:
  LearnedPositionalEncoding(int64_t max_len, int64_t d_model) : max_len_(max_len), d_(d_model) {
    ATTN_CHECK(max_len > 0 && d_model > 0, "LearnedPositionalEncoding: sizes must be positive, got ", max_len, " x ",
               d_model);
    weight = Tensor::empty({max_len, d_model});
    init::normal_(weight, 0.0, 0.02);
    register_parameter("weight", weight);
  }
  Tensor forward(const Tensor& x, int64_t offset = 0) const {
    ATTN_CHECK(x.dim() >= 2 && x.size(-1) == d_, "LearnedPositionalEncoding: x ", to_string(x.shape()),
               " must be [..., L, ", d_, "]");
    const int64_t L = x.size(-2);
    ATTN_CHECK(offset >= 0 && offset + L <= max_len_, "LearnedPositionalEncoding: sequence of length ", L,
               " at offset ", offset, " exceeds max_len ", max_len_, " (x ", to_string(x.shape()), ")");
    return add(x, narrow(weight, 0, offset, L));
  }
  Tensor weight;

 private:
  int64_t max_len_, d_;
};

// Clipped relative position bias (Shaw et al. / T5 without buckets): one learned scalar per head
// and per clipped offset d = clamp(j - i, -max_distance, max_distance):
//   bias[h, i, j] = weight[d + max_distance, h],   weight: [2 * max_distance + 1, num_heads]
// forward(L, S) gives [H, L, S] to pass as attn_mask (additive) to scaled_dot_product_attention or
// MultiheadAttention; bias_for_offsets(offsets) gives [H, *offsets.shape] for any offsets (e.g.
// a windowed attention's band). Differentiable w.r.t. weight. Init N(0, 0.02)... zero-mean small.
class RelativePositionBias : public Module {
 public:
  RelativePositionBias(int64_t num_heads, int64_t max_distance) : H_(num_heads), max_(max_distance) {
    ATTN_CHECK(num_heads > 0 && max_distance >= 0, "RelativePositionBias: need num_heads > 0 and max_distance >= 0, got ",
               num_heads, " and ", max_distance);
    weight = Tensor::empty({2 * max_distance + 1, num_heads});
    init::normal_(weight, 0.0, 0.02);
    register_parameter("weight", weight);
  }
  // offsets: int64 tensor of key position minus query position, any shape -> [H, *offsets.shape]
  Tensor bias_for_offsets(const Tensor& offsets) const {
    ATTN_CHECK(offsets.dtype() == kInt64, "RelativePositionBias: offsets must be int64, got ",
               dtype_name(offsets.dtype()));
    Tensor idx = Tensor::empty(offsets.shape(), kInt64);
    const int64_t* o = offsets.data<int64_t>();
    int64_t* p = idx.data<int64_t>();
    for (int64_t i = 0, n = offsets.numel(); i < n; ++i) p[i] = std::clamp(o[i], -max_, max_) + max_;
    Tensor e = embedding(weight, idx);  // [*offsets.shape, H]
    std::vector<int64_t> perm{e.dim() - 1};
    for (int64_t d = 0; d + 1 < e.dim(); ++d) perm.push_back(d);
    return permute(e, perm);
  }
  // [H, L, S] for queries at q_offset + i and keys at j (offset j - i - q_offset).
  Tensor forward(int64_t L, int64_t S, int64_t q_offset = 0) const {
    ATTN_CHECK(L >= 0 && S >= 0, "RelativePositionBias: sizes must be non-negative, got ", L, " x ", S);
    Tensor off = Tensor::empty({L, S}, kInt64);
    int64_t* p = off.data<int64_t>();
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j < S; ++j) p[i * S + j] = j - i - q_offset;
    return bias_for_offsets(off);
  }
  int64_t num_heads() const { return H_; }
  int64_t max_distance() const { return max_; }
  Tensor weight;

 private:
  int64_t H_, max_;
};

// RoPE as a module (no parameters): forward(x [..., L, E], offset) = apply_rotary(x, offset, base).
class RotaryEmbedding : public Module {
 public:
  explicit RotaryEmbedding(double base = 10000.0) : base_(base) {}
  Tensor forward(const Tensor& x, int64_t offset = 0) const { return apply_rotary(x, offset, base_); }

 private:
  double base_;
};

// Vector-form relative positions (Shaw, Uszkoreit and Vaswani, 2018; the seed's
// RelativePositionalEncoding): one learned vector per clipped offset
// d = clamp(j - i, -max_rel_pos, max_rel_pos) of key j from query i,
//   a[i, j] = rel_pos_embedding.weight[d + max_rel_pos],   weight [2 max_rel_pos + 1, dim]
// forward(Lq, Lk) gives the seed's [Lq, Lk, dim] table. MultiheadAttention's
// relative_positions(k) option holds two of these (keys and values, dim = head_dim) and applies
//   score_ij = q_i . (k_j + aK[i, j]) / sqrt(dh),    out_i = sum_j w_ij (v_j + aV[i, j]).
class RelativePositionalEncoding : public Module {
 public:
  explicit RelativePositionalEncoding(int64_t dim, int64_t max_rel_pos = 128)
      : max_(check(dim, max_rel_pos)), rel_pos_embedding(2 * max_rel_pos + 1, dim) {
    register_module("rel_pos_embedding", rel_pos_embedding);
  }
  // [Lq, Lk, dim]: the vector of (i, j) for queries at q_offset + i and keys at j.
  Tensor forward(int64_t Lq, int64_t Lk, int64_t q_offset = 0) const {
    Tensor idx = Tensor::empty({Lq, Lk}, kInt64);
    int64_t* p = idx.data<int64_t>();
    for (int64_t i = 0; i < Lq; ++i)
      for (int64_t j = 0; j < Lk; ++j) p[i * Lk + j] = bucket(i + q_offset, j);
    return rel_pos_embedding.forward(idx);
  }
  // [Lq, Lk, 2 max_rel_pos + 1]: 1 at the offset bucket of (i, j). Products with it gather the
  // per-offset terms into [.., Lq, Lk] and sum weights per offset (used by MultiheadAttention).
  Tensor one_hot(int64_t Lq, int64_t Lk, int64_t q_offset, DType dtype) const {
    const int64_t R = 2 * max_ + 1;
    Tensor oh = Tensor::zeros({Lq, Lk, R}, dtype);
    ATTN_DISPATCH_FLOATING(dtype, "RelativePositionalEncoding", [&] {
      scalar_t* p = oh.data<scalar_t>();
      for (int64_t i = 0; i < Lq; ++i)
        for (int64_t j = 0; j < Lk; ++j) p[(i * Lk + j) * R + bucket(i + q_offset, j)] = scalar_t(1);
    });
    return oh;
  }
  const Tensor& weight() const { return rel_pos_embedding.weight; }
  int64_t max_rel_pos() const { return max_; }

 private:
  static int64_t check(int64_t dim, int64_t m) {
    ATTN_CHECK(dim > 0 && m >= 0, "RelativePositionalEncoding: need dim > 0 and max_rel_pos >= 0, got ", dim, " and ",
               m);
    return m;
  }
  int64_t bucket(int64_t qpos, int64_t j) const { return std::clamp(j - qpos, -max_, max_) + max_; }
  int64_t max_;

 public:
  Embedding rel_pos_embedding;
};

}  // namespace attn::nn
