#pragma once
// Basic layers: Linear, Dropout, LayerNorm, Embedding, Sequential.
#include <cmath>
#include <functional>
#include "../ops/matmul.hpp"
#include "../ops/nn_functional.hpp"
#include "init.hpp"
#include "module.hpp"

namespace attn::nn {

// y = x W^T + b, W: [out_features, in_features] (PyTorch's layout and default init).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true) : in_(in_features), out_(out_features) {
    ATTN_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got in=", in_features,
               " out=", out_features);
    weight = Tensor::empty({out_features, in_features});
    init::kaiming_uniform_(weight);
    register_parameter("weight", weight);
    if (bias) {
      const double bound = 1.0 / std::sqrt(double(in_features));
      this->bias = Tensor::empty({out_features});
      init::uniform_(this->bias, -bound, bound);
      register_parameter("bias", this->bias);
    }
  }
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  Tensor weight, bias;

 private:
  int64_t in_, out_;
};

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5) : p_(p) {
    ATTN_CHECK(p >= 0.0 && p <= 1.0, "Dropout: p must be in [0, 1], got ", p);
  }
  Tensor forward(const Tensor& x) const { return dropout(x, p_, is_training()); }

 private:
  double p_;
};

class LayerNorm : public Module {
 public:
  LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true)
      : shape_(std::move(normalized_shape)), eps_(eps) {
    if (elementwise_affine) {
      weight = Tensor::ones(shape_);
      bias = Tensor::zeros(shape_);
      register_parameter("weight", weight);
      register_parameter("bias", bias);
    }
  }
  explicit LayerNorm(int64_t dim, double eps = 1e-5) : LayerNorm(Shape{dim}, eps) {}
  Tensor forward(const Tensor& x) const { return layer_norm(x, shape_, weight, bias, eps_); }

  Tensor weight, bias;

 private:
  Shape shape_;
  double eps_;
};

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim) {
    ATTN_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding: sizes must be positive, got ", num_embeddings,
               " x ", embedding_dim);
    weight = Tensor::empty({num_embeddings, embedding_dim});
    init::normal_(weight);
    register_parameter("weight", weight);
  }
  Tensor forward(const Tensor& indices) const { return embedding(weight, indices); }

  Tensor weight;
};

// Applies its entries in order. Entries are modules with `Tensor forward(const Tensor&)`
// (named "0", "1", ... like PyTorch) or plain functions such as activations.
class Sequential : public Module {
 public:
  template <class M>
  Sequential& push_back(std::shared_ptr<M> m) {
    register_module(std::to_string(steps_.size()), m);
    steps_.push_back([m](const Tensor& x) { return m->forward(x); });
    return *this;
  }
  Sequential& push_back(std::function<Tensor(const Tensor&)> fn) {
    steps_.push_back(std::move(fn));
    return *this;
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = x;
    for (auto& step : steps_) h = step(h);
    return h;
  }
  size_t size() const { return steps_.size(); }

 private:
  std::vector<std::function<Tensor(const Tensor&)>> steps_;
};

}  // namespace attn::nn
