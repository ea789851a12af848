// The decoder side: nn::TransformerDecoderLayer / TransformerDecoder / Transformer against PyTorch
// (tests/fixtures/gen_decoder_torch.py: attn_decoder.safetensors), incremental decoding with a
// KV cache (== the full causal forward), the end-aligned causal mask on both kernel paths, and
// grouped-query attention (== repeated K/V heads, no K/V copy).
#include <attn/nn/attention/transformer.hpp>
#include <attn/testing/gradcheck.hpp>
#include <algorithm>
#include <functional>
#include <limits>
#include <memory>
#include <tuple>

#include "test_util.hpp"

using namespace attn;

namespace {

Tensor get(const io::SafetensorsFile& f, const std::string& n) { return f.at(n).clone(); }
Tensor to_bool(const Tensor& t) { return ne(t, Tensor::zeros({}, t.dtype())); }
Tensor opt_mask(const io::SafetensorsFile& f, const std::string& n) {
  if (!f.contains(n)) return Tensor();
  return f.contains(n + "_is_bool") ? to_bool(f.at(n)) : get(f, n);
}

void load_params(nn::Module& m, const io::SafetensorsFile& f, const std::string& pre) {
  NoGradGuard ng;
  size_t n = 0;
  for (auto& [name, p] : m.named_parameters()) {
    INFO(pre + "p." + name);
    REQUIRE(f.contains(pre + "p." + name));
    Tensor(p).copy_(f.at(pre + "p." + name));
    ++n;
  }
  size_t torch_params = 0;  // every PyTorch parameter exists here under the same name
  for (auto& [name, t] : f.tensors)
    if (name.rfind(pre + "p.", 0) == 0) ++torch_params;
  CHECK(n == torch_params);
}

void check_param_grads(nn::Module& m, const io::SafetensorsFile& f, const std::string& pre) {
  for (auto& [name, p] : m.named_parameters())
    CHECK(check_close(p.grad(), f.at(pre + "g." + name), 1e-9, 1e-10, pre + "g." + name));
}

Tensor rnd(const Shape& s, DType dt = kFloat64, bool grad = false) {
  Tensor t = Tensor::randn(s, dt);
  if (grad) t.requires_grad_();
  return t;
}

// K/V heads [B, Hkv, S, E] repeated to [B, Hkv * G, S, E] (head h = kv head h / G), composed of
// differentiable ops: the reference for grouped-query attention.
Tensor repeat_heads(const Tensor& k, int64_t G) {
  const int64_t B = k.size(0), Hkv = k.size(1), S = k.size(2), E = k.size(3);
  return reshape(expand(unsqueeze(k, 2), {B, Hkv, G, S, E}), {B, Hkv * G, S, E});
}

// softmax(q k^T / sqrt(E) + causal(offset)) v composed of basic ops: query i sees keys j <= i + offset.
Tensor composed_offset_causal(const Tensor& q, const Tensor& k, const Tensor& v, int64_t offset) {
  const int64_t L = q.size(-2), S = k.size(-2);
  std::vector<double> m(size_t(L * S));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < S; ++j) m[size_t(i * S + j)] = j <= i + offset ? 0.0 : -std::numeric_limits<double>::infinity();
  Tensor z = matmul(q, transpose(k, -1, -2)) * (1.0 / std::sqrt(double(q.size(-1)))) +
             Tensor::from_vector(m, {L, S}).to(q.dtype());
  return matmul(softmax(z, -1), v);
}

// The fused attention node on contiguous q [B, H, L, E], k/v [B, Hkv, S, E] with an end-aligned
// (or any) causal offset: the kernels' entry point, which MultiheadAttention::forward_cached uses.
Tensor fused_offset_causal(const Tensor& q, const Tensor& k, const Tensor& v, int64_t offset) {
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), E = q.size(3), Hkv = k.size(1), S = k.size(2);
  detail::FusedAttnArgs a;
  a.q = q;
  a.k = k;
  a.v = v;
  a.p.B = B;
  a.p.H = H;
  a.p.L = L;
  a.p.S = S;
  a.p.E = a.p.Ev = E;
  a.p.scale = 1.0 / std::sqrt(double(E));
  a.p.causal = true;
  a.p.q_offset = offset;
  a.p.kv_group = H / Hkv;
  a.lq = a.lo = {0, H * L * E, L * E, E};
  a.lk = a.lv = {0, Hkv * S * E, S * E, E};
  a.out_shape = {B, H, L, E};
  a.scores_shape = {B, H, L, S};
  return detail::fused_attention(a, "test").first;
}


}  // namespace

