#pragma once
// Checkpoints: a module's state_dict (and, for training, the optimizer state, the epoch and the
// RNG state) in one safetensors file with PyTorch's parameter names.
//
// Guarantees (see docs/checkpoints.md):
//  - save/save_checkpoint write through io::write_file_atomic: a temporary file in the target's
//    directory, fsync, rename. A crash or a failed write never leaves a half-written file under
//    the final name, and an existing checkpoint survives a failed save.
//  - The reader (io::load_safetensors) checks every size and offset against the file before it
//    allocates, so a truncated or hostile file costs at most about its own size in memory.
//  - load/load_checkpoint validate EVERYTHING first (names, shapes, dtypes, optimizer entries,
//    RNG state) and only then copy into the module: a failed load leaves it unchanged.
//
// Errors: a file that cannot be read, is not safetensors, or does not hold what the module
// needs (missing / unexpected / duplicate names, non-convertible dtype) raises io::FormatError
// (std::runtime_error); a file whose names all match but whose shapes differ raises
// attn::ShapeError (std::invalid_argument). Messages name the file, the tensor(s) and the
// expected vs found shapes.
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../nn/module.hpp"
#include "../optim/optimizer.hpp"
#include "safetensors.hpp"

namespace attn {

struct LoadOptions {
  // strict: every tensor the module expects must be in the file and the file must hold nothing
  // else (like torch's load_state_dict(strict=True)). With strict = false missing and
  // unexpected names are skipped and reported in LoadResult; shapes must still match.
  bool strict = true;
  LoadOptions& set_strict(bool v) { strict = v; return *this; }
};

struct LoadResult {
  std::vector<std::string> missing_keys;     // expected by the module, absent from the file
  std::vector<std::string> unexpected_keys;  // in the file, unknown to the module
  std::map<std::string, std::string> metadata;
};

// Save and load (defined below, each with its contract).
ATTN_API void save(const nn::Module& m, const std::string& path,
                   const std::map<std::string, std::string>& metadata = {});
ATTN_API LoadResult load_from(nn::Module& m, const io::SafetensorsFile& f, LoadOptions options = {});
ATTN_API LoadResult load(nn::Module& m, const std::string& path, LoadOptions options = {});
ATTN_API void save_checkpoint(const std::string& path, const nn::Module& m, optim::Optimizer* opt,
                              const std::map<std::string, std::string>& extra = {});
ATTN_API std::map<std::string, std::string> load_checkpoint(const std::string& path, nn::Module& m,
                                                            optim::Optimizer* opt);

// Typed reads of a checkpoint's metadata (what load_checkpoint returns), for programs that keep
// their progress there (epoch, batch, permutations, ...). Every value read from a file is checked
// before use: a missing key, text that is not a number, a number outside the range the caller
// gives raise io::FormatError naming the file and the key.
class CheckpointMetadata {
 public:
  CheckpointMetadata(std::string path, std::map<std::string, std::string> values)
      : path_(std::move(path)), values_(std::move(values)) {}

