#pragma once
// 1-D convolution over time, as torch.nn.Conv1d (input [B, C_in, L] or unbatched [C_in, L];
// weight [C_out, C_in / groups, kernel_size]; PyTorch's names, layout and default init), a
// causal variant for forecasting, a TCN residual block and a PatchTST-style patch embedding.
//
//   nn::Conv1d conv(nn::Conv1dOptions(3, 16, 5).dilation(2).causal(true));   // y [B, 16, L]
//   Tensor y = conv1d(x, w, b, /*stride=*/1, /*padding=*/2, /*dilation=*/1, /*groups=*/1);
//
// conv1d is composed of differentiable primitives (im2col by strided slices, one batched
// matmul per group), so its backward is theirs:
//   y[b, o, t] = bias[o] + sum_{c in group(o), k} w[o, c, k] * x_pad[b, c, t * stride + k * dilation]
#include <cmath>
#include "../ops/elementwise.hpp"
#include "../ops/matmul.hpp"
#include "../ops/shape.hpp"
#include "init.hpp"
#include "layers.hpp"
#include "module.hpp"

namespace attn {

namespace detail {
// conv1d with separate left and right zero padding (causal = all on the left).
inline Tensor conv1d_padded(const Tensor& input, const Tensor& weight, const Tensor& bias, int64_t stride,
                            int64_t pad_left, int64_t pad_right, int64_t dilation, int64_t groups) {
  const bool unbatched = input.dim() == 2;
  ATTN_CHECK(input.dim() == 2 || input.dim() == 3, "conv1d: input must be [B, C_in, L] or [C_in, L], got ",
             to_string(input.shape()));
  ATTN_CHECK(weight.dim() == 3, "conv1d: weight must be [C_out, C_in / groups, K], got ", to_string(weight.shape()));
  ATTN_CHECK(stride > 0 && dilation > 0 && groups > 0 && pad_left >= 0 && pad_right >= 0,
             "conv1d: stride, dilation and groups must be positive and padding non-negative, got stride ", stride,
             ", padding ", pad_left, "/", pad_right, ", dilation ", dilation, ", groups ", groups);
  const Tensor x = unbatched ? unsqueeze(input, 0) : input;
  const int64_t B = x.size(0), Cin = x.size(1), L = x.size(2), Cout = weight.size(0), Cg = weight.size(1),
                K = weight.size(2);
  ATTN_CHECK(Cin % groups == 0 && Cout % groups == 0 && Cg * groups == Cin, "conv1d: input ", to_string(input.shape()),
             " and weight ", to_string(weight.shape()), " do not fit groups=", groups,
             " (need C_in = weight.size(1) * groups and C_out divisible by groups)");
  ATTN_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == Cout), "conv1d: bias must be [", Cout, "], got ",
             to_string(bias.shape()));
  ATTN_CHECK(x.dtype() == weight.dtype(), "conv1d: input and weight dtypes differ");
  const int64_t Lp = L + pad_left + pad_right, span = dilation * (K - 1) + 1;
  ATTN_CHECK(Lp >= span, "conv1d: padded input length ", Lp, " (input ", to_string(input.shape()),
             ") is shorter than the kernel's span ", span, " (kernel ", K, ", dilation ", dilation, ")");
  const int64_t Lout = (Lp - span) / stride + 1;
  Tensor xp = x;
  if (pad_left > 0 || pad_right > 0) {
    std::vector<Tensor> parts;
    if (pad_left > 0) parts.push_back(Tensor::zeros({B, Cin, pad_left}, x.dtype()));
    parts.push_back(x);
    if (pad_right > 0) parts.push_back(Tensor::zeros({B, Cin, pad_right}, x.dtype()));
    xp = cat(parts, 2);
  }
  // im2col: tap k reads x_pad[:, :, k*dilation + t*stride] for t < Lout.
  std::vector<Tensor> taps;
  for (int64_t k = 0; k < K; ++k)
    taps.push_back(slice(xp, 2, k * dilation, k * dilation + stride * (Lout - 1) + 1, stride));
  const Tensor cols = reshape(stack(taps, 2), {B, groups, Cg * K, Lout});               // [B, G, Cg*K, Lout]
  const Tensor w = reshape(weight, {groups, Cout / groups, Cg * K});                    // [G, Cout/G, Cg*K]
  Tensor y = reshape(matmul(w, cols), {B, Cout, Lout});                                 // [B, G, Cout/G, Lout]
  if (bias.defined()) y = add(y, reshape(bias, {1, Cout, 1}));
  return unbatched ? squeeze(y, 0) : y;
}
}  // namespace detail

