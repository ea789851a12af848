// Reference task C (seed 001): multi-step sine forecasting with a seq2seq model and Bahdanau
// (additive) attention.
//   encoder: LSTM over the input window x_1..x_W               -> h_1..h_W, final (h, c)
//   decoder: LSTMCell, started from the encoder's final state s_0 = (h_W, c_W); at step t
//            c_t = sum_i a_ti h_i, a_t = softmax_i(v^T tanh(W_q s_{t-1} + W_k h_i))
//            s_t = LSTMCell([y_{t-1}; c_t], s_{t-1}),  y_t = Linear([s_t; c_t])
//            y_0 = x_W (the last observed value); y_{t-1} is the true value with probability
//            --teacher-forcing (training only) and the model's own forecast otherwise.
// Data: the series of task B (sin(linspace(0, 50, 1000))), windows of --window points followed by
// --horizon targets; the continuation of the same sine (--tail points) is held out. Reported on
// it: forecasts of --horizon steps from every true input window (MAE/RMSE per step and overall;
// step 1 covers the same 200 targets as sine_forecast's one-step forecast) and a free-running
// rollout over the whole tail (blocks of --horizon fed back as input), comparable with
// sine_forecast's free-running forecast. Writes metrics.csv, horizon.csv, loss.svg,
// forecast.svg, horizon.svg, attention.svg into --out-dir.
#include <attn/attn.hpp>
#include <attn/data/sine.hpp>
#include <attn/io/checkpoint.hpp>
#include <attn/metrics/metrics.hpp>
#include <attn/nn/attention/additive.hpp>
#include <attn/nn/rnn.hpp>
#include <attn/plot/svg.hpp>

#include <cmath>
#include <limits>
#include <numeric>

#include "common.hpp"

using namespace attn;

namespace {

class Seq2Seq : public nn::Module {
 public:
  Seq2Seq(int64_t hidden, int64_t attn_dim)
      : encoder(nn::LSTMOptions(1, hidden).batch_first(true)),
        decoder(1 + hidden, hidden),
        attention(hidden, hidden, attn_dim),
        fc(2 * hidden, 1) {
    register_module("encoder", encoder);
    register_module("decoder", decoder);
    register_module("attention", attention);
    register_module("fc", fc);
  }

  // x [B, W, 1]; target [B, horizon] (undefined: free running). Returns forecasts [B, horizon]
  // and attention weights [B, horizon, W] (decoder step x encoder step).
  std::pair<Tensor, Tensor> forward(const Tensor& x, int64_t horizon, const Tensor& target = Tensor(),
                                    double teacher_forcing = 0.0) const {
    auto [enc, state] = encoder.forward(x);  // enc [B, W, H], state [1, B, H] each
    Tensor h = squeeze(state.first, 0), c = squeeze(state.second, 0);
    Tensor prev = select(x, 1, x.size(1) - 1);  // [B, 1]
    std::vector<Tensor> ys, ws;
    for (int64_t t = 0; t < horizon; ++t) {
      auto [ctx, w] = attention.forward(h, enc);  // query: s_{t-1}
      std::tie(h, c) = decoder.forward(cat({prev, ctx}, 1), {h, c});
      Tensor y = fc.forward(cat({h, ctx}, 1));  // [B, 1]
      ys.push_back(y);
      ws.push_back(w);
      bool teacher = false;
      if (target.defined() && teacher_forcing > 0.0)
        teacher = teacher_forcing >= 1.0 || default_generator().uniform() < teacher_forcing;
      prev = teacher ? narrow(target, 1, t, 1) : y;
    }
    return {cat(ys, 1), stack(ws, 1)};
  }

