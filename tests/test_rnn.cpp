// Recurrent layers: goldens from PyTorch (tests/fixtures/gen_rnn.py), fused == composed,
// gradcheck, argument errors, thread invariance, graph size.
#include <attn/nn/rnn.hpp>
#include <cstring>
#include <map>
#include <set>
#include "test_util.hpp"

using namespace attn;

namespace {

// Same table as gen_rnn.py: name -> (num_layers, bidirectional, batch_first, state, lengths, bias)
struct Case {
  const char* name;
  int64_t layers;
  bool bi, bf, state, lengths, bias;
};
const Case kCases[] = {
    {"l1_uni", 1, false, false, false, false, true},
    {"l1_uni_bf_state", 1, false, true, true, false, true},
    {"l1_bi_nobias", 1, true, false, false, false, false},
    {"l2_uni_state", 2, false, false, true, false, true},
    {"l2_bi_bf_state", 2, true, true, true, false, true},
    {"l1_uni_len", 1, false, false, false, true, true},
    {"l1_bi_bf_len_state", 1, true, true, true, true, true},
    {"l2_bi_len", 2, true, false, false, true, true},
};
constexpr int64_t kI = 4, kH = 3;

Tensor leaf(const Tensor& t) { return t.clone().detach().requires_grad_(); }

// Copies the fixture's "<prefix>w.<name>" into every parameter of m (by PyTorch name).
void load_weights(nn::Module& m, const io::SafetensorsFile& f, const std::string& prefix) {
  m.to(kFloat64);
  NoGradGuard ng;
  for (auto& [name, p] : m.named_parameters()) {
    const Tensor& src = f.at(prefix + "w." + name);
    REQUIRE(src.shape() == p.shape());
    Tensor(p).copy_(src);
  }
}

std::vector<int64_t> lengths_of(const io::SafetensorsFile& f, const std::string& prefix) {
  std::vector<int64_t> out;
  for (double v : f.at(prefix + "lengths").to_vector<double>()) out.push_back(int64_t(v));
  return out;
}

void check_grads(nn::Module& m, const io::SafetensorsFile& f, const std::string& p, double rtol, double atol) {
  for (auto& [name, prm] : m.named_parameters()) {
    INFO("parameter " << name);
    CHECK(check_close(prm.grad(), f.at(p + "grad." + name), rtol, atol, p + "grad." + name));
  }
}

// Counts the autograd nodes reachable from t.
size_t count_nodes(const Tensor& t) {
  std::set<Node*> seen;
  std::vector<Node*> stack;
  if (t.grad_fn()) stack.push_back(t.grad_fn().get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    for (const Tensor& in : n->inputs)
      if (in.defined() && in.grad_fn()) stack.push_back(in.grad_fn().get());
  }
  return seen.size();
}

Tensor randn64(const Shape& s) { return Tensor::randn(s, kFloat64); }

}  // namespace

TEST_CASE("LSTM matches PyTorch (outputs, states, all gradients)", "[rnn][lstm][golden]") {
  const auto f = load_fixture("rnn_lstm.safetensors");
  for (const Case& c : kCases)
    for (bool fused : {true, false}) {
      const std::string p = std::string(c.name) + ".";
      INFO("case " << c.name << (fused ? " fused" : " composed"));
      nn::LSTM lstm(nn::LSTMOptions(kI, kH).num_layers(c.layers).bidirectional(c.bi).batch_first(c.bf).bias(c.bias).fused(fused));
      load_weights(lstm, f, p);
      Tensor x = leaf(f.at(p + "x")), h0, c0;
      if (c.state) {
        h0 = leaf(f.at(p + "h0"));
        c0 = leaf(f.at(p + "c0"));
      }
      std::vector<int64_t> lens = c.lengths ? lengths_of(f, p) : std::vector<int64_t>{};
      auto [out, hc] = lstm.forward(x, {h0, c0}, lens);
      CHECK(check_close(out, f.at(p + "out"), 1e-9, 1e-10, "out"));
      CHECK(check_close(hc.first, f.at(p + "hn"), 1e-9, 1e-10, "h_n"));
      CHECK(check_close(hc.second, f.at(p + "cn"), 1e-9, 1e-10, "c_n"));
      Tensor loss = sum(mul(out, f.at(p + "r_out"))) + sum(mul(hc.first, f.at(p + "r_hn"))) +
                    sum(mul(hc.second, f.at(p + "r_cn")));
      loss.backward();
      CHECK(check_close(x.grad(), f.at(p + "grad.x"), 1e-9, 1e-10, "grad x"));
      if (c.state) {
        CHECK(check_close(h0.grad(), f.at(p + "grad.h0"), 1e-9, 1e-10, "grad h0"));
        CHECK(check_close(c0.grad(), f.at(p + "grad.c0"), 1e-9, 1e-10, "grad c0"));
      }
      check_grads(lstm, f, p, 1e-9, 1e-10);
    }
}