TEST_CASE("TransformerDecoderLayer / TransformerDecoder / Transformer match PyTorch (float64)", "[decoder][golden]") {
  auto f = load_fixture("attn_decoder.safetensors");
  for (const std::string c : {"layer_post_relu", "layer_pre_gelu", "layer_seqfirst", "dec2_pre_relu_norm",
                              "dec2_post_gelu", "tr_post_relu", "tr_pre_gelu"}) {
    SECTION(c) {
      const std::string pre = c + ".";
      const auto cfg = f.at(pre + "config").to_vector<double>();
      const int64_t E = int64_t(cfg[0]), H = int64_t(cfg[1]), F = int64_t(cfg[2]), nl = int64_t(cfg[6]);
      const bool nf = cfg[3] != 0, gelu_act = cfg[4] != 0, bf = cfg[5] != 0, fnorm = cfg[7] != 0;
      const int kind = int(cfg[8]);
      Tensor tgt = get(f, pre + "tgt").requires_grad_(), mem = get(f, pre + "memory").requires_grad_();
      Tensor tmask = opt_mask(f, pre + "tgt_mask"), mmask = opt_mask(f, pre + "memory_mask");
      Tensor smask = opt_mask(f, pre + "src_mask");
      Tensor tkpm = f.contains(pre + "tgt_kpm") ? to_bool(f.at(pre + "tgt_kpm")) : Tensor();
      Tensor mkpm = f.contains(pre + "mem_kpm") ? to_bool(f.at(pre + "mem_kpm")) : Tensor();
      Tensor skpm = f.contains(pre + "src_kpm") ? to_bool(f.at(pre + "src_kpm")) : Tensor();
      const bool causal = tmask.defined() && tmask.dtype() == kBool;
      auto lo = nn::TransformerDecoderLayerOptions(E, H).dim_feedforward(F).dropout(0.0)
                    .activation(gelu_act ? "gelu" : "relu").norm_first(nf).batch_first(bf);
      std::shared_ptr<nn::Module> m;
      std::function<Tensor(const Tensor&, bool)> run;  // (tgt mask, is_causal flag) -> output
      if (kind == 0) {
        auto l = std::make_shared<nn::TransformerDecoderLayer>(lo);
        run = [=](const Tensor& tm, bool ic) { return l->forward(tgt, mem, tm, mmask, tkpm, mkpm, ic); };
        m = l;
      } else if (kind == 1) {
        auto d = std::make_shared<nn::TransformerDecoder>(lo, nl, fnorm);
        run = [=](const Tensor& tm, bool ic) { return d->forward(tgt, mem, tm, mmask, tkpm, mkpm, ic); };
        m = d;
      } else {
        auto t = std::make_shared<nn::Transformer>(nn::TransformerOptions(E, H).num_encoder_layers(nl)
                                                       .num_decoder_layers(nl).dim_feedforward(F).dropout(0.0)
                                                       .activation(gelu_act ? "gelu" : "relu").norm_first(nf)
                                                       .batch_first(bf));
        run = [=](const Tensor& tm, bool ic) {
          return t->forward(mem, tgt, smask, tm, mmask, skpm, tkpm, mkpm, false, ic);
        };
        m = t;
      }
      m->to(kFloat64);
      m->eval();
      load_params(*m, f, pre);
      Tensor y = run(tmask, false);
      CHECK(check_close(y, f.at(pre + "out"), 1e-9, 1e-10, pre + "out"));
      if (causal) {  // tgt_is_causal without a mask gives the same
        NoGradGuard ng;
        CHECK(check_close(run(Tensor(), true), f.at(pre + "out"), 1e-9, 1e-10, pre + "out (tgt_is_causal)"));
      }
      sum(mul(y, f.at(pre + "r"))).backward();
      CHECK(check_close(tgt.grad(), f.at(pre + "gtgt"), 1e-9, 1e-10, pre + "gtgt"));
      CHECK(check_close(mem.grad(), f.at(pre + "gmemory"), 1e-9, 1e-10, pre + "gmemory"));
      check_param_grads(*m, f, pre);
    }
  }
}

