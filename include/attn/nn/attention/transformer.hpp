#pragma once
// nn::TransformerEncoderLayer / TransformerEncoder, nn::TransformerDecoderLayer /
// TransformerDecoder and nn::Transformer: PyTorch's layers with their submodule names
// (self_attn.*, multihead_attn.*, linear1, linear2, norm1..3; layers.<i>.*, norm; encoder.*,
// decoder.*) so weights load 1:1.
//   post-norm (norm_first = false):  x = norm1(x + SA(x));        x = norm2(x + FF(x))
//   pre-norm  (norm_first = true):   x = x + SA(norm1(x));        x = x + FF(norm2(x))
//   SA(x) = dropout1(self_attn(x, x, x)),  FF(x) = dropout2(linear2(dropout(act(linear1(x)))))
// Masks follow MultiheadAttention: a bool mask is true where a position MAY attend (use
// causal_mask(L) or is_causal = true), src_key_padding_mask is true at padded positions.
#include <limits>
#include <memory>
#include <string>
#include <vector>
#include "multihead.hpp"

namespace attn::nn {

struct TransformerEncoderLayerOptions {
  TransformerEncoderLayerOptions(int64_t d_model, int64_t nhead) : d_model_(d_model), nhead_(nhead) {}
#define ATTN_TEL_OPTION(type, name)               \
  TransformerEncoderLayerOptions& name(type v) {  \
    name##_ = v;                                  \
    return *this;                                 \
  }                                               \
  type name() const { return name##_; }
  ATTN_TEL_OPTION(int64_t, d_model)
  ATTN_TEL_OPTION(int64_t, nhead)
  ATTN_TEL_OPTION(int64_t, dim_feedforward)
  ATTN_TEL_OPTION(double, dropout)
  ATTN_TEL_OPTION(std::string, activation)  // "relu" or "gelu"
  ATTN_TEL_OPTION(double, layer_norm_eps)
  ATTN_TEL_OPTION(bool, norm_first)
  ATTN_TEL_OPTION(bool, batch_first)
  ATTN_TEL_OPTION(bool, alibi)  // ALiBi biases in the self-attention (not in PyTorch)
  ATTN_TEL_OPTION(int64_t, relative_positions)  // > 0: Shaw et al.'s relative vectors in the self-attention
  ATTN_TEL_OPTION(int64_t, num_kv_heads)        // 0 = nhead; else grouped-query attention in every attention
#undef ATTN_TEL_OPTION
 private:
  int64_t d_model_, nhead_, dim_feedforward_ = 2048;
  double dropout_ = 0.1;
  std::string activation_ = "relu";
  double layer_norm_eps_ = 1e-5;
  bool norm_first_ = false;
  bool batch_first_ = true;  // note: PyTorch's default is false
  bool alibi_ = false;
  int64_t relative_positions_ = 0;
  int64_t num_kv_heads_ = 0;
};

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerEncoderLayerOptions& o)
      : opt_(check(o)),
        self_attn(MultiheadAttentionOptions(o.d_model(), o.nhead())
                      .dropout(o.dropout())
                      .batch_first(o.batch_first())
                      .alibi(o.alibi())
                      .relative_positions(o.relative_positions())
                      .num_kv_heads(o.num_kv_heads())),
        linear1(o.d_model(), o.dim_feedforward()),
        dropout(o.dropout()),
        linear2(o.dim_feedforward(), o.d_model()),
        norm1(o.d_model(), o.layer_norm_eps()),
        norm2(o.d_model(), o.layer_norm_eps()),
        dropout1(o.dropout()),
        dropout2(o.dropout()) {
    register_module("self_attn", self_attn);
    register_module("linear1", linear1);
    register_module("dropout", dropout);
    register_module("linear2", linear2);
    register_module("norm1", norm1);
    register_module("norm2", norm2);
    register_module("dropout1", dropout1);
    register_module("dropout2", dropout2);
  }

  // src [B, L, d_model] (batch_first) or [L, B, d_model]; mask [L, L] (or any attn_mask shape
  // MultiheadAttention takes); src_key_padding_mask bool [B, L], true = padded.
  Tensor forward(const Tensor& src, const Tensor& mask = Tensor(), const Tensor& src_key_padding_mask = Tensor(),
                 bool is_causal = false) const {
    Tensor x = src;
    if (opt_.norm_first()) {
      x = add(x, sa_block(norm1.forward(x), mask, src_key_padding_mask, is_causal));
      x = add(x, ff_block(norm2.forward(x)));
    } else {
      x = norm1.forward(add(x, sa_block(x, mask, src_key_padding_mask, is_causal)));
      x = norm2.forward(add(x, ff_block(x)));
    }
    return x;
  }