// torch.nn.functional.conv1d with zero padding on both sides.
inline Tensor conv1d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(), int64_t stride = 1,
                     int64_t padding = 0, int64_t dilation = 1, int64_t groups = 1) {
  return detail::conv1d_padded(input, weight, bias, stride, padding, padding, dilation, groups);
}

namespace nn {

struct Conv1dOptions {
  Conv1dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
#define ATTN_CONV_OPTION(type, name) \
  Conv1dOptions& name(type v) {      \
    name##_ = v;                     \
    return *this;                    \
  }                                  \
  type name() const { return name##_; }
  ATTN_CONV_OPTION(int64_t, in_channels)
  ATTN_CONV_OPTION(int64_t, out_channels)
  ATTN_CONV_OPTION(int64_t, kernel_size)
  ATTN_CONV_OPTION(int64_t, stride)
  ATTN_CONV_OPTION(int64_t, padding)   // zeros on both sides, as PyTorch's padding=int
  ATTN_CONV_OPTION(int64_t, dilation)
  ATTN_CONV_OPTION(int64_t, groups)
  ATTN_CONV_OPTION(bool, bias)
  // Not in PyTorch: pad dilation * (kernel_size - 1) zeros on the left only, so output t sees
  // inputs <= t and (with stride 1) the length is kept: what a forecaster needs.
  ATTN_CONV_OPTION(bool, causal)
#undef ATTN_CONV_OPTION

 private:
  int64_t in_channels_, out_channels_, kernel_size_, stride_ = 1, padding_ = 0, dilation_ = 1, groups_ = 1;
  bool bias_ = true, causal_ = false;
};

class Conv1d : public Module {
 public:
  explicit Conv1d(const Conv1dOptions& o) : opt_(o) {
    ATTN_CHECK(o.in_channels() > 0 && o.out_channels() > 0 && o.kernel_size() > 0 && o.stride() > 0 &&
                   o.dilation() > 0 && o.groups() > 0 && o.padding() >= 0,
               "Conv1d: sizes, stride, dilation and groups must be positive and padding non-negative, got in ",
               o.in_channels(), ", out ", o.out_channels(), ", kernel ", o.kernel_size(), ", stride ", o.stride(),
               ", padding ", o.padding(), ", dilation ", o.dilation(), ", groups ", o.groups());
    ATTN_CHECK(o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0, "Conv1d: in_channels ",
               o.in_channels(), " and out_channels ", o.out_channels(), " must be divisible by groups ", o.groups());
    ATTN_CHECK(!(o.causal() && o.padding() > 0), "Conv1d: causal sets the padding itself; leave padding at 0");
    weight = Tensor::empty({o.out_channels(), o.in_channels() / o.groups(), o.kernel_size()});
    init::kaiming_uniform_(weight);  // bound 1/sqrt(fan_in), fan_in = C_in / groups * K, as PyTorch
    register_parameter("weight", weight);
    if (o.bias()) {
      const double bound = 1.0 / std::sqrt(double(init::fans(weight).first));
      bias = Tensor::empty({o.out_channels()});
      init::uniform_(bias, -bound, bound);
      register_parameter("bias", bias);
    }
  }
  Tensor forward(const Tensor& x) const {
    const int64_t left = opt_.causal() ? opt_.dilation() * (opt_.kernel_size() - 1) : opt_.padding();
    const int64_t right = opt_.causal() ? 0 : opt_.padding();
    return attn::detail::conv1d_padded(x, weight, bias, opt_.stride(), left, right, opt_.dilation(), opt_.groups());
  }
  const Conv1dOptions& options() const { return opt_; }

  Tensor weight, bias;

 private:
  Conv1dOptions opt_;
};

// A residual block of a temporal convolutional network (Bai, Kolter and Koltun, 2018):
//   out = relu(dropout(relu(conv2(dropout(relu(conv1(x)))))) + downsample(x))
// with causal dilated convolutions (length kept) and a 1x1 convolution as downsample when the
// channel count changes. (The paper's weight normalisation is left out.)
struct TemporalBlockOptions {
  TemporalBlockOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_(in_channels), out_(out_channels), kernel_(kernel_size) {}
  TemporalBlockOptions& dilation(int64_t v) { dilation_ = v; return *this; }
  TemporalBlockOptions& dropout(double v) { dropout_ = v; return *this; }
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int64_t kernel_size() const { return kernel_; }
  int64_t dilation() const { return dilation_; }
  double dropout() const { return dropout_; }

