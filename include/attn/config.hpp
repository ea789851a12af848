#pragma once
// Version and compile-time switches. Every macro attn defines starts with ATTN_.

#define ATTN_VERSION_MAJOR 0
#define ATTN_VERSION_MINOR 1
#define ATTN_VERSION_PATCH 0
#define ATTN_VERSION_STRING "0.1.0"

#if defined(_OPENMP)
#define ATTN_HAS_OPENMP 1
#else
#define ATTN_HAS_OPENMP 0
#endif

// ---- header-only (default) or compiled mode ----
// Header-only: every definition is in the headers, `inline`; nothing to link.
// Compiled mode (CMake target attn::attn_compiled, which sets ATTN_SEPARATE_COMPILATION for its
// users): the headers declare the ops and the heavy parts of the core, the optimizers and io/
// (layers stay inline classes that call them), and one library build
// (src/attn_compiled.cpp, compiled with ATTN_BUILDING_LIBRARY as well) defines them, so a user's
// translation unit parses declarations instead of instantiating every kernel for every dtype and
// instruction set. Same API, same code, same results.
//   ATTN_HEADER_DEFINITIONS  1 where the definitions are compiled (header-only, or the library)
//   ATTN_API                 the linkage of a function declared for both modes: `inline` header-only
#if defined(ATTN_SEPARATE_COMPILATION) && !defined(ATTN_BUILDING_LIBRARY)
#define ATTN_HEADER_DEFINITIONS 0
#else
#define ATTN_HEADER_DEFINITIONS 1
#endif
#if defined(ATTN_SEPARATE_COMPILATION)
#define ATTN_API
#else
#define ATTN_API inline
#endif
