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
