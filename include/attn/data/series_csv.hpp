#pragma once
// Real time series from CSV, for forecasting: a header row of column names (quoted or not), a
// date/time column kept as text (for plots), one or more value columns chosen by name or index,
// missing values handled by a policy, chronological splits and look-back/horizon windows.
//
//   auto table = data::load_series_csv("co2_mm_mlo.csv",
//       data::SeriesCsvOptions().columns({"average"}).time_column("decimal date")
//           .missing_values({"-99.99"}).missing(data::MissingPolicy::Interpolate));
//   auto split = data::chronological_split(table.rows, 0.7, 0.1);   // train / validation / test
//   auto w = data::make_windows(table, split.train_begin, split.train_end,
//                               data::WindowOptions(48, 12).stride(1));   // x [N, 48, C], y [N, 12, C]
//
// The file is read completely and checked before anything is returned: a bad number, a ragged
// row, an unknown or repeated column name, an unterminated quote, a missing value under
// MissingPolicy::Error, a value that cannot be interpolated, too few rows: each raises
// std::invalid_argument naming the file, the line and the column; nothing is returned half read.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>
#include "../core/tensor.hpp"
#include "csv.hpp"

namespace attn::data {

// What happens to a row with a missing value (a cell equal to one of the markers):
//   Error: the loader throws naming the line and column;
//   Drop: the whole row is left out (the series gets shorter; times of the kept rows remain);
//   Interpolate: linear in the row index between the nearest present values of the same column
//     (rows are taken as equally spaced); a missing first or last value cannot be interpolated
//     and throws.
enum class MissingPolicy { Error, Drop, Interpolate };

struct SeriesCsvOptions {
#define ATTN_SERIES_OPTION(type, name) \
  SeriesCsvOptions& name(type v) {     \
    name##_ = std::move(v);            \
    return *this;                      \
  }                                    \
  const type& name() const { return name##_; }
  // Value columns by header name, or by 0-based index (one of the two; neither = every column
  // except the time column).
  ATTN_SERIES_OPTION(std::vector<std::string>, columns)
  ATTN_SERIES_OPTION(std::vector<int64_t>, column_indices)
  // The date/time column by name, or by index (-1: none), kept as text.
  ATTN_SERIES_OPTION(std::string, time_column)
  ATTN_SERIES_OPTION(int64_t, time_column_index)
  // Cells that mean "missing" (compared after trimming spaces); an empty cell is always missing.
  ATTN_SERIES_OPTION(std::vector<std::string>, missing_values)
  ATTN_SERIES_OPTION(MissingPolicy, missing)
  ATTN_SERIES_OPTION(char, delimiter)
#undef ATTN_SERIES_OPTION

 private:
  std::vector<std::string> columns_;
  std::vector<int64_t> column_indices_;
  std::string time_column_;
  int64_t time_column_index_ = -1;
  std::vector<std::string> missing_values_ = {"NA", "NaN", "nan", "null"};
  MissingPolicy missing_ = MissingPolicy::Error;
  char delimiter_ = ',';
};

// A loaded series: rows x channels values (row-major), their names, the time cells and the line
// of the file each row came from.
struct SeriesTable {
  std::vector<std::string> names;        // one per channel
  std::vector<std::string> times;        // one per row when a time column was chosen, else empty
  std::vector<double> values;            // [rows, channels]
  std::vector<int64_t> lines;            // 1-based line in the file per row
  int64_t rows = 0, channels = 0;
  int64_t interpolated = 0, dropped = 0;  // how many cells were filled / rows left out
  std::string path;

