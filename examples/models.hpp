#pragma once
// The models of the reference tasks, shared by the example programs and bench/bench_tasks.cpp
// (so the benchmark times exactly what the examples train).
#include <attn/attn.hpp>
#include <attn/nn/attention/additive.hpp>
#include <attn/nn/rnn.hpp>

namespace examples {

using attn::Tensor;
namespace nn = attn::nn;

// BiLSTM -> attention pooling over time -> Linear(2H, 1): the seed's model.
class AnomalyModel : public nn::Module {
 public:
  AnomalyModel(int64_t in_channels, int64_t hidden)
      : lstm(nn::LSTMOptions(in_channels, hidden).bidirectional(true).batch_first(true)),
        attention(2 * hidden, 2 * hidden),
        fc(2 * hidden, 1) {
    register_module("lstm", lstm);
    register_module("attention", attention);
    register_module("fc", fc);
  }
  // Returns logits [B] and attention weights [B, T].
  std::pair<Tensor, Tensor> forward(const Tensor& x) {
    auto [h, state] = lstm.forward(x);
    auto [context, weights] = attention.forward(h);
    return {fc.forward(context).reshape({-1}), weights};
  }

  nn::LSTM lstm;
  nn::AttentionPooling attention;
  nn::Linear fc;
};

// The seed's AttentionLSTM: LSTM -> softmax_t(context(tanh(attn(h_t)))) -> weighted sum -> fc.
class ForecastModel : public nn::Module {
 public:
  ForecastModel(int64_t hidden, int64_t layers)
      : lstm(nn::LSTMOptions(1, hidden).num_layers(layers).batch_first(true)),
        attn_proj(hidden, hidden),
        context(hidden, 1, /*bias=*/false),
        fc(hidden, 1) {
    register_module("lstm", lstm);
    register_module("attention.attn", attn_proj);
    register_module("attention.context", context);
    register_module("fc", fc);
  }
  // x [N, T, 1] -> prediction [N, 1], weights [N, T]
  std::pair<Tensor, Tensor> forward(const Tensor& x) {
    auto [h, state] = lstm.forward(x);
    auto [ctx, w] = attn::attention_pooling(h, attn_proj.weight, attn_proj.bias, context.weight, Tensor());
    return {fc.forward(ctx), w};
  }

  nn::LSTM lstm;
  nn::Linear attn_proj, context, fc;
};

}  // namespace examples
