// Table-driven walk through bad calls on every public op and module (docs/reliability.md,
// "Shape and argument checks"). Each entry is a call that must throw an exception derived from
// std::invalid_argument whose message contains the listed substrings: the op (or module) name
// and the shapes / values that make the call wrong. A crash, a different exception type, no
// exception or a message without those substrings fails the test. Runs clean under ASan+UBSan
// (`make asan`, or the build-asan target test_bad_calls).
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace attn;

namespace {

Tensor z(const Shape& s, DType d = kFloat32) { return Tensor::zeros(s, d); }
Tensor b(const Shape& s) { return Tensor::ones(s, kBool); }
Tensor idx(const std::vector<int64_t>& v) { return Tensor::from_vector(v); }

struct BadCall {
  std::string name;                    // what the entry tries (the group is the prefix before ':')
  std::function<void()> call;
  std::vector<std::string> must_contain;  // op name first, then shapes / values
};

std::vector<BadCall> bad_calls() {
  std::vector<BadCall> t;
  auto entry = [&t](std::string name, std::function<void()> f, std::vector<std::string> want) {
    t.push_back({std::move(name), std::move(f), std::move(want)});
  };

  // ---------------------------------------------------------------- core: factories and access
  entry("factory: zeros negative size", [] { Tensor::zeros({-1, 3}); }, {"zeros", "[-1, 3]"});
  entry("factory: ones negative size", [] { Tensor::ones({2, -3}); }, {"ones", "[2, -3]"});
  entry("factory: full negative size", [] { Tensor::full({-2}, 1.0); }, {"full", "[-2]"});
  entry("factory: randn negative size", [] { Tensor::randn({4, -1}); }, {"randn", "[4, -1]"});
  entry("factory: rand negative size", [] { Tensor::rand({-5}); }, {"rand", "[-5]"});
  entry("factory: empty negative size", [] { Tensor::empty({3, -1}); }, {"empty", "[3, -1]"});
  entry("factory: arange zero step", [] { Tensor::arange(0.0, 5.0, 0.0); }, {"arange", "step=0"});
  entry("factory: arange wrong direction", [] { Tensor::arange(5.0, 0.0, 1.0); }, {"arange", "start=5", "end=0"});
  entry("factory: from_vector too few values", [] { Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}); },
      {"from_vector", "3 values", "[2, 2]"});
  entry("factory: from_vector bool too many values",
      [] { Tensor::from_vector(std::vector<bool>{true, false, true}, {2}); }, {"from_vector", "3 values", "[2]"});
  entry("access: item on many elements", [] { z({2, 3}).item<float>(); }, {"item", "[2, 3]", "6 elements"});
  entry("access: item on empty", [] { z({0}).item<float>(); }, {"item", "[0]"});
  entry("access: at out of range", [] { z({2, 3}).at({1, 3}); }, {"at", "index 3", "[2, 3]"});
  entry("access: at wrong index count", [] { z({2, 3}).at({1}); }, {"at", "1 indices", "[2, 3]"});
  entry("access: set out of range", [] { z({2}).set({-1}, 1.0); }, {"set", "index -1", "[2]"});
  entry("access: size dim out of range", [] { z({2, 3}).size(2); }, {"size", "dim 2", "[2, 3]"});
  entry("access: data<T> wrong dtype", [] { z({2}).data<double>(); }, {"data<T>", "float32", "float64"});
  entry("autograd: requires_grad_ on int64", [] { z({2}, kInt64).requires_grad_(); }, {"requires_grad_", "int64"});
  entry("autograd: implicit backward of non-scalar",
      [] {
        Tensor x = z({2, 3}).requires_grad_();
        mul(x, 2.0).backward();
      },
      {"backward", "[2, 3]"});
  entry("autograd: backward gradient of wrong shape",
      [] {
        Tensor x = z({2, 3}).requires_grad_();
        mul(x, 2.0).backward(z({3, 2}));
      },
      {"backward", "[3, 2]", "[2, 3]"});
  entry("autograd: copy_ shape mismatch", [] { z({2, 3}).copy_(z({3, 2})); }, {"copy_", "[3, 2]", "[2, 3]"});

  // ---------------------------------------------------------------- core: elementwise
  entry("elementwise: add no broadcast", [] { add(z({2, 3}), z({4, 3})); }, {"add", "[2, 3]", "[4, 3]"});
  entry("elementwise: sub no broadcast", [] { sub(z({2, 3}), z({2, 2})); }, {"sub", "[2, 3]", "[2, 2]"});
  entry("elementwise: mul no broadcast", [] { mul(z({5}), z({3})); }, {"mul", "[5]", "[3]"});
  entry("elementwise: div no broadcast", [] { div(z({2, 1, 3}), z({4, 2})); }, {"div", "[2, 1, 3]", "[4, 2]"});
  entry("elementwise: operator+ no broadcast", [] { (void)(z({3}) + z({4})); }, {"add", "[3]", "[4]"});
  entry("elementwise: add dtype mismatch", [] { add(z({2}), z({2}, kFloat64)); }, {"add", "float32", "float64", "[2]"});
  entry("elementwise: maximum no broadcast", [] { maximum(z({2}), z({3})); }, {"maximum", "[2]", "[3]"});
  entry("elementwise: gt no broadcast", [] { gt(z({2}), z({3})); }, {"gt", "[2]", "[3]"});
  entry("elementwise: exp of int64", [] { attn::exp(z({2}, kInt64)); }, {"exp", "int64"});
  entry("elementwise: clamp min > max", [] { clamp(z({2, 2}), 1.0, -1.0); }, {"clamp", "[2, 2]"});
  entry("elementwise: where cond shape", [] { where(b({2, 2}), z({2, 3}), z({2, 3})); }, {"where", "[2, 2]", "[2, 3]"});
  entry("elementwise: where a/b shapes", [] { where(b({2, 3}), z({2, 3}), z({3, 3})); }, {"where", "[2, 3]", "[3, 3]"});
  entry("elementwise: where a/b dtypes", [] { where(b({2}), z({2}), z({2}, kFloat64)); }, {"where", "float32", "float64"});
  entry("elementwise: masked_fill mask larger than input", [] { masked_fill(z({3}), b({2, 3}), 0.0); },
      {"masked_fill", "[2, 3]", "[3]"});
  entry("elementwise: masked_fill mask does not broadcast", [] { masked_fill(z({2, 3}), b({2, 2}), 0.0); },
      {"masked_fill", "[2, 2]", "[2, 3]"});

  // ---------------------------------------------------------------- core: reductions, softmax
  entry("reduce: sum dim out of range", [] { sum(z({2, 3}), 2); }, {"sum", "dim 2", "[2, 3]"});
  entry("reduce: sum negative dim out of range", [] { sum(z({2, 3}), -3); }, {"sum", "dim -3", "[2, 3]"});
  entry("reduce: mean dim out of range", [] { mean(z({2, 3}), 5); }, {"mean", "dim 5", "[2, 3]"});
  entry("reduce: var dim too small", [] { var(z({3, 1}), 1); }, {"var", "[3, 1]"});
  entry("reduce: max on empty dim", [] { attn::max(z({2, 0}), 1); }, {"max", "empty dim 1", "[2, 0]"});
  entry("reduce: min on empty dim", [] { attn::min(z({0, 4}), 0); }, {"min", "empty dim 0", "[0, 4]"});
  entry("reduce: argmax on empty dim", [] { argmax(z({3, 0}), 1); }, {"argmax", "[3, 0]"});
  entry("reduce: max dim out of range", [] { attn::max(z({2, 3}), 2); }, {"max", "dim 2", "[2, 3]"});
  entry("reduce: softmax dim out of range", [] { softmax(z({2, 3}), 2); }, {"softmax", "dim 2", "[2, 3]"});
  entry("reduce: log_softmax dim out of range", [] { log_softmax(z({2, 3}), -3); }, {"log_softmax", "dim -3", "[2, 3]"});
  entry("reduce: logsumexp dim out of range", [] { logsumexp(z({4}), 1); }, {"logsumexp", "dim 1", "[4]"});

  // ---------------------------------------------------------------- core: layout
  entry("shape: reshape wrong numel", [] { reshape(z({2, 3}), {4, 2}); }, {"reshape", "[2, 3]", "[4, 2]"});
  entry("shape: view with -1 twice", [] { z({2, 3}).view({-1, -1}); }, {"reshape", "more than one -1", "[-1, -1]"});
  entry("shape: reshape negative size", [] { reshape(z({2, 3}), {-2, -3}); }, {"reshape", "[-2, -3]"});
  entry("shape: reshape -1 does not divide", [] { reshape(z({2, 3}), {-1, 4}); }, {"reshape", "[2, 3]", "[-1, 4]"});
  entry("shape: flatten dim out of range", [] { flatten(z({2, 3}), 0, 2); }, {"flatten", "dim 2", "[2, 3]"});
  entry("shape: unsqueeze dim out of range", [] { unsqueeze(z({2, 3}), 4); }, {"unsqueeze", "dim 4", "[2, 3]"});
  entry("shape: permute wrong number of dims", [] { permute(z({2, 3, 4}), {0, 1}); }, {"permute", "[2, 3, 4]"});
  entry("shape: permute repeated dim", [] { permute(z({2, 3, 4}), {0, 0, 1}); }, {"permute", "repeated", "[2, 3, 4]"});
  entry("shape: permute dim out of range", [] { permute(z({2, 3}), {0, 2}); }, {"permute", "dim 2", "[2, 3]"});
  entry("shape: transpose dim out of range", [] { transpose(z({2, 3}), 0, 2); }, {"transpose", "dim 2", "[2, 3]"});
  entry("shape: narrow past the end", [] { narrow(z({2, 5}), 1, 3, 4); }, {"narrow", "[3, 7)", "[2, 5]"});
  entry("shape: narrow negative length", [] { narrow(z({2, 5}), 1, 1, -1); }, {"narrow", "[2, 5]"});
  entry("shape: slice zero step", [] { slice(z({6}), 0, 0, 6, 0); }, {"slice", "step", "[6]"});
  entry("shape: select index out of range", [] { select(z({2, 3}), 1, 3); }, {"select", "index 3", "[2, 3]"});
  entry("shape: select negative index out of range", [] { select(z({2, 3}), 0, -3); }, {"select", "index -3", "[2, 3]"});
  entry("shape: index_select index out of range", [] { index_select(z({3, 2}), 0, idx({0, 3})); },
      {"index_select", "index 3", "[3, 2]"});
  entry("shape: index_select negative index", [] { index_select(z({3, 2}), 1, idx({-1})); },
      {"index_select", "index -1", "[3, 2]"});
  entry("shape: index_select float index", [] { index_select(z({3, 2}), 0, z({2})); }, {"index_select", "float32", "[2]"});
  entry("shape: expand incompatible", [] { expand(z({2, 3}), {4, 3}); }, {"expand", "[2, 3]", "[4, 3]"});
  entry("shape: expand to fewer dims", [] { expand(z({2, 3}), {3}); }, {"expand", "[2, 3]", "[3]"});
  entry("shape: expand negative size", [] { expand(z({3}), {-2, 3}); }, {"expand", "[3]", "[-2, 3]"});
  entry("shape: cat mismatched shapes", [] { cat({z({2, 3}), z({2, 4})}, 0); }, {"cat", "[2, 3]", "[2, 4]"});
  entry("shape: cat mismatched ranks", [] { cat({z({2, 3}), z({2, 3, 1})}, 1); }, {"cat", "[2, 3]", "[2, 3, 1]"});
  entry("shape: cat no tensors", [] { cat({}, 0); }, {"cat", "no tensors"});
  entry("shape: cat dim out of range", [] { cat({z({2, 3}), z({2, 3})}, 2); }, {"cat", "dim 2", "[2, 3]"});
  entry("shape: stack mismatched shapes", [] { stack({z({2, 3}), z({3, 2})}); }, {"stack", "[2, 3]", "[3, 2]"});
  entry("shape: stack dim out of range", [] { stack({z({2}), z({2})}, 3); }, {"stack", "dim 3", "[2]"});
  entry("shape: chunk zero chunks", [] { chunk(z({4}), 0); }, {"chunk", "0"});
  entry("shape: split zero size", [] { split(z({4}), 0); }, {"split", "0"});

  // ---------------------------------------------------------------- core: matmul, linear
  entry("matmul: inner dims", [] { matmul(z({2, 3}), z({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]"});
  entry("matmul: batch dims", [] { matmul(z({2, 3, 4}), z({3, 4, 5})); }, {"matmul", "[2, 3, 4]", "[3, 4, 5]"});
  entry("matmul: 1-D operands", [] { matmul(z({3}), z({4})); }, {"matmul", "[3]", "[4]"});
  entry("matmul: 0-d operand", [] { matmul(z({}), z({4})); }, {"matmul", "[]", "[4]"});
  entry("matmul: dtype mismatch", [] { matmul(z({2, 2}), z({2, 2}, kFloat64)); }, {"matmul", "float32", "float64"});
  entry("linear: input does not match weight", [] { linear(z({4, 3}), z({2, 5}), z({2})); },
      {"linear", "[4, 3]", "[2, 5]"});
  entry("linear: bias does not match weight", [] { linear(z({4, 5}), z({2, 5}), z({3})); },
      {"linear", "bias", "[3]", "[2, 5]"});
  entry("linear: 1-D weight", [] { linear(z({4, 5}), z({5}), Tensor()); }, {"linear", "[4, 5]", "[5]"});

  // ---------------------------------------------------------------- core: nn functional
  entry("layer_norm: input does not end with normalized_shape", [] { layer_norm(z({2, 3}), {4}, Tensor(), Tensor()); },
      {"layer_norm", "[2, 3]", "[4]"});
  entry("layer_norm: weight shape", [] { layer_norm(z({2, 3}), {3}, z({2}), Tensor()); }, {"layer_norm", "weight", "[2]", "[3]"});
  entry("layer_norm: bias shape", [] { layer_norm(z({2, 3}), {3}, z({3}), z({4})); }, {"layer_norm", "bias", "[4]", "[3]"});
  entry("embedding: index out of range", [] { embedding(z({5, 3}), idx({1, 7})); }, {"embedding", "7", "[5, 3]"});
  entry("embedding: negative index", [] { embedding(z({5, 3}), idx({-1})); }, {"embedding", "-1", "[5, 3]"});
  entry("embedding: float indices", [] { embedding(z({5, 3}), z({2})); }, {"embedding", "float32", "[5, 3]"});
  entry("embedding: 1-D weight", [] { embedding(z({5}), idx({0})); }, {"embedding", "[5]"});
  entry("dropout: p > 1", [] { dropout(z({3}), 1.5, true); }, {"dropout", "1.5"});
  entry("dropout: p < 0", [] { dropout(z({3}), -0.5, false); }, {"dropout", "-0.5"});
  entry("loss: mse_loss shape mismatch", [] { mse_loss(z({2, 3}), z({3, 2})); }, {"mse_loss", "[2, 3]", "[3, 2]"});
  entry("loss: l1_loss shape mismatch", [] { l1_loss(z({4}), z({4, 1})); }, {"l1_loss", "[4]", "[4, 1]"});
  entry("loss: BCE with logits shape mismatch", [] { binary_cross_entropy_with_logits(z({8, 1}), z({8})); },
      {"binary_cross_entropy_with_logits", "[8, 1]", "[8]"});
  entry("loss: nll_loss target out of range", [] { nll_loss(z({2, 3}), idx({0, 3})); },
      {"nll_loss", "target 3", "[2, 3]"});
  entry("loss: nll_loss negative target", [] { nll_loss(z({2, 3}), idx({-1, 0})); }, {"nll_loss", "target -1", "[2, 3]"});
  entry("loss: nll_loss target count", [] { nll_loss(z({2, 3}), idx({0, 1, 2})); }, {"nll_loss", "[2, 3]", "[3]"});
  entry("loss: nll_loss float target", [] { nll_loss(z({2, 3}), z({2})); }, {"nll_loss", "float32", "[2]"});
  entry("loss: nll_loss 1-D log_probs", [] { nll_loss(z({3}), idx({0})); }, {"nll_loss", "[3]"});
  entry("loss: cross_entropy target out of range", [] { cross_entropy(z({2, 4}), idx({4, 0})); },
      {"cross_entropy", "target 4", "[2, 4]"});

  // ---------------------------------------------------------------- recurrent
  entry("LSTM: 2-D input", [] { nn::LSTM m(3, 8); m.forward(z({5, 3})); }, {"LSTM", "[5, 3]"});
  entry("LSTM: wrong input size", [] { nn::LSTM m(3, 8); m.forward(z({5, 2, 4})); }, {"LSTM", "[5, 2, 4]", "input_size 3"});
  entry("LSTM: float64 input for float32 parameters", [] { nn::LSTM m(3, 8); m.forward(z({5, 2, 3}, kFloat64)); },
      {"LSTM", "float64", "float32"});
  entry("LSTM: empty sequence", [] { nn::LSTM m(3, 8); m.forward(z({0, 2, 3})); }, {"LSTM", "[0, 2, 3]"});
  entry("LSTM: bad h0 shape", [] { nn::LSTM m(3, 8); m.forward(z({5, 2, 3}), {z({1, 3, 8}), z({1, 2, 8})}); },
      {"LSTM", "[1, 2, 8]", "[1, 3, 8]"});
  entry("LSTM: bad c0 shape", [] { nn::LSTM m(3, 8); m.forward(z({5, 2, 3}), {z({1, 2, 8}), z({2, 8})}); },
      {"LSTM", "[1, 2, 8]", "[2, 8]"});
  entry("LSTM: h0 missing the layer dim of a 2-layer LSTM",
      [] {
        nn::LSTM m(nn::LSTMOptions(3, 8).num_layers(2));
        m.forward(z({5, 2, 3}), {z({1, 2, 8}), Tensor()});
      },
      {"LSTM", "[2, 2, 8]", "[1, 2, 8]"});
  entry("LSTM: length longer than the sequence", [] { nn::LSTM m(3, 8); m.forward(z({5, 2, 3}), std::vector<int64_t>{6, 3}); },
      {"LSTM", "length 6", "5"});
  entry("LSTM: zero length", [] { nn::LSTM m(3, 8); m.forward(z({5, 2, 3}), std::vector<int64_t>{0, 3}); },
      {"LSTM", "length 0", "[0, 3]"});
  entry("LSTM: wrong number of lengths", [] { nn::LSTM m(3, 8); m.forward(z({5, 2, 3}), std::vector<int64_t>{5, 4, 3}); },
      {"LSTM", "3 lengths", "batch of 2"});
  entry("LSTM: batch_first length longer than the sequence",
      [] {
        nn::LSTM m(nn::LSTMOptions(3, 8).batch_first(true));
        m.forward(z({2, 5, 3}), std::vector<int64_t>{5, 9});
      },
      {"LSTM", "length 9", "5"});
  entry("LSTM: zero hidden size", [] { nn::LSTM m(3, 0); }, {"LSTM", "hidden_size (0)"});
  entry("LSTM: negative input size", [] { nn::LSTM m(-3, 4); }, {"LSTM", "input_size (-3)"});
  entry("LSTM: dropout > 1", [] { nn::LSTM m(nn::LSTMOptions(3, 4).num_layers(2).dropout(1.5)); }, {"LSTM", "1.5"});
  entry("GRU: 4-D input", [] { nn::GRU m(3, 8); m.forward(z({5, 2, 3, 1})); }, {"GRU", "[5, 2, 3, 1]"});
  entry("GRU: wrong input size", [] { nn::GRU m(3, 8); m.forward(z({5, 2, 2})); }, {"GRU", "[5, 2, 2]", "input_size 3"});
  entry("GRU: bad h0 shape", [] { nn::GRU m(3, 8); m.forward(z({5, 2, 3}), z({1, 2, 7})); }, {"GRU", "[1, 2, 8]", "[1, 2, 7]"});
  entry("GRU: bidirectional h0 with one direction",
      [] {
        nn::GRU m(nn::GRUOptions(3, 8).bidirectional(true));
        m.forward(z({5, 2, 3}), z({1, 2, 8}));
      },
      {"GRU", "[2, 2, 8]", "[1, 2, 8]"});
  entry("GRU: length longer than the sequence", [] { nn::GRU m(3, 8); m.forward(z({4, 2, 3}), std::vector<int64_t>{4, 5}); },
      {"GRU", "length 5", "4"});
  entry("GRU: wrong number of lengths", [] { nn::GRU m(3, 8); m.forward(z({4, 2, 3}), std::vector<int64_t>{4}); },
      {"GRU", "1 lengths", "batch of 2"});
  entry("LSTMCell: wrong input size", [] { nn::LSTMCell c(3, 8); c.forward(z({2, 4})); }, {"LSTMCell", "[2, 4]"});
  entry("LSTMCell: 1-D input", [] { nn::LSTMCell c(3, 8); c.forward(z({3})); }, {"LSTMCell", "[3]"});
  entry("LSTMCell: bad h", [] { nn::LSTMCell c(3, 8); c.forward(z({2, 3}), {z({2, 7}), Tensor()}); },
      {"LSTMCell", "[2, 8]", "[2, 7]"});
  entry("LSTMCell: bad c", [] { nn::LSTMCell c(3, 8); c.forward(z({2, 3}), {Tensor(), z({3, 8})}); },
      {"LSTMCell", "[2, 8]", "[3, 8]"});
  entry("LSTMCell: zero size", [] { nn::LSTMCell c(0, 8); }, {"LSTMCell", "input_size=0"});
  entry("GRUCell: wrong input size", [] { nn::GRUCell c(3, 8); c.forward(z({2, 5})); }, {"GRUCell", "[2, 5]"});
  entry("GRUCell: bad h", [] { nn::GRUCell c(3, 8); c.forward(z({2, 3}), z({1, 8})); }, {"GRUCell", "[2, 8]", "[1, 8]"});
  entry("GRUCell: negative size", [] { nn::GRUCell c(3, -1); }, {"GRUCell", "hidden_size=-1"});

  // ---------------------------------------------------------------- attention
  entry("sdpa: q/k feature dims differ", [] { scaled_dot_product_attention(z({2, 4, 8}), z({2, 5, 6}), z({2, 5, 6})); },
      {"scaled_dot_product_attention", "[2, 4, 8]", "[2, 5, 6]"});
  entry("sdpa: k/v lengths differ", [] { scaled_dot_product_attention(z({2, 4, 8}), z({2, 5, 8}), z({2, 6, 8})); },
      {"scaled_dot_product_attention", "[2, 5, 8]", "[2, 6, 8]"});
  entry("sdpa: 1-D inputs", [] { scaled_dot_product_attention(z({8}), z({8}), z({8})); },
      {"scaled_dot_product_attention", "[8]"});
  entry("sdpa: mask of the wrong shape", [] { scaled_dot_product_attention(z({2, 4, 8}), z({2, 5, 8}), z({2, 5, 8}), b({4, 4})); },
      {"scaled_dot_product_attention", "[4, 4]", "[2, 4, 5]"});
  entry("sdpa: integer mask",
      [] { scaled_dot_product_attention(z({2, 4, 8}), z({2, 5, 8}), z({2, 5, 8}), z({4, 5}, kInt64)); },
      {"scaled_dot_product_attention", "int64"});
  entry("sdpa: dropout_p = 1", [] { scaled_dot_product_attention(z({2, 4, 8}), z({2, 5, 8}), z({2, 5, 8}), Tensor(), false, 1.0); },
      {"scaled_dot_product_attention", "dropout_p", "1"});
  entry("sdpa: key_padding_mask of the wrong shape",
      [] {
        scaled_dot_product_attention(z({2, 4, 8}), z({2, 5, 8}), z({2, 5, 8}), Tensor(), false, 0.0, kDefaultAttnScale,
                                     b({2, 4}));
      },
      {"scaled_dot_product_attention", "key_padding_mask", "[2, 4]"});
  entry("MultiheadAttention: num_heads does not divide embed_dim",
      [] { nn::MultiheadAttention m(nn::MultiheadAttentionOptions(10, 3)); }, {"MultiheadAttention", "10", "3"});
  entry("MultiheadAttention: zero heads", [] { nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 0)); },
      {"MultiheadAttention", "8", "0"});
  entry("MultiheadAttention: query of the wrong embed dim",
      [] {
        nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 2));
        m.forward(z({4, 2, 6}), z({4, 2, 8}), z({4, 2, 8}));
      },
      {"MultiheadAttention", "[4, 2, 6]", "8"});
  entry("MultiheadAttention: key/value batch mismatch",
      [] {
        nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 2));
        m.forward(z({4, 2, 8}), z({5, 3, 8}), z({5, 3, 8}));
      },
      {"MultiheadAttention", "[4, 2, 8]", "[5, 3, 8]"});
  entry("MultiheadAttention: 4-D query",
      [] {
        nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 2));
        m.forward(z({4, 2, 1, 8}), z({4, 2, 8}), z({4, 2, 8}));
      },
      {"MultiheadAttention", "[4, 2, 1, 8]"});
  entry("MultiheadAttention: key_padding_mask of the wrong shape",
      [] {
        nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 2));
        m.forward(z({4, 2, 8}), z({5, 2, 8}), z({5, 2, 8}), b({2, 4}));
      },
      {"MultiheadAttention", "key_padding_mask", "[2, 4]"});
  entry("MultiheadAttention: attn_mask of the wrong shape",
      [] {
        nn::MultiheadAttention m(nn::MultiheadAttentionOptions(8, 2));
        m.forward(z({4, 2, 8}), z({5, 2, 8}), z({5, 2, 8}), Tensor(), true, b({4, 4}));
      },
      {"MultiheadAttention", "attn_mask", "[4, 4]"});
  entry("TransformerEncoderLayer: nhead does not divide d_model",
      [] { nn::TransformerEncoderLayer l(nn::TransformerEncoderLayerOptions(10, 4)); }, {"10", "4"});
  entry("additive_attention: keys/values lengths differ",
      [] { additive_attention(z({2, 1, 4}), z({2, 5, 3}), z({2, 6, 3}), z({7, 4}), z({7, 3}), z({7})); },
      {"additive_attention", "[2, 5, 3]", "[2, 6, 3]"});
  entry("additive_attention: W_k does not match keys",
      [] { additive_attention(z({2, 1, 4}), z({2, 5, 3}), z({2, 5, 3}), z({7, 4}), z({7, 2}), z({7})); },
      {"additive_attention", "[7, 2]", "[2, 5, 3]"});
  entry("additive_attention: v of the wrong size",
      [] { additive_attention(z({2, 1, 4}), z({2, 5, 3}), z({2, 5, 3}), z({7, 4}), z({7, 3}), z({6})); },
      {"additive_attention", "[6]", "7"});
  entry("AdditiveAttention: 4-D query", [] { nn::AdditiveAttention a(4, 3, 7); a.forward(z({2, 1, 1, 4}), z({2, 5, 3})); },
      {"AdditiveAttention", "[2, 1, 1, 4]"});
  entry("AdditiveAttention: keys of the wrong feature size", [] { nn::AdditiveAttention a(4, 3, 7); a.forward(z({2, 4}), z({2, 5, 2})); },
      {"additive_attention", "[2, 5, 2]"});
  entry("AdditiveAttention: mask of the wrong shape",
      [] { nn::AdditiveAttention a(4, 3, 7); a.forward(z({2, 4}), z({2, 5, 3}), z({2, 5, 3}), b({2, 4})); },
      {"additive_attention", "[2, 4]", "[2, 5]"});
  entry("linear_attention: ranks differ", [] { linear_attention(z({2, 4, 8}), z({5, 8}), z({5, 8})); },
      {"linear_attention", "[2, 4, 8]", "[5, 8]"});
  entry("linear_attention: feature dims differ", [] { linear_attention(z({2, 4, 8}), z({2, 5, 6}), z({2, 5, 6})); },
      {"linear_attention", "[2, 4, 8]", "[2, 5, 6]"});
  entry("linear_attention: causal with L != S", [] { linear_attention(z({2, 4, 8}), z({2, 5, 8}), z({2, 5, 8}), true); },
      {"linear_attention", "[2, 4, 8]", "[2, 5, 8]"});
  entry("LinearAttention: num_heads does not divide embed_dim", [] { nn::LinearAttention m(10, 4); },
      {"LinearAttention", "10", "4"});
  entry("LinearAttention: input of the wrong embed dim", [] { nn::LinearAttention m(8, 2); m.forward(z({2, 4, 6})); },
      {"LinearAttention", "[2, 4, 6]", "8"});
  entry("windowed_attention: negative window", [] { windowed_attention(z({2, 6, 4}), z({2, 6, 4}), z({2, 6, 4}), -1, 2); },
      {"windowed_attention", "left=-1", "[2, 6, 4]"});
  entry("windowed_attention: q/k feature dims differ",
      [] { windowed_attention(z({2, 6, 4}), z({2, 6, 5}), z({2, 6, 5}), 1, 1); },
      {"windowed_attention", "[2, 6, 4]", "[2, 6, 5]"});
  entry("windowed_attention: key_padding_mask of the wrong shape",
      [] {
        windowed_attention(z({2, 6, 4}), z({2, 6, 4}), z({2, 6, 4}), 1, 1, false,
                           std::numeric_limits<double>::quiet_NaN(), b({2, 5}));
      },
      {"windowed_attention", "[2, 5]"});
  entry("WindowedAttention: negative window", [] { nn::WindowedAttention m(8, 2, 2, -3); },
      {"WindowedAttention", "right=-3"});
  entry("WindowedAttention: input of the wrong embed dim", [] { nn::WindowedAttention m(8, 2, 2, 2); m.forward(z({2, 6, 4})); },
      {"WindowedAttention", "[2, 6, 4]", "8"});
  entry("block_local_attention: zero block", [] { block_local_attention(z({2, 6, 4}), z({2, 6, 4}), z({2, 6, 4}), 0); },
      {"block_local_attention", "[2, 6, 4]"});
  entry("attention_pooling: 2-D h", [] { nn::AttentionPooling p(4, 3); p.forward(z({2, 4})); }, {"attention_pooling", "[2, 4]"});
  entry("AttentionPooling: mask of the wrong shape", [] { nn::AttentionPooling p(4, 3); p.forward(z({2, 5, 4}), b({2, 4})); },
      {"attention_pooling", "[2, 4]", "[2, 5]"});
  entry("AttentionPooling: float mask", [] { nn::AttentionPooling p(4, 3); p.forward(z({2, 5, 4}), z({2, 5})); },
      {"attention_pooling", "float32", "[2, 5]"});
  entry("AttentionPooling: h of the wrong feature size", [] { nn::AttentionPooling p(4, 3); p.forward(z({2, 5, 6})); },
      {"attention_pooling", "[2, 5, 6]"});
  entry("AttentionPooling: wrong number of lengths",
      [] { nn::AttentionPooling p(4, 3); p.forward(z({2, 5, 4}), std::vector<int64_t>{5}); },
      {"AttentionPooling", "1 lengths", "[2, 5, 4]"});
  entry("AttentionPooling: length longer than the sequence",
      [] { nn::AttentionPooling p(4, 3); p.forward(z({2, 5, 4}), std::vector<int64_t>{5, 9}); },
      {"AttentionPooling", "9", "[2, 5, 4]"});
  entry("causal_mask: negative size", [] { causal_mask(-2); }, {"causal_mask", "-2"});

  // ---------------------------------------------------------------- positional
  entry("LearnedPositionalEncoding: past max_len", [] { nn::LearnedPositionalEncoding p(8, 4); p.forward(z({2, 10, 4})); },
      {"LearnedPositionalEncoding", "10", "max_len 8", "[2, 10, 4]"});
  entry("LearnedPositionalEncoding: offset past max_len",
      [] { nn::LearnedPositionalEncoding p(8, 4); p.forward(z({2, 4, 4}), 6); },
      {"LearnedPositionalEncoding", "offset 6", "max_len 8"});
  entry("LearnedPositionalEncoding: wrong d_model", [] { nn::LearnedPositionalEncoding p(8, 4); p.forward(z({2, 3, 5})); },
      {"LearnedPositionalEncoding", "[2, 3, 5]", "4"});
  entry("LearnedPositionalEncoding: zero max_len", [] { nn::LearnedPositionalEncoding p(0, 4); },
      {"LearnedPositionalEncoding", "0"});
  entry("SinusoidalPositionalEncoding: past max_len",
      [] { nn::SinusoidalPositionalEncoding p(4, 8); p.forward(z({2, 9, 4})); }, {"SinusoidalPositionalEncoding", "9", "8"});
  entry("SinusoidalPositionalEncoding: wrong d_model",
      [] { nn::SinusoidalPositionalEncoding p(4); p.forward(z({2, 9, 6})); }, {"SinusoidalPositionalEncoding", "[2, 9, 6]"});
  entry("apply_rotary: odd feature dim", [] { apply_rotary(z({2, 5, 3})); }, {"apply_rotary", "[2, 5, 3]"});
  entry("RelativePositionBias: zero heads", [] { nn::RelativePositionBias r(0, 4); }, {"RelativePositionBias", "0"});

  // ---------------------------------------------------------------- modules and optimizers
  entry("nn::Linear: zero in_features", [] { nn::Linear l(0, 3); }, {"Linear", "in=0"});
  entry("nn::Linear: negative out_features", [] { nn::Linear l(3, -2); }, {"Linear", "out=-2"});
  entry("nn::Linear: forward with the wrong in_features", [] { nn::Linear l(3, 2); l.forward(z({4, 5})); },
      {"linear", "[4, 5]", "[2, 3]"});
  entry("nn::Dropout: p > 1", [] { nn::Dropout d(1.5); }, {"Dropout", "1.5"});
  entry("nn::Dropout: p < 0", [] { nn::Dropout d(-0.1); }, {"Dropout", "-0.1"});
  entry("nn::Embedding: zero rows", [] { nn::Embedding e(0, 3); }, {"Embedding", "0"});
  entry("nn::Embedding: index out of range", [] { nn::Embedding e(5, 3); e.forward(idx({5})); }, {"embedding", "5", "[5, 3]"});
  entry("nn::LayerNorm: input of the wrong size", [] { nn::LayerNorm n(4); n.forward(z({2, 3})); },
      {"layer_norm", "[2, 3]", "[4]"});
  entry("optim::SGD: negative lr", [] { Tensor p = z({2}).requires_grad_(); optim::SGD o({p}, optim::SGDOptions(-0.1)); },
      {"SGD", "-0.1"});
  entry("optim::Adam: negative lr", [] { Tensor p = z({2}).requires_grad_(); optim::Adam o({p}, optim::AdamOptions(-1e-3)); },
      {"Adam", "-0.001"});
  entry("optim::AdamW: negative lr",
      [] { Tensor p = z({2}).requires_grad_(); optim::AdamW o({p}, optim::AdamWOptions{}); o.set_lr(-1.0); },
      {"AdamW", "-1"});
  entry("optim::Adam: beta1 = 1",
      [] { Tensor p = z({2}).requires_grad_(); optim::Adam o({p}, optim::AdamOptions(1e-3).betas(1.0, 0.999)); },
      {"Adam", "betas"});
  entry("optim::SGD: nesterov without momentum",
      [] { Tensor p = z({2}).requires_grad_(); optim::SGD o({p}, optim::SGDOptions(0.1).nesterov(true)); },
      {"SGD", "nesterov"});
  entry("optim::SGD: int64 parameter", [] { optim::SGD o({z({2}, kInt64)}, optim::SGDOptions(0.1)); }, {"SGD", "parameter 0"});
  entry("optim::StepLR: zero step_size",
      [] {
        Tensor p = z({2}).requires_grad_();
        optim::SGD o({p}, optim::SGDOptions(0.1));
        optim::StepLR s(o, 0);
      },
      {"StepLR", "0"});
  return t;
}

}  // namespace

