#pragma once
// nn::MultiheadAttention with PyTorch's parameters, names, init and forward signature.
//   q = query Wq^T + bq,  k = key Wk^T + bk,  v = value Wv^T + bv      (one GEMM when packed)
//   head_h = softmax(q_h k_h^T / sqrt(E/H) + mask) v_h                    (fused, see ops/attention.hpp)
//   out = concat_h(head_h) Wo^T + bo
// The heads are never split or merged by copies: the fused attention node reads each head's
// columns straight out of the projection ([B, L, 3E] when query, key and value are one tensor)
// through strides and writes its output columns straight into [B, L, E].
// Grouped-query attention: num_kv_heads = Hkv < num_heads gives keys and values Hkv heads of
// E / H columns, each shared by H / Hkv consecutive query heads (Hkv = 1: multi-query attention);
// the attention kernels read the shared heads in place. The packed in_proj_weight is then
// [E + 2 Hkv E/H, E] (rows: q, k, v), as in fused-QKV GQA models; PyTorch's MHA has no GQA.
// Incremental decoding: forward_cached appends the projected keys/values of new positions to a
// KVCache and attends over the whole cache with the causal mask aligned to its end; memory
// attention caches the memory's projections once (see KVCache).
// ALiBi (alibi(true)): score(i, j) of head h gets -m_h |i - j| (query positions continue the
// cache's in forward_cached), added inside the attention kernels: no [H, L, S] tensor, the tiled
// path stays available. Use it with a causal mask for the paper's form.
// Mask conventions: attn_mask bool = true where the query MAY attend (attn's and
// F.scaled_dot_product_attention's convention, the OPPOSITE of torch.nn.MultiheadAttention's bool
// attn_mask), float = added to the scores (same as PyTorch). key_padding_mask bool [B, S]:
// true = padded key, ignored (same as PyTorch).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include "../../ops/attention.hpp"
#include "../../ops/positional.hpp"
#include "../positional.hpp"
#include "../layers.hpp"

namespace attn::nn {

struct MultiheadAttentionOptions {
  MultiheadAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
#define ATTN_MHA_OPTION(type, name)          \
  MultiheadAttentionOptions& name(type v) {  \
    name##_ = v;                             \
    return *this;                            \
  }                                          \
  type name() const { return name##_; }
  ATTN_MHA_OPTION(int64_t, embed_dim)
  ATTN_MHA_OPTION(int64_t, num_heads)
  ATTN_MHA_OPTION(double, dropout)
  ATTN_MHA_OPTION(bool, bias)
  ATTN_MHA_OPTION(int64_t, kdim)  // 0 = embed_dim
  ATTN_MHA_OPTION(int64_t, vdim)  // 0 = embed_dim
  ATTN_MHA_OPTION(bool, batch_first)
  ATTN_MHA_OPTION(int64_t, num_kv_heads)  // 0 = num_heads; else divides num_heads (grouped-query)
  ATTN_MHA_OPTION(bool, alibi)            // add ALiBi biases (alibi_slopes(num_heads)) in the kernels
  ATTN_MHA_OPTION(int64_t, relative_positions)  // > 0: Shaw et al.'s relative vectors, clipped at this offset
#undef ATTN_MHA_OPTION
 private:
  int64_t embed_dim_, num_heads_, num_kv_heads_ = 0;
  bool alibi_ = false;
  int64_t relative_positions_ = 0;
  double dropout_ = 0.0;
  bool bias_ = true;
  int64_t kdim_ = 0, vdim_ = 0;
  bool batch_first_ = false;  // PyTorch's default: [L, B, E]
};

// Keys and values of the positions seen so far, for incremental decoding with
// MultiheadAttention::forward_cached / forward_memory_cached. Holds the projected keys and values
// batch first, [B, capacity, Hkv * head_dim] each; the capacity doubles when full, so appending
// n positions one at a time copies O(n) elements in all. Inference only (grad mode off).
class KVCache {
 public:
  int64_t size() const { return len_; }  // cached positions
  bool empty() const { return len_ == 0; }
  int64_t capacity() const { return cap_; }
  void clear() {
    k_ = v_ = Tensor();
    len_ = cap_ = 0;
  }
  // The cached keys / values [B, size(), C] (copies; for inspection and tests).
  Tensor keys() const { return len_ == 0 ? Tensor() : narrow(k_, 1, 0, len_).clone(); }
  Tensor values() const { return len_ == 0 ? Tensor() : narrow(v_, 1, 0, len_).clone(); }

