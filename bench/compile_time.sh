#!/usr/bin/env bash
# Wall time to compile fixed translation units against attn, the way a user's build does it
# (g++ -std=c++17 -fopenmp, attn on the include path, no -march; attn's headers need no Eigen):
#   include-only   a file with nothing but #include <attn/attn.hpp>
#   quickstart     examples/quickstart.cpp (the README's 25-line training program)
#   sine_anomaly   examples/sine_anomaly.cpp (the largest example)
# each at -O0 and -O2, in both modes: header-only (attn::attn) and compiled
# (attn::attn_compiled: -DATTN_SEPARATE_COMPILATION), plus the compiled mode's one-time cost, its
# library (src/attn_compiled.cpp). Best of --repeat runs (default 1). Compile only (-c), no link.
# Usage: bash bench/compile_time.sh [--repeat N] [--cxx g++] [--out FILE.md]
# Prints a markdown table (also written to --out when given) with the compiler and the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=1
cxx=${CXX:-g++}
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeat) repeat=$2; shift 2 ;;
    --cxx) cxx=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "compile_time.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "compile_time.sh: --repeat must be a positive integer" >&2; exit 2; }
command -v "$cxx" >/dev/null || { echo "compile_time.sh: compiler $cxx not found" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <attn/attn.hpp>\nint main() { return 0; }\n' > "$tmp/include_only.cpp"
# The examples include their shared headers relative to examples/ and CLI11 from the system (make deps).
flags=(-std=c++17 -fopenmp -Iinclude -Iexamples -DNDEBUG)

# seconds (one decimal) of the best of $repeat compiles of $1 at optimisation level $2, with
# the extra flags $3... (the compiled mode's macros)
time_tu() {
  local src=$1 opt=$2 best=0
  shift 2
  for ((r = 0; r < repeat; r++)); do
    local t0 ms
    t0=$(date +%s%N)
    "$cxx" "${flags[@]}" "$@" "$opt" -c "$src" -o "$tmp/out.o"
    ms=$((($(date +%s%N) - t0) / 1000000))
    if ((best == 0 || ms < best)); then best=$ms; fi
  done
  printf '%d.%d' $((best / 1000)) $((best % 1000 / 100))
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
ver=$("$cxx" --version | head -1)
{
  echo "compile time (wall seconds, best of $repeat; $ver; $cpu; $(nproc) cores; load $(cut -d' ' -f1 /proc/loadavg))"
  echo
  echo "| translation unit | header-only -O0 | header-only -O2 | compiled -O0 | compiled -O2 |"
  echo "|---|---:|---:|---:|---:|"
  compiled=(-DATTN_SEPARATE_COMPILATION)
  for tu in "include-only:$tmp/include_only.cpp" "quickstart:examples/quickstart.cpp" "sine_anomaly:examples/sine_anomaly.cpp"; do
    name=${tu%%:*} src=${tu#*:}
    echo "| $name | $(time_tu "$src" -O0) | $(time_tu "$src" -O2) | $(time_tu "$src" -O0 "${compiled[@]}") | $(time_tu "$src" -O2 "${compiled[@]}") |"
  done
  lib=(-DATTN_SEPARATE_COMPILATION -DATTN_BUILDING_LIBRARY)
  echo "| compiled mode's library, once (src/attn_compiled.cpp) | | | $(time_tu src/attn_compiled.cpp -O0 "${lib[@]}") | $(time_tu src/attn_compiled.cpp -O2 "${lib[@]}") |"
} | tee "${out:-/dev/null}"
