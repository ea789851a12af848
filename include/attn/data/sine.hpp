#pragma once
// Data generators for the two reference tasks, on plain std::vector: classifying sine series as
// normal or anomalous (make_sine_anomaly), and predicting the next point of a sine wave from a
// window of the previous ones (sine_series, make_windows).
//
// Reproducibility: everything is drawn from attn::Generator (core/random.hpp): std::mt19937_64,
// whose output sequence the standard fixes, through our own uniform/normal/integer transforms.
// std::uniform_real_distribution and friends are implementation-defined, so using them would make
// a dataset differ between libstdc++ and libc++. Normals are drawn with normal_unpaired (one
// Box-Muller value per call).
//
// Anomaly classification, make_sine_anomaly: each series i draws from its own engine seeded
// from (seed, i), so series i is the same whatever `samples` is, and the first channel does not
// change when more channels are requested. Per series, in this order:
//   freq ~ U(1,4), amp ~ U(1,10), t = linspace(0, 2*pi, length), x = amp*sin(freq*t)
//   anomalous series only:
//     kind   = the option's kind, or for "mix" one of flat|zero|noise|spike uniformly
//     start  = int(U(0,0.9)*length), len = max(1, int(U(0.1,0.5)*length)),
//     end    = min(start+len, length); the anomaly lives in [start, end)
//     flat:  x[start:end] = x[start]            zero: x[start:end] = 0
//     noise: x[start:end] ~ N(0, (0.5*amp)^2)   (replaces the signal)
//     spike: 3..8 spikes x[p] = ±U(2,4)*amp at distinct, non-adjacent p in [start, end)
//            (fewer when the segment is too short to hold them)
//   channel 2 (channels >= 2): amp*cos(freq*t) with the same anomaly on the same segment
//            (same flat/zero rule, same spike positions and values, its own noise draws)
//   channel 3 (channels == 3): random walk, cumulative sum of N(0, 0.1^2) steps, no anomaly
//   scale:   divide every channel of the series by max|x| of its first channel
// round(samples*anomaly_fraction) series are anomalous (label 1), the rest normal (label 0);
// which ones is a shuffle drawn from `seed`.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/random.hpp"

namespace attn::data {

// The generator of the data sets: attn::Generator (uniform(), uniform(a, b), normal(),
// normal_unpaired(), below(n), shuffle(v)).
using Rng = Generator;

enum class AnomalyKind { None, Flat, Zero, Noise, Spike };

inline const char* to_string(AnomalyKind k) {
  switch (k) {
    case AnomalyKind::None: return "none";
    case AnomalyKind::Flat: return "flat";
    case AnomalyKind::Zero: return "zero";
    case AnomalyKind::Noise: return "noise";
    case AnomalyKind::Spike: return "spike";
  }
  return "?";
}

struct SineAnomalyOptions {
  std::int64_t samples = 5000, length = 500;
  std::string anomaly = "flat";  // flat | zero | noise | spike | mix
  int channels = 1;              // 1: sine; 2: + cosine; 3: + random walk
  double anomaly_fraction = 0.5;
  std::uint64_t seed = 42;
  bool scale = false;  // scale each series so max|x| of the first channel = 1
};

struct SineAnomalyDataset {
  std::vector<float> x;            // [samples, length, channels], row-major
  std::vector<int> labels;         // class index 0..K-1; for two classes 1 = anomalous
  // The label each class index stands for: {0, 1} from the generator; from a CSV the distinct
  // labels of the file in increasing order (class k is the k-th smallest).
  std::vector<long long> class_values = {0, 1};
  std::vector<std::int64_t> seg_start, seg_end;  // anomaly in [start, end); -1 when normal
  std::vector<AnomalyKind> kinds;  // None when normal
  std::int64_t samples = 0, length = 0, channels = 0;

