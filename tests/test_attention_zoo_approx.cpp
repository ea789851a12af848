// The approximate long-sequence attention variants: ProbSparse (Informer), Performer (FAVOR+),
// LSH (Reformer), Linformer. Each: a reference built independently (composed attn ops or plain
// loops, gradients by autograd through the composition), gradcheck in double, float vs double,
// bit-identical results for 1 and 2 threads, the nn module, bad calls, and float64 goldens from
// the PyTorch versions (tests/fixtures/gen_attention_zoo_approx.py).
#include <attn/attn.hpp>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include "test_util.hpp"

using namespace attn;

namespace {
const double kInf = std::numeric_limits<double>::infinity();
Tensor rnd(const Shape& s, double scale = 1.0) { return (Tensor::randn(s, kFloat64) * scale).detach().requires_grad_(); }

// Forward value and the gradients of sum(out * r) for each input.
std::vector<Tensor> value_and_grads(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                    const std::vector<Tensor>& in, const Tensor& r) {
  for (const Tensor& t : in) const_cast<Tensor&>(t).zero_grad();
  Tensor out = f(in);
  sum(out * r).backward();
  std::vector<Tensor> res{out.detach()};
  for (const Tensor& t : in) res.push_back(t.grad().clone());
  return res;
}

void require_same(const std::vector<Tensor>& a, const std::vector<Tensor>& b, double rtol, double atol) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(check_close(a[i], b[i], rtol, atol, "tensor " + std::to_string(i)));
}

bool bits_equal(const Tensor& a, const Tensor& b) { return a.to_vector<double>() == b.to_vector<double>(); }

Tensor bool_mask(const std::vector<bool>& m, const Shape& s) { return Tensor::from_vector(m, s); }

// ---------------------------------------------------------------- ProbSparse reference
// The published algorithm composed from dense ops: M_i from the sampled scores (loops), the
// top rows take exact attention (dense SDPA), the others mean(V) (causal: running mean).
Tensor probsparse_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& samp, int64_t n_top,
                            bool causal) {
  const int64_t L = q.size(-2), S = k.size(-2), E = q.size(-1), U = samp.size(1), N = q.numel() / (L * E);
  const auto Q = q.to_vector<double>(), K = k.to_vector<double>();
  const auto sp = samp.to_vector<int64_t>();
  std::vector<bool> sel(size_t(N * L), false);
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> M(static_cast<size_t>(L));
    for (int64_t i = 0; i < L; ++i) {
      double mx = -kInf, s = 0;
      for (int64_t u = 0; u < U; ++u) {
        double d = 0;
        for (int64_t e = 0; e < E; ++e) d += Q[size_t((n * L + i) * E + e)] * K[size_t((n * S + sp[size_t(i * U + u)]) * E + e)];
        mx = std::max(mx, d);
        s += d;
      }
      M[size_t(i)] = mx - s / double(U);
    }
    std::vector<int64_t> idx(static_cast<size_t>(L));
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return M[size_t(a)] > M[size_t(b)]; });
    for (int64_t t = 0; t < n_top; ++t) sel[size_t(n * L + idx[size_t(t)])] = true;
  }
  Shape ms = q.shape();
  ms.back() = 1;
  Tensor dense = scaled_dot_product_attention(q, k, v, Tensor(), causal);
  Tensor lazy;
  if (!causal) {
    lazy = mean(v, -2, true);
  } else {
    std::vector<double> w(size_t(L * L), 0.0);
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j <= i; ++j) w[size_t(i * L + j)] = 1.0 / double(i + 1);
    lazy = matmul(Tensor::from_vector(w, {L, L}), v);
  }
  return where(bool_mask(sel, ms), dense, lazy);
}

