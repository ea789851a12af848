#pragma once
// Modules around the approximate long-sequence attention ops: nn::ProbSparseAttention
// (Informer), nn::PerformerAttention (FAVOR+), nn::LSHAttention (Reformer) and
// nn::LinformerAttention. Each projects its inputs with Linear layers, splits heads
// ([B, L, D] -> [B, H, L, D/H]), runs the op, merges heads and applies out_proj, like
// nn::LinearAttention. Options follow the PyTorch C++ frontend's builders.
#include <cmath>
#include <string>
#include "../../ops/linformer_attention.hpp"
#include "../../ops/lsh_attention.hpp"
#include "../../ops/performer_attention.hpp"
#include "../../ops/probsparse_attention.hpp"
#include "../init.hpp"
#include "efficient.hpp"

namespace attn::nn {

#define ATTN_APPROX_OPTION(cls, type, name) \
  cls& name(type v) {                       \
    name##_ = v;                            \
    return *this;                           \
  }                                         \
  type name() const { return name##_; }

struct ProbSparseAttentionOptions {
  ProbSparseAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
  ATTN_APPROX_OPTION(ProbSparseAttentionOptions, int64_t, embed_dim)
  ATTN_APPROX_OPTION(ProbSparseAttentionOptions, int64_t, num_heads)
  ATTN_APPROX_OPTION(ProbSparseAttentionOptions, int64_t, factor)  // c in c ln L (Informer's default 5)
  ATTN_APPROX_OPTION(ProbSparseAttentionOptions, bool, causal)
 private:
  int64_t embed_dim_, num_heads_, factor_ = 5;
  bool causal_ = false;
};

struct PerformerAttentionOptions {
  PerformerAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
  ATTN_APPROX_OPTION(PerformerAttentionOptions, int64_t, embed_dim)
  ATTN_APPROX_OPTION(PerformerAttentionOptions, int64_t, num_heads)
  ATTN_APPROX_OPTION(PerformerAttentionOptions, int64_t, nb_features)  // m; 0 = int(E ln E), E = head dim
  ATTN_APPROX_OPTION(PerformerAttentionOptions, bool, causal)
  ATTN_APPROX_OPTION(PerformerAttentionOptions, double, eps)
 private:
  int64_t embed_dim_, num_heads_, nb_features_ = 0;
  bool causal_ = false;
  double eps_ = 1e-6;
};

struct LSHAttentionOptions {
  LSHAttentionOptions(int64_t embed_dim, int64_t num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
  ATTN_APPROX_OPTION(LSHAttentionOptions, int64_t, embed_dim)
  ATTN_APPROX_OPTION(LSHAttentionOptions, int64_t, num_heads)
  ATTN_APPROX_OPTION(LSHAttentionOptions, int64_t, n_hashes)     // hash rounds
  ATTN_APPROX_OPTION(LSHAttentionOptions, int64_t, bucket_size)  // chunk length
  ATTN_APPROX_OPTION(LSHAttentionOptions, int64_t, n_buckets)    // 0 = lsh_default_buckets(L, bucket_size)
  ATTN_APPROX_OPTION(LSHAttentionOptions, bool, causal)
 private:
  int64_t embed_dim_, num_heads_, n_hashes_ = 4, bucket_size_ = 64, n_buckets_ = 0;
  bool causal_ = false;
};

struct LinformerAttentionOptions {
  LinformerAttentionOptions(int64_t embed_dim, int64_t num_heads, int64_t seq_len)
      : embed_dim_(embed_dim), num_heads_(num_heads), seq_len_(seq_len) {}
  ATTN_APPROX_OPTION(LinformerAttentionOptions, int64_t, embed_dim)
  ATTN_APPROX_OPTION(LinformerAttentionOptions, int64_t, num_heads)
  ATTN_APPROX_OPTION(LinformerAttentionOptions, int64_t, seq_len)  // S, the key length the projections take
  ATTN_APPROX_OPTION(LinformerAttentionOptions, int64_t, k)        // projected length (the paper's default 256)
  ATTN_APPROX_OPTION(LinformerAttentionOptions, bool, share_kv)    // one projection for keys and values
  ATTN_APPROX_OPTION(LinformerAttentionOptions, double, dropout)   // on the attention weights, in training
 private:
  int64_t embed_dim_, num_heads_, seq_len_, k_ = 256;
  bool share_kv_ = false;
  double dropout_ = 0.0;
};
#undef ATTN_APPROX_OPTION

// The projections every variant shares: q_proj (qk_proj when queries and keys share it, as in
// Reformer), k_proj (not registered when shared), v_proj, out_proj, all [D, D] with bias.
class ProjectedAttention : public Module {
 public:
  Linear q_proj, k_proj, v_proj, out_proj;

 protected:
  ProjectedAttention(int64_t D, bool shared_qk)
      : q_proj(D, D), k_proj(shared_qk ? 1 : D, shared_qk ? 1 : D), v_proj(D, D), out_proj(D, D) {
    register_module(shared_qk ? "qk_proj" : "q_proj", q_proj);
    if (!shared_qk) register_module("k_proj", k_proj);
    register_module("v_proj", v_proj);
    register_module("out_proj", out_proj);
  }
  // [B, L, D] inputs -> heads [B, H, L, D/H] after their projections.
  Tensor heads(const Linear& proj, const Tensor& x, int64_t H) const {
    return efficient_detail::split_heads(proj.forward(x), H);
  }
  Tensor output(const Tensor& o) const { return out_proj.forward(efficient_detail::merge_heads(o)); }
};

// Informer's ProbSparse self-attention; draws its key sample from the global generator at every
// forward (like Informer). Parameters: q_proj, k_proj, v_proj, out_proj (.weight, .bias).
class ProbSparseAttention : public ProjectedAttention {
 public:
  explicit ProbSparseAttention(const ProbSparseAttentionOptions& o) : ProjectedAttention(check(o).embed_dim(), false), opt_(o) {}
  // query [B, L, D], key/value [B, S, D] (causal: S == L) -> [B, L, D].
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value) const {
    efficient_detail::check_qkv("ProbSparseAttention", query, key, value, opt_.embed_dim());
    const int64_t H = opt_.num_heads();
    Tensor q = heads(q_proj, query, H), k = heads(k_proj, key, H), v = heads(v_proj, value, H);
    return output(probsparse_attention(q, k, v, opt_.factor(), opt_.causal()));
  }
  Tensor forward(const Tensor& x) const { return forward(x, x, x); }
  const ProbSparseAttentionOptions& options() const { return opt_; }

 private:
  static const ProbSparseAttentionOptions& check(const ProbSparseAttentionOptions& o) {
    efficient_detail::check_embed("ProbSparseAttention", o.embed_dim(), o.num_heads());
    ATTN_CHECK(o.factor() > 0, "ProbSparseAttention: factor must be > 0, got ", o.factor());
    return o;
  }
  ProbSparseAttentionOptions opt_;
};

// Performer (FAVOR+). The random features are a buffer "features" [m, head_dim], drawn at
// construction from the global generator; redraw_features() draws new ones (the paper redraws
// them periodically during training; call it where you want that).
class PerformerAttention : public ProjectedAttention {
 public:
  explicit PerformerAttention(const PerformerAttentionOptions& o) : ProjectedAttention(check(o).embed_dim(), false), opt_(o) {
    register_buffer("features", features);
    redraw_features();
  }
  void redraw_features(Generator& gen = default_generator()) {
    const int64_t E = opt_.embed_dim() / opt_.num_heads();
    const int64_t m = opt_.nb_features() > 0 ? opt_.nb_features()
                                             : std::max<int64_t>(1, int64_t(double(E) * std::log(double(E))));
    NoGradGuard ng;
    Tensor f = orthogonal_random_features(m, E, gen, q_proj.weight.dtype());
    if (features.defined() && features.shape() == f.shape())
      features.copy_(f);
    else
      features = f;
  }
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value) const {
    efficient_detail::check_qkv("PerformerAttention", query, key, value, opt_.embed_dim());
    const int64_t H = opt_.num_heads();
    Tensor q = heads(q_proj, query, H), k = heads(k_proj, key, H), v = heads(v_proj, value, H);
    return output(performer_attention(q, k, v, features, opt_.causal(), opt_.eps()));
  }
  Tensor forward(const Tensor& x) const { return forward(x, x, x); }
  const PerformerAttentionOptions& options() const { return opt_; }

  Tensor features;

 private:
  static const PerformerAttentionOptions& check(const PerformerAttentionOptions& o) {
    efficient_detail::check_embed("PerformerAttention", o.embed_dim(), o.num_heads());
    ATTN_CHECK(o.nb_features() >= 0 && o.eps() >= 0, "PerformerAttention: nb_features and eps must be >= 0, got ",
               o.nb_features(), " and ", o.eps());
    return o;
  }
  PerformerAttentionOptions opt_;
};

// Reformer's LSH self-attention: one shared projection for queries and keys ("qk_proj"), v_proj,
// out_proj. New random rotations are drawn from the global generator at every forward (as in
// Reformer), so seed it (manual_seed) for repeatable runs.
class LSHAttention : public ProjectedAttention {
 public:
  explicit LSHAttention(const LSHAttentionOptions& o) : ProjectedAttention(check(o).embed_dim(), true), opt_(o) {}
  // x [B, L, D] -> [B, L, D].
  Tensor forward(const Tensor& x) const {
    efficient_detail::check_qkv("LSHAttention", x, x, x, opt_.embed_dim());
    const int64_t H = opt_.num_heads(), L = x.size(1);
    Tensor qk = heads(q_proj, x, H), v = heads(v_proj, x, H);
    const int64_t nb = opt_.n_buckets() > 0 ? opt_.n_buckets() : lsh_default_buckets(L, opt_.bucket_size());
    Tensor rot = lsh_random_rotations(qk.size(-1), opt_.n_hashes(), nb, default_generator(), qk.dtype());
    return output(lsh_attention(qk, v, rot, opt_.bucket_size(), opt_.causal()));
  }
  const LSHAttentionOptions& options() const { return opt_; }