TEST_CASE("Decoder parameter names follow PyTorch; options and errors", "[decoder]") {
  nn::TransformerDecoderLayer l(nn::TransformerDecoderLayerOptions(8, 2).dim_feedforward(16));
  std::vector<std::string> names;
  for (auto& [n, p] : l.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                          "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                          "multihead_attn.in_proj_weight", "multihead_attn.in_proj_bias",
                                          "multihead_attn.out_proj.weight", "multihead_attn.out_proj.bias",
                                          "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                                          "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
                                          "norm3.weight", "norm3.bias"});
  nn::Transformer t(nn::TransformerOptions(8, 2).num_encoder_layers(1).num_decoder_layers(2).dim_feedforward(16));
  names.clear();
  for (auto& [n, p] : t.named_parameters()) names.push_back(n);
  CHECK(names.front() == "encoder.layers.0.self_attn.in_proj_weight");
  CHECK(std::count(names.begin(), names.end(), "encoder.norm.weight") == 1);
  CHECK(std::count(names.begin(), names.end(), "decoder.layers.1.multihead_attn.in_proj_weight") == 1);
  CHECK(names.back() == "decoder.norm.bias");
  const Tensor m = nn::Transformer::generate_square_subsequent_mask(3);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(m.to_vector<float>() == std::vector<float>{0, -inf, -inf, 0, 0, -inf, 0, 0, 0});
  CHECK_THROWS_AS(nn::TransformerDecoderLayer(nn::TransformerDecoderLayerOptions(8, 2).activation("tanh")),
                  std::invalid_argument);
  CHECK_THROWS_WITH(t.forward(Tensor::randn({2, 5, 8}), Tensor::randn({3, 4, 8})),
                    Catch::Contains("Transformer") && Catch::Contains("[2, 5, 8]") && Catch::Contains("[3, 4, 8]"));
  nn::TransformerDecoder d(nn::TransformerDecoderLayerOptions(8, 2).dim_feedforward(16), 1);
  CHECK_THROWS_WITH(d.forward(Tensor::randn({2, 5, 8}), Tensor::randn({2, 4, 6})),
                    Catch::Contains("MultiheadAttention") && Catch::Contains("[2, 4, 6]"));
}

TEST_CASE("End-aligned causal mask: both kernel paths, forward and backward, with and without GQA", "[kvcache]") {
  manual_seed(11);
  // (L, S, offset): the KV-cache case S - L, a partial offset, and L > 64 rows with several key blocks
  for (const auto& shape : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{3, 7, 4}, {5, 9, 2}, {70, 300, 230}}) {
    // named variables, not a structured binding: lambdas capture them (Clang < 16 rejects bindings)
    const int64_t L = std::get<0>(shape), S = std::get<1>(shape), off = std::get<2>(shape);
    for (int64_t Hkv : {int64_t(2), int64_t(1)}) {
      // weights-storing path; tiled path with its two backward schedules
      for (int path : {0, 1, 2}) {
        const bool tiled = path > 0;
        DYNAMIC_SECTION("L " << L << " S " << S << " offset " << off << " Hkv " << Hkv
                             << (tiled ? " tiled, schedule " : " weights") << (tiled ? std::to_string(path) : "")) {
          Tensor q = rnd({2, 2, L, 4}, kFloat64, true), k = rnd({2, Hkv, S, 4}, kFloat64, true),
                 v = rnd({2, Hkv, S, 4}, kFloat64, true);
          Tensor r = rnd({2, 2, L, 4});
          Tensor o = with_path(tiled, [&] { return fused_offset_causal(q, k, v, off); });
          Tensor ref_q = q.detach().clone().requires_grad_(), ref_k = k.detach().clone().requires_grad_(),
                 ref_v = v.detach().clone().requires_grad_();
          Tensor ref = composed_offset_causal(ref_q, repeat_heads(ref_k, 2 / Hkv), repeat_heads(ref_v, 2 / Hkv), off);
          CHECK(check_close(o, ref, 1e-12, 1e-12, "out"));
          with_path(tiled, [&] {
            sum(mul(o, r)).backward();
            return 0;
          }, path);
          sum(mul(ref, r)).backward();
          CHECK(check_close(q.grad(), ref_q.grad(), 1e-11, 1e-12, "gq"));
          CHECK(check_close(k.grad(), ref_k.grad(), 1e-11, 1e-12, "gk"));
          CHECK(check_close(v.grad(), ref_v.grad(), 1e-11, 1e-12, "gv"));
        }
      }
    }
  }
}