  bool has(const std::string& key) const { return values_.count(key) > 0; }
  const std::string& text(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) fail(key, "is missing (was the file written by this program?)");
    return it->second;
  }
  // A whole number in [lo, hi].
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    int64_t v = 0;
    if (!parse_integer(text(key), v)) fail(key, "is not an integer: '" + shown(text(key)) + "'");
    if (v < lo || v > hi) fail(key, "is " + std::to_string(v) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }
  // A number in [lo, hi] (NaN never is; "inf" is when hi is infinite).
  double number(const std::string& key, double lo, double hi) const {
    double v = 0;
    if (!parse_number(text(key), v)) fail(key, "is not a number: '" + shown(text(key)) + "'");
    if (!(v >= lo && v <= hi)) fail(key, "is " + text(key) + ", outside [" + num(lo) + ", " + num(hi) + "]");
    return v;
  }
  // Comma-separated whole numbers, each in [lo, hi] ("" is an empty list).
  std::vector<int64_t> integers(const std::string& key, int64_t lo, int64_t hi) const {
    std::vector<int64_t> out;
    const std::string& s = text(key);
    for (size_t pos = 0; !s.empty() && pos <= s.size();) {
      const size_t comma = std::min(s.find(',', pos), s.size());
      int64_t v = 0;
      if (!parse_integer(s.substr(pos, comma - pos), v))
        fail(key, "entry " + std::to_string(out.size()) + " is not an integer: '" + shown(s.substr(pos, comma - pos)) + "'");
      if (v < lo || v > hi)
        fail(key, "entry " + std::to_string(out.size()) + " is " + std::to_string(v) + ", outside [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
      out.push_back(v);
      pos = comma + 1;
    }
    return out;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw io::FormatError(path_ + ": checkpoint metadata '" + key + "' " + why);
  }

  // The whole string is one decimal number ("inf" included): no spaces, no hex, nothing after it.
  static bool parse_integer(const std::string& s, int64_t& v) {
    const char* end = s.data() + s.size();
    auto r = std::from_chars(s.data(), end, v);
    return r.ec == std::errc() && r.ptr == end && !s.empty();
  }
  static bool parse_number(const std::string& s, double& v) {
    if (s.empty() || std::isspace(static_cast<unsigned char>(s[0])) || s.find_first_of("xX") != std::string::npos)
      return false;
    char* end = nullptr;
    v = std::strtod(s.c_str(), &end);
    return end == s.c_str() + s.size();
  }

 private:
  // At most 40 characters of a value, so a message stays one line.
  static std::string shown(const std::string& v) { return v.size() <= 40 ? v : v.substr(0, 40) + "..."; }
  static std::string num(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
  }
  std::string path_;
  std::map<std::string, std::string> values_;
};

}  // namespace attn

#if ATTN_HEADER_DEFINITIONS
#include <set>

