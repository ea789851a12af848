// Forward and gradient goldens from PyTorch (float64) for every differentiable op in
// core/functions.hpp. Fixture: tests/fixtures/core_ops.safetensors, written by
// tests/fixtures/gen_core.py; every case "<name>" there has inputs in<i>, the output, a cotangent
// r and the gradients g<i> of sum(out * r). The table below maps each case to the attn
// expression; a test checks that the fixture and the table list the same cases.
// Also here: thread-count invariance of the core's parallel kernels.
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "test_util.hpp"

using namespace attn;
using In = std::vector<Tensor>;
using Out = std::vector<Tensor>;  // {result} or {result, aux}
using CaseFn = std::function<Out(const In&)>;

namespace {

struct Case {
  const char* family;
  std::string name;
  CaseFn fn;
};

Out one(const Tensor& t) { return {t}; }
Out two(const std::pair<Tensor, Tensor>& p) { return {p.first, p.second}; }

// Results of split/chunk/unbind flattened, scaled by their position (1, 2, ...) and concatenated.
Tensor weighted_cat(const std::vector<Tensor>& parts) {
  std::vector<Tensor> flat;
  for (size_t i = 0; i < parts.size(); ++i) flat.push_back(mul(flatten(parts[i]), double(i + 1)));
  return cat(flat, 0);
}

#define F1(expr) [](const In& in) { const Tensor& x = in[0]; (void)x; return one(expr); }
#define F2(expr) [](const In& in) { const Tensor &a = in[0], &b = in[1]; return one(expr); }

const std::vector<Case>& cases() {
  static const std::vector<Case> table = [] {
    std::vector<Case> t;
    // ---- binary with broadcasting ----
    for (const char* bn : {"same", "row", "col", "outer", "both", "0d"}) {
      const std::string s(bn);
      t.push_back({"binary", "add_" + s, F2(add(a, b))});
      t.push_back({"binary", "sub_" + s, F2(a - b)});
      t.push_back({"binary", "mul_" + s, F2(a * b)});
      t.push_back({"binary", "div_" + s, F2(div(a, b))});
    }
    t.push_back({"binary", "maximum", F2(maximum(a, b))});
    t.push_back({"binary", "minimum", F2(minimum(a, b))});
    t.push_back({"binary", "maximum_bcast", F2(maximum(a, b))});
    t.push_back({"binary", "minimum_bcast", F2(minimum(a, b))});
    t.push_back({"binary", "maximum_ties", F2(maximum(a, b))});
    t.push_back({"binary", "minimum_ties", F2(minimum(a, b))});
    // ---- scalar forms ----
    t.push_back({"scalar", "add_scalar", F1(add(x, 2.5))});
    t.push_back({"scalar", "sub_scalar", F1(x - 1.25)});
    t.push_back({"scalar", "mul_scalar", F1(mul(x, -1.5))});
    t.push_back({"scalar", "div_scalar", F1(x / 4.0)});
    t.push_back({"scalar", "rsub_scalar", F1(3.0 - x)});
    t.push_back({"scalar", "rdiv_scalar", F1(rdiv(2.0, x))});
    t.push_back({"scalar", "neg", F1(-x)});
    // ---- unary ----
    t.push_back({"unary", "pow2", F1(pow(x, 2.0))});
    t.push_back({"unary", "pow3", F1(x.pow(3.0))});
    t.push_back({"unary", "pow_half", F1(pow(x, 0.5))});
    t.push_back({"unary", "pow_neg", F1(pow(x, -1.5))});
    t.push_back({"unary", "sqrt", F1(sqrt(x))});
    t.push_back({"unary", "exp", F1(exp(x))});
    t.push_back({"unary", "log", F1(log(x))});
    t.push_back({"unary", "abs", F1(abs(x))});
    t.push_back({"unary", "sin", F1(sin(x))});
    t.push_back({"unary", "cos", F1(cos(x))});
    t.push_back({"unary", "clamp", F1(clamp(x, -0.5, 0.7))});
    t.push_back({"unary", "tanh", F1(tanh(x))});
    t.push_back({"unary", "sigmoid", F1(sigmoid(x))});
    t.push_back({"unary", "relu", F1(relu(x))});
    t.push_back({"unary", "leaky_relu", F1(leaky_relu(x))});
    t.push_back({"unary", "leaky_relu_02", F1(leaky_relu(x, 0.2))});
    t.push_back({"unary", "elu", F1(elu(x))});
    t.push_back({"unary", "elu_05", F1(elu(x, 0.5))});
    t.push_back({"unary", "gelu", F1(gelu(x))});
    t.push_back({"unary", "softplus", F1(softplus(x))});
    t.push_back({"unary", "softplus_beta", F1(softplus(x, 2.0, 5.0))});
    // ---- where / masked_fill ----
    t.push_back({"where", "where", [](const In& in) { return one(where(in[0], in[1], in[2])); }});
    t.push_back({"where", "where_bcast", [](const In& in) { return one(where(in[0], in[1], in[2])); }});
    t.push_back({"where", "masked_fill", F2(masked_fill(a, b, -2.5))});
    t.push_back({"where", "masked_fill_bcast", F2(masked_fill(a, b, 7.0))});
    // ---- reductions ----
    t.push_back({"reduce", "sum_all", F1(sum(x))});
    t.push_back({"reduce", "sum_d0", F1(sum(x, 0))});
    t.push_back({"reduce", "sum_d1_keep", F1(sum(x, 1, true))});
    t.push_back({"reduce", "sum_dlast", F1(x.sum(-1))});
    t.push_back({"reduce", "sum_dims", F1(sum(x, std::vector<int64_t>{0, 2}))});
    t.push_back({"reduce", "sum_dims_keep", F1(sum(x, std::vector<int64_t>{0, 2}, true))});
    t.push_back({"reduce", "mean_all", F1(mean(x))});
    t.push_back({"reduce", "mean_d1", F1(mean(x, 1))});
    t.push_back({"reduce", "mean_d0_keep", F1(mean(x, 0, true))});
    t.push_back({"reduce", "mean_dims", F1(mean(x, std::vector<int64_t>{1, 2}))});
    t.push_back({"reduce", "var_d1", F1(var(x, 1))});
    t.push_back({"reduce", "var_d0_biased_keep", F1(var(x, 0, false, true))});
    t.push_back({"reduce", "max_all", F1(max(x))});
    t.push_back({"reduce", "max_d1", [](const In& in) { return two(max(in[0], 1)); }});
    t.push_back({"reduce", "max_d0_keep", [](const In& in) { return two(max(in[0], 0, true)); }});
    t.push_back({"reduce", "min_d1", [](const In& in) { return two(min(in[0], 1)); }});
    t.push_back({"reduce", "min_dlast_keep", [](const In& in) { return two(min(in[0], -1, true)); }});
    t.push_back({"softmax", "softmax_dlast", F1(softmax(x, -1))});
    t.push_back({"softmax", "softmax_d0", F1(softmax(x, 0))});
    t.push_back({"softmax", "softmax_d1", F1(x.softmax(1))});
    t.push_back({"softmax", "log_softmax_dlast", F1(log_softmax(x, -1))});
    t.push_back({"softmax", "log_softmax_d1", F1(log_softmax(x, 1))});
    t.push_back({"softmax", "logsumexp_d1", F1(logsumexp(x, 1))});
    t.push_back({"softmax", "logsumexp_dlast_keep", F1(logsumexp(x, -1, true))});
    // ---- shape ----
    t.push_back({"shape", "reshape", F1(reshape(x, {4, -1}))});
    t.push_back({"shape", "flatten", F1(flatten(x))});
    t.push_back({"shape", "flatten_1_2", F1(flatten(x, 1, 2))});
    t.push_back({"shape", "transpose", F1(transpose(x, 0, 2))});
    t.push_back({"shape", "transpose_neg", F1(x.transpose(-1, -2))});
    t.push_back({"shape", "permute", F1(permute(x, {2, 0, 1}))});
    t.push_back({"shape", "unsqueeze", F1(unsqueeze(x, 1))});
    t.push_back({"shape", "unsqueeze_neg", F1(unsqueeze(x, -1))});
    t.push_back({"shape", "squeeze_dim", F1(squeeze(x, 1))});
    t.push_back({"shape", "squeeze_all", F1(squeeze(x))});
    t.push_back({"shape", "narrow", F1(narrow(x, 1, 1, 2))});
    t.push_back({"shape", "slice_step", F1(slice(x, 1, 1, 7, 2))});
    t.push_back({"shape", "slice_step3_d0", F1(slice(x, 0, 0, 5, 3))});
    t.push_back({"shape", "slice_negative", F1(slice(x, 1, -3, -1))});
    t.push_back({"shape", "select", F1(select(x, 1, 2))});
    t.push_back({"shape", "select_neg", F1(select(x, 0, -1))});
    t.push_back({"shape", "cat_d0", [](const In& in) { return one(cat({in[0], in[1], in[2]}, 0)); }});
    t.push_back({"shape", "cat_d1", F2(cat({a, b}, 1))});
    t.push_back({"shape", "cat_dlast", F2(cat({a, b}, -1))});
    t.push_back({"shape", "stack_d0", F2(stack({a, b}, 0))});
    t.push_back({"shape", "stack_d1", [](const In& in) { return one(stack({in[0], in[1], in[2]}, 1)); }});
    t.push_back({"shape", "stack_dlast", F2(stack({a, b}, -1))});
    t.push_back({"shape", "split", F1(weighted_cat(split(x, 2, 1)))});
    t.push_back({"shape", "chunk", F1(weighted_cat(chunk(x, 3, 0)))});
    t.push_back({"shape", "unbind", F1(weighted_cat(unbind(x, 1)))});
    t.push_back({"shape", "index_select_d0", F2(index_select(a, 0, b))});
    t.push_back({"shape", "index_select_d1", F2(index_select(a, 1, b))});
    t.push_back({"shape", "flip_d0", F1(flip(x, {0}))});
    t.push_back({"shape", "flip_d1_d2", F1(flip(x, {1, 2}))});
    t.push_back({"shape", "expand", F1(expand(x, {2, 3, 4}))});
    t.push_back({"shape", "expand_neg1", F1(x.expand({3, -1}))});
    t.push_back({"shape", "broadcast_to", F1(broadcast_to(x, {2, 3, 4}))});
    t.push_back({"shape", "repeat_interleave_rows", F1(repeat_interleave_rows(x, 3))});
    // ---- matmul / linear ----
    for (const char* m : {"1d_1d", "1d_2d", "2d_1d", "2d_2d", "3d_3d", "3d_2d", "2d_3d", "1d_3d", "3d_1d", "3d_bcast",
                          "4d_4d", "4d_bcast", "4d_3d", "4d_2d"}) {
      t.push_back({"matmul", std::string("matmul_") + m, F2(matmul(a, b))});
    }
    t.push_back({"matmul", "linear", [](const In& in) { return one(linear(in[0], in[1], in[2])); }});
    t.push_back({"matmul", "linear_3d", [](const In& in) { return one(linear(in[0], in[1], in[2])); }});
    t.push_back({"matmul", "linear_nobias", F2(linear(a, b, Tensor()))});
    t.push_back({"matmul", "linear_1d", [](const In& in) { return one(linear(in[0], in[1], in[2])); }});
    // ---- losses ----
    const std::pair<const char*, Reduction> reds[] = {
        {"mean", Reduction::Mean}, {"sum", Reduction::Sum}, {"none", Reduction::None}};
    for (auto [rn, r] : reds) {
      t.push_back({"loss", std::string("mse_") + rn, [r = r](const In& in) { return one(mse_loss(in[0], in[1], r)); }});
      t.push_back({"loss", std::string("l1_") + rn, [r = r](const In& in) { return one(l1_loss(in[0], in[1], r)); }});
      t.push_back({"loss", std::string("bce_logits_") + rn,
                   [r = r](const In& in) { return one(binary_cross_entropy_with_logits(in[0], in[1], r)); }});
      t.push_back({"loss", std::string("nll_") + rn, [r = r](const In& in) { return one(nll_loss(in[0], in[1], r)); }});
      t.push_back({"loss", std::string("cross_entropy_") + rn, [r = r](const In& in) { return one(cross_entropy(in[0], in[1], r)); }});
    }
    t.push_back({"loss", "bce_logits_extreme", F2(binary_cross_entropy_with_logits(a, b, Reduction::Sum))});
    // ---- layer functions ----
    t.push_back({"layer", "layer_norm", [](const In& in) { return one(layer_norm(in[0], {5}, in[1], in[2])); }});
    t.push_back({"layer", "layer_norm_2d", [](const In& in) { return one(layer_norm(in[0], {3, 4}, in[1], in[2])); }});
    t.push_back({"layer", "layer_norm_noaffine", F1(layer_norm(x, {4}, Tensor(), Tensor()))});
    t.push_back(
        {"layer", "layer_norm_eps", [](const In& in) { return one(layer_norm(in[0], {6}, in[1], in[2], 1e-2)); }});
    t.push_back({"layer", "embedding", F2(embedding(a, b))});
    t.push_back({"layer", "embedding_1d", F2(embedding(a, b))});
    return t;
  }();
  return table;
}

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

TEST_CASE("golden: float32 forward agrees with the float64 goldens", "[golden]") {
  // A sample of ops in float32: same code paths, single precision tolerances.
  for (const char* name : {"add_both", "div_outer", "gelu", "softmax_d1", "log_softmax_dlast", "matmul_4d_bcast",
                           "matmul_3d_2d", "layer_norm_2d", "var_d1", "cross_entropy_mean", "bce_logits_sum"}) {
    INFO("case " << name);
    const Case* c = nullptr;
    for (const Case& k : cases())
      if (std::string(k.name) == name) c = &k;
    REQUIRE(c);
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
    for (const Tensor& x : inputs) ins.push_back(x.detach().clone().requires_grad_());
    Tensor out = f(ins);
    manual_seed(99);
    Tensor r = Tensor::randn(out.shape(), out.dtype());
    out.backward(r);
    std::vector<Tensor> res{out.detach()};
    for (const Tensor& x : ins) res.push_back(x.grad());
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

TEST_CASE("threads: matmul gives identical bits with 1 and 2 threads", "[threads]") {
  manual_seed(1);
  SECTION("2-D 300x200 @ 200x150") {
    check_thread_invariance({Tensor::randn({300, 200}), Tensor::randn({200, 150})},
                            [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); });
  }
  SECTION("batched 8x64x96 @ 8x96x80") {
    check_thread_invariance({Tensor::randn({8, 64, 96}), Tensor::randn({8, 96, 80})},
                            [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); });
  }
  SECTION("broadcast batch 4x1x64x48 @ 3x48x40 (general path)") {
    check_thread_invariance({Tensor::randn({4, 1, 64, 48}), Tensor::randn({3, 48, 40})},
                            [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); });
  }
  SECTION("linear on a 3-D input") {
    check_thread_invariance({Tensor::randn({16, 64, 96}), Tensor::randn({80, 96}), Tensor::randn({80})},
                            [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); });
  }
  SECTION("float64 2-D") {
    check_thread_invariance({Tensor::randn({300, 200}, kFloat64), Tensor::randn({200, 150}, kFloat64)},
                            [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); });
  }
}