TEST_CASE("Grouped-query sdpa == repeated K/V heads, gradcheck, thread-invariant, no K/V copy", "[gqa]") {
  manual_seed(5);
  for (int64_t Hkv : {int64_t(2), int64_t(1)}) {
    for (bool tiled : {false, true}) {
      DYNAMIC_SECTION("Hkv " << Hkv << (tiled ? " tiled" : " weights")) {
        const int64_t B = 2, H = 4, L = 5, S = 6, E = 3, G = H / Hkv;
        Tensor q = rnd({B, H, L, E}, kFloat64, true), k = rnd({B, Hkv, S, E}, kFloat64, true),
               v = rnd({B, Hkv, S, E}, kFloat64, true);
        Tensor mask = to_bool(gt(Tensor::rand({L, S}, kFloat64), Tensor::full({}, 0.3, kFloat64)));
        for (bool causal : {false, true}) {
          auto fn = [&](const std::vector<Tensor>& in) {
            return with_path(tiled, [&] { return scaled_dot_product_attention(in[0], in[1], in[2], mask, causal); });
          };
          Tensor o = fn({q, k, v});
          Tensor ref = scaled_dot_product_attention(q, repeat_heads(k, G), repeat_heads(v, G), mask, causal);
          CHECK(check_close(o, ref, 1e-12, 1e-13, "out"));
          auto gc = testing::gradcheck(fn, {q, k, v});
          INFO(gc.message);
          CHECK(gc.ok);
        }
        // the same bits for 1 and 2 threads and both backward schedules of the tiled path (the
        // K/V gradient sums over the group's heads inside one task)
        auto grads = [&](int threads, int schedule) {
          return with_threads(threads, [&] {
            Tensor qq = q.detach().clone().requires_grad_(), kk = k.detach().clone().requires_grad_(),
                   vv = v.detach().clone().requires_grad_();
            with_path(tiled, [&] {
              sum(sin(scaled_dot_product_attention(qq, kk, vv, Tensor(), true))).backward();
              return 0;
            }, schedule);
            return std::vector<std::vector<double>>{qq.grad().to_vector<double>(), kk.grad().to_vector<double>(),
                                                    vv.grad().to_vector<double>()};
          });
        };
        const auto g1 = grads(1, 1);
        CHECK(g1 == grads(2, 1));
        CHECK(g1 == grads(2, 2));
        CHECK(g1 == grads(1, 2));
      }
    }
  }
  SECTION("memory: K/V stay [B, Hkv, S, E], nothing of [B, H, S, E] is allocated") {
    const int64_t B = 1, H = 16, Hkv = 2, L = 1, S = 4096, E = 64;
    Tensor q = rnd({B, H, L, E}, kFloat32), k = rnd({B, Hkv, S, E}, kFloat32), v = rnd({B, Hkv, S, E}, kFloat32);
    const int64_t expanded = B * H * S * E * 4;  // bytes of one K repeated to every head
    NoGradGuard ng;
    auto peak_of = [&](const std::function<Tensor()>& f) {
      const int64_t before = memory_stats().current_bytes;
      reset_peak_memory();
      Tensor o = f();
      return memory_stats().peak_bytes - before;
    };
    const int64_t gqa = peak_of([&] { return scaled_dot_product_attention(q, k, v); });
    const int64_t copied = peak_of([&] {  // what repeating the heads first would cost
      return scaled_dot_product_attention(q, repeat_heads(k, H / Hkv), repeat_heads(v, H / Hkv));
    });
    INFO("GQA peak " << gqa << " bytes, with repeated K/V " << copied << ", one repeated K " << expanded);
    CHECK(gqa < expanded / 8);  // output + weights [B, H, 1, S] only
    CHECK(gqa >= B * H * L * E * 4);
    CHECK(copied >= 2 * expanded);
  }
}

