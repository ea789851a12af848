#pragma once
// The models of the reference tasks, shared by the example programs and bench/bench_tasks.cpp
// (so the benchmark times exactly what the examples train).
#include <attn/attn.hpp>
#include <memory>
#include <string>

namespace examples {

using attn::Tensor;
namespace nn = attn::nn;

// Task A's model: BiLSTM -> [positional encoding] -> [self-attention block, residual] ->
// attention pooling over time -> Linear(2H, 1). With attention "additive" and no positional
// encoding it is exactly the seed's model (lstm, attention = Sequential(Linear, Tanh, Linear), fc).
struct AnomalyModelOptions {
  int64_t in_channels = 1, hidden = 32, length = 500;
  std::string attention = "additive";  // additive | multihead | linear | windowed | bigbird
  // bigbird: block-sparse self-attention (global block + sliding window + 1 random block, blocks of `window` steps)
  std::string positional = "none";     // none | sinusoidal | learned
  int64_t heads = 4, window = 16;      // multi-head / windowed settings
  int64_t outputs = 1;                 // 1: one logit (binary); K > 2: K class logits
  std::string attn_norm = "softmax";   // softmax | sparsemax | entmax15: the pooling's normalisation over time
};

class AnomalyModel : public nn::Module {
 public:
  explicit AnomalyModel(const AnomalyModelOptions& o)
      : lstm(nn::LSTMOptions(o.in_channels, o.hidden).bidirectional(true).batch_first(true)),
        attention(2 * o.hidden, 2 * o.hidden),
        fc(2 * o.hidden, o.outputs) {
    const int64_t d = 2 * o.hidden;
    register_module("lstm", lstm);
    if (o.positional == "sinusoidal") sinusoidal = register_module("pos", std::make_shared<nn::SinusoidalPositionalEncoding>(d));
    else if (o.positional == "learned") learned = register_module("pos", std::make_shared<nn::LearnedPositionalEncoding>(o.length, d));
    if (o.attention == "multihead")
      mha = register_module("self_attn", std::make_shared<nn::MultiheadAttention>(nn::MultiheadAttentionOptions(d, o.heads).batch_first(true)));
    else if (o.attention == "linear")
      linear = register_module("self_attn", std::make_shared<nn::LinearAttention>(d, o.heads));
    else if (o.attention == "windowed")
      windowed = register_module("self_attn", std::make_shared<nn::WindowedAttention>(d, o.heads, o.window, o.window));
    else if (o.attention == "bigbird")
      sparse = register_module("self_attn", std::make_shared<nn::BlockSparseAttention>(
                                                nn::BlockSparseAttentionOptions(d, o.heads).pattern("bigbird").block(o.window)));
    register_module("attention", attention);
    if (o.attn_norm == "sparsemax") attention.normalization(nn::AttentionPooling::Normalization::Sparsemax);
    else if (o.attn_norm == "entmax15") attention.normalization(nn::AttentionPooling::Normalization::Entmax15);
    register_module("fc", fc);
  }
  AnomalyModel(int64_t in_channels, int64_t hidden) : AnomalyModel(options(in_channels, hidden)) {}

  // Returns logits [B] and the pooling's attention weights over time [B, T].
  std::pair<Tensor, Tensor> forward(const Tensor& x) {
    auto [h, state] = lstm.forward(x);
    if (sinusoidal) h = sinusoidal->forward(h);
    if (learned) h = learned->forward(h);
    if (mha) h = h + mha->forward(h, h, h, Tensor(), /*need_weights=*/false).first;
    if (linear) h = h + linear->forward(h);
    if (windowed) h = h + windowed->forward(h).first;
    if (sparse) h = h + sparse->forward(h);
    auto [context, weights] = attention.forward(h);
    const Tensor logits = fc.forward(context);  // [B, outputs]
    return {fc.out_features() == 1 ? logits.reshape({-1}) : logits, weights};
  }

  nn::LSTM lstm;
  nn::AttentionPooling attention;
  nn::Linear fc;
  std::shared_ptr<nn::SinusoidalPositionalEncoding> sinusoidal;
  std::shared_ptr<nn::LearnedPositionalEncoding> learned;
  std::shared_ptr<nn::MultiheadAttention> mha;
  std::shared_ptr<nn::LinearAttention> linear;
  std::shared_ptr<nn::WindowedAttention> windowed;
  std::shared_ptr<nn::BlockSparseAttention> sparse;

 private:
  static AnomalyModelOptions options(int64_t in_channels, int64_t hidden) {
    AnomalyModelOptions o;
    o.in_channels = in_channels;
    o.hidden = hidden;
    return o;
  }
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
