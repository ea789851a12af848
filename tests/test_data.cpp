#include <attn/data/sine.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

using namespace attn::data;
using Catch::Matchers::Contains;

namespace {

SineAnomalyOptions small(const std::string& kind, std::int64_t samples = 200, int channels = 1) {
  SineAnomalyOptions o;
  o.samples = samples;
  o.length = 100;
  o.anomaly = kind;
  o.channels = channels;
  o.seed = 7;
  return o;
}

bool inside(const SineAnomalyDataset& d, std::int64_t i, std::int64_t t) {
  return t >= d.seg_start[static_cast<std::size_t>(i)] && t < d.seg_end[static_cast<std::size_t>(i)];
}

}  // namespace

TEST_CASE("data: Rng helpers: ranges and moments", "[data]") {
  Rng rng(123);
  double sum = 0.0, sq = 0.0, umin = 1.0, umax = 0.0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform();
    umin = std::min(umin, u);
    umax = std::max(umax, u);
    const double z = rng.normal();
    sum += z;
    sq += z * z;
  }
  CHECK(umin >= 0.0);
  CHECK(umax < 1.0);
  CHECK(umin < 1e-4);
  CHECK(umax > 1.0 - 1e-4);
  CHECK(std::abs(sum / n) < 0.01);
  CHECK(std::sqrt(sq / n) == Approx(1.0).epsilon(0.01));

  std::vector<int> hist(6, 0);
  for (int i = 0; i < 60000; ++i) ++hist[static_cast<std::size_t>(rng.below(6))];
  for (int h : hist) CHECK(std::abs(h - 10000) < 400);
  CHECK_THROWS_AS(rng.below(0), std::invalid_argument);

  Rng a(5), b(5);
  for (int i = 0; i < 10; ++i) CHECK(a.uniform(1.0, 4.0) == b.uniform(1.0, 4.0));
}

TEST_CASE("data: task A defaults: shapes, counts and label balance", "[data]") {
  const SineAnomalyDataset d = make_sine_anomaly();
  CHECK(d.samples == 5000);
  CHECK(d.length == 500);
  CHECK(d.channels == 1);
  CHECK(d.x.size() == 5000u * 500u);
  REQUIRE(d.labels.size() == 5000u);
  CHECK(std::accumulate(d.labels.begin(), d.labels.end(), 0) == 2500);
  // Shuffled: the first and second halves both hold a mix of labels.
  const int first_half = std::accumulate(d.labels.begin(), d.labels.begin() + 2500, 0);
  CHECK(first_half > 1000);
  CHECK(first_half < 1500);
  check_finite(d.x, "task A x");

  for (std::int64_t i = 0; i < d.samples; ++i) {
    const auto si = static_cast<std::size_t>(i);
    if (d.labels[si] == 0) {
      CHECK(d.seg_start[si] == -1);
      CHECK(d.seg_end[si] == -1);
      CHECK(d.kinds[si] == AnomalyKind::None);
      continue;
    }
    CHECK(d.kinds[si] == AnomalyKind::Flat);
    const std::int64_t s = d.seg_start[si], e = d.seg_end[si];
    CHECK(s >= 0);
    CHECK(s <= 450);  // int(U(0, 0.9) * 500) < 450
    CHECK(e - s >= 50);
    CHECK((e - s < 250 || e == 500));
    CHECK(e <= 500);
    // Flat: every point of the segment equals the first one.
    for (std::int64_t t = s; t < e; ++t) REQUIRE(d.at(i, t) == d.at(i, s));
  }
  // Normal series are sines: first value sin(0) = 0, amplitude within [1, 10].
  for (std::int64_t i = 0; i < 50; ++i) {
    if (d.labels[static_cast<std::size_t>(i)] == 1) continue;
    CHECK(d.at(i, 0) == 0.0f);
    float m = 0.0f;
    for (float v : d.series(i)) m = std::max(m, std::abs(v));
    CHECK(m >= 0.99f);
    CHECK(m <= 10.0f);
  }
}

