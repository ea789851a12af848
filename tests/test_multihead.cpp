// nn::MultiheadAttention, nn::TransformerEncoderLayer / TransformerEncoder: PyTorch goldens
// (tests/fixtures/gen_attention_torch.py: attn_mha.safetensors, attn_encoder.safetensors),
// finite differences, names, errors.
#include <attn/nn/attention/multihead.hpp>
#include <attn/nn/attention/transformer.hpp>
#include <map>

#include "test_util.hpp"

using namespace attn;

namespace {

Tensor get(const io::SafetensorsFile& f, const std::string& n) { return f.at(n).clone(); }
Tensor to_bool(const Tensor& t) { return ne(t, Tensor::zeros({}, t.dtype())); }

void load_params(nn::Module& m, const io::SafetensorsFile& f, const std::string& pre) {
  NoGradGuard ng;
  for (auto& [name, p] : m.named_parameters()) {
    INFO(pre + "p." + name);
    REQUIRE(f.contains(pre + "p." + name));
    Tensor(p).copy_(f.at(pre + "p." + name));
  }
}

void check_param_grads(nn::Module& m, const io::SafetensorsFile& f, const std::string& pre) {
  size_t n = 0;
  for (auto& [name, p] : m.named_parameters()) {
    CHECK(check_close(p.grad(), f.at(pre + "g." + name), 1e-9, 1e-10, pre + "g." + name));
    ++n;
  }
  // every PyTorch parameter exists here under the same name
  size_t torch_params = 0;
  for (auto& [name, t] : f.tensors)
    if (name.rfind(pre + "p.", 0) == 0) ++torch_params;
  CHECK(n == torch_params);
}

Tensor wsum(const Tensor& y) {
  Tensor r = reshape(sin(Tensor::arange(0.0, double(y.numel()), 1.0, kFloat64) * 0.7) + 0.3, y.shape());
  return sum(mul(y, r));
}

}  // namespace

TEST_CASE("MultiheadAttention matches torch.nn.MultiheadAttention (float64)", "[mha][golden]") {
  auto f = load_fixture("attn_mha.safetensors");
  for (const std::string c : {"self", "self_perhead", "cross", "kvsame", "kvdim", "nobias", "kpm", "boolmask",
                              "floatmask3d", "seqfirst", "seqfirst_self_kpm"}) {
    SECTION(c) {
      const std::string pre = c + ".";
      const auto cfg = f.at(pre + "config").to_vector<double>();
      const int64_t E = int64_t(cfg[0]), H = int64_t(cfg[1]), kd = int64_t(cfg[2]), vd = int64_t(cfg[3]);
      const bool bf = cfg[4] != 0, bias = cfg[5] != 0, avg = cfg[6] != 0, self = cfg[7] != 0, kvsame = cfg[8] != 0;
      nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, H).bias(bias).kdim(kd).vdim(vd).batch_first(bf));
      mha.to(kFloat64);
      load_params(mha, f, pre);
      Tensor q = get(f, pre + "query").requires_grad_();
      Tensor k = self ? q : get(f, pre + "key").requires_grad_();
      Tensor v = self ? q : (kvsame ? k : get(f, pre + "value").requires_grad_());
      Tensor kpm = f.contains(pre + "kpm") ? to_bool(f.at(pre + "kpm")) : Tensor();
      Tensor mask;
      if (f.contains(pre + "mask")) mask = f.contains(pre + "mask_is_bool") ? to_bool(f.at(pre + "mask")) : get(f, pre + "mask");
      auto [out, w] = mha.forward(q, k, v, kpm, true, mask, avg);
      CHECK(check_close(out, f.at(pre + "out"), 1e-9, 1e-10, pre + "out"));
      CHECK(check_close(w, f.at(pre + "weights"), 1e-9, 1e-10, pre + "weights"));
      (sum(mul(out, f.at(pre + "r"))) + sum(mul(w, f.at(pre + "rw")))).backward();
      CHECK(check_close(q.grad(), f.at(pre + "gquery"), 1e-9, 1e-10, pre + "gquery"));
      if (!self) CHECK(check_close(k.grad(), f.at(pre + "gkey"), 1e-9, 1e-10, pre + "gkey"));
      if (!self && !kvsame) CHECK(check_close(v.grad(), f.at(pre + "gvalue"), 1e-9, 1e-10, pre + "gvalue"));
      check_param_grads(mha, f, pre);
      // need_weights = false gives the same output and no weights
      auto [out2, w2] = mha.forward(q, k, v, kpm, false, mask, avg);
      CHECK(!w2.defined());
      CHECK(check_close(out2, out, 0, 0, pre + "out without weights"));
    }
  }
}