  float at(std::int64_t i, std::int64_t t, std::int64_t c = 0) const {
    return x[static_cast<std::size_t>((i * length + t) * channels + c)];
  }
  // One channel of one series, e.g. for plotting.
  std::vector<float> series(std::int64_t i, std::int64_t c = 0) const {
    std::vector<float> s(static_cast<std::size_t>(length));
    for (std::int64_t t = 0; t < length; ++t) s[static_cast<std::size_t>(t)] = at(i, t, c);
    return s;
  }
};

namespace detail {

// Decorrelates the per-series streams: consecutive indices give unrelated engine seeds.
inline std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return splitmix64(splitmix64(seed ^ (stream * 0xD1B54A32D192ED03ULL)) + index);
}

inline AnomalyKind parse_kind(const std::string& s) {
  if (s == "flat") return AnomalyKind::Flat;
  if (s == "zero") return AnomalyKind::Zero;
  if (s == "noise") return AnomalyKind::Noise;
  if (s == "spike") return AnomalyKind::Spike;
  if (s == "mix") return AnomalyKind::None;  // resolved per series
  throw std::invalid_argument("data::make_sine_anomaly: unknown anomaly kind '" + s +
                              "' (expected flat, zero, noise, spike or mix)");
}

struct Spikes {
  std::vector<std::int64_t> pos;
  std::vector<double> value;
};

inline Spikes draw_spikes(Generator::Locked& rng, std::int64_t start, std::int64_t end, double amp) {
  // Slots two apart keep spikes isolated: no two are adjacent.
  const std::int64_t slots = (end - start + 1) / 2;
  const std::int64_t wanted = 3 + static_cast<std::int64_t>(rng.below(6));
  const std::int64_t count = std::min(wanted, slots);
  std::vector<std::int64_t> slot(static_cast<std::size_t>(slots));
  std::iota(slot.begin(), slot.end(), std::int64_t{0});
  Spikes s;
  for (std::int64_t k = 0; k < count; ++k) {  // partial Fisher-Yates
    const auto j = k + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(slots - k)));
    std::swap(slot[static_cast<std::size_t>(k)], slot[static_cast<std::size_t>(j)]);
    const double sign = rng.uniform() < 0.5 ? -1.0 : 1.0;
    s.pos.push_back(start + 2 * slot[static_cast<std::size_t>(k)]);
    s.value.push_back(sign * rng.uniform(2.0, 4.0) * amp);
  }
  return s;
}

inline void apply_anomaly(std::vector<double>& v, AnomalyKind kind, std::int64_t start,
                          std::int64_t end, double amp, const Spikes& spikes, Generator::Locked& rng) {
  const auto b = v.begin() + start, e = v.begin() + end;
  switch (kind) {
    case AnomalyKind::Flat: std::fill(b, e, v[static_cast<std::size_t>(start)]); break;
    case AnomalyKind::Zero: std::fill(b, e, 0.0); break;
    case AnomalyKind::Noise:
      for (auto it = b; it != e; ++it) *it = rng.normal_unpaired(0.0, 0.5 * amp);
      break;
    case AnomalyKind::Spike:
      for (std::size_t k = 0; k < spikes.pos.size(); ++k)
        v[static_cast<std::size_t>(spikes.pos[k])] = spikes.value[k];
      break;
    case AnomalyKind::None: break;
  }
}

inline std::vector<double> linspace(double lo, double hi, std::int64_t n) {
  std::vector<double> t(static_cast<std::size_t>(n), lo);
  if (n < 2) return t;
  // numpy's formula: lo + i*step, with the last point exactly hi.
  const double step = (hi - lo) / static_cast<double>(n - 1);
  for (std::int64_t i = 1; i < n - 1; ++i) t[static_cast<std::size_t>(i)] = lo + static_cast<double>(i) * step;
  t.back() = hi;
  return t;
}

}  // namespace detail

