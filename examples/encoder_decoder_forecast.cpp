// Multi-step forecasting with an encoder-decoder transformer (nn::TransformerEncoder +
// nn::TransformerDecoder), in two ways:
//   onepass (Informer style, Zhou et al. 2021): the encoder reads the look-back window; the decoder
//     is fed the last --label-len observed points followed by --horizon placeholders (zeros) and
//     emits the whole horizon in one pass (its self-attention is causal, so a placeholder sees the
//     start segment and the placeholders before it);
//   autoregressive: the decoder starts from the last observed point and emits one step at a time,
//     each forecast fed back as the next input; trained with teacher forcing in one causal pass,
//     forecast with the KV cache (TransformerDecoder::forward_step: O(horizon) per step).
// Inputs are value embeddings Linear(1 -> d_model) plus the sinusoidal table at the points' time
// positions (the decoder continues the window's positions), output Linear(d_model -> 1).
// Data (--data):
//   sine: sin(linspace(0, 50, 1000)) as in tasks B and C; the next --tail points of the same sine
//         are held out (defaults: window 20, horizon 10, the settings of seq2seq_forecast);
//   co2:  monthly CO2 at Mauna Loa (examples/data/co2_mm_mlo.csv, NOAA GML; --csv to point
//         elsewhere), the last --tail months held out (defaults: window 48, horizon 12, tail 120);
//         each window is shifted by its last value and scaled by a constant from the training part
//         ("last-value normalisation": the trend leaves the training range), and the forecasts are
//         compared with the seasonal-naive (the value 12 months earlier) and seasonal-naive + drift
//         (plus the last year's change) baselines.
// Reported on the held-out part: forecasts of --horizon steps from every true window whose targets
// lie in it (MAE/RMSE overall and at step 1), and a free-running rollout over the whole tail in
// blocks of --horizon. Writes metrics.csv and forecast.svg into --out-dir.
#include <attn/attn.hpp>
#include <attn/data/series_csv.hpp>
#include <attn/metrics/metrics.hpp>
#include <attn/nn/attention/transformer.hpp>
#include <attn/nn/positional.hpp>
#include <attn/plot/svg.hpp>

#include <cmath>
#include <fstream>
#include <numeric>

#include "common.hpp"

using namespace attn;

namespace {

struct Config {
  int64_t d_model = 32, heads = 4, enc_layers = 2, dec_layers = 1, ff = 64, window = 20, horizon = 10, label_len = 10;
  double dropout = 0.0;
};

class EncoderDecoder : public nn::Module {
 public:
  explicit EncoderDecoder(const Config& c)
      : c_(c),
        enc_embed(1, c.d_model),
        dec_embed(1, c.d_model),
        encoder(layer_options(c), c.enc_layers, true),
        decoder(layer_options(c), c.dec_layers, true),
        head(c.d_model, 1),
        pos(c.d_model) {
    register_module("enc_embed", enc_embed);
    register_module("dec_embed", dec_embed);
    register_module("encoder", encoder);
    register_module("decoder", decoder);
    register_module("head", head);
  }
  static nn::TransformerEncoderLayerOptions layer_options(const Config& c) {
    return nn::TransformerEncoderLayerOptions(c.d_model, c.heads).dim_feedforward(c.ff).dropout(c.dropout);
  }
  // window [B, W, 1] -> memory [B, W, d_model]
  Tensor encode(const Tensor& window) const { return encoder.forward(pos.forward(enc_embed.forward(window))); }
  // decoder inputs [B, T, 1] at time positions offset.. -> outputs [B, T, 1], causal
  Tensor decode(const Tensor& inputs, const Tensor& memory, int64_t offset) const {
    const Tensor z = pos.forward(dec_embed.forward(inputs), offset);
    return head.forward(decoder.forward(z, memory, Tensor(), Tensor(), Tensor(), Tensor(), /*tgt_is_causal=*/true));
  }
  // One new decoder position with the KV cache (inference).
  Tensor decode_step(const Tensor& input, const Tensor& memory, nn::TransformerDecoderCache& cache,
                     int64_t offset) const {
    const Tensor z = pos.forward(dec_embed.forward(input), offset);
    return head.forward(decoder.forward_step(z, memory, cache));
  }

