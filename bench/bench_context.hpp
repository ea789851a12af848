#pragma once
// Included by every Google Benchmark suite: records the CPU model and the kernel path
// (attn::cpu_info(), ATTN_ISA) in the benchmark context, printed above the results and stored in
// the JSON, so every figure names the CPU and the path it was measured with.
#include <benchmark/benchmark.h>
#include <attn/core/cpu_info.hpp>
#include <cstdio>
#include <cstdlib>

namespace attn_bench {
inline const bool kCpuContext = [] {
  try {
    const attn::CpuInfo& info = attn::cpu_info();
    benchmark::AddCustomContext("cpu_model", info.model);
    benchmark::AddCustomContext("attn_kernels", attn::isa_name(info.path));
    benchmark::AddCustomContext("attn_kernels_best", attn::isa_name(info.best));
  } catch (const std::exception& e) {  // e.g. ATTN_ISA names a path this CPU cannot run
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(2);
  }
  return true;
}();
}  // namespace attn_bench
