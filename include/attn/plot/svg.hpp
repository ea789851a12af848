#pragma once
// Small SVG charts for training reports: loss curves, predictions, a signal with its attention
// weights on a second axis, attention heatmaps, and grids of those.
//
//   plot::Figure fig(800, 450);
//   fig.title("Loss").xlabel("epoch").ylabel("BCE");
//   fig.line(epochs, train_loss, "train");
//   fig.line(epochs, val_loss, "validation", plot::Style().with_dashes());
//   fig.save("loss.svg");                       // atomic: io::write_file_atomic
//
// Data vectors may hold any arithmetic type (float or double in practice). Non-finite values are
// skipped: a NaN breaks a line into separate pieces. Empty figures render as empty axes.
// Style is an aggregate, so C++20 callers may write {.dashed = true}; C++17 callers use the
// with_* setters.

#include <attn/io/atomic_file.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace attn::plot {

// Tableau 10: distinguishable, colour-blind friendly enough, and calm on white.
inline const std::vector<std::string>& palette() {
  static const std::vector<std::string> p = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                             "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return p;
}

struct Style {
  std::string color;  // empty: the next palette colour (vspan: grey)
  double width = 1.8;
  bool dashed = false;
  bool secondary_y = false;  // plot against the right-hand axis
  double opacity = 1.0;
  double fill_opacity = 0.25;  // areas and vspans
  double marker_radius = 3.0;

  Style& with_color(std::string c) { color = std::move(c); return *this; }
  Style& with_width(double w) { width = w; return *this; }
  Style& with_dashes(bool d = true) { dashed = d; return *this; }
  Style& on_secondary_y(bool s = true) { secondary_y = s; return *this; }
  Style& with_opacity(double o) { opacity = o; return *this; }
  Style& with_fill_opacity(double o) { fill_opacity = o; return *this; }
  Style& with_marker_radius(double r) { marker_radius = r; return *this; }
};

enum class Legend { Best, TopRight, TopLeft, BottomRight, BottomLeft, None };

namespace detail {

// Coordinates with at most two decimals keep files small and diffs readable. A comma is
// swapped back because printf follows the C locale, which a host program may have changed.
inline std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s(buf);
  for (char& c : s)
    if (c == ',') c = '.';
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

inline std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default: o += c;
    }
  }
  return o;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  static_assert(std::is_arithmetic<T>::value, "attn::plot: data must be arithmetic");
  return std::vector<double>(v.begin(), v.end());
}

inline std::vector<double> iota_like(std::size_t n) {
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<double>(i);
  return x;
}

// Ticks at multiples of 1, 2, 2.5 or 5 times a power of ten, about `target` of them in
// [lo, hi]; never finer than min_step (1 for heatmap cell indices).
inline std::vector<double> nice_ticks(double lo, double hi, int target, double min_step = 0.0) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  // The candidate whose interval count is nearest the target, measured as a ratio.
  auto miss = [&](double st) { return std::abs(std::log((hi - lo) / st / std::max(1, target))); };
  double step = mag;
  for (double m : {2.0, 2.5, 5.0, 10.0})
    if (miss(m * mag) < miss(step)) step = m * mag;
  step = std::max(step, min_step);
  std::vector<double> ticks;
  const double eps = step * 1e-9;
  for (double k = std::ceil((lo - eps) / step); k * step <= hi + eps; k += 1.0)
    ticks.push_back(std::abs(k * step) < eps ? 0.0 : k * step);
  return ticks;
}

// Labels share the decimals the step needs (0.25 -> 2), so "0.5" and "0.75" do not mix widths.
inline std::vector<std::string> tick_labels(const std::vector<double>& ticks) {
  std::vector<std::string> out;
  if (ticks.empty()) return out;
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1.0;
  double biggest = 0.0;
  for (double t : ticks) biggest = std::max(biggest, std::abs(t));
  const bool sci = biggest >= 1e6 || (step < 1e-4 && biggest > 0.0);
  int decimals = 0;
  while (decimals < 6) {
    const double scaled = step * std::pow(10.0, decimals);
    if (std::abs(scaled - std::round(scaled)) < 1e-6 * std::max(1.0, scaled)) break;
    ++decimals;
  }
  for (double t : ticks) {
    char buf[64];
    if (sci)
      std::snprintf(buf, sizeof buf, "%.3g", t);
    else
      std::snprintf(buf, sizeof buf, "%.*f", decimals, t);
    std::string s(buf);
    for (char& c : s)
      if (c == ',') c = '.';
    // A label reading "-0" or "-0.0" is rounding noise around zero.
    if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);
    out.push_back(s);
  }
  return out;
}

