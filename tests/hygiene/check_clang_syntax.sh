#!/usr/bin/env bash
# attn compiles with Clang as well as GCC: the umbrella header and the compiled library's source
# (src/attn_compiled.cpp instantiates every op for both dtypes) pass clang++ -fsyntax-only.
# Without -fopenmp (Clang's OpenMP headers are a separate package); the serial build is the same
# code apart from parallel_for. Usage: check_clang_syntax.sh <clang++> <source tree>
set -euo pipefail
cxx=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <attn/attn.hpp>\nint main() { return 0; }\n' > "$tmp/umbrella.cpp"
"$cxx" -std=c++17 -I"$src/include" -fsyntax-only "$tmp/umbrella.cpp"
"$cxx" -std=c++17 -I"$src/include" -DATTN_SEPARATE_COMPILATION -DATTN_BUILDING_LIBRARY -fsyntax-only \
  "$src/src/attn_compiled.cpp"
echo "$("$cxx" --version | head -1): the umbrella header and src/attn_compiled.cpp compile"
