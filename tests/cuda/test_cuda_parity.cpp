// Parity of every CUDA op with the CPU op on random float32 inputs, forward and backward.
// Error measure: max |cuda - cpu| / max(max |cpu|, 1e-30) over the tensor ("relative error");
// reductions, products and attention must be within 1e-5, elementwise ops within 1e-6.
// Without a CUDA device every case prints "SKIPPED: no CUDA device" and returns (CTest marks it
// skipped); "no device: clear errors" runs everywhere.
#include <catch2/catch.hpp>

#include <attn/attn.hpp>
#include <cmath>
#include <iostream>
#include <string>

using namespace attn;

namespace {

bool skip_without_device() {
  if (cuda_device_count() > 0) return false;
  WARN("SKIPPED: no CUDA device (kernels not run; parity unverified on this machine)");
  std::cout << "SKIPPED: no CUDA device" << std::endl;
  return true;
}
#define CUDA_OR_SKIP()                \
  do {                                \
    if (skip_without_device()) return; \
  } while (0)

Tensor cpu(const Tensor& t) { return t.detach().to(Device::CPU); }
Tensor gpu_leaf(const Tensor& t) { return t.detach().to(Device::CUDA).requires_grad_(); }
Tensor cpu_leaf(const Tensor& t) { return t.detach().clone().requires_grad_(); }

double rel_err(const Tensor& got_any, const Tensor& want) {
  const Tensor got = got_any.device() == Device::CPU ? got_any : cpu(got_any);
  REQUIRE(got.shape() == want.shape());
  const auto a = got.to_vector<double>(), b = want.to_vector<double>();
  double diff = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isinf(b[i]) && a[i] == b[i]) continue;  // -inf where every key is masked (log_softmax)
    diff = std::max(diff, std::abs(a[i] - b[i]));
    mag = std::max(mag, std::abs(b[i]));
  }
  return diff / std::max(mag, 1e-30);
}
#define CHECK_PARITY(got, want, tol)              \
  do {                                            \
    const double e_ = rel_err(got, want);         \
    INFO(#got << " vs " << #want << ": rel err " << e_); \
    CHECK(e_ <= (tol));                           \
  } while (0)

constexpr double kElem = 1e-6, kRed = 1e-5;

}  // namespace

TEST_CASE("no device: clear errors and a host round trip") {
  const Tensor x = Tensor::randn({3, 4});
  CHECK(x.device() == Device::CPU);
  CHECK(x.to(Device::CPU).is_same(x));
  if (cuda_device_count() == 0) {
    WARN("no CUDA device here: checking that to(Device::CUDA) says so (cuda_is_available() = false)");
    CHECK_FALSE(cuda_is_available());
    try {
      (void)x.to(Device::CUDA);
      FAIL("to(Device::CUDA) without a device did not throw");
    } catch (const std::runtime_error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find("no CUDA device") != std::string::npos);
    }
    return;
  }
  const Tensor g = x.to(Device::CUDA);
  CHECK(g.device() == Device::CUDA);
  CHECK(rel_err(g, x) == 0.0);
  // mixing devices names the op; an op without a CUDA path says how to proceed
  CHECK_THROWS_WITH(add(g, x), Catch::Contains("add") && Catch::Contains("different devices"));
  CHECK_THROWS_WITH(sin(g), Catch::Contains("call .to(Device::CPU) first"));
  CHECK_THROWS_WITH(g.to(kFloat64).sum(), Catch::Contains("float32"));
}

TEST_CASE("to(Device) is differentiable both ways") {
  CUDA_OR_SKIP();
  Tensor x = Tensor::randn({5, 3}).requires_grad_();
  Tensor y = mul(x.to(Device::CUDA), 3.0).to(Device::CPU);
  y.sum().backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device() == Device::CPU);
  CHECK_PARITY(x.grad(), Tensor::full({5, 3}, 3.0), 0.0);
  // a loss computed on the GPU: backward() seeds on the GPU, leaf grads stay on the GPU
  Tensor w = gpu_leaf(Tensor::randn({4}));
  Tensor l = mul(w, w).sum();
  CHECK(l.device() == Device::CUDA);
  l.backward();
  CHECK(w.grad().device() == Device::CUDA);
  CHECK_PARITY(w.grad(), mul(cpu(w), 2.0), kElem);
  // accumulation over two backward passes on the device
  mul(w, w).sum().backward();
  CHECK_PARITY(w.grad(), mul(cpu(w), 4.0), kElem);
}

