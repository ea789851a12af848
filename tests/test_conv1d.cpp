// attn::conv1d / nn::Conv1d against torch.nn.functional.conv1d (forward and the gradients of
// input, weight and bias; fixture from tests/fixtures/gen_conv1d.py), gradcheck in double,
// causality, nn::TemporalBlock and nn::PatchEmbedding (patches against PatchTST's unfold),
// PyTorch's names and init bounds, bad calls.
#include <attn/attn.hpp>
#include <attn/nn/conv.hpp>
#include <attn/testing/gradcheck.hpp>
#include <sstream>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

namespace {
struct ConvCase {
  const char* name;
  int64_t stride, padding, dilation, groups;
  bool bias, causal;
};
// The same table as CASES in gen_conv1d.py (sizes come from the fixture's tensors).
const std::vector<ConvCase> kCases = {
    {"plain", 1, 0, 1, 1, true, false},
    {"stride2_pad2_dil2", 2, 2, 2, 1, true, false},
    {"groups3", 1, 1, 1, 3, true, false},
    {"depthwise_nobias", 1, 2, 1, 4, false, false},
    {"causal_dil2", 1, 0, 2, 1, true, true},
    {"kernel1", 1, 0, 1, 1, true, false},
    {"stride3_long_kernel", 3, 1, 3, 1, true, false},
};
}  // namespace

TEST_CASE("conv1d: forward and gradients match torch.nn.functional.conv1d", "[conv1d][golden]") {
  const auto f = load_fixture("conv1d.safetensors");
  std::string names;
  for (const auto& c : kCases) names += (names.empty() ? "" : ",") + std::string(c.name);
  REQUIRE(f.metadata.at("cases") == names);
  for (const auto& c : kCases) {
    INFO(c.name);
    const std::string p = std::string(c.name) + ".";
    const Tensor x = f.at(p + "x").clone().requires_grad_();
    const Tensor w = f.at(p + "w");
    const int64_t K = w.size(2);
    nn::Conv1d conv(nn::Conv1dOptions(x.size(1), w.size(0), K)
                        .stride(c.stride)
                        .padding(c.causal ? 0 : c.padding)
                        .dilation(c.dilation)
                        .groups(c.groups)
                        .bias(c.bias)
                        .causal(c.causal));
    conv.to(kFloat64);
    {
      NoGradGuard g;
      conv.weight.copy_(w);
      if (c.bias) conv.bias.copy_(f.at(p + "b"));
    }
    const Tensor y = conv.forward(x);
    CHECK(check_close(y, f.at(p + "out"), 1e-12, 1e-12, p + "out"));
    sum(y * f.at(p + "r")).backward();
    CHECK(check_close(x.grad(), f.at(p + "gx"), 1e-12, 1e-12, p + "gx"));
    CHECK(check_close(conv.weight.grad(), f.at(p + "gw"), 1e-12, 1e-12, p + "gw"));
    if (c.bias) CHECK(check_close(conv.bias.grad(), f.at(p + "gb"), 1e-12, 1e-12, p + "gb"));
    // the functional form (non-causal cases) and float32
    if (!c.causal) {
      const Tensor b = c.bias ? f.at(p + "b") : Tensor();
      const Tensor yf = conv1d(f.at(p + "x"), w, b, c.stride, c.padding, c.dilation, c.groups);
      CHECK(check_close(yf, f.at(p + "out"), 1e-12, 1e-12, p + "functional"));
      const Tensor y32 = conv1d(f.at(p + "x").to(kFloat32), w.to(kFloat32), c.bias ? b.to(kFloat32) : Tensor(),
                                c.stride, c.padding, c.dilation, c.groups);
      CHECK(y32.dtype() == kFloat32);
      CHECK(check_close(y32, f.at(p + "out"), 1e-4, 1e-5, p + "float32"));
      // unbatched [C_in, L]
      const Tensor y1 = conv1d(select(f.at(p + "x"), 0, 0), w, b, c.stride, c.padding, c.dilation, c.groups);
      CHECK(check_close(y1, select(f.at(p + "out"), 0, 0), 1e-12, 1e-12, p + "unbatched"));
    }
  }
}

