// Reference task B: one-step sine forecasting with a 2-layer LSTM and attention over time.
// Training is the seed's (sin(linspace(0, 50, 1000)), windows of 20, full batch, 100 epochs);
// beyond the seed, the continuation of the same sine is held out and forecast one step at a
// time and free-running. Writes metrics.csv, loss.svg, forecast.svg, attention.svg.
// Under mpirun (or with --distributed) it trains data-parallel: docs/distributed.md.
#include <attn/attn.hpp>
#include <attn/data/sine.hpp>
#include <attn/io/checkpoint.hpp>
#include <attn/metrics/metrics.hpp>
#include <attn/nn/attention/additive.hpp>
#include <attn/nn/rnn.hpp>
#include <attn/plot/svg.hpp>

#include "common.hpp"
#include "models.hpp"

using namespace attn;
using examples::AnomalyModel;
using examples::ForecastModel;

namespace {

Tensor predict(ForecastModel& m, const std::vector<float>& windows, int64_t n, int64_t w, Device device,
               Tensor* weights = nullptr) {
  NoGradGuard ng;
  auto [y, a] = m.forward(Tensor::from_vector(windows, {n, w, 1}).to(device));
  if (weights) *weights = a;
  return y;
}

}  // namespace

int main(int argc, char** argv) {
  examples::CommonOptions co;
  co.epochs = 100;
  co.hidden = 64;
  co.batch_size = 0;
  co.out_dir = "out/sine_forecast";
  int64_t window = 20, layers = 2, points = 1000, horizon = 200;
  double t_end = 50.0;
  CLI::App app{"attn example, reference task B: sine forecasting with LSTM + attention"};
  examples::add_common_flags(app, co);
  examples::add_device_flag(app, co);
  bool distributed = false;
  examples::add_distributed_flag(app, distributed);
  // 0 = full batch: switch off the common flag's range check (>= 1), which would reject it.
  app.get_option("--batch-size")->get_validator()->active(false);
  app.get_option("--batch-size")->check(CLI::Range(int64_t(0), int64_t(1) << 30))->description("mini-batch size (0 = full batch, the seed's)");
  app.add_option("--window", window, "input window length")->check(CLI::Range(int64_t(1), int64_t(10000)));
  app.add_option("--layers", layers, "stacked LSTM layers")->check(CLI::Range(int64_t(1), int64_t(16)));
  app.add_option("--points", points, "points of the training series")->check(CLI::Range(int64_t(2), int64_t(10000000)));
  app.add_option("--t-end", t_end, "the series is sin(linspace(0, t_end, points))")->check(examples::positive());
  app.add_option("--horizon", horizon, "held-out points after the series, forecast at the end")->check(CLI::Range(int64_t(0), int64_t(1000000)));
  if (int rc = examples::parse(app, argc, argv); rc >= 0) return rc;
  if (int rc = examples::apply_common(co, "sine_forecast"); rc >= 0) return rc;
  examples::install_sigint_handler();
  examples::Timer total;

  std::unique_ptr<examples::Parallel> par_owner;
  try {
    par_owner = std::make_unique<examples::Parallel>(distributed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sine_forecast: error: %s\n", e.what());
    return 1;
  }
  const examples::Parallel& par = *par_owner;
  if (!par.is_root()) co.quiet = true;  // rank 0 alone prints

  try {
    // The series and its continuation share one time grid: t_i = i * t_end / (points - 1).
    const double dt = t_end / double(points - 1);
    std::vector<float> full(size_t(points + horizon));
    for (int64_t i = 0; i < points + horizon; ++i) full[size_t(i)] = float(std::sin(double(i) * dt));
    data::check_finite(full, "sine_forecast series (sin(i * t_end / (points - 1)) for i < points + horizon)");
    const std::vector<float> series(full.begin(), full.begin() + points);
    const data::WindowedSeries train = data::make_windows(series, window);
    const std::string data_id = examples::data_fingerprint(
        std::to_string(points) + " points, window " + std::to_string(window), series);
    const int64_t N = train.count;
    const int64_t batch = co.batch_size == 0 ? N : std::min(co.batch_size, N);

    ForecastModel model(co.hidden, layers);
    const Device device = examples::device_of(co);
    model.to(device);
    par_owner->attach(model);  // from here on, backward averages the gradients across ranks
    optim::Adam opt(model.parameters(), optim::AdamOptions(co.lr));
    examples::History hist;
    hist.columns = {"epoch", "train_mse", "seconds"};
    int start_epoch = 0;
    // Shuffling permutes the previous epoch's order in place, so a resumed run needs that order
    // (saved as "order"); starting again from 0..N-1 gave different batches after a resume.
    std::vector<int64_t> order(static_cast<size_t>(N));
    std::iota(order.begin(), order.end(), 0);
    if (!co.load.empty()) {
      const CheckpointMetadata meta =
          examples::load_progress(co.load, model, opt, "sine_forecast", data_id, start_epoch, hist);
      if (!meta.text("order").empty()) order = examples::read_ordering(meta, "order", order, N, "windows");
      if (!co.quiet) std::printf("resumed from %s after epoch %d\n", co.load.c_str(), start_epoch);
    }
    if (!co.quiet)
      std::printf("sine_forecast: %lld windows of %lld points, LSTM(1 -> %lld) x %lld layers + attention, %lld "
                  "parameters, lr %g, batch %lld, threads %d, device %s, ranks %d\n",
                  (long long)N, (long long)window, (long long)co.hidden, (long long)layers,
                  (long long)model.num_parameters(), co.lr, (long long)batch, get_num_threads(), co.device.c_str(),
                  par.size());

    examples::Progress progress(co.quiet);
    for (int epoch = start_epoch; epoch < co.epochs; ++epoch) {
      examples::Timer et;
      if (batch < N) examples::shuffle(order);
      const double loss = examples::train_epoch(
          opt, model.parameters(), /*clip=*/0.0, order, batch, epoch, co, progress,
          [&](const std::vector<int64_t>& rows) {
            std::vector<float> x, y;
            for (const int64_t i : rows) {
              x.insert(x.end(), train.x.begin() + i * window, train.x.begin() + (i + 1) * window);
              y.push_back(train.y[size_t(i)]);
            }
            const int64_t n = int64_t(rows.size());
            return mse_loss(model.forward(Tensor::from_vector(x, {n, window, 1}).to(device)).first,
                            Tensor::from_vector(y, {n, 1}).to(device));
          },
          &par);
      hist.add({double(epoch + 1), loss, et.seconds()});
      if (!co.quiet && ((epoch + 1) % 10 == 0 || epoch + 1 == co.epochs))
        std::printf("Epoch [%d/%d], Loss: %.4f  (%.3fs)\n", epoch + 1, co.epochs, loss, et.seconds());
      if (!co.save.empty() && par.is_root())
        save_checkpoint(co.save, model, &opt,
                        examples::progress_metadata("sine_forecast", epoch + 1, hist, data_id,
                                                    {{"order", batch < N ? examples::join_ints(order) : ""}}));
      if (par.is_root()) hist.save(co.out_dir + "/metrics.csv");
      if (par.any(examples::stop_requested().load())) {
        if (par.is_root()) std::printf("interrupted after epoch %d%s\n", epoch + 1, co.save.empty() ? "" : ("; saved to " + co.save).c_str());
        return 130;
      }
    }

    if (!par.is_root()) return 0;  // the others have the same model: rank 0 reports
    // ---- in-sample fit and attention ----
    model.eval();
    Tensor weights;
    const auto fit = predict(model, train.x, N, window, device, &weights).to_vector<float>();
    const double fit_mse = examples::require_finite(std::pow(metrics::rmse(train.y, fit), 2), "the in-sample MSE");

    // ---- held-out continuation: one-step (true windows) and free-running forecasts ----
    std::vector<float> one_step, free_run, truth;
    if (horizon > 0) {
      std::vector<float> wins;
      for (int64_t i = 0; i < horizon; ++i) {
        const int64_t t = points + i;  // predict full[t] from full[t - window, t)
        wins.insert(wins.end(), full.begin() + (t - window), full.begin() + t);
        truth.push_back(full[size_t(t)]);
      }
      one_step = predict(model, wins, horizon, window, device).to_vector<float>();
      examples::require_finite(metrics::mae(truth, one_step), "the held-out one-step MAE");
      std::vector<float> ctx(series.end() - window, series.end());
      for (int64_t i = 0; i < horizon; ++i) {
        const float next = predict(model, ctx, 1, window, device).item<float>();
        free_run.push_back(next);
        ctx.erase(ctx.begin());
        ctx.push_back(next);
      }
    }

    // ---- plots ----
    plot::Figure loss_fig(800, 450);
    loss_fig.title("sine_forecast: training MSE per epoch").xlabel("epoch").ylabel("MSE");
    loss_fig.line(hist.column("epoch"), hist.column("train_mse"), "train");
    loss_fig.save(co.out_dir + "/loss.svg");

    std::vector<double> t_all(full.size()), t_fit, t_tail;
    for (size_t i = 0; i < full.size(); ++i) t_all[i] = double(i);
    for (int64_t i = 0; i < N; ++i) t_fit.push_back(double(window + i));
    for (int64_t i = 0; i < horizon; ++i) t_tail.push_back(double(points + i));
    plot::Figure fc_fig(1100, 480);
    fc_fig.title("sine_forecast: true vs predicted").xlabel("time step").ylabel("value");
    if (horizon > 0) fc_fig.vspan(double(points), double(points + horizon - 1), "held-out forecast region");
    fc_fig.line(t_all, full, "true series");
    fc_fig.line(t_fit, fit, "predicted (in-sample, one step)", plot::Style().with_dashes());
    if (horizon > 0) {
      fc_fig.line(t_tail, one_step, "forecast, one step");
      fc_fig.line(t_tail, free_run, "forecast, free running", plot::Style().with_dashes());
    }
    fc_fig.save(co.out_dir + "/forecast.svg");
    plot::heatmap(weights.to_vector<float>(), N, window, "Attention weights (sample x time step)", "time step in window",
                  "sample")
        .save(co.out_dir + "/attention.svg");

    std::printf("in-sample MSE %.6f over %lld windows\n", fit_mse, (long long)N);
    if (horizon > 0)
      std::printf("held-out %lld points: one-step MAE %.5f RMSE %.5f | free-running MAE %.5f RMSE %.5f\n",
                  (long long)horizon, metrics::mae(truth, one_step), metrics::rmse(truth, one_step),
                  metrics::mae(truth, free_run), metrics::rmse(truth, free_run));
    std::printf("total time %.1fs; plots and metrics in %s (loss.svg, forecast.svg, attention.svg, metrics.csv)\n",
                total.seconds(), co.out_dir.c_str());
  } catch (const std::exception& e) {
    return par.fail("sine_forecast", e.what());
  }
  return 0;
}