TEST_CASE("elementwise unary activations") {
  CUDA_OR_SKIP();
  manual_seed(1);
  const Tensor base = Tensor::randn({7, 33});
  const Tensor pos = add(Tensor::rand({7, 33}), 0.1);
  const Tensor gout = Tensor::randn({7, 33});
  struct Case {
    const char* name;
    Tensor (*f)(const Tensor&);
    bool positive;
  };
  const Case cases[] = {
      {"tanh", [](const Tensor& t) { return attn::tanh(t); }, false},
      {"sigmoid", [](const Tensor& t) { return attn::sigmoid(t); }, false},
      {"relu", [](const Tensor& t) { return attn::relu(t); }, false},
      {"exp", [](const Tensor& t) { return attn::exp(t); }, false},
      {"log", [](const Tensor& t) { return attn::log(t); }, true},
      {"neg", [](const Tensor& t) { return attn::neg(t); }, false},
      {"gelu", [](const Tensor& t) { return attn::gelu(t); }, false},
      {"add_scalar", [](const Tensor& t) { return attn::add(t, 0.75); }, false},
      {"mul_scalar", [](const Tensor& t) { return attn::mul(t, -1.5); }, false},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const Tensor in = c.positive ? pos : base;
    Tensor xc = cpu_leaf(in), xg = gpu_leaf(in);
    Tensor yc = c.f(xc), yg = c.f(xg);
    CHECK(yg.device() == Device::CUDA);
    CHECK_PARITY(yg, yc, kElem);
    yc.backward(gout);
    yg.backward(gout.to(Device::CUDA));
    CHECK_PARITY(xg.grad(), xc.grad(), kElem);
  }
}

TEST_CASE("elementwise binary ops, same shape and broadcast") {
  CUDA_OR_SKIP();
  manual_seed(2);
  const std::vector<std::pair<Shape, Shape>> shapes{{{4, 5, 6}, {4, 5, 6}}, {{4, 5, 6}, {6}}, {{4, 1, 6}, {5, 1}}};
  for (auto& [sa, sb] : shapes) {
    for (int op = 0; op < 4; ++op) {
      INFO("op " << op << " shapes " << to_string(sa) << " " << to_string(sb));
      const Tensor a = Tensor::randn(sa), b = op == 3 ? add(Tensor::rand(sb), 0.5) : Tensor::randn(sb);
      auto f = [op](const Tensor& x, const Tensor& y) {
        return op == 0 ? add(x, y) : op == 1 ? sub(x, y) : op == 2 ? mul(x, y) : div(x, y);
      };
      Tensor ac = cpu_leaf(a), bc = cpu_leaf(b), ag = gpu_leaf(a), bg = gpu_leaf(b);
      Tensor yc = f(ac, bc), yg = f(ag, bg);
      CHECK_PARITY(yg, yc, kElem);
      const Tensor gout = Tensor::randn(yc.shape());
      yc.backward(gout);
      yg.backward(gout.to(Device::CUDA));
      const bool broadcast = sa != sb;
      CHECK_PARITY(ag.grad(), ac.grad(), broadcast ? kRed : kElem);
      CHECK_PARITY(bg.grad(), bc.grad(), broadcast ? kRed : kElem);
    }
  }
}

TEST_CASE("sum, mean, softmax and log_softmax") {
  CUDA_OR_SKIP();
  manual_seed(3);
  Tensor x = Tensor::randn({3, 5, 17});
  x.set({1, 2, 0}, -INFINITY);  // a few masked entries
  for (int64_t j = 0; j < 17; ++j) x.set({2, 4, j}, -INFINITY);  // an all -inf lane
  for (int64_t dim : {-1, 1}) {
    INFO("dim " << dim);
    {
      const Tensor xs = Tensor::randn({3, 5, 17});
      Tensor xc = cpu_leaf(xs), xg = gpu_leaf(xs);
      Tensor yc = sum(xc, dim), yg = sum(xg, dim);
      CHECK_PARITY(yg, yc, kRed);
      const Tensor gout = Tensor::randn(yc.shape());
      yc.backward(gout);
      yg.backward(gout.to(Device::CUDA));
      CHECK_PARITY(xg.grad(), xc.grad(), kElem);
      Tensor mc = mean(cpu_leaf(xs)), mg = mean(gpu_leaf(xs));
      CHECK_PARITY(mg, mc, kRed);
    }
    for (bool log : {false, true}) {
      INFO((log ? "log_softmax" : "softmax"));
      Tensor xc = cpu_leaf(x), xg = gpu_leaf(x);
      Tensor yc = log ? log_softmax(xc, dim) : softmax(xc, dim);
      Tensor yg = log ? log_softmax(xg, dim) : softmax(xg, dim);
      CHECK_PARITY(yg, yc, kRed);
      const Tensor gout = Tensor::randn(yc.shape());
      yc.backward(gout);
      yg.backward(gout.to(Device::CUDA));
      const auto gv = cpu(xg.grad()).to_vector<float>();
      for (float v : gv) CHECK(std::isfinite(v));
      CHECK_PARITY(xg.grad(), xc.grad(), kRed);
    }
  }
}

