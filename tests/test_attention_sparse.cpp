// Block-sparse attention (strided, dilated sliding window, global + window, BigBird) and linear
// attention's key padding mask and dropout: PyTorch goldens (tests/fixtures/gen_attention_sparse.py),
// gradcheck, equality with dense attention under the pattern's mask, thread independence,
// memory that grows with the kept blocks, modules, errors.
#include <attn/nn/attention/efficient.hpp>
#include <cmath>
#include <limits>
#include "test_util.hpp"

using namespace attn;

namespace {
Tensor leaf(const Tensor& t) { return t.clone().detach().requires_grad_(); }
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Runs fwd + bwd (loss = sum(out * R)) and returns {out, gq, gk, gv}.
template <class F>
std::vector<Tensor> run_fb(F&& f, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& R) {
  Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0);
  Tensor o = f(q, k, v);
  sum(o * R).backward();
  return {o, q.grad(), k.grad(), v.grad()};
}

void check_all(const std::vector<Tensor>& a, const std::vector<Tensor>& b, double rtol, double atol,
               const std::string& what) {
  const char* names[] = {"out", "g_q", "g_k", "g_v"};
  for (size_t i = 0; i < a.size(); ++i) CHECK(check_close(a[i], b[i], rtol, atol, what + " " + names[i]));
}
}  // namespace

// ---------------------------------------------------------------- block-sparse attention
TEST_CASE("block_sparse_attention matches PyTorch dense attention under the pattern mask", "[block_sparse]") {
  auto f = load_fixture("attnref_sparse.safetensors");
  const int64_t L = 27, bl = 4;
  const std::vector<std::pair<std::string, BlockSparseLayout>> cases = {
      {"window", BlockSparseLayout::sliding_window(L, bl, 1, 1)},
      {"dilated", BlockSparseLayout::sliding_window(L, bl, 1, 2)},
      {"strided", BlockSparseLayout::strided(L, bl, 1, 2)},
      {"global", BlockSparseLayout::global_window(L, bl, 1, 1)},
      {"causal", BlockSparseLayout::sliding_window(L, bl, 1, 1, true)},
      {"strided_causal", BlockSparseLayout::strided(L, bl, 0, 3, true)},
  };
  for (const auto& entry : cases) {
    const std::string& c = entry.first;
    const auto& lay = entry.second;  // a named reference: lambdas capture it (not a binding, for Clang < 16)
    INFO(c);
    CHECK(lay.to_mask().to_vector<bool>() == f.at(c + "_mask").to_vector<bool>());
    Tensor kpm = f.contains(c + "_kpm") ? f.at(c + "_kpm") : Tensor();
    auto r = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) {
      return block_sparse_attention(q, k, v, lay, kNaN, kpm);
    }, f.at(c + "_q"), f.at(c + "_k"), f.at(c + "_v"), f.at(c + "_R"));
    check_all(r, {f.at(c + "_out"), f.at(c + "_g_q"), f.at(c + "_g_k"), f.at(c + "_g_v")}, 1e-9, 1e-10, c);
  }
}

TEST_CASE("block_sparse_attention gradcheck (partial last block, causal, padding, L != S)",
          "[block_sparse][gradcheck]") {
  Tensor kpm = Tensor::from_vector(std::vector<bool>{false, false, true, false, false, false, false,  //
                                                     false, false, false, false, false, true, true},
                                   {2, 7});
  struct Case {
    const char* name;
    BlockSparseLayout lay;
    Tensor mask;
    int64_t S;
  };
  std::vector<Case> cases = {
      {"window", BlockSparseLayout::sliding_window(7, 3, 1), Tensor(), 7},
      {"causal+pad", BlockSparseLayout::strided(7, 2, 1, 2, true), kpm, 7},
      {"from_rows L!=S", BlockSparseLayout::from_rows(5, 7, 2, {{0, 3}, {1}, {2, 0}}), Tensor(), 7},
  };
  for (auto& c : cases) {
    Tensor q = Tensor::randn({2, c.lay.L(), 3}, kFloat64).requires_grad_(),
           k = Tensor::randn({2, c.S, 3}, kFloat64).requires_grad_(),
           v = Tensor::randn({2, c.S, 2}, kFloat64).requires_grad_();
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) { return block_sparse_attention(in[0], in[1], in[2], c.lay, kNaN, c.mask); },
        {q, k, v});
    INFO(c.name << ": " << r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("block_sparse_attention == sdpa with layout.to_mask() (float32/float64, BigBird)", "[block_sparse]") {
  Generator gen(7);
  const int64_t L = 203;  // not a multiple of the block
  const std::vector<BlockSparseLayout> lays = {
      BlockSparseLayout::bigbird(L, 16, 1, 1, 2, &gen),
      BlockSparseLayout::bigbird(L, 16, 1, 1, 2, &gen, true),
      BlockSparseLayout::sliding_window(L, 16, 2, 3),
  };
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor q = Tensor::randn({2, 3, L, 8}, dt), k = Tensor::randn({2, 3, L, 8}, dt), v = Tensor::randn({2, 3, L, 6}, dt),
           R = Tensor::randn({2, 3, L, 6}, dt);
    for (size_t i = 0; i < lays.size(); ++i) {
      const auto& lay = lays[i];
      auto a = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) { return block_sparse_attention(q, k, v, lay); },
                      q, k, v, R);
      Tensor mask = lay.to_mask();
      auto b = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) {
        return scaled_dot_product_attention(q, k, v, mask);
      }, q, k, v, R);
      const bool f64 = dt == kFloat64;
      check_all(a, b, f64 ? 1e-10 : 2e-4, f64 ? 1e-12 : 2e-5, "layout " + std::to_string(i) + (f64 ? " f64" : " f32"));
    }
  }
}

