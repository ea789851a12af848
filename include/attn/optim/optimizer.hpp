#pragma once
// Optimizers with PyTorch's update formulas (torch.optim, single-tensor path, one param group).
// Updates are in place on the parameters' storage, without autograd. State tensors are
// created up front and exposed by name, so checkpoints can save and restore them.
#include <cmath>
#include <string>
#include <utility>
#include <vector>
#include "../core/tensor.hpp"

namespace attn::optim {

class Optimizer {
 public:
  // `name` (SGD, Adam, AdamW) names the optimizer in error messages ("SGD optimizer: ...").
  Optimizer(std::vector<Tensor> params, double lr, const char* name = "custom")
      : params_(std::move(params)), lr_(lr), name_(name) {
    check_lr(lr);
    for (size_t i = 0; i < params_.size(); ++i)
      ATTN_CHECK(params_[i].defined() && params_[i].is_floating_point(), name_, " optimizer: parameter ", i,
                 " is not a floating tensor");
  }
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad() {
    for (Tensor& p : params_) p.zero_grad();
  }
  double lr() const { return lr_; }
  void set_lr(double lr) {
    check_lr(lr);
    lr_ = lr;
  }
  void check_lr(double lr) const {
    ATTN_CHECK(valid_lr(lr), name_, " optimizer: learning rate must be finite and non-negative, got ", lr);
  }
  static bool valid_lr(double lr) { return std::isfinite(lr) && lr >= 0.0; }
  const std::vector<Tensor>& params() const { return params_; }
  int64_t step_count() const { return int64_t(step_.defined() ? step_.item<double>() : 0); }

  // Named state (for checkpoints): "step", "lr", and per-parameter buffers "<i>.<name>".
  std::vector<std::pair<std::string, Tensor>> state() {
    std::vector<std::pair<std::string, Tensor>> out{{"step", step_}, {"lr", lr_tensor()}};
    for (auto& [name, t] : buffers_) out.emplace_back(name, t);
    return out;
  }
  // Throws ShapeError, changing nothing, for a state load_state refuses: an unknown entry or one of
  // the wrong shape, a learning rate set_lr would refuse, a step count that is not a whole number >= 0.
  void check_state(const std::vector<std::pair<std::string, Tensor>>& s) const {
    for (auto& [name, t] : s) {
      const Tensor* dst = name == "lr" ? nullptr : (name == "step" ? &step_ : find(name));
      ATTN_CHECK(name == "lr" ? t.numel() == 1 : dst && dst->shape() == t.shape(), name_,
                 " optimizer load_state: unknown or mismatched entry '", name, "' ", to_string(t.shape()));
      const double v = t.numel() == 1 ? t.item<double>() : 0.0;
      ATTN_CHECK(name != "lr" || valid_lr(v), name_, " optimizer load_state: entry 'lr' must be a learning rate that "
                 "set_lr accepts (finite, >= 0), got ", v);
      ATTN_CHECK(name != "step" || (v >= 0 && v <= 0x1p53 && v == std::floor(v)), name_,
                 " optimizer load_state: entry 'step' must be a whole number >= 0, got ", v);
    }
  }
  // Restores what state() returned (tensors with the same names and shapes), all or nothing.
  void load_state(const std::vector<std::pair<std::string, Tensor>>& s) {
    check_state(s);
    NoGradGuard ng;
    for (auto& [name, t] : s) {
      if (name == "lr") lr_ = t.item<double>();
      else (name == "step" ? step_ : *find(name)).copy_(t);
    }
  }

 protected:
  Tensor& add_buffer(size_t param_index, const std::string& name) {
    buffers_.emplace_back(std::to_string(param_index) + "." + name,
                          Tensor::zeros(params_[param_index].shape(), params_[param_index].dtype()));
    return buffers_.back().second;
  }
  Tensor& buffer(size_t param_index, const std::string& name) {
    return *find(std::to_string(param_index) + "." + name);
  }
  // Advances and returns the step counter (1 on the first step).
  int64_t next_step() {
    const double s = step_.item<double>() + 1;
    step_.fill_(s);
    return int64_t(s);
  }

  std::vector<Tensor> params_;
  double lr_;
  const char* name_;
  Tensor step_ = Tensor::zeros({}, kFloat64);