TEST_CASE("GRU matches PyTorch (outputs, states, all gradients)", "[rnn][gru][golden]") {
  const auto f = load_fixture("rnn_gru.safetensors");
  for (const Case& c : kCases)
    for (bool fused : {true, false}) {
      const std::string p = std::string(c.name) + ".";
      INFO("case " << c.name << (fused ? " fused" : " composed"));
      nn::GRU gru(nn::GRUOptions(kI, kH).num_layers(c.layers).bidirectional(c.bi).batch_first(c.bf).bias(c.bias).fused(fused));
      load_weights(gru, f, p);
      Tensor x = leaf(f.at(p + "x")), h0;
      if (c.state) h0 = leaf(f.at(p + "h0"));
      std::vector<int64_t> lens = c.lengths ? lengths_of(f, p) : std::vector<int64_t>{};
      auto [out, hn] = gru.forward(x, h0, lens);
      CHECK(check_close(out, f.at(p + "out"), 1e-9, 1e-10, "out"));
      CHECK(check_close(hn, f.at(p + "hn"), 1e-9, 1e-10, "h_n"));
      Tensor loss = sum(mul(out, f.at(p + "r_out"))) + sum(mul(hn, f.at(p + "r_hn")));
      loss.backward();
      CHECK(check_close(x.grad(), f.at(p + "grad.x"), 1e-9, 1e-10, "grad x"));
      if (c.state) CHECK(check_close(h0.grad(), f.at(p + "grad.h0"), 1e-9, 1e-10, "grad h0"));
      check_grads(gru, f, p, 1e-9, 1e-10);
    }
}

TEST_CASE("LSTMCell and GRUCell match PyTorch", "[rnn][cell][golden]") {
  const auto f = load_fixture("rnn_cells.safetensors");
  // the fused cell (the module) and the composed reference, on the same weights
  for (bool fused : {true, false})
  for (bool state : {false, true}) {
    const std::string p = std::string("lstmcell") + (state ? "_state" : "") + ".";
    INFO(p << (fused ? " fused" : " composed"));
    nn::LSTMCell cell(kI, kH);
    load_weights(cell, f, p);
    Tensor x = leaf(f.at(p + "x")), h0, c0;
    if (state) {
      h0 = leaf(f.at(p + "h0"));
      c0 = leaf(f.at(p + "c0"));
    }
    const Tensor z = Tensor::zeros({x.size(0), kH}, kFloat64);
    auto [h, c] = fused ? cell.forward(x, {h0, c0})
                        : nn::detail::lstm_cell_composed(x, state ? h0 : z, state ? c0 : z, cell.weight_ih,
                                                         cell.weight_hh, cell.bias_ih, cell.bias_hh);
    CHECK(check_close(h, f.at(p + "h"), 1e-9, 1e-10, "h"));
    CHECK(check_close(c, f.at(p + "c"), 1e-9, 1e-10, "c"));
    (sum(mul(h, f.at(p + "r_h"))) + sum(mul(c, f.at(p + "r_c")))).backward();
    CHECK(check_close(x.grad(), f.at(p + "grad.x"), 1e-9, 1e-10, "grad x"));
    if (state) {
      CHECK(check_close(h0.grad(), f.at(p + "grad.h0"), 1e-9, 1e-10, "grad h0"));
      CHECK(check_close(c0.grad(), f.at(p + "grad.c0"), 1e-9, 1e-10, "grad c0"));
    }
    check_grads(cell, f, p, 1e-9, 1e-10);
  }
  for (bool fused : {true, false})
  for (bool state : {false, true}) {
    const std::string p = std::string("grucell") + (state ? "_state" : "") + ".";
    INFO(p << (fused ? " fused" : " composed"));
    nn::GRUCell cell(kI, kH);
    load_weights(cell, f, p);
    Tensor x = leaf(f.at(p + "x")), h0;
    if (state) h0 = leaf(f.at(p + "h0"));
    Tensor h = fused ? cell.forward(x, h0)
                     : nn::detail::gru_cell_composed(x, state ? h0 : Tensor::zeros({x.size(0), kH}, kFloat64),
                                                     cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh);
    CHECK(check_close(h, f.at(p + "h"), 1e-9, 1e-10, "h"));
    sum(mul(h, f.at(p + "r_h"))).backward();
    CHECK(check_close(x.grad(), f.at(p + "grad.x"), 1e-9, 1e-10, "grad x"));
    if (state) CHECK(check_close(h0.grad(), f.at(p + "grad.h0"), 1e-9, 1e-10, "grad h0"));
    check_grads(cell, f, p, 1e-9, 1e-10);
  }
}

