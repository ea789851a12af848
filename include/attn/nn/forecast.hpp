#pragma once
// Direct multi-step forecasting: one head emits every step of the horizon at once (no feedback of
// its own forecasts), optionally several quantiles per step, trained with the quantile (pinball)
// loss; the outer quantiles give a prediction interval.
//   nn::MultiStepHead head(nn::MultiStepHeadOptions(64, /*horizon=*/24, /*channels=*/1)
//                              .quantiles({0.1, 0.5, 0.9}));
//   Tensor q = head.forward(features);                  // [B, 24, 1, 3]
//   Tensor loss = quantile_loss(q, target, {0.1, 0.5, 0.9});   // target [B, 24, 1]
#include <vector>
#include "../ops/elementwise.hpp"
#include "../ops/reduce.hpp"
#include "../ops/shape.hpp"
#include "layers.hpp"

namespace attn {

// mean over every element and quantile of max(q (y - f), (q - 1)(y - f)), pred [..., Q],
// target [...]. d/df = -q where y > f, 1 - q where y < f (at y = f, attn::maximum's tie rule).
inline Tensor quantile_loss(const Tensor& pred, const Tensor& target, const std::vector<double>& quantiles) {
  const int64_t Q = int64_t(quantiles.size());
  ATTN_CHECK(Q > 0 && pred.dim() == target.dim() + 1 && pred.size(-1) == Q, "quantile_loss: pred ",
             to_string(pred.shape()), " must be target ", to_string(target.shape()), " plus a last dim of ", Q,
             " quantiles");
  Shape lead(pred.shape().begin(), pred.shape().end() - 1);
  ATTN_CHECK(lead == target.shape(), "quantile_loss: pred ", to_string(pred.shape()), " and target ",
             to_string(target.shape()), " differ before the quantile dim");
  for (double q : quantiles)
    ATTN_CHECK(q > 0 && q < 1, "quantile_loss: quantiles must lie in (0, 1), got ", q);
  const Tensor q = Tensor::from_vector(quantiles, {Q}).to(pred.dtype());
  const Tensor diff = sub(unsqueeze(target, -1), pred);  // y - f, [..., Q]
  return mean(maximum(mul(diff, q), mul(diff, sub(q, Tensor::ones({Q}, pred.dtype())))));
}

namespace nn {

struct MultiStepHeadOptions {
  MultiStepHeadOptions(int64_t in_features, int64_t horizon, int64_t channels = 1)
      : in_(in_features), horizon_(horizon), channels_(channels) {}
  MultiStepHeadOptions& quantiles(std::vector<double> v) { quantiles_ = std::move(v); return *this; }
  int64_t in_features() const { return in_; }
  int64_t horizon() const { return horizon_; }
  int64_t channels() const { return channels_; }
  const std::vector<double>& quantiles() const { return quantiles_; }

 private:
  int64_t in_, horizon_, channels_;
  std::vector<double> quantiles_;  // empty: one point forecast per step
};

// features [B, F] -> [B, horizon, channels] (point forecast) or [B, horizon, channels, Q].
class MultiStepHead : public Module {
 public:
  explicit MultiStepHead(const MultiStepHeadOptions& o)
      : opt_(o), proj(o.in_features(), o.horizon() * o.channels() * std::max<int64_t>(1, int64_t(o.quantiles().size()))) {
    ATTN_CHECK(o.horizon() > 0 && o.channels() > 0, "MultiStepHead: horizon and channels must be positive, got ",
               o.horizon(), " and ", o.channels());
    for (double q : o.quantiles()) ATTN_CHECK(q > 0 && q < 1, "MultiStepHead: quantiles must lie in (0, 1), got ", q);
    register_module("proj", proj);
  }
  Tensor forward(const Tensor& features) const {
    ATTN_CHECK(features.dim() == 2 && features.size(1) == opt_.in_features(), "MultiStepHead: features must be [B, ",
               opt_.in_features(), "], got ", to_string(features.shape()));
    const Tensor y = proj.forward(features);
    const int64_t B = features.size(0);
    if (opt_.quantiles().empty()) return reshape(y, {B, opt_.horizon(), opt_.channels()});
    return reshape(y, {B, opt_.horizon(), opt_.channels(), int64_t(opt_.quantiles().size())});
  }
  const MultiStepHeadOptions& options() const { return opt_; }

 private:
  MultiStepHeadOptions opt_;

 public:
  Linear proj;
};

}  // namespace nn
}  // namespace attn