TEST_CASE("conv1d: gradcheck in double over strides, dilation, groups and causal padding", "[conv1d][gradcheck]") {
  manual_seed(11);
  for (const auto& c : kCases) {
    INFO(c.name);
    const int64_t G = c.groups, cin = 2 * G, cout = G, K = 2;
    nn::Conv1d conv(nn::Conv1dOptions(cin, cout, K).stride(c.stride).padding(c.causal ? 0 : c.padding)
                        .dilation(c.dilation).groups(G).bias(c.bias).causal(c.causal));
    conv.to(kFloat64);
    const Tensor x = Tensor::randn({2, cin, 7}, kFloat64).requires_grad_();
    std::vector<Tensor> ins = {x, conv.weight};
    if (c.bias) ins.push_back(conv.bias);
    auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return conv.forward(in[0]); }, ins);
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("conv1d: causal output at t depends on inputs <= t only; TemporalBlock keeps length", "[conv1d]") {
  manual_seed(5);
  nn::Conv1d conv(nn::Conv1dOptions(2, 3, 3).dilation(2).causal(true));
  const Tensor x = Tensor::randn({1, 2, 12});
  const Tensor y = conv.forward(x);
  REQUIRE(y.shape() == Shape{1, 3, 12});
  auto xv = x.to_vector<float>();
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t t = 8; t < 12; ++t) xv[size_t(c * 12 + t)] = 100.0f;  // change the future from t = 8 on
  const Tensor x2 = Tensor::from_vector(xv, {1, 2, 12});
  const auto a = y.to_vector<float>(), b = conv.forward(x2).to_vector<float>();
  for (int64_t o = 0; o < 3; ++o)
    for (int64_t t = 0; t < 12; ++t) {
      const size_t i = size_t(o * 12 + t);
      if (t < 8) CHECK(a[i] == b[i]);
      else CHECK(a[i] != b[i]);
    }

  nn::TemporalBlock block(nn::TemporalBlockOptions(2, 4, 3).dilation(2));
  CHECK(block.forward(x).shape() == Shape{1, 4, 12});
  std::vector<std::string> names;
  for (auto& [n, p] : block.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                          "downsample.weight", "downsample.bias"});
  nn::TemporalBlock same(nn::TemporalBlockOptions(4, 4, 2));
  CHECK(same.named_parameters().size() == 4);  // identity residual: no downsample
  // the block is causal too
  const auto ba = block.forward(x).to_vector<float>(), bb = block.forward(x2).to_vector<float>();
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t t = 0; t < 8; ++t) CHECK(ba[size_t(o * 12 + t)] == bb[size_t(o * 12 + t)]);
  block.to(kFloat64);
  const Tensor xd = Tensor::randn({1, 2, 6}, kFloat64).requires_grad_();
  auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return block.forward(in[0]); },
                              {xd, block.conv1.weight, block.conv2.bias, block.downsample->weight});
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("conv1d: PyTorch's parameter names, shapes and init bounds", "[conv1d]") {
  manual_seed(1);
  nn::Conv1d conv(nn::Conv1dOptions(6, 4, 5).groups(2));
  auto np = conv.named_parameters();
  REQUIRE(np.size() == 2);
  CHECK(np[0].first == "weight");
  CHECK(np[0].second.shape() == Shape{4, 3, 5});
  CHECK(np[1].first == "bias");
  const double bound = 1.0 / std::sqrt(15.0);  // fan_in = C_in / groups * K
  for (float v : conv.weight.to_vector<float>()) CHECK(std::abs(v) <= bound);
  for (float v : conv.bias.to_vector<float>()) CHECK(std::abs(v) <= bound);
  double mx = 0;
  for (float v : conv.weight.to_vector<float>()) mx = std::max(mx, double(std::abs(v)));
  CHECK(mx > 0.8 * bound);
}

