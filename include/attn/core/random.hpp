#pragma once
// One global generator so manual_seed(s) makes a whole program reproducible. Numbers are drawn
// from the raw engine bits with our own transforms, so they are the same on every standard library.
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <cstdlib>

namespace attn {

class Generator {
 public:
  explicit Generator(uint64_t seed = 5489u) : engine_(seed) {}
  void seed(uint64_t s) { engine_.seed(s); has_spare_ = false; }
  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Standard normal by the Box-Muller transform.
  double normal() {
    if (has_spare_) { has_spare_ = false; return spare_; }
    double u1 = uniform(), u2 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }
  std::mt19937_64& engine() { return engine_; }
  // Opaque state for checkpoints: the engine's text form plus the Box-Muller spare.
  std::string state() const {
    std::ostringstream os;
    os << engine_ << ' ' << has_spare_ << ' ' << std::hexfloat << spare_;
    return os.str();
  }
  void set_state(const std::string& s) {
    std::istringstream is(s);
    is >> engine_ >> has_spare_;
    std::string spare;
    is >> spare;
    spare_ = std::strtod(spare.c_str(), nullptr);
  }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

inline Generator& default_generator() {
  static Generator g;
  return g;
}

inline void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace attn
