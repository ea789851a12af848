// libFuzzer target for the checkpoint reader: attn::io::parse_safetensors on arbitrary bytes,
// then (when the bytes parse) the checkpoint validation of attn/io/checkpoint.hpp against a
// small model and an Adam optimizer. The only acceptable failures are attn::io::FormatError
// (bad file) and attn::ShapeError (file does not fit the model); any other exception, crash,
// leak, sanitizer report or allocation over -malloc_limit_mb is a bug.
//
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -isystem /usr/include/eigen3
//       tests/fuzz/fuzz_safetensors.cpp -o fuzz_safetensors
//   cp -r tests/fuzz/corpus /tmp/fuzz-corpus
//   ./fuzz_safetensors /tmp/fuzz-corpus -max_total_time=600 -rss_limit_mb=2048 -malloc_limit_mb=512
//
// tests/fuzz/replay_main.cpp replays the committed corpus through the same entry point with g++.
#include <attn/attn.hpp>
#include <attn/io/checkpoint.hpp>
#include <attn/io/safetensors.hpp>
#include <cstddef>
#include <cstdint>

namespace {

struct FuzzNet : attn::nn::Module {
  attn::nn::Linear fc{3, 2};
  FuzzNet() { register_module("fc", fc); }
};

void exercise(const uint8_t* data, size_t size) {
  const attn::io::SafetensorsFile f =
      attn::io::parse_safetensors(reinterpret_cast<const char*>(data), size, "<fuzz>");
  // Touch every byte of every tensor so ASan sees any out-of-bounds view.
  unsigned sum = 0;
  for (const auto& [name, t] : f.tensors) {
    const auto* p = static_cast<const unsigned char*>(t.numel() ? t.raw_data() : nullptr);
    for (size_t i = 0, n = size_t(t.numel()) * attn::dtype_size(t.dtype()); i < n; ++i) sum += p[i];
    sum += unsigned(name.size());
  }
  (void)sum;
  static FuzzNet net;
  static attn::optim::Adam opt(net.parameters());
  (void)attn::ckpt_detail::plan_load(f, net, nullptr, /*strict=*/false, nullptr);
  if (attn::ckpt_detail::is_training_checkpoint(f)) {
    auto it = f.metadata.find(attn::ckpt_detail::kRngKey);
    if (it != f.metadata.end()) (void)attn::ckpt_detail::valid_rng_state(it->second);
    (void)attn::ckpt_detail::plan_load(f, net, &opt, /*strict=*/true, nullptr);
  }
  attn::load_from(net, f);  // strict; copies only when everything matches
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    exercise(data, size);
  } catch (const attn::io::FormatError&) {
  } catch (const attn::ShapeError&) {
  }
  return 0;
}