TEST_CASE("block_sparse_attention: window 0 == block_local_attention", "[block_sparse]") {
  Tensor q = Tensor::randn({2, 50, 4}, kFloat64), k = Tensor::randn({2, 50, 4}, kFloat64),
         v = Tensor::randn({2, 50, 3}, kFloat64), R = Tensor::randn({2, 50, 3}, kFloat64);
  for (bool causal : {false, true}) {
    auto lay = BlockSparseLayout::sliding_window(50, 8, 0, 1, causal);
    CHECK(lay.nnz() == 7);
    auto a = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) { return block_sparse_attention(q, k, v, lay); },
                    q, k, v, R);
    auto b = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) {
      return block_local_attention(q, k, v, 8, causal).first;
    }, q, k, v, R);
    check_all(a, b, 1e-12, 1e-13, causal ? "causal" : "non-causal");
  }
}

TEST_CASE("block_sparse_attention: bit-identical for 1 and 2 threads", "[block_sparse][threads]") {
  Generator gen(3);
  auto lay = BlockSparseLayout::bigbird(300, 32, 1, 1, 2, &gen);
  Tensor q = Tensor::randn({1, 3, 300, 16}), k = Tensor::randn({1, 3, 300, 16}), v = Tensor::randn({1, 3, 300, 16}),
         R = Tensor::randn({1, 3, 300, 16});
  auto run = [&](int threads) {
    return with_threads(threads, [&] {
      return flat(run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) { return block_sparse_attention(q, k, v, lay); },
                         q, k, v, R));
    });
  };
  CHECK(run(1) == run(2));
}

TEST_CASE("block_sparse_attention: memory grows with the kept blocks, never L x S", "[block_sparse][memory]") {
  // B=1, H=4, L=4096, E=64, block 64, window 1: 190 kept blocks of 64 x 64 per head. Dense
  // weights would be 4 x 4096^2 floats = 256 MiB; the kept blocks' weights (and their gradient)
  // are 4 x 190 x 4096 floats = 12 MiB each.
  const int64_t L = 4096, E = 64, N = 4;
  auto lay = BlockSparseLayout::sliding_window(L, 64, 1);
  REQUIRE(lay.nnz() == 3 * 64 - 2);
  Tensor q = Tensor::randn({1, 4, L, E}).requires_grad_(), k = Tensor::randn({1, 4, L, E}).requires_grad_(),
         v = Tensor::randn({1, 4, L, E}).requires_grad_();
  reset_peak_memory();
  const int64_t base = memory_stats().current_bytes;
  Tensor o = block_sparse_attention(q, k, v, lay);
  sum(o).backward();
  const int64_t peak = memory_stats().peak_bytes - base;
  const int64_t blocks = N * lay.nnz() * 64 * 64 * 4, io = N * L * E * 4;
  INFO("peak " << peak << " bytes, kept-block weights " << blocks << " bytes");
  CHECK(peak <= 2 * blocks + 8 * io);
  CHECK(peak < N * L * L * 4 / 4);  // under a quarter of the dense weights alone (bench: 1/10 at L = 16,384)
  CHECK(lay.density() < 0.05);
}