// Viridis, linearly interpolated between nine samples of the matplotlib table: perceptually
// uniform and readable in greyscale, so attention mass is not exaggerated by the colours.
inline std::string viridis(double t) {
  static const double c[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                 {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                 {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  t = std::isfinite(t) ? std::min(1.0, std::max(0.0, t)) : 0.0;
  const double f = t * 8.0;
  const int i = std::min(7, static_cast<int>(f));
  const double w = f - i;
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x",
                static_cast<int>(std::lround(c[i][0] + w * (c[i + 1][0] - c[i][0]))),
                static_cast<int>(std::lround(c[i][1] + w * (c[i + 1][1] - c[i][1]))),
                static_cast<int>(std::lround(c[i][2] + w * (c[i + 1][2] - c[i][2]))));
  return buf;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (std::isfinite(v)) { lo = std::min(lo, v); hi = std::max(hi, v); }
  }
  bool valid() const { return lo <= hi; }
  // Empty data gets [0, 1]; a constant gets a unit-wide window around it. With pin_zero an
  // end sitting exactly at 0 is not padded, so filled areas rest on the axis.
  Range finished(double pad_fraction, bool pin_zero = false) const {
    Range r = *this;
    if (!r.valid()) { r.lo = 0.0; r.hi = 1.0; return r; }
    if (r.hi - r.lo < 1e-12 * std::max(1.0, std::abs(r.lo))) {
      r.lo -= 0.5; r.hi += 0.5; return r;
    }
    const double pad = (r.hi - r.lo) * pad_fraction;
    if (!(pin_zero && r.lo == 0.0)) r.lo -= pad;
    if (!(pin_zero && r.hi == 0.0)) r.hi += pad;
    return r;
  }
};

// Maps data [d0, d1] to pixels [p0, p1]; either may run backwards.
struct Scale {
  double d0, d1, p0, p1;
  double operator()(double v) const { return p0 + (v - d0) / (d1 - d0) * (p1 - p0); }
};

inline double text_width(const std::string& s, double font_size) {
  return 0.6 * font_size * static_cast<double>(s.size());
}

}  // namespace detail

class Figure {
 public:
  explicit Figure(int width = 800, int height = 450) : width_(width), height_(height) {
    if (width < 100 || height < 80)
      throw std::invalid_argument("plot::Figure: size " + std::to_string(width) + "x" +
                                  std::to_string(height) + " is too small (min 100x80)");
  }

  Figure& title(std::string s) { title_ = std::move(s); return *this; }
  Figure& xlabel(std::string s) { xlabel_ = std::move(s); return *this; }
  Figure& ylabel(std::string s) { ylabel_ = std::move(s); return *this; }
  Figure& ylabel2(std::string s) { ylabel2_ = std::move(s); return *this; }
  Figure& xlim(double lo, double hi) { xlim_ = check_lim("xlim", lo, hi); return *this; }
  Figure& ylim(double lo, double hi) { ylim_ = check_lim("ylim", lo, hi); return *this; }
  Figure& ylim2(double lo, double hi) { ylim2_ = check_lim("ylim2", lo, hi); return *this; }
  Figure& legend(Legend where) { legend_ = where; return *this; }
  Figure& colorbar_label(std::string s) { cbar_label_ = std::move(s); return *this; }

  template <typename X, typename Y>
  Figure& line(const std::vector<X>& xs, const std::vector<Y>& ys, std::string label = "", Style st = {}) {
    return add(Kind::Line, "line", xs, ys, std::move(label), std::move(st));
  }
  template <typename Y>
  Figure& line(const std::vector<Y>& ys, std::string label = "", Style st = {}) {
    return line(detail::iota_like(ys.size()), ys, std::move(label), std::move(st));
  }
  template <typename X, typename Y>
  Figure& scatter(const std::vector<X>& xs, const std::vector<Y>& ys, std::string label = "", Style st = {}) {
    return add(Kind::Scatter, "scatter", xs, ys, std::move(label), std::move(st));
  }
  template <typename Y>
  Figure& scatter(const std::vector<Y>& ys, std::string label = "", Style st = {}) {
    return scatter(detail::iota_like(ys.size()), ys, std::move(label), std::move(st));
  }
  // Filled down to y = 0 (or the axis edge when 0 is off-scale): attention weights, densities.
  template <typename X, typename Y>
  Figure& area(const std::vector<X>& xs, const std::vector<Y>& ys, std::string label = "", Style st = {}) {
    return add(Kind::Area, "area", xs, ys, std::move(label), std::move(st));
  }
  template <typename Y>
  Figure& area(const std::vector<Y>& ys, std::string label = "", Style st = {}) {
    return area(detail::iota_like(ys.size()), ys, std::move(label), std::move(st));
  }
  // A shaded vertical band over [x0, x1], e.g. an anomalous segment or a forecast region.
  Figure& vspan(double x0, double x1, std::string label = "", Style st = {}) {
    if (st.color.empty()) st.color = "#8c8c8c";
    series_.push_back({Kind::VSpan, {std::min(x0, x1), std::max(x0, x1)}, {}, std::move(label), std::move(st)});
    return *this;
  }
  Figure& hline(double y, std::string label = "", Style st = {}) {
    if (st.color.empty()) st.color = "#555555";
    series_.push_back({Kind::HLine, {}, {y}, std::move(label), std::move(st)});
    return *this;
  }

