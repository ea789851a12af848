#pragma once
// Which instruction set the CPU kernels run with, chosen once per process at run time.
//
// The hot kernels (GEMM micro-kernels and packing, dot products, exp / tanh / sigmoid, the
// recurrent gate math) are compiled three times inside the headers, for baseline x86-64 (SSE2),
// AVX2 + FMA and AVX-512 (F, BW, DQ, VL), through GCC / Clang target attributes, so a program built
// with plain flags (no -march) still runs the fast path of the CPU it runs on. On other
// architectures there is one portable path ("baseline", plain C++).
//
// The path is the best one the CPU (and the OS, which must save the wide registers) supports,
// unless the environment variable ATTN_ISA=baseline|avx2|avx512 forces one; forcing a path the CPU
// lacks throws std::invalid_argument naming what the CPU has. attn::cpu_info() reports the choice.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define ATTN_X86_DISPATCH 1
#else
#define ATTN_X86_DISPATCH 0
#endif

namespace attn {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

struct CpuInfo {
  std::string model;                 // CPUID brand string, e.g. "AMD EPYC 7B13"
  bool avx2 = false, fma = false;    // usable (CPU and OS)
  bool avx512 = false;               // avx512f, bw, dq and vl all usable
  Isa best = Isa::baseline;          // the fastest path this CPU can run
  Isa path = Isa::baseline;          // the path the kernels use (best unless ATTN_ISA forces one)
  bool forced = false;               // path came from ATTN_ISA
  // "AMD EPYC 7B13, kernels avx2 (best avx2)"
  std::string summary() const {
    return model + ", kernels " + isa_name(path) + (forced ? " (forced by ATTN_ISA" : " (best ") +
           (forced ? std::string(", best ") + isa_name(best) : std::string(isa_name(best))) + ")";
  }
};

namespace detail {

// info with its path set from the ATTN_ISA value `want` (null or empty: the best path).
inline CpuInfo choose_path(CpuInfo info, const char* want_env) {
  info.path = info.best;
  info.forced = false;
  if (want_env == nullptr || *want_env == '\0') return info;
  const std::string want = want_env;
  Isa isa;
  if (want == "baseline") isa = Isa::baseline;
  else if (want == "avx2") isa = Isa::avx2;
  else if (want == "avx512") isa = Isa::avx512;
  else throw std::invalid_argument("ATTN_ISA=" + want + ": unknown kernel path; use baseline, avx2 or avx512");
  if (int(isa) > int(info.best)) {
    const std::string has = ATTN_X86_DISPATCH
                                ? std::string("avx2 ") + (info.avx2 ? "yes" : "no") + ", fma " + (info.fma ? "yes" : "no") +
                                      ", avx512f/bw/dq/vl " + (info.avx512 ? "yes" : "no")
                                : std::string("not x86-64: only the portable path");
    throw std::invalid_argument("ATTN_ISA=" + want + ": this CPU (" + info.model + ") cannot run that path (" + has +
                                "); the best it can run is " + isa_name(info.best));
  }
  info.path = isa;
  info.forced = true;
  return info;
}

inline CpuInfo detect_cpu() {
  CpuInfo info;
#if ATTN_X86_DISPATCH
  unsigned r[12] = {};
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) && eax >= 0x80000004u) {
    for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char brand[49] = {};
    std::memcpy(brand, r, 48);
    info.model = brand;
    const auto b = info.model.find_first_not_of(' '), e = info.model.find_last_not_of(' ');
    info.model = b == std::string::npos ? std::string() : info.model.substr(b, e - b + 1);
  }
  if (info.model.empty()) info.model = "unknown x86-64 CPU";
  // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 registers (XCR0).
  __builtin_cpu_init();
  info.avx2 = __builtin_cpu_supports("avx2");
  info.fma = __builtin_cpu_supports("fma");
  info.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  info.best = info.avx2 && info.fma ? (info.avx512 ? Isa::avx512 : Isa::avx2) : Isa::baseline;
#else
  info.model = "non-x86 CPU (portable kernels)";
#endif
  return choose_path(info, std::getenv("ATTN_ISA"));
}

}  // namespace detail

// The CPU model, its vector features and the kernel path in use (detected once; ATTN_ISA is read
// then). Throws std::invalid_argument if ATTN_ISA names an unknown path or one the CPU lacks.
inline const CpuInfo& cpu_info() {
  static const CpuInfo info = detail::detect_cpu();
  return info;
}

// The kernel path in use (cpu_info().path).
inline Isa kernel_isa() {
  static const Isa isa = cpu_info().path;
  return isa;
}

}  // namespace attn
