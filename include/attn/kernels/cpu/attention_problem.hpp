#pragma once
// The description of one scaled dot-product attention problem and of its operands' layouts,
// shared by the kernels (attention_weights.hpp, attention_tiled.hpp), the fused node's arguments
// (ops/attention_args.hpp) and nn::MultiheadAttention. Plain structs: no Eigen, no kernel code.
#include <algorithm>
#include <cstdint>
#include <vector>
#include "../../core/dtype.hpp"

namespace attn::kernels::cpu {

// Where the (b, h) matrix of an operand lives: element (b, h, r, c) = data + off + b*sb + h*sh + r*ld + c.
struct AttnLayout {
  int64_t off = 0, sb = 0, sh = 0, ld = 0;
};

struct AttnProblem {
  int64_t B = 1, H = 1, L = 0, S = 0, E = 0, Ev = 0;
  double scale = 1.0;
  bool causal = false;       // key j visible to query i iff j <= i + q_offset
  // Query row i sits at key position i + q_offset (the causal mask and ALiBi use it). 0: top-left
  // aligned (like tril, is_causal); S - L: aligned to the end of the keys, so the L newest
  // queries of a KV cache see the whole cache up to themselves. Never negative.
  int64_t q_offset = 0;
  // ALiBi (Press et al., 2022): when non-null, H slopes m_h, and the score of query i, key j in
  // head h gets -m_h * |i + q_offset - j| (the paper's -m_h (i - j) on the keys a causal mask
  // leaves, and symmetric without one), computed in the kernels, so no [H, L, S] bias is stored
  // and the tiled path stays available.
  const double* alibi = nullptr;
  // Query heads per key/value head (grouped-query attention): head h reads K/V head h / kv_group,
  // straight from the K/V tensors with H / kv_group heads (no copy). 1: one K/V head per head.
  int64_t kv_group = 1;
  int64_t kv_head(int64_t h) const { return h / kv_group; }
  // Last key (exclusive) query row i sees before masks: [0, causal_end(i)).
  int64_t causal_end(int64_t i) const { return causal ? std::clamp<int64_t>(i + q_offset + 1, 0, S) : S; }
  double dropout_p = 0.0;
  uint64_t dropout_seed = 0;
};

// A mask read as a tensor of the scores' shape [B*H items, L, S]: item offsets + row/col strides.
struct AttnMaskView {
  const void* data = nullptr;
  DType dtype = kBool;
  std::vector<int64_t> item_off;  // per (b*H + h)
  int64_t sl = 0, ss = 0;
};

}  // namespace attn::kernels::cpu