TEST_CASE("threads: softmax, sum, layer_norm give identical bits with 1 and 2 threads", "[threads]") {
  manual_seed(2);
  SECTION("softmax last dim") {
    check_thread_invariance({Tensor::randn({512, 300})},
                            [](const std::vector<Tensor>& in) { return softmax(in[0], -1); });
  }
  SECTION("softmax middle dim") {
    check_thread_invariance({Tensor::randn({64, 100, 32})},
                            [](const std::vector<Tensor>& in) { return log_softmax(in[0], 1); });
  }
  SECTION("sum over all elements") {
    check_thread_invariance({Tensor::randn({1000, 700})}, [](const std::vector<Tensor>& in) { return sum(in[0]); });
  }
  SECTION("sum over dims") {
    check_thread_invariance({Tensor::randn({200, 300, 4})},
                            [](const std::vector<Tensor>& in) { return add(sum(in[0], 1), sum(in[0], 0).sum(0)); });
  }
  SECTION("layer_norm") {
    check_thread_invariance({Tensor::randn({2048, 96}), Tensor::randn({96}), Tensor::randn({96})},
                            [](const std::vector<Tensor>& in) { return layer_norm(in[0], {96}, in[1], in[2]); });
  }
  SECTION("elementwise broadcasting chain") {
    check_thread_invariance({Tensor::randn({256, 512}), Tensor::randn({512})},
                            [](const std::vector<Tensor>& in) { return tanh(mul(in[0], in[1]) + in[1]); });
  }
}
