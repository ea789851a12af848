// Optimizers, gradient clipping and learning-rate schedules against torch.optim (float64).
// Fixture: tests/fixtures/core_optim.safetensors from tests/fixtures/gen_core.py. Every optimizer
// runs 5 steps on loss = mse_loss(linear(X, W, b), Y) + 0.1 sum(W^4) from the same start as
// PyTorch; parameters must match after each step to 1e-6 relative (observed: ~1e-15).
#include <functional>
#include <map>
#include <memory>

#include "test_util.hpp"

using namespace attn;

namespace {
const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile f = load_fixture("core_optim.safetensors");
  return f;
}

using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;

const std::map<std::string, MakeOpt>& optimizers() {
  using namespace optim;
  static const std::map<std::string, MakeOpt> m = {
      {"sgd", [](std::vector<Tensor> p) { return std::make_unique<SGD>(p, SGDOptions(0.1)); }},
      {"sgd_momentum", [](std::vector<Tensor> p) { return std::make_unique<SGD>(p, SGDOptions(0.1).momentum(0.9)); }},
      {"sgd_nesterov",
       [](std::vector<Tensor> p) { return std::make_unique<SGD>(p, SGDOptions(0.1).momentum(0.9).nesterov(true)); }},
      {"sgd_wd_dampening",
       [](std::vector<Tensor> p) {
         return std::make_unique<SGD>(p, SGDOptions(0.1).momentum(0.8).dampening(0.3).weight_decay(0.05));
       }},
      {"sgd_wd", [](std::vector<Tensor> p) { return std::make_unique<SGD>(p, SGDOptions(0.05).weight_decay(0.1)); }},
      {"adam", [](std::vector<Tensor> p) { return std::make_unique<Adam>(p, AdamOptions(0.01)); }},
      {"adam_betas_eps",
       [](std::vector<Tensor> p) { return std::make_unique<Adam>(p, AdamOptions(0.02).betas(0.8, 0.95).eps(1e-6)); }},
      {"adam_wd", [](std::vector<Tensor> p) { return std::make_unique<Adam>(p, AdamOptions(0.01).weight_decay(0.1)); }},
      {"adam_amsgrad", [](std::vector<Tensor> p) { return std::make_unique<Adam>(p, AdamOptions(0.01).amsgrad(true)); }},
      {"adamw", [](std::vector<Tensor> p) { return std::make_unique<AdamW>(p, AdamWOptions(0.01)); }},
      {"adamw_wd",
       [](std::vector<Tensor> p) {
         AdamWOptions o(0.01);
         o.weight_decay(0.1);
         return std::make_unique<AdamW>(p, o);
       }},
      {"adamw_amsgrad",
       [](std::vector<Tensor> p) {
         AdamWOptions o(0.01);
         o.weight_decay(0.05).amsgrad(true);
         return std::make_unique<AdamW>(p, o);
       }},
  };
  return m;
}

Tensor problem_loss(const Tensor& W, const Tensor& b, const Tensor& X, const Tensor& Y) {
  return mse_loss(linear(X, W, b), Y) + mul(sum(pow(W, 4.0)), 0.1);
}

void run_optimizer(const std::string& name) {
  INFO("optimizer " << name);
  const auto& f = fixture();
  Tensor W = f.at("problem.W0").clone().requires_grad_();
  Tensor b = f.at("problem.b0").clone().requires_grad_();
  const Tensor X = f.at("problem.X"), Y = f.at("problem.Y");
  auto opt = optimizers().at(name)({W, b});
  const int steps = std::stoi(f.metadata.at("steps"));
  for (int k = 1; k <= steps; ++k) {
    INFO("step " << k);
    opt->zero_grad();
    problem_loss(W, b, X, Y).backward();
    opt->step();
    CHECK(check_close(W, f.at(name + ".W." + std::to_string(k)), 1e-6, 1e-12, "W"));
    CHECK(check_close(b, f.at(name + ".b." + std::to_string(k)), 1e-6, 1e-12, "b"));
    // Much tighter in practice: flag regressions in the update formulas early.
    CHECK(check_close(W, f.at(name + ".W." + std::to_string(k)), 1e-11, 1e-13, "W (tight)"));
  }
  CHECK(opt->step_count() == steps);
}

