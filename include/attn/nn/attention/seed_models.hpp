#pragma once
// Two small models from seed 001, built from existing pieces with the seed's submodule names, so
// a PyTorch state dict of the seed's classes loads by name:
//
// BidirectionalAttentionGRU(input_size, hidden_size, num_layers, num_heads = 8):
//   gru: GRU(input, hidden, num_layers, batch_first, bidirectional) -> h [B, T, 2H]
//   attention: MultiheadAttention(2H, num_heads, batch_first) -> a, weights = attention(h, h, h)
//   w = softmax_t(sum_d a[b, t, d]) [B, T, 1];  pooled = sum_t a * w  [B, 2H];  fc: Linear(2H, 1)
//   returns (fc(pooled) [B, 1], weights [B, T, T])
//
// HierarchicalAttention(input_size, hidden_size, local_heads = 4, global_heads = 8):
//   local_attention: MultiheadAttention(input, local_heads) inside each window of window_size
//   steps (the seed loops over windows; here one call with a block-diagonal mask, the same
//   numbers) -> gru: GRU(input, hidden, batch_first) -> global_attention:
//   MultiheadAttention(hidden, global_heads) -> fc: Linear(hidden, 1) at the last step
//   returns (fc(g[:, -1]) [B, 1], global weights [B, T, T])
#include <utility>
#include <vector>
#include "../layers.hpp"
#include "../module.hpp"
#include "../rnn.hpp"
#include "multihead.hpp"

namespace attn::nn {

class BidirectionalAttentionGRU : public Module {
 public:
  BidirectionalAttentionGRU(int64_t input_size, int64_t hidden_size, int64_t num_layers, int64_t num_heads = 8)
      : gru(GRUOptions(input_size, hidden_size).num_layers(num_layers).batch_first(true).bidirectional(true)),
        attention(MultiheadAttentionOptions(2 * hidden_size, num_heads).batch_first(true)),
        fc(2 * hidden_size, 1) {
    register_module("gru", gru);
    register_module("attention", attention);
    register_module("fc", fc);
  }
  // x [B, T, input_size] -> (output [B, 1], attention weights [B, T, T])
  std::pair<Tensor, Tensor> forward(const Tensor& x) const {
    ATTN_CHECK(x.dim() == 3, "BidirectionalAttentionGRU: expected x [B, T, input_size], got ", to_string(x.shape()));
    Tensor h = gru.forward(x).first;
    auto [a, weights] = attention.forward(h, h, h);
    Tensor w = unsqueeze(softmax(sum(a, -1), 1), -1);  // [B, T, 1]
    return {fc.forward(sum(mul(a, w), 1)), weights};
  }

  GRU gru;
  MultiheadAttention attention;
  Linear fc;
};

class HierarchicalAttention : public Module {
 public:
  HierarchicalAttention(int64_t input_size, int64_t hidden_size, int64_t local_heads = 4, int64_t global_heads = 8)
      : local_attention(MultiheadAttentionOptions(input_size, local_heads).batch_first(true)),
        gru(GRUOptions(input_size, hidden_size).batch_first(true)),
        global_attention(MultiheadAttentionOptions(hidden_size, global_heads).batch_first(true)),
        fc(hidden_size, 1) {
    register_module("local_attention", local_attention);
    register_module("gru", gru);
    register_module("global_attention", global_attention);
    register_module("fc", fc);
  }
  // x [B, T, input_size] -> (output [B, 1], global attention weights [B, T, T])
  std::pair<Tensor, Tensor> forward(const Tensor& x, int64_t window_size = 10) const {
    ATTN_CHECK(x.dim() == 3 && window_size >= 1, "HierarchicalAttention: expected x [B, T, input_size] and "
               "window_size >= 1, got ", to_string(x.shape()), ", window_size ", window_size);
    const int64_t T = x.size(1);
    std::vector<bool> same_window(size_t(T * T));  // true = may attend: both in one window
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < T; ++j) same_window[size_t(i * T + j)] = i / window_size == j / window_size;
    Tensor local = local_attention.forward(x, x, x, Tensor(), false, Tensor::from_vector(same_window, {T, T})).first;
    Tensor h = gru.forward(local).first;
    auto [g, weights] = global_attention.forward(h, h, h);
    return {fc.forward(select(g, 1, T - 1)), weights};
  }

  MultiheadAttention local_attention;
  GRU gru;
  MultiheadAttention global_attention;
  Linear fc;
};

}  // namespace attn::nn
