// kernels::cpu::gemm / gemm_serial / gemm_batched against a naive long-double reference:
// shapes around the blocking boundaries, all transpose combinations, alpha/beta (beta == 0 with
// NaN in C), padded strides, float and double, broadcast batches, and bit-identical results
// for 1 vs 2 threads.
#include <catch2/catch.hpp>

#include <attn/core/parallel.hpp>
#include <attn/kernels/cpu/gemm.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace attn::kernels::cpu;

namespace {

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  double alpha, beta;
  int64_t pad;  // extra elements per stored row of A, B and C
};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << "ta=" << c.ta << " tb=" << c.tb << " M=" << c.M << " N=" << c.N << " K=" << c.K << " alpha=" << c.alpha
     << " beta=" << c.beta << " pad=" << c.pad;
  return os.str();
}

template <class T>
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<T> A, B, C0;
};

template <class T>
Operands<T> make_operands(const Case& c, uint32_t seed) {
  Operands<T> o;
  const int64_t ar = c.ta ? c.K : c.M, ac = c.ta ? c.M : c.K;
  const int64_t br = c.tb ? c.N : c.K, bc = c.tb ? c.K : c.N;
  o.lda = ac + c.pad;
  o.ldb = bc + c.pad;
  o.ldc = c.N + c.pad;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  o.A.resize(size_t(std::max<int64_t>(ar * o.lda, 1)));
  o.B.resize(size_t(std::max<int64_t>(br * o.ldb, 1)));
  o.C0.resize(size_t(std::max<int64_t>(c.M * o.ldc, 1)));
  for (auto& x : o.A) x = T(u(gen));
  for (auto& x : o.B) x = T(u(gen));
  for (auto& x : o.C0) x = c.beta == 0.0 ? std::numeric_limits<T>::quiet_NaN() : T(u(gen));
  return o;
}

// Reference in long double; also returns sum |alpha a b| + |beta c| per element for the tolerance.
template <class T>
void reference(const Case& c, const Operands<T>& o, std::vector<long double>& ref, std::vector<long double>& mag) {
  ref.assign(size_t(c.M * c.N), 0.0L);
  mag.assign(size_t(c.M * c.N), 0.0L);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      long double s = 0, m = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const long double a = c.ta ? o.A[size_t(k * o.lda + i)] : o.A[size_t(i * o.lda + k)];
        const long double b = c.tb ? o.B[size_t(j * o.ldb + k)] : o.B[size_t(k * o.ldb + j)];
        s += a * b;
        m += std::fabs(a * b);
      }
      long double r = (long double)c.alpha * s, mg = std::fabs((long double)c.alpha) * m;
      if (c.beta != 0.0) {
        const long double cv = o.C0[size_t(i * o.ldc + j)];
        r += (long double)c.beta * cv;
        mg += std::fabs((long double)c.beta * cv);
      }
      ref[size_t(i * c.N + j)] = r;
      mag[size_t(i * c.N + j)] = mg;
    }
}

// Checks C against the reference and that padding entries of C were not touched.
template <class T>
bool check_result(const Case& c, const Operands<T>& o, const std::vector<T>& C, std::string& why) {
  std::vector<long double> ref, mag;
  reference(c, o, ref, mag);
  const long double eps = std::numeric_limits<T>::epsilon();
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      const long double got = C[size_t(i * o.ldc + j)], want = ref[size_t(i * c.N + j)];
      const long double tol = 4 * eps * (long double)(c.K + 2) * mag[size_t(i * c.N + j)] + 1e-30L;
      if (!(std::fabs(got - want) <= tol)) {
        std::ostringstream os;
        os << "C(" << i << "," << j << ") = " << (double)got << ", expected " << (double)want << " tol " << (double)tol;
        why = os.str();
        return false;
      }
    }
    for (int64_t j = c.N; j < o.ldc; ++j) {
      const T before = o.C0[size_t(i * o.ldc + j)], after = C[size_t(i * o.ldc + j)];
      if (std::memcmp(&before, &after, sizeof(T)) != 0) {
        why = "padding of C written at row " + std::to_string(i);
        return false;
      }
    }
  }
  return true;
}

template <class T>
void run_case(const Case& c, bool serial, uint32_t seed) {
  auto o = make_operands<T>(c, seed);
  std::vector<T> C = o.C0;
  if (serial)
    gemm_serial<T>(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), o.A.data(), o.lda, o.B.data(), o.ldb, T(c.beta), C.data(),
                   o.ldc);
  else
    gemm<T>(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), o.A.data(), o.lda, o.B.data(), o.ldb, T(c.beta), C.data(), o.ldc);
  std::string why;
  const bool ok = check_result(c, o, C, why);
  INFO(describe(c) << (serial ? " serial " : " parallel ") << (sizeof(T) == 4 ? "float" : "double") << ": " << why);
  CHECK(ok);
}