 private:
  Tensor* find(const std::string& name) {
    for (auto& [n, t] : buffers_)
      if (n == name) return &t;
    return nullptr;
  }
  const Tensor* find(const std::string& name) const { return const_cast<Optimizer*>(this)->find(name); }
  Tensor lr_tensor() const { return Tensor::full({}, lr_, kFloat64); }
  std::vector<std::pair<std::string, Tensor>> buffers_;
};

// Applies f(i, param, grad) over the parameters that have a gradient, dispatching on dtype.
// `writes` (the parameter or its gradient) is about to be written in place: its version is bumped.
enum class Writes { Param, Grad, Nothing };
template <class F>
void for_each_param(const std::vector<Tensor>& params, Writes writes, const F& f) {
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    if (writes != Writes::Nothing) detail::bump_version(writes == Writes::Param ? params[i] : g);
    f(i, params[i], g);
  }
}

struct SGDOptions {
  explicit SGDOptions(double lr) : lr_(lr) {}
  SGDOptions& momentum(double v) { momentum_ = v; return *this; }
  SGDOptions& dampening(double v) { dampening_ = v; return *this; }
  SGDOptions& weight_decay(double v) { weight_decay_ = v; return *this; }
  SGDOptions& nesterov(bool v) { nesterov_ = v; return *this; }
  double lr_, momentum_ = 0, dampening_ = 0, weight_decay_ = 0;
  bool nesterov_ = false;
};

// g += wd p;  b = mu b + (1 - dampening) g (b = g on the first step);
// g = nesterov ? g + mu b : b;  p -= lr g
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions o) : Optimizer(std::move(params), o.lr_, "SGD"), o_(o) {
    ATTN_CHECK(!o.nesterov_ || (o.momentum_ > 0 && o.dampening_ == 0),
               "SGD: nesterov needs momentum > 0 and zero dampening");
    if (o_.momentum_ != 0)
      for (size_t i = 0; i < params_.size(); ++i) add_buffer(i, "momentum_buffer");
  }
  ATTN_API void step() override;

 private:
  SGDOptions o_;
};

struct AdamOptions {
  explicit AdamOptions(double lr = 1e-3) : lr_(lr) {}
  AdamOptions& betas(double b1, double b2) { beta1_ = b1; beta2_ = b2; return *this; }
  AdamOptions& eps(double v) { eps_ = v; return *this; }
  AdamOptions& weight_decay(double v) { weight_decay_ = v; return *this; }
  AdamOptions& amsgrad(bool v) { amsgrad_ = v; return *this; }
  double lr_, beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8, weight_decay_ = 0;
  bool amsgrad_ = false;
};

// Adam (decoupled = false) and AdamW (decoupled = true):
//   AdamW: p *= 1 - lr wd;   Adam: g += wd p
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  vmax = max(vmax, v) with amsgrad
//   p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions o = AdamOptions(), bool decoupled = false)
      : Optimizer(std::move(params), o.lr_, decoupled ? "AdamW" : "Adam"), o_(o), decoupled_(decoupled) {
    ATTN_CHECK(o.beta1_ >= 0 && o.beta1_ < 1 && o.beta2_ >= 0 && o.beta2_ < 1 && o.eps_ >= 0,
               "Adam: betas must be in [0, 1) and eps >= 0, got ", o.beta1_, ", ", o.beta2_, ", ", o.eps_);
    for (size_t i = 0; i < params_.size(); ++i) {
      add_buffer(i, "exp_avg");
      add_buffer(i, "exp_avg_sq");
      if (o_.amsgrad_) add_buffer(i, "max_exp_avg_sq");
    }
  }
  ATTN_API void step() override;

 private:
  AdamOptions o_;
  bool decoupled_;
};

struct AdamWOptions : AdamOptions {
  explicit AdamWOptions(double lr = 1e-3) : AdamOptions(lr) { weight_decay_ = 1e-2; }
};
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions o = AdamWOptions()) : Adam(std::move(params), o, true) {}
};

// Scales all gradients so their joint L2 norm is at most max_norm; returns the norm before
// (defined below).
ATTN_API double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);

}  // namespace attn::optim

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include "../ops/cuda/elementwise.hpp"
#include "cuda_adam.hpp"