TEST_CASE("BlockSparseLayout patterns and BigBird's seeded random blocks", "[block_sparse]") {
  auto a = BlockSparseLayout::sliding_window(100, 10, 1, 3);  // blocks qb-3, qb, qb+3
  CHECK(a.num_query_blocks() == 10);
  CHECK(std::vector<int64_t>(a.cols().begin() + a.row_ptr()[4], a.cols().begin() + a.row_ptr()[5]) ==
        std::vector<int64_t>{1, 4, 7});
  auto g = BlockSparseLayout::global_window(100, 10, 0, 2);
  CHECK(g.row_ptr()[1] - g.row_ptr()[0] == 10);  // a global block sees all
  CHECK(std::vector<int64_t>(g.cols().begin() + g.row_ptr()[6], g.cols().begin() + g.row_ptr()[7]) ==
        std::vector<int64_t>{0, 1, 6});
  Generator g1(11), g2(11), g3(12);
  auto r1 = BlockSparseLayout::bigbird(640, 32, 1, 1, 3, &g1), r2 = BlockSparseLayout::bigbird(640, 32, 1, 1, 3, &g2),
       r3 = BlockSparseLayout::bigbird(640, 32, 1, 1, 3, &g3);
  CHECK(r1.cols() == r2.cols());
  CHECK(r1.cols() != r3.cols());
  auto rc = BlockSparseLayout::bigbird(640, 32, 0, 0, 3, &g1, true);
  for (int64_t qb = 0; qb < rc.num_query_blocks(); ++qb)
    for (int64_t e = rc.row_ptr()[size_t(qb)]; e < rc.row_ptr()[size_t(qb + 1)]; ++e) CHECK(rc.cols()[size_t(e)] <= qb);
}

TEST_CASE("nn::BlockSparseAttention: names, shapes, equals the op on its projections", "[block_sparse][nn]") {
  manual_seed(5);
  nn::BlockSparseAttention m(nn::BlockSparseAttentionOptions(8, 2).pattern("bigbird").block(4).window(1).global(1).random(1).seed(9));
  std::vector<std::string> names;
  for (auto& [n, p] : m.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                          "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias"});
  Tensor x = Tensor::randn({2, 30, 8});
  Tensor y = m.forward(x);
  CHECK(y.shape() == Shape{2, 30, 8});
  CHECK(m.forward(x).to_vector<float>() == y.to_vector<float>());  // the random blocks repeat
  auto split = [](const Tensor& t) { return permute(reshape(t, {2, 30, 2, 4}), {0, 2, 1, 3}); };
  Tensor o = block_sparse_attention(split(m.q_proj.forward(x)), split(m.k_proj.forward(x)), split(m.v_proj.forward(x)),
                                    m.options().layout(30));
  Tensor ref = m.out_proj.forward(reshape(permute(o, {0, 2, 1, 3}), {2, 30, 8}));
  CHECK(check_close(y, ref, 1e-6, 1e-6, "module"));
}

TEST_CASE("block_sparse_attention and BlockSparseLayout reject bad calls", "[block_sparse][errors]") {
  auto expect = [](const std::function<void()>& f, const std::string& a, const std::string& b) {
    try {
      f();
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      CHECK_THAT(e.what(), Catch::Contains(a) && Catch::Contains(b));
    }
  };
  auto lay = BlockSparseLayout::sliding_window(16, 4, 1);
  Tensor q = Tensor::randn({2, 16, 4}), v = Tensor::randn({2, 16, 3});
  expect([&] { block_sparse_attention(Tensor::randn({2, 15, 4}), Tensor::randn({2, 15, 4}), Tensor::randn({2, 15, 3}), lay); },
         "block_sparse_attention", "L=16");
  expect([&] { block_sparse_attention(q, Tensor::randn({2, 16, 5}), v, lay); }, "block_sparse_attention", "[2, 16, 5]");
  expect([&] { block_sparse_attention(q, q, Tensor::randn({3, 16, 3}), lay); }, "block_sparse_attention", "[3, 16, 3]");
  expect([&] { block_sparse_attention(q, q, v, lay, kNaN, Tensor::zeros({2, 15}, kBool)); }, "key_padding_mask",
         "[2, 15]");
  expect([&] { block_sparse_attention(q, q.to(kFloat64), v, lay); }, "block_sparse_attention", "float");
  expect([] { BlockSparseLayout::from_rows(8, 8, 4, {{0}, {2}}); }, "BlockSparseLayout", "key block 2");
  expect([] { BlockSparseLayout::from_rows(8, 8, 4, {{0}}); }, "BlockSparseLayout", "1 rows");
  expect([] { BlockSparseLayout::from_rows(8, 6, 4, {{0}, {1}}, true); }, "causal", "S=6");
  expect([] { BlockSparseLayout::sliding_window(8, 0, 1); }, "sliding_window", "block=0");
  expect([] { BlockSparseLayout::strided(8, 2, 1, 0); }, "strided", "stride");
  expect([] { BlockSparseLayout::bigbird(8, 2, 1, 1, -1); }, "bigbird", "random");
  expect([] { nn::BlockSparseAttention(nn::BlockSparseAttentionOptions(8, 2).pattern("spiral")); },
         "BlockSparseAttention", "spiral");
  expect([] { nn::BlockSparseAttention(nn::BlockSparseAttentionOptions(8, 3)); }, "BlockSparseAttention", "8");
}