TEST_CASE("MultiheadAttention num_kv_heads == MHA with K/V projections repeated per group", "[gqa][mha]") {
  manual_seed(3);
  const int64_t E = 12, H = 6, Hkv = 2, G = H / Hkv, Dh = E / H;
  nn::MultiheadAttention gqa(nn::MultiheadAttentionOptions(E, H).num_kv_heads(Hkv).batch_first(true));
  gqa.to(kFloat64);
  CHECK(gqa.in_proj_weight.shape() == Shape{E + 2 * Hkv * Dh, E});
  CHECK(gqa.in_proj_bias.shape() == Shape{E + 2 * Hkv * Dh});
  nn::MultiheadAttention full(nn::MultiheadAttentionOptions(E, H).batch_first(true));
  full.to(kFloat64);
  {
    NoGradGuard ng;
    Tensor(gqa.in_proj_bias).copy_(Tensor::randn({E + 2 * Hkv * Dh}, kFloat64));
    // rows of the full projection: q as is, k/v head h = kv head h / G
    const auto w = gqa.in_proj_weight.to_vector<double>(), b = gqa.in_proj_bias.to_vector<double>();
    std::vector<double> fw(size_t(3 * E * E)), fb(size_t(3 * E));
    for (int64_t r = 0; r < 3 * E; ++r) {
      int64_t src = r;
      if (r >= E) {
        const int64_t part = (r - E) / E, h = ((r - E) % E) / Dh, c = (r - E) % Dh;
        src = E + part * Hkv * Dh + (h / G) * Dh + c;
      }
      for (int64_t c = 0; c < E; ++c) fw[size_t(r * E + c)] = w[size_t(src * E + c)];
      fb[size_t(r)] = b[size_t(src)];
    }
    Tensor(full.in_proj_weight).copy_(Tensor::from_vector(fw, {3 * E, E}));
    Tensor(full.in_proj_bias).copy_(Tensor::from_vector(fb, {3 * E}));
    Tensor(full.out_proj.weight).copy_(gqa.out_proj.weight);
    Tensor(full.out_proj.bias).copy_(Tensor::randn({E}, kFloat64));
    Tensor(gqa.out_proj.bias).copy_(full.out_proj.bias);
  }
  Tensor x = rnd({2, 5, E}, kFloat64, true), x2 = x.detach().clone().requires_grad_();
  Tensor mem = rnd({2, 7, E}, kFloat64, true), mem2 = mem.detach().clone().requires_grad_();
  // self-attention (one packed GEMM) and cross-attention (key is value)
  Tensor a = gqa.forward_ex(x, x, x, Tensor(), false, Tensor(), true, true).first;
  Tensor a2 = full.forward_ex(x2, x2, x2, Tensor(), false, Tensor(), true, true).first;
  Tensor c = gqa.forward(a, mem, mem).first, c2 = full.forward(a2, mem2, mem2).first;
  CHECK(check_close(c, c2, 1e-12, 1e-13, "out"));
  sum(sin(c)).backward();
  sum(sin(c2)).backward();
  CHECK(check_close(x.grad(), x2.grad(), 1e-11, 1e-12, "gx"));
  CHECK(check_close(mem.grad(), mem2.grad(), 1e-11, 1e-12, "gmem"));
  CHECK_THROWS_WITH(nn::MultiheadAttention(nn::MultiheadAttentionOptions(12, 6).num_kv_heads(4)),
                    Catch::Contains("num_kv_heads 4") && Catch::Contains("6"));
}

