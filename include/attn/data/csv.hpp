#pragma once
// Labelled series from CSV, for running a sequence classifier (examples/sine_anomaly) on your own data:
//   one series per line: label,x_0,x_1,...,x_{T-1}   ('#' lines and blank lines skipped)
// Labels are integers written plainly ("0", "7", "-3"; not "1.0", "+1", "01"); the K distinct
// labels of the file are mapped to class indices 0..K-1 in increasing order (ds.class_values[k]
// is the label of class k), so a file with labels 0 and 1 keeps them, and one with 3, 5 and 9
// becomes classes 0, 1 and 2. With two classes the smaller label is the "normal" class 0.
// All series must have the same length. Anything malformed (a bad number, NaN or Inf, a ragged
// line, a label that is not a plain integer, a NUL byte, an empty file) raises
// std::invalid_argument naming the file, the line and the column (the index of the first bad
// value), before any model sees the data. A UTF-8 byte order mark at the start is skipped;
// unprintable bytes in a quoted cell are shown as \xNN.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include "sine.hpp"

namespace attn::data {

namespace detail {
// A cell as it appears in a message: bytes outside printable ASCII as \xNN (a NUL, a BOM).
inline std::string shown_cell(const std::string& cell) {
  std::string out;
  for (unsigned char c : cell) {
    if (c >= 0x20 && c < 0x7F) {
      out += char(c);
    } else {
      const char* hex = "0123456789abcdef";
      out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    }
  }
  return out;
}
}  // namespace detail

inline SineAnomalyDataset load_labeled_series_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("load_labeled_series_csv: cannot open '" + path + "'");
  SineAnomalyDataset ds;
  ds.channels = 1;
  std::vector<long long> raw_labels;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line_no == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // UTF-8 BOM
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;  // blank (or only spaces/tabs)
    const std::string where = path + ":" + std::to_string(line_no);
    std::vector<float> values;
    long long label = 0;
    size_t pos = 0;
    int64_t column = 0;
    while (pos <= line.size()) {
      const size_t comma = std::min(line.find(',', pos), line.size());
      const std::string cell = line.substr(pos, comma - pos);
      char* end = nullptr;
      const double v = std::strtod(cell.c_str(), &end);
      // The whole cell must be the number: a NUL inside it ends the C string early.
      if (cell.empty() || end == cell.c_str() || end != cell.c_str() + cell.size())
        throw std::invalid_argument("load_labeled_series_csv: " + where + ": column " + std::to_string(column) +
                                    " is not a number: '" + detail::shown_cell(cell) + "'");
      if (column == 0) {
        // a plain integer: an optional '-', then "0" or digits without a leading zero, at most 18
        const size_t d0 = cell[0] == '-' ? 1 : 0;
        const bool plain = cell.size() > d0 && cell.size() - d0 <= 18 &&
                           cell.find_first_not_of("0123456789", d0) == std::string::npos &&
                           (cell[d0] != '0' || cell.size() == d0 + 1) && cell != "-0";
        if (!plain)
          throw std::invalid_argument("load_labeled_series_csv: " + where + ": the label must be a plain integer, got '" +
                                      detail::shown_cell(cell) + "'");
        label = std::stoll(cell);
      } else {
        // Also finite as the float the model reads: 1e300 passes as a double but is Inf as a float.
        if (!std::isfinite(v) || std::fabs(v) > double(std::numeric_limits<float>::max()))
          throw std::invalid_argument("load_labeled_series_csv: " + where + ": non-finite value '" + detail::shown_cell(cell) +
                                      "' at series index " + std::to_string(column - 1));
        values.push_back(float(v));
      }
      ++column;
      pos = comma + 1;
    }
    if (values.empty())
      throw std::invalid_argument("load_labeled_series_csv: " + where + ": a label without values");
    if (ds.samples == 0) ds.length = int64_t(values.size());
    if (int64_t(values.size()) != ds.length)
      throw std::invalid_argument("load_labeled_series_csv: " + where + ": " + std::to_string(values.size()) +
                                  " values, but the first series has " + std::to_string(ds.length));
    ds.x.insert(ds.x.end(), values.begin(), values.end());
    raw_labels.push_back(label);
    ds.seg_start.push_back(-1);
    ds.seg_end.push_back(-1);
    ds.kinds.push_back(AnomalyKind::None);
    ++ds.samples;
  }
  if (ds.samples == 0) throw std::invalid_argument("load_labeled_series_csv: '" + path + "' holds no series");
  ds.class_values = raw_labels;
  std::sort(ds.class_values.begin(), ds.class_values.end());
  ds.class_values.erase(std::unique(ds.class_values.begin(), ds.class_values.end()), ds.class_values.end());
  for (long long v : raw_labels)
    ds.labels.push_back(int(std::lower_bound(ds.class_values.begin(), ds.class_values.end(), v) - ds.class_values.begin()));
  return ds;
}

}  // namespace attn::data
