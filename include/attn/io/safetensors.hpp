#pragma once
// Reader and writer for the safetensors layout: 8-byte little-endian header length N, N bytes
// of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}},
// then raw little-endian data. The reader trusts nothing: every length, shape and offset is
// checked against the file's real size before anything is allocated, so a truncated or hostile
// file raises attn::io::FormatError instead of crashing or allocating terabytes.
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#include "../core/tensor.hpp"
#include "atomic_file.hpp"

namespace attn::io {

struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Largest header accepted (the format's reference implementation uses the same bound).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct SafetensorsFile {
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
  std::string path;

  bool contains(const std::string& name) const {
    for (auto& [n, t] : tensors) if (n == name) return true;
    return false;
  }
  const Tensor& at(const std::string& name) const {
    for (auto& [n, t] : tensors) if (n == name) return t;
    throw FormatError(path + ": no tensor named '" + name + "'");
  }
};

// The reader and writer (defined below, each with its contract).
ATTN_API SafetensorsFile parse_safetensors(const char* bytes, size_t size, const std::string& where = "<memory>");
ATTN_API SafetensorsFile load_safetensors(const std::string& path);
ATTN_API std::string to_safetensors_bytes(const NamedTensors& tensors,
                                          const std::map<std::string, std::string>& metadata = {});
ATTN_API void save_safetensors(const std::string& path, const NamedTensors& tensors,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace attn::io

#if ATTN_HEADER_DEFINITIONS
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

namespace attn::io {

namespace detail {

// A small JSON reader: enough for safetensors headers, with a depth limit and strict bounds.
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;
};

class JsonParser {
 public:
  JsonParser(const char* p, size_t n, const std::string& where) : p_(p), end_(p + n), where_(where) {}
  Json parse() {
    Json v = value(0);
    ws();
    if (p_ != end_) fail("trailing characters after the JSON header");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw FormatError(where_ + ": bad header: " + what); }
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  char peek() {
    ws();
    if (p_ >= end_) fail("unexpected end of header");
    return *p_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++p_;
  }
  Json value(int depth) {
    if (depth > 16) fail("nesting too deep");
    // Each parsed value costs ~110 bytes against 2 bytes of text ("0,"), so a 100 MB header
    // could otherwise take ~8 GB. 2^21 values is ~150k tensor entries.
    if (++values_ > kMaxValues) fail("more than " + std::to_string(kMaxValues) + " JSON values");
    Json v;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::Object;
      ++p_;
      if (peek() == '}') { ++p_; return v; }
      for (;;) {
        if (peek() != '"') fail("expected a key string");
        std::string key = string();
        expect(':');
        v.fields.emplace_back(std::move(key), value(depth + 1));
        if (peek() == ',') { ++p_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Json::Array;
      ++p_;
      if (peek() == ']') { ++p_; return v; }
      for (;;) {
        v.items.push_back(value(depth + 1));
        if (peek() == ',') { ++p_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = Json::String;
      v.str = string();
      return v;
    }
    if (literal("true")) { v.kind = Json::Bool; v.b = true; return v; }
    if (literal("false")) { v.kind = Json::Bool; return v; }
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Number;
      const char* s = p_;
      while (p_ < end_ && (std::strchr("+-.eE", *p_) || (*p_ >= '0' && *p_ <= '9'))) ++p_;
      const std::string text(s, p_);
      char* stop = nullptr;
      v.num = std::strtod(text.c_str(), &stop);
      if (stop != text.c_str() + text.size()) fail("bad number '" + text + "'");
      return v;
    }
    fail(std::string("unexpected character '") + c + "'");
  }
  bool literal(const char* w) {
    const size_t n = std::strlen(w);
    if (size_t(end_ - p_) >= n && std::memcmp(p_, w, n) == 0) { p_ += n; return true; }
    return false;
  }
  std::string string() {
    ++p_;  // opening quote
    std::string out;
    while (p_ < end_ && *p_ != '"') {
      if (*p_ == '\\') {
        if (++p_ >= end_) break;
        const char e = *p_++;
        switch (e) {
          case '"': case '\\': case '/': out += e; break;
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u': {
            if (end_ - p_ < 4) fail("truncated \\u escape");
            // Exactly four hex digits (std::stoul would accept signs and spaces, and throws
            // std::invalid_argument, not FormatError, on non-hex input).
            unsigned cp = 0;
            for (int i = 0; i < 4; ++i, ++p_) {
              const char h = *p_;
              const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
              if (d < 0) fail("bad \\u escape");
              cp = cp * 16 + unsigned(d);
            }
            if (cp < 0x80) out += char(cp);
            else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
            else { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
            break;
          }
          default: fail("bad escape in string");
        }
      } else {
        out += *p_++;
      }
    }
    if (p_ >= end_) fail("unterminated string");
    ++p_;
    return out;
  }
  const char* p_;
  const char* end_;
  std::string where_;
  static constexpr size_t kMaxValues = size_t(1) << 21;
  size_t values_ = 0;
};

inline const char* st_dtype(DType d) {
  switch (d) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
    case DType::Bool: return "BOOL";
  }
  return "?";
}
inline bool parse_st_dtype(const std::string& s, DType& d) {
  if (s == "F32") d = kFloat32;
  else if (s == "F64") d = kFloat64;
  else if (s == "I64") d = kInt64;
  else if (s == "BOOL") d = kBool;
  else return false;
  return true;
}
inline void json_escape(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
    else if (c < 0x20) { char buf[8]; std::snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
    else out += char(c);
  }
  out += '"';
}
// Exact non-negative integer from a JSON number, or failure.
inline bool as_index(const Json& j, uint64_t limit, uint64_t& out) {
  if (j.kind != Json::Number || !(j.num >= 0) || j.num > double(limit) || j.num != double(uint64_t(j.num))) return false;
  out = uint64_t(j.num);
  return true;
}

}  // namespace detail

// Parses a whole safetensors image held in memory (also the fuzzing entry point).
ATTN_API SafetensorsFile parse_safetensors(const char* bytes, size_t size, const std::string& where) {
  using detail::Json;
  SafetensorsFile f;
  f.path = where;
  if (size < 8) throw FormatError(where + ": truncated: " + std::to_string(size) + " bytes, need at least 8");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
  if (n > kMaxHeaderBytes || n > size - 8)
    throw FormatError(where + ": header length " + std::to_string(n) + " exceeds the file (" + std::to_string(size) +
                      " bytes) or the " + std::to_string(kMaxHeaderBytes) + "-byte limit");
  const Json root = detail::JsonParser(bytes + 8, size_t(n), where).parse();
  if (root.kind != Json::Object) throw FormatError(where + ": header is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  const char* data = bytes + 8 + n;
  // Validate every entry first and allocate afterwards: entries that alias one range (rejected by
  // the overlap check below) must not each allocate a copy of it before that check runs.
  struct Entry { const std::string* name; DType dtype; Shape shape; uint64_t b, e; };
  std::vector<Entry> entries;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> names;
  for (const auto& [name, info] : root.fields) {
    if (name == "__metadata__") {
      if (info.kind != Json::Object) throw FormatError(where + ": __metadata__ is not an object");
      for (const auto& [k, v] : info.fields) {
        if (v.kind != Json::String) throw FormatError(where + ": metadata '" + k + "' is not a string");
        f.metadata[k] = v.str;
      }
      continue;
    }
    const std::string what = where + ": tensor '" + name + "'";
    if (info.kind != Json::Object) throw FormatError(what + ": entry is not an object");
    const Json *dt = nullptr, *sh = nullptr, *off = nullptr;
    for (const auto& [k, v] : info.fields) {
      if (k == "dtype") dt = &v;
      else if (k == "shape") sh = &v;
      else if (k == "data_offsets") off = &v;
    }
    DType dtype;
    if (!dt || dt->kind != Json::String || !detail::parse_st_dtype(dt->str, dtype))
      throw FormatError(what + ": missing or unsupported dtype" + (dt && dt->kind == Json::String ? " " + dt->str : ""));
    if (!sh || sh->kind != Json::Array || sh->items.size() > 8) throw FormatError(what + ": missing or bad shape");
    Shape shape;
    uint64_t numel = 1;
    for (const Json& d : sh->items) {
      uint64_t v;
      if (!detail::as_index(d, uint64_t(1) << 40, v)) throw FormatError(what + ": bad dimension in shape");
      shape.push_back(int64_t(v));
      if (v && numel > std::numeric_limits<uint64_t>::max() / v / 8) throw FormatError(what + ": shape too large");
      numel *= v;
    }
    uint64_t b, e;
    if (!off || off->kind != Json::Array || off->items.size() != 2 || !detail::as_index(off->items[0], data_size, b) ||
        !detail::as_index(off->items[1], data_size, e) || b > e)
      throw FormatError(what + ": data_offsets missing or outside the " + std::to_string(data_size) +
                        "-byte data section");
    if (e - b != numel * dtype_size(dtype))
      throw FormatError(what + ": " + std::to_string(e - b) + " bytes for shape " + to_string(shape) + " of " +
                        dt->str + " (need " + std::to_string(numel * dtype_size(dtype)) + ")");
    ranges.emplace_back(b, e);
    names.push_back(name);
    entries.push_back({&name, dtype, std::move(shape), b, e});
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) throw FormatError(where + ": tensor data ranges overlap");
  std::sort(names.begin(), names.end());
  for (size_t i = 1; i < names.size(); ++i)
    if (names[i] == names[i - 1]) throw FormatError(where + ": tensor '" + names[i] + "' appears twice");
  for (const Entry& en : entries) {  // disjoint ranges inside the data: at most size bytes in all
    Tensor t = Tensor::empty(en.shape, en.dtype);
    if (en.e > en.b) std::memcpy(t.raw_data(), data + en.b, size_t(en.e - en.b));
    f.tensors.emplace_back(*en.name, t);
  }
  return f;
}

ATTN_API SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw FormatError(path + ": cannot open for reading");
  const std::streamoff size = in.tellg();
  if (size < 0) throw FormatError(path + ": cannot determine size");
  std::string bytes(size_t(size), '\0');
  in.seekg(0);
  if (size > 0 && !in.read(&bytes[0], size)) throw FormatError(path + ": read failed");
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

// Serialises tensors (CPU, any dtype) with optional string metadata.
ATTN_API std::string to_safetensors_bytes(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  uint64_t offset = 0;
  bool first = true;
  for (const auto& [name, t] : tensors) {
    ATTN_CHECK(name != "__metadata__", "save_safetensors: reserved tensor name __metadata__");
    if (!first) header += ',';
    first = false;
    detail::json_escape(header, name);
    header += ":{\"dtype\":\"";
    header += detail::st_dtype(t.dtype());
    header += "\",\"shape\":[";
    for (size_t i = 0; i < t.shape().size(); ++i) header += (i ? "," : "") + std::to_string(t.shape()[i]);
    const uint64_t nb = uint64_t(t.numel()) * dtype_size(t.dtype());
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + nb) + "]}";
    offset += nb;
  }
  if (!metadata.empty()) {
    header += first ? "" : ",";
    header += "\"__metadata__\":{";
    bool f2 = true;
    for (const auto& [k, v] : metadata) {
      if (!f2) header += ',';
      f2 = false;
      detail::json_escape(header, k);
      header += ':';
      detail::json_escape(header, v);
    }
    header += '}';
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xFF);
  out += header;
  out.reserve(out.size() + offset);
  for (const auto& [name, t] : tensors) {
    const Tensor host = t.device() == Device::CPU ? t : t.detach().to(Device::CPU);  // GPU tensors: one copy
    out.append(static_cast<const char*>(host.raw_data()), size_t(host.numel()) * dtype_size(host.dtype()));
  }
  return out;
}

// Written to a temporary file in the same directory, then renamed: never half-written.
ATTN_API void save_safetensors(const std::string& path, const NamedTensors& tensors,
                             const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, to_safetensors_bytes(tensors, metadata));
}

}  // namespace attn::io
#endif  // ATTN_HEADER_DEFINITIONS