TEST_CASE("matmul (cuBLAS) and linear") {
  CUDA_OR_SKIP();
  manual_seed(4);
  const std::vector<std::pair<Shape, Shape>> shapes{{{13, 24}, {24, 9}}, {{3, 13, 24}, {3, 24, 9}}, {{2, 3, 13, 24}, {24, 9}}};
  for (auto& [sa, sb] : shapes) {
    INFO(to_string(sa) << " @ " << to_string(sb));
    const Tensor a = Tensor::randn(sa), b = Tensor::randn(sb);
    Tensor ac = cpu_leaf(a), bc = cpu_leaf(b), ag = gpu_leaf(a), bg = gpu_leaf(b);
    Tensor yc = matmul(ac, bc), yg = matmul(ag, bg);
    CHECK_PARITY(yg, yc, kRed);
    const Tensor gout = Tensor::randn(yc.shape());
    yc.backward(gout);
    yg.backward(gout.to(Device::CUDA));
    CHECK_PARITY(ag.grad(), ac.grad(), kRed);
    CHECK_PARITY(bg.grad(), bc.grad(), kRed);
  }
  const Tensor x = Tensor::randn({4, 6, 10}), w = Tensor::randn({7, 10}), b = Tensor::randn({7});
  Tensor xc = cpu_leaf(x), wc = cpu_leaf(w), bc = cpu_leaf(b), xg = gpu_leaf(x), wg = gpu_leaf(w), bg = gpu_leaf(b);
  Tensor yc = linear(xc, wc, bc), yg = linear(xg, wg, bg);
  CHECK_PARITY(yg, yc, kRed);
  const Tensor gout = Tensor::randn(yc.shape());
  yc.backward(gout);
  yg.backward(gout.to(Device::CUDA));
  CHECK_PARITY(xg.grad(), xc.grad(), kRed);
  CHECK_PARITY(wg.grad(), wc.grad(), kRed);
  CHECK_PARITY(bg.grad(), bc.grad(), kRed);
}

TEST_CASE("layer_norm") {
  CUDA_OR_SKIP();
  manual_seed(5);
  const Tensor x = add(mul(Tensor::randn({6, 5, 32}), 3.0), 1.0), w = Tensor::randn({32}), b = Tensor::randn({32});
  Tensor xc = cpu_leaf(x), wc = cpu_leaf(w), bc = cpu_leaf(b), xg = gpu_leaf(x), wg = gpu_leaf(w), bg = gpu_leaf(b);
  Tensor yc = layer_norm(xc, {32}, wc, bc), yg = layer_norm(xg, {32}, wg, bg);
  CHECK_PARITY(yg, yc, kRed);
  const Tensor gout = Tensor::randn(yc.shape());
  yc.backward(gout);
  yg.backward(gout.to(Device::CUDA));
  CHECK_PARITY(xg.grad(), xc.grad(), kRed);
  CHECK_PARITY(wg.grad(), wc.grad(), kRed);
  CHECK_PARITY(bg.grad(), bc.grad(), kRed);
}

TEST_CASE("LSTM step pointwise and cell") {
  CUDA_OR_SKIP();
  manual_seed(6);
  const int64_t B = 5, I = 7, H = 12;
  const Tensor x = Tensor::randn({B, I}), h = Tensor::randn({B, H}), c = Tensor::randn({B, H});
  const Tensor wih = mul(Tensor::randn({4 * H, I}), 0.3), whh = mul(Tensor::randn({4 * H, H}), 0.3),
               bih = Tensor::randn({4 * H}), bhh = Tensor::randn({4 * H});
  std::vector<Tensor> in{x, h, c, wih, whh, bih, bhh}, ic, ig;
  for (auto& t : in) {
    ic.push_back(cpu_leaf(t));
    ig.push_back(gpu_leaf(t));
  }
  auto [hc, cc] = nn::detail::lstm_cell_composed(ic[0], ic[1], ic[2], ic[3], ic[4], ic[5], ic[6]);
  auto [hg, cg] = cuda_lstm_cell(ig[0], ig[1], ig[2], ig[3], ig[4], ig[5], ig[6]);
  CHECK_PARITY(hg, hc, kRed);
  CHECK_PARITY(cg, cc, kRed);
  const Tensor gh = Tensor::randn({B, H}), gc = Tensor::randn({B, H});
  add(mul(hc, gh), mul(cc, gc)).sum().backward();
  add(mul(hg, gh.to(Device::CUDA)), mul(cg, gc.to(Device::CUDA))).sum().backward();
  for (size_t k = 0; k < in.size(); ++k) {
    INFO("input " << k);
    CHECK_PARITY(ig[k].grad(), ic[k].grad(), kRed);
  }
}

namespace {
// sdpa on both devices with the same seed (dropout masks agree); compares out, weights, grads.
void sdpa_parity(const Shape& qs, const Shape& ks, const Shape& vs, const Tensor& mask, bool causal, double p,
                 const Tensor& kpm, bool need_weights) {
  const Tensor q = Tensor::randn(qs), k = Tensor::randn(ks), v = Tensor::randn(vs);
  Tensor qc = cpu_leaf(q), kc = cpu_leaf(k), vc = cpu_leaf(v), qg = gpu_leaf(q), kg = gpu_leaf(k), vg = gpu_leaf(v);
  const Tensor mg = mask.defined() ? mask.to(Device::CUDA) : Tensor(), pg = kpm.defined() ? kpm.to(Device::CUDA) : Tensor();
  manual_seed(77);
  auto [oc, wc] = scaled_dot_product_attention_with_weights(qc, kc, vc, mask, causal, p, kDefaultAttnScale, kpm);
  manual_seed(77);
  auto [og, wg] = scaled_dot_product_attention_with_weights(qg, kg, vg, mg, causal, p, kDefaultAttnScale, pg);
  CHECK_PARITY(og, oc, kRed);
  CHECK_PARITY(wg, wc, kRed);
  const Tensor go = Tensor::randn(oc.shape()), gw = need_weights ? Tensor::randn(wc.shape()) : Tensor();
  Tensor lc = mul(oc, go).sum(), lg = mul(og, go.to(Device::CUDA)).sum();
  if (need_weights) {
    lc = add(lc, mul(wc, gw).sum());
    lg = add(lg, mul(wg, gw.to(Device::CUDA)).sum());
  }
  lc.backward();
  lg.backward();
  CHECK_PARITY(qg.grad(), qc.grad(), kRed);
  CHECK_PARITY(kg.grad(), kc.grad(), kRed);
  CHECK_PARITY(vg.grad(), vc.grad(), kRed);
  for (float f : cpu(qg.grad()).to_vector<float>()) REQUIRE(std::isfinite(f));
}
}  // namespace