 private:
  friend class MultiheadAttention;
  // Appends T positions: their keys are columns [koff, koff + C) of the projection kproj, their
  // values columns [voff, voff + C) of vproj, both [B, T, W] (batch_first) or [T, B, W].
  void append(const Tensor& kproj, int64_t koff, const Tensor& vproj, int64_t voff, int64_t B, int64_t T, int64_t C,
              bool batch_first) {
    const char* op = "KVCache";
    if (len_ > 0)
      ATTN_CHECK(k_.size(0) == B && k_.size(2) == C && k_.dtype() == kproj.dtype(), op, ": appending ",
                 to_string(kproj.shape()), " (", dtype_name(kproj.dtype()), ") to a cache of keys ",
                 to_string(k_.shape()), " (", dtype_name(k_.dtype()), "): batch, width and dtype must match");
    if (len_ + T > cap_) {  // grow: double (at least 16 positions), keep what is cached
      const int64_t cap = std::max<int64_t>({16, 2 * cap_, len_ + T});
      Tensor k = Tensor::empty({B, cap, C}, kproj.dtype()), v = Tensor::empty({B, cap, C}, kproj.dtype());
      if (len_ > 0) copy_rows(k_, 0, cap_ * C, C, k, cap * C, B, len_, C);
      if (len_ > 0) copy_rows(v_, 0, cap_ * C, C, v, cap * C, B, len_, C);
      k_ = k;
      v_ = v;
      cap_ = cap;
    }
    const int64_t W = kproj.size(2);
    const int64_t sb = batch_first ? T * W : W, st = batch_first ? W : B * W;
    copy_rows(kproj, koff, sb, st, k_, cap_ * C, B, T, C, len_);
    copy_rows(vproj, voff, sb, st, v_, cap_ * C, B, T, C, len_);
    len_ += T;
  }
  // dst[b, t0 + t, :C] = src[off + b*sb + t*st .. + C] for b < B, t < T (dst rows of C, batch stride dsb).
  static void copy_rows(const Tensor& src, int64_t off, int64_t sb, int64_t st, const Tensor& dst, int64_t dsb,
                        int64_t B, int64_t T, int64_t C, int64_t t0 = 0) {
    const size_t bytes = size_t(C) * dtype_size(src.dtype());
    const char* s = static_cast<const char*>(src.raw_data());
    char* d = static_cast<char*>(dst.raw_data());
    const size_t es = dtype_size(src.dtype());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        std::memcpy(d + size_t(b * dsb + (t0 + t) * C) * es, s + size_t(off + b * sb + t * st) * es, bytes);
    ::attn::detail::bump_version(dst);
  }
  Tensor k_, v_;
  int64_t len_ = 0, cap_ = 0;
};

class MultiheadAttention : public Module {
 public:
  explicit MultiheadAttention(const MultiheadAttentionOptions& o)
      : opt_(o),
        E_(o.embed_dim()),
        H_(o.num_heads()),
        Hkv_(o.num_kv_heads() > 0 ? o.num_kv_heads() : o.num_heads()),
        kdim_(o.kdim() > 0 ? o.kdim() : o.embed_dim()),
        vdim_(o.vdim() > 0 ? o.vdim() : o.embed_dim()),
        out_proj(std::max<int64_t>(o.embed_dim(), 1), std::max<int64_t>(o.embed_dim(), 1), o.bias()) {
    ATTN_CHECK(E_ > 0 && H_ > 0, "MultiheadAttention: embed_dim and num_heads must be positive, got ", E_, " and ", H_);
    ATTN_CHECK(E_ % H_ == 0, "MultiheadAttention: embed_dim ", E_, " must be divisible by num_heads ", H_);
    ATTN_CHECK(o.num_kv_heads() >= 0 && H_ % Hkv_ == 0, "MultiheadAttention: num_kv_heads ", o.num_kv_heads(),
               " must divide num_heads ", H_);
    ATTN_CHECK(o.dropout() >= 0.0 && o.dropout() < 1.0, "MultiheadAttention: dropout must be in [0, 1), got ",
               o.dropout());
    Ckv_ = Hkv_ * (E_ / H_);
    packed_ = kdim_ == E_ && vdim_ == E_;
    if (packed_) {
      in_proj_weight = Tensor::empty({E_ + 2 * Ckv_, E_});
      init::xavier_uniform_(in_proj_weight);
      register_parameter("in_proj_weight", in_proj_weight);
    } else {
      q_proj_weight = Tensor::empty({E_, E_});
      k_proj_weight = Tensor::empty({Ckv_, kdim_});
      v_proj_weight = Tensor::empty({Ckv_, vdim_});
      init::xavier_uniform_(q_proj_weight);
      init::xavier_uniform_(k_proj_weight);
      init::xavier_uniform_(v_proj_weight);
      register_parameter("q_proj_weight", q_proj_weight);
      register_parameter("k_proj_weight", k_proj_weight);
      register_parameter("v_proj_weight", v_proj_weight);
    }
    if (o.bias()) {
      in_proj_bias = Tensor::zeros({E_ + 2 * Ckv_});
      register_parameter("in_proj_bias", in_proj_bias);
      init::zeros_(out_proj.bias);
    }
    register_module("out_proj", out_proj);
    if (o.alibi()) alibi_slopes_ = alibi_slopes(H_);
    ATTN_CHECK(o.relative_positions() >= 0, "MultiheadAttention: relative_positions must be >= 0, got ",
               o.relative_positions());
    if (o.relative_positions() > 0) {
      relative_key = std::make_shared<RelativePositionalEncoding>(E_ / H_, o.relative_positions());
      relative_value = std::make_shared<RelativePositionalEncoding>(E_ / H_, o.relative_positions());
      register_module("relative_key", relative_key);
      register_module("relative_value", relative_value);
    }
  }

