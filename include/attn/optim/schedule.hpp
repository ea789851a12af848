#pragma once
// Learning-rate schedules, stepped once per epoch (or per iteration) by the caller,
// with PyTorch's closed forms.
#include <cmath>
#include <limits>
#include "optimizer.hpp"

namespace attn::optim {

class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& opt) : opt_(opt), base_lr_(opt.lr()) {}
  virtual ~LRScheduler() = default;
  void step() {
    ++epoch_;
    opt_.set_lr(lr_at(epoch_));
  }
  int64_t epoch() const { return epoch_; }
  virtual double lr_at(int64_t epoch) const = 0;

 protected:
  Optimizer& opt_;
  double base_lr_;
  int64_t epoch_ = 0;
};

// lr = base * gamma^(epoch / step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1) : LRScheduler(opt), step_(step_size), gamma_(gamma) {
    ATTN_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  }
  double lr_at(int64_t e) const override { return base_lr_ * std::pow(gamma_, double(e / step_)); }

 private:
  int64_t step_;
  double gamma_;
};

// lr = eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& opt, int64_t t_max, double eta_min = 0.0)
      : LRScheduler(opt), t_max_(t_max), eta_min_(eta_min) {
    ATTN_CHECK(t_max > 0, "CosineAnnealingLR: T_max must be positive, got ", t_max);
  }
  double lr_at(int64_t e) const override {
    return eta_min_ + (base_lr_ - eta_min_) * (1 + std::cos(M_PI * double(e) / double(t_max_))) / 2;
  }

 private:
  int64_t t_max_;
  double eta_min_;
};

// Linear warm-up (PyTorch's LinearLR): factor goes from start to end over total_iters steps.
// The optimizer's lr is scaled by `start` right away, as PyTorch does on construction.
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& opt, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5)
      : LRScheduler(opt), start_(start_factor), end_(end_factor), total_(total_iters) {
    ATTN_CHECK(start_factor > 0 && start_factor <= 1 && total_iters > 0, "LinearLR: bad start_factor ", start_factor,
               " or total_iters ", total_iters);
    opt.set_lr(lr_at(0));
  }
  double lr_at(int64_t e) const override {
    const double t = double(std::min(e, total_)) / double(total_);
    return base_lr_ * (start_ + (end_ - start_) * t);
  }

 private:
  double start_, end_;
  int64_t total_;
};

// Cuts the lr by `factor` after `patience` epochs without relative improvement of `threshold`
// in the monitored metric (mode min), then waits `cooldown` epochs; never below min_lr.
class ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(Optimizer& opt, double factor = 0.1, int64_t patience = 10, double threshold = 1e-4,
                    int64_t cooldown = 0, double min_lr = 0.0)
      : opt_(opt), factor_(factor), patience_(patience), threshold_(threshold), cooldown_(cooldown), min_lr_(min_lr) {
    ATTN_CHECK(factor < 1.0 && factor > 0, "ReduceLROnPlateau: factor must be in (0, 1), got ", factor);
  }
  void step(double metric) {
    if (metric < best_ * (1 - threshold_)) {
      best_ = metric;
      bad_ = 0;
    } else {
      ++bad_;
    }
    if (cooldown_left_ > 0) {
      --cooldown_left_;
      bad_ = 0;
    }
    if (bad_ > patience_) {
      opt_.set_lr(std::max(opt_.lr() * factor_, min_lr_));
      cooldown_left_ = cooldown_;
      bad_ = 0;
    }
  }

 private:
  Optimizer& opt_;
  double factor_;
  int64_t patience_;
  double threshold_;
  int64_t cooldown_, cooldown_left_ = 0;
  double min_lr_;
  double best_ = std::numeric_limits<double>::infinity();
  int64_t bad_ = 0;
};

}  // namespace attn::optim