TEST_CASE("fused attention: plain, causal, dropout, weights") {
  CUDA_OR_SKIP();
  manual_seed(7);
  SECTION("plain, L != S, Ev != E, more rows than one block") { sdpa_parity({2, 3, 70, 16}, {2, 3, 45, 16}, {2, 3, 45, 8}, {}, false, 0.0, {}, false); }
  SECTION("causal") { sdpa_parity({2, 2, 90, 32}, {2, 2, 90, 32}, {2, 2, 90, 32}, {}, true, 0.0, {}, false); }
  SECTION("dropout (same seed, same mask)") { sdpa_parity({2, 2, 20, 8}, {2, 2, 24, 8}, {2, 2, 24, 8}, {}, false, 0.3, {}, true); }
  SECTION("weights and their gradient") { sdpa_parity({3, 17, 8}, {3, 19, 8}, {3, 19, 4}, {}, false, 0.0, {}, true); }
}

TEST_CASE("fused attention: row groups of 2, 4 and 8 lanes (head dims 33..256), masks, dropout") {
  CUDA_OR_SKIP();
  manual_seed(18);
  SECTION("E = 64, two lanes per row, causal, rows past one block") { sdpa_parity({2, 2, 150, 64}, {2, 2, 150, 64}, {2, 2, 150, 64}, {}, true, 0.0, {}, false); }
  SECTION("E = 100, Ev = 72, four lanes, dropout and weights") { sdpa_parity({2, 3, 40, 100}, {2, 3, 37, 100}, {2, 3, 37, 72}, {}, false, 0.2, {}, true); }
  SECTION("E = 256, eight lanes, bool mask with a fully masked row") {
    Tensor bm = gt(Tensor::rand({20, 45}), Tensor::full({}, 0.4));
    for (int64_t j = 0; j < 45; ++j) bm.set({7, j}, 0);
    sdpa_parity({1, 2, 20, 256}, {1, 2, 45, 256}, {1, 2, 45, 130}, bm, false, 0.0, {}, false);
  }
  SECTION("E = 33 with key padding") {
    Tensor kpm = Tensor::zeros({2, 30}, kBool);
    for (int64_t j = 20; j < 30; ++j) kpm.set({1, j}, 1);
    sdpa_parity({2, 2, 25, 33}, {2, 2, 30, 33}, {2, 2, 30, 33}, {}, false, 0.0, kpm, false);
  }
  SECTION("head dims above 256: a clear error") {
    const Tensor q = Tensor::randn({1, 1, 4, 300}).to(Device::CUDA);
    CHECK_THROWS_WITH(scaled_dot_product_attention(q, q, q), Catch::Contains("above 256"));
  }
}

TEST_CASE("fused attention: masks and fully masked rows") {
  CUDA_OR_SKIP();
  manual_seed(8);
  const int64_t B = 2, H = 2, L = 12, S = 10;
  // bool mask [L, S] with row 3 fully masked
  Tensor m = Tensor::rand({L, S});
  Tensor bm = gt(m, Tensor::full({}, 0.3));
  for (int64_t j = 0; j < S; ++j) bm.set({3, j}, 0);
  SECTION("bool attn_mask with a fully masked row") { sdpa_parity({B, H, L, 8}, {B, H, S, 8}, {B, H, S, 8}, bm, false, 0.0, {}, true); }
  SECTION("float additive mask [B, 1, L, S] with -inf") {
    Tensor fm = Tensor::randn({B, 1, L, S});
    for (int64_t j = 0; j < S; ++j) fm.set({1, 0, 5, j}, -INFINITY);
    sdpa_parity({B, H, L, 8}, {B, H, S, 8}, {B, H, S, 8}, fm, false, 0.0, {}, false);
  }
  SECTION("key padding, one batch fully padded, with causal") {
    Tensor kpm = Tensor::zeros({B, S}, kBool);
    for (int64_t j = 6; j < S; ++j) kpm.set({0, j}, 1);
    for (int64_t j = 0; j < S; ++j) kpm.set({1, j}, 1);
    sdpa_parity({B, H, L, 8}, {B, H, S, 8}, {B, H, S, 8}, {}, true, 0.0, kpm, false);
  }
}