  // query [B, L, E] (batch_first) or [L, B, E], or unbatched [L, E]; key [.., S, kdim];
  // value [.., S, vdim]. Returns (output like query, weights [B, L, S] averaged over heads or
  // [B, H, L, S]; undefined when need_weights is false). attn_mask: [L, S], [B*H, L, S],
  // [B, H, L, S] or [B, 1, L, S] (also [H, L, S], e.g. a RelativePositionBias).
  std::pair<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const Tensor& key_padding_mask = Tensor(), bool need_weights = true,
                                    const Tensor& attn_mask = Tensor(), bool average_attn_weights = true) const {
    return forward_ex(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, false);
  }

  // forward with is_causal: query i attends keys j <= i without building a mask (also skips the
  // masked half of the products).
  std::pair<Tensor, Tensor> forward_ex(const Tensor& query, const Tensor& key, const Tensor& value,
                                       const Tensor& key_padding_mask, bool need_weights, const Tensor& attn_mask,
                                       bool average_attn_weights, bool is_causal) const {
    const char* op = "MultiheadAttention";
    const bool bf = opt_.batch_first();
    if (query.dim() == 2) {  // unbatched
      ATTN_CHECK(key.dim() == 2 && value.dim() == 2, op, ": unbatched query ", to_string(query.shape()),
                 " needs 2-D key and value, got ", to_string(key.shape()), " and ", to_string(value.shape()));
      const int64_t bd = bf ? 0 : 1;
      Tensor kpm = key_padding_mask.defined() ? unsqueeze(key_padding_mask, 0) : Tensor();
      Tensor am = attn_mask.defined() && attn_mask.dim() == 3 ? unsqueeze(attn_mask, 0) : attn_mask;
      Tensor q = unsqueeze(query, bd);
      Tensor k = key.is_same(query) ? q : unsqueeze(key, bd);
      Tensor v = value.is_same(key) ? k : (value.is_same(query) ? q : unsqueeze(value, bd));
      auto [o, w] = forward_ex(q, k, v, kpm, need_weights, am, average_attn_weights, is_causal);
      return {squeeze(o, bd), w.defined() ? squeeze(w, 0) : w};
    }
    ATTN_CHECK(query.dim() == 3 && key.dim() == 3 && value.dim() == 3, op, ": query ", to_string(query.shape()),
               ", key ", to_string(key.shape()), ", value ", to_string(value.shape()), " must be 3-D ",
               bf ? "[B, L, E]" : "[L, B, E]");
    const int64_t B = bf ? query.size(0) : query.size(1), L = bf ? query.size(1) : query.size(0);
    const int64_t S = bf ? key.size(1) : key.size(0);
    check_query(query, op);
    ATTN_CHECK(key.size(2) == kdim_ && value.size(2) == vdim_, op, ": key ", to_string(key.shape()), " and value ",
               to_string(value.shape()), " must have last dims kdim ", kdim_, " and vdim ", vdim_);
    ATTN_CHECK(key.size(bf ? 0 : 1) == B && value.size(bf ? 0 : 1) == B && value.size(bf ? 1 : 0) == S, op,
               ": query ", to_string(query.shape()), ", key ", to_string(key.shape()), " and value ",
               to_string(value.shape()), " disagree on batch size or key length (batch_first=", bf, ")");
    // ---- projections (one GEMM for self-attention, two when key is value) ----
    // packed rows of in_proj_weight / in_proj_bias: q [0, E), k [E, E + Ckv), v [E + Ckv, E + 2 Ckv)
    Tensor tq, tk, tv;
    int64_t oq = 0, ok = 0, ov = 0;
    if (packed_ && query.is_same(key) && key.is_same(value)) {
      tq = tk = tv = linear(query, in_proj_weight, in_proj_bias);
      ok = E_;
      ov = E_ + Ckv_;
    } else if (packed_ && key.is_same(value)) {
      tq = project(query, 0);
      tk = tv = linear(key, rows(in_proj_weight, E_, 2 * Ckv_), rows(in_proj_bias, E_, 2 * Ckv_));
      ov = Ckv_;
    } else {
      tq = project(query, 0);
      tk = project(key, 1);
      tv = project(value, 2);
    }
    return attend(tq, oq, tk, layout(tk, S, B, ok), tv, layout(tv, S, B, ov), B, L, S, key_padding_mask, need_weights,
                  attn_mask, average_attn_weights, is_causal, 0);
  }

