// Translation unit A of the ODR test: uses the library through the umbrella header.
#include <attn/attn.hpp>

namespace odr {
double tu_a_forward_backward() {
  using namespace attn;
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.0, 2.0}, {1, 3}).requires_grad_();
  Tensor w = Tensor::from_vector(std::vector<double>{1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, {2, 3}).requires_grad_();
  Tensor y = sum(tanh(linear(x, w, Tensor())));
  y.backward();
  return y.item<double>() + sum(x.grad()).item<double>();
}
void tu_a_seed(uint64_t s) { attn::manual_seed(s); }
attn::Tensor tu_a_randn() { return attn::Tensor::randn({4}); }
bool tu_a_grad_enabled() { return attn::is_grad_enabled(); }
}  // namespace odr
