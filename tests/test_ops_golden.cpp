// Forward and gradient goldens from PyTorch (float64) for every case of attn's op table
// (tests/op_table.inc: elementwise, reductions, shapes, matmul, losses, layers and the fused
// attention and recurrent ops). Fixture: tests/fixtures/core_ops.safetensors, written by
// tests/fixtures/gen_core.py from the same table; every case "<name>" there has inputs in<i>, the
// output, a cotangent r and the gradients g<i> of sum(out * r). A test checks that the fixture and
// the table list the same cases.
// Also here: thread-count invariance of every table case that names larger inputs (BIG).
#include <algorithm>
#include <cstring>
#include <set>
#include <sstream>

#include "op_table.hpp"
#include "test_util.hpp"

using namespace attn;
using op_table::Case;
using op_table::cases;
using In = op_table::Inputs;
using Out = op_table::Outputs;

namespace {

const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile f = load_fixture("core_ops.safetensors");
  return f;
}

std::vector<std::string> fixture_cases() {
  std::vector<std::string> names;
  std::stringstream ss(fixture().metadata.at("cases"));
  for (std::string s; std::getline(ss, s, ',');) names.push_back(s);
  return names;
}

// Runs one case: forward against "<name>.out", then backward of sum(out * r) against "<name>.g<i>".
void run_case(const Case& c) {
  const auto& f = fixture();
  const std::string n = c.name;
  INFO("case " << n);
  REQUIRE(f.contains(n + ".out"));
  In inputs;
  for (int i = 0; f.contains(n + ".in" + std::to_string(i)); ++i) {
    Tensor x = f.at(n + ".in" + std::to_string(i)).clone();
    if (f.contains(n + ".g" + std::to_string(i))) x.requires_grad_();
    inputs.push_back(x);
  }
  Out res = c.fn(inputs);
  REQUIRE(!res.empty());
  CHECK(res[0].dtype() == kFloat64);
  CHECK(check_close(res[0], f.at(n + ".out"), 1e-9, 1e-10, n + " forward"));
  if (f.contains(n + ".aux")) {
    REQUIRE(res.size() == 2);
    CHECK(res[1].dtype() == f.at(n + ".aux").dtype());
    CHECK(res[1].shape() == f.at(n + ".aux").shape());
    CHECK(res[1].to_vector<int64_t>() == f.at(n + ".aux").to_vector<int64_t>());
  }
  res[0].backward(f.at(n + ".r"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string gname = n + ".g" + std::to_string(i);
    if (!f.contains(gname)) continue;
    Tensor g = inputs[i].grad();
    if (!g.defined()) g = Tensor::zeros(inputs[i].shape(), kFloat64);  // no path: zero gradient
    CHECK(check_close(g, f.at(gname), 1e-9, 1e-10, gname));
  }
}

void run_family(const char* family) {
  int count = 0;
  for (const Case& c : cases())
    if (std::string(c.family) == family) {
      run_case(c);
      ++count;
    }
  CHECK(count > 0);
}

}  // namespace

TEST_CASE("golden: the fixture and the C++ table list the same cases", "[golden]") {
  const auto fc = fixture_cases();
  std::set<std::string> fixture_set(fc.begin(), fc.end()), table_set;
  for (const Case& c : cases()) {
    INFO("table case " << c.name);
    CHECK(table_set.insert(c.name).second);  // no duplicates
    CHECK(fixture_set.count(c.name) == 1);
  }
  for (const auto& n : fc) {
    INFO("fixture case " << n << " has no entry in the C++ table");
    CHECK(table_set.count(n) == 1);
  }
  CHECK(fc.size() >= 150);
}