  // Incremental self-attention for decoding (inference, grad mode off): query holds the L newest
  // positions [B, L, E] (or [L, B, E]); their keys and values are appended to `cache`, and they
  // attend over the whole cache, S = cache.size() afterwards. With is_causal, new query i sees
  // cached keys j <= S - L + i (the causal mask aligned to the END of the cache), so feeding a
  // sequence in pieces gives the rows of one causal forward over it. attn_mask, when given, is
  // [L, S] (or any shape forward takes) over the whole cache, e.g. a position bias.
  std::pair<Tensor, Tensor> forward_cached(const Tensor& query, KVCache& cache, bool is_causal = true,
                                           const Tensor& attn_mask = Tensor(), bool need_weights = false) const {
    const char* op = "MultiheadAttention::forward_cached";
    check_cached(query, op);
    ATTN_CHECK(packed_, op, ": self-attention over a cache needs kdim == vdim == embed_dim, got kdim ", kdim_,
               " and vdim ", vdim_);
    const bool bf = opt_.batch_first();
    const int64_t B = bf ? query.size(0) : query.size(1), L = bf ? query.size(1) : query.size(0);
    const Tensor qkv = linear(query, in_proj_weight, in_proj_bias);  // [.., E + 2 Ckv]
    cache.append(qkv, E_, qkv, E_ + Ckv_, B, L, Ckv_, bf);
    const int64_t S = cache.size();
    return attend(qkv, 0, cache.k_, cache_layout(cache), cache.v_, cache_layout(cache), B, L, S, Tensor(),
                  need_weights, attn_mask, true, is_causal, S - L);
  }