  const TransformerEncoderLayerOptions& options() const { return opt_; }

 private:
  static const TransformerEncoderLayerOptions& check(const TransformerEncoderLayerOptions& o) {
    ATTN_CHECK(o.activation() == "relu" || o.activation() == "gelu",
               "TransformerEncoderLayer: activation must be \"relu\" or \"gelu\", got \"", o.activation(), "\"");
    ATTN_CHECK(o.d_model() > 0 && o.nhead() > 0 && o.dim_feedforward() > 0,
               "TransformerEncoderLayer: d_model, nhead and dim_feedforward must be positive, got ", o.d_model(), ", ",
               o.nhead(), ", ", o.dim_feedforward());
    return o;
  }
  Tensor sa_block(const Tensor& x, const Tensor& mask, const Tensor& kpm, bool is_causal) const {
    return dropout1.forward(self_attn.forward_ex(x, x, x, kpm, false, mask, true, is_causal).first);
  }
  Tensor ff_block(const Tensor& x) const {
    Tensor h = linear1.forward(x);
    h = opt_.activation() == "gelu" ? gelu(h) : relu(h);
    return dropout2.forward(linear2.forward(dropout.forward(h)));
  }

  TransformerEncoderLayerOptions opt_;

 public:
  MultiheadAttention self_attn;
  Linear linear1;
  Dropout dropout;
  Linear linear2;
  LayerNorm norm1, norm2;
  Dropout dropout1, dropout2;
};

// A stack of num_layers encoder layers ("layers.0", "layers.1", ...) and an optional final
// LayerNorm ("norm"). Each layer is initialised independently (PyTorch deep-copies one layer, so
// its layers start equal; load a PyTorch state dict to reproduce that).
class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerEncoderLayerOptions& layer, int64_t num_layers, bool final_norm = false) {
    ATTN_CHECK(num_layers > 0, "TransformerEncoder: num_layers must be positive, got ", num_layers);
    register_module("layers", layers_);
    for (int64_t i = 0; i < num_layers; ++i) layers_.add(std::make_shared<TransformerEncoderLayer>(layer));
    if (final_norm) {
      norm = std::make_shared<LayerNorm>(layer.d_model(), layer.layer_norm_eps());
      register_module("norm", norm);
    }
  }

  Tensor forward(const Tensor& src, const Tensor& mask = Tensor(), const Tensor& src_key_padding_mask = Tensor(),
                 bool is_causal = false) const {
    Tensor x = src;
    for (auto& l : layers_.items) x = l->forward(x, mask, src_key_padding_mask, is_causal);
    return norm ? norm->forward(x) : x;
  }

  TransformerEncoderLayer& layer(size_t i) { return *layers_.items.at(i); }
  size_t num_layers() const { return layers_.items.size(); }

  std::shared_ptr<LayerNorm> norm;

 private:
  struct Layers : Module {
    std::vector<std::shared_ptr<TransformerEncoderLayer>> items;
    void add(std::shared_ptr<TransformerEncoderLayer> l) {
      register_module(std::to_string(items.size()), l);
      items.push_back(l);
    }
  };
  Layers layers_;
};


// ---------------------------------------------------------------------------------------------
// Decoder. PyTorch's TransformerDecoderLayer:
//   post-norm: x = norm1(x + SA(x));  x = norm2(x + MHA(x, mem));  x = norm3(x + FF(x))
//   pre-norm:  x = x + SA(norm1(x));  x = x + MHA(norm2(x), mem);  x = x + FF(norm3(x))
//   SA(x) = dropout1(self_attn(x, x, x)),  MHA(x, m) = dropout2(multihead_attn(x, m, m)),
//   FF(x) = dropout3(linear2(dropout(act(linear1(x)))))
// Masks as in the encoder: bool true = may attend (causal_mask(L)), float = added; padding masks
// true at padded positions. tgt_is_causal / memory_is_causal (PyTorch 2's flags) apply the causal
// mask without building it.
using TransformerDecoderLayerOptions = TransformerEncoderLayerOptions;

// The self- and cross-attention caches of one decoder layer (see forward_step).
struct TransformerDecoderLayerCache {
  KVCache self_attn, multihead_attn;
  void clear() {
    self_attn.clear();
    multihead_attn.clear();
  }
};

