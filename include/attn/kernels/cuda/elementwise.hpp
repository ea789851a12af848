#pragma once
// Host entry points of attn's CUDA elementwise kernels (kernels/cuda/elementwise.cu), built into
// attn::cuda only with ATTN_WITH_CUDA. Plain C++ like kernels/cuda/api.hpp: no CUDA header, so
// ops/cuda/elementwise.hpp includes it in every build (without ATTN_WITH_CUDA these are declared and
// never called). Every pointer is a device pointer; sizes are element counts; tensors are
// float32, contiguous, row-major.
#include <cstdint>
#include "api.hpp"  // kMaxDims

namespace attn::kernels::cuda {

// ---- elementwise ----
enum class Unary : int { Tanh, Sigmoid, Relu, Exp, Log, Neg, Gelu, AddScalar, MulScalar };
// y[i] = f(x[i]) (s: the scalar of AddScalar/MulScalar)
void unary_forward(Unary op, const float* x, float* y, int64_t n, float s);
// dx[i] = g[i] * f'(x[i]) (y = f(x) is passed for ops whose derivative reads it)
void unary_backward(Unary op, const float* g, const float* x, const float* y, float* dx, int64_t n, float s);

// BceWithLogits: max(x, 0) - x y + log(1 + e^-|x|);  SigmoidSub: sigmoid(x) - y (its x-gradient)
enum class Binary : int { Add, Sub, Mul, Div, BceWithLogits, SigmoidSub };
// out[idx] = a[idx . sa] op b[idx . sb] over an output of `ndim` dims (<= kMaxDims) with sizes
// `shape`; sa/sb are element strides of a and b read at the output's shape (0 on broadcast dims).
void binary_forward(Binary op, const float* a, const float* b, float* out, int ndim, const int64_t* shape,
                    const int64_t* sa, const int64_t* sb);

}  // namespace attn::kernels::cuda
