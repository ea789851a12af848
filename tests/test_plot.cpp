#include <attn/io/atomic_file.hpp>
#include <attn/plot/svg.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace attn;
using Catch::Matchers::Contains;

namespace {

// A strict little XML checker: balanced, properly nested tags; quoted, unique attributes; no
// raw '<' or stray '&' in text or attribute values; exactly one root element named svg.
// Collects text nodes, attributes and the number of each element for the assertions.
struct Xml {
  bool ok = false;
  std::string error;
  std::vector<std::string> texts;
  std::multimap<std::string, std::map<std::string, std::string>> elements;  // name -> attributes
  std::size_t count(const std::string& name) const { return elements.count(name); }
  bool has_text(const std::string& t) const { return std::find(texts.begin(), texts.end(), t) != texts.end(); }
  std::vector<std::string> attr_values(const std::string& element, const std::string& attr) const {
    std::vector<std::string> out;
    auto range = elements.equal_range(element);
    for (auto it = range.first; it != range.second; ++it) {
      auto a = it->second.find(attr);
      if (a != it->second.end()) out.push_back(a->second);
    }
    return out;
  }
};

bool entities_ok(const std::string& s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') return false;
    if (s[i] != '&') continue;
    const std::size_t semi = s.find(';', i);
    if (semi == std::string::npos) return false;
    const std::string ent = s.substr(i + 1, semi - i - 1);
    if (ent != "amp" && ent != "lt" && ent != "gt" && ent != "quot" && ent != "apos") return false;
  }
  return true;
}

