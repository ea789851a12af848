// optim::EarlyStopping: patience, min_delta, NaN losses, the best state kept and restored
// (parameters and their values at the best epoch, not later ones), errors.
#include <attn/attn.hpp>
#include <attn/optim/early_stopping.hpp>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

TEST_CASE("EarlyStopping: stops after patience epochs without improvement and restores the best", "[early_stopping]") {
  manual_seed(2);
  nn::Linear model(3, 2);
  optim::EarlyStopping stop(optim::EarlyStoppingOptions(2).min_delta(0.01));
  auto set_weights = [&](double v) {
    NoGradGuard g;
    model.weight.fill_(v);
    model.bias.fill_(-v);
  };
  const std::vector<double> losses = {1.0, 0.5, 0.495 /* not by more than min_delta */, 0.4, 0.45, std::nan(""), 0.3};
  std::vector<bool> stops;
  for (size_t e = 0; e < losses.size(); ++e) {
    set_weights(double(e));
    stops.push_back(stop.step(losses[e], model));
    if (stops.back()) break;
  }
  // epochs 0, 1, 3 improve; 2 is one bad epoch, 4 and 5 (NaN) make two in a row: stop at epoch 5
  CHECK(stops == std::vector<bool>{false, false, false, false, false, true});
  CHECK(stop.best() == 0.4);
  CHECK(stop.best_epoch() == 3);
  CHECK(stop.bad_epochs() == 2);
  CHECK_FALSE(stop.improved());
  stop.restore_best(model);
  for (float v : model.weight.to_vector<float>()) CHECK(v == 3.0f);
  for (float v : model.bias.to_vector<float>()) CHECK(v == -3.0f);

  nn::Linear other(3, 2), wider(3, 4);
  optim::EarlyStopping fresh(optim::EarlyStoppingOptions(1));
  CHECK_THROWS_WITH(fresh.restore_best(other), Contains("EarlyStopping::restore_best: no epoch improved yet"));
  CHECK_THROWS_WITH(stop.restore_best(wider), Contains("tensor 0 is 'weight' [4, 3], the kept state has 'weight' [2, 3]"));
  CHECK_THROWS_AS(optim::EarlyStopping(optim::EarlyStoppingOptions(0)), std::invalid_argument);
  CHECK_THROWS_AS(optim::EarlyStopping(optim::EarlyStoppingOptions(1).min_delta(-1)), std::invalid_argument);
}
