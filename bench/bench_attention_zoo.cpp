// The attention zoo: every attention variant of attn over L = 256 ... 65,536 at one head
// configuration (B = 1, H = 4, E = 64, float32, self-attention q, k, v [1, 4, L, 64]):
//   - forward+backward time (median of repeats after one warm-up call; loss = sum(out * G) with
//     a fixed random G),
//   - peak memory of that forward+backward (attn::memory_stats().peak_bytes above the inputs),
//   - approximation error against exact softmax attention, ||out - exact|| / ||exact||, on
//     random inputs (q, k, v ~ N(0, 1)) and on time-series inputs (q = k = v = a random linear
//     embedding of 8 lags of a noisy two-tone sine), for L <= --max-error-L.
// Writes zoo.csv, zoo.md (the tables) and zoo_time.svg, zoo_memory.svg, zoo_error_{random,series}.svg into
// --out-dir; with --torch FILE (bench/torch_attention_zoo.py's CSV, run first in the same job) the
// tables also give attn's speed-up over the PyTorch version of each variant.
//
//   cmake --build build --target bench_attention_zoo -j2
//   bash bench/run_attention_zoo.sh          # PyTorch side, then this program: about 5 min on 2 cores
//
// It is a plain program, not a Google Benchmark suite: one variant at the largest L runs for
// seconds, and the suite needs its own table of results for the plots.
//
// Adding a variant: one entry in variants() below, {name, run, exact, max_L, family}, where
// run(q, k, v) returns the attention output [1, H, L, E] (built with requires_grad inputs, so
// it must be differentiable). The approximate variants (ProbSparse, Performer, LSH, Linformer)
// with their settings are in bench/zoo_approx_variants.hpp.
#include <attn/attn.hpp>
#include <attn/nn/attention/efficient.hpp>
#include <attn/plot/svg.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "zoo_approx_variants.hpp"

using namespace attn;

namespace {
constexpr int64_t kH = 4, kE = 64, kBlock = 64;
constexpr double kWarmupKeepS = 10.0;  // a first call longer than this is timed, not repeated

using RunFn = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;
struct Variant {
  std::string name;
  RunFn run;
  bool exact;     // equals softmax attention (dense variants) or not (patterns, approximations)
  int64_t max_L;  // largest L it runs at (time / memory of the 2-core machine)
  std::string family;
};

Tensor dense_storing(const Tensor& q, const Tensor& k, const Tensor& v) {
  auto& cfg = detail::flash_attn_config();
  const int64_t keep = cfg.min_weight_bytes;
  cfg.min_weight_bytes = INT64_MAX;  // the weights-storing kernels at every size
  Tensor o = scaled_dot_product_attention(q, k, v);
  cfg.min_weight_bytes = keep;
  return o;
}
Tensor dense_tiled(const Tensor& q, const Tensor& k, const Tensor& v) {
  auto& cfg = detail::flash_attn_config();
  const int64_t keep = cfg.min_weight_bytes;
  cfg.min_weight_bytes = 0;  // the tiled (FlashAttention-2 style) kernels at every size
  Tensor o = scaled_dot_product_attention(q, k, v);
  cfg.min_weight_bytes = keep;
  return o;
}
int64_t blocks(int64_t L) { return (L + kBlock - 1) / kBlock; }

std::vector<Variant> variants() {
  std::vector<Variant> v;
  v.push_back({"dense (weights-storing)", dense_storing, true, 16384, "dense"});
  v.push_back({"dense (tiled)", dense_tiled, true, 16384, "dense"});
  v.push_back({"checkpoint(dense)", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 return checkpoint([](const std::vector<Tensor>& in) { return dense_storing(in[0], in[1], in[2]); },
                                   {q, k, v});
               }, true, 8192, "dense"});
  v.push_back({"windowed (+-64)", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 return windowed_attention(q, k, v, 64, 64).first;
               }, false, 65536, "local"});
  v.push_back({"block-local (128)", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 return block_local_attention(q, k, v, 128).first;
               }, false, 65536, "local"});
  v.push_back({"linear (elu+1)", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 return linear_attention(q, k, v);
               }, false, 65536, "linear"});
  v.push_back({"bs sliding window", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 return block_sparse_attention(q, k, v, BlockSparseLayout::sliding_window(q.size(2), kBlock, 1));
               }, false, 65536, "block-sparse"});
  v.push_back({"bs dilated window", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 return block_sparse_attention(q, k, v, BlockSparseLayout::sliding_window(q.size(2), kBlock, 2, 2));
               }, false, 65536, "block-sparse"});
  v.push_back({"bs strided", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 const int64_t stride = std::max<int64_t>(1, (blocks(q.size(2)) + 3) / 4);  // <= 4 strided blocks per row
                 return block_sparse_attention(q, k, v, BlockSparseLayout::strided(q.size(2), kBlock, 1, stride));
               }, false, 65536, "block-sparse"});
  v.push_back({"bs global+window", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 return block_sparse_attention(q, k, v, BlockSparseLayout::global_window(q.size(2), kBlock, 1, 1));
               }, false, 65536, "block-sparse"});
  v.push_back({"bs bigbird", [](const Tensor& q, const Tensor& k, const Tensor& v) {
                 Generator gen(1);
                 return block_sparse_attention(q, k, v, BlockSparseLayout::bigbird(q.size(2), kBlock, 1, 1, 2, &gen));
               }, false, 65536, "block-sparse"});
  v.push_back({"probsparse", zoo_approx::probsparse, false, 65536, "approximate"});
  v.push_back({"performer", zoo_approx::performer, false, 65536, "approximate"});
  v.push_back({"lsh", zoo_approx::lsh, false, 65536, "approximate"});
  v.push_back({"linformer", zoo_approx::linformer, false, 65536, "approximate"});
  return v;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Row {
  std::string variant;
  int64_t L;
  double ms = NAN, peak_mib = NAN, err_random = NAN, err_series = NAN;
};

