// Unsupervised anomaly detection by forecast error (seed 001's compute_anomaly_score): a causal
// TCN (nn::TemporalBlock, dilations 1, 2, 4, 8) learns to forecast the next point of every
// training series, labels unused; the squared one-step error per time step becomes a score per
// series (metrics::anomaly_scores: the largest mean error over --window steps), and a series is
// flagged when its score exceeds the --percentile-th percentile of the training series' scores
// (anomalies are assumed rare: --anomaly-fraction 0.1). The labels and anomaly positions of the
// generated data are used only to report: ROC-AUC of the scores, precision / recall / F1 of the
// flags, and how often the window of largest error ends inside the anomaly (or within --window
// steps after its start or end, where a forecaster first sees it). Writes scores.svg (normal vs
// anomalous scores of the test series and the threshold) and errors.svg (three anomalous test
// series with their error curves).
#include <attn/attn.hpp>
#include <attn/data/sine.hpp>
#include <attn/metrics/anomaly_score.hpp>
#include <attn/metrics/metrics.hpp>
#include <attn/nn/conv.hpp>
#include <attn/plot/svg.hpp>

#include <cmath>

#include "common.hpp"

using namespace attn;

namespace {

// x [B, 1, T] -> forecasts [B, 1, T]: output t predicts x[t + 1] from x[0..t].
class Forecaster : public nn::Module {
 public:
  explicit Forecaster(int64_t ch)
      : b1(nn::TemporalBlockOptions(1, ch, 3).dilation(1)),
        b2(nn::TemporalBlockOptions(ch, ch, 3).dilation(2)),
        b3(nn::TemporalBlockOptions(ch, ch, 3).dilation(4)),
        b4(nn::TemporalBlockOptions(ch, ch, 3).dilation(8)),
        out(nn::Conv1dOptions(ch, 1, 1)) {
    register_module("b1", b1);
    register_module("b2", b2);
    register_module("b3", b3);
    register_module("b4", b4);
    register_module("out", out);
  }
  Tensor forward(const Tensor& x) const { return out.forward(b4.forward(b3.forward(b2.forward(b1.forward(x))))); }
  nn::TemporalBlock b1, b2, b3, b4;
  nn::Conv1d out;
};

Tensor batch_of(const data::SineAnomalyDataset& ds, const std::vector<int64_t>& idx, size_t b, size_t e) {
  std::vector<float> x;
  for (size_t k = b; k < e; ++k) {
    const auto s = ds.series(idx[k]);
    x.insert(x.end(), s.begin(), s.end());
  }
  return Tensor::from_vector(x, {int64_t(e - b), 1, ds.length});
}

// Squared one-step errors [n, T] (step 0 has no forecast: 0).
std::vector<double> errors_of(const Forecaster& m, const data::SineAnomalyDataset& ds, const std::vector<int64_t>& idx) {
  NoGradGuard ng;
  std::vector<double> err;
  const int64_t T = ds.length;
  for (size_t b = 0; b < idx.size(); b += 256) {
    const size_t e = std::min(idx.size(), b + 256);
    const Tensor x = batch_of(ds, idx, b, e);
    const Tensor d = sub(narrow(m.forward(x), 2, 0, T - 1), narrow(x, 2, 1, T - 1));
    const auto dv = mul(d, d).contiguous().to_vector<float>();
    for (size_t i = 0; i < e - b; ++i) {
      err.push_back(0.0);
      for (int64_t t = 0; t < T - 1; ++t) err.push_back(dv[i * size_t(T - 1) + size_t(t)]);
    }
  }
  return err;
}

}  // namespace

