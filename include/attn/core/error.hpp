#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

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
    if (!(cond)) throw ::attn::ShapeError(::attn::detail::cat_message(__VA_ARGS__)); \
  } while (0)