// ---------------------------------------------------------------- Performer reference
// out_i = sum_j phi(q_i).phi(k_j) v_j / (sum_j phi(q_i).phi(k_j) + eps), phi without stabiliser
// (it cancels), written as loops in double.
std::vector<double> performer_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w,
                                        bool causal, double eps) {
  const int64_t L = q.size(-2), S = k.size(-2), E = q.size(-1), Ev = v.size(-1), m = w.size(0);
  const int64_t N = q.numel() / (L * E);
  const auto Q = q.to_vector<double>(), K = k.to_vector<double>(), V = v.to_vector<double>(),
             Wf = w.to_vector<double>();
  auto phi = [&](const double* x) {
    std::vector<double> f(static_cast<size_t>(m));
    const double s = std::pow(double(E), -0.25);
    double sq = 0;
    for (int64_t e = 0; e < E; ++e) sq += (x[e] * s) * (x[e] * s);
    for (int64_t r = 0; r < m; ++r) {
      double d = 0;
      for (int64_t e = 0; e < E; ++e) d += Wf[size_t(r * E + e)] * x[e] * s;
      f[size_t(r)] = std::exp(d - sq / 2) / std::sqrt(double(m));
    }
    return f;
  };
  std::vector<double> out(size_t(N * L * Ev), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < L; ++i) {
      const auto fq = phi(&Q[size_t((n * L + i) * E)]);
      double den = eps;
      for (int64_t j = 0; j < (causal ? i + 1 : S); ++j) {
        const auto fk = phi(&K[size_t((n * S + j) * E)]);
        double a = 0;
        for (int64_t r = 0; r < m; ++r) a += fq[size_t(r)] * fk[size_t(r)];
        den += a;
        for (int64_t d = 0; d < Ev; ++d) out[size_t((n * L + i) * Ev + d)] += a * V[size_t((n * S + j) * Ev + d)];
      }
      for (int64_t d = 0; d < Ev; ++d) out[size_t((n * L + i) * Ev + d)] /= den;
    }
  return out;
}

// ---------------------------------------------------------------- LSH reference
// Buckets, sort and chunks recomputed with loops; each round is dense attention with its
// allowed-pair mask (composed ops), rounds combined by softmax over their log-sum-exps.
Tensor lsh_reference(const Tensor& x, const Tensor& v, const Tensor& rot, int64_t chunk, bool causal) {
  const int64_t L = x.size(-2), E = x.size(-1), N = x.numel() / (L * E), nh = rot.size(0), nb2 = rot.size(2);
  const auto X = x.to_vector<double>(), R = rot.to_vector<double>();
  const double scale = 1.0 / std::sqrt(double(E));
  Tensor kn = x / sqrt(sum(x * x, -1, true));
  Tensor s = matmul(x, transpose(kn, -2, -1)) * scale;  // [..., L, L]
  std::vector<Tensor> lses, outs;
  for (int64_t r = 0; r < nh; ++r) {
    std::vector<bool> allowed(size_t(N * L * L), false);
    for (int64_t n = 0; n < N; ++n) {
      std::vector<int64_t> bucket(static_cast<size_t>(L));
      for (int64_t i = 0; i < L; ++i) {
        double best = -kInf;
        for (int64_t b = 0; b < 2 * nb2; ++b) {
          double d = 0;
          for (int64_t e = 0; e < E; ++e) d += X[size_t((n * L + i) * E + e)] * R[size_t((r * E + e) * nb2 + b % nb2)];
          if (b >= nb2) d = -d;
          if (d > best) best = d, bucket[size_t(i)] = b;
        }
      }
      std::vector<int64_t> order(static_cast<size_t>(L));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return bucket[size_t(a)] < bucket[size_t(b)]; });
      const int64_t c = std::min(chunk, L), nc = (L + c - 1) / c;
      std::vector<int64_t> chunk_of(static_cast<size_t>(L));
      for (int64_t t = 0; t < L; ++t) chunk_of[size_t(order[size_t(t)])] = t / c;
      for (int64_t i = 0; i < L; ++i) {
        const int64_t a = chunk_of[size_t(i)];
        bool any = false;
        auto ok = [&](int64_t j) {
          const int64_t b = chunk_of[size_t(j)];
          const bool near = b == a || (nc > 1 && b == (a + nc - 1) % nc);
          return near && j != i && (!causal || j <= i);
        };
        for (int64_t j = 0; j < L; ++j) any = any || ok(j);
        for (int64_t j = 0; j < L; ++j) allowed[size_t((n * L + i) * L + j)] = any ? ok(j) : j == i;
      }
    }
    Shape ms = s.shape();
    Tensor blocked = logical_not(bool_mask(allowed, ms));
    Tensor sr = masked_fill(s, blocked, -kInf);
    lses.push_back(logsumexp(sr, -1, true));
    outs.push_back(matmul(softmax(sr, -1), v));
  }
  Tensor w = softmax(stack(lses, 0), 0);  // [nh, ..., L, 1]
  return sum(mul(w, stack(outs, 0)), 0);
}

