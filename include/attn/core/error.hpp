#pragma once
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
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
// One argument of ATTN_CHECK's message: text, an integer or a floating-point number, kept as it is
// (the strings live until the end of the throw expression) and written out by cat_message. Not a
// variadic template on purpose: the checks number in the hundreds, and a template instantiated
// per distinct argument list cost a function of ~800 bytes each in every translation unit.
class MessagePart {
 public:
  MessagePart(const char* s) : kind_(Kind::text), text_(s), size_(std::char_traits<char>::length(s)) {}
  MessagePart(const std::string& s) : kind_(Kind::text), text_(s.data()), size_(s.size()) {}
  MessagePart(char c) : kind_(Kind::character), c_(c) {}
  template <class I, std::enable_if_t<std::is_integral_v<I> && std::is_signed_v<I>, int> = 0>
  MessagePart(I v) : kind_(Kind::signed_int), i_(v) {}
  template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_signed_v<I>, int> = 0>
  MessagePart(I v) : kind_(Kind::unsigned_int), u_(v) {}
  MessagePart(double v) : kind_(Kind::real), d_(v) {}

  void write(std::ostream& os) const {
    switch (kind_) {
      case Kind::text: os.write(text_, std::streamsize(size_)); break;
      case Kind::character: os.put(c_); break;
      case Kind::signed_int: os << i_; break;
      case Kind::unsigned_int: os << u_; break;
      case Kind::real: os << d_; break;
    }
  }

 private:
  enum class Kind { text, character, signed_int, unsigned_int, real };
  Kind kind_;
  const char* text_ = nullptr;
  size_t size_ = 0;
  char c_ = 0;
  long long i_ = 0;
  unsigned long long u_ = 0;
  double d_ = 0;
};

inline std::string cat_message(std::initializer_list<MessagePart> parts) {
  std::ostringstream os;
  for (const MessagePart& part : parts) part.write(os);
  return os.str();
}
}  // namespace detail

}  // namespace attn

// ATTN_CHECK(cond, "op", ": shapes ", to_string(a), ...) throws attn::ShapeError.
#define ATTN_CHECK(cond, ...)                                            \
  do {                                                                   \
    if (ATTN_UNLIKELY(!(cond))) throw ::attn::ShapeError(::attn::detail::cat_message({__VA_ARGS__})); \
  } while (0)