  // Cross-attention over a fixed memory (the decoder's encoder output) for decoding: the first
  // call projects `memory` [B, S, kdim] (or [S, B, kdim]) into keys and values and stores them in
  // `cache`; later calls reuse them and ignore `memory` (clear() the cache for a new memory).
  std::pair<Tensor, Tensor> forward_memory_cached(const Tensor& query, const Tensor& memory, KVCache& cache,
                                                  const Tensor& memory_key_padding_mask = Tensor(),
                                                  bool need_weights = false) const {
    const char* op = "MultiheadAttention::forward_memory_cached";
    check_cached(query, op);
    const bool bf = opt_.batch_first();
    const int64_t B = bf ? query.size(0) : query.size(1), L = bf ? query.size(1) : query.size(0);
    if (cache.empty()) {
      ATTN_CHECK(memory.dim() == 3 && memory.size(2) == kdim_ && kdim_ == vdim_ && memory.size(bf ? 0 : 1) == B, op,
                 ": memory ", to_string(memory.shape()), " must be ", bf ? "[B, S, " : "[S, B, ", kdim_,
                 "] with B = ", B, " of query ", to_string(query.shape()), " (and kdim == vdim)");
      const int64_t S = bf ? memory.size(1) : memory.size(0);
      if (packed_) {
        const Tensor kv = linear(memory, rows(in_proj_weight, E_, 2 * Ckv_), rows(in_proj_bias, E_, 2 * Ckv_));
        cache.append(kv, 0, kv, Ckv_, B, S, Ckv_, bf);
      } else {
        cache.append(project(memory, 1), 0, project(memory, 2), 0, B, S, Ckv_, bf);
      }
    }
    ATTN_CHECK(cache.k_.size(0) == B, op, ": query ", to_string(query.shape()), " has batch ", B,
               " but the cached memory has batch ", cache.k_.size(0));
    return attend(project(query, 0), 0, cache.k_, cache_layout(cache), cache.v_, cache_layout(cache), B, L,
                  cache.size(), memory_key_padding_mask, need_weights, Tensor(), true, false, 0);
  }

  int64_t embed_dim() const { return E_; }
  int64_t num_heads() const { return H_; }
  int64_t num_kv_heads() const { return Hkv_; }
  int64_t head_dim() const { return E_ / H_; }
  const MultiheadAttentionOptions& options() const { return opt_; }

  Tensor in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias;
  // relative_positions(k) > 0: the key and value vectors of Shaw et al. (head_dim each, shared by
  // the heads); names relative_key.rel_pos_embedding.weight, relative_value.rel_pos_embedding.weight
  std::shared_ptr<RelativePositionalEncoding> relative_key, relative_value;