TEST_CASE("data: task A is reproducible from the seed", "[data]") {
  const auto a = make_sine_anomaly(small("mix"));
  const auto b = make_sine_anomaly(small("mix"));
  CHECK(a.x == b.x);
  CHECK(a.labels == b.labels);
  CHECK(a.seg_start == b.seg_start);
  CHECK(a.seg_end == b.seg_end);

  auto o = small("mix");
  o.seed = 8;
  const auto c = make_sine_anomaly(o);
  CHECK(c.x != a.x);
  CHECK(c.labels != a.labels);

  // Series i does not depend on how many series are generated.
  auto n10 = small("flat", 10), n30 = small("flat", 30);
  n10.anomaly_fraction = n30.anomaly_fraction = 0.0;
  const auto d10 = make_sine_anomaly(n10), d30 = make_sine_anomaly(n30);
  CHECK(std::equal(d10.x.begin(), d10.x.end(), d30.x.begin()));
}

TEST_CASE("data: anomalies change only their segment", "[data]") {
  // Same seed, different kinds: identical draws for freq, amp and the segment, so outside the
  // segment the series must be identical to the flat version.
  const auto flat = make_sine_anomaly(small("flat"));
  for (const char* kind : {"zero", "noise", "spike"}) {
    INFO(kind);
    const auto other = make_sine_anomaly(small(kind));
    REQUIRE(other.labels == flat.labels);
    REQUIRE(other.seg_start == flat.seg_start);
    REQUIRE(other.seg_end == flat.seg_end);
    for (std::int64_t i = 0; i < flat.samples; ++i) {
      if (flat.labels[static_cast<std::size_t>(i)] == 0) {
        for (std::int64_t t = 0; t < flat.length; ++t) REQUIRE(other.at(i, t) == flat.at(i, t));
        continue;
      }
      int changed = 0;
      for (std::int64_t t = 0; t < flat.length; ++t) {
        if (!inside(flat, i, t))
          REQUIRE(other.at(i, t) == flat.at(i, t));
        else
          changed += other.at(i, t) != flat.at(i, t);
      }
      // A zero segment starting at t = 0 equals the flat one there: sin(0) = 0.
      if (std::string(kind) != "zero" || flat.at(i, flat.seg_start[static_cast<std::size_t>(i)]) != 0.0f) CHECK(changed > 0);
    }
  }
}

TEST_CASE("data: anomaly kinds have their documented form", "[data]") {
  const auto flat = make_sine_anomaly(small("flat"));
  const auto zero = make_sine_anomaly(small("zero"));
  const auto noise = make_sine_anomaly(small("noise"));
  // Two channels: outside the spikes sin^2 + cos^2 = amp^2, which recovers amp and shows that
  // nothing but the spikes changed.
  const auto spike = make_sine_anomaly(small("spike", 200, 2));
  int anomalous = 0;
  for (std::int64_t i = 0; i < flat.samples; ++i) {
    if (flat.labels[static_cast<std::size_t>(i)] == 0) continue;
    ++anomalous;
    const std::int64_t s = flat.seg_start[static_cast<std::size_t>(i)], e = flat.seg_end[static_cast<std::size_t>(i)];
    for (std::int64_t t = s; t < e; ++t) {
      REQUIRE(zero.at(i, t) == 0.0f);
      REQUIRE(flat.at(i, t) == flat.at(i, s));
    }
    REQUIRE(spike.seg_start[static_cast<std::size_t>(i)] == s);
    const std::int64_t probe = s > 0 ? 0 : e;  // a point outside the segment
    const double amp = std::hypot(spike.at(i, probe, 0), spike.at(i, probe, 1));
    std::vector<std::int64_t> spikes;
    for (std::int64_t t = s; t < e; ++t) {
      const double r = std::hypot(spike.at(i, t, 0), spike.at(i, t, 1));
      if (r > 1.5 * amp) {
        spikes.push_back(t);
        // Same value on both channels, between 2 and 4 times amp.
        CHECK(spike.at(i, t, 0) == spike.at(i, t, 1));
        CHECK(std::abs(spike.at(i, t, 0)) >= 2.0 * amp * 0.9999);
        CHECK(std::abs(spike.at(i, t, 0)) <= 4.0 * amp * 1.0001);
      } else {
        REQUIRE(r == Approx(amp).epsilon(1e-5));
      }
    }
    CHECK(spikes.size() >= 3);
    CHECK(spikes.size() <= 8);
    for (std::size_t k = 1; k < spikes.size(); ++k) CHECK(spikes[k] - spikes[k - 1] >= 2);  // isolated
    // Noise replaces the signal with something that is not constant.
    double m = 0.0;
    for (std::int64_t t = s; t < e; ++t) m += noise.at(i, t);
    m /= static_cast<double>(e - s);
    double var = 0.0;
    for (std::int64_t t = s; t < e; ++t) var += (noise.at(i, t) - m) * (noise.at(i, t) - m);
    CHECK(var > 0.0);
  }
  CHECK(anomalous == 100);

  const auto mix = make_sine_anomaly(small("mix"));
  std::set<AnomalyKind> seen;
  for (std::int64_t i = 0; i < mix.samples; ++i) {
    const auto k = mix.kinds[static_cast<std::size_t>(i)];
    CHECK((k == AnomalyKind::None) == (mix.labels[static_cast<std::size_t>(i)] == 0));
    seen.insert(k);
  }
  CHECK(seen.size() == 5);
  CHECK(std::string(to_string(AnomalyKind::Spike)) == "spike");
}

