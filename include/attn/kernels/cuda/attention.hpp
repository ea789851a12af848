#pragma once
// Host entry points of attn's CUDA attention kernels (kernels/cuda/attention.cu), built into
// attn::cuda only with ATTN_WITH_CUDA. Plain C++ like kernels/cuda/api.hpp: no CUDA header, so
// ops/cuda/attention.hpp includes it in every build (without ATTN_WITH_CUDA these are declared and
// never called). Every pointer is a device pointer; sizes are element counts; tensors are
// float32, contiguous, row-major.
#include <cstdint>

namespace attn::kernels::cuda {

// ---- fused scaled dot-product attention (FlashAttention style) ----
// Operand (item it = b*H + h, row r, col c) lives at ptr[off + b*sb + h*sh + r*ld + c].
struct Layout {
  int64_t off = 0, sb = 0, sh = 0, ld = 0;
};
// Masks as seen per item: element (it, i, j) of a mask at mask[item_off[it] + i*sl + j*ss]
// (item_off is a device array of B*H offsets). Bool masks: uint8, nonzero = may attend.
// Float masks: added to the scores. key padding: uint8 [B, S], nonzero = padded.
struct AttnParams {
  int64_t B = 1, H = 1, L = 0, S = 0, E = 0, Ev = 0;
  float scale = 1.f;
  bool causal = false;
  double dropout_p = 0.0;
  uint64_t dropout_seed = 0;
  const void* mask = nullptr;
  bool mask_is_bool = true;
  const int64_t* mask_item_off = nullptr;
  int64_t mask_sl = 0, mask_ss = 0;
  const uint8_t* kpm = nullptr;  // [B, S]
};
// O at lo; lse [B*H, L] (log-sum-exp of each row's visible scores; -inf when none is visible).
void attention_forward(const AttnParams& p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                       Layout lv, float* O, Layout lo, float* lse);
// Weights [B*H, L, S] from the saved lse (after dropout when dropout_p > 0 and `dropped`).
void attention_weights(const AttnParams& p, const float* Q, Layout lq, const float* K, Layout lk, const float* lse,
                       float* W, bool dropped);
// Backward: dO at lo (the layout of O), optional dW [B*H, L, S] (gradient of the returned
// post-dropout weights). Writes dQ/dK/dV (each may be null) at lq/lk/lv; the regions of the
// buffers they point to must not overlap. scratch: B*H*L floats.
void attention_backward(const AttnParams& p, const float* Q, Layout lq, const float* K, Layout lk, const float* V,
                        Layout lv, const float* O, const float* dO, Layout lo, const float* lse, const float* dW,
                        float* dQ, float* dK, float* dV, float* scratch);

// ---- windowed / block-local band attention ----
// Query i of flat batch n attends keys j in [lo, hi) given by the band (see ops/windowed_attention.hpp).
struct BandParams {
  bool block_mode = false, causal = false;
  int64_t left = 0, right = 0, block = 1, W = 1, L = 0, S = 0, N = 0, E = 0, Ev = 0;
  float scale = 1.f;
  const uint8_t* kpm = nullptr;  // [N / kpm_div, S], nonzero = padded
  int64_t kpm_div = 1;
  const float* bias = nullptr;   // [bias_rows, W], row n % bias_rows
  int64_t bias_rows = 0;
};
// Q [N, L, E], K [N, S, E], V [N, S, Ev] -> O [N, L, Ev], P [N, L, W] band weights.
void band_forward(const BandParams& p, const float* Q, const float* K, const float* V, float* O, float* P);
// G (may be null) [N, L, Ev], GW (may be null) [N, L, W]; DS scratch [N, L, W]; gB [bias_rows, W] or null.
void band_backward(const BandParams& p, const float* Q, const float* K, const float* V, const float* P,
                   const float* G, const float* GW, float* gQ, float* gK, float* gV, float* gB, float* DS);

}  // namespace attn::kernels::cuda