// ---------------------------------------------------------------- Linformer reference
Tensor linformer_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e, const Tensor& f) {
  Tensor kp = matmul(e, k), vp = matmul(f, v);
  return matmul(softmax(matmul(q, transpose(kp, -2, -1)) * (1.0 / std::sqrt(double(q.size(-1)))), -1), vp);
}
}  // namespace

// ================================================================ ProbSparse
TEST_CASE("probsparse: equals the composed published algorithm, forward and gradients", "[zoo][probsparse]") {
  manual_seed(11);
  for (bool causal : {false, true}) {
    const int64_t L = 14, E = 5, Ev = 3;
    Tensor q = rnd({2, 2, L, E}), k = rnd({2, 2, L, E}), v = rnd({2, 2, L, Ev}), r = Tensor::randn({2, 2, L, Ev}, kFloat64);
    Generator gen(3);
    const int64_t n_top = probsparse_top_count(L, 2);  // 2 * ceil(ln 14) = 6 of 14
    REQUIRE(n_top == 6);
    Tensor samp = probsparse_sample_keys(L, L, 2, gen);
    REQUIRE(samp.shape() == Shape{L, 6});
    auto got = value_and_grads([&](const std::vector<Tensor>& in) {
      return probsparse_attention(in[0], in[1], in[2], samp, n_top, causal); }, {q, k, v}, r);
    auto ref = value_and_grads([&](const std::vector<Tensor>& in) {
      return probsparse_reference(in[0], in[1], in[2], samp, n_top, causal); }, {q, k, v}, r);
    INFO("causal " << causal);
    require_same(got, ref, 1e-10, 1e-12);
  }
}

TEST_CASE("probsparse: all queries selected is exact attention; draws repeat with the seed", "[zoo][probsparse]") {
  manual_seed(5);
  Tensor q = rnd({1, 3, 6, 4}), k = rnd({1, 3, 9, 4}), v = rnd({1, 3, 9, 2});
  Generator g1(9), g2(9);
  Tensor s1 = probsparse_sample_keys(6, 9, 5, g1), s2 = probsparse_sample_keys(6, 9, 5, g2);
  CHECK(bits_equal(s1, s2));
  CHECK(check_close(probsparse_attention(q, k, v, s1, 6), scaled_dot_product_attention(q, k, v), 1e-12, 1e-13));
  Generator g3(9), g4(9);
  CHECK(bits_equal(probsparse_attention(q, k, v, 1, false, g3), probsparse_attention(q, k, v, 1, false, g4)));
}

TEST_CASE("probsparse: gradcheck in double", "[zoo][probsparse][gradcheck]") {
  manual_seed(2);
  Generator gen(4);
  Tensor samp = probsparse_sample_keys(7, 7, 1, gen);
  for (bool causal : {false, true}) {
    Tensor q = rnd({1, 2, 7, 3}), k = rnd({1, 2, 7, 3}), v = rnd({1, 2, 7, 2});
    auto res = testing::gradcheck([&](const std::vector<Tensor>& in) {
      return probsparse_attention(in[0], in[1], in[2], samp, 3, causal); }, {q, k, v});
    INFO(res.message);
    CHECK(res.ok);
  }
}