TEST_CASE("KV cache: decoding step by step == the full causal forward", "[kvcache]") {
  manual_seed(7);
  for (bool nf : {false, true}) {
    for (int64_t kv : {int64_t(0), int64_t(2)}) {  // 0: one K/V head per head; 2: grouped-query
      DYNAMIC_SECTION((nf ? "pre-norm" : "post-norm") << " num_kv_heads " << kv) {
        const int64_t E = 16, H = 4, B = 2, T = 9, S = 6;
        auto lo = nn::TransformerDecoderLayerOptions(E, H).dim_feedforward(32).dropout(0.1).norm_first(nf)
                      .num_kv_heads(kv);
        nn::TransformerDecoder dec(lo, 2, true);
        CHECK(dec.layer(0).multihead_attn.num_kv_heads() == (kv ? kv : H));
        dec.eval();
        Tensor tgt = Tensor::randn({B, T, E}), mem = Tensor::randn({B, S, E});
        Tensor mkpm = Tensor::zeros({B, S}, kBool);
        mkpm.set({1, 5}, 1.0);
        NoGradGuard ng;
        const Tensor full = dec.forward(tgt, mem, Tensor(), Tensor(), Tensor(), mkpm, /*tgt_is_causal=*/true);
        nn::TransformerDecoderCache cache;
        std::vector<Tensor> rows;
        // pieces of 1, 3, 1, 4 positions
        int64_t t0 = 0;
        for (int64_t n : {1, 3, 1, 4}) {
          rows.push_back(dec.forward_step(narrow(tgt, 1, t0, n), mem, cache, mkpm));
          t0 += n;
          CHECK(cache.size() == t0);
        }
        CHECK(check_close(cat(rows, 1), full, 1e-5, 1e-5, "cached decoding"));
        // float64: the same to 1e-12
        dec.to(kFloat64);
        Tensor tgt64 = tgt.to(kFloat64), mem64 = mem.to(kFloat64);
        const Tensor full64 = dec.forward(tgt64, mem64, Tensor(), Tensor(), Tensor(), mkpm, true);
        cache.clear();
        rows.clear();
        for (int64_t t = 0; t < T; ++t) rows.push_back(dec.forward_step(narrow(tgt64, 1, t, 1), mem64, cache, mkpm));
        CHECK(check_close(cat(rows, 1), full64, 1e-12, 1e-12, "cached decoding (float64)"));
      }
    }
  }
}

TEST_CASE("MultiheadAttention::forward_cached: pieces == causal forward, GQA, sequence first; errors", "[kvcache][mha]") {
  manual_seed(9);
  for (bool bf : {true, false}) {
    for (int64_t Hkv : {int64_t(4), int64_t(2), int64_t(1)}) {
      DYNAMIC_SECTION((bf ? "batch first" : "sequence first") << " Hkv " << Hkv) {
        const int64_t E = 8, H = 4, B = 3, T = 40;
        nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(E, H).num_kv_heads(Hkv).batch_first(bf));
        mha.to(kFloat64);
        Tensor x = Tensor::randn(bf ? Shape{B, T, E} : Shape{T, B, E}, kFloat64);
        NoGradGuard ng;
        auto [full, wfull] = mha.forward_ex(x, x, x, Tensor(), true, Tensor(), true, true);
        nn::KVCache cache;
        std::vector<Tensor> rows;
        const int64_t td = bf ? 1 : 0;
        int64_t t0 = 0;
        for (int64_t n : {7, 1, 1, 16, 15}) {  // crosses the initial capacity 16 and grows twice
          auto [o, w] = mha.forward_cached(narrow(x, td, t0, n), cache, true, Tensor(), true);
          t0 += n;
          // weights [B, n, t0] are the rows t0 - n .. t0 of the full causal weights
          CHECK(check_close(w, narrow(narrow(wfull, 1, t0 - n, n), 2, 0, t0), 1e-12, 1e-13, "weights"));
          rows.push_back(o);
        }
        CHECK(cache.size() == T);
        CHECK(cache.capacity() >= T);
        CHECK(cache.keys().shape() == Shape{B, T, Hkv * 2});
        CHECK(check_close(cat(rows, td), full, 1e-12, 1e-13, "cached == full"));
      }
    }
  }
  nn::MultiheadAttention mha(nn::MultiheadAttentionOptions(8, 2).batch_first(true));
  nn::KVCache cache;
  CHECK_THROWS_WITH(mha.forward_cached(Tensor::randn({1, 1, 8}), cache), Catch::Contains("NoGradGuard"));
  NoGradGuard ng;
  mha.forward_cached(Tensor::randn({2, 1, 8}), cache);
  CHECK_THROWS_WITH(mha.forward_cached(Tensor::randn({3, 1, 8}), cache),
                    Catch::Contains("KVCache") && Catch::Contains("[3, 1, 24]") && Catch::Contains("[2, 16, 8]"));
  CHECK_THROWS_WITH(mha.forward_cached(Tensor::randn({2, 1, 6}), cache), Catch::Contains("[2, 1, 6]"));
  nn::KVCache mc;
  CHECK_THROWS_WITH(mha.forward_memory_cached(Tensor::randn({2, 1, 8}), Tensor::randn({3, 5, 8}), mc),
                    Catch::Contains("memory [3, 5, 8]"));
}