inline SineAnomalyDataset make_sine_anomaly(const SineAnomalyOptions& opt = {}) {
  const std::string fn = "data::make_sine_anomaly: ";
  if (opt.samples < 1) throw std::invalid_argument(fn + "samples must be >= 1, got " + std::to_string(opt.samples));
  if (opt.length < 2) throw std::invalid_argument(fn + "length must be >= 2, got " + std::to_string(opt.length));
  if (opt.channels < 1 || opt.channels > 3)
    throw std::invalid_argument(fn + "channels must be 1, 2 or 3, got " + std::to_string(opt.channels));
  if (!(opt.anomaly_fraction >= 0.0 && opt.anomaly_fraction <= 1.0))
    throw std::invalid_argument(fn + "anomaly_fraction must be in [0, 1], got " +
                                std::to_string(opt.anomaly_fraction));
  const AnomalyKind fixed_kind = detail::parse_kind(opt.anomaly);
  const bool mix = opt.anomaly == "mix";

  const std::int64_t n = opt.samples, len = opt.length, ch = opt.channels;
  SineAnomalyDataset ds;
  ds.samples = n;
  ds.length = len;
  ds.channels = ch;
  ds.x.resize(static_cast<std::size_t>(n * len * ch));
  ds.seg_start.assign(static_cast<std::size_t>(n), -1);
  ds.seg_end.assign(static_cast<std::size_t>(n), -1);
  ds.kinds.assign(static_cast<std::size_t>(n), AnomalyKind::None);

  const auto n_anom = static_cast<std::int64_t>(std::llround(static_cast<double>(n) * opt.anomaly_fraction));
  ds.labels.assign(static_cast<std::size_t>(n), 0);
  std::fill(ds.labels.begin(), ds.labels.begin() + n_anom, 1);
  Generator order_rng(detail::stream_seed(opt.seed, 0, 0));
  order_rng.shuffle(ds.labels);

  const std::vector<double> t = detail::linspace(0.0, 6.283185307179586, len);
  std::vector<double> sine(static_cast<std::size_t>(len)), cosine, walk;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto si = static_cast<std::size_t>(i);
    Generator series_rng(detail::stream_seed(opt.seed, 1, static_cast<std::uint64_t>(i)));
    auto rng = series_rng.lock();  // one lock for the series' draws
    const double freq = rng.uniform(1.0, 4.0);
    const double amp = rng.uniform(1.0, 10.0);
    for (std::int64_t k = 0; k < len; ++k) sine[static_cast<std::size_t>(k)] = amp * std::sin(freq * t[static_cast<std::size_t>(k)]);
    if (ch >= 2) {
      cosine.resize(static_cast<std::size_t>(len));
      for (std::int64_t k = 0; k < len; ++k) cosine[static_cast<std::size_t>(k)] = amp * std::cos(freq * t[static_cast<std::size_t>(k)]);
    }
    if (ds.labels[si] == 1) {
      const AnomalyKind kind = mix ? static_cast<AnomalyKind>(1 + rng.below(4)) : fixed_kind;
      const auto start = static_cast<std::int64_t>(rng.uniform(0.0, 0.9) * static_cast<double>(len));
      const auto seg = std::max<std::int64_t>(1, static_cast<std::int64_t>(rng.uniform(0.1, 0.5) * static_cast<double>(len)));
      const std::int64_t end = std::min(start + seg, len);
      detail::Spikes spikes;
      if (kind == AnomalyKind::Spike) spikes = detail::draw_spikes(rng, start, end, amp);
      detail::apply_anomaly(sine, kind, start, end, amp, spikes, rng);
      if (ch >= 2) detail::apply_anomaly(cosine, kind, start, end, amp, spikes, rng);
      ds.kinds[si] = kind;
      ds.seg_start[si] = start;
      ds.seg_end[si] = end;
    }
    if (ch == 3) {
      // A separate stream, so the sine/cosine draws above never shift with the channel count.
      Generator walk_gen(detail::stream_seed(opt.seed, 2, static_cast<std::uint64_t>(i)));
      auto walk_rng = walk_gen.lock();
      walk.resize(static_cast<std::size_t>(len));
      double acc = 0.0;
      for (auto& w : walk) w = (acc += walk_rng.normal_unpaired(0.0, 0.1));
    }
    double scale = 1.0;
    if (opt.scale) {
      double m = 0.0;
      for (double v : sine) m = std::max(m, std::abs(v));
      if (m > 0.0) scale = 1.0 / m;
    }
    float* out = ds.x.data() + i * len * ch;
    for (std::int64_t k = 0; k < len; ++k) {
      const auto sk = static_cast<std::size_t>(k);
      out[k * ch] = static_cast<float>(sine[sk] * scale);
      if (ch >= 2) out[k * ch + 1] = static_cast<float>(cosine[sk] * scale);
      if (ch == 3) out[k * ch + 2] = static_cast<float>(walk[sk] * scale);
    }
  }
  return ds;
}

struct SplitIndices {
  std::vector<std::int64_t> train, val, test;
};