// ================================================================ Performer
TEST_CASE("performer: equals the exact FAVOR+ formula with fixed features", "[zoo][performer]") {
  manual_seed(21);
  Generator gen(8);
  Tensor w = orthogonal_random_features(12, 5, gen, kFloat64);
  for (bool causal : {false, true})
    for (int64_t chunk : {0, 3, 4}) {
      Tensor q = rnd({2, 2, 10, 5}, 0.7), k = rnd({2, 2, 10, 5}, 0.7), v = rnd({2, 2, 10, 3});
      // eps = 0: the stabilisers cancel exactly, so the unstabilised formula is the reference.
      Tensor out = performer_attention(q, k, v, w, causal, 0.0, chunk);
      INFO("causal " << causal << " chunk " << chunk);
      CHECK(check_close(out, Tensor::from_vector(performer_reference(q, k, v, w, causal, 0.0), out.shape()), 1e-9,
                        1e-11));
    }
}

TEST_CASE("performer: orthogonal features are orthogonal within a block and approximate softmax attention",
          "[zoo][performer]") {
  Generator gen(1);
  Tensor w = orthogonal_random_features(8, 8, gen, kFloat64);
  const auto W = w.to_vector<double>();
  for (int a = 0; a < 8; ++a)
    for (int b = 0; b < a; ++b) {
      double d = 0;
      for (int e = 0; e < 8; ++e) d += W[size_t(a * 8 + e)] * W[size_t(b * 8 + e)];
      CHECK(std::abs(d) < 1e-9);
    }
  // Many features: close to exact softmax attention (Monte Carlo error ~ 1/sqrt(m)).
  manual_seed(3);
  Tensor q = Tensor::randn({1, 1, 32, 8}, kFloat64) * 0.5, k = Tensor::randn({1, 1, 32, 8}, kFloat64) * 0.5,
         v = Tensor::randn({1, 1, 32, 4}, kFloat64);
  Tensor exact = scaled_dot_product_attention(q, k, v);
  double err_small = 0, err_big = 0;
  for (int64_t m : {16, 4096}) {
    Generator g(m);
    Tensor approx = performer_attention(q, k, v, orthogonal_random_features(m, 8, g, kFloat64));
    const double e = max(abs(approx - exact)).item();
    (m == 16 ? err_small : err_big) = e;
  }
  INFO("max error with 16 features " << err_small << ", with 4096 " << err_big);
  CHECK(err_big < 0.05);
  CHECK(err_big < err_small);
}

TEST_CASE("performer: gradcheck in double, non-causal and causal (chunked)", "[zoo][performer][gradcheck]") {
  manual_seed(4);
  Generator gen(2);
  // m = 6, E = 3: scalar tails only; m = 21, E = 9: the vector reductions (8 doubles) and their tails
  for (auto [m, E] : {std::pair<int64_t, int64_t>{6, 3}, {21, 9}}) {
    Tensor w = orthogonal_random_features(m, E, gen, kFloat64);
    for (bool causal : {false, true}) {
      Tensor q = rnd({1, 2, 5, E}), k = rnd({1, 2, 5, E}), v = rnd({1, 2, 5, 2});
      auto res = testing::gradcheck([&](const std::vector<Tensor>& in) {
        return performer_attention(in[0], in[1], in[2], w, causal, 1e-6, 2); }, {q, k, v});
      INFO("m " << m << " causal " << causal << ": " << res.message);
      CHECK(res.ok);
    }
  }
}

TEST_CASE("performer: float agrees with double, forward and backward", "[zoo][performer]") {
  manual_seed(5);
  Generator gen(3);
  const Tensor w = orthogonal_random_features(40, 16, gen, kFloat64);
  const Tensor q = rnd({1, 2, 33, 16}, 0.5), k = rnd({1, 2, 33, 16}, 0.5), v = rnd({1, 2, 33, 7}),
               r = rnd({1, 2, 33, 7});
  for (bool causal : {false, true}) {
    std::vector<Tensor> outs, grads;
    for (DType dt : {kFloat64, kFloat32}) {
      Tensor a = q.to(dt).detach().requires_grad_(), b = k.to(dt).detach().requires_grad_(),
             c = v.to(dt).detach().requires_grad_();
      Tensor o = performer_attention(a, b, c, w.to(dt), causal, 1e-6, 8);
      sum(o * r.to(dt)).backward();
      outs.push_back(o.detach().to(kFloat64));
      for (const Tensor& t : {a, b, c}) grads.push_back(t.grad().to(kFloat64));
    }
    INFO("causal " << causal);
    CHECK(check_close(outs[1], outs[0], 1e-4, 1e-5, "out"));
    for (int i = 0; i < 3; ++i) CHECK(check_close(grads[size_t(3 + i)], grads[size_t(i)], 1e-3, 1e-4, "grad"));
  }
}

