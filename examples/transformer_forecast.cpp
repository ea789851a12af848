// Reference task C (seed 001): one-step sine forecasting with a causal time-series transformer.
//   z = Linear(1 -> d_model)(x) (+ positional encoding) -> TransformerEncoder (causal mask,
//   post-norm layers as PyTorch's nn.TransformerEncoderLayer) -> Linear(d_model -> 1) at the last
//   position = the next value.
// Data and evaluation are those of sine_forecast (task B): windows of 20 points of
// sin(linspace(0, 50, 1000)) predict the next point; the continuation of the same sine (200
// points) is held out and forecast one step at a time (true windows) and free running. With
// --compare-lstm the program also trains task B's LSTM + attention model exactly as
// sine_forecast does (same seed, its defaults) and prints both results side by side.
// --attention picks the self-attention of the encoder layers: dense (PyTorch's
// TransformerEncoderLayer, the default), linear (elu+1, causal prefix sums), a block-sparse
// pattern (sliding_window, strided, global_window, bigbird) with blocks of --block steps, or an
// approximate long-sequence variant (probsparse, performer, lsh, linformer; docs/attention-zoo.md).
// --data co2 trains on the monthly Mauna Loa CO2 series instead (first differences, scaled to unit
// variance on the training part; the last --tail months held out; MAE also reported in ppm).
// Writes metrics.csv, loss.svg, forecast.svg, attention.svg (dense only) into --out-dir.
#include <attn/attn.hpp>
#include <attn/data/sine.hpp>
#include <attn/io/checkpoint.hpp>
#include <attn/metrics/metrics.hpp>
#include <attn/nn/attention/transformer.hpp>
#include <attn/nn/positional.hpp>
#include <attn/plot/svg.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>

#include "common.hpp"
#include "models.hpp"

using namespace attn;

namespace {

struct ModelOptions {
  int64_t d_model = 32, heads = 4, layers = 2, ff = 64, window = 20;
  double dropout = 0.0;
  std::string positional = "sinusoidal";
  std::string attention = "dense";  // one of kAttention
  int64_t block = 4, attn_window = 1;  // block-sparse patterns: block size and window (in blocks)
};

const std::vector<std::string> kAttention = {"dense",         "linear",  "sliding_window", "strided",
                                             "global_window", "bigbird", "probsparse",     "performer",
                                             "lsh",           "linformer"};

// The self-attention module of one encoder layer for --attention other than dense, registered by
// the caller as "self_attn"; forward(x) -> SA(x). All causal, but linformer, which has no causal
// form and runs non-causal (every position of the window lies in the past of the forecast point,
// so nothing leaks). Settings for the short window: ProbSparse factor 5 (its default), Performer
// int(E ln E) features, LSH 4 rounds with chunks of window / 4, Linformer k = window / 2.
struct SelfAttention {
  std::shared_ptr<nn::Module> module;
  std::function<Tensor(const Tensor&)> forward;
};
template <class M>
SelfAttention self_attention_of(std::shared_ptr<M> m) {
  return {m, [m](const Tensor& x) { return m->forward(x); }};
}
SelfAttention make_self_attention(const ModelOptions& o) {
  const int64_t D = o.d_model, H = o.heads;
  if (o.attention == "linear")
    return self_attention_of(
        std::make_shared<nn::LinearAttention>(nn::LinearAttentionOptions(D, H).causal(true).dropout(o.dropout)));
  if (o.attention == "probsparse")
    return self_attention_of(
        std::make_shared<nn::ProbSparseAttention>(nn::ProbSparseAttentionOptions(D, H).causal(true)));
  if (o.attention == "performer")
    return self_attention_of(
        std::make_shared<nn::PerformerAttention>(nn::PerformerAttentionOptions(D, H).causal(true)));
  if (o.attention == "lsh")
    return self_attention_of(std::make_shared<nn::LSHAttention>(
        nn::LSHAttentionOptions(D, H).bucket_size(std::max<int64_t>(1, o.window / 4)).causal(true)));
  if (o.attention == "linformer")
    return self_attention_of(std::make_shared<nn::LinformerAttention>(
        nn::LinformerAttentionOptions(D, H, o.window).k(std::max<int64_t>(1, o.window / 2)).dropout(o.dropout)));
  return self_attention_of(std::make_shared<nn::BlockSparseAttention>(nn::BlockSparseAttentionOptions(D, H)
                                                                          .pattern(o.attention)
                                                                          .block(o.block)
                                                                          .window(o.attn_window)
                                                                          .stride(2)
                                                                          .global(1)
                                                                          .random(1)
                                                                          .causal(true)));
}

// A post-norm encoder layer (as PyTorch's, relu) around one of the self-attention modules above:
// x = norm1(x + drop(SA(x))); x = norm2(x + drop(linear2(drop(relu(linear1(x)))))).
class EfficientEncoderLayer : public nn::Module {
 public:
  explicit EfficientEncoderLayer(const ModelOptions& o)
      : self_attn(make_self_attention(o)),
        linear1(o.d_model, o.ff),
        linear2(o.ff, o.d_model),
        norm1(o.d_model),
        norm2(o.d_model),
        dropout(o.dropout) {
    register_module("self_attn", self_attn.module);
    register_module("linear1", linear1);
    register_module("linear2", linear2);
    register_module("norm1", norm1);
    register_module("norm2", norm2);
    register_module("dropout", dropout);
  }
  Tensor forward(const Tensor& x0) const {
    const Tensor a = self_attn.forward(x0);
    Tensor x = norm1.forward(add(x0, dropout.forward(a)));
    return norm2.forward(add(x, dropout.forward(linear2.forward(dropout.forward(relu(linear1.forward(x)))))));
  }

