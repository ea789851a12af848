#pragma once
// Registers the CUDA backend's memory functions (runtime.cu, elementwise.cu) with the core, which
// reaches device memory only through the DeviceMemory table of core/device.hpp. <attn/attn.hpp>
// includes this header when ATTN_WITH_CUDA is defined (linking attn::cuda defines it).
//
// Why an inline variable: its initialiser runs during static initialisation of any program that
// includes this header, before main() and before any variable defined after it in the same
// translation unit, so the table is in place before the first CUDA tensor can be made, with no
// call for the user to remember; and it references the kernels' symbols from the including
// translation unit, so the linker keeps runtime.cu's object from the static library attn::cuda.
// (A registration inside runtime.cu would be dropped by the linker when nothing else there is
// used.) Being inline, one table and one registration serve every translation unit.
#include "../../core/device.hpp"
#include "api.hpp"

namespace attn::kernels::cuda {

inline const DeviceMemory kDeviceMemory = {
    device_count, device_count_error, malloc_bytes, free_bytes,   empty_cache,     memcpy_h2d,
    memcpy_d2h,   memcpy_d2d,         memset_zero,  strided_copy, add_inplace,     add_inplace_f64,
};

inline const bool kDeviceMemoryRegistered = register_cuda_memory(&kDeviceMemory);

}  // namespace attn::kernels::cuda
