// data::load_series_csv (header, quoted names, columns by name or index, time column, missing
// values under each policy), chronological_split and make_windows; a table of malformed files,
// each rejected with a message naming the file, the line and the column.
#include <attn/data/series_csv.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

namespace {
namespace fs = std::filesystem;

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& content) {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("attn_series_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".csv");
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

data::SeriesTable load(const std::string& content, const data::SeriesCsvOptions& opt = data::SeriesCsvOptions()) {
  TempFile f(content);
  return data::load_series_csv(f.path.string(), opt);
}
}  // namespace

TEST_CASE("series_csv: header, quoted names, time column, columns by name and index", "[series_csv]") {
  const std::string csv =
      "\xEF\xBB\xBF"
      "date,\"temp, C\",\"say \"\"hi\"\"\",load\r\n"
      "# a comment\r\n"
      "2024-01-01,1.5,10,100\r\n"
      "\r\n"
      "\"2024-01-02\", -2.25 ,20,2e2\r\n"
      "2024-01-03,3,30,300\r\n";
  auto t = load(csv, data::SeriesCsvOptions().columns({"load", "temp, C"}).time_column("date"));
  REQUIRE(t.rows == 3);
  REQUIRE(t.channels == 2);
  CHECK(t.names == std::vector<std::string>{"load", "temp, C"});
  CHECK(t.times == std::vector<std::string>{"2024-01-01", "2024-01-02", "2024-01-03"});
  CHECK(t.values == std::vector<double>{100, 1.5, 200, -2.25, 300, 3});
  CHECK(t.lines == std::vector<int64_t>{3, 5, 6});
  CHECK(t.column(1) == std::vector<double>{1.5, -2.25, 3});

  auto u = load(csv, data::SeriesCsvOptions().column_indices({2}).time_column_index(0));
  CHECK(u.names == std::vector<std::string>{"say \"hi\""});
  CHECK(u.values == std::vector<double>{10, 20, 30});

  auto all = load(csv, data::SeriesCsvOptions().time_column("date"));  // every other column
  CHECK(all.channels == 3);
  CHECK(all.to_tensor(1, 3, kFloat64).to_vector<double>() == std::vector<double>{-2.25, 20, 200, 3, 30, 300});
}

TEST_CASE("series_csv: missing values under Error, Drop and Interpolate", "[series_csv]") {
  const std::string csv =
      "t,a,b\n"
      "0,1,10\n"
      "1,-99.99,20\n"
      "2,,30\n"
      "3,4,-99.99\n"
      "4,5,50\n";
  auto base = data::SeriesCsvOptions().time_column("t").missing_values({"-99.99"});
  SECTION("Error names the line, the column and the marker") {
    try {
      load(csv, base);
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      CHECK_THAT(e.what(), Contains(":3: column 1 'a': missing value '-99.99'"));
    }
  }
  SECTION("Drop leaves out rows 1, 2 and 3") {
    auto t = load(csv, base.missing(data::MissingPolicy::Drop));
    CHECK(t.rows == 2);
    CHECK(t.dropped == 3);
    CHECK(t.times == std::vector<std::string>{"0", "4"});
    CHECK(t.values == std::vector<double>{1, 10, 5, 50});
  }
  SECTION("Interpolate is linear in the row index, per column") {
    auto t = load(csv, base.missing(data::MissingPolicy::Interpolate));
    REQUIRE(t.rows == 5);
    CHECK(t.interpolated == 3);
    CHECK(t.column(0) == std::vector<double>{1, 2, 3, 4, 5});
    CHECK(t.column(1) == std::vector<double>{10, 20, 30, 40, 50});
  }
  SECTION("a marker in an unused column does not matter") {
    auto t = load(csv, data::SeriesCsvOptions().columns({"t"}).missing_values({"-99.99"}));
    CHECK(t.rows == 5);
  }
}

TEST_CASE("series_csv: a table of malformed files, each named by file, line and column", "[series_csv]") {
  struct Case {
    const char* what;
    std::string content;
    data::SeriesCsvOptions opt;
    std::string expected;  // part of the message after the path
  };
  const auto interp = data::SeriesCsvOptions().missing(data::MissingPolicy::Interpolate);
  const std::vector<Case> cases = {
      {"empty file", "", {}, "is empty (no header row)"},
      {"only comments", "# nothing\n\n", {}, "is empty (no header row)"},
      {"header without rows", "a,b\n", {}, "holds a header but no rows"},
      {"not a number", "a,b\n1,2\n3,x4\n", {}, ":3: column 1 'b' is not a number: 'x4'"},
      {"trailing text", "a,b\n1,2.5kg\n", {}, ":2: column 1 'b' is not a number: '2.5kg'"},
      {"NaN without marker", "a\n1\ninf\n", {}, ":3: column 0 'a': non-finite value 'inf'"},
      {"too large for float", "a\n1e300\n", {}, ":2: column 0 'a': non-finite value '1e300'"},
      {"too few cells", "a,b,c\n1,2,3\n4,5\n", {}, ":3: 2 cells, but the header has 3 columns"},
      {"too many cells", "a,b\n1,2\n3,4,5\n", {}, ":3: 3 cells, but the header has 2 columns"},
      {"unterminated quote", "a,b\n1,\"2\n", {}, ":2: column 1: unterminated quote"},
      {"text after quote", "\"a\"x,b\n1,2\n", {}, ":1: column 0: text after a closing quote"},
      {"repeated name", "a,b,a\n1,2,3\n", {}, ":1: column name 'a' appears twice (columns 0 and 2)"},
      {"empty name", "a,,c\n1,2,3\n", {}, ":1: column 1 has an empty name"},
      {"unknown column", "a,b\n1,2\n", data::SeriesCsvOptions().columns({"c"}), ":1: no value column named 'c' (the header has 'a', 'b')"},
      {"unknown time column", "a,b\n1,2\n", data::SeriesCsvOptions().time_column("date"), "no time column named 'date'"},
      {"index out of range", "a,b\n1,2\n", data::SeriesCsvOptions().column_indices({2}), "value column index 2 is outside the header's 2 columns"},
      {"time is a value", "a,b\n1,2\n", data::SeriesCsvOptions().columns({"a"}).time_column("a"), "column 'a' is both the time and a value column"},
      {"column twice", "a,b\n1,2\n", data::SeriesCsvOptions().columns({"a", "a"}), "value column 'a' chosen twice"},
      {"only a time column", "t\n1\n", data::SeriesCsvOptions().time_column("t"), "no value column"},
      {"missing under Error", "a,b\n1,\n", {}, ":2: column 1 'b': missing value ''"},
      {"NA under Error", "a,b\n1,2\n3,NA\n", {}, ":3: column 1 'b': missing value 'NA'"},
      {"missing first value", "a\nNA\n2\n", interp, ":2: column 'a' starts with a missing value"},
      {"missing last value", "a\n1\n2\nNA\n", interp, ":4: column 'a' ends with a missing value"},
      {"NUL byte", std::string("a\n1\n2\0", 6) + "\n", {}, ":3: a NUL byte"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    TempFile f(c.content);
    std::string message;
    try {
      data::load_series_csv(f.path.string(), c.opt);
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    CHECK_THAT(message, Contains("load_series_csv: "));
    CHECK_THAT(message, Contains(f.path.string()));
    CHECK_THAT(message, Contains(c.expected));
  }
  CHECK_THROWS_WITH(data::load_series_csv("/nonexistent/x.csv"), Contains("cannot open '/nonexistent/x.csv'"));
  CHECK_THROWS_AS(data::load_series_csv("/x.csv", data::SeriesCsvOptions().columns({"a"}).column_indices({0})),
                  std::invalid_argument);
}

TEST_CASE("series_csv: chronological split and windows with look-back, horizon and stride", "[series_csv]") {
  std::string csv = "x,y\n";
  for (int i = 0; i < 20; ++i) csv += std::to_string(i) + "," + std::to_string(100 + i) + "\n";
  auto t = load(csv);
  auto s = data::chronological_split(t.rows, 0.7, 0.15);
  CHECK(s.train_end == 14);
  CHECK(s.val_end == 17);
  auto w = data::make_windows(t, 0, s.train_end, data::WindowOptions(4, 2).stride(3), kFloat64);
  // starts 0, 3, 6 (6 + 4 + 2 = 12 <= 14), 9 would need row 14
  CHECK(w.starts == std::vector<int64_t>{0, 3, 6});
  CHECK(w.x.shape() == Shape{3, 4, 2});
  CHECK(w.y.shape() == Shape{3, 2, 2});
  const auto x = w.x.to_vector<double>(), y = w.y.to_vector<double>();
  CHECK(x[2 * 8 + 0] == 6);      // window 2, step 0, channel x
  CHECK(x[2 * 8 + 7] == 109);    // window 2, step 3, channel y
  CHECK(y[2 * 4 + 0] == 10);     // its first target
  CHECK(y[2 * 4 + 3] == 111);
  CHECK_THROWS_WITH(data::make_windows(t, 17, 20, data::WindowOptions(4, 2)),
                    Contains("rows [17, 20) hold 3 points, fewer than lookback 4 + horizon 2"));
  CHECK_THROWS_WITH(data::make_windows(t, 0, 21, data::WindowOptions(4, 2)), Contains("outside [0, 20)"));
  CHECK_THROWS_WITH(data::make_windows(t, 0, 20, data::WindowOptions(0, 2)), Contains("must be positive"));
  CHECK_THROWS_WITH(data::chronological_split(10, 0.9, 0.2), Contains("chronological_split"));
}