namespace {
// Runs module (LSTM or GRU) fused and composed on the same weights; compares everything.
template <class M>
void fused_vs_composed(nn::RNNOptions o, int64_t B, int64_t T, std::vector<int64_t> lens, bool state) {
  manual_seed(7);
  M a(o.fused(true)), b(o.fused(false));
  a.to(kFloat64);
  b.to(kFloat64);
  {
    NoGradGuard ng;
    auto pa = a.parameters(), pb = b.parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  const int64_t D = o.bidirectional() ? 2 : 1, L = o.num_layers(), H = o.hidden_size();
  const Tensor x0 = randn64(o.batch_first() ? Shape{B, T, o.input_size()} : Shape{T, B, o.input_size()});
  const Tensor h00 = randn64({L * D, B, H}), c00 = randn64({L * D, B, H});
  const Tensor r_out = randn64(o.batch_first() ? Shape{B, T, D * H} : Shape{T, B, D * H});
  const Tensor r_h = randn64({L * D, B, H}), r_c = randn64({L * D, B, H});
  std::vector<Tensor> results[2];
  int k = 0;
  for (M* m : {&a, &b}) {
    Tensor x = leaf(x0), h0, c0;
    if (state) {
      h0 = leaf(h00);
      c0 = leaf(c00);
    }
    Tensor out, hn, cn;
    if constexpr (std::is_same_v<M, nn::LSTM>) {
      auto r = m->forward(x, {h0, c0}, lens);
      out = r.first;
      hn = r.second.first;
      cn = r.second.second;
    } else {
      std::tie(out, hn) = m->forward(x, h0, lens);
    }
    Tensor loss = sum(mul(out, r_out)) + sum(mul(hn, r_h));
    if (cn.defined()) loss = loss + sum(mul(cn, r_c));
    loss.backward();
    results[k] = {out, hn, x.grad()};
    if (cn.defined()) results[k].push_back(cn);
    if (state) {
      results[k].push_back(h0.grad());
      if (cn.defined()) results[k].push_back(c0.grad());
    }
    for (auto& prm : m->parameters()) results[k].push_back(prm.grad());
    ++k;
  }
  REQUIRE(results[0].size() == results[1].size());
  for (size_t i = 0; i < results[0].size(); ++i) {
    INFO("result " << i);
    CHECK(check_close(results[0][i], results[1][i], 1e-12, 1e-13, "fused vs composed"));
  }
}
}  // namespace

TEST_CASE("fused recurrence equals the composed step-by-step path", "[rnn][fused]") {
  const std::vector<int64_t> lens{7, 3, 1, 6, 5};
  for (bool bf : {false, true})
    for (bool state : {false, true}) {
      INFO("batch_first " << bf << " state " << state);
      fused_vs_composed<nn::LSTM>(nn::LSTMOptions(3, 4).num_layers(2).bidirectional(true).batch_first(bf), 5, 7, {},
                                  state);
      fused_vs_composed<nn::LSTM>(nn::LSTMOptions(3, 4).num_layers(2).bidirectional(true).batch_first(bf), 5, 7, lens,
                                  state);
      fused_vs_composed<nn::LSTM>(nn::LSTMOptions(3, 5).num_layers(1).batch_first(bf).bias(false), 5, 7, lens, state);
      fused_vs_composed<nn::GRU>(nn::GRUOptions(3, 4).num_layers(2).bidirectional(true).batch_first(bf), 5, 7, lens,
                                 state);
      fused_vs_composed<nn::GRU>(nn::GRUOptions(3, 4).num_layers(1).batch_first(bf), 5, 7, {}, state);
    }
  // Several row blocks (B > 64) and the per-step parallel schedule.
  fused_vs_composed<nn::LSTM>(nn::LSTMOptions(2, 3).num_layers(1).bidirectional(true), 70, 3, {}, true);
  fused_vs_composed<nn::GRU>(nn::GRUOptions(2, 3).num_layers(1), 70, 3, {}, true);
}

namespace {
template <class M>
void gradcheck_module(nn::RNNOptions o, int64_t B, int64_t T, std::vector<int64_t> lens, bool state) {
  manual_seed(11);
  M m(o);
  m.to(kFloat64);
  const int64_t D = o.bidirectional() ? 2 : 1, L = o.num_layers(), H = o.hidden_size();
  Tensor x = randn64(o.batch_first() ? Shape{B, T, o.input_size()} : Shape{T, B, o.input_size()}).requires_grad_();
  Tensor h0 = randn64({L * D, B, H}).requires_grad_(), c0 = randn64({L * D, B, H}).requires_grad_();
  const Tensor r_out = randn64(o.batch_first() ? Shape{B, T, D * H} : Shape{T, B, D * H});
  const Tensor r_h = randn64({L * D, B, H}), r_c = randn64({L * D, B, H});
  std::vector<Tensor> inputs{x};
  if (state) {
    inputs.push_back(h0);
    if constexpr (std::is_same_v<M, nn::LSTM>) inputs.push_back(c0);
  }
  for (auto& p : m.parameters()) inputs.push_back(p);
  auto fn = [&](const std::vector<Tensor>&) {
    Tensor out, hn, cn;
    if constexpr (std::is_same_v<M, nn::LSTM>) {
      auto r = m.forward(x, state ? nn::LSTM::State{h0, c0} : nn::LSTM::State{}, lens);
      out = r.first;
      hn = r.second.first;
      cn = r.second.second;
    } else {
      std::tie(out, hn) = m.forward(x, state ? h0 : Tensor(), lens);
    }
    Tensor l = stack({sum(mul(out, r_out)), sum(mul(hn, r_h))});
    if (cn.defined()) l = cat({l, unsqueeze(sum(mul(cn, r_c)), 0)});
    return l;
  };
  auto r = attn::testing::gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
}
}  // namespace

TEST_CASE("gradcheck of every recurrent variant (float64, tiny)", "[rnn][gradcheck]") {
  const std::vector<int64_t> lens{3, 1};
  SECTION("LSTM uni / stacked / bidirectional / lengths / batch_first") {
    gradcheck_module<nn::LSTM>(nn::LSTMOptions(2, 2), 2, 3, {}, true);
    gradcheck_module<nn::LSTM>(nn::LSTMOptions(2, 2).num_layers(2), 2, 3, {}, false);
    gradcheck_module<nn::LSTM>(nn::LSTMOptions(2, 2).bidirectional(true).batch_first(true), 2, 3, {}, true);
    gradcheck_module<nn::LSTM>(nn::LSTMOptions(2, 2).bidirectional(true).num_layers(2), 2, 3, lens, true);
    gradcheck_module<nn::LSTM>(nn::LSTMOptions(2, 2).bidirectional(true).fused(false), 2, 3, lens, true);
  }
  SECTION("GRU uni / stacked / bidirectional / lengths") {
    gradcheck_module<nn::GRU>(nn::GRUOptions(2, 2), 2, 3, {}, true);
    gradcheck_module<nn::GRU>(nn::GRUOptions(2, 2).bidirectional(true).num_layers(2).batch_first(true), 2, 3, lens,
                              true);
    gradcheck_module<nn::GRU>(nn::GRUOptions(2, 2).bidirectional(true).bias(false), 2, 3, lens, false);
    gradcheck_module<nn::GRU>(nn::GRUOptions(2, 2).num_layers(2).fused(false), 2, 3, lens, true);
  }
  SECTION("cells") {
    manual_seed(3);
    nn::LSTMCell lc(2, 3);
    nn::GRUCell gc(2, 3);
    lc.to(kFloat64);
    gc.to(kFloat64);
    Tensor x = randn64({2, 2}).requires_grad_(), h = randn64({2, 3}).requires_grad_(),
           c = randn64({2, 3}).requires_grad_();
    std::vector<Tensor> in{x, h, c};
    for (auto& p : lc.parameters()) in.push_back(p);
    auto r = attn::testing::gradcheck([&](const std::vector<Tensor>&) {
      auto [h2, c2] = lc.forward(x, {h, c});
      return cat({flatten(h2), flatten(c2)});
    }, in);
    INFO(r.message);
    CHECK(r.ok);
    std::vector<Tensor> in2{x, h};
    for (auto& p : gc.parameters()) in2.push_back(p);
    auto r2 = attn::testing::gradcheck([&](const std::vector<Tensor>&) { return flatten(gc.forward(x, h)); }, in2);
    INFO(r2.message);
    CHECK(r2.ok);
  }
}

TEST_CASE("recurrent layers reject bad shapes and lengths with ShapeError", "[rnn][errors]") {
  using Catch::Matchers::Contains;
  nn::LSTM lstm(nn::LSTMOptions(4, 3).num_layers(2));
  nn::GRU gru(nn::GRUOptions(4, 3).batch_first(true));
  const Tensor x = Tensor::randn({5, 2, 4});
  REQUIRE_THROWS_AS(lstm.forward(Tensor::randn({5, 4})), ShapeError);
  REQUIRE_THROWS_WITH(lstm.forward(Tensor::randn({5, 4})), Contains("LSTM") && Contains("[5, 4]"));
  REQUIRE_THROWS_WITH(lstm.forward(Tensor::randn({5, 2, 3})), Contains("LSTM") && Contains("[5, 2, 3]") && Contains("input_size 4"));
  REQUIRE_THROWS_AS(gru.forward(Tensor::randn({2, 5, 7})), ShapeError);
  // lengths: count, range
  REQUIRE_THROWS_WITH(lstm.forward(x, std::vector<int64_t>{5}), Contains("LSTM") && Contains("batch of 2"));
  REQUIRE_THROWS_WITH(lstm.forward(x, std::vector<int64_t>{5, 0}), Contains("LSTM") && Contains("[1, 5]"));
  REQUIRE_THROWS_AS(lstm.forward(x, std::vector<int64_t>{6, 1}), ShapeError);
  REQUIRE_THROWS_AS(gru.forward(Tensor::randn({2, 5, 4}), std::vector<int64_t>{3, 9}), ShapeError);
  // initial state
  REQUIRE_THROWS_WITH(lstm.forward(x, {Tensor::zeros({1, 2, 3}), Tensor::zeros({2, 2, 3})}),
                      Contains("LSTM") && Contains("[2, 2, 3]") && Contains("[1, 2, 3]"));
  REQUIRE_THROWS_AS(lstm.forward(x, {Tensor::zeros({2, 2, 3}), Tensor::zeros({2, 3, 3})}), ShapeError);
  REQUIRE_THROWS_WITH(gru.forward(Tensor::randn({2, 5, 4}), Tensor::zeros({1, 2, 4})), Contains("GRU") && Contains("[1, 2, 4]"));
  // dtype mismatch, cells
  REQUIRE_THROWS_AS(lstm.forward(x.to(kFloat64)), ShapeError);
  nn::LSTMCell cell(4, 3);
  REQUIRE_THROWS_WITH(cell.forward(Tensor::randn({2, 5})), Contains("LSTMCell") && Contains("[2, 5]"));
  REQUIRE_THROWS_WITH(cell.forward(Tensor::randn({2, 4}), {Tensor::zeros({3, 3}), Tensor()}),
                      Contains("LSTMCell") && Contains("[3, 3]"));
  nn::GRUCell gcell(4, 3);
  REQUIRE_THROWS_AS(gcell.forward(Tensor::randn({2, 4}), Tensor::zeros({2, 4})), ShapeError);
  // options
  REQUIRE_THROWS_AS(nn::LSTM(nn::LSTMOptions(0, 3)), ShapeError);
}

TEST_CASE("parameters: PyTorch names, shapes and init range", "[rnn][params]") {
  nn::LSTM lstm(nn::LSTMOptions(5, 8).num_layers(2).bidirectional(true));
  const auto named = lstm.named_parameters();
  REQUIRE(named.size() == 16);
  std::map<std::string, Shape> shapes;
  for (auto& [n, p] : named) shapes[n] = p.shape();
  CHECK(shapes.at("weight_ih_l0") == Shape{32, 5});
  CHECK(shapes.at("weight_hh_l0_reverse") == Shape{32, 8});
  CHECK(shapes.at("weight_ih_l1") == Shape{32, 16});
  CHECK(shapes.at("bias_hh_l1_reverse") == Shape{32});
  for (auto& [n, p] : named)
    for (float v : p.to_vector<float>()) REQUIRE(std::abs(v) <= 1.0f / std::sqrt(8.0f));
  nn::GRU gru(nn::GRUOptions(5, 8).bias(false));
  REQUIRE(gru.named_parameters().size() == 2);
  CHECK(gru.named_parameters()[0].first == "weight_ih_l0");
  CHECK(gru.named_parameters()[0].second.shape() == Shape{24, 5});
}

TEST_CASE("shapes follow PyTorch, padded outputs are zero, float32 works", "[rnn][shapes]") {
  manual_seed(5);
  nn::LSTM lstm(nn::LSTMOptions(1, 6).num_layers(2).bidirectional(true).batch_first(true));
  const Tensor x = Tensor::randn({4, 9, 1});
  auto [out, hc] = lstm.forward(x, std::vector<int64_t>{9, 4, 1, 7});
  CHECK(out.shape() == Shape{4, 9, 12});
  CHECK(hc.first.shape() == Shape{4, 4, 6});
  CHECK(hc.second.shape() == Shape{4, 4, 6});
  CHECK(out.dtype() == kFloat32);
  for (int64_t t = 4; t < 9; ++t)
    for (int64_t j = 0; j < 12; ++j) CHECK(out.at({1, t, j}) == 0.0);
  // float32 agrees with float64 on the same weights
  nn::LSTM l64(nn::LSTMOptions(1, 6).num_layers(2).bidirectional(true).batch_first(true));
  {
    NoGradGuard ng;
    l64.to(kFloat64);
    auto pa = lstm.parameters(), pb = l64.parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i].to(kFloat64));
  }
  auto r64 = l64.forward(x.to(kFloat64), std::vector<int64_t>{9, 4, 1, 7});
  CHECK(check_close(out.to(kFloat64), r64.first, 1e-4, 1e-5, "float32 vs float64"));
  nn::GRU gru(nn::GRUOptions(3, 5).num_layers(3));
  auto [go, gh] = gru.forward(Tensor::randn({6, 2, 3}));
  CHECK(go.shape() == Shape{6, 2, 5});
  CHECK(gh.shape() == Shape{3, 2, 5});
}