TEST_CASE("data: noise anomaly has the documented spread", "[data]") {
  // std of N(0, (0.5 amp)^2) pooled over many segments, each scaled by its own amp: amp is
  // recovered from the normal cosine channel as sqrt(sin^2 + cos^2) at t = 0 (= amp * 1).
  auto o = small("noise", 400, 2);
  const auto d = make_sine_anomaly(o);
  double sq = 0.0;
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < d.samples; ++i) {
    if (d.labels[static_cast<std::size_t>(i)] == 0 || d.seg_start[static_cast<std::size_t>(i)] == 0) continue;
    const double amp = std::hypot(d.at(i, 0, 0), d.at(i, 0, 1));
    for (std::int64_t t = d.seg_start[static_cast<std::size_t>(i)]; t < d.seg_end[static_cast<std::size_t>(i)]; ++t) {
      const double z = d.at(i, t, 0) / (0.5 * amp);
      sq += z * z;
      ++count;
    }
  }
  REQUIRE(count > 1000);
  CHECK(std::sqrt(sq / static_cast<double>(count)) == Approx(1.0).epsilon(0.05));
}

TEST_CASE("data: multichannel layout: sine, cosine, random walk", "[data]") {
  const auto one = make_sine_anomaly(small("flat", 60, 1));
  const auto three = make_sine_anomaly(small("flat", 60, 3));
  CHECK(three.channels == 3);
  CHECK(three.x.size() == 60u * 100u * 3u);
  CHECK(three.labels == one.labels);
  double step_sq = 0.0;
  std::int64_t steps = 0;
  for (std::int64_t i = 0; i < three.samples; ++i) {
    const bool anomalous = three.labels[static_cast<std::size_t>(i)] == 1;
    // Channel 0 is the same series as in the single-channel dataset.
    for (std::int64_t t = 0; t < three.length; ++t) REQUIRE(three.at(i, t, 0) == one.at(i, t));
    // Outside anomalies sin^2 + cos^2 is constant (amp^2).
    const double amp2 = three.at(i, 0, 0) * three.at(i, 0, 0) + three.at(i, 0, 1) * three.at(i, 0, 1);
    for (std::int64_t t = 0; t < three.length; ++t) {
      if (anomalous && inside(three, i, t)) {
        // Flat applies to the cosine channel on the same segment.
        CHECK(three.at(i, t, 1) == three.at(i, three.seg_start[static_cast<std::size_t>(i)], 1));
        continue;
      }
      const double r2 = three.at(i, t, 0) * three.at(i, t, 0) + three.at(i, t, 1) * three.at(i, t, 1);
      REQUIRE(r2 == Approx(amp2).epsilon(1e-5));
    }
    for (std::int64_t t = 1; t < three.length; ++t) {
      const double dstep = three.at(i, t, 2) - three.at(i, t - 1, 2);
      step_sq += dstep * dstep;
      ++steps;
    }
    CHECK(std::abs(three.at(i, 0, 2)) < 0.6);  // one N(0, 0.1) step
  }
  CHECK(std::sqrt(step_sq / static_cast<double>(steps)) == Approx(0.1).epsilon(0.03));
}