std::vector<double> fixture_lrs(const std::string& key) { return fixture().at(key).to_vector<double>(); }

void check_lrs(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("epoch " << i << ": attn " << got[i] << " vs torch " << want[i]);
    CHECK(got[i] == Approx(want[i]).epsilon(1e-10).margin(1e-15));
  }
}
}  // namespace

TEST_CASE("optim: the fixture lists the same optimizers as the test", "[optim]") {
  std::stringstream ss(fixture().metadata.at("optimizers"));
  size_t n = 0;
  for (std::string s; std::getline(ss, s, ',');) {
    INFO(s);
    CHECK(optimizers().count(s) == 1);
    ++n;
  }
  CHECK(n == optimizers().size());
}

TEST_CASE("optim: SGD plain, momentum, nesterov, weight decay, dampening match torch.optim.SGD", "[optim]") {
  for (const char* n : {"sgd", "sgd_momentum", "sgd_nesterov", "sgd_wd_dampening", "sgd_wd"}) run_optimizer(n);
}

TEST_CASE("optim: Adam with/without weight decay and amsgrad matches torch.optim.Adam", "[optim]") {
  for (const char* n : {"adam", "adam_betas_eps", "adam_wd", "adam_amsgrad"}) run_optimizer(n);
}

TEST_CASE("optim: AdamW matches torch.optim.AdamW", "[optim]") {
  for (const char* n : {"adamw", "adamw_wd", "adamw_amsgrad"}) run_optimizer(n);
}

TEST_CASE("optim: float32 parameters follow the float64 reference closely", "[optim]") {
  const auto& f = fixture();
  Tensor W = f.at("problem.W0").to(kFloat32).requires_grad_();
  Tensor b = f.at("problem.b0").to(kFloat32).requires_grad_();
  const Tensor X = f.at("problem.X").to(kFloat32), Y = f.at("problem.Y").to(kFloat32);
  optim::Adam opt({W, b}, optim::AdamOptions(0.01));
  for (int k = 0; k < 5; ++k) {
    opt.zero_grad();
    problem_loss(W, b, X, Y).backward();
    opt.step();
  }
  CHECK(W.dtype() == kFloat32);
  CHECK(check_close(W, f.at("adam.W.5"), 1e-4, 1e-5, "W float32"));
}

