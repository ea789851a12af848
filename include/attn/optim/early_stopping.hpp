#pragma once
// Early stopping with best-state restore: call step() once per epoch with the validation loss;
// on an improvement (by more than min_delta) it keeps a copy of the model's state (parameters
// and buffers), and it answers true once `patience` epochs in a row have not improved.
//   optim::EarlyStopping stopper(optim::EarlyStoppingOptions(/*patience=*/5));
//   for (int epoch = 0; epoch < epochs; ++epoch) {
//     train_one_epoch();
//     if (stopper.step(validation_loss(), model)) break;
//   }
//   stopper.restore_best(model);   // the weights of the best epoch
#include <cmath>
#include <limits>
#include <string>
#include "../nn/module.hpp"

namespace attn::optim {

struct EarlyStoppingOptions {
  explicit EarlyStoppingOptions(int64_t patience) : patience_(patience) {}
  EarlyStoppingOptions& min_delta(double v) { min_delta_ = v; return *this; }
  int64_t patience() const { return patience_; }
  double min_delta() const { return min_delta_; }

 private:
  int64_t patience_;
  double min_delta_ = 0.0;
};

class EarlyStopping {
 public:
  explicit EarlyStopping(const EarlyStoppingOptions& o) : opt_(o) {
    ATTN_CHECK(o.patience() >= 1 && o.min_delta() >= 0 && std::isfinite(o.min_delta()),
               "EarlyStopping: patience must be >= 1 and min_delta finite and >= 0, got ", o.patience(), " and ",
               o.min_delta());
  }
  // Records one epoch's validation loss; true when training should stop. A NaN loss never counts
  // as an improvement.
  bool step(double val_loss, const nn::Module& model) {
    ++epochs_;
    if (val_loss < best_ - opt_.min_delta()) {
      best_ = val_loss;
      best_epoch_ = epochs_ - 1;
      bad_epochs_ = 0;
      improved_ = true;
      NoGradGuard ng;
      const auto state = model.state_dict();
      if (best_state_.size() != state.size()) best_state_.clear();
      for (size_t i = 0; i < state.size(); ++i) {
        if (best_state_.size() < state.size()) {
          best_state_.emplace_back(state[i].first, state[i].second.detach().clone());
        } else {
          best_state_[i].second.copy_(state[i].second);
        }
      }
      return false;
    }
    improved_ = false;
    return ++bad_epochs_ >= opt_.patience();
  }
  // Copies the best epoch's state back into `model` (the same architecture as given to step).
  void restore_best(nn::Module& model) const {
    ATTN_CHECK(!best_state_.empty(), "EarlyStopping::restore_best: no epoch improved yet (no state kept)");
    auto state = model.state_dict();
    ATTN_CHECK(state.size() == best_state_.size(), "EarlyStopping::restore_best: the model has ", state.size(),
               " tensors, the kept state ", best_state_.size());
    NoGradGuard ng;
    for (size_t i = 0; i < state.size(); ++i) {
      ATTN_CHECK(state[i].first == best_state_[i].first && state[i].second.shape() == best_state_[i].second.shape(),
                 "EarlyStopping::restore_best: tensor ", i, " is '", state[i].first, "' ",
                 to_string(state[i].second.shape()), ", the kept state has '", best_state_[i].first, "' ",
                 to_string(best_state_[i].second.shape()));
      state[i].second.copy_(best_state_[i].second);
    }
  }
  double best() const { return best_; }
  int64_t best_epoch() const { return best_epoch_; }  // 0-based; -1 before any improvement
  int64_t bad_epochs() const { return bad_epochs_; }
  bool improved() const { return improved_; }        // did the last step improve

 private:
  EarlyStoppingOptions opt_;
  double best_ = std::numeric_limits<double>::infinity();
  int64_t best_epoch_ = -1, bad_epochs_ = 0, epochs_ = 0;
  bool improved_ = false;
  nn::NamedTensors best_state_;
};

}  // namespace attn::optim