  // values: rows x cols, row-major; row 0 is drawn at the top, like an image. Matrices larger
  // than the plot area in pixels are averaged down to it so the file stays small.
  template <typename T>
  Figure& heatmap(const std::vector<T>& values, std::int64_t rows, std::int64_t cols) {
    if (rows < 0 || cols < 0 || static_cast<std::int64_t>(values.size()) != rows * cols)
      throw std::invalid_argument("plot::Figure::heatmap: " + std::to_string(values.size()) +
                                  " values for a " + std::to_string(rows) + "x" +
                                  std::to_string(cols) + " matrix");
    heat_ = detail::to_double(values);
    heat_rows_ = rows;
    heat_cols_ = cols;
    has_heat_ = true;
    return *this;
  }

  int width() const { return width_; }
  int height() const { return height_; }

  std::string to_svg() const {
    std::ostringstream out;
    open_svg(out, width_, height_);
    render(out, 0.0, 0.0, "f0");
    out << "</svg>\n";
    return out.str();
  }
  void save(const std::string& path) const { io::write_file_atomic(path, to_svg()); }

  // Draws into an existing document at (ox, oy); id_prefix keeps clip/gradient ids unique.
  void render(std::ostringstream& out, double ox, double oy, const std::string& id_prefix) const;

  static void open_svg(std::ostringstream& out, int w, int h) {
    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h
        << "\" viewBox=\"0 0 " << w << ' ' << h
        << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  }

 private:
  enum class Kind { Line, Scatter, Area, VSpan, HLine };
  struct Series {
    Kind kind;
    std::vector<double> x, y;
    std::string label;
    Style style;
  };
  struct Lim {
    bool set = false;
    double lo = 0.0, hi = 1.0;
  };

  static Lim check_lim(const char* what, double lo, double hi) {
    if (!(lo < hi) || !std::isfinite(lo) || !std::isfinite(hi))
      throw std::invalid_argument(std::string("plot::Figure::") + what + ": need finite lo < hi, got " +
                                  std::to_string(lo) + ", " + std::to_string(hi));
    return {true, lo, hi};
  }

  template <typename X, typename Y>
  Figure& add(Kind kind, const char* fn, const std::vector<X>& xs, const std::vector<Y>& ys,
              std::string label, Style st) {
    if (xs.size() != ys.size())
      throw std::invalid_argument(std::string("plot::Figure::") + fn + ": " + std::to_string(xs.size()) +
                                  " x values vs " + std::to_string(ys.size()) + " y values");
    if (st.color.empty()) st.color = palette()[next_color_++ % palette().size()];
    series_.push_back({kind, detail::to_double(xs), detail::to_double(ys), std::move(label), std::move(st)});
    return *this;
  }

  bool has_secondary() const {
    for (const auto& s : series_)
      if (s.style.secondary_y && s.kind != Kind::VSpan) return true;
    return ylim2_.set;
  }

  int width_, height_;
  std::string title_, xlabel_, ylabel_, ylabel2_, cbar_label_;
  Lim xlim_, ylim_, ylim2_;
  Legend legend_ = Legend::Best;
  std::vector<Series> series_;
  std::size_t next_color_ = 0;
  std::vector<double> heat_;
  std::int64_t heat_rows_ = 0, heat_cols_ = 0;
  bool has_heat_ = false;
};

