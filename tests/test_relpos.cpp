// ALiBi and Shaw et al.'s vector-form relative positions: slopes, the in-kernel ALiBi bias ==
// the explicit bias tensor on both attention paths, Shaw's attention == its formula written out,
// finite differences, and both inside encoder/decoder layers with KV-cache decoding == the full
// causal forward.
#include <attn/nn/attention/transformer.hpp>
#include <attn/testing/gradcheck.hpp>
#include <cmath>
#include <limits>

#include "test_util.hpp"

using namespace attn;

namespace {


void copy_params(nn::Module& dst, nn::Module& src) {
  NoGradGuard ng;
  auto d = dst.named_parameters();
  for (auto& [name, p] : src.named_parameters())
    for (auto& [n2, q] : d)
      if (n2 == name) Tensor(q).copy_(p);
}

}  // namespace

TEST_CASE("alibi_slopes follow the paper's rule; alibi_bias", "[alibi]") {
  std::vector<double> e8;
  for (int h = 1; h <= 8; ++h) e8.push_back(std::pow(2.0, -h));
  CHECK(alibi_slopes(8).to_vector<double>() == e8);
  // 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then 2^-1, 2^-3 from the 8-head ones
  CHECK(alibi_slopes(6).to_vector<double>() ==
        std::vector<double>{0.25, 1.0 / 16, 1.0 / 64, 1.0 / 256, 0.5, 0.125});
  const auto b = alibi_bias(2, 2, 3, 1, kFloat64).to_vector<double>();  // queries at positions 1, 2
  // head 0 slope 2^-4 (2 heads: 2^-4, 2^-8): row 0 (pos 1) keys 0,1,2 -> -m, 0, -m
  CHECK(b[0] == -1.0 / 16);
  CHECK(b[1] == 0.0);
  CHECK(b[2] == -1.0 / 16);
  CHECK(b[3] == -2.0 / 16);  // row 1 (pos 2), key 0
  CHECK_THROWS_WITH(alibi_slopes(0), Catch::Contains("alibi_slopes"));
}

TEST_CASE("ALiBi in the kernels == the explicit bias as a mask (both paths, causal or not, GQA)", "[alibi]") {
  manual_seed(21);
  for (bool tiled : {false, true}) {
    for (bool causal : {false, true}) {
      DYNAMIC_SECTION((tiled ? "tiled" : "weights") << (causal ? " causal" : "")) {
        const int64_t E = 12, H = 4, B = 2, L = 70;
        for (int64_t Hkv : {int64_t(4), int64_t(2)}) {
          nn::MultiheadAttention with(nn::MultiheadAttentionOptions(E, H).num_kv_heads(Hkv).alibi(true).batch_first(true));
          nn::MultiheadAttention plain(nn::MultiheadAttentionOptions(E, H).num_kv_heads(Hkv).batch_first(true));
          with.to(kFloat64);
          plain.to(kFloat64);
          copy_params(plain, with);
          Tensor x = Tensor::randn({B, L, E}, kFloat64).requires_grad_(), x2 = x.detach().clone().requires_grad_();
          Tensor y = with_path(tiled, [&] { return with.forward_ex(x, x, x, Tensor(), false, Tensor(), true, causal).first; });
          Tensor y2 = with_path(tiled, [&] {
            return plain.forward_ex(x2, x2, x2, Tensor(), false, alibi_bias(H, L, L, 0, kFloat64), true, causal).first;
          });
          CHECK(check_close(y, y2, 1e-12, 1e-12, "out"));
          with_path(tiled, [&] {
            sum(sin(y)).backward();
            sum(sin(y2)).backward();
            return 0;
          });
          CHECK(check_close(x.grad(), x2.grad(), 1e-11, 1e-12, "gx"));
          CHECK(check_close(with.in_proj_weight.grad(), plain.in_proj_weight.grad(), 1e-11, 1e-12, "gW"));
        }
      }
    }
  }
}

