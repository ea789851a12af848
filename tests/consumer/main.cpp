// Consumer smoke test: fits y = 2x - 1 with a Linear layer and Adam; exits 0 on success.
#include <attn/attn.hpp>
#if defined(ATTN_EXPECT_COMPILED_MODE) && ATTN_HEADER_DEFINITIONS
#error "linked against attn::attn_compiled but compiled with the definitions (ATTN_SEPARATE_COMPILATION missing)"
#endif

#include <cmath>
#include <cstdio>

int main() {
  using namespace attn;
  manual_seed(0);
  nn::Linear lin(1, 1);
  Tensor x = Tensor::arange(-1.0, 1.0, 0.1).reshape({-1, 1});
  Tensor y = x * 2.0 - 1.0;
  optim::Adam opt(lin.parameters(), optim::AdamOptions(0.05));
  double loss = 0;
  for (int it = 0; it < 500; ++it) {
    opt.zero_grad();
    Tensor l = mse_loss(lin.forward(x), y);
    l.backward();
    opt.step();
    loss = l.item<double>();
  }
  const double w = lin.weight.item<double>(), b = lin.bias.item<double>();
  std::printf("attn %s: loss %.3g, w %.4f, b %.4f\n", ATTN_VERSION_STRING, loss, w, b);
  const bool ok = loss < 1e-4 && std::abs(w - 2.0) < 1e-2 && std::abs(b + 1.0) < 1e-2;
  return ok ? 0 : 1;
}