TEST_CASE("TransformerEncoderLayer / TransformerEncoder match PyTorch (float64)", "[encoder][golden]") {
  auto f = load_fixture("attn_encoder.safetensors");
  for (const std::string c : {"post_relu", "pre_gelu", "post_gelu_kpm_causal", "stack2_pre_relu_norm", "stack2_post_gelu"}) {
    SECTION(c) {
      const std::string pre = c + ".";
      const auto cfg = f.at(pre + "config").to_vector<double>();
      const int64_t E = int64_t(cfg[0]), H = int64_t(cfg[1]), F = int64_t(cfg[2]), nl = int64_t(cfg[7]);
      const bool nf = cfg[3] != 0, gelu_act = cfg[4] != 0, causal = cfg[5] != 0, fnorm = cfg[8] != 0;
      auto lo = nn::TransformerEncoderLayerOptions(E, H).dim_feedforward(F).dropout(0.0)
                    .activation(gelu_act ? "gelu" : "relu").norm_first(nf).batch_first(true);
      Tensor x = get(f, pre + "x").requires_grad_();
      Tensor kpm = f.contains(pre + "kpm") ? to_bool(f.at(pre + "kpm")) : Tensor();
      const int64_t L = x.size(1);
      std::unique_ptr<nn::Module> m;
      Tensor y, y_causal_flag;
      if (nl == 0) {
        auto layer = std::make_unique<nn::TransformerEncoderLayer>(lo);
        layer->to(kFloat64);
        load_params(*layer, f, pre);
        y = layer->forward(x, causal ? causal_mask(L) : Tensor(), kpm);
        if (causal) {
          NoGradGuard ng;
          y_causal_flag = layer->forward(x, Tensor(), kpm, /*is_causal=*/true);
        }
        m = std::move(layer);
      } else {
        auto enc = std::make_unique<nn::TransformerEncoder>(lo, nl, fnorm);
        enc->to(kFloat64);
        load_params(*enc, f, pre);
        y = enc->forward(x, causal ? causal_mask(L) : Tensor(), kpm);
        if (causal) {
          NoGradGuard ng;
          y_causal_flag = enc->forward(x, Tensor(), kpm, true);
        }
        m = std::move(enc);
      }
      m->eval();
      CHECK(check_close(y, f.at(pre + "out"), 1e-9, 1e-10, pre + "out"));
      if (causal) CHECK(check_close(y_causal_flag, f.at(pre + "out"), 1e-9, 1e-10, pre + "out (is_causal)"));
      sum(mul(y, f.at(pre + "r"))).backward();
      CHECK(check_close(x.grad(), f.at(pre + "gx"), 1e-9, 1e-10, pre + "gx"));
      check_param_grads(*m, f, pre);
    }
  }
}

