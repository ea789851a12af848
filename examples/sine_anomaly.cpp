// Reference task A: sine-wave anomaly classification with a BiLSTM and attention pooling.
// `--preset seed` reproduces the seed's exact settings; the defaults are settings that learn.
// Writes metrics.csv, loss.svg, roc.svg and attention.svg into --out-dir.
// Under mpirun (or with --distributed) it trains data-parallel: docs/distributed.md.
#include <attn/attn.hpp>
#include <attn/data/csv.hpp>
#include <attn/data/sine.hpp>
#include <attn/io/checkpoint.hpp>
#include <attn/metrics/metrics.hpp>
#include <attn/metrics/multiclass.hpp>
#include <attn/nn/attention/additive.hpp>
#include <attn/nn/rnn.hpp>
#include <attn/plot/svg.hpp>

#include "common.hpp"
#include "models.hpp"

using namespace attn;
using examples::AnomalyModel;
using examples::ForecastModel;

namespace {

struct TaskOptions {
  int64_t samples = 5000, length = 500;
  std::string anomaly = "flat";
  int channels = 1;
  std::string attention = "additive";
  std::string encoder = "conv-ahead";  // per-step features that see the next 24 steps (see models.hpp)
  std::string positional = "none";
  int64_t heads = 4, window = 16;
  std::string preset = "default";
  std::string features = "raw";  // raw | raw+diff (first difference as an extra channel)
  bool scale = true;                  // per-series scaling to max |x| = 1
  double clip = 1.0;                  // gradient-norm clipping (0 = off)
  std::string schedule = "cosine";    // cosine (to 0 over --epochs) | none
  int patience = 5;
  int64_t eval_batch = 250;
  std::string data;  // CSV of labelled series instead of the generator (see attn/data/csv.hpp)
  std::string attn_norm = "softmax";  // the pooling's normalisation over time
  std::string pooling = "evidence";  // evidence (binary) | attention (the seed's; K classes)
  std::string classes = "binary";  // binary: normal vs anomalous; kind: normal + one class per anomaly kind
};

// Model inputs [N, T, F] from the dataset: the raw channels, plus their first difference scaled
// per series to max |diff| = 1 (raw differences of a smooth series are ~1/100 of its range, too
// faint for the LSTM to see a flat or zero segment, where the difference is exactly 0).
std::vector<float> make_features(const data::SineAnomalyDataset& ds, bool diff, int64_t& features) {
  const int64_t C = ds.channels, T = ds.length;
  features = diff ? 2 * C : C;
  std::vector<float> out(size_t(ds.samples * T * features));
  for (int64_t i = 0; i < ds.samples; ++i)
    for (int64_t c = 0; c < C; ++c) {
      float max_diff = 0.f;
      for (int64_t t = 1; t < T; ++t) max_diff = std::max(max_diff, std::abs(ds.at(i, t, c) - ds.at(i, t - 1, c)));
      const float inv = max_diff > 0.f ? 1.f / max_diff : 0.f;
      for (int64_t t = 0; t < T; ++t) {
        float* o = &out[size_t((i * T + t) * features)];
        o[c] = ds.at(i, t, c);
        if (diff) o[C + c] = t == 0 ? 0.f : (ds.at(i, t, c) - ds.at(i, t - 1, c)) * inv;
      }
    }
  return out;
}

Tensor gather_batch(const std::vector<float>& feats, int64_t T, int64_t F, const std::vector<int64_t>& idx, size_t b,
                    size_t e) {
  std::vector<float> x(size_t(int64_t(e - b) * T * F));
  for (size_t k = b; k < e; ++k)
    std::copy_n(&feats[size_t(idx[k] * T * F)], size_t(T * F), &x[size_t(int64_t(k - b) * T * F)]);
  return Tensor::from_vector(x, {int64_t(e - b), T, F});
}

Tensor gather_labels(const std::vector<int>& labels, const std::vector<int64_t>& idx, size_t b, size_t e) {
  std::vector<float> y;
  for (size_t k = b; k < e; ++k) y.push_back(float(labels[size_t(idx[k])]));
  return Tensor::from_vector(y, {int64_t(e - b)});
}

// Two classes: BCE on one logit per series; K > 2: cross-entropy on K logits (mean or sum).
Tensor classification_loss(const Tensor& logits, const std::vector<int>& labels, const std::vector<int64_t>& idx,
                           size_t b, size_t e, Device device, Reduction reduction = Reduction::Mean) {
  if (logits.dim() == 1) return binary_cross_entropy_with_logits(logits, gather_labels(labels, idx, b, e).to(device), reduction);
  std::vector<int64_t> y;
  for (size_t k = b; k < e; ++k) y.push_back(labels[size_t(idx[k])]);
  return cross_entropy(logits, Tensor::from_vector(y, {int64_t(e - b)}).to(device), reduction);
}

struct Evaluation {
  double loss = 0;
  std::vector<double> probs;  // two classes: p(anomalous) per series
  std::vector<int> preds;     // K > 2: the predicted class per series
  std::vector<std::vector<float>> weights;  // per series
};

Evaluation evaluate(AnomalyModel& model, const std::vector<float>& feats, const std::vector<int>& labels, int64_t T,
                    int64_t F, const std::vector<int64_t>& idx, int64_t batch, bool keep_weights, Device device) {
  NoGradGuard ng;
  model.eval();
  Evaluation ev;
  double loss_sum = 0;
  for (size_t b = 0; b < idx.size(); b += size_t(batch)) {
    const size_t e = std::min(idx.size(), b + size_t(batch));
    auto [logits, w] = model.forward(gather_batch(feats, T, F, idx, b, e).to(device));
    loss_sum += classification_loss(logits, labels, idx, b, e, device, Reduction::Sum).item<double>();
    if (logits.dim() == 1) {
      for (double p : sigmoid(logits).to_vector<double>()) ev.probs.push_back(p);
    } else {
      for (int64_t c : argmax(logits, 1).to_vector<int64_t>()) ev.preds.push_back(int(c));
    }
    if (keep_weights) {
      const auto wv = w.to_vector<float>();
      for (size_t k = 0; k < e - b; ++k) ev.weights.emplace_back(wv.begin() + int64_t(k) * T, wv.begin() + int64_t(k + 1) * T);
    }
  }
  ev.loss = loss_sum / double(std::max<size_t>(idx.size(), 1));
  model.train();
  return ev;
}

}  // namespace