namespace attn {

namespace ckpt_detail {

// Metadata keys written by save_checkpoint (reserved: not allowed in `extra`).
inline const char* kFormatKey = "attn.format";
inline const char* kTrainingFormat = "training-checkpoint-v1";
inline const char* kRngKey = "rng_state";
inline const std::string kOptPrefix = "optimizer.";

inline bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// Float <-> float conversions are allowed (F64 file into an F32 model and back); integer and
// bool tensors must match exactly.
inline bool convertible(DType from, DType to) { return from == to || (is_floating(from) && is_floating(to)); }

inline std::string join_problems(const std::vector<std::string>& problems) {
  std::string out;
  const size_t shown = std::min<size_t>(problems.size(), 8);
  for (size_t i = 0; i < shown; ++i) out += (i ? "; " : "") + problems[i];
  if (problems.size() > shown) out += "; ... and " + std::to_string(problems.size() - shown) + " more";
  return out;
}

// One planned copy: destination handle and validated source.
struct Copy {
  Tensor dst;
  Tensor src;
};

// Matches the file's entries `prefix + name` against `expected` (name -> tensor) without touching
// anything. Appends copies to `plan`; throws FormatError / ShapeError with every problem found.
// `skip(name)` tells which file entries belong to another part (not "unexpected").
template <class Skip>
void plan_copies(const io::SafetensorsFile& f, const std::vector<std::pair<std::string, Tensor>>& expected,
                 const std::string& prefix, bool strict, const char* what, const Skip& skip, std::vector<Copy>& plan,
                 LoadResult* result) {
  std::map<std::string, const Tensor*> in_file;
  std::vector<std::string> format_problems, shape_problems;
  for (const auto& [name, t] : f.tensors) {
    if (!starts_with(name, prefix) || skip(name)) continue;
    if (!in_file.emplace(name.substr(prefix.size()), &t).second)
      format_problems.push_back("duplicate tensor '" + name + "'");
  }
  std::set<std::string> used;
  for (const auto& [name, dst] : expected) {
    if (!used.insert(name).second) {
      format_problems.push_back(std::string(what) + " has two entries named '" + name + "'");
      continue;
    }
    auto it = in_file.find(name);
    if (it == in_file.end()) {
      if (strict) format_problems.push_back("missing tensor '" + prefix + name + "' (expected shape " +
                                            to_string(dst.shape()) + ")");
      else if (result) result->missing_keys.push_back(prefix + name);
      continue;
    }
    const Tensor& src = *it->second;
    if (!convertible(src.dtype(), dst.dtype())) {
      format_problems.push_back("tensor '" + prefix + name + "' has dtype " + dtype_name(src.dtype()) +
                                ", cannot convert to " + dtype_name(dst.dtype()));
      continue;
    }
    if (src.shape() != dst.shape()) {
      shape_problems.push_back("tensor '" + prefix + name + "': expected shape " + to_string(dst.shape()) +
                               ", found " + to_string(src.shape()));
      continue;
    }
    plan.push_back({dst, src});
  }
  for (const auto& [name, t] : in_file) {
    if (used.count(name)) continue;
    if (strict) format_problems.push_back("unexpected tensor '" + prefix + name + "' (shape " +
                                          to_string(t->shape()) + ")");
    else if (result) result->unexpected_keys.push_back(prefix + name);
  }
  const std::string head = f.path + ": cannot load " + what + ": ";
  if (!format_problems.empty()) {
    format_problems.insert(format_problems.end(), shape_problems.begin(), shape_problems.end());
    throw io::FormatError(head + join_problems(format_problems));
  }
  if (!shape_problems.empty()) throw ShapeError(head + join_problems(shape_problems));
}

inline void apply(const std::vector<Copy>& plan) {
  NoGradGuard ng;
  for (const Copy& c : plan) {
    Tensor dst = c.dst;
    dst.copy_(c.src);  // converts F64 <-> F32 when the dtypes differ
  }
}

// Validates a Generator state string without touching the global generator.
inline bool valid_rng_state(const std::string& s) { return Generator::valid_state(s); }

inline bool is_training_checkpoint(const io::SafetensorsFile& f) {
  auto it = f.metadata.find(kFormatKey);
  return it != f.metadata.end() && it->second == kTrainingFormat;
}

// The file's "optimizer.<name>" tensors, under <name>.
inline std::vector<std::pair<std::string, Tensor>> optimizer_entries(const io::SafetensorsFile& f) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, t] : f.tensors)
    if (starts_with(name, kOptPrefix)) out.emplace_back(name.substr(kOptPrefix.size()), t);
  return out;
}

// Validates `f` against the module (and optimizer) and returns the planned copies into the
// module; throws on any problem without modifying anything.
inline std::vector<Copy> plan_load(const io::SafetensorsFile& f, const nn::Module& m, optim::Optimizer* opt,
                                   bool strict, LoadResult* result) {
  const bool training = is_training_checkpoint(f);
  std::vector<Copy> plan;
  auto skip_opt = [&](const std::string& name) { return training && starts_with(name, kOptPrefix); };
  plan_copies(f, m.state_dict(), "", strict, "module", skip_opt, plan, result);
  if (opt) {
    if (!training)
      throw io::FormatError(f.path + ": cannot load optimizer: the file holds no optimizer state (written by "
                            "save(), not save_checkpoint()?)");
    // Validated only: the optimizer state is applied through Optimizer::load_state (which
    // also restores lr, a plain double inside the optimizer).
    std::vector<Copy> unused;
    plan_copies(f, opt->state(), kOptPrefix, /*strict=*/true, "optimizer state",
                [](const std::string&) { return false; }, unused, nullptr);
    try {
      opt->check_state(optimizer_entries(f));  // the values too: lr as set_lr checks it, step
    } catch (const ShapeError& e) {
      throw io::FormatError(f.path + ": cannot load optimizer state (tensors '" + kOptPrefix + "*'): " + e.what());
    }
  }
  return plan;
}

}  // namespace ckpt_detail

// Writes the module's state_dict (parameters then buffers, PyTorch names, each in its own
// dtype) with optional string metadata, atomically.
ATTN_API void save(const nn::Module& m, const std::string& path, const std::map<std::string, std::string>& metadata) {
  const auto sd = m.state_dict();
  std::set<std::string> seen;
  for (const auto& [name, t] : sd)
    ATTN_CHECK(seen.insert(name).second, "save: ", path, ": module has two tensors named '", name, "'");
  io::save_safetensors(path, sd, metadata);
}

