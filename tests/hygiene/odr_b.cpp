// Translation unit B of the ODR test: the same inline functions, instantiated again.
#include <attn/attn.hpp>

namespace odr {
double tu_b_forward_backward() {
  using namespace attn;
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.0, 2.0}, {1, 3}).requires_grad_();
  Tensor w = Tensor::from_vector(std::vector<double>{1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, {2, 3}).requires_grad_();
  Tensor y = sum(tanh(matmul(x, w.t())));
  y.backward();
  return y.item<double>() + sum(x.grad()).item<double>();
}
attn::Tensor tu_b_randn() { return attn::Tensor::randn({4}); }
double tu_b_train_step() {
  using namespace attn;
  manual_seed(3);
  nn::Linear lin(3, 2);
  optim::SGD opt(lin.parameters(), optim::SGDOptions(0.1));
  Tensor loss = mse_loss(lin.forward(Tensor::ones({4, 3})), Tensor::zeros({4, 2}));
  loss.backward();
  opt.step();
  return loss.item<double>();
}
}  // namespace odr