  Config c_;
  nn::Linear enc_embed, dec_embed;
  nn::TransformerEncoder encoder;
  nn::TransformerDecoder decoder;
  nn::Linear head;
  nn::SinusoidalPositionalEncoding pos;
};

// Windows [n, W] (normalised) and their next H values [n, H]; row i starts at starts[i].
struct Windows {
  std::vector<float> x, y, shift;  // shift: what was subtracted from row i (0 without normalisation)
  int64_t n = 0;
};

Windows make_windows(const std::vector<double>& s, const std::vector<int64_t>& starts, int64_t W, int64_t H,
                     bool last_norm, double scale) {
  Windows w;
  for (int64_t t : starts) {
    const double sh = last_norm ? s[size_t(t + W - 1)] : 0.0;
    for (int64_t k = 0; k < W; ++k) w.x.push_back(float((s[size_t(t + k)] - sh) / scale));
    for (int64_t k = 0; k < H; ++k) w.y.push_back(float((s[size_t(t + W + k)] - sh) / scale));
    w.shift.push_back(float(sh));
    ++w.n;
  }
  return w;
}

// Forecasts [n, H] (normalised units) for windows x [n, W].
std::vector<float> forecast(const EncoderDecoder& m, const std::vector<float>& x, int64_t n, bool onepass) {
  NoGradGuard ng;
  const Config& c = m.c_;
  const int64_t W = c.window, H = c.horizon;
  const Tensor win = Tensor::from_vector(x, {n, W, 1});
  const Tensor memory = m.encode(win);
  if (onepass) {
    const int64_t Lb = c.label_len;
    const Tensor dec_in = cat({narrow(win, 1, W - Lb, Lb), Tensor::zeros({n, H, 1})}, 1);
    return narrow(m.decode(dec_in, memory, W - Lb), 1, Lb, H).contiguous().to_vector<float>();
  }
  nn::TransformerDecoderCache cache;
  Tensor in = narrow(win, 1, W - 1, 1);  // the last observed point starts the decoder
  std::vector<Tensor> outs;
  for (int64_t k = 0; k < H; ++k) {
    in = m.decode_step(in, memory, cache, W - 1 + k);
    outs.push_back(in);
  }
  return cat(outs, 1).to_vector<float>();
}

// Training loss on rows of the training windows.
Tensor loss_on(const EncoderDecoder& m, const Windows& tr, const std::vector<int64_t>& rows, bool onepass) {
  const Config& c = m.c_;
  const int64_t W = c.window, H = c.horizon, n = int64_t(rows.size());
  std::vector<float> x, y;
  for (int64_t i : rows) {
    x.insert(x.end(), tr.x.begin() + i * W, tr.x.begin() + (i + 1) * W);
    y.insert(y.end(), tr.y.begin() + i * H, tr.y.begin() + (i + 1) * H);
  }
  const Tensor win = Tensor::from_vector(x, {n, W, 1}), target = Tensor::from_vector(y, {n, H, 1});
  const Tensor memory = m.encode(win);
  if (onepass) {
    const int64_t Lb = c.label_len;
    const Tensor dec_in = cat({narrow(win, 1, W - Lb, Lb), Tensor::zeros({n, H, 1})}, 1);
    return mse_loss(narrow(m.decode(dec_in, memory, W - Lb), 1, Lb, H), target);
  }
  // teacher forcing: inputs [x_W, y_1 .. y_{H-1}] predict [y_1 .. y_H] in one causal pass
  const Tensor dec_in = cat({narrow(win, 1, W - 1, 1), narrow(target, 1, 0, H - 1)}, 1);
  return mse_loss(m.decode(dec_in, memory, W - 1), target);
}

struct Scores {
  double mae = 0, rmse = 0, mae1 = 0, rmse1 = 0, free_mae = 0, free_rmse = 0;
  std::vector<double> free_run;
};

}  // namespace

