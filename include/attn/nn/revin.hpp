#pragma once
// RevIN, reversible instance normalisation (Kim et al., ICLR 2022): each series of a batch is
// normalised by its own mean and standard deviation over time before the model, and the model's
// output is mapped back with the same statistics, so a model trained on one level and scale
// forecasts series that have drifted to another. Optional learnable per-channel affine
// parameters (names as in the authors' code: affine_weight, affine_bias).
//   nn::RevIN revin(nn::RevINOptions(C));
//   Tensor z = revin.normalize(x);        // x [B, L, C]; keeps mean/stdev [B, 1, C]
//   Tensor y = revin.denormalize(model(z)); // model output [B, H, C] in x's units
// As in the reference implementation the statistics are detached (no gradient flows through
// them), and the affine inverse divides by (affine_weight + eps^2).
#include "../ops/elementwise.hpp"
#include "../ops/reduce.hpp"
#include "module.hpp"

namespace attn::nn {

struct RevINOptions {
  explicit RevINOptions(int64_t num_features) : num_features_(num_features) {}
  RevINOptions& eps(double v) { eps_ = v; return *this; }
  RevINOptions& affine(bool v) { affine_ = v; return *this; }
  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  bool affine() const { return affine_; }

 private:
  int64_t num_features_;
  double eps_ = 1e-5;
  bool affine_ = true;
};

class RevIN : public Module {
 public:
  explicit RevIN(const RevINOptions& o) : opt_(o) {
    ATTN_CHECK(o.num_features() > 0 && o.eps() > 0, "RevIN: num_features and eps must be positive, got ",
               o.num_features(), " and ", o.eps());
    if (o.affine()) {
      affine_weight = Tensor::ones({o.num_features()});
      affine_bias = Tensor::zeros({o.num_features()});
      register_parameter("affine_weight", affine_weight);
      register_parameter("affine_bias", affine_bias);
    }
  }
  // mean = mean_t x, stdev = sqrt(var_t x (biased) + eps), both detached;
  // z = (x - mean) / stdev, then z * affine_weight + affine_bias.
  Tensor normalize(const Tensor& x) {
    check(x, "normalize");
    mean = attn::mean(x, 1, /*keepdim=*/true).detach();
    stdev = sqrt(add(var(x, 1, /*unbiased=*/false, /*keepdim=*/true), opt_.eps())).detach();
    Tensor z = div(sub(x, mean), stdev);
    return opt_.affine() ? add(mul(z, affine_weight), affine_bias) : z;
  }
  Tensor forward(const Tensor& x) { return normalize(x); }
  // y -> ((y - affine_bias) / (affine_weight + eps^2)) * stdev + mean, with the statistics of
  // the last normalize call (y may have another length than x: a forecast horizon).
  Tensor denormalize(const Tensor& y) const {
    check(y, "denormalize");
    ATTN_CHECK(mean.defined(), "RevIN::denormalize: call normalize first");
    ATTN_CHECK(y.size(0) == mean.size(0), "RevIN::denormalize: batch of ", to_string(y.shape()),
               " differs from the normalised batch ", to_string(mean.shape()));
    Tensor z = y;
    if (opt_.affine()) z = div(sub(z, affine_bias), add(affine_weight, opt_.eps() * opt_.eps()));
    return add(mul(z, stdev), mean);
  }

  Tensor affine_weight, affine_bias;
  Tensor mean, stdev;  // [B, 1, C] from the last normalize

 private:
  void check(const Tensor& x, const char* what) const {
    ATTN_CHECK(x.dim() == 3 && x.size(2) == opt_.num_features(), "RevIN::", what, ": input must be [B, L, ",
               opt_.num_features(), "], got ", to_string(x.shape()));
  }
  RevINOptions opt_;
};

}  // namespace attn::nn