std::vector<Case> shape_cases() {
  std::vector<Case> cases;
  // Degenerate and tiny shapes, odd edges, 1 x N, M x 1, K = 0 / 1.
  const int64_t dims[][3] = {{1, 1, 1},   {1, 7, 5},    {7, 1, 5},    {1, 300, 33}, {300, 1, 33}, {3, 4, 0},
                             {5, 6, 1},   {2, 2, 2},    {13, 17, 19}, {15, 33, 7},  {14, 32, 8},  {29, 65, 31},
                             {28, 64, 3}, {8, 32, 9}, {16, 64, 17}, {100, 3, 40}, {3, 100, 40}, {1, 1, 500},
                             {3, 204, 51}, {4, 65, 70}, {2, 31, 90},  {4, 512, 512}, {4, 513, 512}};
  const bool tt[][2] = {{false, false}, {true, false}, {false, true}, {true, true}};
  const double ab[][2] = {{1.0, 0.0}, {0.5, 1.0}, {-2.0, 0.75}};
  for (auto& d : dims)
    for (auto& t : tt)
      for (auto& s : ab) cases.push_back({t[0], t[1], d[0], d[1], d[2], s[0], s[1], (d[0] + d[1]) % 3});
  // Around the blocking constants (MR 8/6/4, NR 32/16/8, kc 256, work items 16 x MR by 4 x NR).
  const int64_t big[][3] = {{113, 129, 257}, {112, 128, 256}, {127, 97, 513}, {57, 300, 200}, {250, 70, 600}};
  for (auto& d : big)
    for (auto& t : tt) cases.push_back({t[0], t[1], d[0], d[1], d[2], 1.5, d[2] % 2 ? 0.0 : -0.5, 3});
  // K split into super-slices (K > 8192), op(A) packed in several row groups (M*K > 2^21),
  // op(B) in several column panels (N * K > kPackB = 2^19), also with several row groups of MC
  // rows reading each panel.
  cases.push_back({false, true, 20, 40, 9000, 1.0, 0.5, 1});
  cases.push_back({true, false, 1100, 40, 2048, 1.0, 0.0, 0});
  cases.push_back({false, true, 1100, 40, 2048, 1.0, 0.0, 1});
  cases.push_back({false, false, 20, 2100, 2048, -1.0, 1.0, 2});
  cases.push_back({false, false, 150, 520, 1100, 1.0, 0.5, 0});
  return cases;
}

}  // namespace

TEST_CASE("gemm matches a long-double reference (float)", "[gemm]") {
  uint32_t seed = 1;
  for (const auto& c : shape_cases()) {
    run_case<float>(c, false, seed);
    run_case<float>(c, true, seed++);
  }
}

TEST_CASE("gemm matches a long-double reference (double)", "[gemm]") {
  uint32_t seed = 1000;
  for (const auto& c : shape_cases()) {
    run_case<double>(c, false, seed);
    run_case<double>(c, true, seed++);
  }
}

TEST_CASE("gemm with beta = 0 ignores NaN in C, K = 0 scales C", "[gemm]") {
  std::vector<float> A(6, 1.f), B(6, 1.f), C(4, std::numeric_limits<float>::quiet_NaN());
  gemm<float>(false, false, 2, 2, 3, 1.f, A.data(), 3, B.data(), 2, 0.f, C.data(), 2);
  for (float x : C) CHECK(x == 3.f);
  gemm<float>(false, false, 2, 2, 0, 1.f, A.data(), 3, B.data(), 2, 2.f, C.data(), 2);
  for (float x : C) CHECK(x == 6.f);
  std::vector<float> D(4, std::numeric_limits<float>::quiet_NaN());
  gemm<float>(false, false, 2, 2, 0, 1.f, A.data(), 3, B.data(), 2, 0.f, D.data(), 2);
  for (float x : D) CHECK(x == 0.f);
}