// Shaw et al. written out with loops (double): score_ij = q_i.(k_j + aK[c(j-i)]) / sqrt(dh),
// out_i = sum_j w_ij (v_j + aV[c(j-i)]), per head, then out_proj; causal optional.
Tensor shaw_reference(const nn::MultiheadAttention& m, const Tensor& x, bool causal) {
  const int64_t B = x.size(0), L = x.size(1), E = m.embed_dim(), H = m.num_heads(), Dh = E / H;
  const int64_t K = m.relative_key->max_rel_pos();
  const auto X = x.to_vector<double>(), W = m.in_proj_weight.to_vector<double>(), bi = m.in_proj_bias.to_vector<double>();
  const auto AK = m.relative_key->weight().to_vector<double>(), AV = m.relative_value->weight().to_vector<double>();
  auto proj = [&](int64_t b, int64_t t, int64_t row) {
    double s = bi[size_t(row)];
    for (int64_t c = 0; c < E; ++c) s += X[size_t((b * L + t) * E + c)] * W[size_t(row * E + c)];
    return s;
  };
  std::vector<double> heads(size_t(B * L * E));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> z(size_t(L), -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < L; ++j) {
          if (causal && j > i) continue;
          const int64_t r = std::clamp(j - i, -K, K) + K;
          double s = 0;
          for (int64_t d = 0; d < Dh; ++d)
            s += proj(b, i, h * Dh + d) * (proj(b, j, E + h * Dh + d) + AK[size_t(r * Dh + d)]);
          z[size_t(j)] = s / std::sqrt(double(Dh));
          mx = std::max(mx, z[size_t(j)]);
        }
        double den = 0;
        for (auto& v : z) den += (v = std::exp(v - mx));
        for (int64_t d = 0; d < Dh; ++d) {
          double o = 0;
          for (int64_t j = 0; j < L; ++j) {
            const int64_t r = std::clamp(j - i, -K, K) + K;
            o += z[size_t(j)] / den * (proj(b, j, 2 * E + h * Dh + d) + AV[size_t(r * Dh + d)]);
          }
          heads[size_t((b * L + i) * E + h * Dh + d)] = o;
        }
      }
  return m.out_proj.forward(Tensor::from_vector(heads, {B, L, E}));
}

TEST_CASE("Shaw relative positions in MultiheadAttention == the formula; gradcheck; names", "[shaw]") {
  manual_seed(33);
  nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 2).relative_positions(2).batch_first(true));
  m.to(kFloat64);
  std::vector<std::string> names;
  for (auto& [n, p] : m.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
                                          "relative_key.rel_pos_embedding.weight",
                                          "relative_value.rel_pos_embedding.weight"});
  CHECK(m.relative_key->weight().shape() == Shape{5, 4});
  Tensor x = Tensor::randn({2, 6, 8}, kFloat64);
  for (bool causal : {false, true}) {
    NoGradGuard ng;
    Tensor y = m.forward_ex(x, x, x, Tensor(), false, Tensor(), true, causal).first;
    CHECK(check_close(y, shaw_reference(m, x, causal), 1e-12, 1e-12, causal ? "causal" : "full"));
  }
  // finite differences through the input and both relative tables
  Tensor xs = Tensor::randn({1, 4, 8}, kFloat64).requires_grad_();
  auto gc = testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return m.forward_ex(in[0], in[0], in[0], Tensor(), false, Tensor(), true, true).first; },
      {xs});
  INFO(gc.message);
  CHECK(gc.ok);
  Tensor ak = m.relative_key->weight(), av = m.relative_value->weight();
  sum(sin(m.forward(xs, xs, xs, Tensor(), false).first)).backward();
  CHECK(ak.grad().defined());
  CHECK(av.grad().defined());
  CHECK(sum(abs(ak.grad())).item() > 0);
  CHECK_THROWS_WITH(nn::MultiheadAttention(nn::MultiheadAttentionOptions(8, 2).relative_positions(-1)),
                    Catch::Contains("relative_positions"));
}

TEST_CASE("ALiBi / Shaw in decoder and encoder layers: KV-cache decoding == full causal forward", "[alibi][shaw][kvcache]") {
  manual_seed(44);
  for (int variant = 0; variant < 2; ++variant) {
    DYNAMIC_SECTION((variant == 0 ? "alibi" : "shaw")) {
      auto lo = nn::TransformerDecoderLayerOptions(16, 4).dim_feedforward(32).dropout(0.0);
      if (variant == 0) lo.alibi(true);
      else lo.relative_positions(3);
      nn::TransformerDecoder dec(lo, 2, true);
      nn::TransformerEncoder enc(lo, 1, true);
      dec.to(kFloat64);
      enc.to(kFloat64);
      const int64_t T = 11;
      Tensor src = Tensor::randn({2, 7, 16}, kFloat64), tgt = Tensor::randn({2, T, 16}, kFloat64);
      NoGradGuard ng;
      const Tensor mem = enc.forward(src);
      const Tensor full = dec.forward(tgt, mem, Tensor(), Tensor(), Tensor(), Tensor(), true);
      nn::TransformerDecoderCache cache;
      std::vector<Tensor> rows;
      for (int64_t t = 0; t < T; ++t) rows.push_back(dec.forward_step(narrow(tgt, 1, t, 1), mem, cache));
      CHECK(check_close(cat(rows, 1), full, 1e-12, 1e-12, "cached == full"));
      // the position terms change the output (so the option is in effect)
      auto plain = nn::TransformerDecoderLayerOptions(16, 4).dim_feedforward(32).dropout(0.0);
      nn::TransformerDecoder dec0(plain, 2, true);
      dec0.to(kFloat64);
      copy_params(dec0, dec);
      const Tensor y0 = dec0.forward(tgt, mem, Tensor(), Tensor(), Tensor(), Tensor(), true);
      CHECK(max(abs(sub(y0, full))).item() > 1e-3);
    }
  }
}