  SelfAttention self_attn;
  nn::Linear linear1, linear2;
  nn::LayerNorm norm1, norm2;
  nn::Dropout dropout;
};

class TimeSeriesTransformer : public nn::Module {
 public:
  explicit TimeSeriesTransformer(const ModelOptions& o)
      : opt_(o),
        input_projection(1, o.d_model),
        output_projection(o.d_model, 1),
        sinusoidal(o.d_model) {
    ATTN_CHECK(o.d_model % o.heads == 0, "transformer_forecast: --d-model ", o.d_model, " is not divisible by --heads ",
               o.heads);
    register_module("input_projection", input_projection);
    if (o.positional == "learned") {
      learned = std::make_shared<nn::LearnedPositionalEncoding>(o.window, o.d_model);
      register_module("pos_encoder", learned);
    } else if (o.positional == "relative") {
      relative = std::make_shared<nn::RelativePositionBias>(o.heads, o.window - 1);
      register_module("relative_bias", relative);
    }
    if (o.attention == "dense") {
      transformer = std::make_shared<nn::TransformerEncoder>(
          nn::TransformerEncoderLayerOptions(o.d_model, o.heads).dim_feedforward(o.ff).dropout(o.dropout).batch_first(true),
          o.layers);
      register_module("transformer", transformer);
    } else {
      for (int64_t l = 0; l < o.layers; ++l) {
        efficient.push_back(std::make_shared<EfficientEncoderLayer>(o));
        register_module("layers." + std::to_string(l), efficient.back());
      }
    }
    register_module("output_projection", output_projection);
  }

  // The encoder input [B, L, d_model] and the attention mask (undefined, or the relative bias
  // [H, L, L]); the causal mask is applied through is_causal.
  std::pair<Tensor, Tensor> embed(const Tensor& x) const {
    Tensor z = input_projection.forward(x);
    if (opt_.positional == "sinusoidal") z = sinusoidal.forward(z);
    if (learned) z = learned->forward(z);
    Tensor mask;
    if (relative) mask = relative->forward(x.size(1), x.size(1));
    return {z, mask};
  }

  // x [B, L, 1] -> next value [B, 1]
  Tensor forward(const Tensor& x) const {
    auto [z, mask] = embed(x);
    Tensor h = z;
    if (transformer)
      h = transformer->forward(z, mask, Tensor(), /*is_causal=*/true);
    else
      for (auto& l : efficient) h = l->forward(h);
    return output_projection.forward(select(h, 1, h.size(1) - 1));
  }

  // Self-attention weights of every layer for x [1, L, 1], averaged over heads: [layers][L * L].
  std::vector<std::vector<float>> attention_maps(const Tensor& x) {
    NoGradGuard ng;
    auto [z, mask] = embed(x);
    std::vector<std::vector<float>> maps;
    for (size_t l = 0; transformer && l < transformer->num_layers(); ++l) {
      auto& layer = transformer->layer(l);
      const Tensor a_in = layer.options().norm_first() ? layer.norm1.forward(z) : z;
      auto w = layer.self_attn.forward_ex(a_in, a_in, a_in, Tensor(), true, mask, true, true).second;
      maps.push_back(w.to_vector<float>());
      z = layer.forward(z, mask, Tensor(), true);
    }
    return maps;
  }