std::string unescape(std::string s) {
  const std::pair<const char*, const char*> table[] = {{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&amp;", "&"}};
  for (const auto& [from, to] : table)
    for (std::size_t p; (p = s.find(from)) != std::string::npos;) s.replace(p, std::string(from).size(), to);
  return s;
}

Xml parse_xml(const std::string& doc) {
  Xml x;
  std::size_t i = 0;
  auto fail = [&](const std::string& why) {
    x.error = why + " at offset " + std::to_string(i);
    return x;
  };
  if (doc.compare(0, 5, "<?xml") == 0) {
    i = doc.find("?>");
    if (i == std::string::npos) return fail("unterminated declaration");
    i += 2;
  }
  std::vector<std::string> stack;
  int roots = 0;
  while (i < doc.size()) {
    const std::size_t lt = doc.find('<', i);
    const std::string text = doc.substr(i, lt == std::string::npos ? std::string::npos : lt - i);
    if (!entities_ok(text) || text.find('>') != std::string::npos) return fail("bad text '" + text + "'");
    if (text.find_first_not_of(" \t\r\n") != std::string::npos) {
      if (stack.empty()) return fail("text outside the root");
      x.texts.push_back(unescape(text));
    }
    if (lt == std::string::npos) break;
    i = lt + 1;
    const bool closing = i < doc.size() && doc[i] == '/';
    if (closing) ++i;
    std::size_t n = i;
    while (n < doc.size() && (std::isalnum(static_cast<unsigned char>(doc[n])) || doc[n] == '-' || doc[n] == ':')) ++n;
    const std::string name = doc.substr(i, n - i);
    if (name.empty()) return fail("empty tag name");
    i = n;
    if (closing) {
      if (i >= doc.size() || doc[i] != '>') return fail("bad closing tag");
      if (stack.empty() || stack.back() != name) return fail("mismatched </" + name + ">");
      stack.pop_back();
      ++i;
      continue;
    }
    std::map<std::string, std::string> attrs;
    for (;;) {
      while (i < doc.size() && std::isspace(static_cast<unsigned char>(doc[i]))) ++i;
      if (i >= doc.size()) return fail("unterminated tag");
      if (doc[i] == '>' || doc.compare(i, 2, "/>") == 0) break;
      std::size_t e = i;
      while (e < doc.size() && doc[e] != '=' && !std::isspace(static_cast<unsigned char>(doc[e]))) ++e;
      const std::string key = doc.substr(i, e - i);
      if (e + 1 >= doc.size() || doc[e] != '=' || doc[e + 1] != '"') return fail("unquoted attribute " + key);
      const std::size_t close = doc.find('"', e + 2);
      if (close == std::string::npos) return fail("unterminated attribute");
      const std::string value = doc.substr(e + 2, close - e - 2);
      if (!entities_ok(value)) return fail("bad attribute value " + value);
      if (!attrs.emplace(key, unescape(value)).second) return fail("duplicate attribute " + key);
      i = close + 1;
    }
    if (stack.empty()) {
      ++roots;
      if (name != "svg") return fail("root is <" + name + ">");
    }
    x.elements.emplace(name, attrs);
    if (doc[i] == '/') {
      i += 2;
    } else {
      stack.push_back(name);
      ++i;
    }
  }
  if (!stack.empty()) return fail("unclosed <" + stack.back() + ">");
  if (roots != 1) return fail("expected one root, got " + std::to_string(roots));
  x.ok = true;
  return x;
}

Xml require_xml(const std::string& svg) {
  Xml x = parse_xml(svg);
  INFO(x.error);
  REQUIRE(x.ok);
  return x;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("attn_test_plot_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("plot: the XML checker rejects broken documents", "[plot]") {
  CHECK(parse_xml("<svg><g></g></svg>").ok);
  CHECK_FALSE(parse_xml("<svg><g></svg>").ok);
  CHECK_FALSE(parse_xml("<svg><g></text></g></svg>").ok);
  CHECK_FALSE(parse_xml("<svg><text>a < b</text></svg>").ok);
  CHECK_FALSE(parse_xml("<svg><text>a & b</text></svg>").ok);
  CHECK_FALSE(parse_xml("<svg a=1></svg>").ok);
  CHECK_FALSE(parse_xml("<svg></svg><svg></svg>").ok);
}

TEST_CASE("plot: a line figure carries title, labels, ticks and legend", "[plot]") {
  std::vector<double> xs{1, 2, 3, 4, 5}, train{0.7, 0.5, 0.4, 0.35, 0.3};
  std::vector<float> val{0.72f, 0.6f, 0.55f, 0.52f, 0.5f};
  plot::Figure fig(800, 450);
  fig.title("Loss").xlabel("epoch").ylabel("BCE");
  fig.line(xs, train, "train");
  fig.line(xs, val, "validation", plot::Style().with_dashes());
  const std::string svg = fig.to_svg();
  const Xml x = require_xml(svg);
  CHECK(x.has_text("Loss"));
  CHECK(x.has_text("epoch"));
  CHECK(x.has_text("BCE"));
  CHECK(x.has_text("train"));
  CHECK(x.has_text("validation"));
  // Nice round ticks: x from 1 to 5 in steps of 0.5 or 1, y includes 0.5.
  CHECK((x.has_text("1") || x.has_text("1.0")));
  CHECK((x.has_text("5") || x.has_text("5.0")));
  CHECK((x.has_text("0.5") || x.has_text("0.50")));
  const auto root = x.elements.find("svg")->second;
  CHECK(root.at("width") == "800");
  CHECK(root.at("height") == "450");
  // Two data paths, the second dashed, in the first two palette colours.
  const auto strokes = x.attr_values("path", "stroke");
  REQUIRE(strokes.size() == 2);
  CHECK(strokes[0] == plot::palette()[0]);
  CHECK(strokes[1] == plot::palette()[1]);
  CHECK(x.attr_values("path", "stroke-dasharray").size() == 1);
  // Legend swatches: one line per labelled line series (plus the dashed one).
  CHECK(x.attr_values("line", "stroke-dasharray").size() == 1);
}

TEST_CASE("plot: special characters in labels are escaped", "[plot]") {
  plot::Figure fig(400, 300);
  std::vector<double> y{1, 2};
  fig.title("a < b & \"c\"").line(y, "x<y>");
  const Xml x = require_xml(fig.to_svg());
  CHECK(x.has_text("a < b & \"c\""));
  CHECK(x.has_text("x<y>"));
}

TEST_CASE("plot: NaN values are skipped and split lines", "[plot]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> xs{0, 1, 2, 3, 4, 5}, ys{1, 2, nan, 4, std::numeric_limits<double>::infinity(), 6};
  plot::Figure fig(500, 300);
  fig.line(xs, ys, "with gaps").scatter(xs, ys, "points");
  const std::string svg = fig.to_svg();
  const Xml x = require_xml(svg);
  CHECK(lower(svg).find("nan") == std::string::npos);
  CHECK(lower(svg).find("inf") == std::string::npos);
  const auto d = x.attr_values("path", "d");
  REQUIRE(d.size() == 1);
  // Runs {0,1}, {3}, {5}: three move-to commands.
  CHECK(std::count(d[0].begin(), d[0].end(), 'M') == 3);
  CHECK(x.count("circle") == 4 + 1);  // four finite points + the legend marker

  plot::Figure all_nan(400, 300);
  std::vector<double> bad(10, nan);
  all_nan.line(bad, "nothing").area(bad);
  const Xml y = require_xml(all_nan.to_svg());
  CHECK(y.attr_values("path", "d").empty());
}

TEST_CASE("plot: empty figures and empty series render", "[plot]") {
  plot::Figure fig(400, 300);
  const Xml x = require_xml(fig.to_svg());
  CHECK(x.count("text") > 0);  // default axes with ticks
  plot::Figure e(400, 300);
  std::vector<double> none;
  e.title("empty").line(none, none, "nothing").scatter(none, none).area(none);
  const Xml y = require_xml(e.to_svg());
  CHECK(y.has_text("empty"));
  CHECK(y.has_text("nothing"));
  std::vector<double> one{3.0};
  plot::Figure c(400, 300);
  c.line(one, one, "single");  // constant range must not divide by zero
  CHECK(lower(c.to_svg()).find("nan") == std::string::npos);
}

TEST_CASE("plot: invalid plot input throws", "[plot]") {
  plot::Figure fig(400, 300);
  std::vector<double> a{1, 2, 3}, b{1, 2};
  CHECK_THROWS_WITH(fig.line(a, b), Contains("line") && Contains("3 x values vs 2 y values"));
  CHECK_THROWS_AS(fig.scatter(a, b), std::invalid_argument);
  CHECK_THROWS_AS(fig.heatmap(a, 2, 2), std::invalid_argument);
  CHECK_THROWS_AS(fig.xlim(1.0, 1.0), std::invalid_argument);
  CHECK_THROWS_AS(plot::Figure(10, 10), std::invalid_argument);
  CHECK_THROWS_AS(plot::Grid(0, 2), std::invalid_argument);
}

TEST_CASE("plot: signal with attention on a secondary axis, vspan and area", "[plot]") {
  std::vector<double> sig(100), w(100);
  for (int t = 0; t < 100; ++t) {
    sig[static_cast<std::size_t>(t)] = 5.0 * std::sin(t / 10.0);
    w[static_cast<std::size_t>(t)] = std::exp(-0.5 * std::pow((t - 60) / 5.0, 2));
  }
  plot::Figure fig(800, 400);
  fig.title("series 3").xlabel("t").ylabel("x").ylabel2("attention");
  fig.vspan(50, 70, "anomaly");
  fig.line(sig, "signal");
  fig.area(w, "attention", plot::Style().on_secondary_y());
  const Xml x = require_xml(fig.to_svg());
  CHECK(x.has_text("attention"));
  CHECK(x.has_text("anomaly"));
  // Right-axis ticks for weights in [0, 1] alongside the left ticks for [-5, 5].
  CHECK(x.has_text("1.0"));
  CHECK(x.has_text("0.2"));
  CHECK(x.has_text("-4"));
  // Area fill + area outline + signal line.
  CHECK(x.attr_values("path", "d").size() == 3);
  CHECK(x.attr_values("path", "fill-opacity").size() == 1);
  // Without a secondary series the right label is not drawn.
  plot::Figure plain(400, 300);
  plain.ylabel2("unused").line(sig);
  CHECK_FALSE(require_xml(plain.to_svg()).has_text("unused"));
  // Legend::None hides labels.
  plot::Figure quiet(400, 300);
  quiet.legend(plot::Legend::None).line(sig, "hidden");
  CHECK_FALSE(require_xml(quiet.to_svg()).has_text("hidden"));
}

TEST_CASE("plot: heatmap with colour bar", "[plot]") {
  const std::vector<double> m{0.1, 0.5, 0.2, 0.9, 0.3, 0.7};
  const plot::Figure fig = plot::heatmap(m, 2, 3, "Attention", "key", "query", 400, 300);
  const Xml x = require_xml(fig.to_svg());
  CHECK(x.has_text("Attention"));
  CHECK(x.has_text("key"));
  CHECK(x.has_text("query"));
  const auto fills = x.attr_values("rect", "fill");
  // Lowest cell takes the bottom of viridis, highest the top.
  CHECK(std::count(fills.begin(), fills.end(), plot::detail::viridis(0.0)) == 1);
  CHECK(std::count(fills.begin(), fills.end(), plot::detail::viridis(1.0)) == 1);
  CHECK(plot::detail::viridis(0.0) == "#440154");
  CHECK(plot::detail::viridis(1.0) == "#fde725");
  std::size_t cells = 0;
  for (const auto& f : fills) cells += f.size() == 7 && f[0] == '#' && f != "#ffffff";
  CHECK(cells == 6);
  CHECK(x.count("linearGradient") == 1);
  CHECK(x.count("stop") == 9);

  // A 980 x 20 matrix is averaged down to the plot's pixel rows, not 19600 rects.
  std::vector<float> big(980 * 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 20) / 20.0f;
  const Xml y = require_xml(plot::heatmap(big, 980, 20, "big").to_svg());
  CHECK(y.count("rect") < 20u * 450u);
  CHECK(y.count("rect") > 20u * 100u);

  plot::Figure empty(400, 300);
  empty.heatmap(std::vector<double>{}, 0, 0);
  require_xml(empty.to_svg());
}

TEST_CASE("plot: nice ticks and labels", "[plot]") {
  CHECK(plot::detail::nice_ticks(0.0, 1.0, 5) == std::vector<double>{0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0});
  const auto t = plot::detail::nice_ticks(-1.1, 1.1, 4);
  CHECK(plot::detail::tick_labels(t) == std::vector<std::string>{"-1.0", "-0.5", "0.0", "0.5", "1.0"});
  CHECK(plot::detail::tick_labels({0.0, 0.25, 0.5}) == std::vector<std::string>{"0.00", "0.25", "0.50"});
  CHECK(plot::detail::tick_labels(plot::detail::nice_ticks(0, 980, 8)) ==
        std::vector<std::string>{"0", "100", "200", "300", "400", "500", "600", "700", "800", "900"});
  // Cell indices never get fractional ticks.
  const auto cells = plot::detail::nice_ticks(-0.5, 2.5, 10, 1.0);
  CHECK(cells == std::vector<double>{0.0, 1.0, 2.0});
}

TEST_CASE("plot: grid of subplots in one SVG", "[plot]") {
  plot::Grid grid(2, 3, 300, 200);
  grid.title("Test series");
  std::vector<double> y{0, 1, 0, -1, 0};
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      auto& f = grid.at(r, c);
      f.title("cell " + std::to_string(r) + "," + std::to_string(c)).line(y, "signal").area(y, "w", plot::Style().on_secondary_y());
    }
  const Xml x = require_xml(grid.to_svg());
  const auto root = x.elements.find("svg")->second;
  CHECK(root.at("width") == "900");
  CHECK(root.at("height") == std::to_string(400 + 36));
  CHECK(x.has_text("Test series"));
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) CHECK(x.has_text("cell " + std::to_string(r) + "," + std::to_string(c)));
  // Clip path ids must be unique across cells or every cell would clip to the first.
  const auto ids = x.attr_values("clipPath", "id");
  CHECK(ids.size() == 6);
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == 6);
  CHECK_THROWS_AS(grid.at(2, 0), std::out_of_range);
}