template <class T>
static void batched_check() {
  // A shared (stride 0) with per-matrix B, and per-matrix A with shared B; compared with gemm per matrix.
  const int64_t batch = 6;
  for (int64_t n : {int64_t(9), int64_t(70)}) {
    const int64_t M = n, N = n + 3, K = n + 1;
    for (int mode = 0; mode < 2; ++mode)
      for (bool tb : {false, true}) {
        std::mt19937 gen(uint32_t(n * 10 + mode));
        std::uniform_real_distribution<double> u(-1, 1);
        std::vector<T> A(size_t(batch * M * K)), B(size_t(batch * K * N)), C(size_t(batch * M * N), T(7)), R = C;
        for (auto& x : A) x = T(u(gen));
        for (auto& x : B) x = T(u(gen));
        const int64_t sa = mode == 0 ? 0 : M * K, sb = mode == 1 ? 0 : K * N;
        const int64_t ldb = tb ? K : N;
        gemm_batched<T>(batch, false, tb, M, N, K, T(0.5), A.data(), K, sa, B.data(), ldb, sb, T(2), C.data(), N, M * N);
        for (int64_t i = 0; i < batch; ++i)
          gemm_serial<T>(false, tb, M, N, K, T(0.5), A.data() + i * sa, K, B.data() + i * sb, ldb, T(2),
                         R.data() + i * M * N, N);
        INFO("n=" << n << " mode=" << mode << " tb=" << tb);
        CHECK(std::memcmp(C.data(), R.data(), C.size() * sizeof(T)) == 0);
        // And the reference for one matrix of the batch.
        Case c{false, tb, M, N, K, 0.5, 2.0, 0};
        Operands<T> o;
        o.lda = K;
        o.ldb = ldb;
        o.ldc = N;
        o.A.assign(A.begin() + 5 * sa, A.begin() + 5 * sa + M * K);
        o.B.assign(B.begin() + 5 * sb, B.begin() + 5 * sb + K * N);
        o.C0.assign(size_t(M * N), T(7));
        std::vector<T> C5(C.begin() + 5 * M * N, C.begin() + 6 * M * N);
        std::string why;
        const bool ok = check_result(c, o, C5, why);
        INFO(why);
        CHECK(ok);
      }
  }
}

TEST_CASE("gemm_batched with broadcast operands", "[gemm]") {
  batched_check<float>();
  batched_check<double>();
}

template <class T>
static void thread_invariance() {
  const int saved = attn::get_num_threads();
  const int64_t shapes[][3] = {{1024, 1024, 1024}, {300, 517, 700}, {2000, 64, 64}, {64, 2000, 300}, {1, 3000, 2000}};
  const bool tt[][2] = {{false, false}, {true, false}, {false, true}, {true, true}};
  for (auto& s : shapes)
    for (auto& t : tt) {
      Case c{t[0], t[1], s[0], s[1], s[2], 1.0, 0.5, 1};
      auto o = make_operands<T>(c, uint32_t(s[0] + s[1]));
      std::vector<T> C1 = o.C0, C2 = o.C0, C3 = o.C0;
      attn::set_num_threads(1);
      gemm<T>(c.ta, c.tb, c.M, c.N, c.K, T(1), o.A.data(), o.lda, o.B.data(), o.ldb, T(0.5), C1.data(), o.ldc);
      attn::set_num_threads(2);
      gemm<T>(c.ta, c.tb, c.M, c.N, c.K, T(1), o.A.data(), o.lda, o.B.data(), o.ldb, T(0.5), C2.data(), o.ldc);
      gemm_serial<T>(c.ta, c.tb, c.M, c.N, c.K, T(1), o.A.data(), o.lda, o.B.data(), o.ldb, T(0.5), C3.data(), o.ldc);
      INFO(describe(c));
      CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(T)) == 0);
      CHECK(std::memcmp(C1.data(), C3.data(), C1.size() * sizeof(T)) == 0);
    }
  // Batched: per-matrix tasks vs one parallel product after another give the same bits.
  const int64_t batch = 4, M = 200, N = 190, K = 180;
  std::vector<T> A(size_t(batch * M * K)), B(size_t(K * N)), C1(size_t(batch * M * N)), C2 = C1;
  std::mt19937 gen(5);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto& x : A) x = T(u(gen));
  for (auto& x : B) x = T(u(gen));
  attn::set_num_threads(1);
  gemm_batched<T>(batch, false, false, M, N, K, T(1), A.data(), K, M * K, B.data(), N, 0, T(0), C1.data(), N, M * N);
  attn::set_num_threads(2);
  gemm_batched<T>(batch, false, false, M, N, K, T(1), A.data(), K, M * K, B.data(), N, 0, T(0), C2.data(), N, M * N);
  CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(T)) == 0);
  attn::set_num_threads(saved);
}

TEST_CASE("gemm is bit-identical for 1 and 2 threads", "[gemm][threads]") {
  thread_invariance<float>();
  thread_invariance<double>();
}