TEST_CASE("data: scale divides each series by max|x| of its first channel", "[data]") {
  auto o = small("spike", 40, 2);
  const auto raw = make_sine_anomaly(o);
  o.scale = true;
  const auto scaled = make_sine_anomaly(o);
  for (std::int64_t i = 0; i < raw.samples; ++i) {
    float m_raw = 0.0f, m_scaled = 0.0f;
    for (std::int64_t t = 0; t < raw.length; ++t) {
      m_raw = std::max(m_raw, std::abs(raw.at(i, t, 0)));
      m_scaled = std::max(m_scaled, std::abs(scaled.at(i, t, 0)));
    }
    CHECK(m_scaled == Approx(1.0f).epsilon(1e-6));
    for (std::int64_t t = 0; t < raw.length; t += 17)
      CHECK(scaled.at(i, t, 1) == Approx(raw.at(i, t, 1) / m_raw).margin(1e-6));
  }
}

TEST_CASE("data: anomaly_fraction and option validation", "[data]") {
  auto o = small("zero", 100);
  o.anomaly_fraction = 0.3;
  const auto d = make_sine_anomaly(o);
  CHECK(std::accumulate(d.labels.begin(), d.labels.end(), 0) == 30);
  o.anomaly_fraction = 0.0;
  const auto none = make_sine_anomaly(o);
  CHECK(std::accumulate(none.labels.begin(), none.labels.end(), 0) == 0);

  auto bad = small("wiggle");
  CHECK_THROWS_WITH(make_sine_anomaly(bad), Contains("make_sine_anomaly") && Contains("wiggle"));
  bad = small("flat", 10, 4);
  CHECK_THROWS_WITH(make_sine_anomaly(bad), Contains("channels"));
  bad = small("flat");
  bad.length = 1;
  CHECK_THROWS_WITH(make_sine_anomaly(bad), Contains("length"));
  bad = small("flat");
  bad.samples = 0;
  CHECK_THROWS_AS(make_sine_anomaly(bad), std::invalid_argument);
  bad = small("flat");
  bad.anomaly_fraction = 1.5;
  CHECK_THROWS_AS(make_sine_anomaly(bad), std::invalid_argument);

  // Very short series still get a non-empty segment inside the series.
  auto tiny = small("flat", 50);
  tiny.length = 4;
  const auto t = make_sine_anomaly(tiny);
  for (std::size_t i = 0; i < t.labels.size(); ++i)
    if (t.labels[i] == 1) {
      CHECK(t.seg_end[i] > t.seg_start[i]);
      CHECK(t.seg_end[i] <= 4);
    }
}

TEST_CASE("data: split: sizes, disjoint cover, reproducible", "[data]") {
  const SplitIndices s = split(5000);
  CHECK(s.train.size() == 3500);
  CHECK(s.val.size() == 750);
  CHECK(s.test.size() == 750);
  std::vector<std::int64_t> all = s.train;
  all.insert(all.end(), s.val.begin(), s.val.end());
  all.insert(all.end(), s.test.begin(), s.test.end());
  std::vector<std::int64_t> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::int64_t> iota(5000);
  std::iota(iota.begin(), iota.end(), std::int64_t{0});
  CHECK(sorted == iota);
  CHECK(all != iota);  // shuffled

  const SplitIndices again = split(5000);
  CHECK(again.train == s.train);
  const SplitIndices other = split(5000, 0.7, 0.15, 1);
  CHECK(other.train != s.train);

  const SplitIndices ten = split(10);
  CHECK(ten.train.size() == 7);
  CHECK(ten.val.size() == 1);  // floor(1.5)
  CHECK(ten.test.size() == 2);
  const SplitIndices hundred = split(100);
  CHECK(hundred.train.size() == 70);
  CHECK(hundred.val.size() == 15);
  CHECK(hundred.test.size() == 15);
  const SplitIndices empty = split(0);
  CHECK(empty.train.empty());
  CHECK(empty.test.empty());
  CHECK_THROWS_AS(split(10, 0.9, 0.2), std::invalid_argument);
  CHECK_THROWS_AS(split(10, -0.1, 0.2), std::invalid_argument);
}