// ================================================================ LSH
TEST_CASE("lsh: equals the composed Reformer algorithm, forward and gradients", "[zoo][lsh]") {
  manual_seed(31);
  for (bool causal : {false, true})
    for (int64_t chunk : {4, 5, 7, 16}) {  // 4, 3, 2 and 1 chunks
      const int64_t L = 13, E = 6, Ev = 3;
      Tensor x = rnd({2, 2, L, E}), v = rnd({2, 2, L, Ev}), r = Tensor::randn({2, 2, L, Ev}, kFloat64);
      Generator gen(chunk);
      Tensor rot = lsh_random_rotations(E, 3, 4, gen, kFloat64);
      auto got = value_and_grads([&](const std::vector<Tensor>& in) {
        return lsh_attention(in[0], in[1], rot, chunk, causal); }, {x, v}, r);
      auto ref = value_and_grads([&](const std::vector<Tensor>& in) {
        return lsh_reference(in[0], in[1], rot, chunk, causal); }, {x, v}, r);
      INFO("causal " << causal << " chunk " << chunk);
      require_same(got, ref, 1e-9, 1e-11);
    }
}

TEST_CASE("lsh: gradcheck in double", "[zoo][lsh][gradcheck]") {
  manual_seed(6);
  Generator gen(5);
  Tensor rot = lsh_random_rotations(4, 2, 4, gen, kFloat64);
  for (bool causal : {false, true}) {
    Tensor x = rnd({1, 2, 9, 4}), v = rnd({1, 2, 9, 2});
    auto res = testing::gradcheck([&](const std::vector<Tensor>& in) {
      return lsh_attention(in[0], in[1], rot, 3, causal); }, {x, v});
    INFO(res.message);
    CHECK(res.ok);
  }
}

// ================================================================ Linformer
TEST_CASE("linformer: equals dense attention over the projected keys; identity projections give exact attention",
          "[zoo][linformer]") {
  manual_seed(41);
  Tensor q = rnd({2, 3, 7, 4}), k = rnd({2, 3, 11, 4}), v = rnd({2, 3, 11, 5}), e = rnd({3, 11}), f = rnd({3, 11});
  Tensor r = Tensor::randn({2, 3, 7, 5}, kFloat64);
  auto got = value_and_grads([&](const std::vector<Tensor>& in) {
    return linformer_attention(in[0], in[1], in[2], in[3], in[4]); }, {q, k, v, e, f}, r);
  auto ref = value_and_grads([&](const std::vector<Tensor>& in) {
    return linformer_reference(in[0], in[1], in[2], in[3], in[4]); }, {q, k, v, e, f}, r);
  require_same(got, ref, 1e-10, 1e-12);
  std::vector<double> eye(121, 0.0);
  for (int i = 0; i < 11; ++i) eye[size_t(i * 12)] = 1.0;
  Tensor I = Tensor::from_vector(eye, {11, 11});
  CHECK(check_close(linformer_attention(q, k, v, I, I), scaled_dot_product_attention(q, k, v), 1e-12, 1e-13));
}

TEST_CASE("linformer: gradcheck in double", "[zoo][linformer][gradcheck]") {
  manual_seed(7);
  Tensor q = rnd({1, 2, 4, 3}), k = rnd({1, 2, 6, 3}), v = rnd({1, 2, 6, 2}), e = rnd({2, 6}), f = rnd({2, 6});
  auto res = testing::gradcheck([&](const std::vector<Tensor>& in) {
    return linformer_attention(in[0], in[1], in[2], in[3], in[4]); }, {q, k, v, e, f});
  INFO(res.message);
  CHECK(res.ok);
}