TEST_CASE("a 500-step fused LSTM is a handful of graph nodes", "[rnn][graph]") {
  nn::LSTM lstm(nn::LSTMOptions(1, 8).bidirectional(true).batch_first(true));
  Tensor x = Tensor::randn({2, 500, 1}).requires_grad_();
  auto [out, hc] = lstm.forward(x);
  const size_t n = count_nodes(out);
  INFO("nodes " << n);
  CHECK(n <= 6);
  sum(out).backward();
  CHECK(x.grad().defined());
}

TEST_CASE("dropout between layers only in training", "[rnn][dropout]") {
  manual_seed(9);
  nn::LSTM lstm(nn::LSTMOptions(2, 4).num_layers(2).dropout(0.5));
  const Tensor x = Tensor::randn({5, 3, 2});
  lstm.eval();
  auto a = lstm.forward(x).first, b = lstm.forward(x).first;
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  lstm.train();
  auto c = lstm.forward(x).first;
  CHECK(c.to_vector<float>() != a.to_vector<float>());
}

namespace {
std::vector<std::vector<float>> lstm_run_bits(int threads, int64_t B, int64_t H, bool bi, int64_t layers) {
  const int prev = get_num_threads();
  set_num_threads(threads);
  manual_seed(21);
  nn::LSTM lstm(nn::LSTMOptions(3, H).bidirectional(bi).num_layers(layers).batch_first(true));
  Tensor x = Tensor::randn({B, 40, 3}).requires_grad_();
  std::vector<int64_t> lens;
  for (int64_t b = 0; b < B; ++b) lens.push_back(1 + (b * 7) % 40);
  auto [out, hc] = lstm.forward(x, lens);
  (sum(mul(out, out)) + sum(hc.first) + sum(hc.second)).backward();
  std::vector<std::vector<float>> r{out.to_vector<float>(), hc.first.to_vector<float>(), x.grad().to_vector<float>()};
  for (auto& p : lstm.parameters()) r.push_back(p.grad().to_vector<float>());
  set_num_threads(prev);
  return r;
}
bool same_bits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)
      return false;
  return true;
}
}  // namespace

