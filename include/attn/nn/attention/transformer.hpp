#pragma once
// nn::TransformerEncoderLayer and nn::TransformerEncoder, PyTorch's layer with its submodule names
// (self_attn.*, linear1, linear2, norm1, norm2; layers.<i>.*, norm) so weights load 1:1.
//   post-norm (norm_first = false):  x = norm1(x + SA(x));        x = norm2(x + FF(x))
//   pre-norm  (norm_first = true):   x = x + SA(norm1(x));        x = x + FF(norm2(x))
//   SA(x) = dropout1(self_attn(x, x, x)),  FF(x) = dropout2(linear2(dropout(act(linear1(x)))))
// Masks follow MultiheadAttention: a bool mask is true where a position MAY attend (use
// causal_mask(L) or is_causal = true), src_key_padding_mask is true at padded positions.
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
#undef ATTN_TEL_OPTION
 private:
  int64_t d_model_, nhead_, dim_feedforward_ = 2048;
  double dropout_ = 0.1;
  std::string activation_ = "relu";
  double layer_norm_eps_ = 1e-5;
  bool norm_first_ = false;
  bool batch_first_ = true;  // note: PyTorch's default is false
};

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerEncoderLayerOptions& o)
      : opt_(check(o)),
        self_attn(MultiheadAttentionOptions(o.d_model(), o.nhead()).dropout(o.dropout()).batch_first(o.batch_first())),
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

}  // namespace attn::nn
