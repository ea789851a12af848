// Test aid for tests/examples/example_tests.sh: rewrites one metadata entry of a checkpoint, the
// way a damaged or hand-edited file would look.
//   ckpt_edit FILE KEY VALUE      set KEY to VALUE
//   ckpt_edit FILE KEY --delete   remove KEY
#include <attn/io/safetensors.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: ckpt_edit FILE KEY VALUE | ckpt_edit FILE KEY --delete\n");
    return 2;
  }
  try {
    attn::io::SafetensorsFile f = attn::io::load_safetensors(argv[1]);
    if (std::string(argv[3]) == "--delete") f.metadata.erase(argv[2]);
    else f.metadata[argv[2]] = argv[3];
    attn::io::save_safetensors(argv[1], f.tensors, f.metadata);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ckpt_edit: %s\n", e.what());
    return 1;
  }
  return 0;
}
