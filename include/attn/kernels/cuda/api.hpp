#pragma once
// Host entry points of attn's CUDA kernels (built into the static library attn::cuda, only with
// ATTN_WITH_CUDA). Plain C++: no CUDA header is included here, so the header-only side of attn
// compiles with any C++17 compiler. Every pointer is a device pointer unless named host_*;
// sizes are element counts; every tensor is float32, contiguous, row-major. Calls run on the
// default stream and are synchronous with respect to the host where they return data
// (memcpy to host); every CUDA/cuBLAS error is thrown as std::runtime_error naming the call.
#include <cstddef>
#include <cstdint>

namespace attn::kernels::cuda {

// ---- runtime ----
int device_count();                        // 0 when no device or no driver (never throws)
const char* device_count_error();          // why device_count() is 0 ("" when it is not)
void* malloc_bytes(size_t bytes);          // a cached block or cudaMalloc (runtime.cu); nullptr for 0 bytes
void free_bytes(void* p) noexcept;         // back to the cache (used in deleters)
void empty_cache();                        // cudaFree every cached block (as torch.cuda.empty_cache)
size_t cached_bytes();                     // bytes held in the cache, not in use
void memcpy_h2d(void* dst, const void* host_src, size_t bytes);
void memcpy_d2h(void* host_dst, const void* src, size_t bytes);
void memcpy_d2d(void* dst, const void* src, size_t bytes);
void memset_zero(void* dst, size_t bytes);
void synchronize();

// ---- elementwise ----
enum class Unary : int { Tanh, Sigmoid, Relu, Exp, Log, Neg, Gelu, AddScalar, MulScalar };
// y[i] = f(x[i]) (s: the scalar of AddScalar/MulScalar)
void unary_forward(Unary op, const float* x, float* y, int64_t n, float s);
// dx[i] = g[i] * f'(x[i]) (y = f(x) is passed for ops whose derivative reads it)
void unary_backward(Unary op, const float* g, const float* x, const float* y, float* dx, int64_t n, float s);

// BceWithLogits: max(x, 0) - x y + log(1 + e^-|x|);  SigmoidSub: sigmoid(x) - y (its x-gradient)
enum class Binary : int { Add, Sub, Mul, Div, BceWithLogits, SigmoidSub };
constexpr int kMaxDims = 8;
// out[idx] = a[idx . sa] op b[idx . sb] over an output of `ndim` dims (<= kMaxDims) with sizes
// `shape`; sa/sb are element strides of a and b read at the output's shape (0 on broadcast dims).
void binary_forward(Binary op, const float* a, const float* b, float* out, int ndim, const int64_t* shape,
                    const int64_t* sa, const int64_t* sb);
// dst[sum_d i_d dst_st[d]] (+)= src[sum_d i_d src_st[d]] over `shape` (ndim <= kMaxDims; host
// arrays; strides in elements, may be 0 or negative; src/dst already offset). Elements of
// 1, 4 or 8 bytes; accumulate only for float32 / float64 (is_double), and dst must not alias.
void strided_copy(const void* src, void* dst, int elem_bytes, bool is_double, int ndim, const int64_t* shape,
                  const int64_t* src_st, const int64_t* dst_st, bool accumulate);
void add_inplace(float* acc, const float* g, int64_t n);     // acc += g
void add_inplace_f64(double* acc, const double* g, int64_t n);

// ---- reductions over one dim of a tensor seen as [outer, n, inner] ----
void sum_dim(const float* x, float* out, int64_t outer, int64_t n, int64_t inner);          // out [outer, inner]
void expand_dim(const float* g, float* dx, int64_t outer, int64_t n, int64_t inner);        // dx[o,j,i] = g[o,i]
// Stable softmax (log_softmax when log); an all -inf lane gives 0 (softmax) or -inf (log_softmax).
void softmax_forward(const float* x, float* y, int64_t outer, int64_t n, int64_t inner, bool log);
// softmax: dx = y (g - sum g y);  log_softmax: dx = g - exp(y) sum g
void softmax_backward(const float* g, const float* y, float* dx, int64_t outer, int64_t n, int64_t inner, bool log);

// ---- layer norm over rows of length D (weight/bias may be null) ----
void layer_norm_forward(const float* x, const float* w, const float* b, float* y, float* xhat, float* rstd,
                        int64_t rows, int64_t D, double eps);
// dx = rstd (g w - mean(g w) - xhat mean(g w xhat)); dw = sum_r g xhat; db = sum_r g (dw/db may be null)
void layer_norm_backward(const float* g, const float* xhat, const float* rstd, const float* w, float* dx, float* dw,
                         float* db, int64_t rows, int64_t D);

// ---- matrices ----
// Row-major C[M,N] = alpha op(A) op(B) + beta C (cuBLAS, fp32 math, no TF32), op = transpose if ta/tb.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_strided_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta,
                          float* C, int64_t ldc, int64_t strideC, int64_t batch);
void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols);  // y[r, c] += bias[c]
void sum_rows(const float* g, float* out, int64_t rows, int64_t cols);       // out[c] = sum_r g[r, c]

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

// ---- optimizer ----
// One Adam / AdamW step, the formula of optim::Adam::step (PyTorch's single-tensor path).
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, float b1, float b2, float eps,
               float wd, float step_size, float decay, float sqrt_bc2, bool decoupled);

}  // namespace attn::kernels::cuda