// Validates an already parsed file against the module, then copies (all or nothing).
ATTN_API LoadResult load_from(nn::Module& m, const io::SafetensorsFile& f, LoadOptions options) {
  LoadResult r;
  const auto plan = ckpt_detail::plan_load(f, m, nullptr, options.strict, &r);
  ckpt_detail::apply(plan);
  r.metadata = f.metadata;
  return r;
}

// Loads a state_dict written by save() (or by tools/export_torch.py, or the model part of a
// save_checkpoint() file). Everything is validated before the module is touched.
ATTN_API LoadResult load(nn::Module& m, const std::string& path, LoadOptions options) {
  return load_from(m, io::load_safetensors(path), options);
}

// Training checkpoint: the model under its bare names, the optimizer state under
// "optimizer.<name>" ("optimizer.step", "optimizer.lr", "optimizer.0.exp_avg", ...), metadata
// "attn.format" = "training-checkpoint-v1", "rng_state" = attn::default_generator().state()
// and every entry of `extra` (put "epoch" there).
ATTN_API void save_checkpoint(const std::string& path, const nn::Module& m, optim::Optimizer* opt,
                            const std::map<std::string, std::string>& extra) {
  io::NamedTensors all;
  std::set<std::string> seen;
  for (const auto& [name, t] : m.state_dict()) {
    ATTN_CHECK(!ckpt_detail::starts_with(name, ckpt_detail::kOptPrefix), "save_checkpoint: ", path,
               ": module tensor '", name, "' clashes with the reserved prefix 'optimizer.'");
    ATTN_CHECK(seen.insert(name).second, "save_checkpoint: ", path, ": module has two tensors named '", name, "'");
    all.emplace_back(name, t);
  }
  if (opt)
    for (const auto& [name, t] : opt->state()) all.emplace_back(ckpt_detail::kOptPrefix + name, t);
  std::map<std::string, std::string> meta = extra;
  for (const char* k : {ckpt_detail::kFormatKey, ckpt_detail::kRngKey})
    ATTN_CHECK(!meta.count(k), "save_checkpoint: ", path, ": metadata key '", k, "' is reserved");
  meta[ckpt_detail::kFormatKey] = ckpt_detail::kTrainingFormat;
  meta[ckpt_detail::kRngKey] = default_generator().state();
  io::save_safetensors(path, all, meta);
}

// Restores model, optimizer (if not null) and the global RNG state from a save_checkpoint()
// file and returns its metadata (including "epoch" if it was given in `extra`). Always strict;
// validated completely before anything changes.
ATTN_API std::map<std::string, std::string> load_checkpoint(const std::string& path, nn::Module& m,
                                                          optim::Optimizer* opt) {
  const io::SafetensorsFile f = io::load_safetensors(path);
  if (!ckpt_detail::is_training_checkpoint(f))
    throw io::FormatError(path + ": not a training checkpoint (metadata '" + ckpt_detail::kFormatKey +
                          "' is not '" + ckpt_detail::kTrainingFormat + "'); use load() for a plain state_dict");
  const auto rng = f.metadata.find(ckpt_detail::kRngKey);
  if (rng == f.metadata.end() || !ckpt_detail::valid_rng_state(rng->second))
    throw io::FormatError(path + ": missing or unreadable '" + ckpt_detail::kRngKey + "' metadata");
  const auto plan = ckpt_detail::plan_load(f, m, opt, /*strict=*/true, nullptr);
  // Everything is valid: apply. Names, shapes and values were checked, so nothing below can throw.
  ckpt_detail::apply(plan);
  if (opt) opt->load_state(ckpt_detail::optimizer_entries(f));
  default_generator().set_state(rng->second);
  return f.metadata;
}

}  // namespace attn
#endif  // ATTN_HEADER_DEFINITIONS
