#pragma once
// Modules around the efficient attention ops: nn::LinearAttention (elu+1 feature map, O(L)),
// nn::WindowedAttention (sliding window, O(L w)) and nn::BlockSparseAttention (strided, dilated
// window, global + window, BigBird patterns; O(L x kept blocks)). Each projects q/k/v with Linear
// layers, splits heads ([B, L, D] -> [B, H, L, D/H]), runs the fused op, merges heads and applies
// out_proj.
#include <limits>
#include <string>
#include <utility>
#include "../../core/random.hpp"
#include "../../ops/block_sparse_attention.hpp"
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

#define ATTN_EFF_OPTION(cls, type, name) \
  cls& name(type v) {                   \
    name##_ = v;                        \
    return *this;                       \
  }                                     \
  type name() const { return name##_; }

struct LinearAttentionOptions {
  LinearAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
  ATTN_EFF_OPTION(LinearAttentionOptions, int64_t, embed_dim)
  ATTN_EFF_OPTION(LinearAttentionOptions, int64_t, num_heads)
  ATTN_EFF_OPTION(LinearAttentionOptions, bool, causal)
  ATTN_EFF_OPTION(LinearAttentionOptions, double, eps)
  ATTN_EFF_OPTION(LinearAttentionOptions, double, dropout)  // key dropout in training (see linear_attention)
 private:
  int64_t embed_dim_, num_heads_;
  bool causal_ = false;
  double eps_ = 1e-6, dropout_ = 0.0;
};

// Multi-head linear attention. Parameters: q_proj, k_proj, v_proj, out_proj (.weight, .bias).
class LinearAttention : public Module {
 public:
  LinearAttention(int64_t embed_dim, int64_t num_heads, bool causal = false, double eps = 1e-6)
      : LinearAttention(LinearAttentionOptions(embed_dim, num_heads).causal(causal).eps(eps)) {}
  explicit LinearAttention(const LinearAttentionOptions& o)
      : q_proj(o.embed_dim(), o.embed_dim()), k_proj(o.embed_dim(), o.embed_dim()),
        v_proj(o.embed_dim(), o.embed_dim()), out_proj(o.embed_dim(), o.embed_dim()), embed_dim_(o.embed_dim()),
        heads_(o.num_heads()), causal_(o.causal()), eps_(o.eps()), dropout_(o.dropout()) {
    efficient_detail::check_embed("LinearAttention", embed_dim_, heads_);
    ATTN_CHECK(dropout_ >= 0.0 && dropout_ < 1.0, "LinearAttention: dropout must be in [0, 1), got ", dropout_);
    register_module("q_proj", q_proj);
    register_module("k_proj", k_proj);
    register_module("v_proj", v_proj);
    register_module("out_proj", out_proj);
  }
  // query [B, L, D], key/value [B, S, D] (causal: S == L) -> [B, L, D]; key_padding_mask bool
  // [B, S], true = padded. Dropout only in training mode.
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const Tensor& key_padding_mask = Tensor()) const {
    efficient_detail::check_qkv("LinearAttention", query, key, value, embed_dim_);
    Tensor q = efficient_detail::split_heads(q_proj.forward(query), heads_), k = efficient_detail::split_heads(k_proj.forward(key), heads_),
           v = efficient_detail::split_heads(v_proj.forward(value), heads_);
    return out_proj.forward(efficient_detail::merge_heads(
        linear_attention(q, k, v, causal_, eps_, key_padding_mask, is_training() ? dropout_ : 0.0)));
  }
  Tensor forward(const Tensor& x) const { return forward(x, x, x); }
  bool causal() const { return causal_; }

  Linear q_proj, k_proj, v_proj, out_proj;

 private:
  int64_t embed_dim_, heads_;
  bool causal_;
  double eps_, dropout_;
};

// The layout a BlockSparseAttention module uses, by pattern name (see BlockSparseLayout):
//   "sliding_window" (window, dilation), "strided" (window = local blocks, stride),
//   "global_window" (global, window), "bigbird" (global, window, random; drawn from seed).
struct BlockSparseAttentionOptions {
  BlockSparseAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, embed_dim)
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, num_heads)
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, std::string, pattern)
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, block)
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, window)    // blocks each side (strided: local blocks)
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, dilation)  // sliding_window
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, stride)    // strided
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, global)    // global_window, bigbird: leading global blocks
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, int64_t, random)    // bigbird: random blocks per query block
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, uint64_t, seed)     // bigbird: the random blocks' generator seed
  ATTN_EFF_OPTION(BlockSparseAttentionOptions, bool, causal)

  // The layout for sequences of length L.
  BlockSparseLayout layout(int64_t L) const {
    if (pattern_ == "sliding_window") return BlockSparseLayout::sliding_window(L, block_, window_, dilation_, causal_);
    if (pattern_ == "strided") return BlockSparseLayout::strided(L, block_, window_, stride_, causal_);
    if (pattern_ == "global_window") return BlockSparseLayout::global_window(L, block_, window_, global_, causal_);
    if (pattern_ == "bigbird") {
      Generator gen(seed_);
      return BlockSparseLayout::bigbird(L, block_, window_, global_, random_, &gen, causal_);
    }
    ATTN_CHECK(false, "BlockSparseAttention: unknown pattern \"", pattern_,
               "\" (sliding_window, strided, global_window, bigbird)");
    return BlockSparseLayout();
  }

 private:
  int64_t embed_dim_, num_heads_;
  std::string pattern_ = "sliding_window";
  int64_t block_ = 64, window_ = 1, dilation_ = 1, stride_ = 4, global_ = 1, random_ = 1;
  uint64_t seed_ = 0;
  bool causal_ = false;
};
#undef ATTN_EFF_OPTION

// Multi-head block-sparse self-attention. Parameters: q_proj, k_proj, v_proj, out_proj. The layout
// is rebuilt from the options for each call's length (cheap: O(kept blocks)), so one module
// serves any L and random blocks repeat for a given seed.
class BlockSparseAttention : public Module {
 public:
  explicit BlockSparseAttention(const BlockSparseAttentionOptions& o)
      : q_proj(o.embed_dim(), o.embed_dim()), k_proj(o.embed_dim(), o.embed_dim()),
        v_proj(o.embed_dim(), o.embed_dim()), out_proj(o.embed_dim(), o.embed_dim()), opt_(o) {
    efficient_detail::check_embed("BlockSparseAttention", o.embed_dim(), o.num_heads());
    (void)o.layout(1);  // rejects an unknown pattern or bad sizes now, not at the first forward
    register_module("q_proj", q_proj);
    register_module("k_proj", k_proj);
    register_module("v_proj", v_proj);
    register_module("out_proj", out_proj);
  }
  // x [B, L, D] -> [B, L, D]; key_padding_mask bool [B, L], true = padded.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) const {
    efficient_detail::check_qkv("BlockSparseAttention", x, x, x, opt_.embed_dim());
    const int64_t H = opt_.num_heads();
    Tensor q = efficient_detail::split_heads(q_proj.forward(x), H), k = efficient_detail::split_heads(k_proj.forward(x), H),
           v = efficient_detail::split_heads(v_proj.forward(x), H);
    return out_proj.forward(efficient_detail::merge_heads(block_sparse_attention(
        q, k, v, opt_.layout(x.size(1)), std::numeric_limits<double>::quiet_NaN(), key_padding_mask)));
  }
  const BlockSparseAttentionOptions& options() const { return opt_; }

  Linear q_proj, k_proj, v_proj, out_proj;

 private:
  BlockSparseAttentionOptions opt_;
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