TEST_CASE("plot: atomic write creates and replaces files without leftovers", "[plot][io]") {
  TempDir dir;
  const fs::path target = dir.path / "out.txt";
  io::write_file_atomic(target.string(), std::string("first"));
  CHECK(read(target) == "first");
  io::write_file_atomic(target.string(), std::string("second, longer"));
  CHECK(read(target) == "second, longer");
  const char bytes[] = {'a', '\0', 'b'};
  io::write_file_atomic(target.string(), bytes, sizeof bytes);
  CHECK(read(target) == std::string("a\0b", 3));
  io::write_file_atomic(target.string(), std::string());
  CHECK(read(target).empty());
  CHECK(dir.names() == std::vector<std::string>{"out.txt"});

  plot::Figure fig(400, 300);
  fig.title("saved");
  const fs::path svg = dir.path / "fig.svg";
  fig.save(svg.string());
  CHECK(read(svg) == fig.to_svg());
  plot::Grid g(1, 2);
  g.save(svg.string());
  CHECK(read(svg) == g.to_svg());
  CHECK(dir.names() == std::vector<std::string>{"fig.svg", "out.txt"});
}

TEST_CASE("plot: atomic write failures throw and clean up", "[plot][io]") {
  TempDir dir;
  const std::string missing = (dir.path / "no_such_dir" / "x.svg").string();
  CHECK_THROWS_WITH(io::write_file_atomic(missing, std::string("x")),
                    Contains(missing) && Contains("No such file or directory"));
  plot::Figure fig(400, 300);
  CHECK_THROWS_AS(fig.save(missing), std::runtime_error);

  // Renaming onto a directory fails after the temporary file was written: it must be removed.
  fs::create_directories(dir.path / "occupied");
  CHECK_THROWS_WITH(io::write_file_atomic((dir.path / "occupied").string(), std::string("x")),
                    Contains("rename") && Contains("occupied"));
  CHECK(dir.names() == std::vector<std::string>{"occupied"});
  CHECK_THROWS_AS(io::write_file_atomic("", std::string("x")), std::runtime_error);
}