// A random permutation of 0..n-1 cut into floor(train*n), floor(val*n) and the rest. The
// 1e-9 guards against products like 0.7*n landing a hair below an exact integer.
inline SplitIndices split(std::int64_t n, double train = 0.7, double val = 0.15,
                          std::uint64_t seed = 42) {
  if (n < 0) throw std::invalid_argument("data::split: n must be >= 0, got " + std::to_string(n));
  if (!(train >= 0.0 && val >= 0.0 && train + val <= 1.0 + 1e-12))
    throw std::invalid_argument("data::split: need train, val >= 0 and train + val <= 1, got " +
                                std::to_string(train) + " and " + std::to_string(val));
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), std::int64_t{0});
  Generator rng(detail::stream_seed(seed, 3, 0));
  rng.shuffle(perm);
  const auto dn = static_cast<double>(n);
  const auto n_train = std::min(n, static_cast<std::int64_t>(std::floor(train * dn + 1e-9)));
  const auto n_val = std::min(n - n_train, static_cast<std::int64_t>(std::floor(val * dn + 1e-9)));
  SplitIndices s;
  s.train.assign(perm.begin(), perm.begin() + n_train);
  s.val.assign(perm.begin() + n_train, perm.begin() + n_train + n_val);
  s.test.assign(perm.begin() + n_train + n_val, perm.end());
  return s;
}

// The series at `indices`, in that order, as a dataset of their own.
inline SineAnomalyDataset gather(const SineAnomalyDataset& ds, const std::vector<std::int64_t>& indices) {
  SineAnomalyDataset out;
  out.samples = static_cast<std::int64_t>(indices.size());
  out.length = ds.length;
  out.channels = ds.channels;
  out.class_values = ds.class_values;
  const std::int64_t row = ds.length * ds.channels;
  out.x.reserve(static_cast<std::size_t>(out.samples * row));
  for (std::int64_t idx : indices) {
    if (idx < 0 || idx >= ds.samples)
      throw std::invalid_argument("data::gather: index " + std::to_string(idx) +
                                  " out of range for " + std::to_string(ds.samples) + " samples");
    const auto si = static_cast<std::size_t>(idx);
    out.x.insert(out.x.end(), ds.x.begin() + idx * row, ds.x.begin() + (idx + 1) * row);
    out.labels.push_back(ds.labels[si]);
    out.seg_start.push_back(ds.seg_start[si]);
    out.seg_end.push_back(ds.seg_end[si]);
    out.kinds.push_back(ds.kinds[si]);
  }
  return out;
}

// Throws std::invalid_argument naming `what` and the first NaN/Inf, before it reaches a model.
template <typename T>
void check_finite(const std::vector<T>& values, const std::string& what) {
  static_assert(std::is_floating_point<T>::value, "data::check_finite: floating-point values only");
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      throw std::invalid_argument("data::check_finite: " + what + " has a non-finite value (" +
                                  std::to_string(values[i]) + ") at index " + std::to_string(i) +
                                  " of " + std::to_string(values.size()));
}

// The next-point prediction series: sin(linspace(0, t_end, n)).
inline std::vector<float> sine_series(std::int64_t n = 1000, double t_end = 50.0) {
  if (n < 1) throw std::invalid_argument("data::sine_series: n must be >= 1, got " + std::to_string(n));
  const std::vector<double> t = detail::linspace(0.0, t_end, n);
  std::vector<float> s(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) s[i] = static_cast<float>(std::sin(t[i]));
  return s;
}

struct WindowedSeries {
  std::vector<float> x;  // [count, window], row-major: x[i, j] = series[i + j]
  std::vector<float> y;  // [count]: y[i] = series[i + window], the next point
  std::int64_t count = 0, window = 0;
};

// Sliding windows predicting the next point: count = n - window (980 for the defaults of sine_series and make_windows).
inline WindowedSeries make_windows(const std::vector<float>& series, std::int64_t window = 20) {
  const auto n = static_cast<std::int64_t>(series.size());
  if (window <= 0 || window >= n)
    throw std::invalid_argument("data::make_windows: need 0 < window < series size, got window " +
                                std::to_string(window) + " for size " + std::to_string(n));
  WindowedSeries w;
  w.window = window;
  w.count = n - window;
  w.x.reserve(static_cast<std::size_t>(w.count * window));
  for (std::int64_t i = 0; i < w.count; ++i) {
    w.x.insert(w.x.end(), series.begin() + i, series.begin() + i + window);
    w.y.push_back(series[static_cast<std::size_t>(i + window)]);
  }
  return w;
}

}  // namespace attn::data
