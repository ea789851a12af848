// Real-data forecasting: monthly CO2 at Mauna Loa (examples/data/co2_mm_mlo.csv, NOAA GML),
// the last --horizon months (24) held out and forecast in one shot from the months before them.
// Built from the library's time-series pieces:
//   data::load_series_csv      the CSV with its header, the value column by name, the date column
//                              kept, NOAA's -99.99 gap markers interpolated;
//   data::StandardScaler       fitted on the training part only, undone for the metrics;
//   nn::RevIN                  each window normalised by its own mean / std, forecasts mapped back;
//   nn::TemporalBlock (Conv1d) a small causal dilated TCN over the window;
//   nn::MultiStepHead          all 24 steps at once (direct multi-output), quantiles 0.1/0.5/0.9,
//                              trained with quantile_loss (pinball);
//   optim::EarlyStopping       on the validation months (the --val-months before the test part),
//                              the best epoch's weights restored.
// Compared with seasonal-naive (the last observed year repeated) and a linear trend + monthly
// season fitted by least squares on the same look-back window, by MAE, RMSE and MASE (scale: the
// in-sample seasonal-naive error with period 12), all in ppm; the 80% interval's coverage too.
// Writes forecast.svg (truth, forecast, interval, baselines) and metrics.csv into --out-dir.
#include <attn/attn.hpp>
#include <attn/data/scaler.hpp>
#include <attn/data/series_csv.hpp>
#include <attn/metrics/forecast.hpp>
#include <attn/nn/conv.hpp>
#include <attn/nn/forecast.hpp>
#include <attn/nn/revin.hpp>
#include <attn/optim/early_stopping.hpp>
#include <attn/plot/svg.hpp>

#include <cmath>
#include <fstream>

#include "common.hpp"

using namespace attn;

namespace {

const std::vector<double> kQuantiles = {0.1, 0.5, 0.9};

// x [B, L, 1] (scaled units) -> quantile forecasts [B, H, 1, Q] in the same units.
class Co2Model : public nn::Module {
 public:
  Co2Model(int64_t lookback, int64_t horizon, int64_t channels)
      : L_(lookback),
        H_(horizon),
        revin(nn::RevINOptions(1)),
        tcn1(nn::TemporalBlockOptions(1, channels, 3).dilation(1)),
        tcn2(nn::TemporalBlockOptions(channels, channels, 3).dilation(2)),
        tcn3(nn::TemporalBlockOptions(channels, channels, 3).dilation(4)),
        head(nn::MultiStepHeadOptions(lookback + channels, horizon, 1).quantiles(kQuantiles)) {
    register_module("revin", revin);
    register_module("tcn1", tcn1);
    register_module("tcn2", tcn2);
    register_module("tcn3", tcn3);
    register_module("head", head);
  }
  Tensor forward(const Tensor& x) {
    const int64_t B = x.size(0), Q = int64_t(kQuantiles.size());
    const Tensor z = revin.normalize(x);                                       // [B, L, 1]
    const Tensor h = tcn3.forward(tcn2.forward(tcn1.forward(transpose(z, 1, 2))));  // [B, ch, L]
    // features: the normalised window itself (a linear map of it already extends trend and
    // season) and the TCN's state at the last step
    const Tensor feat = cat({reshape(z, {B, L_}), select(h, 2, L_ - 1)}, 1);
    const Tensor q = head.forward(feat);                                       // [B, H, 1, Q]
    return reshape(revin.denormalize(reshape(q, {B, H_ * Q, 1})), {B, H_, 1, Q});
  }

 private:
  int64_t L_, H_;

