// Links A and B (and this third TU) into one binary: the results must agree, and the global
// state behind inline functions (random generator, grad mode) must be one object, not one per TU.
#include <attn/attn.hpp>
#if defined(ATTN_EXPECT_COMPILED_MODE) && ATTN_HEADER_DEFINITIONS
#error "linked against attn::attn_compiled but compiled with the definitions (ATTN_SEPARATE_COMPILATION missing)"
#endif

#include <cmath>
#include <cstdio>

namespace odr {
double tu_a_forward_backward();
void tu_a_seed(uint64_t s);
attn::Tensor tu_a_randn();
bool tu_a_grad_enabled();
double tu_b_forward_backward();
attn::Tensor tu_b_randn();
double tu_b_train_step();
}  // namespace odr

int main() {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    failures += ok ? 0 : 1;
  };
  const double a = odr::tu_a_forward_backward(), b = odr::tu_b_forward_backward();
  check(std::isfinite(a) && a == b, "linear in TU A equals matmul in TU B");

  // One generator: seeding in A, then drawing in B then A, continues one sequence.
  odr::tu_a_seed(17);
  const auto b1 = odr::tu_b_randn().to_vector<float>();
  const auto a1 = odr::tu_a_randn().to_vector<float>();
  attn::manual_seed(17);
  const auto m1 = attn::Tensor::randn({4}).to_vector<float>();
  const auto m2 = attn::Tensor::randn({4}).to_vector<float>();
  check(b1 == m1 && a1 == m2, "manual_seed in one TU drives randn in the others");

  {
    attn::NoGradGuard guard;  // in this TU
    check(!odr::tu_a_grad_enabled(), "NoGradGuard in one TU is seen by another");
  }
  check(odr::tu_a_grad_enabled(), "grad mode restored across TUs");

  const double l1 = odr::tu_b_train_step(), l2 = odr::tu_b_train_step();
  check(std::isfinite(l1) && l1 == l2 && l1 > 0, "training step reproducible");
  return failures == 0 ? 0 : 1;
}