TEST_CASE("multi-head attention module on the GPU") {
  CUDA_OR_SKIP();
  manual_seed(9);
  nn::MultiheadAttention mc(nn::MultiheadAttentionOptions(16, 4).batch_first(true));
  nn::MultiheadAttention mg(nn::MultiheadAttentionOptions(16, 4).batch_first(true));
  {
    NoGradGuard ng;
    auto pc = mc.parameters(), pg = mg.parameters();
    for (size_t i = 0; i < pc.size(); ++i) pg[i].copy_(pc[i]);
  }
  mg.to(Device::CUDA);
  const Tensor x = Tensor::randn({3, 11, 16});
  Tensor xc = cpu_leaf(x), xg = gpu_leaf(x);
  auto [oc, wc] = mc.forward(xc, xc, xc);
  auto [og, wg] = mg.forward(xg, xg, xg);
  CHECK_PARITY(og, oc, kRed);
  const Tensor go = Tensor::randn(oc.shape());
  mul(oc, go).sum().backward();
  mul(og, go.to(Device::CUDA)).sum().backward();
  CHECK_PARITY(xg.grad(), xc.grad(), kRed);
  auto pc = mc.parameters(), pg = mg.parameters();
  for (size_t i = 0; i < pc.size(); ++i) CHECK_PARITY(pg[i].grad(), pc[i].grad(), kRed);
}

TEST_CASE("windowed and block-local attention") {
  CUDA_OR_SKIP();
  manual_seed(10);
  const int64_t B = 2, H = 3, L = 40, E = 8;
  const Tensor q = Tensor::randn({B, H, L, E}), k = Tensor::randn({B, H, L, E}), v = Tensor::randn({B, H, L, 6});
  Tensor kpm = Tensor::zeros({B, L}, kBool);
  for (int64_t j = 30; j < L; ++j) kpm.set({1, j}, 1);  // the tail of batch 1 padded: its last queries see nothing
  const Tensor bias = Tensor::randn({H, 4 + 3 + 1});
  for (int mode = 0; mode < 3; ++mode) {
    INFO("mode " << mode);
    Tensor qc = cpu_leaf(q), kc = cpu_leaf(k), vc = cpu_leaf(v), bc = cpu_leaf(bias);
    Tensor qg = gpu_leaf(q), kg = gpu_leaf(k), vg = gpu_leaf(v), bg = gpu_leaf(bias);
    std::pair<Tensor, Tensor> rc, rg;
    if (mode == 0) {
      rc = windowed_attention(qc, kc, vc, 4, 3, false, NAN, kpm, bc);
      rg = windowed_attention(qg, kg, vg, 4, 3, false, NAN, kpm.to(Device::CUDA), bg);
    } else if (mode == 1) {
      rc = windowed_attention(qc, kc, vc, 5, 0, true, NAN, kpm);
      rg = windowed_attention(qg, kg, vg, 5, 0, true, NAN, kpm.to(Device::CUDA));
    } else {
      rc = block_local_attention(qc, kc, vc, 7, true);
      rg = block_local_attention(qg, kg, vg, 7, true);
    }
    CHECK_PARITY(rg.first, rc.first, kRed);
    CHECK_PARITY(rg.second, rc.second, kRed);
    const Tensor go = Tensor::randn(rc.first.shape()), gw = Tensor::randn(rc.second.shape());
    add(mul(rc.first, go).sum(), mul(rc.second, gw).sum()).backward();
    add(mul(rg.first, go.to(Device::CUDA)).sum(), mul(rg.second, gw.to(Device::CUDA)).sum()).backward();
    CHECK_PARITY(qg.grad(), qc.grad(), kRed);
    CHECK_PARITY(kg.grad(), kc.grad(), kRed);
    CHECK_PARITY(vg.grad(), vc.grad(), kRed);
    if (mode == 0) CHECK_PARITY(bg.grad(), bc.grad(), kRed);
  }
}

TEST_CASE("Adam and AdamW steps on the device, module.to(Device)") {
  CUDA_OR_SKIP();
  manual_seed(11);
  for (bool decoupled : {false, true}) {
    INFO((decoupled ? "AdamW" : "Adam"));
    nn::Linear lc(12, 5), lg(12, 5);
    {
      NoGradGuard ng;
      lg.weight.copy_(lc.weight);
      lg.bias.copy_(lc.bias);
    }
    lg.to(Device::CUDA);
    REQUIRE(lg.weight.device() == Device::CUDA);
    auto opts = optim::AdamOptions(1e-2).weight_decay(0.1).amsgrad(decoupled);
    optim::Adam oc(lc.parameters(), opts, decoupled), og(lg.parameters(), opts, decoupled);
    for (int step = 0; step < 3; ++step) {
      const Tensor x = Tensor::randn({8, 12}), t = Tensor::randn({8, 5});
      oc.zero_grad();
      og.zero_grad();
      mse_loss(lc.forward(x), t).backward();
      Tensor yg = lg.forward(x.to(Device::CUDA));
      mul(sub(yg, t.to(Device::CUDA)), sub(yg, t.to(Device::CUDA))).mean().backward();
      oc.step();
      og.step();
    }
    CHECK_PARITY(lg.weight, lc.weight, kRed);
    CHECK_PARITY(lg.bias, lc.bias, kRed);
    lg.to(Device::CPU);
    CHECK(lg.weight.device() == Device::CPU);
  }
}