class TransformerDecoderLayer : public Module {
 public:
  explicit TransformerDecoderLayer(const TransformerDecoderLayerOptions& o)
      : opt_(check(o)),
        self_attn(mha_options(o).alibi(o.alibi()).relative_positions(o.relative_positions())),
        multihead_attn(mha_options(o)),
        linear1(o.d_model(), o.dim_feedforward()),
        dropout(o.dropout()),
        linear2(o.dim_feedforward(), o.d_model()),
        norm1(o.d_model(), o.layer_norm_eps()),
        norm2(o.d_model(), o.layer_norm_eps()),
        norm3(o.d_model(), o.layer_norm_eps()),
        dropout1(o.dropout()),
        dropout2(o.dropout()),
        dropout3(o.dropout()) {
    register_module("self_attn", self_attn);
    register_module("multihead_attn", multihead_attn);
    register_module("linear1", linear1);
    register_module("dropout", dropout);
    register_module("linear2", linear2);
    register_module("norm1", norm1);
    register_module("norm2", norm2);
    register_module("norm3", norm3);
    register_module("dropout1", dropout1);
    register_module("dropout2", dropout2);
    register_module("dropout3", dropout3);
  }

  // tgt [B, T, d_model] (batch_first) or [T, B, d_model]; memory [B, S, d_model] or [S, B, ..];
  // tgt_mask [T, T], memory_mask [T, S] (or any attn_mask shape MultiheadAttention takes);
  // tgt_key_padding_mask bool [B, T], memory_key_padding_mask bool [B, S], true = padded.
  Tensor forward(const Tensor& tgt, const Tensor& memory, const Tensor& tgt_mask = Tensor(),
                 const Tensor& memory_mask = Tensor(), const Tensor& tgt_key_padding_mask = Tensor(),
                 const Tensor& memory_key_padding_mask = Tensor(), bool tgt_is_causal = false,
                 bool memory_is_causal = false) const {
    auto sa = [&](const Tensor& x) {
      return self_attn.forward_ex(x, x, x, tgt_key_padding_mask, false, tgt_mask, true, tgt_is_causal).first;
    };
    auto ca = [&](const Tensor& x) {
      return multihead_attn.forward_ex(x, memory, memory, memory_key_padding_mask, false, memory_mask, true,
                                       memory_is_causal).first;
    };
    return blocks(tgt, sa, ca);
  }

  // Incremental decoding (inference, grad mode off): tgt holds the newest positions [B, L, d]
  // (or [L, B, d]), usually one; their self-attention keys/values join cache.self_attn and they
  // attend causally over all positions so far (aligned to the end), the memory's keys/values are
  // projected into cache.multihead_attn on the first call. Returns the layer's output for the new
  // positions: equal to the rows of forward(whole prefix, memory, tgt_is_causal = true).
  Tensor forward_step(const Tensor& tgt, const Tensor& memory, TransformerDecoderLayerCache& cache,
                      const Tensor& memory_key_padding_mask = Tensor()) const {
    auto sa = [&](const Tensor& x) { return self_attn.forward_cached(x, cache.self_attn, true).first; };
    auto ca = [&](const Tensor& x) {
      return multihead_attn.forward_memory_cached(x, memory, cache.multihead_attn, memory_key_padding_mask).first;
    };
    return blocks(tgt, sa, ca);
  }

  const TransformerDecoderLayerOptions& options() const { return opt_; }

 private:
  static const TransformerDecoderLayerOptions& check(const TransformerDecoderLayerOptions& o) {
    ATTN_CHECK(o.activation() == "relu" || o.activation() == "gelu",
               "TransformerDecoderLayer: activation must be \"relu\" or \"gelu\", got \"", o.activation(), "\"");
    ATTN_CHECK(o.d_model() > 0 && o.nhead() > 0 && o.dim_feedforward() > 0,
               "TransformerDecoderLayer: d_model, nhead and dim_feedforward must be positive, got ", o.d_model(), ", ",
               o.nhead(), ", ", o.dim_feedforward());
    return o;
  }
  static MultiheadAttentionOptions mha_options(const TransformerDecoderLayerOptions& o) {
    return MultiheadAttentionOptions(o.d_model(), o.nhead())
        .dropout(o.dropout())
        .batch_first(o.batch_first())
        .num_kv_heads(o.num_kv_heads());
  }
  template <class SA, class CA>
  Tensor blocks(const Tensor& tgt, const SA& sa, const CA& ca) const {
    Tensor x = tgt;
    if (opt_.norm_first()) {
      x = add(x, dropout1.forward(sa(norm1.forward(x))));
      x = add(x, dropout2.forward(ca(norm2.forward(x))));
      x = add(x, ff_block(norm3.forward(x)));
    } else {
      x = norm1.forward(add(x, dropout1.forward(sa(x))));
      x = norm2.forward(add(x, dropout2.forward(ca(x))));
      x = norm3.forward(add(x, ff_block(x)));
    }
    return x;
  }
  Tensor ff_block(const Tensor& x) const {
    Tensor h = linear1.forward(x);
    h = opt_.activation() == "gelu" ? gelu(h) : relu(h);
    return dropout3.forward(linear2.forward(dropout.forward(h)));
  }

