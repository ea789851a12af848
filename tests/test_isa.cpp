// Kernel paths chosen at run time (core/cpu_info.hpp, kernels/cpu/isa_expand.inc): the choice and
// its errors, and every path this CPU can run against the baseline path and against libm: GEMM
// (packed, in place, prepacked, direct and dot-product shapes), exp / tanh / sigmoid, the span
// reductions max_n / dot_n / sum_n, the LSTM and GRU gate math. Within a path results are
// bit-identical for 1 and 2 threads.
// The whole suite also runs with each path forced (ATTN_ISA, `make test`), which checks every
// op against the PyTorch goldens on every path.
#include <attn/attn.hpp>
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "test_util.hpp"

using attn::Isa;
namespace cpu = attn::kernels::cpu;

// The paths this CPU can run, baseline first.
static std::vector<Isa> runnable_paths() {
  std::vector<Isa> v;
  for (int i = 0; i <= int(attn::cpu_info().best); ++i) v.push_back(Isa(i));
  return v;
}

// ON_PATH runs the call on one path; ON_PATH_SET assigns its result to out.
#if ATTN_X86_DISPATCH
#define ON_PATH(isa, call)                                   \
  switch (isa) {                                             \
    case Isa::avx512: cpu::isa_avx512::call; break;          \
    case Isa::avx2: cpu::isa_avx2::call; break;              \
    default: cpu::isa_baseline::call; break;                 \
  }
#define ON_PATH_SET(isa, out, call)                          \
  switch (isa) {                                             \
    case Isa::avx512: out = cpu::isa_avx512::call; break;    \
    case Isa::avx2: out = cpu::isa_avx2::call; break;        \
    default: out = cpu::isa_baseline::call; break;           \
  }
#else
#define ON_PATH(isa, call) cpu::isa_baseline::call;
#define ON_PATH_SET(isa, out, call) out = cpu::isa_baseline::call;
#endif

template <class T>
static std::vector<T> random_vector(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(gen));
  return v;
}

TEST_CASE("cpu_info names the CPU and the kernel path, and ATTN_ISA forces one", "[isa]") {
  const attn::CpuInfo& info = attn::cpu_info();
  INFO(info.summary());
  CHECK(!info.model.empty());
  CHECK(int(info.path) <= int(info.best));
  CHECK(attn::kernel_isa() == info.path);
  CHECK(std::string(cpu::gemm_isa()) == attn::isa_name(info.path));
  const char* env = std::getenv("ATTN_ISA");
  if (env == nullptr || *env == '\0') {
    CHECK(info.path == info.best);
    CHECK(!info.forced);
  } else {
    CHECK(std::string(attn::isa_name(info.path)) == env);
    CHECK(info.forced);
  }
  CHECK(info.summary().find(info.model) != std::string::npos);
  if (info.best == Isa::avx512) CHECK((info.avx2 && info.fma && info.avx512));
  if (info.best == Isa::avx2) CHECK((info.avx2 && info.fma && !info.avx512));
}

TEST_CASE("ATTN_ISA: unknown values and paths the CPU lacks are clear errors", "[isa][errors]") {
  attn::CpuInfo zen3;
  zen3.model = "Test EPYC";
  zen3.avx2 = zen3.fma = true;
  zen3.best = Isa::avx2;
  CHECK(attn::detail::choose_path(zen3, nullptr).path == Isa::avx2);
  CHECK(attn::detail::choose_path(zen3, "").path == Isa::avx2);
  CHECK(attn::detail::choose_path(zen3, "baseline").path == Isa::baseline);
  CHECK(attn::detail::choose_path(zen3, "baseline").forced);
  CHECK(attn::detail::choose_path(zen3, "avx2").path == Isa::avx2);
  CHECK_THROWS_AS(attn::detail::choose_path(zen3, "avx512"), std::invalid_argument);
  CHECK_THROWS_WITH(attn::detail::choose_path(zen3, "avx512"),
                    Catch::Contains("ATTN_ISA=avx512") && Catch::Contains("Test EPYC") &&
                        Catch::Contains("avx512f/bw/dq/vl no") && Catch::Contains("best it can run is avx2"));
  CHECK_THROWS_WITH(attn::detail::choose_path(zen3, "AVX2"),
                    Catch::Contains("ATTN_ISA=AVX2") && Catch::Contains("baseline, avx2 or avx512"));
  attn::CpuInfo old;
  old.model = "Old CPU";
  CHECK_THROWS_WITH(attn::detail::choose_path(old, "avx2"), Catch::Contains("avx2 no") && Catch::Contains("Old CPU"));
}

