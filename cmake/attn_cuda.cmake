# Optional CUDA kernels: the static library attn_cuda (alias attn::cuda), built only with
# -DATTN_WITH_CUDA=ON. Consumers link attn::cuda, which brings ATTN_WITH_CUDA, cudart and cuBLAS.
# The header-only library (attn::attn) itself never includes a CUDA header.
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR
    "ATTN_WITH_CUDA=ON but CMake found no CUDA compiler (nvcc). Point CMake at it, e.g.\n"
    "  cmake -S . -B build-cuda -DATTN_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc\n"
    "or put nvcc on PATH / set CUDACXX, or configure with -DATTN_WITH_CUDA=OFF.")
endif()
# Hopper (sm_90: H100, H200) plus Turing (sm_75), the oldest architecture nvcc 13 still targets.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90 75)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

set(ATTN_CUDA_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/runtime.cu
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/elementwise.cu
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/reduce.cu
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/nn_functional.cu
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/matmul.cu
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/attention.cu
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/rnn.cu
  ${CMAKE_CURRENT_LIST_DIR}/../include/attn/kernels/cuda/optim.cu)

add_library(attn_cuda STATIC ${ATTN_CUDA_SOURCES})
add_library(attn::cuda ALIAS attn_cuda)
set_target_properties(attn_cuda PROPERTIES
  EXPORT_NAME cuda
  CUDA_ARCHITECTURES "90;75"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON
  CUDA_SEPARABLE_COMPILATION OFF)
# No --use_fast_math: the kernels must agree with the CPU path to 1e-5 (expf/tanhf/erff as IEEE).
target_compile_options(attn_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr>)
target_compile_definitions(attn_cuda PUBLIC ATTN_WITH_CUDA)
target_link_libraries(attn_cuda PUBLIC attn::attn CUDA::cudart CUDA::cublas)

include(GNUInstallDirs)
install(TARGETS attn_cuda EXPORT attnTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
