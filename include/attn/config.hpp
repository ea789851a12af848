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

// Eigen must never start threads of its own inside our parallel regions: attn owns the one
// OpenMP team (see core/parallel.hpp), Eigen's products run on one thread per call.
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
