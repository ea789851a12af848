#pragma once
// Internal: the per-path SIMD vocabulary (simd.inc, compiled once per instruction-set path through
// isa_expand.inc) and ATTN_ISA_DISPATCH, which calls a kernel of the path chosen at run time
// (core/cpu_info.hpp). Kernels that use it: gemm.hpp, vmath.hpp, rnn.hpp.
#include <cmath>
#include <cstdint>
#include <cstring>
#include "../../core/cpu_info.hpp"
#if ATTN_X86_DISPATCH
#include <immintrin.h>
#endif

#define ATTN_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define ATTN_TARGET_PUSH(t) ATTN_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define ATTN_TARGET_POP ATTN_PRAGMA(clang attribute pop)
#else
#define ATTN_TARGET_PUSH(t) ATTN_PRAGMA(GCC push_options) ATTN_PRAGMA(GCC target(t))
#define ATTN_TARGET_POP ATTN_PRAGMA(GCC pop_options)
#endif

// Vec-returning helpers of simd.inc (see there why they must be inlined).
#if defined(__GNUC__) || defined(__clang__)
#define ATTN_SIMD_INLINE inline __attribute__((always_inline))
#else
#define ATTN_SIMD_INLINE inline
#endif

// return <path namespace>::call for the path in use, e.g. ATTN_ISA_DISPATCH(tanh_n<T>(x, y, n)).
#if ATTN_X86_DISPATCH
#define ATTN_ISA_DISPATCH(call)                                                   \
  switch (::attn::kernel_isa()) {                                                 \
    case ::attn::Isa::avx512: return ::attn::kernels::cpu::isa_avx512::call;      \
    case ::attn::Isa::avx2: return ::attn::kernels::cpu::isa_avx2::call;          \
    default: return ::attn::kernels::cpu::isa_baseline::call;                     \
  }
#else
#define ATTN_ISA_DISPATCH(call) return ::attn::kernels::cpu::isa_baseline::call;
#endif

#define ATTN_ISA_INC "simd.inc"
#include "isa_expand.inc"
#undef ATTN_ISA_INC
