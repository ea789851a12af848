#pragma once
// nn::AdditiveAttention (Bahdanau, for seq2seq decoders) and nn::AttentionPooling (the
// self-attention pooling of the sine-anomaly classifier). Both run one fused node after their projections;
// see ops/additive_attention.hpp for the formulas and backward.
#include <utility>
#include "../../ops/additive_attention.hpp"
#include "../../ops/sparsemax.hpp"
#include "../layers.hpp"
#include "../module.hpp"

namespace attn::nn {

// score_ij = v^T tanh(W_q q_i + W_k k_j), softmax over keys j, context_i = sum_j w_ij values_j.
// Parameters (PyTorch names): W_q.weight [hidden, query_dim], W_k.weight [hidden, key_dim],
// v.weight [1, hidden]; with bias = true also W_q.bias and W_k.bias.
class AdditiveAttention : public Module {
 public:
  AdditiveAttention(int64_t query_dim, int64_t key_dim, int64_t hidden_dim, bool bias = false)
      : W_q(query_dim, hidden_dim, bias), W_k(key_dim, hidden_dim, bias), v(hidden_dim, 1, false) {
    register_module("W_q", W_q);
    register_module("W_k", W_k);
    register_module("v", v);
  }

  // query [B, Lq, Dq] or [B, Dq] (one decoder step), keys [B, S, Dk], values [B, S, Dv];
  // mask bool [B, S] or [B, Lq, S], true = may attend. Returns (context, weights):
  // [B, Lq, Dv] and [B, Lq, S], or [B, Dv] and [B, S] for a 2-D query.
  std::pair<Tensor, Tensor> forward(const Tensor& query, const Tensor& keys, const Tensor& values,
                                    const Tensor& mask = Tensor()) const {
    ATTN_CHECK(query.dim() == 2 || query.dim() == 3, "AdditiveAttention: query must be [B, Dq] or [B, Lq, Dq], got ",
               to_string(query.shape()));
    if (query.dim() == 2)  // one decoder step: one node with the projections
      return additive_attention_step(query, keys, values, W_q.weight, W_k.weight, v.weight, mask, W_q.bias, W_k.bias);
    return additive_attention(query, keys, values, W_q.weight, W_k.weight, v.weight, mask, W_q.bias, W_k.bias);
  }
  // keys = values (the usual encoder outputs).
  std::pair<Tensor, Tensor> forward(const Tensor& query, const Tensor& encoder_outputs) const {
    return forward(query, encoder_outputs, encoder_outputs);
  }

  Linear W_q, W_k, v;
};

// Self-attention pooling over time: score_t = Linear(hidden, 1)(tanh(Linear(input, hidden)(h_t))),
// w = softmax_t(score), context = sum_t w_t h_t. The submodules are named "0" and "2" so the
// parameter names (0.weight, 0.bias, 2.weight, 2.bias) match PyTorch's
// nn.Sequential(nn.Linear(input, hidden), nn.Tanh(), nn.Linear(hidden, 1)) of the seed's anomaly classifier.
class AttentionPooling : public Module {
 public:
  AttentionPooling(int64_t input_dim, int64_t hidden_dim) : proj(input_dim, hidden_dim), score(hidden_dim, 1) {
    register_module("0", proj);
    register_module("2", score);
  }

  // The normalisation of the scores over time: softmax (the fused kernel), or sparsemax /
  // entmax15 (ops/sparsemax.hpp; composed, CPU only), which give exact zeros so the weights
  // point at a few steps.
  enum class Normalization { Softmax, Sparsemax, Entmax15 };
  AttentionPooling& normalization(Normalization n) {
    norm_ = n;
    return *this;
  }
  Normalization normalization() const { return norm_; }

  // h [B, T, D]; mask bool [B, T], true = valid step. Returns (context [B, D], weights [B, T]).
  std::pair<Tensor, Tensor> forward(const Tensor& h, const Tensor& mask = Tensor()) const {
    if (norm_ == Normalization::Softmax) return attention_pooling(h, proj.weight, proj.bias, score.weight, score.bias, mask);
    ATTN_CHECK(h.dim() == 3 && h.size(2) == proj.in_features(), "AttentionPooling: expected h [B, T, ", proj.in_features(),
               "], got ", to_string(h.shape()));
    ATTN_CHECK(!mask.defined() || (mask.dtype() == kBool && mask.shape() == Shape({h.size(0), h.size(1)})),
               "AttentionPooling: mask must be bool [B, T] for h ", to_string(h.shape()));
    return attn::detail::pooling_composed(linear(h, proj.weight, proj.bias), reshape(score.weight, {proj.out_features()}),
                                    score.bias.defined() ? reshape(score.bias, {1}) : Tensor(), h, mask,
                                    norm_ == Normalization::Sparsemax ? &attn::sparsemax : &attn::entmax15);
  }
  // Variable-length batch: steps t >= lengths[b] are ignored.
  std::pair<Tensor, Tensor> forward(const Tensor& h, const std::vector<int64_t>& lengths) const {
    ATTN_CHECK(h.dim() == 3 && int64_t(lengths.size()) == h.size(0), "AttentionPooling: ", lengths.size(),
               " lengths for h ", to_string(h.shape()));
    for (int64_t len : lengths)  // checked here so the error names AttentionPooling and h's shape
      ATTN_CHECK(len >= 0 && len <= h.size(1), "AttentionPooling: length ", len, " outside [0, ", h.size(1),
                 "] for h ", to_string(h.shape()));
    return forward(h, lengths_to_mask(lengths, h.size(1)));
  }

  Linear proj, score;

 private:
  Normalization norm_ = Normalization::Softmax;
};

}  // namespace attn::nn