  TransformerDecoderLayerOptions opt_;

 public:
  MultiheadAttention self_attn, multihead_attn;
  Linear linear1;
  Dropout dropout;
  Linear linear2;
  LayerNorm norm1, norm2, norm3;
  Dropout dropout1, dropout2, dropout3;
};

// The caches of a whole decoder, one per layer; size() = positions decoded so far.
struct TransformerDecoderCache {
  std::vector<TransformerDecoderLayerCache> layers;
  int64_t size() const { return layers.empty() ? 0 : layers[0].self_attn.size(); }
  void clear() { layers.clear(); }
};

// A stack of num_layers decoder layers ("layers.<i>") and an optional final LayerNorm ("norm").
class TransformerDecoder : public Module {
 public:
  TransformerDecoder(const TransformerDecoderLayerOptions& layer, int64_t num_layers, bool final_norm = false) {
    ATTN_CHECK(num_layers > 0, "TransformerDecoder: num_layers must be positive, got ", num_layers);
    register_module("layers", layers_);
    for (int64_t i = 0; i < num_layers; ++i) layers_.add(std::make_shared<TransformerDecoderLayer>(layer));
    if (final_norm) {
      norm = std::make_shared<LayerNorm>(layer.d_model(), layer.layer_norm_eps());
      register_module("norm", norm);
    }
  }

  Tensor forward(const Tensor& tgt, const Tensor& memory, const Tensor& tgt_mask = Tensor(),
                 const Tensor& memory_mask = Tensor(), const Tensor& tgt_key_padding_mask = Tensor(),
                 const Tensor& memory_key_padding_mask = Tensor(), bool tgt_is_causal = false,
                 bool memory_is_causal = false) const {
    Tensor x = tgt;
    for (auto& l : layers_.items)
      x = l->forward(x, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal,
                     memory_is_causal);
    return norm ? norm->forward(x) : x;
  }

  // Incremental decoding through every layer (see TransformerDecoderLayer::forward_step): the
  // output rows for the new positions of tgt, equal to those of forward(prefix, memory,
  // tgt_is_causal = true). Start with an empty cache; clear() it for a new sequence.
  Tensor forward_step(const Tensor& tgt, const Tensor& memory, TransformerDecoderCache& cache,
                      const Tensor& memory_key_padding_mask = Tensor()) const {
    if (cache.layers.empty()) cache.layers.resize(layers_.items.size());
    ATTN_CHECK(cache.layers.size() == layers_.items.size(), "TransformerDecoder::forward_step: cache has ",
               cache.layers.size(), " layers, the decoder ", layers_.items.size());
    Tensor x = tgt;
    for (size_t i = 0; i < layers_.items.size(); ++i)
      x = layers_.items[i]->forward_step(x, memory, cache.layers[i], memory_key_padding_mask);
    return norm ? norm->forward(x) : x;
  }

  TransformerDecoderLayer& layer(size_t i) { return *layers_.items.at(i); }
  size_t num_layers() const { return layers_.items.size(); }

  std::shared_ptr<LayerNorm> norm;

 private:
  struct Layers : Module {
    std::vector<std::shared_ptr<TransformerDecoderLayer>> items;
    void add(std::shared_ptr<TransformerDecoderLayer> l) {
      register_module(std::to_string(items.size()), l);
      items.push_back(l);
    }
  };
  Layers layers_;
};