TEST_CASE("data: gather builds a sub-dataset", "[data]") {
  const auto d = make_sine_anomaly(small("mix", 20, 2));
  const std::vector<std::int64_t> idx{5, 0, 19};
  const auto g = gather(d, idx);
  CHECK(g.samples == 3);
  CHECK(g.length == d.length);
  CHECK(g.channels == 2);
  CHECK(g.x.size() == 3u * 100u * 2u);
  for (std::size_t k = 0; k < idx.size(); ++k) {
    const auto i = static_cast<std::int64_t>(k);
    CHECK(g.labels[k] == d.labels[static_cast<std::size_t>(idx[k])]);
    CHECK(g.seg_start[k] == d.seg_start[static_cast<std::size_t>(idx[k])]);
    CHECK(g.kinds[k] == d.kinds[static_cast<std::size_t>(idx[k])]);
    for (std::int64_t t = 0; t < d.length; ++t) {
      REQUIRE(g.at(i, t, 0) == d.at(idx[k], t, 0));
      REQUIRE(g.at(i, t, 1) == d.at(idx[k], t, 1));
    }
  }
  CHECK_THROWS_WITH(gather(d, {3, 20}), Contains("index 20") && Contains("20 samples"));
}

TEST_CASE("data: check_finite names the data and the first bad index", "[data]") {
  std::vector<float> v{1.0f, 2.0f, 3.0f, 4.0f};
  CHECK_NOTHROW(check_finite(v, "x"));
  v[3] = std::numeric_limits<float>::quiet_NaN();
  v[2] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(check_finite(v, "train inputs"), Contains("train inputs") && Contains("index 2 of 4"));
  std::vector<double> w{0.0, -std::numeric_limits<double>::infinity()};
  CHECK_THROWS_AS(check_finite(w, "w"), std::invalid_argument);
}

TEST_CASE("data: task B: sine series and windows", "[data]") {
  const std::vector<float> s = sine_series();
  REQUIRE(s.size() == 1000);
  CHECK(s[0] == 0.0f);
  CHECK(s[999] == static_cast<float>(std::sin(50.0)));
  CHECK(s[500] == static_cast<float>(std::sin(500.0 * 50.0 / 999.0)));

  const WindowedSeries w = make_windows(s);
  CHECK(w.count == 980);
  CHECK(w.window == 20);
  CHECK(w.x.size() == 980u * 20u);
  CHECK(w.y.size() == 980u);
  for (std::int64_t i = 0; i < w.count; i += 37) {
    for (std::int64_t j = 0; j < 20; ++j) REQUIRE(w.x[static_cast<std::size_t>(i * 20 + j)] == s[static_cast<std::size_t>(i + j)]);
    CHECK(w.y[static_cast<std::size_t>(i)] == s[static_cast<std::size_t>(i + 20)]);
  }
  CHECK(w.y.back() == s.back());

  const WindowedSeries last = make_windows(s, 999);
  CHECK(last.count == 1);
  CHECK_THROWS_WITH(make_windows(s, 1000), Contains("make_windows") && Contains("size 1000"));
  CHECK_THROWS_AS(make_windows(s, 0), std::invalid_argument);
  CHECK_THROWS_AS(make_windows(std::vector<float>{}, 1), std::invalid_argument);
  CHECK(sine_series(1).size() == 1);
  CHECK(sine_series(5, 4.0)[4] == static_cast<float>(std::sin(4.0)));
  CHECK_THROWS_AS(sine_series(0), std::invalid_argument);
}