  nn::LSTM encoder;
  nn::LSTMCell decoder;
  nn::AdditiveAttention attention;
  nn::Linear fc;
};

// Forecasts `horizon` steps from n windows (row-major [n, W]) in chunks; no graph.
std::vector<float> forecast(const Seq2Seq& m, const std::vector<float>& windows, int64_t n, int64_t W,
                            int64_t horizon, std::vector<float>* weights = nullptr) {
  NoGradGuard ng;
  auto [y, w] = m.forward(Tensor::from_vector(windows, {n, W, 1}), horizon);
  if (weights) *weights = w.to_vector<float>();
  return y.to_vector<float>();
}

// ReduceLROnPlateau (mode min, relative threshold 1e-4) whose state goes into the checkpoint.
struct Plateau {
  double factor = 0.5;
  int patience = 10;
  double best = std::numeric_limits<double>::infinity();
  int bad = 0;
  void step(double metric, optim::Optimizer& opt) {
    if (metric < best * (1 - 1e-4)) {
      best = metric;
      bad = 0;
    } else if (++bad > patience) {
      opt.set_lr(opt.lr() * factor);
      bad = 0;
    }
  }
};

std::string fmt(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  examples::CommonOptions co;
  co.epochs = 20;
  co.hidden = 32;
  co.batch_size = 32;
  co.lr = 3e-3;
  co.out_dir = "out/seq2seq_forecast";
  // Tiny per-step ops: one thread is faster (docs/examples-task-c.md), unless OMP_NUM_THREADS says otherwise.
  if (!std::getenv("OMP_NUM_THREADS")) co.threads = 1;
  int64_t window = 20, horizon = 10, points = 1000, tail = 200, attn_dim = 0;
  double t_end = 50.0, teacher_forcing = 1.0, clip = 1.0;
  int patience = 10;
  std::string schedule = "cosine";
  CLI::App app{"attn example, reference task C: seq2seq sine forecasting, LSTM encoder/decoder + Bahdanau attention"};
  examples::add_common_flags(app, co);
  app.get_option("--hidden")->description("hidden size of the encoder and decoder LSTMs");
  app.add_option("--window", window, "encoder input window length")->check(CLI::Range(int64_t(1), int64_t(10000)));
  app.add_option("--horizon", horizon, "decoder steps (forecast length)")->check(CLI::Range(int64_t(1), int64_t(1000)));
  app.add_option("--attn-dim", attn_dim, "hidden size of the additive attention (0 = --hidden)")
      ->check(CLI::Range(int64_t(0), int64_t(4096)));
  app.add_option("--teacher-forcing", teacher_forcing,
                 "probability of feeding the true previous value to the decoder in training (per step)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--clip", clip, "gradient-norm clipping, 0 = off")->check(examples::non_negative());
  app.add_option("--schedule", schedule,
                 "learning-rate schedule: cosine (from --lr to 0 over --epochs), plateau (halve after --patience "
                 "epochs without a lower training loss, the seed's), none")
      ->check(CLI::IsMember({"cosine", "plateau", "none"}));
  app.add_option("--patience", patience, "patience of --schedule plateau")->check(CLI::Range(1, 100000));
  app.add_option("--points", points, "points of the training series")->check(CLI::Range(int64_t(2), int64_t(10000000)));
  app.add_option("--t-end", t_end, "the series is sin(linspace(0, t_end, points))")->check(examples::positive());
  app.add_option("--tail", tail, "held-out points after the series")->check(CLI::Range(int64_t(1), int64_t(1000000)));
  if (int rc = examples::parse(app, argc, argv); rc >= 0) return rc;
  if (points < window + horizon) {
    std::fprintf(stderr, "seq2seq_forecast: --points %lld is shorter than --window + --horizon = %lld\n",
                 (long long)points, (long long)(window + horizon));
    return 2;
  }
  if (tail < horizon) {  // every forecast step is scored on the tail: step k needs k targets there
    std::fprintf(stderr, "seq2seq_forecast: --tail %lld is shorter than --horizon %lld (each forecast step needs a "
                 "held-out target)\n", (long long)tail, (long long)horizon);
    return 2;
  }
  if (attn_dim == 0) attn_dim = co.hidden;
  if (int rc = examples::apply_common(co, "seq2seq_forecast"); rc >= 0) return rc;
  examples::install_sigint_handler();
  examples::Timer total;

  try {
    // The series and its continuation share one time grid: t_i = i * t_end / (points - 1).
    const double dt = t_end / double(points - 1);
    std::vector<float> full(size_t(points + tail));
    for (int64_t i = 0; i < points + tail; ++i) full[size_t(i)] = float(std::sin(double(i) * dt));
    data::check_finite(full, "seq2seq_forecast series (sin(i * t_end / (points - 1)) for i < points + tail)");
    const int64_t W = window, H = horizon;
    const std::string data_id = examples::data_fingerprint(
        std::to_string(points) + " points, window " + std::to_string(W) + ", horizon " + std::to_string(H),
        std::vector<float>(full.begin(), full.begin() + points));
    const int64_t N = points - W - H + 1;  // training pairs: full[s, s+W) -> full[s+W, s+W+H)
    const int64_t batch = co.batch_size == 0 ? N : std::min(co.batch_size, N);

    // Held-out origins o = 0..tail-1: input full[points+o-W, points+o), targets from points+o on
    // (only those inside the tail are scored).
    std::vector<float> tail_windows;
    for (int64_t o = 0; o < tail; ++o)
      tail_windows.insert(tail_windows.end(), full.begin() + (points + o - W), full.begin() + (points + o));
    auto tail_true = [&](int64_t o, int64_t k) { return full[size_t(points + o + k)]; };

    Seq2Seq model(co.hidden, attn_dim);
    optim::Adam opt(model.parameters(), optim::AdamOptions(co.lr));
    optim::CosineAnnealingLR cosine(opt, std::max(co.epochs, 1));  // lr_at(epoch): closed form, resume-safe
    Plateau plateau;
    plateau.patience = patience;
    examples::History hist;
    hist.columns = {"epoch", "train_mse", "tail_mse", "lr", "seconds"};
    int start_epoch = 0;
    if (!co.load.empty()) {
      const CheckpointMetadata meta =
          examples::load_progress(co.load, model, opt, "seq2seq_forecast", data_id, start_epoch, hist);
      plateau.best = meta.number("plateau_best", 0, std::numeric_limits<double>::infinity());
      plateau.bad = int(meta.integer("plateau_bad", 0, 100000));
      if (!co.quiet) std::printf("resumed from %s after epoch %d\n", co.load.c_str(), start_epoch);
    }
    if (!co.quiet)
      std::printf("seq2seq_forecast: %lld windows of %lld -> %lld points, LSTM(1 -> %lld) encoder, LSTMCell(%lld -> %lld) "
                  "decoder, additive attention (%lld), %lld parameters\n  lr %g (%s), batch %lld, teacher forcing %g, "
                  "clip %g, threads %d\n",
                  (long long)N, (long long)W, (long long)H, (long long)co.hidden, (long long)(1 + co.hidden),
                  (long long)co.hidden, (long long)attn_dim, (long long)model.num_parameters(), co.lr,
                  schedule.c_str(), (long long)batch, teacher_forcing, clip, get_num_threads());

    // Mean squared error of the multi-step forecasts on the tail (every origin, steps inside it).
    auto tail_eval = [&](std::vector<float>* weights) {
      const std::vector<float> p = forecast(model, tail_windows, tail, W, H, weights);
      return p;
    };
    auto tail_mse = [&](const std::vector<float>& p) {
      double s = 0;
      int64_t n = 0;
      for (int64_t o = 0; o < tail; ++o)
        for (int64_t k = 0; k < H && o + k < tail; ++k, ++n) {
          const double d = double(p[size_t(o * H + k)]) - double(tail_true(o, k));
          s += d * d;
        }
      return s / double(n);
    };

    std::vector<int64_t> order(static_cast<size_t>(N));
    examples::Progress progress(co.quiet);
    for (int epoch = start_epoch; epoch < co.epochs; ++epoch) {
      examples::Timer et;
      if (schedule == "cosine") opt.set_lr(cosine.lr_at(epoch));
      model.train();
      std::iota(order.begin(), order.end(), 0);
      if (batch < N) examples::shuffle(order);
      const double train_mse = examples::train_epoch(
          opt, model.parameters(), clip, order, batch, epoch, co, progress, [&](const std::vector<int64_t>& rows) {
            std::vector<float> x, y;
            for (const int64_t s : rows) {
              x.insert(x.end(), full.begin() + s, full.begin() + s + W);
              y.insert(y.end(), full.begin() + s + W, full.begin() + s + W + H);
            }
            const int64_t n = int64_t(rows.size());
            const Tensor target = Tensor::from_vector(y, {n, H});
            return mse_loss(model.forward(Tensor::from_vector(x, {n, W, 1}), H, target, teacher_forcing).first, target);
          });
      model.eval();
      const double val = examples::require_finite(tail_mse(tail_eval(nullptr)), "the held-out MSE");
      const double lr_used = opt.lr();
      if (schedule == "plateau") plateau.step(train_mse, opt);
      hist.add({double(epoch + 1), train_mse, val, lr_used, et.seconds()});
      if (!co.quiet)
        std::printf("epoch %3d/%d  train MSE %.6f  held-out %lld-step MSE %.6f  lr %.2g  (%.2fs)\n", epoch + 1,
                    co.epochs, train_mse, (long long)H, val, lr_used, et.seconds());
      if (!co.save.empty())
        save_checkpoint(co.save, model, &opt,
                        examples::progress_metadata("seq2seq_forecast", epoch + 1, hist, data_id,
                                                    {{"plateau_best", fmt(plateau.best)},
                                                     {"plateau_bad", std::to_string(plateau.bad)}}));
      hist.save(co.out_dir + "/metrics.csv");
      if (examples::stop_requested()) {
        std::printf("interrupted after epoch %d%s\n", epoch + 1,
                    co.save.empty() ? "" : ("; saved to " + co.save + ", resume with --load").c_str());
        return 130;
      }
    }

    // ---- held-out tail: forecasts from true windows, per horizon step ----
    model.eval();
    std::vector<float> weights;
    const std::vector<float> pred = tail_eval(&weights);
    std::vector<std::vector<float>> step_true(static_cast<size_t>(H)), step_pred(static_cast<size_t>(H));
    std::vector<float> all_true, all_pred;
    for (int64_t o = 0; o < tail; ++o)
      for (int64_t k = 0; k < H && o + k < tail; ++k) {
        step_true[size_t(k)].push_back(tail_true(o, k));
        step_pred[size_t(k)].push_back(pred[size_t(o * H + k)]);
        all_true.push_back(tail_true(o, k));
        all_pred.push_back(pred[size_t(o * H + k)]);
      }
    std::vector<double> step_mae(static_cast<size_t>(H)), step_rmse(static_cast<size_t>(H));
    std::string hcsv = "step,n,mae,rmse\n";
    for (int64_t k = 0; k < H; ++k) {
      step_mae[size_t(k)] = metrics::mae(step_true[size_t(k)], step_pred[size_t(k)]);
      step_rmse[size_t(k)] = metrics::rmse(step_true[size_t(k)], step_pred[size_t(k)]);
      hcsv += std::to_string(k + 1) + "," + std::to_string(step_true[size_t(k)].size()) + "," +
              fmt(step_mae[size_t(k)]) + "," + fmt(step_rmse[size_t(k)]) + "\n";
    }
    io::write_file_atomic(co.out_dir + "/horizon.csv", hcsv);

    // ---- free-running rollout over the whole tail, in blocks of H ----
    std::vector<float> ctx(full.begin() + (points - W), full.begin() + points), free_run;
    while (int64_t(free_run.size()) < tail) {
      const std::vector<float> block = forecast(model, ctx, 1, W, H);
      free_run.insert(free_run.end(), block.begin(), block.end());
      ctx.insert(ctx.end(), block.begin(), block.end());
      ctx.erase(ctx.begin(), ctx.end() - W);
    }
    free_run.resize(size_t(tail));
    const std::vector<float> truth(full.begin() + points, full.end());

    // ---- plots ----
    std::vector<double> log_train, log_tail;
    for (double v : hist.column("train_mse")) log_train.push_back(std::log10(v));
    for (double v : hist.column("tail_mse")) log_tail.push_back(std::log10(v));
    plot::Figure loss_fig(800, 450);
    loss_fig.title("seq2seq_forecast: MSE per epoch (log10)").xlabel("epoch").ylabel("log10 MSE");
    loss_fig.line(hist.column("epoch"), log_train, "train (teacher forcing " + fmt(teacher_forcing) + ")");
    loss_fig.line(hist.column("epoch"), log_tail, "held-out tail, " + std::to_string(H) + "-step forecasts (no teacher forcing)",
                  plot::Style().with_dashes());
    loss_fig.save(co.out_dir + "/loss.svg");

    // Shown: the last 3 windows' worth of training series and the tail. The forecasts from true
    // windows are drawn for every H-th origin (non-overlapping blocks, gaps between blocks).
    const int64_t shown_from = std::max<int64_t>(0, points - 150);
    std::vector<double> t_all, v_all, t_tail, blocks;
    for (int64_t i = shown_from; i < points + tail; ++i) {
      t_all.push_back(double(i));
      v_all.push_back(full[size_t(i)]);
    }
    for (int64_t o = 0; o < tail; ++o) t_tail.push_back(double(points + o));
    std::vector<double> t_blocks;
    for (int64_t o = 0; o < tail; o += H) {
      for (int64_t k = 0; k < H && o + k < tail; ++k) {
        t_blocks.push_back(double(points + o + k));
        blocks.push_back(pred[size_t(o * H + k)]);
      }
      t_blocks.push_back(double(points + o + H) - 0.5);
      blocks.push_back(std::nan(""));  // a gap between blocks
    }
    plot::Figure fc_fig(1100, 480);
    fc_fig.title("seq2seq_forecast: true vs forecast on the held-out tail").xlabel("time step").ylabel("value");
    fc_fig.vspan(double(points), double(points + tail - 1), "held-out forecast region");
    fc_fig.line(t_all, v_all, "true series", plot::Style().with_color("#333333").with_width(1.2));
    fc_fig.line(t_blocks, blocks, std::to_string(H) + "-step forecasts from true windows (every " +
                                      std::to_string(H) + "th origin)");
    fc_fig.line(t_tail, free_run, "free running over the tail", plot::Style().with_dashes());
    fc_fig.save(co.out_dir + "/forecast.svg");

    std::vector<double> steps(static_cast<size_t>(H));
    std::iota(steps.begin(), steps.end(), 1.0);
    plot::Figure h_fig(800, 450);
    h_fig.title("seq2seq_forecast: held-out error per forecast step").xlabel("forecast step").ylabel("error");
    h_fig.line(steps, step_mae, "MAE");
    h_fig.line(steps, step_rmse, "RMSE", plot::Style().with_dashes());
    h_fig.save(co.out_dir + "/horizon.svg");

    const int64_t example = 0;  // the first held-out origin: forecasts full[points, points + H)
    const std::vector<float> w0(weights.begin() + example * H * W, weights.begin() + (example + 1) * H * W);
    plot::heatmap(w0, H, W,
                  "Bahdanau attention, first held-out forecast (decoder step x encoder step)",
                  "encoder step (position in the input window: 0 = oldest, " + std::to_string(W - 1) + " = most recent)",
                  "decoder step (0 = first forecast)")
        .colorbar_label("attention weight")
        .save(co.out_dir + "/attention.svg");

    std::printf("held-out tail of %lld points, %lld-step forecasts from true windows (%lld origins):\n",
                (long long)tail, (long long)H, (long long)tail);
    std::printf("  step      n      MAE      RMSE\n");
    for (int64_t k = 0; k < H; ++k)
      std::printf("  %4lld  %5zu  %.5f  %.5f\n", (long long)(k + 1), step_true[size_t(k)].size(), step_mae[size_t(k)],
                  step_rmse[size_t(k)]);
    std::printf("  all   %5zu  %.5f  %.5f\n", all_true.size(), metrics::mae(all_true, all_pred),
                metrics::rmse(all_true, all_pred));
    std::printf("held-out %lld points: one-step (step 1) MAE %.5f RMSE %.5f | free-running (blocks of %lld) MAE %.5f "
                "RMSE %.5f\n",
                (long long)tail, step_mae[0], step_rmse[0], (long long)H, metrics::mae(truth, free_run),
                metrics::rmse(truth, free_run));
    std::printf("total time %.1fs; plots and metrics in %s (loss.svg, forecast.svg, horizon.svg, attention.svg, "
                "metrics.csv, horizon.csv)\n",
                total.seconds(), co.out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seq2seq_forecast: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