 private:
  static Tensor rows(const Tensor& t, int64_t start, int64_t n) { return t.defined() ? narrow(t, 0, start, n) : t; }
  // x projected to q (part 0), k (1) or v (2)
  Tensor project(const Tensor& x, int part) const {
    const int64_t start = part == 0 ? 0 : (part == 1 ? E_ : E_ + Ckv_), n = part == 0 ? E_ : Ckv_;
    const Tensor& w = packed_ ? rows(in_proj_weight, start, n)
                              : (part == 0 ? q_proj_weight : (part == 1 ? k_proj_weight : v_proj_weight));
    return linear(x, w, rows(in_proj_bias, start, n));
  }
  // element (b, h, t, c) of a projection [B, T, C] (or [T, B, C]) holding head h at column off + h * Dh
  ::attn::detail::AttnLayout layout(const Tensor& t, int64_t T, int64_t B, int64_t off) const {
    const int64_t C = t.size(2), Dh = E_ / H_;
    return opt_.batch_first() ? ::attn::detail::AttnLayout{off, T * C, Dh, C}
                              : ::attn::detail::AttnLayout{off, C, Dh, B * C};
  }
  ::attn::detail::AttnLayout cache_layout(const KVCache& c) const {
    return {0, c.cap_ * Ckv_, E_ / H_, Ckv_};
  }
  void check_query(const Tensor& query, const char* op) const {
    ATTN_CHECK(query.size(2) == E_, op, ": query ", to_string(query.shape()), " must have last dim embed_dim ", E_);
  }
  void check_cached(const Tensor& query, const char* op) const {
    ATTN_CHECK(!is_grad_enabled(), op, ": a KV cache is for inference; run it under NoGradGuard");
    ATTN_CHECK(query.dim() == 3, op, ": query ", to_string(query.shape()), " must be 3-D ",
               opt_.batch_first() ? "[B, L, E]" : "[L, B, E]");
    check_query(query, op);
  }
  // The fused attention over projections tq (query heads at column oq) and K/V at layouts lk/lv
  // (Hkv heads), then out_proj. q_offset: see detail::AttnProblem.
  std::pair<Tensor, Tensor> attend(const Tensor& tq, int64_t oq, const Tensor& tk, ::attn::detail::AttnLayout lk,
                                   const Tensor& tv, ::attn::detail::AttnLayout lv, int64_t B, int64_t L, int64_t S,
                                   const Tensor& key_padding_mask, bool need_weights, const Tensor& attn_mask,
                                   bool average_attn_weights, bool is_causal, int64_t q_offset) const {
    const char* op = "MultiheadAttention";
    const bool bf = opt_.batch_first();
    const int64_t Dh = E_ / H_;
    ::attn::detail::FusedAttnArgs a;
    a.q = tq;
    a.k = tk;
    a.v = tv;
    a.lq = layout(tq, L, B, oq);
    a.lk = lk;
    a.lv = lv;
    a.out_shape = bf ? Shape{B, L, E_} : Shape{L, B, E_};
    a.lo = bf ? ::attn::detail::AttnLayout{0, L * E_, Dh, E_} : ::attn::detail::AttnLayout{0, E_, Dh, B * E_};
    a.scores_shape = {B, H_, L, S};
    a.p.B = B;
    a.p.H = H_;
    a.p.L = L;
    a.p.S = S;
    a.p.E = Dh;
    a.p.Ev = Dh;
    a.p.scale = 1.0 / std::sqrt(double(Dh));
    a.p.causal = is_causal;
    a.p.q_offset = q_offset;
    a.p.kv_group = H_ / Hkv_;
    a.alibi_slopes = alibi_slopes_;
    a.p.dropout_p = is_training() ? opt_.dropout() : 0.0;
    if (a.p.dropout_p > 0.0) a.p.dropout_seed = default_generator().next_u64();
    a.attn_mask = mha_mask(attn_mask, B, L, S);
    a.key_padding_mask = key_padding_mask;
    if (key_padding_mask.defined())
      ATTN_CHECK(key_padding_mask.dim() == 2 && key_padding_mask.size(0) == B && key_padding_mask.size(1) == S, op,
                 ": key_padding_mask ", to_string(key_padding_mask.shape()), " must be [B, S] = [", B, ", ", S, "]");
    a.need_weights = need_weights;
    if (relative_key) return attend_relative(a, oq, need_weights, average_attn_weights, op);
    auto [attn_out, w] = ::attn::detail::fused_attention(a, op);
    Tensor out = out_proj.forward(attn_out);
    if (need_weights && average_attn_weights) w = mean(w, 1, false);
    return {out, w};
  }
  // Shaw et al.'s relative positions on top of the fused attention a (query i at key position
  // i + q_offset, offsets bucketed by the one-hot table OH [L, S, R], R = 2 k + 1):
  //   score_ij += scale q_i . aK[b(i, j)]: the table scale Q aK^T [B, H, L, R] gathered through OH
  //               into an additive mask (so this takes the weights-storing path, the mask needs a
  //               gradient);
  //   out_i    += sum_j w'_ij aV[b(i, j)] = sum_r P_ir aV[r],  P = w' OH (weights summed per offset).
  // All of it is composed of differentiable ops; memory O(L S R) for the one-hot table.
  std::pair<Tensor, Tensor> attend_relative(::attn::detail::FusedAttnArgs a, int64_t oq, bool need_weights,
                                            bool average_attn_weights, const char* op) const {
    const bool bf = opt_.batch_first();
    const int64_t B = a.p.B, L = a.p.L, S = a.p.S, Dh = E_ / H_;
    const std::vector<int64_t> to_bhld = bf ? std::vector<int64_t>{0, 2, 1, 3} : std::vector<int64_t>{1, 2, 0, 3};
    const Tensor oh = relative_key->one_hot(L, S, a.p.q_offset, a.q.dtype());               // [L, S, R]
    Tensor qh = narrow(a.q, 2, oq, E_);                                                      // [B, L, E] / [L, B, E]
    qh = permute(reshape(qh, bf ? Shape{B, L, H_, Dh} : Shape{L, B, H_, Dh}), to_bhld);      // [B, H, L, Dh]
    const Tensor rk = mul(matmul(qh, transpose(relative_key->weight(), 0, 1)), a.p.scale);  // [B, H, L, R]
    Tensor bias = squeeze(matmul(unsqueeze(rk, 3), transpose(oh, 1, 2)), 3);                 // [B, H, L, S]
    if (a.attn_mask.defined() && a.attn_mask.dtype() == kBool)
      bias = masked_fill(bias, logical_not(a.attn_mask), -std::numeric_limits<double>::infinity());
    else if (a.attn_mask.defined())
      bias = add(bias, a.attn_mask);
    a.attn_mask = bias;
    a.need_weights = true;
    auto [attn_out, w] = ::attn::detail::fused_attention(a, op);        // w [B, H, L, S]
    const Tensor prel = squeeze(matmul(unsqueeze(w, 3), oh), 3);         // [B, H, L, R]
    Tensor orel = matmul(prel, relative_value->weight());                // [B, H, L, Dh]
    orel = reshape(permute(orel, bf ? std::vector<int64_t>{0, 2, 1, 3} : std::vector<int64_t>{2, 0, 1, 3}),
                   a.out_shape);
    Tensor out = out_proj.forward(add(attn_out, orel));
    if (!need_weights) return {out, Tensor()};
    return {out, average_attn_weights ? mean(w, 1, false) : w};
  }
  // Accepts PyTorch's [L, S] and [B*H, L, S], plus [B, H, L, S], [B, 1, L, S] and [H, L, S].
  Tensor mha_mask(const Tensor& m, int64_t B, int64_t L, int64_t S) const {
    if (!m.defined()) return m;
    const int64_t d = m.dim();
    const bool ls = d >= 2 && m.size(-2) == L && m.size(-1) == S;
    if (ls && d == 2) return m;
    if (ls && d == 3 && m.size(0) == B * H_) return reshape(m, {B, H_, L, S});
    if (ls && d == 3 && m.size(0) == H_) return m;
    if (ls && d == 4 && (m.size(0) == B || m.size(0) == 1) && (m.size(1) == H_ || m.size(1) == 1)) return m;
    ATTN_CHECK(false, "MultiheadAttention: attn_mask ", to_string(m.shape()), " must be [L, S], [B*H, L, S], [H, L, S]",
               " or [B, H|1, L, S] with B=", B, " H=", H_, " L=", L, " S=", S);
    return m;
  }

  MultiheadAttentionOptions opt_;
  int64_t E_, H_, Hkv_, kdim_, vdim_, Ckv_ = 0;
  bool packed_ = true;
  Tensor alibi_slopes_;  // float64 [H] when options().alibi()

 public:
  Linear out_proj;
};

}  // namespace attn::nn
