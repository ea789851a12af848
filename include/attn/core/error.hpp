#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include "../config.hpp"

namespace attn {

using Shape = std::vector<int64_t>;

inline std::string to_string(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Bad arguments (shapes, dims, indices) raise ShapeError; its message names the op and shapes.
struct ShapeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Branch hints for the checks on hot paths (tensor accessors run thousands of times per training
// step): the failing side is laid out away from the straight line and its message built in a
// cold function, so the accessors stay small enough to inline.
#if defined(__GNUC__) || defined(__clang__)
#define ATTN_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ATTN_COLD __attribute__((cold, noinline))
#else
#define ATTN_UNLIKELY(x) (x)
#define ATTN_COLD
#endif

namespace detail {
template <class... Args>
std::string cat_message(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace attn

// ATTN_CHECK(cond, "op", ": shapes ", to_string(a), ...) throws attn::ShapeError.
#define ATTN_CHECK(cond, ...)                                            \
  do {                                                                   \
    if (ATTN_UNLIKELY(!(cond))) throw ::attn::ShapeError(::attn::detail::cat_message(__VA_ARGS__)); \
  } while (0)