namespace {
std::vector<std::vector<float>> gru_run_bits(int threads) {
  const int prev = get_num_threads();
  set_num_threads(threads);
  manual_seed(22);
  nn::GRU gru(nn::GRUOptions(7, 16).bidirectional(true).num_layers(2).batch_first(true));
  Tensor x = Tensor::randn({150, 25, 7}).requires_grad_();
  std::vector<int64_t> lens;
  for (int64_t b = 0; b < 150; ++b) lens.push_back(1 + (b * 5) % 25);
  auto [out, hn] = gru.forward(x, lens);
  (sum(mul(out, out)) + sum(hn)).backward();
  std::vector<std::vector<float>> r{out.to_vector<float>(), hn.to_vector<float>(), x.grad().to_vector<float>()};
  for (auto& p : gru.parameters()) r.push_back(p.grad().to_vector<float>());
  set_num_threads(prev);
  return r;
}
}  // namespace

TEST_CASE("fused GRU forward+backward is bit-identical for 1 and 2 threads", "[rnn][threads]") {
  CHECK(same_bits(gru_run_bits(1), gru_run_bits(2)));
}

TEST_CASE("fused LSTM forward+backward is bit-identical for 1 and 2 threads", "[rnn][threads]") {
  // per-direction threads (D = 2, one row block) and per-step row blocks (B = 150, 3 blocks)
  CHECK(same_bits(lstm_run_bits(1, 8, 16, true, 2), lstm_run_bits(2, 8, 16, true, 2)));
  CHECK(same_bits(lstm_run_bits(1, 150, 32, false, 2), lstm_run_bits(2, 150, 32, false, 2)));
  CHECK(same_bits(lstm_run_bits(1, 150, 32, true, 1), lstm_run_bits(2, 150, 32, true, 1)));
}

