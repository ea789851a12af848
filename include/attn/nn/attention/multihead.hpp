#pragma once
// nn::MultiheadAttention with PyTorch's parameters, names, init and forward signature.
//   q = query Wq^T + bq,  k = key Wk^T + bk,  v = value Wv^T + bv      (one GEMM when packed)
//   head_h = softmax(q_h k_h^T / sqrt(E/H) + mask) v_h                    (fused, see ops/attention.hpp)
//   out = concat_h(head_h) Wo^T + bo
// The heads are never split or merged by copies: the fused attention node reads each head's
// columns straight out of the projection ([B, L, 3E] when query, key and value are one tensor)
// through strides and writes its output columns straight into [B, L, E].
// Mask conventions: attn_mask bool = true where the query MAY attend (attn's and
// F.scaled_dot_product_attention's convention, the OPPOSITE of torch.nn.MultiheadAttention's bool
// attn_mask), float = added to the scores (same as PyTorch). key_padding_mask bool [B, S]:
// true = padded key, ignored (same as PyTorch).
#include <cmath>
#include <utility>
#include "../../ops/attention.hpp"
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
#undef ATTN_MHA_OPTION
 private:
  int64_t embed_dim_, num_heads_;
  double dropout_ = 0.0;
  bool bias_ = true;
  int64_t kdim_ = 0, vdim_ = 0;
  bool batch_first_ = false;  // PyTorch's default: [L, B, E]
};

class MultiheadAttention : public Module {
 public:
  explicit MultiheadAttention(const MultiheadAttentionOptions& o)
      : opt_(o),
        E_(o.embed_dim()),
        H_(o.num_heads()),
        kdim_(o.kdim() > 0 ? o.kdim() : o.embed_dim()),
        vdim_(o.vdim() > 0 ? o.vdim() : o.embed_dim()),
        out_proj(std::max<int64_t>(o.embed_dim(), 1), std::max<int64_t>(o.embed_dim(), 1), o.bias()) {
    ATTN_CHECK(E_ > 0 && H_ > 0, "MultiheadAttention: embed_dim and num_heads must be positive, got ", E_, " and ", H_);
    ATTN_CHECK(E_ % H_ == 0, "MultiheadAttention: embed_dim ", E_, " must be divisible by num_heads ", H_);
    ATTN_CHECK(o.dropout() >= 0.0 && o.dropout() < 1.0, "MultiheadAttention: dropout must be in [0, 1), got ",
               o.dropout());
    packed_ = kdim_ == E_ && vdim_ == E_;
    if (packed_) {
      in_proj_weight = Tensor::empty({3 * E_, E_});
      init::xavier_uniform_(in_proj_weight);
      register_parameter("in_proj_weight", in_proj_weight);
    } else {
      q_proj_weight = Tensor::empty({E_, E_});
      k_proj_weight = Tensor::empty({E_, kdim_});
      v_proj_weight = Tensor::empty({E_, vdim_});
      init::xavier_uniform_(q_proj_weight);
      init::xavier_uniform_(k_proj_weight);
      init::xavier_uniform_(v_proj_weight);
      register_parameter("q_proj_weight", q_proj_weight);
      register_parameter("k_proj_weight", k_proj_weight);
      register_parameter("v_proj_weight", v_proj_weight);
    }
    if (o.bias()) {
      in_proj_bias = Tensor::zeros({3 * E_});
      register_parameter("in_proj_bias", in_proj_bias);
      init::zeros_(out_proj.bias);
    }
    register_module("out_proj", out_proj);
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
    ATTN_CHECK(query.size(2) == E_, op, ": query ", to_string(query.shape()), " must have last dim embed_dim ", E_);
    ATTN_CHECK(key.size(2) == kdim_ && value.size(2) == vdim_, op, ": key ", to_string(key.shape()), " and value ",
               to_string(value.shape()), " must have last dims kdim ", kdim_, " and vdim ", vdim_);
    ATTN_CHECK(key.size(bf ? 0 : 1) == B && value.size(bf ? 0 : 1) == B && value.size(bf ? 1 : 0) == S, op,
               ": query ", to_string(query.shape()), ", key ", to_string(key.shape()), " and value ",
               to_string(value.shape()), " disagree on batch size or key length (batch_first=", bf, ")");
    const int64_t Dh = E_ / H_;
    // ---- projections (one GEMM for self-attention, two when key is value) ----
    auto wslice = [&](int64_t part, int64_t n) { return narrow(in_proj_weight, 0, part * E_, n * E_); };
    auto bslice = [&](int64_t part, int64_t n) {
      return in_proj_bias.defined() ? narrow(in_proj_bias, 0, part * E_, n * E_) : Tensor();
    };
    Tensor tq, tk, tv;
    int64_t oq = 0, ok = 0, ov = 0;
    if (packed_ && query.is_same(key) && key.is_same(value)) {
      tq = tk = tv = linear(query, in_proj_weight, in_proj_bias);
      ok = E_;
      ov = 2 * E_;
    } else if (packed_ && key.is_same(value)) {
      tq = linear(query, wslice(0, 1), bslice(0, 1));
      tk = tv = linear(key, wslice(1, 2), bslice(1, 2));
      ov = E_;
    } else if (packed_) {
      tq = linear(query, wslice(0, 1), bslice(0, 1));
      tk = linear(key, wslice(1, 1), bslice(1, 1));
      tv = linear(value, wslice(2, 1), bslice(2, 1));
    } else {
      tq = linear(query, q_proj_weight, bslice(0, 1));
      tk = linear(key, k_proj_weight, bslice(1, 1));
      tv = linear(value, v_proj_weight, bslice(2, 1));
    }
    // element (b, h, t, c) of a projection [B, T, C] (or [T, B, C]) holding a head at column off
    auto layout = [&](const Tensor& t, int64_t T, int64_t off) {
      const int64_t C = t.size(2);
      return bf ? ::attn::detail::AttnLayout{off, T * C, Dh, C} : ::attn::detail::AttnLayout{off, C, Dh, B * C};
    };
    ::attn::detail::FusedAttnArgs a;
    a.q = tq;
    a.k = tk;
    a.v = tv;
    a.lq = layout(tq, L, oq);
    a.lk = layout(tk, S, ok);
    a.lv = layout(tv, S, ov);
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
    a.p.dropout_p = is_training() ? opt_.dropout() : 0.0;
    if (a.p.dropout_p > 0.0) a.p.dropout_seed = default_generator().next_u64();
    a.attn_mask = mha_mask(attn_mask, B, L, S);
    a.key_padding_mask = key_padding_mask;
    if (key_padding_mask.defined())
      ATTN_CHECK(key_padding_mask.dim() == 2 && key_padding_mask.size(0) == B && key_padding_mask.size(1) == S, op,
                 ": key_padding_mask ", to_string(key_padding_mask.shape()), " must be [B, S] = [", B, ", ", S, "]");
    a.need_weights = need_weights;
    auto [attn_out, w] = ::attn::detail::fused_attention(a, op);
    Tensor out = out_proj.forward(attn_out);
    if (need_weights && average_attn_weights) w = mean(w, 1, false);
    return {out, w};
  }

  int64_t embed_dim() const { return E_; }
  int64_t num_heads() const { return H_; }
  int64_t head_dim() const { return E_ / H_; }
  const MultiheadAttentionOptions& options() const { return opt_; }

  Tensor in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias;

 private:
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
  int64_t E_, H_, kdim_, vdim_;
  bool packed_ = true;

 public:
  Linear out_proj;
};

}  // namespace attn::nn