// Every product shape class of gemm_dispatch (error bound: tol * K, tol about the type's epsilon;
// a wrong element is off by O(1)): direct (tiny, M == 1, N == 1), dot products (B^T,
// M <= 4), packed and in place (all four transpose combinations), edges, a K beyond one slice.
template <class T>
static void gemm_paths_agree(double tol) {
  const int64_t shapes[][3] = {{3, 5, 7},    {1, 300, 90},  {200, 1, 64},  {3, 204, 51},  {4, 130, 33},
                               {64, 48, 40}, {77, 93, 129}, {130, 70, 600}, {256, 256, 256}, {33, 17, 1000}};
  for (auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    const auto A = random_vector<T>(size_t(M * K), 1), B = random_vector<T>(size_t(K * N), 2);
    const auto C0 = random_vector<T>(size_t(M * N), 3);
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const int64_t lda = ta ? M : K, ldb = tb ? K : N;
      // reference in long double
      std::vector<long double> ref(size_t(M * N));
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          long double acc = 0;
          for (int64_t k = 0; k < K; ++k)
            acc += (long double)(ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)]) *
                   (long double)(tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)]);
          ref[size_t(i * N + j)] = 0.5L * acc + 0.25L * (long double)C0[size_t(i * N + j)];
        }
      for (Isa isa : runnable_paths()) {
        INFO("path " << attn::isa_name(isa) << " M " << M << " N " << N << " K " << K << " ta " << ta << " tb " << tb);
        std::vector<T> c1 = C0, c2 = C0;
        attn::set_num_threads(1);
        ON_PATH(isa, gemm_dispatch<T>(ta, tb, M, N, K, T(0.5), A.data(), lda, B.data(), ldb, T(0.25), c1.data(), N, true));
        attn::set_num_threads(2);
        ON_PATH(isa, gemm_dispatch<T>(ta, tb, M, N, K, T(0.5), A.data(), lda, B.data(), ldb, T(0.25), c2.data(), N, true));
        CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(T)) == 0);
        double worst = 0;
        for (size_t i = 0; i < c1.size(); ++i)
          worst = std::max(worst, double(std::fabs((long double)c1[i] - ref[i])));
        INFO("worst error " << worst);
        CHECK(worst < tol * double(K));
      }
    }
  }
  attn::set_num_threads(2);
}

TEST_CASE("gemm: every runnable path matches a long double reference, bit-identical across threads", "[isa][gemm]") {
  gemm_paths_agree<float>(1.2e-7);
  gemm_paths_agree<double>(2.3e-16);
}

TEST_CASE("gemm_prepacked gives gemm_serial's bits on every runnable path", "[isa][gemm]") {
  const int64_t M = 37, K = 64, N = 256;  // x h W_hh^T of a recurrent step, partial row sliver
  const auto A = random_vector<float>(size_t(M * K), 4), W = random_vector<float>(size_t(N * K), 5);
  for (Isa isa : runnable_paths()) {
    INFO("path " << attn::isa_name(isa));
    std::vector<float> c1(size_t(M * N)), c2(size_t(M * N));
    ON_PATH(isa, gemm_dispatch<float>(false, true, M, N, K, 1.f, A.data(), K, W.data(), K, 0.f, c1.data(), N, false));
    // PackedB packs with the process's path; compare on that path only.
    if (isa != attn::kernel_isa()) continue;
    const cpu::PackedB<float> pb(true, K, N, W.data(), K);
    cpu::gemm_prepacked<float>(M, 1.f, A.data(), K, pb, 0.f, c2.data(), N);
    CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0);
  }
}