namespace attn::optim {

// The update formula is above class SGD.
ATTN_API void SGD::step() {
  NoGradGuard ng;
  const bool first = next_step() == 1;
  for_each_param(params_, Writes::Param, [&](size_t i, const Tensor& p, const Tensor& g) {
    ATTN_DISPATCH_FLOATING(p.dtype(), "SGD", [&] {
      scalar_t* pp = p.data<scalar_t>();
      const scalar_t* pg = g.data<scalar_t>();
      scalar_t* pb = o_.momentum_ != 0 ? buffer(i, "momentum_buffer").data<scalar_t>() : nullptr;
      const scalar_t lr = scalar_t(lr_), wd = scalar_t(o_.weight_decay_), mu = scalar_t(o_.momentum_),
                     damp = scalar_t(o_.dampening_);
      parallel_for(0, p.numel(), kGrainPointwise, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          scalar_t d = pg[k] + wd * pp[k];
          if (pb) {
            pb[k] = first ? d : mu * pb[k] + (1 - damp) * d;
            d = o_.nesterov_ ? d + mu * pb[k] : pb[k];
          }
          pp[k] -= lr * d;
        }
      });
    });
  });
}

// The update formulas (Adam and AdamW) are above class Adam.
ATTN_API void Adam::step() {
  NoGradGuard ng;
  const int64_t t = next_step();
  const double bc1 = 1 - std::pow(o_.beta1_, double(t)), bc2 = 1 - std::pow(o_.beta2_, double(t));
  for_each_param(params_, Writes::Param, [&](size_t i, const Tensor& p, const Tensor& g) {
    if (attn::detail::on_cuda(p))
      return cuda_adam_step(p, g, buffer(i, "exp_avg"), buffer(i, "exp_avg_sq"),
                            o_.amsgrad_ ? &buffer(i, "max_exp_avg_sq") : nullptr, o_.beta1_, o_.beta2_, o_.eps_,
                            o_.weight_decay_, lr_, bc1, bc2, decoupled_);
    ATTN_DISPATCH_FLOATING(p.dtype(), "Adam", [&] {
      scalar_t* pp = p.data<scalar_t>();
      const scalar_t* pg = g.data<scalar_t>();
      scalar_t* m = buffer(i, "exp_avg").data<scalar_t>();
      scalar_t* v = buffer(i, "exp_avg_sq").data<scalar_t>();
      scalar_t* vmax = o_.amsgrad_ ? buffer(i, "max_exp_avg_sq").data<scalar_t>() : nullptr;
      const scalar_t b1 = scalar_t(o_.beta1_), b2 = scalar_t(o_.beta2_), eps = scalar_t(o_.eps_),
                     wd = scalar_t(o_.weight_decay_), step_size = scalar_t(lr_ / bc1),
                     decay = scalar_t(1 - lr_ * o_.weight_decay_), sqrt_bc2 = scalar_t(std::sqrt(bc2));
      parallel_for(0, p.numel(), kGrainPointwise, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          scalar_t gk = pg[k];
          if (decoupled_) pp[k] *= decay;
          else gk += wd * pp[k];
          m[k] = b1 * m[k] + (1 - b1) * gk;
          v[k] = b2 * v[k] + (1 - b2) * gk * gk;
          scalar_t vk = v[k];
          if (vmax) vk = vmax[k] = std::max(vmax[k], v[k]);
          pp[k] -= step_size * m[k] / (std::sqrt(vk) / sqrt_bc2 + eps);
        }
      });
    });
  });
}

// Scales all gradients so their joint L2 norm is at most max_norm; returns the norm before.
// clip coefficient = max_norm / (norm + 1e-6), applied only when below 1 (as PyTorch).
ATTN_API double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard ng;
  double total = 0;
  for_each_param(params, Writes::Nothing, [&](size_t, const Tensor&, const Tensor& g) {
    for (double x : g.to_vector<double>()) total += x * x;  // (a gradient on the GPU is copied to the host)
  });
  total = std::sqrt(total);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for_each_param(params, Writes::Grad, [&](size_t, const Tensor&, const Tensor& g) {
      if (attn::detail::on_cuda(g)) {
        Tensor(g).copy_(cuda_ops::unary(g, kernels::cuda::Unary::MulScalar, "clip_grad_norm_", coef));
        return;
      }
      ATTN_DISPATCH_FLOATING(g.dtype(), "clip_grad_norm_", [&] {
        scalar_t* pg = g.data<scalar_t>();
        for (int64_t k = 0, n = g.numel(); k < n; ++k) pg[k] *= scalar_t(coef);
      });
    });
  }
  return total;
}
}  // namespace attn::optim
#endif  // ATTN_HEADER_DEFINITIONS