 private:
  static const LSHAttentionOptions& check(const LSHAttentionOptions& o) {
    efficient_detail::check_embed("LSHAttention", o.embed_dim(), o.num_heads());
    ATTN_CHECK(o.n_hashes() > 0 && o.bucket_size() > 0 && o.n_buckets() >= 0 && o.n_buckets() % 2 == 0,
               "LSHAttention: need n_hashes > 0, bucket_size > 0 and an even n_buckets >= 0 (0 = auto), got ",
               o.n_hashes(), ", ", o.bucket_size(), ", ", o.n_buckets());
    return o;
  }
  LSHAttentionOptions opt_;
};

// Linformer: learned length projections "e_proj" and "f_proj" [k, seq_len] (one "e_proj" when
// share_kv), initialised N(0, 1/k) as in the paper's code. Inputs must have exactly seq_len keys.
class LinformerAttention : public ProjectedAttention {
 public:
  explicit LinformerAttention(const LinformerAttentionOptions& o) : ProjectedAttention(check(o).embed_dim(), false), opt_(o) {
    const double sd = 1.0 / std::sqrt(double(o.k()));
    e_proj = Tensor::randn({o.k(), o.seq_len()}) * sd;
    register_parameter("e_proj", e_proj);
    if (!o.share_kv()) {
      f_proj = Tensor::randn({o.k(), o.seq_len()}) * sd;
      register_parameter("f_proj", f_proj);
    }
  }
  // query [B, L, D], key/value [B, seq_len, D] -> [B, L, D].
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value) const {
    efficient_detail::check_qkv("LinformerAttention", query, key, value, opt_.embed_dim());
    ATTN_CHECK(key.size(1) == opt_.seq_len(), "LinformerAttention: key length ", key.size(1), " (key ",
               to_string(key.shape()), ") differs from the seq_len ", opt_.seq_len(), " its projections were built for");
    const int64_t H = opt_.num_heads();
    Tensor q = heads(q_proj, query, H), k = heads(k_proj, key, H), v = heads(v_proj, value, H);
    const double p = is_training() ? opt_.dropout() : 0.0;
    return output(
        linformer_attention(q, k, v, e_proj, opt_.share_kv() ? e_proj : f_proj, p));
  }
  Tensor forward(const Tensor& x) const { return forward(x, x, x); }
  const LinformerAttentionOptions& options() const { return opt_; }

  Tensor e_proj, f_proj;

 private:
  static const LinformerAttentionOptions& check(const LinformerAttentionOptions& o) {
    efficient_detail::check_embed("LinformerAttention", o.embed_dim(), o.num_heads());
    ATTN_CHECK(o.seq_len() > 0 && o.k() > 0 && o.dropout() >= 0 && o.dropout() < 1,
               "LinformerAttention: need seq_len > 0, k > 0 and dropout in [0, 1), got ", o.seq_len(), ", ", o.k(),
               ", ", o.dropout());
    return o;
  }
  LinformerAttentionOptions opt_;
};

}  // namespace attn::nn
