#pragma once
// gradcheck: compares the Jacobian from autograd with central finite differences, in double
// precision, with PyTorch's default tolerances (eps 1e-6, atol 1e-5, rtol 1e-3). Public, so
// users can check their own ops:
//   auto r = attn::testing::gradcheck([](const std::vector<Tensor>& in) { return my_op(in[0]); }, {x});
//   if (!r) std::cerr << r.message;
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>
#include "../core/tensor.hpp"

namespace attn::testing {

struct GradcheckOptions {
  double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;
  double max_abs_error = 0;
  explicit operator bool() const { return ok; }
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

inline GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                                 GradcheckOptions opt = GradcheckOptions()) {
  GradcheckResult res;
  for (size_t i = 0; i < inputs.size(); ++i)
    ATTN_CHECK(!inputs[i].requires_grad() || inputs[i].dtype() == kFloat64, "gradcheck: input ", i,
               " requires grad but is ", dtype_name(inputs[i].dtype()), "; use float64");
  Tensor out = fn(inputs);
  ATTN_CHECK(out.dtype() == kFloat64, "gradcheck: output must be float64, got ", dtype_name(out.dtype()));
  const int64_t n_out = out.numel();
  // Analytical Jacobian rows, one backward per output element.
  std::vector<std::vector<std::vector<double>>> ana(inputs.size());  // [input][out j][elem k]
  for (int64_t j = 0; j < n_out; ++j) {
    for (const Tensor& x : inputs)
      if (x.requires_grad()) const_cast<Tensor&>(x).zero_grad();
    Tensor seed = Tensor::zeros(out.shape(), kFloat64);
    seed.data<double>()[j] = 1.0;
    if (out.requires_grad()) out.backward(seed, /*retain_graph=*/true);
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!inputs[i].requires_grad()) continue;
      Tensor g = inputs[i].grad();
      ana[i].push_back(g.defined() ? g.to_vector<double>() : std::vector<double>(size_t(inputs[i].numel()), 0.0));
    }
  }
  // Numerical Jacobian columns by central differences.
  NoGradGuard ng;
  std::ostringstream msg;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].requires_grad()) continue;
    double* p = inputs[i].data<double>();
    for (int64_t k = 0; k < inputs[i].numel(); ++k) {
      const double orig = p[k];
      auto write = [&](double v) {  // an in-place write: kept copies of the input must not serve
        p[k] = v;
        increment_version(inputs[i]);
      };
      write(orig + opt.eps);
      const auto plus = fn(inputs).to_vector<double>();
      write(orig - opt.eps);
      const auto minus = fn(inputs).to_vector<double>();
      write(orig);
      for (int64_t j = 0; j < n_out; ++j) {
        const double num = (plus[size_t(j)] - minus[size_t(j)]) / (2 * opt.eps);
        const double a = ana[i][size_t(j)][size_t(k)];
        const double err = std::abs(a - num);
        res.max_abs_error = std::max(res.max_abs_error, err);
        if (!(err <= opt.atol + opt.rtol * std::abs(num)) && res.ok) {
          res.ok = false;
          msg << "gradcheck: input " << i << " element " << k << ", output element " << j << ": analytical " << a
              << " vs numerical " << num << "\n";
        }
      }
    }
  }
  for (const Tensor& x : inputs)
    if (x.requires_grad()) const_cast<Tensor&>(x).zero_grad();
  res.message = msg.str();
  return res;
}

}  // namespace attn::testing