TEST_CASE("inference (no grad) saves nothing and gives the training path's bits", "[rnn][inference]") {
  // I = 1 (direct input projection) and I = 7 (GEMM); B = 150: two full row blocks and a partial one.
  for (int64_t I : {int64_t(1), int64_t(7)})
    for (bool gru : {false, true}) {
      manual_seed(31);
      nn::LSTM lstm(nn::LSTMOptions(I, 16).num_layers(2).bidirectional(true).batch_first(true));
      nn::GRU gr(nn::GRUOptions(I, 16).num_layers(2).bidirectional(true).batch_first(true));
      const Tensor x = Tensor::randn({150, 30, I});
      std::vector<int64_t> lens;
      for (int64_t b = 0; b < 150; ++b) lens.push_back(1 + (b * 11) % 30);
      auto run = [&] {
        if (gru) {
          auto [o, h] = gr.forward(x, lens);
          return std::vector<std::vector<float>>{o.to_vector<float>(), h.to_vector<float>()};
        }
        auto [o, hc] = lstm.forward(x, lens);
        return std::vector<std::vector<float>>{o.to_vector<float>(), hc.first.to_vector<float>(),
                                               hc.second.to_vector<float>()};
      };
      const auto train = run();  // parameters require grad: the saving path
      std::vector<std::vector<float>> infer;
      {
        NoGradGuard ng;
        infer = run();
      }
      INFO((gru ? "GRU" : "LSTM") << " I = " << I);
      CHECK(same_bits(train, infer));
    }
  // The no-grad output has no graph.
  nn::LSTM lstm(nn::LSTMOptions(1, 4));
  NoGradGuard ng;
  CHECK_FALSE(lstm.forward(Tensor::randn({5, 2, 1})).first.requires_grad());
}

// ---- fused cells (lstm_cell / gru_cell: one node per step) against the composed step ----
namespace {
struct CellRun {
  std::vector<Tensor> values;  // outputs then gradients of x, the states and every parameter
};

// A `steps`-step loop of the cell on the same weights, fused or composed; the loss weighs every
// step's h (and the last c) so the state gradients flow through the whole chain.
// which_out: 0 = h and c in the loss, 1 = only h, 2 = only c (LSTM).
CellRun run_cell(bool lstm, bool fused, int64_t B, int64_t I, int64_t H, bool bias, bool state, int steps,
                 int which_out, DType dt) {
  manual_seed(41);
  const int64_t G = lstm ? 4 : 3;
  auto leaf_of = [&](const Shape& s) { return Tensor::randn(s, kFloat64).to(dt).requires_grad_(); };
  Tensor w_ih = leaf_of({G * H, I}), w_hh = leaf_of({G * H, H});
  Tensor b_ih = bias ? leaf_of({G * H}) : Tensor(), b_hh = bias ? leaf_of({G * H}) : Tensor();
  Tensor h0 = leaf_of({B, H}), c0 = leaf_of({B, H});
  std::vector<Tensor> xs;
  for (int s = 0; s < steps; ++s) xs.push_back(leaf_of({B, I}));
  const Tensor r = Tensor::randn({B, H}, kFloat64).to(dt), rc = Tensor::randn({B, H}, kFloat64).to(dt);
  Tensor h = state ? h0 : Tensor(), c = state ? c0 : Tensor();
  Tensor loss = Tensor::zeros({}, dt);
  for (int s = 0; s < steps; ++s) {
    if (lstm) {
      if (fused) {
        std::tie(h, c) = lstm_cell(xs[size_t(s)], {h, c}, w_ih, w_hh, b_ih, b_hh);
      } else {
        const Tensor hh = h.defined() ? h : Tensor::zeros({B, H}, dt), cc = c.defined() ? c : Tensor::zeros({B, H}, dt);
        std::tie(h, c) = nn::detail::lstm_cell_composed(xs[size_t(s)], hh, cc, w_ih, w_hh, b_ih, b_hh);
      }
    } else {
      const Tensor hh = h.defined() ? h : Tensor::zeros({B, H}, dt);
      h = fused ? gru_cell(xs[size_t(s)], h, w_ih, w_hh, b_ih, b_hh)
                : nn::detail::gru_cell_composed(xs[size_t(s)], hh, w_ih, w_hh, b_ih, b_hh);
    }
    if (which_out != 2 || s + 1 < steps) loss = loss + sum(mul(h, r)) * double(s + 1);
  }
  if (lstm && which_out != 1) loss = loss + sum(mul(c, rc));
  loss.backward();
  CellRun out;
  out.values = {h, xs[0].grad(), w_ih.grad(), w_hh.grad()};
  if (lstm) out.values.push_back(c);
  if (state) {
    out.values.push_back(h0.grad());
    if (lstm) out.values.push_back(c0.grad());
  }
  if (bias) {
    out.values.push_back(b_ih.grad());
    out.values.push_back(b_hh.grad());
  }
  for (const Tensor& x : xs) out.values.push_back(x.grad());
  return out;
}
}  // namespace

