// Bad data never reaches a model: data::load_labeled_series_csv and data::check_finite reject
// NaN/Inf (with the index of the first bad value), ragged lines, bad labels and empty files, and
// accept comments, blank lines and CRLF line ends (docs/reliability.md, "Bad data").
#include <attn/data/csv.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <unistd.h>

#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

namespace {
namespace fs = std::filesystem;

// A file under a per-process temporary directory, removed with it.
struct TempCsv {
  fs::path dir;
  fs::path path;
  explicit TempCsv(const std::string& content, const std::string& name = "series.csv") {
    dir = fs::temp_directory_path() / ("attn_test_csv_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(dir);
    path = dir / name;
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempCsv() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

// The message of the std::invalid_argument that loading `content` raises ("" if none).
std::string load_error(const std::string& content) {
  TempCsv f(content);
  try {
    data::load_labeled_series_csv(f.path.string());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL_CHECK("no std::invalid_argument for:\n" << content);
  return "";
}
}  // namespace

TEST_CASE("csv: a valid file with comments, blank lines and CRLF line ends", "[csv]") {
  TempCsv f("# label,x0,x1,x2\r\n"
            "0,0.5,-1.25,3\r\n"
            "\r\n"
            "   \n"
            "1,1e-3,2.5E2,-0\n"
            "# a comment between series\n"
            "\n"
            "0,7,8,9");  // no newline at the end
  data::SineAnomalyDataset ds;
  // The blank line holding spaces is not a series: it must be rejected or skipped, never read as data.
  try {
    ds = data::load_labeled_series_csv(f.path.string());
  } catch (const std::invalid_argument& e) {
    FAIL("valid file rejected: " << e.what());
  }
  CHECK(ds.samples == 3);
  CHECK(ds.length == 3);
  CHECK(ds.channels == 1);
  CHECK(ds.labels == std::vector<int>{0, 1, 0});
  CHECK(ds.x == std::vector<float>{0.5f, -1.25f, 3.f, 1e-3f, 250.f, -0.f, 7.f, 8.f, 9.f});
  CHECK(ds.at(1, 1) == 250.f);
}

TEST_CASE("csv: NaN and Inf are rejected with the line and the index of the first bad value", "[csv]") {
  std::string m = load_error("0,1,2,3,4\n1,1,2,nan,4\n0,1,2,3,inf\n");
  CHECK_THAT(m, Contains("series.csv:2") && Contains("series index 2") && Contains("nan"));
  m = load_error("0,1,2,3,4\n0,1,2,3,4\n0,1,-inf,3,4\n");
  CHECK_THAT(m, Contains(":3") && Contains("series index 1") && Contains("-inf"));
  m = load_error("1,Inf,0\n");
  CHECK_THAT(m, Contains(":1") && Contains("series index 0"));
  m = load_error("1,0,NaN\n");
  CHECK_THAT(m, Contains("series index 1"));
  // Overflow while parsing: 1e999 is Inf as a double.
  m = load_error("0,1,1e999\n");
  CHECK_THAT(m, Contains("series index 1") && Contains("1e999"));
  // Finite as a double but not as the float the model reads: must not become Inf silently.
  m = load_error("0,1,2,1e300\n");
  CHECK_THAT(m, Contains("series index 2") && Contains("1e300"));
}

TEST_CASE("csv: ragged lines, bad numbers and bad labels are rejected with their position", "[csv]") {
  CHECK_THAT(load_error("0,1,2,3\n1,1,2\n"), Contains(":2") && Contains("2 values") && Contains("first series has 3"));
  CHECK_THAT(load_error("0,1,2\n1,1,2,3,4\n"), Contains(":2") && Contains("4 values"));
  CHECK_THAT(load_error("0,1,abc,3\n"), Contains(":1") && Contains("column 2") && Contains("abc"));
  CHECK_THAT(load_error("0,1,2,\n"), Contains("column 3") && Contains("not a number"));  // trailing comma
  CHECK_THAT(load_error("0,1,,3\n"), Contains("column 2"));
  CHECK_THAT(load_error("0,1.5x,3\n"), Contains("column 1") && Contains("1.5x"));
  CHECK_THAT(load_error("0.5,1,2\n"), Contains("the label must be a plain integer, got '0.5'"));
  CHECK_THAT(load_error("nan,1,2\n"), Contains("the label must be a plain integer"));
  CHECK_THAT(load_error("1234567890123456789,1,2\n"), Contains("the label must be a plain integer"));
  CHECK_THAT(load_error("-,1,2\n"), Contains("column 0 is not a number: '-'"));
  CHECK_THAT(load_error("yes,1,2\n"), Contains("column 0") && Contains("yes"));
  CHECK_THAT(load_error("1\n"), Contains("a label without values"));
  CHECK_THAT(load_error("0;1;2\n"), Contains("column 0"));  // wrong separator
}

TEST_CASE("csv: NUL bytes, a UTF-8 byte order mark and labels that only parse as numbers", "[csv]") {
  // A NUL inside a cell used to end the value there silently ("1.5\0garbage" read as 1.5).
  CHECK_THAT(load_error(std::string("0,1,1.5\0" "99,3\n", 13)),
             Contains(":1") && Contains("column 2") && Contains("'1.5\\x0099'"));
  CHECK_THAT(load_error(std::string("0\0,1,2\n", 7)), Contains("column 0") && Contains("'0\\x00'"));
  // A BOM before the first label is skipped (Excel writes one); elsewhere it is shown, not invisible.
  {
    TempCsv f("\xEF\xBB\xBF" "0,1,2\n1,3,4\n");
    const auto ds = data::load_labeled_series_csv(f.path.string());
    CHECK(ds.samples == 2);
    CHECK(ds.labels == std::vector<int>{0, 1});
    CHECK(ds.x == std::vector<float>{1, 2, 3, 4});
  }
  CHECK_THAT(load_error("0,1,2\n\xEF\xBB\xBF" "1,3,4\n"), Contains(":2") && Contains("'\\xef\\xbb\\xbf1'"));
  // Labels are plain integers: not 0x1, " 1", "1.0", "+1", "1e0", "00", "-0", "07".
  for (const char* label : {"0x1", " 1", "1.0", "+1", "1e0", "00", "-0", "07"})
    CHECK_THAT(load_error(std::string(label) + ",1,2\n"), Contains("the label must be a plain integer") && Contains(label));
}

TEST_CASE("csv: empty inputs and missing files", "[csv]") {
  CHECK_THAT(load_error(""), Contains("holds no series"));
  CHECK_THAT(load_error("# only a comment\n\n\r\n"), Contains("holds no series"));
  try {
    data::load_labeled_series_csv("/nonexistent/dir/file.csv");
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(std::string(e.what()), Contains("cannot open") && Contains("/nonexistent/dir/file.csv"));
  }
}

TEST_CASE("data::check_finite names the first non-finite value and its index", "[csv]") {
  CHECK_NOTHROW(data::check_finite(std::vector<float>{0.f, -1.f, 3e38f}, "series"));
  CHECK_NOTHROW(data::check_finite(std::vector<double>{}, "empty"));
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  try {
    data::check_finite(std::vector<float>{1.f, 2.f, 3.f, nan, inf}, "training series");
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(std::string(e.what()), Contains("training series") && Contains("index 3") && Contains("of 5"));
  }
  try {
    data::check_finite(std::vector<double>{1.0, -std::numeric_limits<double>::infinity()}, "x");
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(std::string(e.what()), Contains("index 1") && Contains("inf"));
  }
}

TEST_CASE("csv: any integer labels become classes 0..K-1 in increasing order", "[csv]") {
  TempCsv f("9,1,2\n-3,3,4\n5,5,6\n9,7,8\n");
  const auto ds = data::load_labeled_series_csv(f.path.string());
  CHECK(ds.class_values == std::vector<long long>{-3, 5, 9});
  CHECK(ds.labels == std::vector<int>{2, 0, 1, 2});
  TempCsv g("1,1,2\n0,3,4\n");
  const auto bin = data::load_labeled_series_csv(g.path.string());
  CHECK(bin.class_values == std::vector<long long>{0, 1});
  CHECK(bin.labels == std::vector<int>{1, 0});
}