// ================================================================ all four
namespace {
// Each variant on q, k, v of one dtype with fixed randomness.
std::vector<Tensor> run_all(DType dt, const Tensor& q64, const Tensor& k64, const Tensor& v64, bool causal) {
  Tensor q = q64.to(dt).detach().requires_grad_(), k = k64.to(dt).detach().requires_grad_(),
         v = v64.to(dt).detach().requires_grad_();
  const int64_t L = q.size(-2), E = q.size(-1);
  Generator g1(1), g2(2), g3(3), g4(4);
  Tensor samp = probsparse_sample_keys(L, L, 2, g1);
  Tensor feats = orthogonal_random_features(16, E, g2, dt);
  Tensor rot = lsh_random_rotations(E, 2, 4, g3, dt);
  Tensor ep = (Tensor::randn({8, L}, kFloat64) * 0.3).to(dt), fp = (Tensor::randn({8, L}, kFloat64) * 0.3).to(dt);
  (void)g4;
  std::vector<Tensor> outs{probsparse_attention(q, k, v, samp, probsparse_top_count(L, 2), causal),
                           performer_attention(q, k, v, feats, causal, 1e-6, 7), lsh_attention(q, v, rot, 8, causal)};
  if (!causal) outs.push_back(linformer_attention(q, k, v, ep, fp));
  Tensor total = Tensor::zeros({}, dt);
  for (const Tensor& o : outs) total = total + sum(o * o);
  total.backward();
  std::vector<Tensor> res;
  for (const Tensor& o : outs) res.push_back(o.detach());
  res.push_back(q.grad());
  res.push_back(k.grad());
  res.push_back(v.grad());
  return res;
}
}  // namespace

TEST_CASE("approximate variants: float32 agrees with float64", "[zoo]") {
  manual_seed(51);
  Tensor q = Tensor::randn({1, 4, 40, 16}, kFloat64), k = Tensor::randn({1, 4, 40, 16}, kFloat64),
         v = Tensor::randn({1, 4, 40, 16}, kFloat64);
  for (bool causal : {false, true}) {
    manual_seed(1);
    auto d = run_all(kFloat64, q, k, v, causal);
    manual_seed(1);
    auto f = run_all(kFloat32, q, k, v, causal);
    INFO("causal " << causal);
    for (size_t i = 0; i < d.size(); ++i) CHECK(check_close(f[i], d[i], 2e-3, 2e-4, "output/grad " + std::to_string(i)));
  }
}

TEST_CASE("approximate variants: bit-identical for 1 and 2 threads", "[zoo][threads]") {
  manual_seed(52);
  Tensor q = Tensor::randn({2, 3, 150, 16}), k = Tensor::randn({2, 3, 150, 16}), v = Tensor::randn({2, 3, 150, 16});
  for (bool causal : {false, true}) {
    manual_seed(1);
    auto a = with_threads(1, [&] { return run_all(kFloat32, q, k, v, causal); });
    manual_seed(1);
    auto b = with_threads(2, [&] { return run_all(kFloat32, q, k, v, causal); });
    for (size_t i = 0; i < a.size(); ++i) CHECK(bits_equal(a[i], b[i]));
  }
}