TEST_CASE("gemm reports its kernel path", "[gemm]") {
  const std::string isa = gemm_isa();
  CHECK(isa == attn::isa_name(attn::cpu_info().path));
  CHECK((isa == "avx512" || isa == "avx2" || isa == "baseline"));
}

// The same product with op(A) / op(B) given transposed or not takes different operand forms
// (packed, read in place by rows, read in place by columns) but the same arithmetic: same bits.
template <class T>
static void operand_forms_agree() {
  const int64_t shapes[][3] = {{64, 32, 16000}, {128, 64, 700}, {40, 100, 300}, {200, 120, 90}, {13, 33, 65}};
  std::mt19937 gen(11);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    std::vector<T> A(size_t(M * K)), At(size_t(K * M)), B(size_t(K * N)), Bt(size_t(N * K));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) At[size_t(k * M + i)] = A[size_t(i * K + k)] = T(u(gen));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) Bt[size_t(j * K + k)] = B[size_t(k * N + j)] = T(u(gen));
    std::vector<std::vector<T>> C(4, std::vector<T>(size_t(M * N), T(0)));
    gemm<T>(false, false, M, N, K, T(1), A.data(), K, B.data(), N, T(0), C[0].data(), N);
    gemm<T>(true, false, M, N, K, T(1), At.data(), M, B.data(), N, T(0), C[1].data(), N);
    gemm<T>(false, true, M, N, K, T(1), A.data(), K, Bt.data(), K, T(0), C[2].data(), N);
    gemm<T>(true, true, M, N, K, T(1), At.data(), M, Bt.data(), K, T(0), C[3].data(), N);
    INFO("M " << M << " N " << N << " K " << K);
    for (int v = 1; v < 4; ++v) CHECK(std::memcmp(C[0].data(), C[v].data(), C[0].size() * sizeof(T)) == 0);
    // op(B) packed once (PackedB) and reused: the same bits as gemm_serial.
    for (bool tb : {false, true}) {
      const PackedB<T> pb(tb, K, N, tb ? Bt.data() : B.data(), tb ? K : N);
      std::vector<T> Cp(size_t(M * N), T(0.25)), Cs = Cp;
      gemm_prepacked<T>(M, T(1), A.data(), K, pb, T(1), Cp.data(), N);
      gemm_serial<T>(false, tb, M, N, K, T(1), A.data(), K, tb ? Bt.data() : B.data(), tb ? K : N, T(1), Cs.data(), N);
      CHECK(std::memcmp(Cp.data(), Cs.data(), Cp.size() * sizeof(T)) == 0);
    }
  }
}

// A last sliver whose columns fit in one vector runs a one-vector micro-kernel (gemm.inc, tile):
// each column must have the bits the full-width tile gives it in a wider product.
template <class T>
static void narrow_slivers_agree() {
  const int64_t M = 61, K = 100, wide = 96;
  std::mt19937 gen(5);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> A(size_t(M * K)), B(size_t(K * wide));
  for (auto& x : A) x = T(u(gen));
  for (auto& x : B) x = T(u(gen));
  for (bool ta : {false, true}) {
    std::vector<T> At(A.size());
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) At[size_t(k * M + i)] = A[size_t(i * K + k)];
    const T* a = ta ? At.data() : A.data();
    const int64_t lda = ta ? M : K;
    std::vector<T> Cw(size_t(M * wide));
    gemm_serial<T>(ta, false, M, wide, K, T(1), a, lda, B.data(), wide, T(0), Cw.data(), wide);
    for (int64_t n : {2, 3, 4, 5, 8, 16, 19, 35}) {
      std::vector<T> Cn(size_t(M * n), T(0.5));
      gemm_serial<T>(ta, false, M, n, K, T(1), a, lda, B.data(), wide, T(0), Cn.data(), n);
      bool same = true;
      for (int64_t i = 0; i < M; ++i)
        same = same && std::memcmp(Cn.data() + i * n, Cw.data() + i * wide, size_t(n) * sizeof(T)) == 0;
      INFO("ta " << ta << " N " << n << " (" << attn::cpu_info().summary() << ")");
      CHECK(same);
    }
  }
}

TEST_CASE("gemm: a sliver of one vector of columns gives the bits of the full-width tile", "[gemm]") {
  narrow_slivers_agree<float>();
  narrow_slivers_agree<double>();
}

TEST_CASE("gemm: packed and in-place operands, and prepacked B, give the same bits", "[gemm]") {
  operand_forms_agree<float>();
  operand_forms_agree<double>();
}
