#pragma once
// Random numbers: Generator (std::mt19937_64, whose output sequence the standard fixes, through
// our own uniform/normal/integer transforms of the raw engine bits, so numbers are the same on
// every standard library; std::uniform_real_distribution and friends are implementation-defined),
// one global generator so manual_seed(s) makes a whole program reproducible, and splitmix64, the
// mixer that turns counters and seeds into unrelated 64-bit values.
//
// Threads: a Generator holds a mutex, as PyTorch's generators do. Each single draw (uniform(),
// normal(), next_u64()), seed(), state() and set_state() takes it; code that draws many numbers
// takes it once with lock() and draws through the returned handle. So threads may share the
// global generator without a data race; which thread gets which numbers then depends on timing,
// so for reproducible results seed and draw from one thread (or give each thread a Generator).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace attn {

// SplitMix64's output function (Steele, Lea and Flood 2014) applied to z + 0x9E3779B97F4A7C15
// (2^64 / golden ratio): consecutive z give unrelated outputs, which makes it a counter-based
// random number (dropout's keep/drop decision for element i is splitmix64(seed + golden * i)) and
// a seeder of independent streams (data::detail::stream_seed). constexpr, so device code compiled
// with --expt-relaxed-constexpr can call it too.
constexpr uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 5489u) : engine_(seed) {}
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Draws while holding the generator's lock (one lock for a whole tensor).
  class Locked {
   public:
    explicit Locked(Generator& g) : g_(g), lock_(g.mutex_) {}
    uint64_t next_u64() { return g_.engine_(); }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(g_.engine_() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Standard normal by the Box-Muller transform.
    double normal() {
      if (g_.has_spare_) {
        g_.has_spare_ = false;
        return g_.spare_;
      }
      double u1 = uniform(), u2 = uniform();
      while (u1 <= 0.0) u1 = uniform();
      const double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
      g_.spare_ = r * std::sin(th);
      g_.has_spare_ = true;
      return r * std::cos(th);
    }
    // Standard normal by Box-Muller, one value per call: the second value is discarded, so each
    // call consumes exactly two engine outputs (the data generators draw this way, so a series'
    // stream is easy to reason about). normal() keeps the second value for the next call instead.
    double normal_unpaired() {
      const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
      const double u2 = uniform();
      return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
    double normal_unpaired(double mean, double stddev) { return mean + stddev * normal_unpaired(); }
    // Uniform integer in [0, n), unbiased: rejects the low 2^64 mod n outputs.
    uint64_t below(uint64_t n) {
      if (n == 0) throw std::invalid_argument("Generator::below: n must be positive");
      const uint64_t reject = (std::numeric_limits<uint64_t>::max() % n + 1) % n;
      uint64_t r;
      do r = g_.engine_();
      while (r < reject);
      return r % n;
    }
    // Fisher-Yates shuffle drawing with below().
    template <typename T>
    void shuffle(std::vector<T>& v) {
      for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
    }

   private:
    Generator& g_;
    std::lock_guard<std::mutex> lock_;
  };
  Locked lock() { return Locked(*this); }

  uint64_t next_u64() { return lock().next_u64(); }
  double uniform() { return lock().uniform(); }
  double uniform(double lo, double hi) { return lock().uniform(lo, hi); }
  double normal() { return lock().normal(); }
  double normal_unpaired() { return lock().normal_unpaired(); }
  double normal_unpaired(double mean, double stddev) { return lock().normal_unpaired(mean, stddev); }
  uint64_t below(uint64_t n) { return lock().below(n); }
  template <typename T>
  void shuffle(std::vector<T>& v) { lock().shuffle(v); }
  void seed(uint64_t s) {
    std::lock_guard<std::mutex> lk(mutex_);
    engine_.seed(s);
    has_spare_ = false;
  }

  // Opaque state for checkpoints: the engine's text form plus the Box-Muller spare.
  std::string state() {
    std::lock_guard<std::mutex> lk(mutex_);
    std::ostringstream os;
    os << engine_ << ' ' << has_spare_ << ' ' << std::hexfloat << spare_;
    return os.str();
  }
  // Restores a state() string; anything else throws std::invalid_argument and changes nothing.
  void set_state(const std::string& s) {
    std::mt19937_64 e;
    bool has_spare = false;
    double spare = 0;
    if (!parse_state(s, e, has_spare, spare))
      throw std::invalid_argument("Generator::set_state: not a generator state (" + std::to_string(s.size()) +
                                  " characters; expected the text written by Generator::state())");
    std::lock_guard<std::mutex> lk(mutex_);
    engine_ = e;
    has_spare_ = has_spare;
    spare_ = spare;
  }
  static bool valid_state(const std::string& s) {
    std::mt19937_64 e;
    bool has_spare = false;
    double spare = 0;
    return parse_state(s, e, has_spare, spare);
  }

 private:
  // The 312 engine words, the spare flag (0/1) and a finite spare, and nothing after them.
  static bool parse_state(const std::string& s, std::mt19937_64& e, bool& has_spare, double& spare) {
    std::istringstream is(s);
    std::string spare_text, rest;
    is >> e >> has_spare >> spare_text;
    if (is.fail() || (is >> rest)) return false;
    char* end = nullptr;
    spare = std::strtod(spare_text.c_str(), &end);
    return end == spare_text.c_str() + spare_text.size() && std::isfinite(spare);
  }

  std::mutex mutex_;
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