// exp, tanh, sigmoid and elu + 1 on every path: within 2 ulp of long double libm (float tanh 5, sigmoid
// 2.5; away from subnormal results), special values exact, and every element's bits independent
// of its position (also when a neighbour in the register takes exp's slow path).
template <class T>
static void vmath_paths() {
  std::vector<T> x;
  for (double v = -40; v <= 40; v += 0.0173) x.push_back(T(v));
  const T inf = std::numeric_limits<T>::infinity();
  for (T v : {T(0), T(-0.0), inf, -inf, T(700), T(-700), T(88.5), T(-100), T(1e-30), T(-1e-30)}) x.push_back(v);
  const size_t n = x.size();
  auto ulps = [inf](T got, long double want) {
    const T w = T(want);
    if (std::isinf(w) || w == T(0)) return got == w ? 0.0 : 1e30;
    if (std::fpclassify(w) == FP_SUBNORMAL || std::fabs(w) < std::numeric_limits<T>::min()) return 0.0;
    return double(std::fabs((long double)got - want) / (long double)(std::nextafter(w, inf) - w));
  };
  for (Isa isa : runnable_paths()) {
    INFO("path " << attn::isa_name(isa) << (sizeof(T) == 4 ? " float" : " double"));
    std::vector<T> e(n), t(n), s(n), shifted(n + 3);
    ON_PATH(isa, exp_n<T>(x.data(), e.data(), int64_t(n)));
    ON_PATH(isa, tanh_n<T>(x.data(), t.data(), int64_t(n)));
    ON_PATH(isa, sigmoid_n<T>(x.data(), s.data(), int64_t(n)));
    double we = 0, wt = 0, ws = 0;
    for (size_t i = 0; i < n; ++i) {
      const long double v = x[i];
      if (std::exp(v) < 1e300L) we = std::max(we, ulps(e[i], std::exp(v)));
      wt = std::max(wt, ulps(t[i], std::tanh(v)));
      ws = std::max(ws, ulps(s[i], 1.0L / (1.0L + std::exp(-v))));
    }
    CHECK(we <= 2.0);
    CHECK(wt <= (sizeof(T) == 4 ? 5.0 : 2.0));  // float: Eigen's rational fit, as before
    CHECK(ws <= 2.5);
    CHECK(std::signbit(t[n - 9]));  // tanh(-0) = -0
    CHECK(t[n - 8] == T(1));         // tanh(inf)
    CHECK(t[n - 7] == T(-1));
    const T nan = std::numeric_limits<T>::quiet_NaN();
    T special[3] = {nan, inf, -inf};
    ON_PATH(isa, exp_n<T>(special, special, 3));
    CHECK(std::isnan(special[0]));
    CHECK(special[1] == inf);
    CHECK(special[2] == T(0));
    // elu + 1 (linear attention's feature map): x + 1 above 0, else exactly exp_n's bits; NaN stays NaN
    std::vector<T> p(n);
    ON_PATH(isa, elu_plus_one_n<T>(x.data(), p.data(), int64_t(n)));
    size_t elu_bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const T want = x[i] > T(0) ? T(x[i] + T(1)) : e[i];
      elu_bad += std::memcmp(&p[i], &want, sizeof(T)) != 0;
    }
    CHECK(elu_bad == 0);
    T special_elu[3] = {nan, inf, -inf};
    ON_PATH(isa, elu_plus_one_n<T>(special_elu, special_elu, 3));
    CHECK(std::isnan(special_elu[0]));
    CHECK(special_elu[1] == inf);
    CHECK(special_elu[2] == T(0));
    // the same elements at another offset and in a shorter span (a different masked tail)
    std::copy(x.begin(), x.end(), shifted.begin() + 3);
    ON_PATH(isa, tanh_n<T>(shifted.data() + 3, shifted.data() + 3, int64_t(n - 5)));
    CHECK(std::memcmp(shifted.data() + 3, t.data(), (n - 5) * sizeof(T)) == 0);
  }
}

TEST_CASE("exp / tanh / sigmoid / elu+1: every runnable path within a few ulp, position-independent", "[isa][vmath]") {
  vmath_paths<float>();
  vmath_paths<double>();
}

// max_n / dot_n / sum_n on every path, for every length from 1 to 70 (less than a register, whole
// registers, tails): max exact, sums within n ulp of long double; the bits depend only on the
// values, not on where the span starts.
template <class T>
static void reduction_paths() {
  const auto a = random_vector<T>(80, 11), b = random_vector<T>(80, 12);
  std::vector<T> a_off(83), b_off(83);
  std::copy(a.begin(), a.end(), a_off.begin() + 3);
  std::copy(b.begin(), b.end(), b_off.begin() + 3);
  const double eps = double(std::numeric_limits<T>::epsilon());
  for (Isa isa : runnable_paths()) {
    INFO("path " << attn::isa_name(isa) << (sizeof(T) == 4 ? " float" : " double"));
    for (int64_t n = 1; n <= 70; ++n) {
      INFO("n " << n);
      T mx = 0, dot = 0, sum = 0, mx2 = 0, dot2 = 0, sum2 = 0;
      auto run = [&](const T* x, const T* y, T& m, T& d, T& s) {
        ON_PATH_SET(isa, m, max_n<T>(x, n));
        ON_PATH_SET(isa, d, dot_n<T>(x, y, n));
        ON_PATH_SET(isa, s, sum_n<T>(x, n));
      };
      run(a.data(), b.data(), mx, dot, sum);
      run(a_off.data() + 3, b_off.data() + 3, mx2, dot2, sum2);
      long double want_dot = 0, want_sum = 0, abs_dot = 0, abs_sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        want_dot += (long double)a[size_t(i)] * b[size_t(i)];
        want_sum += a[size_t(i)];
        abs_dot += std::fabs((long double)a[size_t(i)] * b[size_t(i)]);
        abs_sum += std::fabs((long double)a[size_t(i)]);
      }
      CHECK(mx == *std::max_element(a.begin(), a.begin() + n));
      CHECK(std::fabs(dot - want_dot) <= double(n) * eps * abs_dot);
      CHECK(std::fabs(sum - want_sum) <= double(n) * eps * abs_sum);
      CHECK(mx2 == mx);
      CHECK(dot2 == dot);
      CHECK(sum2 == sum);
    }
  }
}