int main(int argc, char** argv) {
  examples::CommonOptions co;
  co.epochs = 40;
  co.batch_size = 32;
  co.lr = 1e-3;
  co.out_dir = "out/encoder_decoder_forecast";
  if (!std::getenv("OMP_NUM_THREADS")) co.threads = 1;  // small matrices: one thread is faster
  Config c;
  std::string data = "sine", mode = "both", csv = "examples/data/co2_mm_mlo.csv";
  int64_t points = 1000, tail = 200;
  double clip = 1.0;
  CLI::App app{"attn example: encoder-decoder transformer forecasting (Informer-style one pass and autoregressive "
               "with a KV cache)"};
  examples::add_common_flags(app, co);
  for (const char* f : {"--hidden", "--save", "--load", "--stop-after"}) app.remove_option(app.get_option(f));
  app.add_option("--data", data, "sine or co2")->check(CLI::IsMember({"sine", "co2"}));
  app.add_option("--csv", csv, "the CO2 file (NOAA's co2_mm_mlo.csv) for --data co2")->check(CLI::ExistingFile);
  app.add_option("--mode", mode, "onepass, autoregressive or both")
      ->check(CLI::IsMember({"onepass", "autoregressive", "both"}));
  app.add_option("--d-model", c.d_model, "model width")->check(CLI::Range(int64_t(1), int64_t(1024)));
  app.add_option("--heads", c.heads, "attention heads (must divide --d-model)")->check(CLI::Range(int64_t(1), int64_t(64)));
  app.add_option("--enc-layers", c.enc_layers, "encoder layers")->check(CLI::Range(int64_t(1), int64_t(16)));
  app.add_option("--dec-layers", c.dec_layers, "decoder layers")->check(CLI::Range(int64_t(1), int64_t(16)));
  app.add_option("--ff", c.ff, "feed-forward width")->check(CLI::Range(int64_t(1), int64_t(8192)));
  app.add_option("--dropout", c.dropout, "dropout in the layers")->check(CLI::Range(0.0, 0.9));
  auto* wopt = app.add_option("--window", c.window, "look-back window")->check(CLI::Range(int64_t(2), int64_t(4096)));
  auto* hopt = app.add_option("--horizon", c.horizon, "forecast horizon")->check(CLI::Range(int64_t(1), int64_t(1024)));
  auto* lopt = app.add_option("--label-len", c.label_len, "start segment of the one-pass decoder (<= --window)")
                   ->check(CLI::Range(int64_t(1), int64_t(4096)));
  auto* topt = app.add_option("--tail", tail, "held-out points (months for co2)")->check(CLI::Range(int64_t(1), int64_t(100000)));
  app.add_option("--points", points, "training points of the sine")->check(CLI::Range(int64_t(10), int64_t(1000000)));
  app.add_option("--clip", clip, "gradient-norm clipping, 0 = off")->check(examples::non_negative());
  if (int rc = examples::parse(app, argc, argv); rc >= 0) return rc;
  if (data == "co2") {  // defaults for monthly data with a yearly cycle
    if (!wopt->count()) c.window = 48;
    if (!hopt->count()) c.horizon = 12;
    if (!lopt->count()) c.label_len = 24;
    if (!topt->count()) tail = 120;
  }
  if (c.d_model % c.heads != 0 || c.label_len > c.window) {
    std::fprintf(stderr, "encoder_decoder_forecast: need --heads dividing --d-model and --label-len <= --window\n");
    return 2;
  }
  if (int rc = examples::apply_common(co, "encoder_decoder_forecast"); rc >= 0) return rc;
  examples::install_sigint_handler();

  try {
    // ---- the series: training part [0, n_train), held-out tail after it ----
    std::vector<double> s;
    int64_t n_train = 0;
    const bool last_norm = data == "co2";
    if (data == "sine") {
      const double dt = 50.0 / double(points - 1);
      for (int64_t i = 0; i < points + tail; ++i) s.push_back(std::sin(double(i) * dt));
      n_train = points;
    } else {
      s = examples::read_co2(csv);
      n_train = int64_t(s.size()) - tail;
    }
    const int64_t W = c.window, H = c.horizon;
    if (n_train < W + H + 1 || (last_norm && W < 13)) {
      std::fprintf(stderr, "encoder_decoder_forecast: %lld training points are too few for --window %lld and --horizon "
                   "%lld (co2 needs --window >= 13 for its baselines)\n", (long long)n_train, (long long)W, (long long)H);
      return 2;
    }
    std::vector<int64_t> train_starts, test_starts;
    for (int64_t t = 0; t + W + H <= n_train; ++t) train_starts.push_back(t);
    for (int64_t t = n_train - W; t + W + H <= int64_t(s.size()); ++t) test_starts.push_back(t);
    double scale = 1.0;  // co2: RMS of (target - the window's last value) over the training windows
    if (last_norm) {
      double ss = 0;
      int64_t cnt = 0;
      for (int64_t t : train_starts)
        for (int64_t k = 0; k < H; ++k, ++cnt) ss += std::pow(s[size_t(t + W + k)] - s[size_t(t + W - 1)], 2);
      scale = std::sqrt(ss / double(cnt));
    }
    const Windows tr = make_windows(s, train_starts, W, H, last_norm, scale);
    const Windows te = make_windows(s, test_starts, W, H, last_norm, scale);
    std::printf("encoder_decoder_forecast: %s, %lld training points (%lld windows), %lld held out; window %lld, "
                "horizon %lld, d_model %lld, %lld+%lld layers, %d epochs, threads %d\n",
                data.c_str(), (long long)n_train, (long long)tr.n, (long long)tail, (long long)W, (long long)H,
                (long long)c.d_model, (long long)c.enc_layers, (long long)c.dec_layers, co.epochs, get_num_threads());

    // ---- score a forecaster: every held-out window, then a free-running rollout in blocks ----
    auto score = [&](const std::function<std::vector<float>(const std::vector<float>&, int64_t)>& f) {
      Scores r;
      const std::vector<float> p = f(te.x, te.n);
      std::vector<double> truth, pred, truth1, pred1;
      for (int64_t i = 0; i < te.n; ++i)
        for (int64_t k = 0; k < H; ++k) {
          const double yt = double(te.y[size_t(i * H + k)]) * scale + te.shift[size_t(i)];
          const double yp = double(p[size_t(i * H + k)]) * scale + te.shift[size_t(i)];
          truth.push_back(yt);
          pred.push_back(yp);
          if (k == 0) truth1.push_back(yt), pred1.push_back(yp);
        }
      r.mae = metrics::mae(truth, pred);
      r.rmse = metrics::rmse(truth, pred);
      r.mae1 = metrics::mae(truth1, pred1);
      r.rmse1 = metrics::rmse(truth1, pred1);
      std::vector<double> hist(s.begin(), s.begin() + n_train);  // the rollout's own history
      while (int64_t(r.free_run.size()) < tail) {
        const int64_t t = int64_t(hist.size()) - W;
        std::vector<double> ext(hist.begin() + t, hist.end());
        ext.resize(size_t(W + H), 0.0);
        const Windows one = make_windows(ext, {0}, W, H, last_norm, scale);
        const std::vector<float> q = f(one.x, 1);
        for (int64_t k = 0; k < H && int64_t(r.free_run.size()) < tail; ++k) {
          const double v = double(q[size_t(k)]) * scale + one.shift[0];
          r.free_run.push_back(v);
          hist.push_back(v);
        }
      }
      const std::vector<double> tail_truth(s.begin() + n_train, s.end());
      r.free_mae = metrics::mae(tail_truth, r.free_run);
      r.free_rmse = metrics::rmse(tail_truth, r.free_run);
      return r;
    };

    examples::History hist;
    hist.columns = {"model", "epoch", "train_mse", "heldout_mae", "seconds"};
    std::vector<std::pair<std::string, Scores>> results;
    std::vector<std::string> modes;
    if (mode != "autoregressive") modes.push_back("onepass");
    if (mode != "onepass") modes.push_back("autoregressive");
    examples::Progress progress(co.quiet);
    for (size_t mi = 0; mi < modes.size(); ++mi) {
      const bool onepass = modes[mi] == "onepass";
      manual_seed(co.seed);
      EncoderDecoder model(c);
      optim::Adam opt(model.parameters(), optim::AdamOptions(co.lr));
      optim::CosineAnnealingLR cosine(opt, std::max(co.epochs, 1));
      std::vector<int64_t> order(size_t(tr.n));
      examples::Timer timer;
      for (int epoch = 0; epoch < co.epochs && !examples::stop_requested(); ++epoch) {
        examples::Timer et;
        opt.set_lr(cosine.lr_at(epoch));
        model.train();
        std::iota(order.begin(), order.end(), 0);
        examples::shuffle(order);
        const double mse = examples::train_epoch(opt, model.parameters(), clip, order, std::min(co.batch_size, tr.n),
                                                 epoch, co, progress, [&](const std::vector<int64_t>& rows) {
                                                   return loss_on(model, tr, rows, onepass);
                                                 });
        model.eval();
        const std::vector<float> p = forecast(model, te.x, te.n, onepass);
        const double mae = examples::require_finite(metrics::mae(te.y, p) * scale, "the held-out MAE");
        hist.add({double(mi), double(epoch + 1), mse, mae, et.seconds()});
        if (!co.quiet && ((epoch + 1) % 10 == 0 || epoch + 1 == co.epochs))
          std::printf("  %-14s epoch %3d/%d  train MSE %.6f  held-out MAE %.5f  (%.2fs)\n", modes[mi].c_str(),
                      epoch + 1, co.epochs, mse, mae, et.seconds());
      }
      model.eval();
      const double train_s = timer.seconds();
      examples::Timer ft;
      Scores r = score([&](const std::vector<float>& x, int64_t n) { return forecast(model, x, n, onepass); });
      std::printf("%-15s held-out: %lld-step MAE %.5f RMSE %.5f | step 1 MAE %.5f RMSE %.5f | free-running (blocks of "
                  "%lld) MAE %.5f RMSE %.5f | training %.1fs, forecasting %.2fs\n",
                  modes[mi].c_str(), (long long)H, r.mae, r.rmse, r.mae1, r.rmse1, (long long)H, r.free_mae,
                  r.free_rmse, train_s, ft.seconds());
      results.push_back({modes[mi], r});
      hist.save(co.out_dir + "/metrics.csv");
    }
    if (last_norm) {  // seasonal baselines, the same windows and rollout
      for (const bool drift : {false, true}) {
        Scores r = score([&](const std::vector<float>& x, int64_t n) {
          std::vector<float> out;
          for (int64_t i = 0; i < n; ++i) {
            const float* w = x.data() + i * W;
            for (int64_t k = 0; k < H; ++k) {
              // value 12 months before the target (k < 12 inside the window; later ones repeat the cycle)
              const int64_t back = W - 12 + (k % 12);
              out.push_back(w[back] + (drift ? float((k / 12 + 1)) * (w[W - 1] - w[W - 13]) : 0.0f));
            }
          }
          return out;
        });
        const std::string name = drift ? "seasonal+drift" : "seasonal-naive";
        std::printf("%-15s held-out: %lld-step MAE %.5f RMSE %.5f | step 1 MAE %.5f RMSE %.5f | free-running MAE %.5f "
                    "RMSE %.5f\n", name.c_str(), (long long)H, r.mae, r.rmse, r.mae1, r.rmse1, r.free_mae, r.free_rmse);
        results.push_back({name, r});
      }
    }

    // ---- plot: the end of the training part, the tail and the free-running rollouts ----
    const int64_t from = std::max<int64_t>(0, n_train - 3 * tail / 2);
    std::vector<double> ts, vs, tt;
    for (int64_t i = from; i < int64_t(s.size()); ++i) ts.push_back(double(i)), vs.push_back(s[size_t(i)]);
    for (int64_t i = 0; i < tail; ++i) tt.push_back(double(n_train + i));
    plot::Figure fig(1100, 480);
    fig.title("encoder_decoder_forecast (" + data + "): free-running forecasts of the held-out tail")
        .xlabel(data == "co2" ? "month since March 1958" : "time step")
        .ylabel(data == "co2" ? "CO2 (ppm)" : "value");
    fig.vspan(double(n_train), double(s.size() - 1), "held-out");
    fig.line(ts, vs, "true series", plot::Style().with_color("#333333").with_width(1.2));
    for (auto& [name, r] : results) fig.line(tt, r.free_run, name, plot::Style().with_dashes());
    fig.save(co.out_dir + "/forecast.svg");
    std::printf("plots and metrics in %s (forecast.svg, metrics.csv)\n", co.out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "encoder_decoder_forecast: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