inline void Figure::render(std::ostringstream& out, double ox, double oy, const std::string& id) const {
  using detail::num;
  using detail::Range;
  const bool y2 = has_secondary();

  // ---- data ranges ----
  Range xr, yr, y2r;
  bool any_scatter = false, any_area = false, any_area2 = false;
  for (const auto& s : series_) {
    Range& r = s.style.secondary_y ? y2r : yr;
    if (s.kind == Kind::VSpan) { xr.add(s.x[0]); xr.add(s.x[1]); continue; }
    if (s.kind == Kind::HLine) { r.add(s.y[0]); continue; }
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xr.add(s.x[i]);
      r.add(s.y[i]);
    }
    any_scatter |= s.kind == Kind::Scatter;
    if (s.kind == Kind::Area) (s.style.secondary_y ? any_area2 : any_area) = true;
  }
  if (any_area && yr.valid()) yr.add(0.0);
  if (any_area2 && y2r.valid()) y2r.add(0.0);
  Range hv;  // heatmap value range, for the colours
  if (has_heat_) {
    xr = Range{-0.5, static_cast<double>(heat_cols_) - 0.5};
    yr = Range{-0.5, static_cast<double>(heat_rows_) - 0.5};
    for (double v : heat_) hv.add(v);
    if (heat_rows_ == 0 || heat_cols_ == 0) { xr = Range{}; yr = Range{}; }
  }
  xr = xlim_.set ? Range{xlim_.lo, xlim_.hi} : xr.finished(any_scatter ? 0.02 : 0.0);
  yr = ylim_.set ? Range{ylim_.lo, ylim_.hi} : yr.finished(has_heat_ ? 0.0 : 0.05, any_area);
  y2r = ylim2_.set ? Range{ylim2_.lo, ylim2_.hi} : y2r.finished(0.05, any_area2);
  if (hv.valid() && hv.hi == hv.lo) hv.hi = hv.lo + 1.0;

  // ---- layout: margins grow with the tick labels they must hold ----
  const double W = width_, H = height_;
  const double min_step = has_heat_ ? 1.0 : 0.0;
  const double top = title_.empty() ? 16.0 : 40.0;
  const double bottom = 34.0 + (xlabel_.empty() ? 0.0 : 18.0);
  const int ytarget = std::max(2, static_cast<int>((H - top - bottom) / 55.0));
  const std::vector<double> yticks = detail::nice_ticks(yr.lo, yr.hi, ytarget, min_step);
  const std::vector<std::string> ylabels = detail::tick_labels(yticks);
  double ytw = 0.0;
  for (const auto& l : ylabels) ytw = std::max(ytw, detail::text_width(l, 11));
  const double left = 16.0 + ytw + (ylabel_.empty() ? 0.0 : 22.0);
  std::vector<double> y2ticks;
  std::vector<std::string> y2labels;
  double right = 20.0;
  if (y2) {
    y2ticks = detail::nice_ticks(y2r.lo, y2r.hi, ytarget);
    y2labels = detail::tick_labels(y2ticks);
    double w2 = 0.0;
    for (const auto& l : y2labels) w2 = std::max(w2, detail::text_width(l, 11));
    right = 16.0 + w2 + (ylabel2_.empty() ? 0.0 : 22.0);
  }
  std::vector<double> cticks;
  std::vector<std::string> clabels;
  if (has_heat_ && hv.valid()) {
    cticks = detail::nice_ticks(hv.lo, hv.hi, 5);
    clabels = detail::tick_labels(cticks);
    double wc = 0.0;
    for (const auto& l : clabels) wc = std::max(wc, detail::text_width(l, 11));
    right = std::max(right, 40.0 + wc + (cbar_label_.empty() ? 12.0 : 30.0));
  }
  const double px0 = ox + left, px1 = ox + std::max(left + 20.0, W - right);
  const double py0 = oy + top, py1 = oy + std::max(top + 20.0, H - bottom);
  const detail::Scale sx{xr.lo, xr.hi, px0, px1};
  const detail::Scale sy = has_heat_ ? detail::Scale{yr.lo, yr.hi, py0, py1} : detail::Scale{yr.lo, yr.hi, py1, py0};
  const detail::Scale sy2{y2r.lo, y2r.hi, py1, py0};
  const int xtarget = std::max(2, static_cast<int>((px1 - px0) / 90.0));
  const std::vector<double> xticks = detail::nice_ticks(xr.lo, xr.hi, xtarget, min_step);
  const std::vector<std::string> xlabels = detail::tick_labels(xticks);

  out << "<g class=\"figure\">\n";
  out << "<rect x=\"" << num(ox) << "\" y=\"" << num(oy) << "\" width=\"" << num(W) << "\" height=\"" << num(H)
      << "\" fill=\"#ffffff\"/>\n";
  out << "<defs><clipPath id=\"" << id << "-clip\"><rect x=\"" << num(px0) << "\" y=\"" << num(py0)
      << "\" width=\"" << num(px1 - px0) << "\" height=\"" << num(py1 - py0) << "\"/></clipPath></defs>\n";

  // ---- grid ----
  if (!has_heat_) {
    out << "<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
    for (double t : yticks)
      out << "<line x1=\"" << num(px0) << "\" x2=\"" << num(px1) << "\" y1=\"" << num(sy(t)) << "\" y2=\"" << num(sy(t)) << "\"/>\n";
    for (double t : xticks)
      out << "<line x1=\"" << num(sx(t)) << "\" x2=\"" << num(sx(t)) << "\" y1=\"" << num(py0) << "\" y2=\"" << num(py1) << "\"/>\n";
    out << "</g>\n";
  }

  // ---- data, clipped to the plot area ----
  out << "<g clip-path=\"url(#" << id << "-clip)\">\n";
  if (has_heat_ && hv.valid()) {
    // Average bins of cells when the matrix has more cells than the plot has pixels.
    const std::int64_t br = std::min<std::int64_t>(heat_rows_, std::max<std::int64_t>(1, static_cast<std::int64_t>(py1 - py0)));
    const std::int64_t bc = std::min<std::int64_t>(heat_cols_, std::max<std::int64_t>(1, static_cast<std::int64_t>(px1 - px0)));
    out << "<g shape-rendering=\"crispEdges\">\n";
    for (std::int64_t i = 0; i < br; ++i) {
      const std::int64_t r0 = i * heat_rows_ / br, r1 = (i + 1) * heat_rows_ / br;
      for (std::int64_t j = 0; j < bc; ++j) {
        const std::int64_t c0 = j * heat_cols_ / bc, c1 = (j + 1) * heat_cols_ / bc;
        double sum = 0.0;
        int cnt = 0;
        for (std::int64_t r = r0; r < r1; ++r)
          for (std::int64_t c = c0; c < c1; ++c) {
            const double v = heat_[static_cast<std::size_t>(r * heat_cols_ + c)];
            if (std::isfinite(v)) { sum += v; ++cnt; }
          }
        if (cnt == 0) continue;
        const double x0 = sx(static_cast<double>(c0) - 0.5), x1 = sx(static_cast<double>(c1) - 0.5);
        const double y0 = sy(static_cast<double>(r0) - 0.5), y1 = sy(static_cast<double>(r1) - 0.5);
        // +0.5 px overlap hides the hairline seams some renderers leave between cells.
        out << "<rect x=\"" << num(x0) << "\" y=\"" << num(y0) << "\" width=\"" << num(x1 - x0 + 0.5)
            << "\" height=\"" << num(y1 - y0 + 0.5) << "\" fill=\"" << detail::viridis((sum / cnt - hv.lo) / (hv.hi - hv.lo)) << "\"/>\n";
      }
    }
    out << "</g>\n";
  }
  // Bands first so every line stays visible on top of them.
  for (const auto& s : series_) {
    if (s.kind != Kind::VSpan) continue;
    out << "<rect x=\"" << num(sx(s.x[0])) << "\" y=\"" << num(py0) << "\" width=\"" << num(sx(s.x[1]) - sx(s.x[0]))
        << "\" height=\"" << num(py1 - py0) << "\" fill=\"" << detail::esc(s.style.color) << "\" fill-opacity=\""
        << num(s.style.fill_opacity) << "\"/>\n";
  }
  auto stroke_attrs = [&](const Style& st) {
    std::string a = " fill=\"none\" stroke=\"" + detail::esc(st.color) + "\" stroke-width=\"" + num(st.width) +
                    "\" stroke-linejoin=\"round\" stroke-linecap=\"round\"";
    if (st.dashed) a += " stroke-dasharray=\"" + num(3.5 * st.width) + " " + num(2.2 * st.width) + "\"";
    if (st.opacity < 1.0) a += " stroke-opacity=\"" + num(st.opacity) + "\"";
    return a;
  };
  // Finite runs of a series: a NaN ends one piece of a line and the next point starts another.
  auto runs = [](const Series& s) {
    std::vector<std::pair<std::size_t, std::size_t>> r;
    std::size_t i = 0;
    while (i < s.x.size()) {
      while (i < s.x.size() && !(std::isfinite(s.x[i]) && std::isfinite(s.y[i]))) ++i;
      const std::size_t b = i;
      while (i < s.x.size() && std::isfinite(s.x[i]) && std::isfinite(s.y[i])) ++i;
      if (i > b) r.emplace_back(b, i);
    }
    return r;
  };
  for (Kind pass : {Kind::Area, Kind::Line, Kind::HLine, Kind::Scatter}) {
    for (const auto& s : series_) {
      if (s.kind != pass) continue;
      const detail::Scale& ys = s.style.secondary_y ? sy2 : sy;
      const Range& yrange = s.style.secondary_y ? y2r : yr;
      if (pass == Kind::HLine) {
        out << "<line x1=\"" << num(px0) << "\" x2=\"" << num(px1) << "\" y1=\"" << num(ys(s.y[0]))
            << "\" y2=\"" << num(ys(s.y[0])) << "\"" << stroke_attrs(s.style) << "/>\n";
        continue;
      }
      if (pass == Kind::Scatter) {
        out << "<g fill=\"" << detail::esc(s.style.color) << "\" fill-opacity=\"" << num(s.style.opacity * 0.85) << "\">\n";
        for (std::size_t i = 0; i < s.x.size(); ++i)
          if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
            out << "<circle cx=\"" << num(sx(s.x[i])) << "\" cy=\"" << num(ys(s.y[i])) << "\" r=\"" << num(s.style.marker_radius) << "\"/>\n";
        out << "</g>\n";
        continue;
      }
      std::string d;
      for (const auto& [b, e] : runs(s)) {
        for (std::size_t i = b; i < e; ++i) d += (i == b ? "M" : "L") + num(sx(s.x[i])) + " " + num(ys(s.y[i]));
      }
      if (pass == Kind::Area) {
        const double base = ys(std::min(yrange.hi, std::max(yrange.lo, 0.0)));
        std::string fill;
        for (const auto& [b, e] : runs(s)) {
          fill += "M" + num(sx(s.x[b])) + " " + num(base);
          for (std::size_t i = b; i < e; ++i) fill += "L" + num(sx(s.x[i])) + " " + num(ys(s.y[i]));
          fill += "L" + num(sx(s.x[e - 1])) + " " + num(base) + "Z";
        }
        if (!fill.empty())
          out << "<path d=\"" << fill << "\" fill=\"" << detail::esc(s.style.color) << "\" fill-opacity=\""
              << num(s.style.fill_opacity) << "\" stroke=\"none\"/>\n";
      }
      if (!d.empty()) out << "<path d=\"" << d << "\"" << stroke_attrs(s.style) << "/>\n";
    }
  }
  out << "</g>\n";

  // ---- axes, ticks, labels ----
  out << "<g stroke=\"#444444\" stroke-width=\"1\" fill=\"none\">\n"
      << "<line x1=\"" << num(px0) << "\" x2=\"" << num(px1) << "\" y1=\"" << num(py1) << "\" y2=\"" << num(py1) << "\"/>\n"
      << "<line x1=\"" << num(px0) << "\" x2=\"" << num(px0) << "\" y1=\"" << num(py0) << "\" y2=\"" << num(py1) << "\"/>\n";
  if (y2) out << "<line x1=\"" << num(px1) << "\" x2=\"" << num(px1) << "\" y1=\"" << num(py0) << "\" y2=\"" << num(py1) << "\"/>\n";
  for (double t : xticks) out << "<line x1=\"" << num(sx(t)) << "\" x2=\"" << num(sx(t)) << "\" y1=\"" << num(py1) << "\" y2=\"" << num(py1 + 5) << "\"/>\n";
  for (double t : yticks) out << "<line x1=\"" << num(px0 - 5) << "\" x2=\"" << num(px0) << "\" y1=\"" << num(sy(t)) << "\" y2=\"" << num(sy(t)) << "\"/>\n";
  for (double t : y2ticks) out << "<line x1=\"" << num(px1) << "\" x2=\"" << num(px1 + 5) << "\" y1=\"" << num(sy2(t)) << "\" y2=\"" << num(sy2(t)) << "\"/>\n";
  out << "</g>\n<g fill=\"#333333\" font-size=\"11\">\n";
  for (std::size_t i = 0; i < xticks.size(); ++i)
    out << "<text x=\"" << num(sx(xticks[i])) << "\" y=\"" << num(py1 + 18) << "\" text-anchor=\"middle\">" << xlabels[i] << "</text>\n";
  for (std::size_t i = 0; i < yticks.size(); ++i)
    out << "<text x=\"" << num(px0 - 8) << "\" y=\"" << num(sy(yticks[i]) + 4) << "\" text-anchor=\"end\">" << ylabels[i] << "</text>\n";
  for (std::size_t i = 0; i < y2ticks.size(); ++i)
    out << "<text x=\"" << num(px1 + 8) << "\" y=\"" << num(sy2(y2ticks[i]) + 4) << "\" text-anchor=\"start\">" << y2labels[i] << "</text>\n";
  out << "</g>\n<g fill=\"#222222\" font-size=\"13\">\n";
  if (!xlabel_.empty())
    out << "<text x=\"" << num((px0 + px1) / 2) << "\" y=\"" << num(oy + H - 10) << "\" text-anchor=\"middle\">" << detail::esc(xlabel_) << "</text>\n";
  if (!ylabel_.empty())
    out << "<text transform=\"translate(" << num(ox + 16) << " " << num((py0 + py1) / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
        << detail::esc(ylabel_) << "</text>\n";
  if (y2 && !ylabel2_.empty())
    out << "<text transform=\"translate(" << num(ox + W - 10) << " " << num((py0 + py1) / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
        << detail::esc(ylabel2_) << "</text>\n";
  if (!title_.empty())
    out << "<text x=\"" << num(ox + W / 2) << "\" y=\"" << num(oy + 26) << "\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">"
        << detail::esc(title_) << "</text>\n";
  out << "</g>\n";

  // ---- colour bar ----
  if (has_heat_ && hv.valid()) {
    const double cx = px1 + 14, cw = 14;
    out << "<defs><linearGradient id=\"" << id << "-cbar\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
    for (int k = 0; k <= 8; ++k)
      out << "<stop offset=\"" << num(k / 8.0) << "\" stop-color=\"" << detail::viridis(k / 8.0) << "\"/>";
    out << "</linearGradient></defs>\n";
    out << "<rect x=\"" << num(cx) << "\" y=\"" << num(py0) << "\" width=\"" << num(cw) << "\" height=\"" << num(py1 - py0)
        << "\" fill=\"url(#" << id << "-cbar)\" stroke=\"#444444\" stroke-width=\"0.8\"/>\n";
    const detail::Scale sc{hv.lo, hv.hi, py1, py0};
    out << "<g fill=\"#333333\" font-size=\"11\">\n";
    for (std::size_t i = 0; i < cticks.size(); ++i)
      out << "<line x1=\"" << num(cx + cw) << "\" x2=\"" << num(cx + cw + 4) << "\" y1=\"" << num(sc(cticks[i])) << "\" y2=\""
          << num(sc(cticks[i])) << "\" stroke=\"#444444\"/>\n<text x=\"" << num(cx + cw + 7) << "\" y=\"" << num(sc(cticks[i]) + 4)
          << "\">" << clabels[i] << "</text>\n";
    out << "</g>\n";
    if (!cbar_label_.empty())
      out << "<text transform=\"translate(" << num(ox + W - 10) << " " << num((py0 + py1) / 2)
          << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"13\" fill=\"#222222\">" << detail::esc(cbar_label_) << "</text>\n";
  }

  // ---- legend ----
  std::vector<const Series*> entries;
  for (const auto& s : series_)
    if (!s.label.empty()) entries.push_back(&s);
  if (legend_ != Legend::None && !entries.empty()) {
    double lw = 0.0;
    for (const auto* s : entries) lw = std::max(lw, detail::text_width(s->label, 12));
    lw += 44.0;
    const double lh = 10.0 + 18.0 * static_cast<double>(entries.size());
    auto corner = [&](Legend l) {
      const bool leftside = l == Legend::TopLeft || l == Legend::BottomLeft;
      const bool topside = l == Legend::TopLeft || l == Legend::TopRight;
      return std::make_pair(leftside ? px0 + 10 : px1 - 10 - lw, topside ? py0 + 10 : py1 - 10 - lh);
    };
    Legend where = legend_;
    if (where == Legend::Best) {
      // The corner that hides the fewest data points; ties favour the top right.
      std::size_t best_hidden = std::numeric_limits<std::size_t>::max();
      for (Legend l : {Legend::TopRight, Legend::TopLeft, Legend::BottomRight, Legend::BottomLeft}) {
        const auto [lx, ly] = corner(l);
        std::size_t hidden = 0;
        for (const auto& s : series_) {
          if (s.kind == Kind::VSpan || s.kind == Kind::HLine) continue;
          const detail::Scale& ys = s.style.secondary_y ? sy2 : sy;
          for (std::size_t i = 0; i < s.x.size(); ++i) {
            const double x = sx(s.x[i]), y = ys(s.y[i]);
            hidden += x >= lx && x <= lx + lw && y >= ly && y <= ly + lh;
          }
        }
        if (hidden < best_hidden) { best_hidden = hidden; where = l; }
      }
    }
    const auto [lx, ly] = corner(where);
    out << "<g class=\"legend\" font-size=\"12\">\n<rect x=\"" << num(lx) << "\" y=\"" << num(ly) << "\" width=\"" << num(lw)
        << "\" height=\"" << num(lh) << "\" rx=\"4\" fill=\"#ffffff\" fill-opacity=\"0.88\" stroke=\"#cccccc\"/>\n";
    for (std::size_t k = 0; k < entries.size(); ++k) {
      const Series& s = *entries[k];
      const double cy = ly + 14.0 + 18.0 * static_cast<double>(k);
      const std::string c = detail::esc(s.style.color);
      if (s.kind == Kind::Scatter)
        out << "<circle cx=\"" << num(lx + 21) << "\" cy=\"" << num(cy) << "\" r=\"" << num(std::min(5.0, s.style.marker_radius + 1)) << "\" fill=\"" << c << "\"/>\n";
      else if (s.kind == Kind::Area || s.kind == Kind::VSpan)
        out << "<rect x=\"" << num(lx + 10) << "\" y=\"" << num(cy - 6) << "\" width=\"22\" height=\"12\" fill=\"" << c << "\" fill-opacity=\""
            << num(std::max(0.35, s.style.fill_opacity)) << "\"/>\n";
      else
        out << "<line x1=\"" << num(lx + 8) << "\" x2=\"" << num(lx + 34) << "\" y1=\"" << num(cy) << "\" y2=\"" << num(cy) << "\""
            << stroke_attrs(s.style) << "/>\n";
      out << "<text x=\"" << num(lx + 40) << "\" y=\"" << num(cy + 4) << "\" fill=\"#222222\">" << detail::esc(s.label) << "</text>\n";
    }
    out << "</g>\n";
  }
  out << "</g>\n";
}

// A free-standing heatmap with its colour bar, e.g. attention weights (sample x time step).
template <typename T>
Figure heatmap(const std::vector<T>& values, std::int64_t rows, std::int64_t cols, const std::string& title = "",
               const std::string& xlabel = "", const std::string& ylabel = "", int width = 800, int height = 450) {
  Figure f(width, height);
  f.title(title).xlabel(xlabel).ylabel(ylabel).heatmap(values, rows, cols);
  return f;
}

// Figures laid out rows x cols in one SVG, e.g. signal + attention for several test series.
class Grid {
 public:
  Grid(int rows, int cols, int cell_width = 420, int cell_height = 260) : rows_(rows), cols_(cols) {
    if (rows < 1 || cols < 1)
      throw std::invalid_argument("plot::Grid: need at least 1x1 cells, got " + std::to_string(rows) + "x" + std::to_string(cols));
    cells_.assign(static_cast<std::size_t>(rows * cols), Figure(cell_width, cell_height));
  }
  Figure& at(int r, int c) {
    if (r < 0 || r >= rows_ || c < 0 || c >= cols_)
      throw std::out_of_range("plot::Grid::at: cell (" + std::to_string(r) + ", " + std::to_string(c) +
                              ") outside a " + std::to_string(rows_) + "x" + std::to_string(cols_) + " grid");
    return cells_[static_cast<std::size_t>(r * cols_ + c)];
  }
  Grid& title(std::string s) { title_ = std::move(s); return *this; }

  std::string to_svg() const {
    const int cw = cells_[0].width(), ch = cells_[0].height();
    const int head = title_.empty() ? 0 : 36;
    std::ostringstream out;
    Figure::open_svg(out, cols_ * cw, rows_ * ch + head);
    out << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
    if (!title_.empty())
      out << "<text x=\"" << cols_ * cw / 2 << "\" y=\"25\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\" fill=\"#222222\">"
          << detail::esc(title_) << "</text>\n";
    for (int r = 0; r < rows_; ++r)
      for (int c = 0; c < cols_; ++c)
        cells_[static_cast<std::size_t>(r * cols_ + c)].render(out, c * cw, head + r * ch, "g" + std::to_string(r) + "-" + std::to_string(c));
    out << "</svg>\n";
    return out.str();
  }
  void save(const std::string& path) const { io::write_file_atomic(path, to_svg()); }

 private:
  int rows_, cols_;
  std::string title_;
  std::vector<Figure> cells_;
};

}  // namespace attn::plot