TEST_CASE("max_n / dot_n / sum_n: every runnable path, every length, position-independent", "[isa][vmath]") {
  reduction_paths<float>();
  reduction_paths<double>();
}

// exp_shifted_n (the softmax's one pass) gives the bits of its three steps (subtract, exp_n,
// sum_n) on every path and every length, masked (-inf) entries exactly 0.
template <class T>
static void exp_shifted_paths() {
  auto x0 = random_vector<T>(70, 13);
  for (size_t i = 0; i < x0.size(); i += 7) x0[i] = -std::numeric_limits<T>::infinity();
  const T shift = T(0.625);
  for (Isa isa : runnable_paths()) {
    INFO("path " << attn::isa_name(isa) << (sizeof(T) == 4 ? " float" : " double"));
    for (int64_t n = 0; n <= 70; ++n) {
      INFO("n " << n);
      std::vector<T> fused(x0.begin(), x0.begin() + n), steps = fused;
      T sum_fused = 0, sum_steps = 0;
      ON_PATH_SET(isa, sum_fused, exp_shifted_n<T>(fused.data(), n, shift));
      for (T& v : steps) v -= shift;
      ON_PATH(isa, exp_n<T>(steps.data(), steps.data(), n));
      ON_PATH_SET(isa, sum_steps, sum_n<T>(steps.data(), n));
      if (n > 0) CHECK(std::memcmp(fused.data(), steps.data(), size_t(n) * sizeof(T)) == 0);  // (no null to memcmp)
      CHECK(std::memcmp(&sum_fused, &sum_steps, sizeof(T)) == 0);
      for (int64_t i = 0; i < n; i += 7) CHECK(fused[size_t(i)] == T(0));
    }
  }
}

TEST_CASE("exp_shifted_n: the bits of subtract, exp_n and sum_n on every path and length", "[isa][vmath]") {
  exp_shifted_paths<float>();
  exp_shifted_paths<double>();
}

// LSTM and GRU gate math of one row (H = 37: full registers plus a tail on every path) against
// the formulas in long double.
template <class T>
static void gate_paths(double tol) {
  const int64_t H = 37;
  const auto a0 = random_vector<T>(size_t(4 * H), 6), c0 = random_vector<T>(size_t(H), 7);
  const auto x0 = random_vector<T>(size_t(3 * H), 8), h0 = random_vector<T>(size_t(H), 9);
  auto sig = [](long double v) { return 1.0L / (1.0L + std::exp(-v)); };
  for (Isa isa : runnable_paths()) {
    INFO("path " << attn::isa_name(isa) << (sizeof(T) == 4 ? " float" : " double"));
    std::vector<T> a = a0, c = c0, tc(static_cast<size_t>(H)), h(static_cast<size_t>(H));
    ON_PATH(isa, lstm_fwd_row<T>(H, a.data(), c.data(), tc.data(), h.data()));
    double worst = 0;
    for (int64_t j = 0; j < H; ++j) {
      const long double i = sig(a0[size_t(j)]), f = sig(a0[size_t(H + j)]), g = std::tanh((long double)a0[size_t(2 * H + j)]),
                        o = sig(a0[size_t(3 * H + j)]);
      const long double cn = f * c0[size_t(j)] + i * g;
      worst = std::max({worst, double(std::fabs(c[size_t(j)] - cn)), double(std::fabs(h[size_t(j)] - o * std::tanh(cn))),
                        double(std::fabs(a[size_t(j)] - i)), double(std::fabs(a[size_t(2 * H + j)] - g))});
    }
    CHECK(worst < tol);
    std::vector<T> ga(static_cast<size_t>(3 * H)), gh = h0, hn(static_cast<size_t>(H));
    for (int64_t j = 0; j < 3 * H; ++j) ga[size_t(j)] = a0[size_t(j)];
    ON_PATH(isa, gru_fwd_row<T>(H, ga.data(), x0.data(), hn.data(), gh.data()));
    worst = 0;
    for (int64_t j = 0; j < H; ++j) {
      const long double r = sig((long double)a0[size_t(j)] + x0[size_t(j)]), z = sig((long double)a0[size_t(H + j)] + x0[size_t(H + j)]);
      const long double nn = std::tanh((long double)x0[size_t(2 * H + j)] + r * a0[size_t(2 * H + j)]);
      worst = std::max(worst, double(std::fabs(gh[size_t(j)] - (nn + z * (h0[size_t(j)] - nn)))));
    }
    CHECK(worst < tol);
  }
}

TEST_CASE("LSTM / GRU gate math: every runnable path matches the formulas", "[isa][rnn]") {
  gate_paths<float>(1e-6);
  gate_paths<double>(1e-15);
}
