#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace attn {

enum class DType { Float32, Float64, Int64, Bool };
constexpr DType kFloat32 = DType::Float32;
constexpr DType kFloat64 = DType::Float64;
constexpr DType kInt64 = DType::Int64;
constexpr DType kBool = DType::Bool;

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "?";
}

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}

inline bool is_floating(DType d) { return d == DType::Float32 || d == DType::Float64; }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::Bool; };

}  // namespace attn

// Runs the body with `scalar_t` bound to the C++ type of a floating dtype.
#define ATTN_DISPATCH_FLOATING(dtype, opname, ...)                                          \
  [&] {                                                                                     \
    switch (dtype) {                                                                        \
      case ::attn::DType::Float32: { using scalar_t = float; return __VA_ARGS__(); }        \
      case ::attn::DType::Float64: { using scalar_t = double; return __VA_ARGS__(); }       \
      default:                                                                              \
        throw ::std::invalid_argument(::std::string(opname) + ": expected a floating dtype, got " + \
                                      ::attn::dtype_name(dtype));                           \
    }                                                                                       \
  }()

#define ATTN_DISPATCH_ALL(dtype, opname, ...)                                               \
  [&] {                                                                                     \
    switch (dtype) {                                                                        \
      case ::attn::DType::Float32: { using scalar_t = float; return __VA_ARGS__(); }        \
      case ::attn::DType::Float64: { using scalar_t = double; return __VA_ARGS__(); }       \
      case ::attn::DType::Int64: { using scalar_t = int64_t; return __VA_ARGS__(); }        \
      case ::attn::DType::Bool: { using scalar_t = uint8_t; return __VA_ARGS__(); }         \
    }                                                                                       \
    throw ::std::invalid_argument(::std::string(opname) + ": unknown dtype");               \
  }()