TEST_CASE("approximate modules: shapes, parameter names, float64, backward", "[zoo][nn]") {
  manual_seed(61);
  const int64_t B = 2, L = 24, D = 16;
  Tensor x = Tensor::randn({B, L, D});
  nn::ProbSparseAttention ps(nn::ProbSparseAttentionOptions(D, 4).factor(2).causal(true));
  nn::PerformerAttention pf(nn::PerformerAttentionOptions(D, 4).nb_features(32));
  nn::LSHAttention lsh(nn::LSHAttentionOptions(D, 2).n_hashes(2).bucket_size(8));
  nn::LinformerAttention lf(nn::LinformerAttentionOptions(D, 4, L).k(6).dropout(0.1));
  CHECK(ps.forward(x).shape() == Shape{B, L, D});
  CHECK(pf.forward(x).shape() == Shape{B, L, D});
  CHECK(lsh.forward(x).shape() == Shape{B, L, D});
  CHECK(lf.forward(x).shape() == Shape{B, L, D});
  CHECK(pf.features.shape() == Shape{32, 4});
  auto names = [](const nn::Module& m) {
    std::vector<std::string> n;
    for (auto& [name, t] : m.named_parameters()) n.push_back(name);
    return n;
  };
  CHECK(names(ps) == std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                              "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias"});
  CHECK(names(lsh) == std::vector<std::string>{"qk_proj.weight", "qk_proj.bias", "v_proj.weight", "v_proj.bias",
                                               "out_proj.weight", "out_proj.bias"});
  CHECK(names(lf)[0] == "e_proj");
  CHECK(names(lf)[1] == "f_proj");
  CHECK(pf.named_buffers().size() == 1);
  // redraw changes the features, keeps the handle
  Tensor before = pf.features.clone();
  Tensor handle = pf.features;
  pf.redraw_features();
  CHECK_FALSE(bits_equal(before, pf.features));
  CHECK(bits_equal(handle, pf.features));
  // float64 and backward reach every parameter
  for (nn::Module* m : std::vector<nn::Module*>{&ps, &pf, &lsh, &lf}) m->to(kFloat64);
  Tensor xd = Tensor::randn({B, L, D}, kFloat64);
  Tensor loss = sum(ps.forward(xd)) + sum(pf.forward(xd)) + sum(lsh.forward(xd)) + sum(lf.forward(xd));
  loss.backward();
  for (nn::Module* m : std::vector<nn::Module*>{&ps, &pf, &lsh, &lf})
    for (auto& [name, p] : m->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined());
    }
  // eval: Linformer without dropout is deterministic
  lf.eval();
  CHECK(bits_equal(lf.forward(xd), lf.forward(xd)));
}