TEST_CASE("PatchEmbedding: patches as PatchTST's ReplicationPad1d + unfold, projection, position", "[conv1d][patch]") {
  const auto f = load_fixture("conv1d.safetensors");
  nn::PatchEmbedding pe(nn::PatchEmbeddingOptions(12, 4, 3, 8));
  pe.to(kFloat64);
  CHECK(pe.num_patches() == 4);  // (12 + 3 - 4) / 3 + 1
  const Tensor x = f.at("patch.x");
  CHECK(check_close(pe.patches(x), f.at("patch.out"), 0, 0, "patches"));
  const Tensor out = pe.forward(x);
  CHECK(out.shape() == Shape{2, 3, 4, 8});
  CHECK(check_close(out, linear(f.at("patch.out"), pe.value_embedding.weight, pe.value_embedding.bias) + pe.W_pos,
                    1e-14, 1e-14, "projection + position"));
  std::vector<std::string> names;
  for (auto& [n, p] : pe.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"W_pos", "value_embedding.weight", "value_embedding.bias"});  // own parameters first
  nn::PatchEmbedding nopad(nn::PatchEmbeddingOptions(12, 4, 4, 8).pad_end(false));
  CHECK(nopad.num_patches() == 3);
  const Tensor xin = Tensor::randn({1, 2, 12}, kFloat64).requires_grad_();
  auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return pe.forward(in[0]); },
                              {xin, pe.W_pos});
  INFO(r.message);
  CHECK(r.ok);
  CHECK_THROWS_WITH(pe.forward(Tensor::zeros({2, 3, 11}, kFloat64)), Contains("PatchEmbedding: input must be [B, C, 12], got [2, 3, 11]"));
}

TEST_CASE("conv1d: bad calls name the op and the shapes", "[conv1d][errors]") {
  const Tensor x = Tensor::zeros({2, 3, 10}), w = Tensor::zeros({4, 3, 3});
  CHECK_THROWS_WITH(conv1d(Tensor::zeros({3}), w), Contains("conv1d: input must be [B, C_in, L] or [C_in, L], got [3]"));
  CHECK_THROWS_WITH(conv1d(x, Tensor::zeros({4, 3})), Contains("conv1d: weight must be [C_out, C_in / groups, K], got [4, 3]"));
  CHECK_THROWS_WITH(conv1d(x, Tensor::zeros({4, 2, 3})), Contains("input [2, 3, 10] and weight [4, 2, 3] do not fit groups=1"));
  CHECK_THROWS_WITH(conv1d(x, w, Tensor::zeros({3})), Contains("conv1d: bias must be [4], got [3]"));
  CHECK_THROWS_WITH(conv1d(x, Tensor::zeros({4, 3, 6}), Tensor(), 1, 0, 2),
                    Contains("padded input length 10 (input [2, 3, 10]) is shorter than the kernel's span 11"));
  CHECK_THROWS_WITH(conv1d(x, w, Tensor(), 0), Contains("conv1d: stride, dilation and groups must be positive"));
  CHECK_THROWS_AS(conv1d(x, w.to(kFloat64)), std::invalid_argument);
  CHECK_THROWS_WITH(nn::Conv1d(nn::Conv1dOptions(3, 4, 3).groups(2)), Contains("must be divisible by groups 2"));
  CHECK_THROWS_WITH(nn::Conv1d(nn::Conv1dOptions(3, 4, 0)), Contains("Conv1d: sizes"));
  CHECK_THROWS_WITH(nn::Conv1d(nn::Conv1dOptions(3, 4, 3).causal(true).padding(1)), Contains("causal sets the padding"));
  CHECK_THROWS_AS(nn::PatchEmbedding(nn::PatchEmbeddingOptions(3, 4, 1, 8)), std::invalid_argument);
}