TEST_CASE("golden: add/sub/mul/div/maximum/minimum with broadcasting", "[golden]") { run_family("binary"); }
TEST_CASE("golden: scalar forms and neg", "[golden]") { run_family("scalar"); }
TEST_CASE("golden: unary math and activations", "[golden]") { run_family("unary"); }
TEST_CASE("golden: where and masked_fill", "[golden]") { run_family("where"); }
TEST_CASE("golden: sum/mean/var/max/min", "[golden]") { run_family("reduce"); }
TEST_CASE("golden: softmax/log_softmax/logsumexp", "[golden]") { run_family("softmax"); }
TEST_CASE("golden: shape ops", "[golden]") { run_family("shape"); }
TEST_CASE("golden: matmul and linear", "[golden]") { run_family("matmul"); }
TEST_CASE("golden: losses", "[golden]") { run_family("loss"); }
TEST_CASE("golden: layer_norm and embedding", "[golden]") { run_family("layer"); }
TEST_CASE("golden: fused attention, LSTM/GRU layers and cells", "[golden]") { run_family("fused"); }

TEST_CASE("golden: float32 forward agrees with the float64 goldens", "[golden]") {
  // A sample of ops in float32: same code paths, single precision tolerances.
  for (const char* name : {"add_both", "div_outer", "gelu", "softmax_d1", "log_softmax_dlast", "matmul_4d_bcast",
                           "matmul_3d_2d", "layer_norm_2d", "var_d1", "cross_entropy_mean", "bce_logits_sum"}) {
    INFO("case " << name);
    const Case* c = &op_table::find(name);
    const auto& f = fixture();
    In inputs;
    for (int i = 0; f.contains(std::string(name) + ".in" + std::to_string(i)); ++i) {
      Tensor x = f.at(std::string(name) + ".in" + std::to_string(i));
      inputs.push_back(x.is_floating_point() ? x.to(kFloat32) : x);
    }
    Tensor out = c->fn(inputs)[0];
    CHECK(out.dtype() == kFloat32);
    CHECK(check_close(out, f.at(std::string(name) + ".out"), 1e-4, 1e-5, name));
  }
}

// ---- thread-count invariance: identical bits with 1 and 2 threads ----
namespace {
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  return std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * dtype_size(a.dtype())) == 0;
}

// Forward result and gradients of every input for sum(out * r) (r fixed), at a given thread count.
template <class F>
std::vector<Tensor> forward_backward(int threads, const std::vector<Tensor>& inputs, const F& f) {
  return with_threads(threads, [&] {
    std::vector<Tensor> ins;
    for (const Tensor& x : inputs)
      ins.push_back(x.is_floating_point() ? x.detach().clone().requires_grad_() : x);  // masks stay leaves
    Tensor out = f(ins);
    manual_seed(99);
    Tensor r = Tensor::randn(out.shape(), out.dtype());
    out.backward(r);
    std::vector<Tensor> res{out.detach()};
    for (const Tensor& x : ins)
      if (x.requires_grad()) res.push_back(x.grad());
    return res;
  });
}

template <class F>
void check_thread_invariance(const std::vector<Tensor>& inputs, const F& f) {
  const auto one_thread = forward_backward(1, inputs, f);
  const auto two_threads = forward_backward(2, inputs, f);
  REQUIRE(one_thread.size() == two_threads.size());
  for (size_t i = 0; i < one_thread.size(); ++i) {
    INFO("result " << i << " (0 = forward, k = gradient of input k-1)");
    CHECK(same_bits(one_thread[i], two_threads[i]));
  }
}
}  // namespace

TEST_CASE("threads: every table case with BIG inputs gives identical bits with 1 and 2 threads", "[threads]") {
  int count = 0;
  for (const Case& c : cases()) {
    if (!*c.big) continue;
    for (DType dt : {kFloat32, kFloat64}) {
      INFO("case " << c.name << " " << dtype_name(dt) << " inputs " << c.big);
      manual_seed(7);
      check_thread_invariance(op_table::big_inputs(c.big, dt), [&c](const std::vector<Tensor>& in) { return c.fn(in)[0]; });
    }
    ++count;
  }
  CHECK(count >= 20);  // matmul, linear, softmax, sums, layer_norm, elementwise, attention
}

TEST_CASE("threads: an elementwise broadcasting chain gives identical bits with 1 and 2 threads", "[threads]") {
  manual_seed(2);
  check_thread_invariance({Tensor::randn({256, 512}), Tensor::randn({512})},
                          [](const std::vector<Tensor>& in) { return tanh(mul(in[0], in[1]) + in[1]); });
}
