#pragma once
// The models of the reference tasks, shared by the example programs and bench/bench_tasks.cpp
// (so the benchmark times exactly what the examples train).
#include <attn/attn.hpp>
#include <attn/nn/conv.hpp>
#include <memory>
#include <string>

namespace examples {

using attn::Tensor;
namespace nn = attn::nn;

// Task A's model: encoder -> [positional encoding] -> [self-attention block, residual] ->
// pooling over time -> Linear(2H, 1). With the BiLSTM encoder, attention "additive", attention
// pooling and no positional encoding it is exactly the seed's model (lstm, attention =
// Sequential(Linear, Tanh, Linear), fc).
// Where the attention peak lands (docs/examples.md, "Attention that points at the anomaly"): a
// BiLSTM state carries the anomaly to every step, so the peak can sit anywhere. The conv encoders
// (two Conv1d + leaky ReLU, 25 steps of receptive field) give features that see only their
// neighbourhood. Centred ("conv"), the strongest local evidence of a flat segment is the jump
// back to the sine at its end, and the peak lands a few steps after the segment; "conv-ahead"
// (steps t .. t+24) sees that jump from inside the segment.
struct AnomalyModelOptions {
  int64_t in_channels = 1, hidden = 32, length = 500;
  std::string encoder = "bilstm";      // bilstm | conv | conv-ahead
  std::string attention = "additive";  // additive | multihead | linear | windowed | bigbird
  // bigbird: block-sparse self-attention (global block + sliding window + 1 random block, blocks of `window` steps)
  std::string positional = "none";     // none | sinusoidal | learned
  int64_t heads = 4, window = 16;      // multi-head / windowed settings
  int64_t outputs = 1;                 // 1: one logit (binary); K > 2: K class logits
  std::string attn_norm = "softmax";   // softmax | sparsemax | entmax15: the pooling's normalisation over time
  // attention: the seed's pooling (weights from a scorer, the classifier reads the weighted sum);
  // evidence: each step's own logit z_t = fc(h_t), weights a = softmax_t(z), logit = sum_t a_t z_t
  // (a smooth maximum over steps, binary only): the weight peaks where the evidence is strongest.
  std::string pooling = "attention";
};

class AnomalyModel : public nn::Module {
 public:
  explicit AnomalyModel(const AnomalyModelOptions& o)
      : lstm(nn::LSTMOptions(o.in_channels, o.hidden).bidirectional(true).batch_first(true)),
        attention(2 * o.hidden, 2 * o.hidden),
        fc(2 * o.hidden, o.outputs) {
    const int64_t d = 2 * o.hidden;
    if (o.encoder != "bilstm") {
      // kernel 9, then kernel 9 dilated by 2: 1 + 8 + 16 = 25 input steps per output step, centred
      // ("conv") or steps t .. t+24 ("conv-ahead": a causal convolution of the time-reversed series)
      const bool one_sided = o.encoder == "conv-ahead";
      ahead = one_sided;
      conv1 = register_module("conv1", std::make_shared<nn::Conv1d>(nn::Conv1dOptions(o.in_channels, d, 9).padding(one_sided ? 0 : 4).causal(one_sided)));
      conv2 = register_module("conv2", std::make_shared<nn::Conv1d>(nn::Conv1dOptions(d, d, 9).padding(one_sided ? 0 : 8).dilation(2).causal(one_sided)));
    } else {
      register_module("lstm", lstm);
    }
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
    evidence = o.pooling == "evidence";
    norm = o.attn_norm;
    if (evidence && o.outputs != 1) throw std::invalid_argument("AnomalyModel: pooling \"evidence\" is binary only");
    if (!evidence) register_module("attention", attention);
    if (o.attn_norm == "sparsemax") attention.normalization(nn::AttentionPooling::Normalization::Sparsemax);
    else if (o.attn_norm == "entmax15") attention.normalization(nn::AttentionPooling::Normalization::Entmax15);
    register_module("fc", fc);
  }
  AnomalyModel(int64_t in_channels, int64_t hidden) : AnomalyModel(options(in_channels, hidden)) {}

  // Returns logits [B] and the pooling's attention weights over time [B, T].
  std::pair<Tensor, Tensor> forward(const Tensor& x) {
    Tensor h;
    if (conv1) {
      Tensor xt = x.transpose(1, 2);
      if (ahead) xt = attn::flip(xt, {2});
      // leaky ReLU: with plain ReLU one seed in three lost every unit in the first epoch
      h = attn::leaky_relu(conv2->forward(attn::leaky_relu(conv1->forward(xt))));
      if (ahead) h = attn::flip(h, {2});
      h = h.transpose(1, 2);
    }
    else h = lstm.forward(x).first;
    if (sinusoidal) h = sinusoidal->forward(h);
    if (learned) h = learned->forward(h);
    if (mha) h = h + mha->forward(h, h, h, Tensor(), /*need_weights=*/false).first;
    if (linear) h = h + linear->forward(h);
    if (windowed) h = h + windowed->forward(h).first;
    if (sparse) h = h + sparse->forward(h);
    if (evidence) {
      const Tensor z = fc.forward(h).squeeze(-1);  // [B, T]
      const Tensor a = norm == "sparsemax" ? attn::sparsemax(z, 1) : norm == "entmax15" ? attn::entmax15(z, 1) : attn::softmax(z, 1);
      return {attn::sum(a * z, 1), a};
    }
    auto [context, weights] = attention.forward(h);
    const Tensor logits = fc.forward(context);  // [B, outputs]
    return {fc.out_features() == 1 ? logits.reshape({-1}) : logits, weights};
  }

  nn::LSTM lstm;  // registered (and used) with the bilstm encoder only
  std::shared_ptr<nn::Conv1d> conv1, conv2;
  bool ahead = false, evidence = false;
  std::string norm;
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