TEST_CASE("approximate variants: bad calls throw invalid_argument naming the op and shapes", "[zoo][errors]") {
  Tensor q = Tensor::randn({1, 2, 8, 4}), k = Tensor::randn({1, 2, 6, 4}), v = Tensor::randn({1, 2, 6, 3});
  Tensor samp = Tensor::zeros({8, 2}, kInt64);
  using Catch::Contains;
  CHECK_THROWS_AS(probsparse_attention(q, k, v, samp, 3, true), std::invalid_argument);
  CHECK_THROWS_WITH(probsparse_attention(q, k, v, samp, 3, true), Contains("probsparse_attention") && Contains("[1, 2, 8, 4]"));
  CHECK_THROWS_WITH(probsparse_attention(q, k, v, samp, 9), Contains("n_top"));
  CHECK_THROWS_WITH(probsparse_attention(q, k, v, Tensor::full({8, 2}, 6.0, kInt64), 3), Contains("outside [0, 6)"));
  CHECK_THROWS_WITH(probsparse_attention(q, k, v, Tensor::zeros({7, 2}, kInt64), 3), Contains("sample_index"));
  CHECK_THROWS_WITH(probsparse_attention(q, Tensor::randn({1, 2, 6, 5}), v, samp, 3), Contains("[1, 2, 6, 5]"));
  CHECK_THROWS_AS(probsparse_attention(q, k, v, 0), std::invalid_argument);
  CHECK_THROWS_WITH(performer_attention(q, k, v, Tensor::randn({5, 3})), Contains("performer_attention") && Contains("[5, 3]"));
  CHECK_THROWS_WITH(performer_attention(q, k, v, Tensor::randn({5, 4}), true), Contains("causal needs L == S"));
  CHECK_THROWS_WITH(performer_attention(q, k, v, Tensor::randn({5, 4}, kFloat64)), Contains("performer_attention"));
  CHECK_THROWS_AS(orthogonal_random_features(0, 4), std::invalid_argument);
  CHECK_THROWS_WITH(lsh_attention(q, v, Tensor::randn({2, 4, 2})), Contains("lsh_attention") && Contains("[1, 2, 6, 3]"));
  CHECK_THROWS_WITH(lsh_attention(q, Tensor::randn({1, 2, 8, 3}), Tensor::randn({2, 3, 2})), Contains("rotations"));
  CHECK_THROWS_WITH(lsh_attention(q, Tensor::randn({1, 2, 8, 3}), Tensor::randn({2, 4, 2}), 0), Contains("chunk_size"));
  CHECK_THROWS_WITH(lsh_random_rotations(4, 2, 3), Contains("even n_buckets"));
  CHECK_THROWS_WITH(linformer_attention(q, k, v, Tensor::randn({3, 5}), Tensor::randn({3, 6})),
                    Contains("linformer_attention") && Contains("[3, 5]"));
  CHECK_THROWS_WITH(linformer_attention(q, k, v, Tensor::randn({3, 6}), Tensor::randn({3, 6}), 1.0), Contains("dropout_p"));
  CHECK_THROWS_AS(nn::ProbSparseAttention(nn::ProbSparseAttentionOptions(10, 3)), std::invalid_argument);
  CHECK_THROWS_AS(nn::PerformerAttention(nn::PerformerAttentionOptions(8, 2).nb_features(-1)), std::invalid_argument);
  CHECK_THROWS_AS(nn::LSHAttention(nn::LSHAttentionOptions(8, 2).n_buckets(3)), std::invalid_argument);
  CHECK_THROWS_AS(nn::LinformerAttention(nn::LinformerAttentionOptions(8, 2, 0)), std::invalid_argument);
  nn::LinformerAttention lf(nn::LinformerAttentionOptions(8, 2, 10).k(4));
  CHECK_THROWS_WITH(lf.forward(Tensor::randn({1, 9, 8})), Contains("LinformerAttention") && Contains("seq_len 10"));
  nn::LSHAttention lsh(nn::LSHAttentionOptions(8, 2));
  CHECK_THROWS_WITH(lsh.forward(Tensor::randn({1, 9, 7})), Contains("LSHAttention"));
}

// ================================================================ PyTorch goldens
TEST_CASE("approximate variants match their PyTorch versions (float64 goldens)", "[zoo][golden]") {
  auto f = load_fixture("attn_zoo_approx.safetensors");
  auto in = [&](const std::string& name) { return f.at(name).clone().detach().requires_grad_(); };
  auto check_case = [&](const std::string& c, const std::vector<std::string>& names,
                        const std::function<Tensor(const std::vector<Tensor>&)>& fn) {
    std::vector<Tensor> xs;
    for (const auto& n : names) xs.push_back(in(c + "." + n));
    Tensor out = fn(xs);
    sum(out * f.at(c + ".r")).backward();
    CHECK(check_close(out, f.at(c + ".out"), 1e-9, 1e-11, c + " out"));
    for (size_t i = 0; i < names.size(); ++i)
      CHECK(check_close(xs[i].grad(), f.at(c + ".g" + names[i]), 1e-9, 1e-11, c + " grad " + names[i]));
  };
  const Tensor samp = f.at("probsparse.sample");
  check_case("probsparse", {"q", "k", "v"},
             [&](const std::vector<Tensor>& x) { return probsparse_attention(x[0], x[1], x[2], samp, 6); });
  const Tensor w = f.at("performer.features");
  check_case("performer", {"q", "k", "v"},
             [&](const std::vector<Tensor>& x) { return performer_attention(x[0], x[1], x[2], w); });
  const Tensor rot = f.at("lsh.rotations");
  check_case("lsh", {"x", "v"}, [&](const std::vector<Tensor>& x) { return lsh_attention(x[0], x[1], rot, 4); });
  check_case("linformer", {"q", "k", "v", "e", "f"},
             [&](const std::vector<Tensor>& x) { return linformer_attention(x[0], x[1], x[2], x[3], x[4]); });
}
