#pragma once
// K-class classification report from true and predicted class indices in 0..K-1:
//   confusion[i * K + j] = how many series of true class i were predicted as class j;
//   per class k: precision = tp / predicted k, recall = tp / true k, F1 their harmonic mean (0
//   for a zero denominator, as scikit-learn's zero_division=0); macro F1 = the unweighted mean of
//   the per-class F1; accuracy = trace / n.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace attn::metrics {

struct MulticlassReport {
  int64_t classes = 0, n = 0;
  std::vector<int64_t> confusion;  // [K, K], row = true class, column = predicted class
  std::vector<double> precision, recall, f1;
  std::vector<int64_t> support;    // true series per class
  double accuracy = 0, macro_f1 = 0;
  int64_t at(int64_t truth, int64_t pred) const { return confusion[size_t(truth * classes + pred)]; }
};

inline MulticlassReport multiclass_report(const std::vector<int>& truth, const std::vector<int>& pred, int64_t classes) {
  if (truth.empty() || truth.size() != pred.size())
    throw std::invalid_argument("multiclass_report: truth and predictions need the same non-zero length, got " +
                                std::to_string(truth.size()) + " and " + std::to_string(pred.size()));
  if (classes < 2) throw std::invalid_argument("multiclass_report: need at least 2 classes, got " + std::to_string(classes));
  MulticlassReport r;
  r.classes = classes;
  r.n = int64_t(truth.size());
  r.confusion.assign(size_t(classes * classes), 0);
  for (size_t i = 0; i < truth.size(); ++i) {
    if (truth[i] < 0 || truth[i] >= classes || pred[i] < 0 || pred[i] >= classes)
      throw std::invalid_argument("multiclass_report: class index out of [0, " + std::to_string(classes) + ") at " +
                                  std::to_string(i) + " (truth " + std::to_string(truth[i]) + ", predicted " +
                                  std::to_string(pred[i]) + ")");
    ++r.confusion[size_t(truth[i] * classes + pred[i])];
  }
  int64_t correct = 0;
  for (int64_t k = 0; k < classes; ++k) {
    int64_t predicted = 0, actual = 0;
    for (int64_t j = 0; j < classes; ++j) predicted += r.at(j, k), actual += r.at(k, j);
    const double tp = double(r.at(k, k));
    correct += r.at(k, k);
    const double p = predicted ? tp / double(predicted) : 0.0, rc = actual ? tp / double(actual) : 0.0;
    r.precision.push_back(p);
    r.recall.push_back(rc);
    r.f1.push_back(p + rc > 0 ? 2 * p * rc / (p + rc) : 0.0);
    r.support.push_back(actual);
    r.macro_f1 += r.f1.back() / double(classes);
  }
  r.accuracy = double(correct) / double(r.n);
  return r;
}

}  // namespace attn::metrics