namespace {
// CPU and GPU copies of one set of tensors, as leaves.
struct Twin {
  std::vector<Tensor> c, g;
  explicit Twin(const std::vector<Tensor>& ts) {
    for (const Tensor& t : ts) {
      c.push_back(t.defined() ? cpu_leaf(t) : Tensor());
      g.push_back(t.defined() ? gpu_leaf(t) : Tensor());
    }
  }
  void check_grads() const {
    for (size_t k = 0; k < c.size(); ++k) {
      if (!c[k].defined()) continue;
      INFO("input " << k << " " << to_string(c[k].shape()));
      CHECK_PARITY(g[k].grad(), c[k].grad(), kRed);
    }
  }
};
// sum_k <outs_k, gk> with the same random gk on both devices: every output gets a gradient.
void backward_both(const std::vector<Tensor>& oc, const std::vector<Tensor>& og) {
  Tensor lc = Tensor::zeros({}), lg = Tensor::zeros({}).to(Device::CUDA);
  for (size_t k = 0; k < oc.size(); ++k) {
    INFO("output " << k);
    CHECK_PARITY(og[k], oc[k], kRed);
    const Tensor w = Tensor::randn(oc[k].shape());
    lc = add(lc, mul(oc[k], w).sum());
    lg = add(lg, mul(og[k], w.to(Device::CUDA)).sum());
  }
  lc.backward();
  lg.backward();
}
}  // namespace

namespace {
// lstm_layer / gru_layer on both devices over directions, layouts and lengths; H decides the
// CUDA recurrence (small: the persistent kernels; W_hh beyond shared memory: per-step cuBLAS).
void rnn_layer_parity(int64_t T, int64_t B, int64_t I, int64_t H, const std::vector<bool>& cells) {
  for (bool lstm : cells)
    for (int64_t D : {1, 2})
      for (bool batch_first : {false, true})
        for (bool ragged : {false, true}) {
          INFO((lstm ? "LSTM" : "GRU") << " D=" << D << " batch_first=" << batch_first << " lengths=" << ragged);
          const int64_t G = lstm ? 4 : 3;
          std::vector<Tensor> in{Tensor::randn(batch_first ? Shape{B, T, I} : Shape{T, B, I}),
                                 Tensor::randn({D, B, H}), lstm ? Tensor::randn({D, B, H}) : Tensor()};
          for (int64_t d = 0; d < D; ++d)
            for (const Shape& s : {Shape{G * H, I}, Shape{G * H, H}, Shape{G * H}, Shape{G * H}})
              in.push_back(mul(Tensor::randn(s), 1.0 / std::sqrt(double(H))));
          std::vector<int64_t> lengths;
          if (ragged)
            for (int64_t b = 0; b < B; ++b) lengths.push_back(b % 3 == 1 ? 1 : T - b % 2);
          Twin tw(in);
          auto run = [&](const std::vector<Tensor>& t) {
            std::vector<Tensor> wih, whh, bih, bhh;
            for (int64_t d = 0; d < D; ++d) {
              wih.push_back(t[size_t(3 + 4 * d)]);
              whh.push_back(t[size_t(4 + 4 * d)]);
              bih.push_back(t[size_t(5 + 4 * d)]);
              bhh.push_back(t[size_t(6 + 4 * d)]);
            }
            return lstm ? lstm_layer(t[0], t[1], t[2], wih, whh, bih, bhh, lengths, batch_first)
                        : gru_layer(t[0], t[1], wih, whh, bih, bhh, lengths, batch_first);
          };
          backward_both(run(tw.c), run(tw.g));
          tw.check_grads();
        }
}
}  // namespace

TEST_CASE("fused LSTM and GRU layers: directions, batch_first, lengths, initial states") {
  CUDA_OR_SKIP();
  manual_seed(12);
  SECTION("H = 7: persistent kernels (W_hh in shared memory), a partial block of series") {
    rnn_layer_parity(9, 5, 6, 7, {true, false});
  }
  SECTION("LSTM H = 130, GRU H = 140: W_hh beyond shared memory, one cuBLAS GEMM per step") {
    rnn_layer_parity(4, 3, 5, 130, {true});
    rnn_layer_parity(4, 3, 5, 140, {false});
  }
}