// ---------------------------------------------------------------- linear attention: padding, dropout, module
TEST_CASE("linear_attention with key_padding_mask matches PyTorch", "[linear_attention]") {
  auto f = load_fixture("attnref_sparse.safetensors");
  for (const std::string c : {"lin_pad", "lin_pad_causal"}) {
    auto r = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) {
      return linear_attention(q, k, v, c == "lin_pad_causal", 1e-6, f.at(c + "_kpm"));
    }, f.at(c + "_q"), f.at(c + "_k"), f.at(c + "_v"), f.at(c + "_R"));
    check_all(r, {f.at(c + "_out"), f.at(c + "_g_q"), f.at(c + "_g_k"), f.at(c + "_g_v")}, 1e-9, 1e-10, c);
  }
}

TEST_CASE("linear_attention dropout == the formula with the drawn key mask; gradcheck", "[linear_attention]") {
  const double p = 0.3;
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    Tensor q0 = Tensor::randn({2, 2, 11, 3}, kFloat64), k0 = Tensor::randn({2, 2, 11, 3}, kFloat64),
           v0 = Tensor::randn({2, 2, 11, 4}, kFloat64), R = Tensor::randn({2, 2, 11, 4}, kFloat64);
    Tensor kpm = Tensor::zeros({2, 11}, kBool);
    kpm.set({1, 9}, 1.0);
    manual_seed(42);
    auto a = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) {
      return linear_attention(q, k, v, causal, 1e-6, kpm, p);
    }, q0, k0, v0, R);
    // The mask as documented: one uniform per (item, key), item by item; kept when >= p.
    manual_seed(42);
    std::vector<double> keep(4 * 11);
    for (auto& x : keep) x = default_generator().uniform() >= p ? 1.0 / (1.0 - p) : 0.0;
    Tensor drop = Tensor::from_vector(keep, {2, 2, 1, 11});
    std::vector<double> live(2 * 11, 1.0);
    live[20] = 0.0;  // key 9 of batch 1 is padded
    Tensor alive = Tensor::from_vector(live, {2, 1, 1, 11});
    auto b = run_fb([&](const Tensor& q, const Tensor& k, const Tensor& v) {
      Tensor w = matmul(elu(q) + 1.0, transpose(elu(k) + 1.0, -2, -1)) * alive;
      if (causal) w = masked_fill(w, logical_not(causal_mask(11)), 0.0);
      w = w / (sum(w, -1, true) + 1e-6);
      return matmul(w * drop, v);
    }, q0, k0, v0, R);
    check_all(a, b, 1e-10, 1e-12, "dropout");
    Tensor q = leaf(q0), k = leaf(k0), v = leaf(v0);
    auto r = testing::gradcheck([&](const std::vector<Tensor>& in) {
      manual_seed(42);
      return linear_attention(in[0], in[1], in[2], causal, 1e-6, kpm, p);
    }, {q, k, v});
    INFO(r.message);
    CHECK(r.ok);
  }
}

TEST_CASE("nn::LinearAttention options: dropout only in training, key padding, errors", "[linear_attention][nn]") {
  manual_seed(1);
  nn::LinearAttention m(nn::LinearAttentionOptions(8, 2).dropout(0.5));
  Tensor x = Tensor::randn({2, 10, 8});
  Tensor kpm = Tensor::zeros({2, 10}, kBool);
  kpm.set({0, 7}, 1.0);
  m.eval();
  Tensor e1 = m.forward(x, x, x, kpm);
  Tensor x2 = x.clone();
  x2.set({0, 7, 0}, 100.0);  // a padded key's values do not matter
  x2.set({0, 7, 3}, -50.0);
  Tensor e2 = m.forward(x, x2, x2, kpm);
  CHECK(check_close(e1, e2, 1e-6, 1e-6, "padded key ignored"));
  m.train();
  manual_seed(3);
  Tensor t1 = m.forward(x, x, x, kpm);
  CHECK(!check_close(t1, e1, 1e-3, 1e-3, "training differs (expected)"));
  std::string msg;
  try {
    nn::LinearAttention bad(nn::LinearAttentionOptions(8, 2).dropout(1.0));
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Catch::Contains("LinearAttention") && Catch::Contains("dropout"));
  try {
    linear_attention(Tensor::randn({2, 4, 3}), Tensor::randn({2, 4, 3}), Tensor::randn({2, 4, 3}), false, 1e-6,
                     Tensor::zeros({3, 4}, kBool));
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(e.what(), Catch::Contains("linear_attention") && Catch::Contains("[3, 4]"));
  }
}