TEST_CASE("MultiheadAttention parameter names, shapes and init follow PyTorch", "[mha]") {
  nn::MultiheadAttention a(nn::MultiheadAttentionOptions(8, 2));
  std::vector<std::string> names;
  for (auto& [n, p] : a.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
  CHECK(a.in_proj_weight.shape() == Shape{24, 8});
  CHECK(a.in_proj_bias.to_vector<float>() == std::vector<float>(24, 0.0f));
  CHECK(a.out_proj.bias.to_vector<float>() == std::vector<float>(8, 0.0f));
  const double bound = std::sqrt(6.0 / (8 + 24));
  for (float w : a.in_proj_weight.to_vector<float>()) CHECK(std::abs(w) <= bound);
  nn::MultiheadAttention b(nn::MultiheadAttentionOptions(8, 2).kdim(3).vdim(5).bias(false));
  names.clear();
  for (auto& [n, p] : b.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"});
  CHECK(b.k_proj_weight.shape() == Shape{8, 3});
  CHECK(b.v_proj_weight.shape() == Shape{8, 5});
  nn::TransformerEncoder enc(nn::TransformerEncoderLayerOptions(8, 2).dim_feedforward(16), 2, true);
  std::map<std::string, Shape> shapes;
  for (auto& [n, p] : enc.named_parameters()) shapes[n] = p.shape();
  CHECK(shapes.count("layers.0.self_attn.in_proj_weight"));
  CHECK(shapes.count("layers.1.self_attn.out_proj.weight"));
  CHECK(shapes["layers.1.linear1.weight"] == Shape{16, 8});
  CHECK(shapes["layers.0.linear2.weight"] == Shape{8, 16});
  CHECK(shapes.count("layers.0.norm2.bias"));
  CHECK(shapes.count("norm.weight"));
  CHECK(shapes.size() == 2 * 12 + 2);
}

TEST_CASE("MultiheadAttention and encoder layer gradcheck (tiny)", "[mha][gradcheck]") {
  manual_seed(21);
  SECTION("MHA cross-attention with key padding, per-head weights, kdim/vdim") {
    nn::MultiheadAttention m(nn::MultiheadAttentionOptions(4, 2).kdim(3).vdim(2).batch_first(true));
    m.to(kFloat64);
    {
      NoGradGuard ng;
      m.in_proj_bias.copy_(Tensor::randn({12}, kFloat64));
    }
    Tensor q = Tensor::randn({2, 2, 4}, kFloat64).requires_grad_(), k = Tensor::randn({2, 3, 3}, kFloat64).requires_grad_(),
           v = Tensor::randn({2, 3, 2}, kFloat64).requires_grad_();
    Tensor kpm = Tensor::from_vector(std::vector<bool>{false, false, true, false, false, false}, {2, 3});
    std::vector<Tensor> in{q, k, v};
    for (auto& p : m.parameters()) in.push_back(p);
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>&) {
          auto [o, w] = m.forward(q, k, v, kpm, true, Tensor(), false);
          return wsum(o) + wsum(w);
        },
        in);
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("MHA self-attention, seq-first, float mask") {
    nn::MultiheadAttention m(nn::MultiheadAttentionOptions(4, 2));
    m.to(kFloat64);
    Tensor x = Tensor::randn({3, 2, 4}, kFloat64).requires_grad_();
    Tensor mask = Tensor::randn({3, 3}, kFloat64).requires_grad_();
    std::vector<Tensor> in{x, mask};
    for (auto& p : m.parameters()) in.push_back(p);
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>&) {
          auto [o, w] = m.forward(x, x, x, Tensor(), true, mask);
          return wsum(o) + wsum(w);
        },
        in);
    INFO(r.message);
    REQUIRE(r.ok);
  }
  SECTION("encoder layer, pre-norm gelu, causal") {
    nn::TransformerEncoderLayer layer(
        nn::TransformerEncoderLayerOptions(4, 2).dim_feedforward(6).dropout(0.0).activation("gelu").norm_first(true));
    layer.to(kFloat64);
    Tensor x = Tensor::randn({1, 3, 4}, kFloat64).requires_grad_();
    std::vector<Tensor> in{x};
    for (auto& p : layer.parameters()) in.push_back(p);
    auto r = testing::gradcheck([&](const std::vector<Tensor>&) { return wsum(layer.forward(x, Tensor(), Tensor(), true)); },
                                in);
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

TEST_CASE("MultiheadAttention: unbatched input, dropout only in training", "[mha]") {
  manual_seed(2);
  nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 4).dropout(0.5).batch_first(true));
  Tensor x = Tensor::randn({5, 8});
  m.eval();
  auto [o1, w1] = m.forward(x, x, x);
  auto [o2, w2] = m.forward(unsqueeze(x, 0), unsqueeze(x, 0), unsqueeze(x, 0));
  CHECK(o1.shape() == Shape{5, 8});
  CHECK(w1.shape() == Shape{5, 5});
  CHECK(check_close(o1, squeeze(o2, 0), 1e-6, 1e-6, "unbatched"));
  auto [o3, w3] = m.forward(x, x, x);
  CHECK(check_close(o3, o1, 0, 0, "eval is deterministic"));
  m.train();
  auto [o4, w4] = m.forward(x, x, x);
  CHECK(!check_close(o4, o1, 1e-6, 1e-6, "train applies dropout"));
}

TEST_CASE("MultiheadAttention / encoder errors name the op and shapes", "[mha][errors]") {
  CHECK_THROWS_WITH(nn::MultiheadAttention(nn::MultiheadAttentionOptions(10, 3)),
                    Catch::Contains("MultiheadAttention") && Catch::Contains("divisible by num_heads 3"));
  CHECK_THROWS_AS(nn::MultiheadAttention(nn::MultiheadAttentionOptions(10, 3)), ShapeError);
  nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 2).batch_first(true));
  Tensor x = Tensor::randn({2, 5, 8});
  CHECK_THROWS_WITH(m.forward(x, x, x, Tensor(), true, Tensor::zeros({4, 5}, kBool)),
                    Catch::Contains("attn_mask") && Catch::Contains("[4, 5]"));
  CHECK_THROWS_WITH(m.forward(x, x, x, Tensor::zeros({2, 4}, kBool)), Catch::Contains("key_padding_mask") && Catch::Contains("[2, 4]"));
  CHECK_THROWS_WITH(m.forward(Tensor::randn({2, 5, 6}), x, x), Catch::Contains("[2, 5, 6]"));
  CHECK_THROWS_WITH(m.forward(x, Tensor::randn({3, 5, 8}), Tensor::randn({3, 5, 8})), Catch::Contains("[3, 5, 8]"));
  CHECK_THROWS_AS(nn::TransformerEncoderLayer(nn::TransformerEncoderLayerOptions(8, 2).activation("tanh")), ShapeError);
}
