#pragma once
// Host entry points of attn's CUDA recurrent kernels (kernels/cuda/rnn.cu), built into
// attn::cuda only with ATTN_WITH_CUDA. Plain C++ like kernels/cuda/api.hpp: no CUDA header, so
// ops/cuda/rnn.hpp includes it in every build (without ATTN_WITH_CUDA these are declared and
// never called). Every pointer is a device pointer; sizes are element counts; tensors are
// float32, contiguous, row-major.
#include <cstdint>

namespace attn::kernels::cuda {

// ---- LSTM step pointwise (gate order i, f, g, o as PyTorch) ----
// gates [B, 4H] pre-activations (x W_ih^T + h W_hh^T + biases), c_prev [B, H] ->
// h [B, H], c [B, H], acts [B, 4H] (sigmoid i, f, o and tanh g), tanh_c [B, H] for the backward.
void lstm_pointwise_forward(const float* gates, const float* c_prev, float* h, float* c, float* acts, float* tanh_c,
                            int64_t B, int64_t H);
// dh, dc may be null (zero). Writes dgates [B, 4H] and dc_prev [B, H].
void lstm_pointwise_backward(const float* dh, const float* dc, const float* acts, const float* tanh_c,
                             const float* c_prev, float* dgates, float* dc_prev, int64_t B, int64_t H);

// ---- fused LSTM / GRU layers (kernels/cuda/rnn.cu): all directions of one layer per call ----
// Row order of every [T*B, .] buffer: t*B + b, or b*T + t with batch_first (the input's order).
// G = 4 (LSTM gates i, f, g, o) or 3 (GRU gates r, z, n).
struct RnnDirBuffers {  // one direction's weights, saved tensors and gradients
  const float *w_ih = nullptr, *w_hh = nullptr;  // [G*H, I], [G*H, H]
  const float *b_ih = nullptr, *b_hh = nullptr;  // [G*H] or null
  float* G = nullptr;      // [T*B, G*H]: gets the activated gates (the forward's scratch too)
  float* Hprev = nullptr;  // [T*B, H]: the state before each step (training), or null
  float* Cprev = nullptr;  // LSTM [T*B, H]: the cell before each step, or null
  float* Aux = nullptr;    // [T*B, H]: LSTM tanh(c_t), GRU h W_hn^T + b_hn, or null
  float* dA = nullptr;     // backward scratch [T*B, G*H]: gate gradients (GRU: input side)
  float* dHG = nullptr;    // GRU backward scratch [T*B, 3H]: hidden-side gate gradients
  float *dw_ih = nullptr, *dw_hh = nullptr, *db_ih = nullptr, *db_hh = nullptr;  // gradients, or null
};
struct RnnLayer {
  bool lstm = true;
  int64_t T = 0, B = 0, I = 0, H = 0, D = 1;
  bool batch_first = false;
  const int64_t* lengths = nullptr;  // device array of B valid lengths in [1, T], or null (all T)
  RnnDirBuffers dir[2];
};
// X [T*B, I]; h, c [D, B, H]: the initial state in, the final state out (c null for a GRU);
// out [T*B, D*H] (direction d in columns d*H ..); gh: GRU scratch [B, 3H].
void rnn_layer_forward(const RnnLayer& L, const float* X, float* h, float* c, float* gh, float* out);
// dout [T*B, D*H] or null; dh, dc [D, B, H]: the final state's gradient in, the initial state's
// out (dc null for a GRU); dx [T*B, I] or null.
void rnn_layer_backward(const RnnLayer& L, const float* X, const float* dout, float* dh, float* dc, float* dx);

}  // namespace attn::kernels::cuda