// nn::Transformer's options: PyTorch's defaults except batch_first (true here, as in the layers).
struct TransformerOptions {
  TransformerOptions(int64_t d_model = 512, int64_t nhead = 8) : d_model_(d_model), nhead_(nhead) {}
#define ATTN_TR_OPTION(type, name)    \
  TransformerOptions& name(type v) {  \
    name##_ = v;                      \
    return *this;                     \
  }                                   \
  type name() const { return name##_; }
  ATTN_TR_OPTION(int64_t, d_model)
  ATTN_TR_OPTION(int64_t, nhead)
  ATTN_TR_OPTION(int64_t, num_encoder_layers)
  ATTN_TR_OPTION(int64_t, num_decoder_layers)
  ATTN_TR_OPTION(int64_t, dim_feedforward)
  ATTN_TR_OPTION(double, dropout)
  ATTN_TR_OPTION(std::string, activation)
  ATTN_TR_OPTION(double, layer_norm_eps)
  ATTN_TR_OPTION(bool, batch_first)
  ATTN_TR_OPTION(bool, norm_first)
#undef ATTN_TR_OPTION
  // The options of each encoder / decoder layer.
  TransformerEncoderLayerOptions layer_options() const {
    return TransformerEncoderLayerOptions(d_model_, nhead_)
        .dim_feedforward(dim_feedforward_)
        .dropout(dropout_)
        .activation(activation_)
        .layer_norm_eps(layer_norm_eps_)
        .batch_first(batch_first_)
        .norm_first(norm_first_);
  }

 private:
  int64_t d_model_, nhead_, num_encoder_layers_ = 6, num_decoder_layers_ = 6, dim_feedforward_ = 2048;
  double dropout_ = 0.1;
  std::string activation_ = "relu";
  double layer_norm_eps_ = 1e-5;
  bool batch_first_ = true;  // note: PyTorch's default is false
  bool norm_first_ = false;
};

// nn::Transformer: an encoder and a decoder, each with its final LayerNorm (PyTorch's names:
// encoder.layers.<i>.*, encoder.norm, decoder.layers.<i>.*, decoder.norm).
//   memory = encoder(src, src_mask, src_key_padding_mask)
//   out = decoder(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask)
class Transformer : public Module {
 public:
  explicit Transformer(const TransformerOptions& o = TransformerOptions())
      : opt_(o),
        encoder(o.layer_options(), o.num_encoder_layers(), true),
        decoder(o.layer_options(), o.num_decoder_layers(), true) {
    register_module("encoder", encoder);
    register_module("decoder", decoder);
  }

  // src [B, S, d_model], tgt [B, T, d_model] (batch_first; else sequence first) -> [B, T, d_model].
  Tensor forward(const Tensor& src, const Tensor& tgt, const Tensor& src_mask = Tensor(),
                 const Tensor& tgt_mask = Tensor(), const Tensor& memory_mask = Tensor(),
                 const Tensor& src_key_padding_mask = Tensor(), const Tensor& tgt_key_padding_mask = Tensor(),
                 const Tensor& memory_key_padding_mask = Tensor(), bool src_is_causal = false,
                 bool tgt_is_causal = false, bool memory_is_causal = false) const {
    const char* op = "Transformer";
    const int64_t bd = opt_.batch_first() ? 0 : 1;
    ATTN_CHECK(src.dim() == 3 && tgt.dim() == 3 && src.size(bd) == tgt.size(bd) && src.size(2) == opt_.d_model() &&
                   tgt.size(2) == opt_.d_model(),
               op, ": src ", to_string(src.shape()), " and tgt ", to_string(tgt.shape()), " must be 3-D with the same ",
               "batch size and d_model ", opt_.d_model(), " (batch_first=", opt_.batch_first(), ")");
    const Tensor memory = encoder.forward(src, src_mask, src_key_padding_mask, src_is_causal);
    return decoder.forward(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                           tgt_is_causal, memory_is_causal);
  }

  // PyTorch's Transformer.generate_square_subsequent_mask: float [sz, sz], 0 on and below the
  // diagonal, -inf above (an additive mask; causal_mask(sz) is the bool form).
  static Tensor generate_square_subsequent_mask(int64_t sz, DType dtype = kFloat32) {
    ATTN_CHECK(sz >= 0, "Transformer::generate_square_subsequent_mask: size must be non-negative, got ", sz);
    Tensor m = Tensor::zeros({sz, sz}, kFloat64);
    double* p = m.data<double>();
    for (int64_t i = 0; i < sz; ++i)
      for (int64_t j = i + 1; j < sz; ++j) p[i * sz + j] = -std::numeric_limits<double>::infinity();
    return dtype == kFloat64 ? m : m.to(dtype);
  }

  const TransformerOptions& options() const { return opt_; }

 private:
  TransformerOptions opt_;

 public:
  TransformerEncoder encoder;
  TransformerDecoder decoder;
};

}  // namespace attn::nn
