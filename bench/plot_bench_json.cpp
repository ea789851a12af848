// Plots time per call against sequence length, one line per benchmark family, from Google
// Benchmark JSON files (each run needs a counter "L" or the length as the first /arg):
//   plot_bench_json out.svg "title" results.json [more.json ...]
// Families are the benchmark names without their trailing "/<L>[/...]" part. Log-log axes are
// drawn as log10 values so linear and quadratic growth show as slopes 1 and 2.
#include <attn/io/safetensors.hpp>
#include <attn/plot/svg.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

using attn::io::detail::Json;

namespace {
const Json* field(const Json& o, const std::string& k) {
  for (auto& [name, v] : o.fields)
    if (name == k) return &v;
  return nullptr;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s out.svg title results.json [more.json ...]\n", argv[0]);
    return 2;
  }
  std::map<std::string, std::vector<std::pair<double, double>>> series;  // family -> (L, ms)
  try {
    for (int a = 3; a < argc; ++a) {
      std::ifstream in(argv[a]);
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string text = ss.str();
      const Json root = attn::io::detail::JsonParser(text.data(), text.size(), argv[a]).parse();
      const Json* runs = field(root, "benchmarks");
      if (!runs) throw std::runtime_error(std::string(argv[a]) + ": no \"benchmarks\" array");
      for (const Json& r : runs->items) {
        const Json* name = field(r, "name");
        const Json* rt = field(r, "real_time");
        const Json* unit = field(r, "time_unit");
        const Json* run_type = field(r, "run_type");
        if (!name || !rt || (run_type && run_type->str != "iteration")) continue;
        std::string n = name->str;
        for (const char* suffix : {"/real_time", "/process_time"})
          if (n.size() > std::strlen(suffix) && n.compare(n.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
            n.erase(n.size() - std::strlen(suffix));
        const size_t slash = n.find_last_of('/');
        if (slash == std::string::npos) continue;
        const Json* Lc = field(r, "L");
        const double L = Lc ? Lc->num : std::atof(n.c_str() + slash + 1);
        const double scale = !unit ? 1e-6 : unit->str == "ms" ? 1.0 : unit->str == "us" ? 1e-3 : unit->str == "s" ? 1e3 : 1e-6;
        series[n.substr(0, slash)].emplace_back(L, rt->num * scale);
      }
    }
    attn::plot::Figure fig(900, 520);
    fig.title(argv[2]).xlabel("log10 sequence length L").ylabel("log10 time per call (ms)");
    size_t colour = 0;
    for (auto& [family, pts] : series) {
      const std::string& c = attn::plot::palette()[colour++ % attn::plot::palette().size()];
      std::sort(pts.begin(), pts.end());
      std::vector<double> x, y;
      for (auto& [L, ms] : pts) {
        x.push_back(std::log10(L));
        y.push_back(std::log10(ms));
      }
      std::string label = family.rfind("BM_", 0) == 0 ? family.substr(3) : family;
      fig.line(x, y, label, attn::plot::Style().with_color(c));
      fig.scatter(x, y, "", attn::plot::Style().with_color(c).with_marker_radius(2.5));
    }
    fig.save(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plot_bench_json: %s\n", e.what());
    return 1;
  }
  return 0;
}
