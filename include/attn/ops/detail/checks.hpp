#pragma once
// Argument checks shared by the CPU ops and their CUDA paths (ops/cuda/common.hpp).
#include "../../core/tensor.hpp"

namespace attn::detail {

// Both operands of a binary op have one dtype and live on one device.
inline void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  ATTN_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " ",
             to_string(a.shape()), " vs ", dtype_name(b.dtype()), " ", to_string(b.shape()), ")");
  ATTN_CHECK(a.device() == b.device(), op, ": tensors on different devices (", device_name(a.device()),
             " vs ", device_name(b.device()), ")");
}

}  // namespace attn::detail
