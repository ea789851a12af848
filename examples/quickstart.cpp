// The README's training example: a small MLP learns y = x0 * x1 with Adam.
#include <attn/attn.hpp>
#include <cstdio>
using namespace attn;

struct Net : nn::Module {
  nn::Linear fc1{2, 32}, fc2{32, 1};
  Net() { register_module("fc1", fc1); register_module("fc2", fc2); }
  Tensor forward(const Tensor& x) { return fc2.forward(tanh(fc1.forward(x))); }
};

int main() {
  manual_seed(0);
  Net net;
  optim::Adam opt(net.parameters(), optim::AdamOptions(1e-2));
  Tensor x = Tensor::rand({256, 2}) * 2.0 - 1.0;              // inputs in [-1, 1)
  Tensor y = (x.select(1, 0) * x.select(1, 1)).unsqueeze(1);  // target x0 * x1
  for (int step = 1; step <= 500; ++step) {
    opt.zero_grad();
    Tensor loss = mse_loss(net.forward(x), y);
    loss.backward();
    opt.step();
    if (step % 100 == 0) std::printf("step %3d  loss %.6f\n", step, loss.item());
  }
}