// q = k = v = a random linear embedding of 8 lags of x_t = sin(2 pi t / 50) + 0.5 sin(2 pi t / 365) + 0.1 noise.
Tensor series_inputs(int64_t L, Generator& gen) {
  const int64_t lags = 8;
  std::vector<float> x(size_t(L + lags)), feats(size_t(L * lags)), w(size_t(lags * kH * kE));
  {
    auto g = gen.lock();
    for (size_t t = 0; t < x.size(); ++t)
      x[t] = float(std::sin(2 * M_PI * double(t) / 50.0) + 0.5 * std::sin(2 * M_PI * double(t) / 365.0) +
                   0.1 * g.normal());
    for (auto& e : w) e = float(g.normal() / std::sqrt(double(lags)) * 2.0);
  }
  for (int64_t t = 0; t < L; ++t)
    for (int64_t l = 0; l < lags; ++l) feats[size_t(t * lags + l)] = x[size_t(t + lags - l)];
  Tensor emb = matmul(Tensor::from_vector(feats, {L, lags}), Tensor::from_vector(w, {lags, kH * kE}));  // [L, H*E]
  return permute(reshape(emb, {1, L, kH, kE}), {0, 2, 1, 3});
}

double rel_error(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

std::map<std::pair<std::string, int64_t>, double> read_torch(const std::string& path) {
  std::map<std::pair<std::string, int64_t>, double> m;
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);  // header: variant,L,ms
  while (std::getline(f, line)) {
    std::stringstream ss(line);
    std::string name, L, ms;
    if (std::getline(ss, name, ',') && std::getline(ss, L, ',') && std::getline(ss, ms, ','))
      m[{name, std::stoll(L)}] = std::stod(ms);
  }
  return m;
}