TEST_CASE("bad calls: every entry throws invalid_argument naming the op and the shapes", "[bad_calls]") {
  const auto table = bad_calls();
  int passed = 0;
  std::set<std::string> names;
  for (const BadCall& c : table) {
    INFO("entry: " << c.name);
    CHECK(names.insert(c.name).second);  // entries are distinct
    bool threw_right_type = false;
    std::string message;
    try {
      c.call();
    } catch (const std::invalid_argument& e) {
      threw_right_type = true;
      message = e.what();
    } catch (const std::exception& e) {
      FAIL_CHECK("threw a non-invalid_argument exception: " << e.what());
      continue;
    } catch (...) {
      FAIL_CHECK("threw something that is not a std::exception");
      continue;
    }
    if (!threw_right_type) {
      FAIL_CHECK("did not throw");
      continue;
    }
    INFO("message: " << message);
    bool ok = true;
    for (const std::string& s : c.must_contain) {
      const bool has = message.find(s) != std::string::npos;
      if (!has) UNSCOPED_INFO("missing substring: '" << s << "'");
      ok = ok && has;
    }
    CHECK(ok);
    passed += ok ? 1 : 0;
  }
  WARN("bad calls tried: " << table.size() << ", passing: " << passed);
  CHECK(table.size() >= 60);
  CHECK(passed == int(table.size()));
}

// Bad calls leave the library usable: after a failed call the same objects work normally.
TEST_CASE("bad calls: a failed call leaves modules and tensors usable", "[bad_calls]") {
  nn::LSTM lstm(3, 4);
  CHECK_THROWS_AS(lstm.forward(z({5, 2, 4})), std::invalid_argument);
  auto r = lstm.forward(Tensor::randn({5, 2, 3}));
  CHECK(r.first.shape() == Shape({5, 2, 4}));
  Tensor x = Tensor::randn({2, 3}).requires_grad_();
  CHECK_THROWS_AS(matmul(x, z({2, 3})), std::invalid_argument);
  sum(matmul(x, z({3, 2}))).backward();
  CHECK(x.grad().shape() == Shape({2, 3}));
}
