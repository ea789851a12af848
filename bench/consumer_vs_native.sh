#!/usr/bin/env bash
# The task workloads (bench/bench_tasks.cpp) built two ways and timed side by side, alternating
# runs so both see the same machine load:
#   native:   the project's own build (ATTN_NATIVE=ON: -march=native), target bench_tasks
#   consumer: an outside project (bench/consumer): find_package(attn) from an installed prefix,
#             CMake's plain Release flags, no -march
# Usage: bench/consumer_vs_native.sh [native build dir, default build] [rounds, default 3]
#   extra environment is passed through (OMP_NUM_THREADS, ATTN_ISA, ...).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
native="${1:-build}"
rounds="${2:-3}"
work="$native/consumer-bench"
# Header-only install (the consumer links attn::attn): no library to build before installing.
cmake -S "$root" -B "$work/attn" -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_EXAMPLES=OFF \
  -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_COMPILED=OFF >/dev/null
cmake --install "$work/attn" --prefix "$work/prefix" >/dev/null
cmake -S "$root/bench/consumer" -B "$work/app" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$(cd "$work" && pwd)/prefix" >/dev/null
cmake --build "$work/app" -j "$(nproc)" >/dev/null
cmake --build "$native" -j "$(nproc)" --target bench_tasks >/dev/null
echo "flags of the consumer build: $(grep -h CMAKE_CXX_FLAGS_RELEASE: "$work/app/CMakeCache.txt" | cut -d= -f2)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  for kind in native consumer; do
    bin="$native/bench/bench_tasks"
    [[ $kind == consumer ]] && bin="$work/app/bench_tasks_consumer"
    "$bin" --benchmark_filter='^BM_Task(A|B)_[A-Za-z0-9]*(/|$)' 2>&1 | \
      awk -v k="$kind" -v r="$r" '/^attn_kernels:|^cpu_model:/ && r == 1 {print k ": " $0} /^BM_/ {print "round " r " " k ": " $1, $2, $3}'
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
