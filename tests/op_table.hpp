#pragma once
// attn's op table (tests/op_table.inc) as C++: every case's name, family, flags, the inputs of
// the thread-count check, and the attn expression. The golden, gradcheck, thread-invariance and
// CUDA parity tests all iterate over it; tests/fixtures/gen_core.py reads the same lines.
#include <attn/attn.hpp>
#include <cctype>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace op_table {

using attn::Tensor;
using Inputs = std::vector<Tensor>;
using Outputs = std::vector<Tensor>;  // {result} or {result, integer aux result such as max's indices}

// Every case has a PyTorch golden; these flags say what else applies (0: the golden only).
enum Flags : unsigned {
  kFD = 1u << 0,   // finite differences apply at the golden inputs
  kCuda = 1u << 1  // the op has a CUDA path to compare with the CPU
};

struct Case {
  const char* family;
  const char* name;
  unsigned flags;
  const char* big;  // inputs of the thread-count check ("" = none), see big_inputs()
  Outputs (*fn)(const Inputs&);
};

inline Outputs outputs(const Tensor& t) { return {t}; }
inline Outputs outputs(const std::pair<Tensor, Tensor>& p) { return {p.first, p.second}; }

// Results of split/chunk/unbind (or of a layer: output, h_n, c_n) flattened, scaled by their
// position (1, 2, ...) and concatenated, so that one cotangent reaches every part with a
// different weight (gen_core.py's weighted_cat).
inline Tensor weighted_cat(const std::vector<Tensor>& parts) {
  std::vector<Tensor> flat;
  for (size_t i = 0; i < parts.size(); ++i) flat.push_back(attn::mul(attn::flatten(parts[i]), double(i + 1)));
  return attn::cat(flat, 0);
}
inline Tensor weighted_cat(const std::pair<Tensor, Tensor>& p) { return weighted_cat(std::vector<Tensor>{p.first, p.second}); }

// Input k of a case, or an undefined tensor when the case has fewer inputs.
inline const Tensor& arg(const Inputs& in, size_t k) {
  static const Tensor none;
  return k < in.size() ? in[k] : none;
}

inline const std::vector<Case>& cases() {
  using namespace attn;
  // One lambda per line of op_table.inc; a .. g name the inputs as in the table.
#define OP(family, name, flags, inputs, torch_expr, big, ...)                                           \
  Case{#family, #name, (flags), big, [](const Inputs& in) -> Outputs {                                 \
         const Tensor &a = arg(in, 0), &b = arg(in, 1), &c = arg(in, 2), &d = arg(in, 3), &e = arg(in, 4), \
                      &f = arg(in, 5), &g = arg(in, 6);                                                \
         (void)a, (void)b, (void)c, (void)d, (void)e, (void)f, (void)g;                                 \
         return outputs(__VA_ARGS__);                                                                   \
       }},
  static const std::vector<Case> table = {
#include "op_table.inc"
  };
#undef OP
  return table;
}

inline const Case& find(const std::string& name) {
  for (const Case& c : cases())
    if (name == c.name) return c;
  throw std::invalid_argument("op_table: no case named " + name);
}

// The BIG column: space-separated R(d0,d1,...) normal, P(...) in [0.5, 2) or M(...) bool tensors,
// drawn from attn's generator (seed it first) in `dtype` (masks stay bool).
inline Inputs big_inputs(const std::string& spec, attn::DType dtype) {
  Inputs out;
  size_t i = 0;
  auto fail = [&](const char* why) {
    throw std::invalid_argument(std::string("op_table: BIG spec \"") + spec + "\": " + why);
  };
  while (i < spec.size()) {
    if (std::isspace(static_cast<unsigned char>(spec[i]))) { ++i; continue; }
    const char kind = spec[i];
    if ((kind != 'R' && kind != 'P' && kind != 'M') || i + 1 >= spec.size() || spec[i + 1] != '(') fail("expected R(, P( or M(");
    const size_t close = spec.find(')', i);
    if (close == std::string::npos) fail("missing )");
    attn::Shape shape;
    std::string dims = spec.substr(i + 2, close - i - 2);
    for (size_t p = 0; p < dims.size();) {
      const size_t comma = dims.find(',', p);
      shape.push_back(std::stoll(dims.substr(p, comma == std::string::npos ? std::string::npos : comma - p)));
      p = comma == std::string::npos ? dims.size() : comma + 1;
    }
    if (kind == 'R') out.push_back(Tensor::randn(shape, dtype));
    if (kind == 'P') out.push_back(attn::add(attn::mul(Tensor::rand(shape, dtype), 1.5), 0.5));
    if (kind == 'M') out.push_back(attn::gt(Tensor::rand(shape), Tensor::full({}, 0.5)));
    i = close + 1;
  }
  return out;
}

}  // namespace op_table