  double at(int64_t row, int64_t channel) const { return values[size_t(row * channels + channel)]; }
  std::vector<double> column(int64_t channel) const {
    std::vector<double> c(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) c[size_t(r)] = at(r, channel);
    return c;
  }
  // Rows [begin, end) as a tensor [end - begin, channels].
  Tensor to_tensor(int64_t begin, int64_t end, DType dtype = kFloat32) const {
    ATTN_CHECK(0 <= begin && begin <= end && end <= rows, "SeriesTable::to_tensor: rows [", begin, ", ", end,
               ") outside [0, ", rows, ")");
    std::vector<double> v(values.begin() + begin * channels, values.begin() + end * channels);
    return Tensor::from_vector(v, {end - begin, channels}).to(dtype);
  }
};

namespace detail {
// Splits one CSV line into cells (RFC 4180 quoting: "a,b" is one cell, "" inside quotes is a
// quote). Throws naming `where` on an unterminated quote or text after a closing quote.
inline std::vector<std::string> split_csv_line(const std::string& line, char delim, const std::string& where) {
  std::vector<std::string> cells;
  std::string cell;
  size_t i = 0;
  for (;;) {
    cell.clear();
    while (i < line.size() && line[i] == ' ') ++i;
    if (i < line.size() && line[i] == '"') {
      const size_t open = i++;
      for (;;) {
        if (i >= line.size())
          throw std::invalid_argument(where + ": column " + std::to_string(cells.size()) +
                                      ": unterminated quote opened at character " + std::to_string(open + 1));
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            cell += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        cell += line[i++];
      }
      while (i < line.size() && line[i] == ' ') ++i;
      if (i < line.size() && line[i] != delim)
        throw std::invalid_argument(where + ": column " + std::to_string(cells.size()) +
                                    ": text after a closing quote: '" + shown_cell(line.substr(i, 20)) + "'");
    } else {
      const size_t end = std::min(line.find(delim, i), line.size());
      cell = line.substr(i, end - i);
      while (!cell.empty() && (cell.back() == ' ' || cell.back() == '\t')) cell.pop_back();
      i = end;
    }
    cells.push_back(cell);
    if (i >= line.size()) break;
    ++i;  // the delimiter
    if (i == line.size()) {  // a line ending in a delimiter has an empty last cell
      cells.emplace_back();
      break;
    }
  }
  return cells;
}
}  // namespace detail

inline SeriesTable load_series_csv(const std::string& path, const SeriesCsvOptions& opt = SeriesCsvOptions()) {
  const std::string op = "load_series_csv: ";
  ATTN_CHECK(opt.columns().empty() || opt.column_indices().empty(),
             "load_series_csv: choose value columns by name or by index, not both");
  ATTN_CHECK(opt.time_column().empty() || opt.time_column_index() < 0,
             "load_series_csv: choose the time column by name or by index, not both");
  ATTN_CHECK(opt.delimiter() != '"' && opt.delimiter() != '\n' && opt.delimiter() != '\r',
             "load_series_csv: the delimiter cannot be a quote or a line break");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(op + "cannot open '" + path + "'");
  SeriesTable t;
  t.path = path;
  std::string line;
  int64_t line_no = 0;
  std::vector<std::string> header;
  auto next_line = [&]() -> bool {  // the next line that is not blank or a '#' comment
    while (std::getline(in, line)) {
      ++line_no;
      if (line_no == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // UTF-8 BOM
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find('\0') != std::string::npos)
        throw std::invalid_argument(op + path + ":" + std::to_string(line_no) + ": a NUL byte");
      if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
      return true;
    }
    return false;
  };
  if (!next_line()) throw std::invalid_argument(op + "'" + path + "' is empty (no header row)");
  header = detail::split_csv_line(line, opt.delimiter(), op + path + ":" + std::to_string(line_no));
  const int64_t header_line = line_no, ncols = int64_t(header.size());
  for (int64_t a = 0; a < ncols; ++a) {
    if (header[size_t(a)].empty())
      throw std::invalid_argument(op + path + ":" + std::to_string(header_line) + ": column " + std::to_string(a) +
                                  " has an empty name in the header");
    for (int64_t b = 0; b < a; ++b)
      if (header[size_t(a)] == header[size_t(b)])
        throw std::invalid_argument(op + path + ":" + std::to_string(header_line) + ": column name '" +
                                    detail::shown_cell(header[size_t(a)]) + "' appears twice (columns " +
                                    std::to_string(b) + " and " + std::to_string(a) + ")");
  }
  auto find_name = [&](const std::string& name, const char* what) {
    for (int64_t a = 0; a < ncols; ++a)
      if (header[size_t(a)] == name) return a;
    std::string names;
    for (const auto& h : header) names += (names.empty() ? "'" : ", '") + detail::shown_cell(h) + "'";
    throw std::invalid_argument(op + path + ":" + std::to_string(header_line) + ": no " + what + " column named '" +
                                detail::shown_cell(name) + "' (the header has " + names + ")");
  };
  auto check_index = [&](int64_t a, const char* what) {
    if (a < 0 || a >= ncols)
      throw std::invalid_argument(op + path + ": " + what + " column index " + std::to_string(a) +
                                  " is outside the header's " + std::to_string(ncols) + " columns");
    return a;
  };
  int64_t time_col = -1;
  if (!opt.time_column().empty()) time_col = find_name(opt.time_column(), "time");
  if (opt.time_column_index() >= 0) time_col = check_index(opt.time_column_index(), "time");
  std::vector<int64_t> cols;
  for (const auto& n : opt.columns()) cols.push_back(find_name(n, "value"));
  for (int64_t a : opt.column_indices()) cols.push_back(check_index(a, "value"));
  if (opt.columns().empty() && opt.column_indices().empty())
    for (int64_t a = 0; a < ncols; ++a)
      if (a != time_col) cols.push_back(a);
  if (cols.empty()) throw std::invalid_argument(op + path + ": no value column (the header has only the time column)");
  for (size_t a = 0; a < cols.size(); ++a) {
    if (cols[a] == time_col)
      throw std::invalid_argument(op + path + ": column '" + header[size_t(cols[a])] + "' is both the time and a value column");
    for (size_t b = 0; b < a; ++b)
      if (cols[a] == cols[b])
        throw std::invalid_argument(op + path + ": value column '" + header[size_t(cols[a])] + "' chosen twice");
  }
  t.channels = int64_t(cols.size());
  for (int64_t c : cols) t.names.push_back(header[size_t(c)]);

  auto is_missing = [&](const std::string& cell) {
    if (cell.empty()) return true;
    for (const auto& m : opt.missing_values())
      if (cell == m) return true;
    return false;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<char> row_missing;  // per cell of t.values: missing (to interpolate)
  while (next_line()) {
    const std::string where = op + path + ":" + std::to_string(line_no);
    const auto cells = detail::split_csv_line(line, opt.delimiter(), where);
    if (int64_t(cells.size()) != ncols)
      throw std::invalid_argument(where + ": " + std::to_string(cells.size()) + " cells, but the header has " +
                                  std::to_string(ncols) + " columns");
    std::vector<double> row;
    bool missing_here = false;
    for (int64_t c : cols) {
      const std::string& cell = cells[size_t(c)];
      const std::string col_name = "column " + std::to_string(c) + " '" + detail::shown_cell(header[size_t(c)]) + "'";
      if (is_missing(cell)) {
        if (opt.missing() == MissingPolicy::Error)
          throw std::invalid_argument(where + ": " + col_name + ": missing value '" + detail::shown_cell(cell) +
                                      "' (choose MissingPolicy::Drop or ::Interpolate to accept gaps)");
        missing_here = true;
        row.push_back(nan);
        continue;
      }
      char* end = nullptr;
      const double v = std::strtod(cell.c_str(), &end);
      if (end == cell.c_str() || end != cell.c_str() + cell.size())
        throw std::invalid_argument(where + ": " + col_name + " is not a number: '" + detail::shown_cell(cell) + "'");
      if (!std::isfinite(v) || std::fabs(v) > double(std::numeric_limits<float>::max()))
        throw std::invalid_argument(where + ": " + col_name + ": non-finite value '" + detail::shown_cell(cell) +
                                    "' (list it in missing_values if it marks a gap)");
      row.push_back(v);
    }
    if (missing_here && opt.missing() == MissingPolicy::Drop) {
      ++t.dropped;
      continue;
    }
    for (double v : row) row_missing.push_back(std::isnan(v));
    t.values.insert(t.values.end(), row.begin(), row.end());
    t.lines.push_back(line_no);
    if (time_col >= 0) t.times.push_back(cells[size_t(time_col)]);
    ++t.rows;
  }
  if (t.rows == 0) throw std::invalid_argument(op + "'" + path + "' holds a header but no rows of values");
  if (opt.missing() == MissingPolicy::Interpolate) {
    for (int64_t c = 0; c < t.channels; ++c) {
      int64_t prev = -1;  // the last present row
      for (int64_t r = 0; r < t.rows; ++r) {
        if (row_missing[size_t(r * t.channels + c)]) continue;
        if (r - prev > 1) {
          if (prev < 0)
            throw std::invalid_argument(op + path + ":" + std::to_string(t.lines[0]) + ": column '" + t.names[size_t(c)] +
                                        "' starts with a missing value, which cannot be interpolated");
          const double a = t.at(prev, c), b = t.at(r, c);
          for (int64_t k = prev + 1; k < r; ++k) {
            const double f = double(k - prev) / double(r - prev);
            t.values[size_t(k * t.channels + c)] = a + f * (b - a);
            ++t.interpolated;
          }
        }
        prev = r;
      }
      if (prev < t.rows - 1)
        throw std::invalid_argument(op + path + ":" + std::to_string(t.lines[size_t(prev + 1)]) + ": column '" +
                                    t.names[size_t(c)] + "' ends with a missing value, which cannot be interpolated");
    }
  }
  return t;
}

// Chronological split of `rows` into train [0, train_end), validation [train_end, val_end) and
// test [val_end, rows): no shuffling, so the model never sees the future of what it is scored on.
struct ChronologicalSplit {
  int64_t train_end = 0, val_end = 0, rows = 0;
};
inline ChronologicalSplit chronological_split(int64_t rows, double train_fraction, double val_fraction) {
  ATTN_CHECK(rows > 0, "chronological_split: rows must be positive, got ", rows);
  ATTN_CHECK(train_fraction > 0 && val_fraction >= 0 && train_fraction + val_fraction <= 1.0,
             "chronological_split: fractions must satisfy train > 0, val >= 0, train + val <= 1, got train=",
             train_fraction, " val=", val_fraction);
  ChronologicalSplit s;
  s.rows = rows;
  s.train_end = std::max<int64_t>(1, int64_t(std::floor(train_fraction * double(rows))));
  s.val_end = std::min<int64_t>(rows, s.train_end + int64_t(std::floor(val_fraction * double(rows))));
  return s;
}

// Sliding windows over rows [begin, end): input x = rows [t, t + lookback), target y = rows
// [t + lookback, t + lookback + horizon), for t = begin, begin + stride, ... while the target fits.
struct WindowOptions {
  WindowOptions(int64_t lookback, int64_t horizon) : lookback_(lookback), horizon_(horizon) {}
  WindowOptions& stride(int64_t v) {
    stride_ = v;
    return *this;
  }
  int64_t lookback() const { return lookback_; }
  int64_t horizon() const { return horizon_; }
  int64_t stride() const { return stride_; }

 private:
  int64_t lookback_, horizon_, stride_ = 1;
};
struct SeriesWindows {
  Tensor x, y;                  // [N, lookback, C], [N, horizon, C]
  std::vector<int64_t> starts;  // the first input row of each window
};
inline SeriesWindows make_windows(const SeriesTable& t, int64_t begin, int64_t end, const WindowOptions& w,
                                  DType dtype = kFloat32) {
  ATTN_CHECK(w.lookback() > 0 && w.horizon() > 0 && w.stride() > 0, "make_windows: lookback, horizon and stride must be ",
             "positive, got ", w.lookback(), ", ", w.horizon(), ", ", w.stride());
  ATTN_CHECK(0 <= begin && begin <= end && end <= t.rows, "make_windows: rows [", begin, ", ", end, ") outside [0, ",
             t.rows, ")");
  ATTN_CHECK(end - begin >= w.lookback() + w.horizon(), "make_windows: rows [", begin, ", ", end, ") hold ", end - begin,
             " points, fewer than lookback ", w.lookback(), " + horizon ", w.horizon());
  SeriesWindows out;
  std::vector<double> xs, ys;
  const int64_t C = t.channels;
  for (int64_t s = begin; s + w.lookback() + w.horizon() <= end; s += w.stride()) {
    out.starts.push_back(s);
    xs.insert(xs.end(), t.values.begin() + s * C, t.values.begin() + (s + w.lookback()) * C);
    ys.insert(ys.end(), t.values.begin() + (s + w.lookback()) * C,
              t.values.begin() + (s + w.lookback() + w.horizon()) * C);
  }
  const int64_t n = int64_t(out.starts.size());
  out.x = Tensor::from_vector(xs, {n, w.lookback(), C}).to(dtype);
  out.y = Tensor::from_vector(ys, {n, w.horizon(), C}).to(dtype);
  return out;
}

}  // namespace attn::data