 private:
  int64_t in_, out_, kernel_, dilation_ = 1;
  double dropout_ = 0.0;
};

class TemporalBlock : public Module {
 public:
  explicit TemporalBlock(const TemporalBlockOptions& o)
      : conv1(Conv1dOptions(o.in_channels(), o.out_channels(), o.kernel_size()).dilation(o.dilation()).causal(true)),
        conv2(Conv1dOptions(o.out_channels(), o.out_channels(), o.kernel_size()).dilation(o.dilation()).causal(true)),
        drop(o.dropout()) {
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    if (o.in_channels() != o.out_channels()) {
      downsample = std::make_shared<Conv1d>(Conv1dOptions(o.in_channels(), o.out_channels(), 1));
      register_module("downsample", downsample);
    }
  }
  // x [B, C_in, L] -> [B, C_out, L]; output t depends on inputs <= t only.
  Tensor forward(const Tensor& x) const {
    const Tensor h = drop.forward(relu(conv2.forward(drop.forward(relu(conv1.forward(x))))));
    return relu(add(h, downsample ? downsample->forward(x) : x));
  }

  Conv1d conv1, conv2;
  Dropout drop;
  std::shared_ptr<Conv1d> downsample;
};

// Patch embedding in the style of PatchTST (Nie et al., ICLR 2023): each channel of x [B, C, L]
// is cut into patches of patch_len points every stride points (after repeating the last value
// stride times at the end when pad_end, as PatchTST's ReplicationPad1d((0, stride))), each patch
// is projected by value_embedding = Linear(patch_len, d_model), and a learnable position table
// W_pos [num_patches, d_model] (init U(-0.02, 0.02)) is added: out [B, C, num_patches, d_model].
struct PatchEmbeddingOptions {
  PatchEmbeddingOptions(int64_t seq_len, int64_t patch_len, int64_t stride, int64_t d_model)
      : seq_len_(seq_len), patch_len_(patch_len), stride_(stride), d_model_(d_model) {}
  PatchEmbeddingOptions& pad_end(bool v) { pad_end_ = v; return *this; }
  int64_t seq_len() const { return seq_len_; }
  int64_t patch_len() const { return patch_len_; }
  int64_t stride() const { return stride_; }
  int64_t d_model() const { return d_model_; }
  bool pad_end() const { return pad_end_; }
  int64_t num_patches() const { return (seq_len_ + (pad_end_ ? stride_ : 0) - patch_len_) / stride_ + 1; }

 private:
  int64_t seq_len_, patch_len_, stride_, d_model_;
  bool pad_end_ = true;
};

class PatchEmbedding : public Module {
 public:
  explicit PatchEmbedding(const PatchEmbeddingOptions& o) : opt_(o), value_embedding(o.patch_len(), o.d_model()) {
    ATTN_CHECK(o.patch_len() > 0 && o.stride() > 0 && o.d_model() > 0 && o.seq_len() >= o.patch_len(),
               "PatchEmbedding: need positive patch_len, stride, d_model and seq_len >= patch_len, got seq_len ",
               o.seq_len(), ", patch_len ", o.patch_len(), ", stride ", o.stride(), ", d_model ", o.d_model());
    register_module("value_embedding", value_embedding);
    W_pos = Tensor::empty({o.num_patches(), o.d_model()});
    init::uniform_(W_pos, -0.02, 0.02);
    register_parameter("W_pos", W_pos);
  }
  // x [B, C, L] -> patches [B, C, N, patch_len]
  Tensor patches(const Tensor& x) const {
    ATTN_CHECK(x.dim() == 3 && x.size(2) == opt_.seq_len(), "PatchEmbedding: input must be [B, C, ", opt_.seq_len(),
               "], got ", to_string(x.shape()));
    Tensor xp = x;
    if (opt_.pad_end())
      xp = cat({x, expand(narrow(x, 2, x.size(2) - 1, 1), {x.size(0), x.size(1), opt_.stride()})}, 2);
    const int64_t N = opt_.num_patches(), S = opt_.stride();
    std::vector<Tensor> taps;  // tap p: the p-th point of every patch, [B, C, N]
    for (int64_t p = 0; p < opt_.patch_len(); ++p) taps.push_back(slice(xp, 2, p, p + S * (N - 1) + 1, S));
    return stack(taps, 3);
  }
  Tensor forward(const Tensor& x) const { return add(value_embedding.forward(patches(x)), W_pos); }
  int64_t num_patches() const { return opt_.num_patches(); }

 private:
  PatchEmbeddingOptions opt_;

 public:
  Linear value_embedding;
  Tensor W_pos;
};

}  // namespace nn
}  // namespace attn