int main(int argc, char** argv) {
  examples::CommonOptions co;
  co.epochs = 8;
  co.batch_size = 32;
  co.lr = 3e-3;
  co.out_dir = "out/anomaly_score";
  int64_t samples = 1000, length = 300, channels = 16, window = 10;
  double fraction = 0.1, pct = 90.0;  // the threshold expects at most 100 - pct percent anomalies
  std::string anomaly = "flat";
  CLI::App app{"attn example: unsupervised anomaly scores from the forecast error of a causal TCN, with a percentile "
               "threshold"};
  examples::add_common_flags(app, co);
  for (const char* f : {"--hidden", "--save", "--load", "--stop-after"}) app.remove_option(app.get_option(f));
  app.add_option("--samples", samples, "series")->check(CLI::Range(int64_t(20), int64_t(1000000)));
  app.add_option("--length", length, "points per series")->check(CLI::Range(int64_t(32), int64_t(100000)));
  app.add_option("--anomaly", anomaly, "anomaly kind")->check(CLI::IsMember({"flat", "zero", "noise", "spike", "mix"}));
  app.add_option("--anomaly-fraction", fraction, "share of anomalous series")->check(CLI::Range(0.01, 0.5));
  app.add_option("--channels", channels, "TCN channels")->check(CLI::Range(int64_t(1), int64_t(256)));
  app.add_option("--window", window, "steps over which the error is averaged before taking the maximum")
      ->check(CLI::Range(int64_t(1), int64_t(100000)));
  app.add_option("--percentile", pct, "threshold: this percentile of the training series' scores")->check(CLI::Range(50.0, 100.0));
  if (const int rc = examples::parse(app, argc, argv); rc >= 0) return rc;
  if (const int rc = examples::apply_common(co, "anomaly_score"); rc >= 0) return rc;
  if (window > length) {
    std::fprintf(stderr, "anomaly_score: --window %lld is longer than --length %lld\n", (long long)window, (long long)length);
    return 2;
  }
  try {
    data::SineAnomalyOptions dopt;
    dopt.samples = samples;
    dopt.length = length;
    dopt.anomaly = anomaly;
    dopt.anomaly_fraction = fraction;
    dopt.seed = co.seed;
    dopt.scale = true;
    const auto ds = data::make_sine_anomaly(dopt);
    const auto split = data::split(ds.samples, 0.7, 0.15, co.seed);
    std::printf("anomaly_score: %lld series x %lld points, %s anomalies in %.0f%%, train/val/test %zu/%zu/%zu, causal TCN "
                "(%lld channels, dilations 1-8), labels unused in training\n",
                (long long)samples, (long long)length, anomaly.c_str(), 100 * fraction, split.train.size(), split.val.size(),
                split.test.size(), (long long)channels);

    Forecaster model(channels);
    optim::Adam adam(model.parameters(), optim::AdamOptions(co.lr));
    std::vector<int64_t> order = split.train;
    const int64_t T = length;
    examples::Timer timer;
    for (int epoch = 0; epoch < co.epochs; ++epoch) {
      examples::shuffle(order);
      double sum = 0;
      int64_t nb = 0;
      for (size_t b = 0; b < order.size(); b += size_t(co.batch_size)) {
        const size_t e = std::min(order.size(), b + size_t(co.batch_size));
        const Tensor x = batch_of(ds, order, b, e);
        const Tensor loss = mse_loss(narrow(model.forward(x), 2, 0, T - 1), narrow(x, 2, 1, T - 1));
        adam.zero_grad();
        loss.backward();
        adam.step();
        sum += examples::require_finite(loss.item<double>(), "training loss");
        ++nb;
      }
      if (!co.quiet) std::printf("epoch %2d  train one-step MSE %.6f\n", epoch + 1, sum / double(nb));
    }

    // ---- scores, threshold from the training series, evaluation on the test series ----
    const auto train_scores = metrics::anomaly_scores(errors_of(model, ds, split.train), T, window).scores;
    const double threshold = metrics::percentile(train_scores, pct);
    const auto test_err = errors_of(model, ds, split.test);
    const auto test = metrics::anomaly_scores(test_err, T, window);
    const auto flags = metrics::flag_above(test.scores, threshold);
    std::vector<int> yt;
    int64_t tp = 0, fp = 0, fn = 0, anomalous = 0, located = 0;
    for (size_t k = 0; k < split.test.size(); ++k) {
      const size_t i = size_t(split.test[k]);
      yt.push_back(ds.labels[i]);
      tp += flags[k] && ds.labels[i];
      fp += flags[k] && !ds.labels[i];
      fn += !flags[k] && ds.labels[i];
      if (ds.labels[i] && ds.seg_start[i] >= 0) {
        ++anomalous;
        const int64_t p = test.peak[k];  // the window [p - window + 1, p] overlaps the anomaly or its end
        located += p >= ds.seg_start[i] && p - window + 1 <= ds.seg_end[i] ? 1 : 0;
      }
    }
    const double prec = tp + fp ? double(tp) / double(tp + fp) : 0.0, rec = tp + fn ? double(tp) / double(tp + fn) : 0.0;
    std::printf("threshold: %.4g (the %.0fth percentile of %zu training scores, window %lld); training %.1fs\n", threshold,
                pct, train_scores.size(), (long long)window, timer.seconds());
    const bool both = anomalous > 0 && anomalous < int64_t(yt.size());  // ROC-AUC needs both classes
    std::printf("test (%zu series, %lld anomalous): ROC-AUC of the scores %s; flagged %lld: precision %.4f  recall %.4f  "
                "F1 %.4f\n",
                split.test.size(), (long long)anomalous,
                both ? std::to_string(metrics::roc_auc(yt, test.scores)).substr(0, 6).c_str() : "n/a (one class)",
                (long long)(tp + fp), prec, rec, prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0.0);
    if (anomalous > 0)
      std::printf("  the window of largest error overlaps the anomaly in %.1f%% of anomalous series\n",
                  100.0 * double(located) / double(anomalous));

    // ---- plots ----
    std::vector<double> xs_n, ys_n, xs_a, ys_a;
    for (size_t k = 0; k < yt.size(); ++k) (yt[k] ? xs_a : xs_n).push_back(double(k)), (yt[k] ? ys_a : ys_n).push_back(test.scores[k]);
    plot::Figure sf(900, 420);
    sf.title("anomaly scores of the test series (max windowed mean squared forecast error)").xlabel("test series").ylabel("score");
    sf.scatter(xs_n, ys_n, "normal");
    sf.scatter(xs_a, ys_a, "anomalous");
    sf.hline(threshold, "threshold");
    sf.save(co.out_dir + "/scores.svg");
    plot::Grid grid(1, 3, 460, 280);
    grid.title("anomalous test series (shaded: anomaly) and the squared forecast error (right axis)");
    int shown = 0;
    for (size_t k = 0; k < yt.size() && shown < 3; ++k) {
      const size_t i = size_t(split.test[k]);
      if (!yt[k]) continue;
      plot::Figure& f = grid.at(0, shown++);
      f.title("series " + std::to_string(i)).xlabel("time step").ylabel("signal");
      f.vspan(double(ds.seg_start[i]), double(ds.seg_end[i]), "anomaly");
      f.line(ds.series(int64_t(i)), "signal");
      f.area(std::vector<double>(test_err.begin() + int64_t(k) * T, test_err.begin() + int64_t(k + 1) * T), "error",
             plot::Style().on_secondary_y());
    }
    grid.save(co.out_dir + "/errors.svg");
    std::printf("plots in %s (scores.svg, errors.svg)\n", co.out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "anomaly_score: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
