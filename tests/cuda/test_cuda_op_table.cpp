// CUDA parity of every op-table case flagged kCuda (tests/op_table.inc): the case runs on the
// GPU and on the CPU from the same float32 inputs (the golden inputs of core_ops.safetensors;
// masks move to the GPU too, index tensors stay on the host as index_select reads them there),
// then the forward result and the gradient of sum(out * r) of every float input are compared.
// Error measure as in test_cuda_parity.cpp: max |cuda - cpu| / max |cpu|, at most 1e-5.
// Without a CUDA device the case prints "SKIPPED: no CUDA device" (CTest marks it skipped).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>

#include "../op_table.hpp"
#include "../test_util.hpp"

using namespace attn;

namespace {

double rel_err(const Tensor& got_any, const Tensor& want) {
  const Tensor got = got_any.device() == Device::CPU ? got_any : got_any.detach().to(Device::CPU);
  REQUIRE(got.shape() == want.shape());
  const auto a = got.to_vector<double>(), b = want.to_vector<double>();
  double diff = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    mag = std::max(mag, std::abs(b[i]));
  }
  return diff / std::max(mag, 1e-30);
}

}  // namespace

TEST_CASE("op table: every kCuda case matches the CPU, forward and backward") {
  if (cuda_device_count() == 0) {
    WARN("SKIPPED: no CUDA device (kernels not run; parity unverified on this machine)");
    std::cout << "SKIPPED: no CUDA device" << std::endl;
    return;
  }
  const io::SafetensorsFile fx = load_fixture("core_ops.safetensors");
  int count = 0;
  for (const op_table::Case& c : op_table::cases()) {
    if (!(c.flags & op_table::kCuda)) continue;
    INFO("case " << c.name);
    const std::string n = c.name;
    op_table::Inputs on_cpu, on_gpu;
    for (int i = 0; fx.contains(n + ".in" + std::to_string(i)); ++i) {
      const Tensor x = fx.at(n + ".in" + std::to_string(i));
      if (x.is_floating_point()) {
        on_cpu.push_back(x.to(kFloat32).requires_grad_());
        on_gpu.push_back(x.to(kFloat32).to(Device::CUDA).requires_grad_());
      } else {
        on_cpu.push_back(x);
        on_gpu.push_back(x.dtype() == kBool ? x.to(Device::CUDA) : x);
      }
    }
    const Tensor yc = c.fn(on_cpu)[0], yg = c.fn(on_gpu)[0];
    CHECK(yg.device() == Device::CUDA);
    const double ef = rel_err(yg, yc);
    INFO("forward rel err " << ef);
    CHECK(ef <= 1e-5);
    const Tensor r = fx.at(n + ".r").to(kFloat32);
    yc.backward(r);
    yg.backward(r.to(Device::CUDA));
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      if (!on_cpu[i].requires_grad()) continue;
      const Tensor gc = on_cpu[i].grad(), gg = on_gpu[i].grad();
      INFO("gradient of input " << i);
      REQUIRE(gc.defined() == gg.defined());
      if (!gc.defined()) continue;
      const double eg = rel_err(gg, gc);
      INFO("rel err " << eg);
      CHECK(eg <= 1e-5);
    }
    ++count;
  }
  CHECK(count >= 60);
}