TEST_CASE("optim: parameters without a gradient are left alone, zero_grad clears", "[optim]") {
  Tensor a = Tensor::ones({2}, kFloat64).requires_grad_(), c = Tensor::ones({2}, kFloat64).requires_grad_();
  optim::Adam opt({a, c}, optim::AdamOptions(0.1));
  sum(a * 2.0).backward();
  opt.step();
  CHECK(c.to_vector<double>() == std::vector<double>{1, 1});
  CHECK(a.to_vector<double>()[0] == Approx(0.9));  // Adam's first step moves by lr
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("optim: state round trip continues identically", "[optim]") {
  const auto& f = fixture();
  auto run = [&](bool reload) {
    Tensor W = f.at("problem.W0").clone().requires_grad_();
    Tensor b = f.at("problem.b0").clone().requires_grad_();
    optim::Adam opt({W, b}, optim::AdamOptions(0.01).amsgrad(true));
    for (int k = 0; k < 5; ++k) {
      if (k == 2 && reload) {
        auto saved = opt.state();
        std::vector<std::pair<std::string, Tensor>> copy;
        for (auto& [n, t] : saved) copy.emplace_back(n, t.clone());
        optim::Adam fresh({W, b}, optim::AdamOptions(0.5).amsgrad(true));
        fresh.load_state(copy);
        CHECK(fresh.lr() == 0.01);
        CHECK(fresh.step_count() == 2);
        opt.load_state(copy);
      }
      opt.zero_grad();
      problem_loss(W, b, f.at("problem.X"), f.at("problem.Y")).backward();
      opt.step();
    }
    return W.to_vector<double>();
  };
  CHECK(run(false) == run(true));
}

TEST_CASE("optim: clip_grad_norm_ matches torch.nn.utils.clip_grad_norm_", "[optim]") {
  const auto& f = fixture();
  for (const char* c : {"clip_small", "clip_large"}) {
    const std::string n = c;
    INFO(n);
    Tensor p1 = Tensor::zeros({3, 4}, kFloat64).requires_grad_(), p2 = Tensor::zeros({5}, kFloat64).requires_grad_();
    Tensor p3 = Tensor::zeros({2}, kFloat64).requires_grad_();  // no gradient: ignored
    p1.set_grad(f.at(n + ".g1").clone());
    p2.set_grad(f.at(n + ".g2").clone());
    const double total = optim::clip_grad_norm_({p1, p2, p3}, f.at(n + ".max_norm").item<double>());
    CHECK(total == Approx(f.at(n + ".total").item<double>()).epsilon(1e-12));
    CHECK(check_close(p1.grad(), f.at(n + ".g1_after"), 1e-12, 1e-15, "g1"));
    CHECK(check_close(p2.grad(), f.at(n + ".g2_after"), 1e-12, 1e-15, "g2"));
    CHECK_FALSE(p3.grad().defined());
  }
}

TEST_CASE("schedules: StepLR, CosineAnnealingLR, LinearLR match PyTorch's lr sequence", "[optim][schedule]") {
  Tensor p = Tensor::zeros({1}, kFloat64).requires_grad_();
  auto sequence = [&](auto make, size_t epochs) {
    optim::SGD opt({p}, optim::SGDOptions(0.1));
    auto sched = make(opt);
    std::vector<double> lrs{opt.lr()};
    for (size_t e = 0; e < epochs; ++e) {
      opt.step();
      sched.step();
      lrs.push_back(opt.lr());
    }
    return lrs;
  };
  SECTION("StepLR") {
    check_lrs(sequence([](optim::Optimizer& o) { return optim::StepLR(o, 3, 0.5); }, 10), fixture_lrs("sched.step"));
  }
  SECTION("CosineAnnealingLR") {
    check_lrs(sequence([](optim::Optimizer& o) { return optim::CosineAnnealingLR(o, 8, 0.001); }, 8),
              fixture_lrs("sched.cosine"));
  }
  SECTION("LinearLR") {
    check_lrs(sequence([](optim::Optimizer& o) { return optim::LinearLR(o, 0.25, 1.0, 4); }, 8),
              fixture_lrs("sched.linear"));
  }
}

TEST_CASE("schedules: ReduceLROnPlateau matches PyTorch's lr sequence", "[optim][schedule]") {
  Tensor p = Tensor::zeros({1}, kFloat64).requires_grad_();
  optim::SGD opt({p}, optim::SGDOptions(0.1));
  optim::ReduceLROnPlateau sched(opt, 0.5, 2, 1e-4, 1, 0.02);
  std::vector<double> lrs{opt.lr()};
  for (double m : fixture().at("sched.plateau.metrics").to_vector<double>()) {
    sched.step(m);
    lrs.push_back(opt.lr());
  }
  const auto want = fixture_lrs("sched.plateau");
  check_lrs(lrs, want);
  CHECK(want.back() < want.front());  // the sequence really exercises reductions
}

// ---- LBFGS against torch.optim.LBFGS (tests/fixtures/gen_lbfgs.py, optim_lbfgs.safetensors) ----
namespace {
const io::SafetensorsFile& lbfgs_fixture() {
  static const io::SafetensorsFile f = load_fixture("optim_lbfgs.safetensors");
  return f;
}

// Same table as gen_lbfgs.py: CASES (quartic problem) and SINE_CASES.
const std::map<std::string, optim::LBFGSOptions>& lbfgs_cases() {
  using optim::LBFGSOptions;
  static const std::map<std::string, LBFGSOptions> m = {
      {"defaults_lr05", LBFGSOptions(0.5)},
      {"history3_iter7", LBFGSOptions(0.5).history_size(3).max_iter(7)},
      {"wolfe", LBFGSOptions(1.0).max_iter(10).history_size(5).line_search_fn("strong_wolfe")},
      {"wolfe_max_eval", LBFGSOptions(1.0).max_iter(20).max_eval(9).line_search_fn("strong_wolfe")},
      {"tolerance_change", LBFGSOptions(0.5).tolerance_change(1e-4)},
      {"tolerance_grad", LBFGSOptions(1.0).tolerance_grad(0.3).line_search_fn("strong_wolfe")},
      {"sine", LBFGSOptions(0.8).max_iter(5)},
      {"sine_history4", LBFGSOptions(0.8).max_iter(8).history_size(4)},
      {"sine_wolfe", LBFGSOptions(0.8).max_iter(5).line_search_fn("strong_wolfe")},
  };
  return m;
}

// PyTorch's time-sequence-prediction model, small (hidden 5), as in gen_lbfgs.py.
struct SineSeq : nn::Module {
  nn::LSTMCell lstm1{1, 5}, lstm2{5, 5};
  nn::Linear linear{5, 1};
  SineSeq() {
    register_module("lstm1", lstm1);
    register_module("lstm2", lstm2);
    register_module("linear", linear);
  }
  Tensor forward(const Tensor& input) const {
    const int64_t B = input.size(0);
    Tensor h, c, h2, c2;
    std::vector<Tensor> outputs;
    for (const Tensor& x : split(input, 1, 1)) {
      std::tie(h, c) = lstm1.forward(x, {h, c});
      std::tie(h2, c2) = lstm2.forward(h, {h2, c2});
      outputs.push_back(linear.forward(h2));
    }
    (void)B;
    return cat(outputs, 1);
  }
};

// Relative comparison: |a - e| <= 1e-9 (|e| + max |e| over the tensor), i.e. 1e-9 relative to
// the tensor's scale, so entries near zero are not held to a tighter absolute bound than the
// rest (PyTorch itself moves them by ~3e-12 of the scale when the start changes by 1e-15).
void check_lbfgs_params(const std::vector<std::pair<std::string, Tensor>>& params, const std::string& name, int k) {
  const auto& f = lbfgs_fixture();
  for (const auto& [pname, p] : params) {
    const std::string key = name + "." + pname + "." + std::to_string(k);
    INFO(key);
    double scale = 0;
    for (double v : f.at(key).to_vector<double>()) scale = std::max(scale, std::abs(v));
    CHECK(check_close(p, f.at(key), 1e-9, 1e-9 * scale, key));
  }
}
}  // namespace

TEST_CASE("LBFGS: the fixture lists the same cases as the test", "[optim][lbfgs]") {
  std::stringstream ss(lbfgs_fixture().metadata.at("cases"));
  size_t n = 0;
  for (std::string s; std::getline(ss, s, ',');) {
    INFO(s);
    CHECK(lbfgs_cases().count(s) == 1);
    ++n;
  }
  CHECK(n == lbfgs_cases().size());
}

TEST_CASE("LBFGS matches torch.optim.LBFGS step for step (fixed step, history, strong Wolfe, tolerances)",
          "[optim][lbfgs]") {
  const auto& f = lbfgs_fixture();
  const int steps = std::stoi(f.metadata.at("steps"));
  const Tensor X = f.at("quartic.X"), Y = f.at("quartic.Y");
  for (const char* name : {"defaults_lr05", "history3_iter7", "wolfe", "wolfe_max_eval", "tolerance_change",
                           "tolerance_grad"}) {
    INFO("case " << name);
    Tensor W = f.at("quartic.W0").clone().requires_grad_();
    Tensor b = f.at("quartic.b0").clone().requires_grad_();
    optim::LBFGS opt({W, b}, lbfgs_cases().at(name));
    const auto losses = f.at(std::string(name) + ".loss").to_vector<double>();
    for (int k = 1; k <= steps; ++k) {
      INFO("step " << k);
      const Tensor loss = opt.step([&] {
        opt.zero_grad();
        Tensor l = problem_loss(W, b, X, Y);
        l.backward();
        return l;
      });
      CHECK(loss.item<double>() == Approx(losses[size_t(k - 1)]).epsilon(1e-9));
      check_lbfgs_params({{"W", W}, {"b", b}}, name, k);
    }
    CHECK(double(opt.func_evals()) == f.at(std::string(name) + ".func_evals").item<double>());
    CHECK(opt.step_count() == steps);
  }
}

TEST_CASE("LBFGS trains the sine-prediction model (LSTMCells) as torch.optim.LBFGS does", "[optim][lbfgs]") {
  const auto& f = lbfgs_fixture();
  const int steps = std::stoi(f.metadata.at("steps"));
  const Tensor input = f.at("sine.input"), target = f.at("sine.target");
  for (const char* name : {"sine", "sine_history4", "sine_wolfe"}) {
    INFO("case " << name);
    SineSeq seq;
    seq.to(kFloat64);
    {
      NoGradGuard ng;
      for (auto& [pname, p] : seq.named_parameters()) Tensor(p).copy_(f.at("sine.init." + pname));
    }
    optim::LBFGS opt(seq.parameters(), lbfgs_cases().at(name));
    const auto losses = f.at(std::string(name) + ".loss").to_vector<double>();
    for (int k = 1; k <= steps; ++k) {
      INFO("step " << k);
      const Tensor loss = opt.step([&] {
        opt.zero_grad();
        Tensor l = mse_loss(seq.forward(input), target);
        l.backward();
        return l;
      });
      CHECK(loss.item<double>() == Approx(losses[size_t(k - 1)]).epsilon(1e-9));
      check_lbfgs_params(seq.named_parameters(), name, k);
    }
    CHECK(double(opt.func_evals()) == f.at(std::string(name) + ".func_evals").item<double>());
  }
}

TEST_CASE("LBFGS: options, errors, float32, the closure runs with grad on", "[optim][lbfgs]") {
  using Catch::Matchers::Contains;
  const optim::LBFGSOptions d;
  CHECK(d.lr() == 1.0);
  CHECK(d.max_iter() == 20);
  CHECK_FALSE(d.max_eval().has_value());
  CHECK(d.tolerance_grad() == 1e-7);
  CHECK(d.tolerance_change() == 1e-9);
  CHECK(d.history_size() == 100);
  CHECK_FALSE(d.line_search_fn().has_value());
  Tensor w = Tensor::full({2}, 3.0).requires_grad_();
  CHECK_THROWS_WITH(optim::LBFGS({w}, optim::LBFGSOptions(1).line_search_fn("backtracking")),
                    Contains("LBFGS") && Contains("strong_wolfe"));
  CHECK_THROWS_WITH(optim::LBFGS({w}, optim::LBFGSOptions(1).history_size(0)), Contains("LBFGS"));
  optim::LBFGS opt({w}, optim::LBFGSOptions(1).line_search_fn("strong_wolfe"));
  CHECK_THROWS_WITH(static_cast<optim::Optimizer&>(opt).step(), Contains("LBFGS") && Contains("closure"));
  CHECK_THROWS_WITH(opt.step([&] { return w * 1.0; }), Contains("LBFGS") && Contains("[2]"));
  // float32: minimises sum((w - 1)^2) to its minimum; the closure sees grad mode on even when
  // step is called under NoGradGuard
  bool grad_on = false;
  NoGradGuard ng;
  for (int k = 0; k < 3; ++k)
    opt.step([&] {
      grad_on = is_grad_enabled();
      opt.zero_grad();
      Tensor l = sum(pow(w - 1.0, 2.0));
      l.backward();
      return l;
    });
  CHECK(grad_on);
  CHECK_FALSE(is_grad_enabled());
  CHECK(w.dtype() == kFloat32);
  for (float v : w.to_vector<float>()) CHECK(v == Approx(1.0f).margin(1e-5));
}