std::string fmt(double v, const char* f = "%.3g") {
  if (std::isnan(v)) return "-";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  std::string out_dir = "out/attention_zoo", torch_csv, only;  // only: run the variants whose name contains it
  int64_t max_L = 65536, max_error_L = 4096, min_L = 256;
  double budget_s = 0.6;  // timing budget per (variant, L); at least 1 and at most 25 repeats
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("bench_attention_zoo: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--out-dir") out_dir = next();
    else if (a == "--torch") torch_csv = next();
    else if (a == "--max-L") max_L = std::stoll(next());
    else if (a == "--min-L") min_L = std::stoll(next());
    else if (a == "--max-error-L") max_error_L = std::stoll(next());
    else if (a == "--budget") budget_s = std::stod(next());
    else if (a == "--only") only = next();
    else {
      std::fprintf(stderr, "usage: bench_attention_zoo [--out-dir DIR] [--torch CSV] [--min-L N] [--max-L N] [--max-error-L N] [--budget S] "
                           "[--only SUBSTRING]\n");
      return 2;
    }
  }
  std::system(("mkdir -p '" + out_dir + "'").c_str());
  const std::string cpu = cpu_info().summary();
  std::printf("cpu: %s, threads %d\n", cpu.c_str(), get_num_threads());
  // Up to 1.3 GiB of buffers per call at L = 65,536: over the default 1 GiB cache, each call
  // would fault its buffers in afresh (about 0.5 s per GiB here), a step in the curves at the
  // largest L that is the allocator's, not the variant's. 4 GiB keeps every sub-quadratic
  // variant's buffers; the weights-storing dense path at 16,384 (8 GiB) still faults.
  set_cache_limit(int64_t(4) << 30);
  std::vector<Variant> vars;
  for (auto& v : variants())
    if (v.name.find(only) != std::string::npos) vars.push_back(v);
  std::vector<int64_t> Ls;
  for (int64_t L = min_L; L <= max_L; L *= 2) Ls.push_back(L);
  std::vector<Row> rows;
  const double t_start = now();
  Generator gen(2024);
  for (int64_t L : Ls) {
    manual_seed(uint64_t(L));
    Tensor q0 = Tensor::randn({1, kH, L, kE}), k0 = Tensor::randn({1, kH, L, kE}), v0 = Tensor::randn({1, kH, L, kE}),
           G = Tensor::randn({1, kH, L, kE});
    Tensor exact_r, exact_s, ts;
    if (L <= max_error_L) {
      NoGradGuard ng;
      ts = series_inputs(L, gen);
      exact_r = dense_tiled(q0, k0, v0);
      exact_s = dense_tiled(ts, ts, ts);
    }
    for (const auto& var : vars) {
      if (L > var.max_L) continue;
      Row r;
      r.variant = var.name;
      r.L = L;
      std::vector<double> times;
      // The first call warms up: its buffers are faulted in and then reused from the block cache,
      // as in every step of a training loop after the first. It is dropped unless it alone took
      // longer than kWarmupKeepS (then it is the one timing; the dense path at 16,384).
      bool warm = false;
      const double t0 = now();
      while (times.empty() || (times.size() < 25 && now() - t0 < budget_s)) {
        Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
        reset_peak_memory();
        const int64_t base = memory_stats().current_bytes;
        const double s = now();
        Tensor o = var.run(q, k, v);
        if (!o.defined()) break;
        sum(o * G).backward();
        const double t = now() - s;
        r.peak_mib = double(memory_stats().peak_bytes - base) / (1024.0 * 1024.0);
        if (!warm && t < kWarmupKeepS) {
          warm = true;
          continue;
        }
        times.push_back(t);
      }
      empty_cache();  // the next case starts with an empty cache (the dense path at 16,384 leaves GiBs)
      if (!times.empty()) {
        std::sort(times.begin(), times.end());
        r.ms = times[times.size() / 2] * 1e3;
      }
      if (L <= max_error_L) {
        NoGradGuard ng;
        Tensor a = var.run(q0, k0, v0), b = var.run(ts, ts, ts);
        if (a.defined()) r.err_random = rel_error(a, exact_r);
        if (b.defined()) r.err_series = rel_error(b, exact_s);
      }
      std::printf("%-26s L=%6lld  fwd+bwd %10.2f ms  peak %9.1f MiB  err random %-9s series %-9s\n", r.variant.c_str(),
                  (long long)L, r.ms, r.peak_mib, fmt(r.err_random).c_str(), fmt(r.err_series).c_str());
      std::fflush(stdout);
      rows.push_back(r);
    }
  }
  const double total_s = now() - t_start;
  auto torch = torch_csv.empty() ? decltype(read_torch("")){} : read_torch(torch_csv);

  // ---- CSV
  {
    std::ofstream f(out_dir + "/zoo.csv");
    f << "variant,L,fwd_bwd_ms,peak_MiB,err_random,err_series\n";
    for (const auto& r : rows)
      f << r.variant << ',' << r.L << ',' << r.ms << ',' << r.peak_mib << ',' << r.err_random << ',' << r.err_series
        << '\n';
  }
  auto find = [&](const std::string& v, int64_t L) -> const Row* {
    for (const auto& r : rows)
      if (r.variant == v && r.L == L) return &r;
    return nullptr;
  };
  // ---- Markdown tables
  std::ostringstream md;
  md << "CPU: " << cpu << ", " << get_num_threads() << " threads; B = 1, H = 4, E = 64, float32; suite time "
     << fmt(total_s, "%.0f") << " s.\n\n";
  auto table = [&](const char* title, auto&& cell) {
    md << "#### " << title << "\n\n| variant |";
    for (int64_t L : Ls) md << ' ' << L << " |";
    md << "\n|---|";
    for (size_t i = 0; i < Ls.size(); ++i) md << "---:|";
    md << '\n';
    for (const auto& var : vars) {
      md << "| " << var.name << " |";
      for (int64_t L : Ls) {
        const Row* r = find(var.name, L);
        md << ' ' << (r ? cell(*r) : std::string("-")) << " |";
      }
      md << '\n';
    }
    md << '\n';
  };
  table("Forward+backward time (ms)", [](const Row& r) { return fmt(r.ms, "%.1f"); });
  table("Peak memory of forward+backward (MiB)", [](const Row& r) { return fmt(r.peak_mib, "%.1f"); });
  table("Relative error vs exact softmax attention, random inputs",
        [](const Row& r) { return fmt(r.err_random, "%.2g"); });
  table("Relative error vs exact softmax attention, time-series inputs",
        [](const Row& r) { return fmt(r.err_series, "%.2g"); });
  // Ratios to the weights-storing dense path at L = 16,384 and growth from 1,024 to 65,536.
  md << "#### Against dense (weights-storing) at L = 16384, and growth from L = 1024\n\n"
     << "| variant | time / dense | peak / dense | time(65536) / time(1024) (linear: 64) |\n|---|---:|---:|---:|\n";
  const Row* dref = find("dense (weights-storing)", 16384);
  for (const auto& var : vars) {
    const Row* r = find(var.name, 16384);
    const Row *a = find(var.name, 1024), *b = find(var.name, 65536);
    md << "| " << var.name << " | " << (r && dref ? fmt(r->ms / dref->ms, "%.3f") : "-") << " | "
       << (r && dref ? fmt(r->peak_mib / dref->peak_mib, "%.4f") : "-") << " | "
       << (a && b ? fmt(b->ms / a->ms, "%.0f") : "-") << " |\n";
  }
  md << '\n';
  if (!torch.empty()) {
    md << "#### PyTorch " << "(same job, same threads): forward+backward ms and attn's speed-up\n\n"
       << "| variant | L | PyTorch ms | attn ms | attn speed-up |\n|---|---:|---:|---:|---:|\n";
    for (const auto& [key, ms] : torch) {
      const Row* r = find(key.first, key.second);
      md << "| " << key.first << " | " << key.second << " | " << fmt(ms, "%.1f") << " | "
         << (r ? fmt(r->ms, "%.1f") : "-") << " | " << (r ? fmt(ms / r->ms, "%.1f") + "x" : "-") << " |\n";
    }
    md << '\n';
  }
  {
    std::ofstream f(out_dir + "/zoo.md");
    f << md.str();
  }
  // ---- Plots (log-log for time and memory, log-log error)
  auto plot = [&](const std::string& file, const std::string& title, const std::string& ylabel, auto&& value) {
    plot::Figure fig(900, 520);
    fig.title(title).xlabel("log2 L").ylabel(ylabel);
    for (const auto& var : vars) {
      std::vector<double> xs, ys;
      for (int64_t L : Ls) {
        const Row* r = find(var.name, L);
        const double y = r ? value(*r) : NAN;
        if (r && std::isfinite(y) && y > 0) {
          xs.push_back(std::log2(double(L)));
          ys.push_back(std::log10(y));
        }
      }
      if (!xs.empty()) fig.line(xs, ys, var.name, plot::Style().with_dashes(var.family == "dense"));
    }
    fig.legend(plot::Legend::TopLeft);
    fig.save(out_dir + "/" + file);
  };
  plot("zoo_time.svg", "attention zoo: forward+backward time (B=1, H=4, E=64)", "log10 ms",
       [](const Row& r) { return r.ms; });
  plot("zoo_memory.svg", "attention zoo: peak memory of forward+backward", "log10 MiB",
       [](const Row& r) { return r.peak_mib; });
  plot("zoo_error_random.svg", "attention zoo: relative error vs exact attention, random inputs",
       "log10 relative error", [](const Row& r) { return r.err_random; });
  plot("zoo_error_series.svg", "attention zoo: relative error vs exact attention, time-series inputs",
       "log10 relative error", [](const Row& r) { return r.err_series; });
  std::printf("suite %.0f s; tables and plots in %s (zoo.md, zoo.csv, zoo_time.svg, zoo_memory.svg, "
              "zoo_error_random.svg, zoo_error_series.svg)\n",
              total_s, out_dir.c_str());
  return 0;
}