 public:
  nn::RevIN revin;
  nn::TemporalBlock tcn1, tcn2, tcn3;
  nn::MultiStepHead head;
};

// Least squares y_t = a t + s_{t mod 12} over the window (13 unknowns), solved by Gaussian
// elimination on the normal equations; returns the next `horizon` values.
std::vector<double> trend_season_forecast(const std::vector<double>& window, int64_t first_month, int64_t horizon) {
  const int n = 13;
  std::vector<double> A(n * n, 0.0), b(n, 0.0);
  auto row = [&](int64_t t) {
    std::vector<double> r(n, 0.0);
    r[0] = double(t) / 12.0;
    r[size_t(1 + (first_month + t) % 12)] = 1.0;
    return r;
  };
  for (int64_t t = 0; t < int64_t(window.size()); ++t) {
    const auto r = row(t);
    for (int i = 0; i < n; ++i) {
      b[size_t(i)] += r[size_t(i)] * window[size_t(t)];
      for (int j = 0; j < n; ++j) A[size_t(i * n + j)] += r[size_t(i)] * r[size_t(j)];
    }
  }
  for (int c = 0; c < n; ++c) {  // partial pivoting
    int p = c;
    for (int i = c + 1; i < n; ++i)
      if (std::abs(A[size_t(i * n + c)]) > std::abs(A[size_t(p * n + c)])) p = i;
    if (std::abs(A[size_t(p * n + c)]) < 1e-12) throw std::invalid_argument("trend+season: the look-back window is shorter than a year");
    for (int j = 0; j < n; ++j) std::swap(A[size_t(c * n + j)], A[size_t(p * n + j)]);
    std::swap(b[size_t(c)], b[size_t(p)]);
    for (int i = c + 1; i < n; ++i) {
      const double f = A[size_t(i * n + c)] / A[size_t(c * n + c)];
      for (int j = c; j < n; ++j) A[size_t(i * n + j)] -= f * A[size_t(c * n + j)];
      b[size_t(i)] -= f * b[size_t(c)];
    }
  }
  std::vector<double> coef(n);
  for (int i = n - 1; i >= 0; --i) {
    double s = b[size_t(i)];
    for (int j = i + 1; j < n; ++j) s -= A[size_t(i * n + j)] * coef[size_t(j)];
    coef[size_t(i)] = s / A[size_t(i * n + i)];
  }
  std::vector<double> out;
  for (int64_t h = 0; h < horizon; ++h) {
    const auto r = row(int64_t(window.size()) + h);
    double y = 0;
    for (int i = 0; i < n; ++i) y += r[size_t(i)] * coef[size_t(i)];
    out.push_back(y);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  examples::CommonOptions co;
  co.epochs = 300;
  co.batch_size = 32;
  co.lr = 3e-3;
  co.out_dir = "out/co2_forecast";
  if (!std::getenv("OMP_NUM_THREADS")) co.threads = 1;  // small matrices: one thread is faster
  std::string csv = "examples/data/co2_mm_mlo.csv", column = "average", time_column = "decimal date";
  int64_t lookback = 96, horizon = 24, val_months = 24, channels = 16, patience = 30;
  CLI::App app{"attn example: forecast the last months of a real series (CO2 at Mauna Loa) with RevIN, a causal TCN "
               "and a direct multi-step quantile head, against seasonal-naive and trend+season baselines"};
  examples::add_common_flags(app, co);
  for (const char* f : {"--hidden", "--save", "--load", "--stop-after"}) app.remove_option(app.get_option(f));
  app.add_option("--csv", csv, "the series file (a header row; NOAA's co2_mm_mlo.csv by default)")->check(CLI::ExistingFile);
  app.add_option("--column", column, "the value column's name in the header");
  app.add_option("--time-column", time_column, "the date/time column's name (\"\" for none)");
  app.add_option("--lookback", lookback, "months the model reads")->check(CLI::Range(int64_t(13), int64_t(10000)));
  app.add_option("--horizon", horizon, "months held out and forecast")->check(CLI::Range(int64_t(1), int64_t(1000)));
  app.add_option("--val-months", val_months, "months before the test part used for early stopping")
      ->check(CLI::Range(int64_t(1), int64_t(10000)));
  app.add_option("--channels", channels, "TCN channels")->check(CLI::Range(int64_t(1), int64_t(512)));
  app.add_option("--patience", patience, "early-stopping patience (epochs)")->check(CLI::Range(int64_t(1), int64_t(100000)));
  if (const int rc = examples::parse(app, argc, argv); rc >= 0) return rc;
  if (const int rc = examples::apply_common(co, "co2_forecast"); rc >= 0) return rc;

  try {
    // ---- data: train [0, n_fit), validation [n_fit, n_test), test [n_test, N) ----
    auto opt = data::SeriesCsvOptions().columns({column}).missing_values({"-99.99"}).missing(data::MissingPolicy::Interpolate);
    if (!time_column.empty()) opt.time_column(time_column);
    const data::SeriesTable table = data::load_series_csv(csv, opt);
    const int64_t N = table.rows, n_test = N - horizon, n_fit = n_test - val_months;
    if (n_fit < lookback + horizon + 12) {
      std::fprintf(stderr, "co2_forecast: %lld rows are too few for --lookback %lld, --horizon %lld and --val-months %lld\n",
                   (long long)N, (long long)lookback, (long long)horizon, (long long)val_months);
      return 2;
    }
    data::StandardScaler scaler;
    scaler.fit(table, 0, n_fit);
    data::SeriesTable scaled = table;
    for (int64_t r = 0; r < N; ++r) scaled.values[size_t(r)] = scaler.transform(table.at(r, 0), 0);
    const auto wopt = data::WindowOptions(lookback, horizon);
    const auto train = data::make_windows(scaled, 0, n_fit, wopt);
    // validation: every window whose targets end inside the validation months
    const auto val = data::make_windows(scaled, n_fit - lookback - horizon + 1, n_test, wopt);
    const auto test = data::make_windows(scaled, n_test - lookback, N, wopt);
    std::printf("co2_forecast: %s column '%s', %lld months (%lld gaps interpolated): %lld training windows, %lld validation, "
                "test = the last %lld months (%s .. %s); look-back %lld\n",
                csv.c_str(), column.c_str(), (long long)N, (long long)table.interpolated, (long long)train.starts.size(),
                (long long)val.starts.size(), (long long)horizon,
                table.times.empty() ? "?" : table.times[size_t(n_test)].c_str(),
                table.times.empty() ? "?" : table.times.back().c_str(), (long long)lookback);

    // ---- train with early stopping on the validation windows ----
    Co2Model model(lookback, horizon, channels);
    optim::Adam adam(model.parameters(), optim::AdamOptions(co.lr));
    optim::EarlyStopping stopper{optim::EarlyStoppingOptions(patience)};
    examples::History hist;
    hist.columns = {"epoch", "train_pinball", "val_pinball"};
    const int64_t n_train = int64_t(train.starts.size());
    std::vector<int64_t> order(static_cast<size_t>(n_train));
    std::iota(order.begin(), order.end(), 0);
    examples::Timer timer;
    int epochs_run = 0;
    auto val_loss = [&] {
      NoGradGuard ng;
      return quantile_loss(model.forward(val.x), val.y, kQuantiles).item<double>();
    };
    for (int epoch = 0; epoch < co.epochs; ++epoch) {
      examples::shuffle(order);
      double sum = 0;
      int64_t batches = 0;
      for (int64_t b = 0; b < n_train; b += co.batch_size) {
        const int64_t n = std::min(co.batch_size, n_train - b);
        const Tensor idx = Tensor::from_vector(std::vector<int64_t>(order.begin() + b, order.begin() + b + n), {n});
        const Tensor loss = quantile_loss(model.forward(index_select(train.x, 0, idx)), index_select(train.y, 0, idx), kQuantiles);
        adam.zero_grad();
        loss.backward();
        adam.step();
        sum += examples::require_finite(loss.item<double>(), "training loss");
        ++batches;
      }
      const double v = val_loss();
      hist.add({double(epoch + 1), sum / double(batches), v});
      ++epochs_run;
      const bool stop = stopper.step(v, model);
      if (!co.quiet && (epoch % 10 == 0 || stop || stopper.improved()))
        std::printf("epoch %3d  train pinball %.5f  val pinball %.5f%s\n", epoch + 1, sum / double(batches), v,
                    stopper.improved() ? "  *" : (stop ? "  (early stop)" : ""));
      if (stop) break;
    }
    stopper.restore_best(model);
    const double train_s = timer.seconds();

    // ---- forecast the test months; everything below in ppm ----
    std::vector<double> truth, lo, med, hi;
    {
      NoGradGuard ng;
      const auto q = model.forward(test.x).to_vector<float>();  // [1, H, 1, Q]
      for (int64_t h = 0; h < horizon; ++h) {
        lo.push_back(scaler.inverse_transform(q[size_t(h * 3 + 0)], 0));
        med.push_back(scaler.inverse_transform(q[size_t(h * 3 + 1)], 0));
        hi.push_back(scaler.inverse_transform(q[size_t(h * 3 + 2)], 0));
        truth.push_back(table.at(n_test + h, 0));
      }
    }
    std::vector<double> history(table.values.begin(), table.values.begin() + n_test);  // single column
    std::vector<double> naive, window(history.end() - lookback, history.end());
    for (int64_t h = 0; h < horizon; ++h) naive.push_back(history[size_t(n_test - 12 + h % 12)]);
    const auto trend = trend_season_forecast(window, n_test - lookback, horizon);
    const double scale = metrics::seasonal_naive_scale(history, 12);
    std::printf("best epoch %lld of %d (val pinball %.5f), training %.1fs\n", (long long)stopper.best_epoch() + 1,
                epochs_run, stopper.best(), train_s);
    std::printf("test: the last %lld months, in ppm (MASE scale: in-sample seasonal-naive MAE %.4f)\n", (long long)horizon, scale);
    auto report = [&](const char* name, const std::vector<double>& f) {
      std::printf("  %-24s MAE %.4f  RMSE %.4f  MASE %.4f  MAPE %.4f%%  sMAPE %.4f%%\n", name, metrics::mae(truth, f),
                  metrics::rmse(truth, f), metrics::mase(truth, f, history, 12), metrics::mape(truth, f),
                  metrics::smape(truth, f));
    };
    report("model (median)", med);
    report("seasonal-naive", naive);
    report("linear trend + season", trend);
    const double gain = 1.0 - metrics::mae(truth, med) / metrics::mae(truth, naive);
    std::printf("  model MAE vs seasonal-naive: %.1f%% lower; 80%% interval [q0.1, q0.9] covers %.0f%% of the months "
                "(mean width %.3f ppm)\n",
                100.0 * gain, 100.0 * metrics::interval_coverage(truth, lo, hi),
                [&] { double w = 0; for (int64_t h = 0; h < horizon; ++h) w += hi[size_t(h)] - lo[size_t(h)]; return w / double(horizon); }());

    // ---- plot: the last years, the truth, the forecast with its interval, the baselines ----
    const int64_t from = std::max<int64_t>(0, n_test - 72);
    std::vector<double> ts, vs, tt;
    for (int64_t i = from; i < N; ++i) ts.push_back(double(i)), vs.push_back(table.at(i, 0));
    for (int64_t h = 0; h < horizon; ++h) tt.push_back(double(n_test + h));
    plot::Figure fig(1100, 480);
    fig.title("co2_forecast: the last " + std::to_string(horizon) + " months forecast from the rest (80% interval)")
        .xlabel("month since " + (table.times.empty() ? std::string("the start") : table.times.front()))
        .ylabel(column + " (ppm)");
    fig.vspan(double(n_test), double(N - 1), "held out");
    fig.line(ts, vs, "truth", plot::Style().with_color("#333333").with_width(1.4));
    fig.line(tt, med, "model (median)", plot::Style().with_color("#d62728").with_width(1.6));
    fig.line(tt, lo, "q0.1", plot::Style().with_color("#d62728").with_dashes());
    fig.line(tt, hi, "q0.9", plot::Style().with_color("#d62728").with_dashes());
    fig.line(tt, naive, "seasonal-naive", plot::Style().with_color("#1f77b4").with_dashes());
    fig.line(tt, trend, "linear trend + season", plot::Style().with_color("#2ca02c").with_dashes());
    fig.save(co.out_dir + "/forecast.svg");
    hist.save(co.out_dir + "/metrics.csv");
    std::printf("plots and metrics in %s (forecast.svg, metrics.csv)\n", co.out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "co2_forecast: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