  ModelOptions opt_;
  nn::Linear input_projection;
  std::shared_ptr<nn::TransformerEncoder> transformer;      // --attention dense
  std::vector<std::shared_ptr<EfficientEncoderLayer>> efficient;  // the others
  nn::Linear output_projection;
  nn::SinusoidalPositionalEncoding sinusoidal;
  std::shared_ptr<nn::LearnedPositionalEncoding> learned;
  std::shared_ptr<nn::RelativePositionBias> relative;
};

std::vector<float> predict(const TimeSeriesTransformer& m, const std::vector<float>& windows, int64_t n, int64_t w) {
  NoGradGuard ng;
  return m.forward(Tensor::from_vector(windows, {n, w, 1})).to_vector<float>();
}

struct TailResult {
  std::vector<float> one_step, free_run;
  double one_mae, one_rmse, free_mae, free_rmse;
};

// One-step forecasts of full[points + i] from the true window before it, and a free-running
// rollout from the last window of the training series.
template <typename Predict>
TailResult evaluate_tail(const std::vector<float>& full, int64_t points, int64_t tail, int64_t W, Predict&& f) {
  TailResult r;
  std::vector<float> wins;
  for (int64_t i = 0; i < tail; ++i)
    wins.insert(wins.end(), full.begin() + (points + i - W), full.begin() + (points + i));
  r.one_step = f(wins, tail);
  std::vector<float> ctx(full.begin() + (points - W), full.begin() + points);
  for (int64_t i = 0; i < tail; ++i) {
    const float next = f(ctx, 1)[0];
    r.free_run.push_back(next);
    ctx.erase(ctx.begin());
    ctx.push_back(next);
  }
  const std::vector<float> truth(full.begin() + points, full.begin() + points + tail);
  r.one_mae = metrics::mae(truth, r.one_step);
  r.one_rmse = metrics::rmse(truth, r.one_step);
  r.free_mae = metrics::mae(truth, r.free_run);
  r.free_rmse = metrics::rmse(truth, r.free_run);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  examples::CommonOptions co;
  co.epochs = 60;
  co.batch_size = 64;
  co.lr = 1e-3;
  co.out_dir = "out/transformer_forecast";
  // Small matrices: one thread is faster (docs/examples-task-c.md), unless OMP_NUM_THREADS says otherwise.
  if (!std::getenv("OMP_NUM_THREADS")) co.threads = 1;
  ModelOptions mo;
  int64_t points = 1000, tail = 200;
  double t_end = 50.0, clip = 1.0;
  std::string schedule = "cosine", data = "sine", csv = "examples/data/co2_mm_mlo.csv";
  bool compare = false;
  int compare_epochs = 100;
  CLI::App app{"attn example, reference task C: sine forecasting with a causal time-series transformer"};
  examples::add_common_flags(app, co);
  app.remove_option(app.get_option("--hidden"));
  // 0 = full batch: switch off the common flag's range check (>= 1), which would reject it.
  app.get_option("--batch-size")->get_validator()->active(false);
  app.get_option("--batch-size")->check(CLI::Range(int64_t(0), int64_t(1) << 30))->description("mini-batch size (0 = full batch)");
  app.add_option("--ff,--hidden", mo.ff, "width of each layer's feed-forward block (dim_feedforward)")
      ->check(CLI::Range(int64_t(1), int64_t(65536)));
  app.add_option("--d-model", mo.d_model, "model width")->check(CLI::Range(int64_t(1), int64_t(4096)));
  app.add_option("--heads", mo.heads, "attention heads (must divide --d-model)")->check(CLI::Range(int64_t(1), int64_t(256)));
  app.add_option("--layers", mo.layers, "encoder layers")->check(CLI::Range(int64_t(1), int64_t(64)));
  app.add_option("--dropout", mo.dropout, "dropout in the encoder layers")->check(CLI::Range(0.0, 0.99));
  app.add_option("--positional", mo.positional,
                 "positional information: sinusoidal (added table), learned (added table), relative (learned "
                 "per-head bias on the attention scores), none (the causal mask alone)")
      ->check(CLI::IsMember({"sinusoidal", "learned", "relative", "none"}));
  app.add_option("--attention", mo.attention,
                 "self-attention of the encoder layers: dense (nn::TransformerEncoderLayer), linear (elu+1), a "
                 "block-sparse pattern: sliding_window, strided, global_window, bigbird, or an approximate variant: "
                 "probsparse (Informer), performer (FAVOR+), lsh (Reformer), linformer (docs/attention-zoo.md)")
      ->check(CLI::IsMember(kAttention));
  app.add_option("--block", mo.block, "block-sparse patterns: block size in steps")->check(CLI::Range(int64_t(1), int64_t(4096)));
  app.add_option("--attn-window", mo.attn_window, "block-sparse patterns: window in blocks (each side; causal: before)")
      ->check(CLI::Range(int64_t(0), int64_t(4096)));
  app.add_option("--data", data, "sine (the task B series) or co2 (Mauna Loa monthly CO2, first differences)")
      ->check(CLI::IsMember({"sine", "co2"}));
  app.add_option("--csv", csv, "the CO2 file (NOAA's co2_mm_mlo.csv) for --data co2")->check(CLI::ExistingFile);
  app.add_option("--window", mo.window, "input window length")->check(CLI::Range(int64_t(1), int64_t(10000)));
  app.add_option("--schedule", schedule, "learning-rate schedule: cosine (from --lr to 0 over --epochs) or none")
      ->check(CLI::IsMember({"cosine", "none"}));
  app.add_option("--clip", clip, "gradient-norm clipping, 0 = off")->check(examples::non_negative());
  app.add_option("--points", points, "points of the training series")->check(CLI::Range(int64_t(2), int64_t(10000000)));
  app.add_option("--t-end", t_end, "the series is sin(linspace(0, t_end, points))")->check(examples::positive());
  app.add_option("--tail", tail, "held-out points after the series")->check(CLI::Range(int64_t(1), int64_t(1000000)));
  app.add_flag("--compare-lstm", compare,
               "also train sine_forecast's LSTM + attention model (its defaults, same --seed, --window and data) and "
               "print both results side by side");
  app.add_option("--compare-epochs", compare_epochs, "epochs for the --compare-lstm model (sine_forecast's default)")
      ->check(CLI::Range(0, 100000));
  if (int rc = examples::parse(app, argc, argv); rc >= 0) return rc;
  if (mo.attention != "dense" && mo.positional == "relative") {
    std::fprintf(stderr, "transformer_forecast: --positional relative needs --attention dense\n");
    return 2;
  }
  if (mo.d_model % mo.heads != 0) {
    std::fprintf(stderr, "transformer_forecast: --d-model %lld is not divisible by --heads %lld\n",
                 (long long)mo.d_model, (long long)mo.heads);
    return 2;
  }
  if (points <= mo.window) {
    std::fprintf(stderr, "transformer_forecast: --points %lld must exceed --window %lld\n", (long long)points,
                 (long long)mo.window);
    return 2;
  }
  if (int rc = examples::apply_common(co, "transformer_forecast"); rc >= 0) return rc;
  examples::install_sigint_handler();
  examples::Timer total;

  try {
    std::vector<float> full;
    double unit = 1.0;  // co2: ppm per unit of the scaled differences
    if (data == "co2") {
      // d_t = c_t - c_{t-1}, scaled by the standard deviation of the training part; the last
      // `tail` months are held out (a one-step forecast of d_t is one of the level c_t).
      const std::vector<double> c = examples::read_co2(csv);
      std::vector<double> d(c.size() - 1);
      for (size_t i = 1; i < c.size(); ++i) d[i - 1] = c[i] - c[i - 1];
      ATTN_CHECK(int64_t(d.size()) > tail + mo.window + 1, "transformer_forecast: ", d.size(),
                 " monthly differences are too few for --tail ", tail, " and --window ", mo.window);
      points = int64_t(d.size()) - tail;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < points; ++i) mean += d[size_t(i)] / double(points);
      for (int64_t i = 0; i < points; ++i) var += (d[size_t(i)] - mean) * (d[size_t(i)] - mean) / double(points);
      unit = std::sqrt(var);
      for (double x : d) full.push_back(float((x - mean) / unit));
    } else {
      // The series and its continuation share one time grid: t_i = i * t_end / (points - 1).
      const double dt = t_end / double(points - 1);
      full.resize(size_t(points + tail));
      for (int64_t i = 0; i < points + tail; ++i) full[size_t(i)] = float(std::sin(double(i) * dt));
    }
    data::check_finite(full, "transformer_forecast series");
    const std::vector<float> series(full.begin(), full.begin() + points);
    const int64_t W = mo.window;
    const std::string data_id = examples::data_fingerprint(
        std::to_string(points) + " points, window " + std::to_string(W), series);
    const data::WindowedSeries train = data::make_windows(series, W);
    const int64_t N = train.count;
    const int64_t batch = co.batch_size == 0 ? N : std::min(co.batch_size, N);
    std::vector<float> tail_windows, tail_truth(full.begin() + points, full.end());
    for (int64_t i = 0; i < tail; ++i)
      tail_windows.insert(tail_windows.end(), full.begin() + (points + i - W), full.begin() + (points + i));

    TimeSeriesTransformer model(mo);
    optim::Adam opt(model.parameters(), optim::AdamOptions(co.lr));
    optim::CosineAnnealingLR cosine(opt, std::max(co.epochs, 1));  // lr_at(epoch): closed form, resume-safe
    examples::History hist;
    hist.columns = {"epoch", "train_mse", "tail_mse", "lr", "seconds"};
    int start_epoch = 0;
    if (!co.load.empty()) {
      examples::load_progress(co.load, model, opt, "transformer_forecast", data_id, start_epoch, hist);
      if (!co.quiet) std::printf("resumed from %s after epoch %d\n", co.load.c_str(), start_epoch);
    }
    if (!co.quiet)
      std::printf("transformer_forecast: %lld windows of %lld points, Linear(1 -> %lld) + %s positions, %lld causal "
                  "encoder layer(s) (%s attention, %lld heads, ff %lld, dropout %g), %lld parameters\n  lr %g (%s), batch %lld, clip %g, "
                  "threads %d\n",
                  (long long)N, (long long)W, (long long)mo.d_model, mo.positional.c_str(), (long long)mo.layers,
                  mo.attention.c_str(), (long long)mo.heads, (long long)mo.ff, mo.dropout, (long long)model.num_parameters(), co.lr,
                  schedule.c_str(), (long long)batch, clip, get_num_threads());

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
            for (const int64_t i : rows) {
              x.insert(x.end(), train.x.begin() + i * W, train.x.begin() + (i + 1) * W);
              y.push_back(train.y[size_t(i)]);
            }
            const int64_t n = int64_t(rows.size());
            return mse_loss(model.forward(Tensor::from_vector(x, {n, W, 1})), Tensor::from_vector(y, {n, 1}));
          });
      model.eval();
      const double val = examples::require_finite(
          std::pow(metrics::rmse(tail_truth, predict(model, tail_windows, tail, W)), 2), "the held-out MSE");
      hist.add({double(epoch + 1), train_mse, val, opt.lr(), et.seconds()});
      if (!co.quiet)
        std::printf("epoch %3d/%d  train MSE %.6f  held-out one-step MSE %.6f  (%.2fs)\n", epoch + 1, co.epochs,
                    train_mse, val, et.seconds());
      if (!co.save.empty())
        save_checkpoint(co.save, model, &opt, examples::progress_metadata("transformer_forecast", epoch + 1, hist, data_id));
      hist.save(co.out_dir + "/metrics.csv");
      if (examples::stop_requested()) {
        std::printf("interrupted after epoch %d%s\n", epoch + 1,
                    co.save.empty() ? "" : ("; saved to " + co.save + ", resume with --load").c_str());
        return 130;
      }
    }
    const double train_seconds = total.seconds();

    // ---- held-out tail ----
    model.eval();
    const TailResult res = evaluate_tail(full, points, tail, W, [&](const std::vector<float>& w, int64_t n) {
      return predict(model, w, n, W);
    });
    const auto fit = predict(model, train.x, N, W);
    const double fit_mse = std::pow(metrics::rmse(train.y, fit), 2);

    // ---- plots ----
    std::vector<double> log_train, log_tail;
    for (double v : hist.column("train_mse")) log_train.push_back(std::log10(v));
    for (double v : hist.column("tail_mse")) log_tail.push_back(std::log10(v));
    plot::Figure loss_fig(800, 450);
    loss_fig.title("transformer_forecast: MSE per epoch (log10)").xlabel("epoch").ylabel("log10 MSE");
    loss_fig.line(hist.column("epoch"), log_train, "train");
    loss_fig.line(hist.column("epoch"), log_tail, "held-out tail, one step", plot::Style().with_dashes());
    loss_fig.save(co.out_dir + "/loss.svg");

    const int64_t shown_from = std::max<int64_t>(0, points - 150);
    std::vector<double> t_all, v_all, t_tail;
    for (int64_t i = shown_from; i < points + tail; ++i) {
      t_all.push_back(double(i));
      v_all.push_back(full[size_t(i)]);
    }
    for (int64_t i = 0; i < tail; ++i) t_tail.push_back(double(points + i));
    plot::Figure fc_fig(1100, 480);
    fc_fig.title("transformer_forecast: true vs forecast on the held-out tail").xlabel("time step").ylabel("value");
    fc_fig.vspan(double(points), double(points + tail - 1), "held-out forecast region");
    fc_fig.line(t_all, v_all, "true series", plot::Style().with_color("#333333").with_width(1.2));
    fc_fig.line(t_tail, res.one_step, "forecast, one step (true windows)");
    fc_fig.line(t_tail, res.free_run, "forecast, free running", plot::Style().with_dashes());
    fc_fig.save(co.out_dir + "/forecast.svg");

    // Self-attention of each layer for the first held-out window (the one before full[points]).
    if (model.transformer) {
      const std::vector<float> w0(tail_windows.begin(), tail_windows.begin() + W);
      const auto maps = model.attention_maps(Tensor::from_vector(w0, {1, W, 1}));
      plot::Grid grid(1, int(maps.size()), 480, 420);
      grid.title("transformer_forecast: causal self-attention, first held-out window (mean over heads)");
      for (size_t l = 0; l < maps.size(); ++l)
        grid.at(0, int(l))
            .title("layer " + std::to_string(l + 1))
            .xlabel("key position")
            .ylabel("query position")
            .colorbar_label("weight")
            .heatmap(maps[l], W, W);
      grid.save(co.out_dir + "/attention.svg");
    }

    std::printf("in-sample MSE %.6f over %lld windows\n", fit_mse, (long long)N);
    std::printf("held-out %lld points: one-step MAE %.5f RMSE %.5f | free-running MAE %.5f RMSE %.5f\n",
                (long long)tail, res.one_mae, res.one_rmse, res.free_mae, res.free_rmse);
    if (data == "co2")
      std::printf("co2: one-step MAE %.4f ppm, RMSE %.4f ppm over the last %lld months (attention %s)\n",
                  res.one_mae * unit, res.one_rmse * unit, (long long)tail, mo.attention.c_str());
    std::printf("training %.1fs, total %.1fs; plots and metrics in %s (loss.svg, forecast.svg, %smetrics.csv)\n",
                train_seconds, total.seconds(), co.out_dir.c_str(), model.transformer ? "attention.svg, " : "");

    // ---- the task B model, trained exactly as sine_forecast trains it ----
    if (compare) {
      examples::Timer ct;
      manual_seed(co.seed);  // sine_forecast seeds once, then builds its model
      examples::ForecastModel lstm(64, 2);
      optim::Adam lopt(lstm.parameters(), optim::AdamOptions(1e-3));
      const Tensor x = Tensor::from_vector(train.x, {N, W, 1}), y = Tensor::from_vector(train.y, {N, 1});
      for (int epoch = 0; epoch < compare_epochs && !examples::stop_requested(); ++epoch) {
        lopt.zero_grad();
        Tensor loss = mse_loss(lstm.forward(x).first, y);
        loss.backward();
        lopt.step();
      }
      lstm.eval();
      const TailResult lr = evaluate_tail(full, points, tail, W, [&](const std::vector<float>& w, int64_t n) {
        NoGradGuard ng;
        return lstm.forward(Tensor::from_vector(w, {n, W, 1})).first.to_vector<float>();
      });
      std::printf("\ncomparison on the same held-out %lld points (seed %llu):\n", (long long)tail,
                  (unsigned long long)co.seed);
      std::printf("  %-44s %10s %10s %10s %10s %8s\n", "model", "1-step MAE", "1-step RMSE", "free MAE", "free RMSE",
                  "train s");
      std::printf("  %-44s %10.5f %10.5f %10.5f %10.5f %8.1f\n",
                  ("transformer (" + std::to_string(co.epochs) + " epochs, " + mo.positional + ")").c_str(), res.one_mae,
                  res.one_rmse, res.free_mae, res.free_rmse, train_seconds);
      std::printf("  %-44s %10.5f %10.5f %10.5f %10.5f %8.1f\n",
                  ("sine_forecast LSTM+attention (" + std::to_string(compare_epochs) + " epochs)").c_str(), lr.one_mae,
                  lr.one_rmse, lr.free_mae, lr.free_rmse, ct.seconds());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "transformer_forecast: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