TEST_CASE("fused LSTMCell / GRUCell equal the composed step (values and all gradients)", "[rnn][cell][fused]") {
  // H = 11: SIMD lanes and a scalar tail; B = 70 and I = 1 (a univariate input) too.
  struct Cfg {
    int64_t B, I, H;
    bool bias, state;
    int steps, which;
  };
  const Cfg cfgs[] = {{3, 4, 11, true, true, 4, 0},  {3, 4, 11, false, true, 3, 0}, {5, 1, 8, true, false, 3, 0},
                      {70, 6, 5, true, true, 2, 1},  {2, 3, 16, true, true, 3, 2},  {1, 2, 3, false, false, 1, 0},
                      {97, 1, 51, true, true, 2, 0}, {4, 51, 51, true, true, 2, 0}};
  for (bool lstm : {true, false})
    for (const Cfg& c : cfgs) {
      if (!lstm && c.which == 2) continue;
      INFO((lstm ? "LSTM" : "GRU") << " B " << c.B << " I " << c.I << " H " << c.H << " bias " << c.bias << " state "
                                   << c.state << " steps " << c.steps << " which " << c.which);
      const CellRun f = run_cell(lstm, true, c.B, c.I, c.H, c.bias, c.state, c.steps, c.which, kFloat64);
      const CellRun r = run_cell(lstm, false, c.B, c.I, c.H, c.bias, c.state, c.steps, c.which, kFloat64);
      REQUIRE(f.values.size() == r.values.size());
      for (size_t i = 0; i < f.values.size(); ++i) {
        INFO("value " << i);
        CHECK(check_close(f.values[i], r.values[i], 1e-12, 1e-13, "fused vs composed"));
      }
    }
}

TEST_CASE("fused cells in float32 agree with the composed step", "[rnn][cell][fused]") {
  for (bool lstm : {true, false}) {
    INFO((lstm ? "LSTM" : "GRU"));
    const CellRun f = run_cell(lstm, true, 6, 5, 19, true, true, 3, 0, kFloat32);
    const CellRun r = run_cell(lstm, false, 6, 5, 19, true, true, 3, 0, kFloat32);
    REQUIRE(f.values.size() == r.values.size());
    for (size_t i = 0; i < f.values.size(); ++i) {
      INFO("value " << i);
      CHECK(f.values[i].dtype() == kFloat32);
      CHECK(check_close(f.values[i], r.values[i], 1e-4, 1e-5, "float32 fused vs composed"));
    }
  }
}

TEST_CASE("a cell step is one graph node, and no graph without grad", "[rnn][cell][graph]") {
  nn::LSTMCell lc(3, 4);
  nn::GRUCell gc(3, 4);
  Tensor x = Tensor::randn({2, 3});
  auto [h, c] = lc.forward(x);
  CHECK(count_nodes(h) == 1);
  CHECK(h.grad_fn() == c.grad_fn());
  CHECK(h.grad_fn()->name == "lstm_cell");
  auto [h2, c2] = lc.forward(x, {h, c});
  CHECK(count_nodes(c2) == 2);
  CHECK(count_nodes(gc.forward(x, gc.forward(x))) == 2);
  NoGradGuard ng;
  CHECK_FALSE(lc.forward(x).first.requires_grad());
  CHECK_FALSE(gc.forward(x).requires_grad());
}

TEST_CASE("gradcheck of the fused cell ops (float64)", "[rnn][cell][gradcheck]") {
  manual_seed(13);
  for (bool bias : {true, false}) {
    INFO("bias " << bias);
    Tensor x = randn64({3, 2}).requires_grad_(), h = randn64({3, 5}).requires_grad_(),
           c = randn64({3, 5}).requires_grad_();
    Tensor wi = randn64({20, 2}).requires_grad_(), wh = randn64({20, 5}).requires_grad_();
    Tensor bi = bias ? randn64({20}).requires_grad_() : Tensor(), bh = bias ? randn64({20}).requires_grad_() : Tensor();
    std::vector<Tensor> in{x, h, c, wi, wh};
    if (bias) in.insert(in.end(), {bi, bh});
    auto r = attn::testing::gradcheck([&](const std::vector<Tensor>&) {
      auto [h2, c2] = lstm_cell(x, {h, c}, wi, wh, bi, bh);
      return cat({flatten(h2), flatten(c2)});
    }, in);
    INFO(r.message);
    CHECK(r.ok);
    // only h' used (no gradient arrives at c'), and zero initial state
    auto r1 = attn::testing::gradcheck([&](const std::vector<Tensor>&) {
      return flatten(lstm_cell(x, {Tensor(), Tensor()}, wi, wh, bi, bh).first);
    }, {x, wi, wh});
    INFO(r1.message);
    CHECK(r1.ok);
    Tensor gwi = randn64({15, 2}).requires_grad_(), gwh = randn64({15, 5}).requires_grad_();
    Tensor gbi = bias ? randn64({15}).requires_grad_() : Tensor(), gbh = bias ? randn64({15}).requires_grad_() : Tensor();
    std::vector<Tensor> gin{x, h, gwi, gwh};
    if (bias) gin.insert(gin.end(), {gbi, gbh});
    auto r2 = attn::testing::gradcheck([&](const std::vector<Tensor>&) {
      return flatten(gru_cell(x, h, gwi, gwh, gbi, gbh));
    }, gin);
    INFO(r2.message);
    CHECK(r2.ok);
    auto r3 = attn::testing::gradcheck([&](const std::vector<Tensor>&) {
      return flatten(gru_cell(x, Tensor(), gwi, gwh, gbi, gbh));
    }, {x, gwi, gwh});
    INFO(r3.message);
    CHECK(r3.ok);
  }
}