TEST_CASE("nn::LSTM and nn::GRU modules (2 layers, bidirectional) on the GPU, inference too") {
  CUDA_OR_SKIP();
  manual_seed(13);
  for (bool lstm : {true, false}) {
    INFO((lstm ? "LSTM" : "GRU"));
    auto o = nn::LSTMOptions(3, 8).num_layers(2).bidirectional(true).batch_first(true);
    std::shared_ptr<nn::detail::RNNBase> mc, mg;
    if (lstm) mc = std::make_shared<nn::LSTM>(o), mg = std::make_shared<nn::LSTM>(o);
    else mc = std::make_shared<nn::GRU>(o), mg = std::make_shared<nn::GRU>(o);
    {
      NoGradGuard ng;
      auto pc = mc->parameters(), pg = mg->parameters();
      for (size_t i = 0; i < pc.size(); ++i) pg[i].copy_(pc[i]);
    }
    mg->to(Device::CUDA);
    const Tensor x = Tensor::randn({4, 11, 3});
    Tensor xc = cpu_leaf(x), xg = gpu_leaf(x);
    auto fwd = [&](nn::detail::RNNBase& m, const Tensor& in) {
      if (lstm) {
        auto [out, st] = static_cast<nn::LSTM&>(m).forward(in);
        return std::vector<Tensor>{out, st.first, st.second};
      }
      auto [out, hn] = static_cast<nn::GRU&>(m).forward(in);
      return std::vector<Tensor>{out, hn};
    };
    {
      NoGradGuard ng;  // inference saves nothing and gives the same values
      CHECK_PARITY(fwd(*mg, xg)[0], fwd(*mc, xc)[0], kRed);
    }
    backward_both(fwd(*mc, xc), fwd(*mg, xg));
    CHECK_PARITY(xg.grad(), xc.grad(), kRed);
    auto pc = mc->parameters(), pg = mg->parameters();
    for (size_t i = 0; i < pc.size(); ++i) CHECK_PARITY(pg[i].grad(), pc[i].grad(), kRed);
  }
}

TEST_CASE("layout ops through the strided copy: permute, slice, cat, stack, index_select, flip, expand") {
  CUDA_OR_SKIP();
  manual_seed(14);
  const Tensor a = Tensor::randn({3, 4, 5}), b = Tensor::randn({3, 2, 5});
  Twin tw({a, b});
  auto run = [](const std::vector<Tensor>& t) {
    const Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 0, 2}, {3});
    return std::vector<Tensor>{permute(t[0], {2, 0, 1}),
                               transpose(t[0], 0, 2),
                               slice(t[0], 1, 0, 4, 2),
                               select(t[0], 2, -1),
                               cat({t[0], t[1]}, 1),
                               stack({t[0], t[0]}, 0),
                               index_select(t[0], 1, idx),
                               flip(t[1], {0, 2}),
                               expand(narrow(t[1], 1, 1, 1), {2, 3, 4, 5})};
  };
  backward_both(run(tw.c), run(tw.g));
  tw.check_grads();
  // other dtypes travel through the same kernel
  const Tensor m = gt(Tensor::rand({4, 6}), Tensor::full({}, 0.5));
  CHECK(transpose(m.to(Device::CUDA), 0, 1).to(Device::CPU).to_vector<int64_t>() == transpose(m, 0, 1).to_vector<int64_t>());
}

TEST_CASE("losses, dropout, gradient clipping and attention pooling on the GPU") {
  CUDA_OR_SKIP();
  manual_seed(15);
  SECTION("binary_cross_entropy_with_logits and mse_loss") {
    const Tensor x = mul(Tensor::randn({6, 3}), 4.0), y = Tensor::rand({6, 3});
    Twin tw({x, y});
    auto run = [](const std::vector<Tensor>& t) {
      return std::vector<Tensor>{binary_cross_entropy_with_logits(t[0], t[1]),
                                 binary_cross_entropy_with_logits(t[0], t[1], Reduction::None),
                                 mse_loss(t[0], t[1])};
    };
    backward_both(run(tw.c), run(tw.g));
    tw.check_grads();
  }
  SECTION("dropout: the same seed drops the same elements") {
    const Tensor x = Tensor::randn({50, 7});
    manual_seed(5);
    const Tensor dc = dropout(x, 0.4, true);
    manual_seed(5);
    const Tensor dg = dropout(x.to(Device::CUDA), 0.4, true);
    CHECK(dg.device() == Device::CUDA);
    CHECK_PARITY(dg, dc, 0.0);
  }
  SECTION("clip_grad_norm_ scales gradients on the device") {
    for (double max_norm : {0.05, 1e6}) {
      nn::Linear lc(9, 4), lg(9, 4);
      {
        NoGradGuard ng;
        lg.weight.copy_(lc.weight);
        lg.bias.copy_(lc.bias);
      }
      lg.to(Device::CUDA);
      const Tensor x = Tensor::randn({5, 9});
      lc.forward(x).sum().backward();
      lg.forward(x.to(Device::CUDA)).sum().backward();
      const double nc = optim::clip_grad_norm_(lc.parameters(), max_norm);
      const double ng = optim::clip_grad_norm_(lg.parameters(), max_norm);
      CHECK(std::abs(nc - ng) <= 1e-5 * nc);
      CHECK(lg.weight.grad().device() == Device::CUDA);
      CHECK_PARITY(lg.weight.grad(), lc.weight.grad(), kRed);
      CHECK_PARITY(lg.bias.grad(), lc.bias.grad(), kRed);
    }
  }
  SECTION("attention_pooling with a mask and a fully masked series (composed on the GPU, fused on the CPU)") {
    const int64_t B = 3, T = 10, D = 6, Hd = 5;
    Tensor mask = Tensor::ones({B, T}, kBool);
    for (int64_t t = 6; t < T; ++t) mask.set({1, t}, 0);
    for (int64_t t = 0; t < T; ++t) mask.set({2, t}, 0);
    Twin tw({Tensor::randn({B, T, D}), Tensor::randn({Hd, D}), Tensor::randn({Hd}), Tensor::randn({1, Hd}),
             Tensor::randn({1})});
    auto run = [&](const std::vector<Tensor>& t, const Tensor& m) {
      auto [ctx, w] = attention_pooling(t[0], t[1], t[2], t[3], t[4], m);
      return std::vector<Tensor>{ctx, w};
    };
    backward_both(run(tw.c, mask), run(tw.g, mask.to(Device::CUDA)));
    // b2 shifts every score of a series alike and softmax ignores that: its gradient is 0 in exact
    // arithmetic, rounding noise on both devices, so it is checked against 0, not against the CPU.
    const Tensor gb2c = tw.c[4].grad(), gb2g = tw.g[4].grad();
    tw.c[4] = tw.g[4] = Tensor();
    tw.check_grads();
    CHECK(std::abs(gb2c.item<double>()) < 1e-5);
    CHECK(std::abs(gb2g.item<double>()) < 1e-5);
  }
}

