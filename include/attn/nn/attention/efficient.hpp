#pragma once
// Modules around the efficient attention ops: nn::LinearAttention (elu+1 feature map, O(L))
// and nn::WindowedAttention (sliding window, O(L w)). Both project q/k/v with Linear layers,
// split heads ([B, L, D] -> [B, H, L, D/H]), run the fused op, merge heads and apply out_proj.
#include <limits>
#include <utility>
#include "../../ops/linear_attention.hpp"
#include "../../ops/shape.hpp"
#include "../../ops/windowed_attention.hpp"
#include "../layers.hpp"
#include "../module.hpp"

namespace attn::nn {
namespace efficient_detail {
inline Tensor split_heads(const Tensor& x, int64_t heads) {  // [B, L, D] -> [B, H, L, D/H]
  return permute(reshape(x, {x.size(0), x.size(1), heads, x.size(2) / heads}), {0, 2, 1, 3});
}
inline Tensor merge_heads(const Tensor& x) {  // [B, H, L, Dh] -> [B, L, H*Dh]
  return reshape(permute(x, {0, 2, 1, 3}), {x.size(0), x.size(2), x.size(1) * x.size(3)});
}
inline void check_embed(const char* op, int64_t embed_dim, int64_t num_heads) {
  ATTN_CHECK(embed_dim > 0 && num_heads > 0 && embed_dim % num_heads == 0, op, ": embed_dim ", embed_dim,
             " must be a positive multiple of num_heads ", num_heads);
}
inline void check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, int64_t D) {
  ATTN_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3 && q.size(2) == D && k.size(2) == D && v.size(2) == D &&
                 q.size(0) == k.size(0) && k.size(0) == v.size(0) && k.size(1) == v.size(1),
             op, ": expected query [B, L, ", D, "], key/value [B, S, ", D, "], got ", to_string(q.shape()), ", ",
             to_string(k.shape()), ", ", to_string(v.shape()));
}
}  // namespace efficient_detail

// Multi-head linear attention. Parameters: q_proj, k_proj, v_proj, out_proj (.weight, .bias).
class LinearAttention : public Module {
 public:
  LinearAttention(int64_t embed_dim, int64_t num_heads, bool causal = false, double eps = 1e-6)
      : q_proj(embed_dim, embed_dim), k_proj(embed_dim, embed_dim), v_proj(embed_dim, embed_dim),
        out_proj(embed_dim, embed_dim), embed_dim_(embed_dim), heads_(num_heads), causal_(causal), eps_(eps) {
    efficient_detail::check_embed("LinearAttention", embed_dim, num_heads);
    register_module("q_proj", q_proj);
    register_module("k_proj", k_proj);
    register_module("v_proj", v_proj);
    register_module("out_proj", out_proj);
  }
  // query [B, L, D], key/value [B, S, D] (causal: S == L) -> [B, L, D].
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value) const {
    efficient_detail::check_qkv("LinearAttention", query, key, value, embed_dim_);
    Tensor q = efficient_detail::split_heads(q_proj.forward(query), heads_), k = efficient_detail::split_heads(k_proj.forward(key), heads_),
           v = efficient_detail::split_heads(v_proj.forward(value), heads_);
    return out_proj.forward(efficient_detail::merge_heads(linear_attention(q, k, v, causal_, eps_)));
  }
  Tensor forward(const Tensor& x) const { return forward(x, x, x); }
  bool causal() const { return causal_; }

  Linear q_proj, k_proj, v_proj, out_proj;

 private:
  int64_t embed_dim_, heads_;
  bool causal_;
  double eps_;
};

// Multi-head sliding-window attention; optional learned relative-position bias per head and
// offset (parameter "relative_bias" [num_heads, W], zero-initialised).
class WindowedAttention : public Module {
 public:
  WindowedAttention(int64_t embed_dim, int64_t num_heads, int64_t left, int64_t right, bool causal = false,
                    bool relative_bias = false)
      : q_proj(embed_dim, embed_dim), k_proj(embed_dim, embed_dim), v_proj(embed_dim, embed_dim),
        out_proj(embed_dim, embed_dim), embed_dim_(embed_dim), heads_(num_heads), left_(left),
        right_(causal ? 0 : right), causal_(causal) {
    efficient_detail::check_embed("WindowedAttention", embed_dim, num_heads);
    ATTN_CHECK(left >= 0 && right >= 0, "WindowedAttention: window sizes must be >= 0, got left=", left,
               " right=", right);
    register_module("q_proj", q_proj);
    register_module("k_proj", k_proj);
    register_module("v_proj", v_proj);
    register_module("out_proj", out_proj);
    if (relative_bias) {
      this->relative_bias = Tensor::zeros({num_heads, left_ + right_ + 1});
      register_parameter("relative_bias", this->relative_bias);
    }
  }
  // query [B, L, D], key/value [B, S, D]; key_padding_mask bool [B, S], true = padded.
  // Returns (out [B, L, D], band weights [B, H, L, W]).
  std::pair<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const Tensor& key_padding_mask = Tensor()) const {
    efficient_detail::check_qkv("WindowedAttention", query, key, value, embed_dim_);
    Tensor q = efficient_detail::split_heads(q_proj.forward(query), heads_), k = efficient_detail::split_heads(k_proj.forward(key), heads_),
           v = efficient_detail::split_heads(v_proj.forward(value), heads_);
    auto [o, w] = windowed_attention(q, k, v, left_, right_, causal_, std::numeric_limits<double>::quiet_NaN(),
                                     key_padding_mask, relative_bias);
    return {out_proj.forward(efficient_detail::merge_heads(o)), w};
  }
  std::pair<Tensor, Tensor> forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) const {
    return forward(x, x, x, key_padding_mask);
  }
  int64_t left() const { return left_; }
  int64_t right() const { return right_; }

  Linear q_proj, k_proj, v_proj, out_proj;
  Tensor relative_bias;

 private:
  int64_t embed_dim_, heads_, left_, right_;
  bool causal_;
};

}  // namespace attn::nn