TEST_CASE("cell ops reject bad arguments with ShapeError naming the op and shapes", "[rnn][cell][errors]") {
  using Catch::Matchers::Contains;
  const Tensor x = Tensor::randn({2, 3}), wi = Tensor::randn({16, 3}), wh = Tensor::randn({16, 4});
  const Tensor b = Tensor::randn({16});
  REQUIRE_THROWS_WITH(lstm_cell(Tensor::randn({2, 3, 1}), {}, wi, wh), Contains("lstm_cell") && Contains("[2, 3, 1]"));
  REQUIRE_THROWS_WITH(lstm_cell(Tensor::randn({2, 5}), {}, wi, wh),
                      Contains("lstm_cell") && Contains("[16, 5]") && Contains("[16, 3]"));
  REQUIRE_THROWS_WITH(lstm_cell(x, {}, wi, Tensor::randn({12, 4})), Contains("lstm_cell") && Contains("[12, 4]"));
  REQUIRE_THROWS_WITH(lstm_cell(x, {Tensor::zeros({3, 4}), Tensor()}, wi, wh),
                      Contains("lstm_cell") && Contains("[2, 4]") && Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(lstm_cell(x, {}, wi, wh, b, Tensor()), Contains("lstm_cell") && Contains("both biases"));
  REQUIRE_THROWS_WITH(lstm_cell(x, {}, wi, wh, Tensor::randn({4}), Tensor::randn({4})),
                      Contains("lstm_cell") && Contains("[16]") && Contains("[4]"));
  REQUIRE_THROWS_WITH(lstm_cell(x.to(kFloat64), {}, wi.to(kFloat64), wh), Contains("lstm_cell") && Contains("float32"));
  REQUIRE_THROWS_WITH(gru_cell(x, Tensor(), Tensor::randn({12, 3}), wh), Contains("gru_cell") && Contains("[16, 4]"));
  REQUIRE_THROWS_AS(gru_cell(x, Tensor::zeros({2, 5}), Tensor::randn({12, 3}), Tensor::randn({12, 4})), ShapeError);
}

TEST_CASE("a cell's backward refuses saved tensors written in place after the forward", "[rnn][cell][version]") {
  using Catch::Matchers::Contains;
  nn::LSTMCell lc(3, 4);
  Tensor x = Tensor::randn({2, 3}).requires_grad_();
  auto [h, c] = lc.forward(x);
  {
    NoGradGuard ng;
    Tensor(c).fill_(0.5);  // c' is read by the backward (tanh(c') is recomputed from it)
  }
  CHECK_THROWS_WITH(sum(h).backward(), Contains("lstm_cell") && Contains("output 1"));
  nn::GRUCell gc(3, 4);
  Tensor x2 = Tensor::randn({2, 3}).requires_grad_();
  Tensor h2 = gc.forward(x2);
  {
    NoGradGuard ng;
    Tensor(x2).fill_(1.0);
  }
  CHECK_THROWS_WITH(sum(h2).backward(), Contains("gru_cell") && Contains("input 0"));
}

TEST_CASE("vectorised tanh (the gate math's, and attn::tanh's) is within 2 ulp of std::tanh", "[rnn][tanh]") {
  // double: packets of 8 lanes and the 1-lane tail, over [-20, 20] (both branches of the
  // Cephes form, the switch at |x| = 0.625, tiny values) and the special values
  std::vector<double> xs;
  for (int i = -200000; i <= 200000; ++i) xs.push_back(i * 1e-4);
  for (double v : {1e-300, -1e-300, 1e-20, 5e-9, 0.625, -0.625, std::nextafter(0.625, 1.0), 0.0, -0.0, 700.0, -800.0})
    xs.push_back(v);
  std::vector<double> ys(xs.size());
  kernels::cpu::tanh_n(xs.data(), ys.data(), int64_t(xs.size()));
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = std::tanh(xs[i]);
    const double ulp = std::abs(std::nextafter(want, want > 0 ? 2.0 : -2.0) - want);
    worst = std::max(worst, std::abs(ys[i] - want) / std::max(ulp, 1e-320));
  }
  INFO("worst error " << worst << " ulp");
  CHECK(worst <= 2.0);
  double one[3] = {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN()};
  kernels::cpu::tanh_n(one, one, 3);
  CHECK(one[0] == 1.0);
  CHECK(one[1] == -1.0);
  CHECK(std::isnan(one[2]));
  double neg_zero = -0.0;
  kernels::cpu::tanh_n(&neg_zero, &neg_zero, 1);
  CHECK(std::signbit(neg_zero));
}

TEST_CASE("fused cells are bit-identical for 1 and 2 threads (small steps serial, large ones split)",
          "[rnn][cell][threads]") {
  // B 3 x H 8: products run on the calling thread; B 256 x H 128 (5e7 flops): split
  for (int64_t B : {int64_t(3), int64_t(256)}) {
    const int64_t I = B == 3 ? 2 : 64, H = B == 3 ? 8 : 128;
    auto run = [&](int threads) {
      return with_threads(threads, [&] {
        manual_seed(51);
        nn::LSTMCell lc(I, H);
        nn::GRUCell gc(I, H);
        Tensor x = Tensor::randn({B, I}).requires_grad_();
        auto [h, c] = lc.forward(x);
        auto [h2, c2] = lc.forward(x, {h, c});
        Tensor g = gc.forward(x, gc.forward(x));
        (sum(mul(h2, h2)) + sum(c2) + sum(mul(g, g))).backward();
        std::vector<float> all;
        for (const Tensor& t : {h2, c2, g, x.grad(), lc.weight_hh.grad(), lc.bias_ih.grad(), gc.weight_ih.grad(),
                                gc.weight_hh.grad(), gc.bias_hh.grad()}) {
          auto v = t.to_vector<float>();
          all.insert(all.end(), v.begin(), v.end());
        }
        return all;
      });
    };
    INFO("B " << B);
    CHECK(run(1) == run(2));
  }
}