TEST_CASE("item, to_vector and checkpoints of tensors on the GPU") {
  CUDA_OR_SKIP();
  manual_seed(16);
  const Tensor x = Tensor::randn({2, 3});
  CHECK(x.to(Device::CUDA).to_vector<float>() == x.to_vector<float>());
  CHECK(x.to(Device::CUDA).sum().item<double>() == Approx(x.sum().item<double>()).epsilon(1e-6));
  nn::Linear lg(4, 3), lc(4, 3);
  lg.to(Device::CUDA);
  const std::string path = "cuda_parity_ckpt.safetensors";
  save(lg, path);
  load(lc, path);
  CHECK(lc.weight.device() == Device::CPU);
  CHECK_PARITY(lc.weight, lg.weight, 0.0);
  CHECK_PARITY(lc.bias, lg.bias, 0.0);
  std::remove(path.c_str());
}

TEST_CASE("a reference-task model trains on the GPU as on the CPU (BiLSTM, pooling, BCE, clipping, Adam)") {
  CUDA_OR_SKIP();
  manual_seed(17);
  struct Net : nn::Module {
    nn::LSTM lstm{nn::LSTMOptions(1, 6).bidirectional(true).batch_first(true)};
    nn::AttentionPooling pool{12, 12};
    nn::Linear fc{12, 1};
    Net() {
      register_module("lstm", lstm);
      register_module("attention", pool);
      register_module("fc", fc);
    }
    Tensor forward(const Tensor& x) { return reshape(fc.forward(pool.forward(lstm.forward(x).first).first), {-1}); }
  };
  Net nc, ng;
  {
    NoGradGuard guard;
    auto pc = nc.parameters(), pg = ng.parameters();
    for (size_t i = 0; i < pc.size(); ++i) pg[i].copy_(pc[i]);
  }
  ng.to(Device::CUDA);
  optim::Adam oc(nc.parameters(), optim::AdamOptions(1e-2)), og(ng.parameters(), optim::AdamOptions(1e-2));
  for (int step = 0; step < 4; ++step) {
    const Tensor x = Tensor::randn({8, 30, 1}), y = gt(Tensor::rand({8}), Tensor::full({}, 0.5)).to(kFloat32);
    for (auto [net, opt, dev] : {std::tuple<Net*, optim::Adam*, Device>{&nc, &oc, Device::CPU},
                                 std::tuple<Net*, optim::Adam*, Device>{&ng, &og, Device::CUDA}}) {
      opt->zero_grad();
      Tensor loss = binary_cross_entropy_with_logits(net->forward(x.to(dev)), y.to(dev));
      loss.backward();
      optim::clip_grad_norm_(net->parameters(), 1.0);
      opt->step();
    }
  }
  // Adam's m / sqrt(v) turns float noise in a near-zero gradient into a step of up to lr: 2e-3 of
  // the largest parameter separates that from a wrong gradient (steps of lr = 1e-2 each). The
  // pooling's score bias gets a gradient that is 0 in exact arithmetic (softmax ignores a shift of
  // every score), so Adam moves it by noise alone on either device: it is not compared.
  auto pc = nc.named_parameters(), pg = ng.named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    INFO(pc[i].first);
    if (pc[i].first != "attention.2.bias") CHECK_PARITY(pg[i].second, pc[i].second, 2e-3);
  }
}

TEST_CASE("the caching allocator reuses freed blocks and empties on request") {
  CUDA_OR_SKIP();
  const void* first = nullptr;
  {
    const Tensor a = Tensor::zeros({1000}).to(Device::CUDA);
    first = a.raw_data();
  }
  CHECK(kernels::cuda::cached_bytes() >= 4000);
  const Tensor b = Tensor::zeros({1000}).to(Device::CUDA);
  CHECK(b.raw_data() == first);  // the same rounded size gets the freed block back
  cuda_empty_cache();
  CHECK(kernels::cuda::cached_bytes() == 0);
  CHECK(b.to_vector<float>() == std::vector<float>(1000, 0.f));
}