int main(int argc, char** argv) {
  examples::CommonOptions co;
  TaskOptions to;
  co.lr = 5e-3;
  co.epochs = 15;
  co.out_dir = "out/sine_anomaly";
  CLI::App app{"attn example, reference task A: sine-wave anomaly classification (BiLSTM + attention pooling)"};
  examples::add_common_flags(app, co);
  examples::add_device_flag(app, co);
  bool distributed = false;
  examples::add_distributed_flag(app, distributed);
  app.add_option("--samples", to.samples, "number of series")->check(CLI::Range(int64_t(10), int64_t(10000000)));
  app.add_option("--length", to.length, "points per series")->check(CLI::Range(int64_t(8), int64_t(1000000)));
  app.add_option("--anomaly", to.anomaly, "anomaly kind")->check(CLI::IsMember({"flat", "zero", "noise", "spike", "mix"}));
  app.add_option("--channels", to.channels, "1: sine; 2: + cosine; 3: + random walk")->check(CLI::Range(1, 3));
  app.add_option("--attention", to.attention,
                 "additive: the seed's attention pooling; multihead | linear | windowed | bigbird (block-sparse: "
                 "global + window + random blocks of --window steps): a self-attention block (residual) before the pooling")
      ->check(CLI::IsMember({"additive", "multihead", "linear", "windowed", "bigbird"}));
  app.add_option("--encoder", to.encoder,
                 "conv-ahead: two Conv1d layers, each step's features see it and the next 24 steps (the attention "
                 "peak then falls inside the anomaly); conv: the same, centred; bilstm: the seed's BiLSTM")
      ->check(CLI::IsMember({"bilstm", "conv", "conv-ahead"}));
  app.add_option("--positional", to.positional, "positional encoding added to the LSTM outputs")
      ->check(CLI::IsMember({"none", "sinusoidal", "learned"}));
  app.add_option("--heads", to.heads, "heads of the multihead/linear/windowed block")->check(CLI::Range(int64_t(1), int64_t(64)));
  app.add_option("--window", to.window, "windowed attention: keys within +-window steps; bigbird: block size in steps")->check(CLI::Range(int64_t(0), int64_t(100000)));
  app.add_option("--features", to.features, "model inputs")->check(CLI::IsMember({"raw", "raw+diff"}));
  app.add_option("--scale", to.scale, "scale each series to max |x| = 1 (true/false)");
  app.add_option("--clip", to.clip, "gradient-norm clipping, 0 = off")->check(examples::non_negative());
  app.add_option("--schedule", to.schedule, "learning-rate schedule: cosine decay over --epochs, or none")
      ->check(CLI::IsMember({"cosine", "none"}));
  app.add_option("--patience", to.patience, "early-stopping patience on validation loss")->check(CLI::Range(1, 100000));
  app.add_option("--pooling", to.pooling,
                 "evidence: weights softmax_t of each step's own logit, the output their weighted sum (binary only; "
                 "K classes use attention); attention: the seed's attention pooling")
      ->check(CLI::IsMember({"attention", "evidence"}));
  app.add_option("--attn-norm", to.attn_norm,
                 "normalisation of the attention pooling over time: softmax, or sparsemax / entmax15 (exact zeros, "
                 "Peters et al. 2019)")
      ->check(CLI::IsMember({"softmax", "sparsemax", "entmax15"}));
  app.add_option("--classes", to.classes,
                 "binary: normal vs anomalous; kind: normal plus one class per anomaly kind (with --anomaly mix: 5 "
                 "classes), trained with cross-entropy. A --data file with more than two labels is K-class too.")
      ->check(CLI::IsMember({"binary", "kind"}));
  app.add_option("--data", to.data, "train on labelled series from a CSV file (label,x0,x1,...) instead of generating them")
      ->check(CLI::ExistingFile);
  auto* preset = app.add_option("--preset", to.preset, "seed: the seed's exact settings; default: settings that learn")
                     ->check(CLI::IsMember({"seed", "default"}));
  if (int rc = examples::parse(app, argc, argv); rc >= 0) return rc;
  if (to.preset == "seed") {
    // The seed's configuration (docs/examples.md): raw amplitudes, Adam 1e-3, no clipping.
    // Explicit flags given together with --preset seed still win.
    auto given = [&](const char* flag) { return app.count(flag) > 0; };
    if (!given("--lr")) co.lr = 1e-3;
    if (!given("--scale")) to.scale = false;
    if (!given("--clip")) to.clip = 0.0;
    if (!given("--features")) to.features = "raw";
    if (!given("--schedule")) to.schedule = "none";
    if (!given("--encoder")) to.encoder = "bilstm";
    if (!given("--pooling")) to.pooling = "attention";
  }
  const bool pooling_given = app.count("--pooling") > 0;
  (void)preset;
  std::unique_ptr<examples::Parallel> par_owner;
  try {
    par_owner = std::make_unique<examples::Parallel>(distributed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sine_anomaly: error: %s\n", e.what());
    return 1;
  }
  const examples::Parallel& par = *par_owner;
  if (!par.is_root()) co.quiet = true;  // rank 0 alone prints
  if (int rc = examples::apply_common(co, "sine_anomaly"); rc >= 0) return par.active() ? par.fail("sine_anomaly", "--out-dir") : rc;
  examples::install_sigint_handler();
  examples::Timer total;

  try {
    data::SineAnomalyOptions dopt;
    dopt.samples = to.samples;
    dopt.length = to.length;
    dopt.anomaly = to.anomaly;
    dopt.channels = to.channels;
    dopt.seed = co.seed;
    dopt.scale = to.scale;
    data::SineAnomalyDataset ds =
        to.data.empty() ? data::make_sine_anomaly(dopt) : data::load_labeled_series_csv(to.data);
    data::check_finite(ds.x, "sine_anomaly series");
    // Class names; --classes kind relabels the generated series by anomaly kind (kinds present only).
    std::vector<std::string> class_names;
    if (to.classes == "kind") {
      if (!to.data.empty()) throw std::invalid_argument("sine_anomaly: --classes kind needs generated data, not --data");
      std::vector<int> present(5, 0);
      for (auto k : ds.kinds) present[size_t(k)] = 1;
      std::vector<int> index(5, -1);
      ds.class_values.clear();
      for (int k = 0; k < 5; ++k)
        if (present[size_t(k)]) {
          index[size_t(k)] = int(ds.class_values.size());
          ds.class_values.push_back(k);
          class_names.push_back(data::to_string(data::AnomalyKind(k)));
        }
      for (int64_t i = 0; i < ds.samples; ++i) ds.labels[size_t(i)] = index[size_t(ds.kinds[size_t(i)])];
    } else {
      for (long long v : ds.class_values) class_names.push_back(to.data.empty() ? (v ? "anomalous" : "normal") : "label " + std::to_string(v));
    }
    const int64_t K = int64_t(ds.class_values.size());
    const bool multiclass = K > 2;
    if (K < 2) throw std::invalid_argument("sine_anomaly: the data hold a single class");
    const data::SplitIndices split = data::split(ds.samples, 0.7, 0.15, co.seed);
    const std::string sizes = std::to_string(split.train.size()) + "/" + std::to_string(split.val.size()) + "/" +
                              std::to_string(split.test.size());
    if (split.train.empty() || split.val.empty() || split.test.empty())
      throw std::invalid_argument("sine_anomaly: " + std::to_string(ds.samples) +
                                  " series leave an empty train/validation/test split (" + sizes + "); use more series");
    // ROC-AUC on validation and test needs both classes: checked before training, not after an epoch.
    auto both_classes = [&](const std::vector<int64_t>& idx) {
      bool pos = false, neg = false;
      for (int64_t i : idx) (ds.labels[size_t(i)] ? pos : neg) = true;
      return pos && neg;
    };
    if (!multiclass && (!both_classes(split.val) || !both_classes(split.test)))
      throw std::invalid_argument("sine_anomaly: the validation and test splits (" + sizes + " of " +
                                  std::to_string(ds.samples) +
                                  " series) must each hold both classes for ROC-AUC; use more series");
    int64_t F = 0;
    const std::vector<float> feats = make_features(ds, to.features == "raw+diff", F);
    const int64_t T = ds.length;
    const std::string data_id = examples::data_fingerprint(
        std::to_string(ds.samples) + " series x " + std::to_string(T) + " points x " + std::to_string(F) + " features",
        feats, ds.labels);

    examples::AnomalyModelOptions mo;
    mo.in_channels = F;
    mo.hidden = co.hidden;
    mo.length = T;
    mo.attention = to.attention;
    mo.encoder = to.encoder;
    mo.positional = to.positional;
    mo.heads = to.heads;
    mo.window = to.window;
    mo.outputs = multiclass ? K : 1;
    mo.attn_norm = to.attn_norm;
    // Evidence pooling scores one logit per step; K classes take the attention pooling unless asked.
    mo.pooling = multiclass && !pooling_given ? "attention" : to.pooling;
    if (to.attn_norm != "softmax" && co.device != "cpu")
      throw std::invalid_argument("sine_anomaly: --attn-norm " + to.attn_norm + " runs on the CPU only");
    if ((2 * co.hidden) % to.heads != 0)
      throw std::invalid_argument("sine_anomaly: --heads " + std::to_string(to.heads) + " must divide 2 * --hidden = " +
                                  std::to_string(2 * co.hidden));
    AnomalyModel model(mo), best(mo);
    const Device device = examples::device_of(co);
    model.to(device);
    best.to(device);
    par_owner->attach(model);  // from here on, backward averages the gradients across ranks
    optim::Adam opt(model.parameters(), optim::AdamOptions(co.lr));
    // Closed form per epoch, so a resumed run sets the same rate as an uninterrupted one.
    optim::CosineAnnealingLR cosine(opt, std::max(co.epochs, 1));
    examples::copy_state(model, best);

    examples::History hist;
    hist.columns = {"epoch", "train_loss", "val_loss", "val_accuracy", multiclass ? "val_macro_f1" : "val_roc_auc", "lr",
                    "seconds"};
    int start_epoch = 0;
    size_t start_batch = 0;
    double best_val = std::numeric_limits<double>::infinity(), resumed_loss_sum = 0;
    int bad_epochs = 0;
    bool done = false;
    std::vector<int64_t> perm = split.train;
    const size_t nb = (split.train.size() + size_t(co.batch_size) - 1) / size_t(co.batch_size);
    if (!co.load.empty()) {
      // Every value read from the file is checked before use (the epoch's permutation indexes the data).
      const CheckpointMetadata meta =
          examples::load_progress(co.load, model, opt, "sine_anomaly", data_id, start_epoch, hist);
      start_batch = size_t(meta.integer("batch", 0, int64_t(nb)));
      best_val = meta.number("best_val", 0, std::numeric_limits<double>::infinity());
      bad_epochs = int(meta.integer("bad_epochs", 0, 100000));
      done = meta.integer("done", 0, 1) == 1;
      resumed_loss_sum = meta.number("loss_sum", 0, std::numeric_limits<double>::max());
      if (meta.integer("ranks", 1, 1 << 20) != par.size())
        meta.fail("ranks", "is " + meta.text("ranks") + ": the run was saved with that many MPI ranks; resume with "
                           "the same number (this run has " + std::to_string(par.size()) + ")");
      if (!par.is_root()) resumed_loss_sum = 0;  // the saved sum covers all ranks; rank 0 carries it
      if (start_batch > 0) perm = examples::read_ordering(meta, "perm", split.train, ds.samples, "training series");
      load(best, co.load + ".best");
      if (!co.quiet)
        std::printf("resumed from %s at epoch %d, batch %zu\n", co.load.c_str(), start_epoch + 1, start_batch);
    }
    // Doubles go into the checkpoint with 17 significant digits, so a resumed run continues from
    // exactly the same values (std::to_string keeps 6 decimals: the interrupted epoch's train loss
    // came out different in the 9th digit).
    auto exact = [](double v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v);
      return std::string(buf);
    };
    auto save_progress = [&](int epoch, size_t batch, double loss_sum) {
      if (co.save.empty() || !par.is_root()) return;
      save(best, co.save + ".best");
      save_checkpoint(co.save, model, &opt,
                      examples::progress_metadata("sine_anomaly", epoch, hist, data_id,
                                                  {{"batch", std::to_string(batch)},
                                                   {"best_val", exact(best_val)},
                                                   {"bad_epochs", std::to_string(bad_epochs)},
                                                   {"done", done ? "1" : "0"},
                                                   {"loss_sum", exact(loss_sum)},
                                                   {"ranks", std::to_string(par.size())},
                                                   {"perm", batch > 0 ? examples::join_ints(perm) : ""}}));
    };

    if (!co.quiet)
      std::printf("sine_anomaly: %lld series x %lld points, %s anomalies, %d channel(s), features %s, preset %s, schedule %s\n"
                  "  train/val/test %zu/%zu/%zu, %s(%lld -> %lld)%s, %s pooling, %lld parameters, lr %g, "
                  "batch %lld, threads %d, device %s, ranks %d\n",
                  (long long)ds.samples, (long long)T, to.anomaly.c_str(), to.channels, to.features.c_str(),
                  to.preset.c_str(), to.schedule.c_str(), split.train.size(), split.val.size(), split.test.size(),
                  to.encoder == "bilstm" ? "BiLSTM" : to.encoder.c_str(), (long long)F,
                  (long long)(to.encoder == "bilstm" ? co.hidden : 2 * co.hidden),  // conv: 2H channels
                  to.attention == "additive" ? "" : (" + " + to.attention + " self-attention").c_str(),
                  mo.pooling.c_str(), (long long)model.num_parameters(), co.lr,
                  (long long)co.batch_size, get_num_threads(), co.device.c_str(), par.size());

    examples::Progress progress(co.quiet);
    for (int epoch = start_epoch; epoch < co.epochs && !done; ++epoch) {
      examples::Timer et;
      double loss_sum = 0;
      if (start_batch == 0) {
        perm = split.train;
        examples::shuffle(perm);
      } else {
        loss_sum = resumed_loss_sum;
      }
      if (to.schedule == "cosine") opt.set_lr(cosine.lr_at(epoch));
      model.train();
      for (size_t b = start_batch; b < nb; ++b) {
        const size_t lo = b * size_t(co.batch_size), hi = std::min(perm.size(), lo + size_t(co.batch_size));
        // This rank's share of the batch (all of it in one process). A rank whose share is empty
        // still runs one row with weight 0: its backward must take part in the allreduce.
        const auto [mlo, mhi] = par.share(lo, hi);
        const size_t rlo = mlo < mhi ? mlo : lo, rhi = mlo < mhi ? mhi : lo + 1;
        Tensor x = gather_batch(feats, T, F, perm, rlo, rhi).to(device);
        opt.zero_grad();
        Tensor loss = classification_loss(model.forward(x).first, ds.labels, perm, rlo, rhi, device);
        examples::check_loss(loss.item<double>(), epoch, int64_t(b));
        const double weight = par.loss_weight(mhi - mlo, hi - lo);
        (weight == 1.0 ? loss : mul(loss, weight)).backward();
        if (to.clip > 0) optim::clip_grad_norm_(model.parameters(), to.clip);
        opt.step();
        loss_sum += loss.item<double>() * double(mhi - mlo);
        progress.update(epoch + 1, co.epochs, int64_t(b + 1), int64_t(nb), loss.item<double>());
        examples::count_batch(co);
        if (par.active() ? par.any(examples::stop_requested().load()) : examples::stop_requested().load()) {
          loss_sum = par.sum(loss_sum);
          progress.clear();
          save_progress(epoch, b + 1, loss_sum);
          if (par.is_root())
            std::printf("interrupted in epoch %d after batch %zu%s\n", epoch + 1, b + 1,
                        co.save.empty() ? "" : ("; progress saved to " + co.save).c_str());
          return 130;
        }
      }
      start_batch = 0;
      progress.clear();
      const Evaluation val = evaluate(model, feats, ds.labels, T, F, split.val, to.eval_batch, false, device);
      examples::require_finite(val.loss, "epoch " + std::to_string(epoch + 1) + ": the validation loss");
      std::vector<int> val_labels;
      for (int64_t i : split.val) val_labels.push_back(ds.labels[size_t(i)]);
      double val_auc = 0, val_acc = 0;  // K > 2: macro F1 and accuracy
      if (multiclass) {
        const auto rep = metrics::multiclass_report(val_labels, val.preds, K);
        val_auc = rep.macro_f1, val_acc = rep.accuracy;
      } else {
        val_auc = metrics::roc_auc(val_labels, val.probs), val_acc = metrics::accuracy(val_labels, val.probs);
      }
      const double train_loss = par.sum(loss_sum) / double(split.train.size());
      hist.add({double(epoch + 1), train_loss, val.loss, val_acc, val_auc, opt.lr(), et.seconds()});
      if (val.loss < best_val) {
        best_val = val.loss;
        bad_epochs = 0;
        examples::copy_state(model, best);
      } else if (++bad_epochs >= to.patience) {
        done = true;
      }
      if (!co.quiet)
        std::printf("epoch %2d/%d  train loss %.4f  val loss %.4f  val acc %.4f  val %s %.4f  %.1fs%s\n", epoch + 1,
                    co.epochs, train_loss, val.loss, val_acc, multiclass ? "macro F1" : "auc", val_auc, et.seconds(),
                    done ? "  (early stop)" : (bad_epochs == 0 ? "  *" : ""));
      save_progress(epoch + 1, 0, 0.0);
      if (par.is_root()) hist.save(co.out_dir + "/metrics.csv");
    }

    // ---- test with the best weights ----
    const Evaluation test = evaluate(best, feats, ds.labels, T, F, split.test, to.eval_batch, true, device);
    std::vector<int> yt;
    for (int64_t i : split.test) yt.push_back(ds.labels[size_t(i)]);
    // Attention accuracy over the anomalous test series (class != 0) whose anomaly position is
    // known; a CSV carries none, and then no such figure is printed.
    double coverage = 0, peak_inside = 0;
    std::vector<int64_t> miss_before, miss_after;  // how far outside the anomaly a missed peak lies
    int anomalous = 0;
    const int64_t radius = std::max<int64_t>(1, T / 20);
    for (size_t k = 0; k < split.test.size(); ++k) {
      const size_t i = size_t(split.test[k]);
      if (!ds.labels[i] || ds.seg_start[i] < 0) continue;
      ++anomalous;
      coverage += metrics::attention_coverage(test.weights[k], ds.seg_start[i], ds.seg_end[i], radius);
      const auto peak = std::max_element(test.weights[k].begin(), test.weights[k].end()) - test.weights[k].begin();
      peak_inside += (peak >= ds.seg_start[i] && peak < ds.seg_end[i]) ? 1 : 0;
      if (peak < ds.seg_start[i]) miss_before.push_back(ds.seg_start[i] - peak);
      if (peak >= ds.seg_end[i]) miss_after.push_back(peak - ds.seg_end[i] + 1);
    }
    coverage /= std::max(anomalous, 1);
    peak_inside /= std::max(anomalous, 1);

    if (!par.is_root()) return 0;
    // ---- plots ----
    const auto epochs_col = hist.column("epoch");
    plot::Figure loss_fig(800, 450);
    const char* loss_name = multiclass ? "cross-entropy" : "binary cross-entropy";
    loss_fig.title(std::string("sine_anomaly: ") + (multiclass ? "cross-entropy" : "BCE") + " loss per epoch")
        .xlabel("epoch")
        .ylabel(loss_name);
    loss_fig.line(epochs_col, hist.column("train_loss"), "train");
    loss_fig.line(epochs_col, hist.column("val_loss"), "validation", plot::Style().with_dashes());
    loss_fig.save(co.out_dir + "/loss.svg");

    double auc = 0;
    metrics::MulticlassReport rep;
    if (multiclass) {
      rep = metrics::multiclass_report(yt, test.preds, K);
      // rows: true class, columns: predicted class, colour: share of the true class
      std::vector<double> share(size_t(K * K), 0.0);
      for (int64_t a = 0; a < K; ++a)
        for (int64_t c = 0; c < K; ++c)
          share[size_t(a * K + c)] = rep.support[size_t(a)] ? double(rep.at(a, c)) / double(rep.support[size_t(a)]) : 0.0;
      std::string order;
      for (const auto& n : class_names) order += (order.empty() ? "" : ", ") + n;
      plot::Figure cm_fig(640, 560);
      cm_fig.title("confusion matrix, share of each true class (classes " + order + ")")
          .xlabel("predicted class")
          .ylabel("true class")
          .colorbar_label("share of the true class");
      cm_fig.heatmap(share, K, K);
      cm_fig.save(co.out_dir + "/confusion.svg");
    } else {
      auc = metrics::roc_auc(yt, test.probs);
      const auto roc = metrics::roc_curve(yt, test.probs);
      plot::Figure roc_fig(600, 550);
      char roc_title[96];
      std::snprintf(roc_title, sizeof roc_title, "ROC on the test set (AUC %.4f)", auc);
      roc_fig.title(roc_title).xlabel("false positive rate").ylabel("true positive rate").xlim(0, 1).ylim(0, 1);
      roc_fig.line(roc.fpr, roc.tpr, "attn model");
      roc_fig.line(std::vector<double>{0, 1}, std::vector<double>{0, 1}, "chance", plot::Style().with_dashes());
      roc_fig.save(co.out_dir + "/roc.svg");
    }

    plot::Grid grid(2, 3, 460, 280);
    grid.title("Test series with attention weights (top: normal, bottom: anomalous, shaded: anomaly)");
    int shown[2] = {0, 0};
    for (size_t k = 0; k < split.test.size() && (shown[0] < 3 || shown[1] < 3); ++k) {
      const size_t i = size_t(split.test[k]);
      const int row = ds.labels[i] != 0;
      if (shown[row] >= 3) continue;
      plot::Figure& f = grid.at(row, shown[row]++);
      char t[128];
      if (multiclass)
        std::snprintf(t, sizeof t, "series %zu, %s, predicted %s", i, class_names[size_t(ds.labels[i])].c_str(),
                      class_names[size_t(test.preds[k])].c_str());
      else
        std::snprintf(t, sizeof t, "series %zu, p(anomaly) = %.3f", i, test.probs[k]);
      f.title(t).xlabel("time step").ylabel("signal");
      if (row && ds.seg_start[i] >= 0) f.vspan(double(ds.seg_start[i]), double(ds.seg_end[i]), "anomaly");
      f.line(ds.series(int64_t(i)), "signal");
      f.area(test.weights[k], "attention", plot::Style().on_secondary_y());
    }
    grid.save(co.out_dir + "/attention.svg");

    std::printf("test (%zu series, best epoch by validation loss %.4f):\n", split.test.size(), best_val);
    if (multiclass) {
      std::printf("  accuracy %.4f  macro F1 %.4f  (%lld classes)\n  %-12s %9s %9s %9s %8s\n", rep.accuracy, rep.macro_f1,
                  (long long)K, "class", "precision", "recall", "F1", "support");
      for (int64_t c = 0; c < K; ++c)
        std::printf("  %-12s %9.4f %9.4f %9.4f %8lld\n", class_names[size_t(c)].c_str(), rep.precision[size_t(c)],
                    rep.recall[size_t(c)], rep.f1[size_t(c)], (long long)rep.support[size_t(c)]);
      std::printf("  confusion matrix (rows: true class, columns: predicted, in the order above):\n");
      for (int64_t a = 0; a < K; ++a) {
        std::printf("   ");
        for (int64_t c = 0; c < K; ++c) std::printf(" %6lld", (long long)rep.at(a, c));
        std::printf("\n");
      }
    } else {
      const auto cm = metrics::confusion_matrix(yt, test.probs);
      std::printf("  accuracy %.4f  precision %.4f  recall %.4f  F1 %.4f  ROC-AUC %.4f\n"
                  "  confusion matrix [[tn %lld, fp %lld], [fn %lld, tp %lld]]\n",
                  metrics::accuracy(yt, test.probs), metrics::precision(yt, test.probs), metrics::recall(yt, test.probs),
                  metrics::f1(yt, test.probs), auc, (long long)cm.tn, (long long)cm.fp, (long long)cm.fn, (long long)cm.tp);
    }
    if (anomalous > 0) {
      std::printf("  attention: peak inside the anomaly %.1f%% of anomalous series, coverage (peak +-%lld) %.3f\n",
                  100 * peak_inside, (long long)radius, coverage);
      auto median = [](std::vector<int64_t> v) {
        if (v.empty()) return int64_t(0);
        std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
        return v[v.size() / 2];
      };
      std::printf("  attention peak outside the anomaly: %zu before it (median %lld steps), %zu after it (median %lld steps)\n",
                  miss_before.size(), (long long)median(miss_before), miss_after.size(), (long long)median(miss_after));
    }
    std::printf("total time %.1fs; plots and metrics in %s (loss.svg, %s, attention.svg, metrics.csv)\n", total.seconds(),
                co.out_dir.c_str(), multiclass ? "confusion.svg" : "roc.svg");
  } catch (const std::exception& e) {
    return par.fail("sine_anomaly", e.what());
  }
  return 0;
}
