// Bad input raises an exception derived from std::invalid_argument whose message names the
// operation and the shapes involved: no abort, no undefined behaviour.
#include "test_util.hpp"

using namespace attn;
using Catch::Contains;

namespace {
Tensor z(const Shape& s, DType d = kFloat32) { return Tensor::zeros(s, d); }
}  // namespace

// Every check: the type, then the message content.
#define REQUIRE_SHAPE_ERROR(expr, matcher)               \
  do {                                                   \
    CHECK_THROWS_AS(expr, std::invalid_argument);        \
    CHECK_THROWS_WITH(expr, matcher);                    \
  } while (0)

TEST_CASE("errors: matmul with incompatible shapes", "[errors]") {
  REQUIRE_SHAPE_ERROR(matmul(z({2, 3}), z({4, 5})), Contains("matmul") && Contains("[2, 3]") && Contains("[4, 5]"));
  REQUIRE_SHAPE_ERROR(matmul(z({2, 2, 3}), z({2, 4, 5})),
                      Contains("matmul") && Contains("[2, 2, 3]") && Contains("[2, 4, 5]"));
  // batch dims that do not broadcast
  REQUIRE_SHAPE_ERROR(matmul(z({2, 3, 4}), z({3, 4, 5})),
                      Contains("matmul") && Contains("[2, 3, 4]") && Contains("[3, 4, 5]"));
  // 1-D operands: the message shows the shapes the user passed
  REQUIRE_SHAPE_ERROR(matmul(z({3}), z({4})), Contains("matmul") && Contains("[3]") && Contains("[4]"));
  REQUIRE_SHAPE_ERROR(matmul(z({3}), z({4, 2})), Contains("matmul") && Contains("[3]") && Contains("[4, 2]"));
  REQUIRE_SHAPE_ERROR(matmul(z({2, 3}), z({4})), Contains("matmul") && Contains("[2, 3]") && Contains("[4]"));
  REQUIRE_SHAPE_ERROR(matmul(z({}), z({4})), Contains("matmul") && Contains("[]") && Contains("[4]"));
  REQUIRE_SHAPE_ERROR(matmul(z({2, 3}), z({3, 2}, kFloat64)), Contains("matmul") && Contains("float64"));
}

TEST_CASE("errors: broadcasting arithmetic", "[errors]") {
  REQUIRE_SHAPE_ERROR(add(z({2, 3}), z({4})), Contains("add") && Contains("[2, 3]") && Contains("[4]"));
  REQUIRE_SHAPE_ERROR(z({2, 3}) + z({3, 2}), Contains("add") && Contains("[2, 3]") && Contains("[3, 2]"));
  REQUIRE_SHAPE_ERROR(sub(z({5}), z({4})), Contains("sub") && Contains("[5]") && Contains("[4]"));
  REQUIRE_SHAPE_ERROR(mul(z({2, 1, 3}), z({4, 2})), Contains("mul") && Contains("[2, 1, 3]") && Contains("[4, 2]"));
  REQUIRE_SHAPE_ERROR(div(z({3}), z({2})), Contains("div") && Contains("[3]") && Contains("[2]"));
  REQUIRE_SHAPE_ERROR(maximum(z({3}), z({2})), Contains("maximum") && Contains("[3]") && Contains("[2]"));
  REQUIRE_SHAPE_ERROR(where(z({2}, kBool), z({3}), z({3})), Contains("where") && Contains("[2]") && Contains("[3]"));
  REQUIRE_SHAPE_ERROR(masked_fill(z({2, 3}), z({2, 4}, kBool), 0.0),
                      Contains("masked_fill") && Contains("[2, 3]") && Contains("[2, 4]"));
  REQUIRE_SHAPE_ERROR(masked_fill(z({3}), z({2, 3}, kBool), 0.0),
                      Contains("masked_fill") && Contains("[3]") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(add(z({2}), z({2}, kFloat64)), Contains("add") && Contains("float32") && Contains("float64"));
  REQUIRE_SHAPE_ERROR(exp(z({2}, kInt64)), Contains("exp") && Contains("int64"));
}

TEST_CASE("errors: cat and stack", "[errors]") {
  REQUIRE_SHAPE_ERROR(cat({z({2, 3}), z({2, 4})}, 0), Contains("cat") && Contains("[2, 3]") && Contains("[2, 4]"));
  REQUIRE_SHAPE_ERROR(cat({z({2, 3}), z({2, 3, 1})}, 1), Contains("cat") && Contains("[2, 3]") && Contains("[2, 3, 1]"));
  REQUIRE_SHAPE_ERROR(cat({z({2, 3}), z({2, 3})}, 2), Contains("cat") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(cat({z({2}), z({2}, kFloat64)}, 0), Contains("cat") && Contains("float64"));
  REQUIRE_SHAPE_ERROR(cat({}, 0), Contains("cat"));
  REQUIRE_SHAPE_ERROR(stack({z({2, 3}), z({3, 2})}, 0), Contains("stack") && Contains("[2, 3]") && Contains("[3, 2]"));
}

TEST_CASE("errors: reshape, view, expand, permute, transpose, squeeze", "[errors]") {
  REQUIRE_SHAPE_ERROR(reshape(z({2, 3}), {4, 2}), Contains("reshape") && Contains("[2, 3]") && Contains("[4, 2]"));
  REQUIRE_SHAPE_ERROR(z({2, 3}).view({5, -1}), Contains("reshape") && Contains("[2, 3]") && Contains("[5, -1]"));
  REQUIRE_SHAPE_ERROR(reshape(z({2, 3}), {-1, -1}), Contains("reshape") && Contains("[-1, -1]"));
  REQUIRE_SHAPE_ERROR(expand(z({2, 3}), {4, 3}), Contains("expand") && Contains("[2, 3]") && Contains("[4, 3]"));
  REQUIRE_SHAPE_ERROR(expand(z({2, 3}), {3}), Contains("expand") && Contains("[2, 3]") && Contains("[3]"));
  REQUIRE_SHAPE_ERROR(permute(z({2, 3}), {0}), Contains("permute") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(permute(z({2, 3}), {0, 0}), Contains("permute") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(transpose(z({2, 3}), 0, 2), Contains("transpose") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(unsqueeze(z({2, 3}), 4), Contains("unsqueeze") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(flatten(z({2, 3}), 3), Contains("flatten") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(Tensor::zeros({2, -1}), Contains("[2, -1]"));
}

TEST_CASE("errors: index ops out of range", "[errors]") {
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 5});
  REQUIRE_SHAPE_ERROR(index_select(z({3, 2}), 0, idx),
                      Contains("index_select") && Contains("5") && Contains("[3, 2]"));
  REQUIRE_SHAPE_ERROR(index_select(z({3, 2}), 0, Tensor::from_vector(std::vector<int64_t>{-1})),
                      Contains("index_select") && Contains("-1") && Contains("[3, 2]"));
  REQUIRE_SHAPE_ERROR(index_select(z({3, 2}), 0, z({2})), Contains("index_select") && Contains("int64"));
  REQUIRE_SHAPE_ERROR(narrow(z({3}), 0, 1, 3), Contains("narrow") && Contains("[3]"));
  REQUIRE_SHAPE_ERROR(narrow(z({3, 4}), 1, 3, 2), Contains("narrow") && Contains("[3, 4]"));
  REQUIRE_SHAPE_ERROR(select(z({3, 4}), 1, 4), Contains("select") && Contains("[3, 4]"));
  REQUIRE_SHAPE_ERROR(select(z({3, 4}), 0, -4), Contains("select") && Contains("[3, 4]"));
  REQUIRE_SHAPE_ERROR(slice(z({3, 4}), 0, 0, 2, 0), Contains("slice") && Contains("step"));
  REQUIRE_SHAPE_ERROR(split(z({3, 4}), 0, 0), Contains("split"));
  REQUIRE_SHAPE_ERROR(embedding(z({5, 2}), Tensor::from_vector(std::vector<int64_t>{1, 5})),
                      Contains("5") && Contains("[5, 2]"));
  REQUIRE_SHAPE_ERROR(embedding(z({5}), Tensor::from_vector(std::vector<int64_t>{1})),
                      Contains("embedding") && Contains("[5]"));
  REQUIRE_SHAPE_ERROR(z({2, 3}).at({2, 0}), Contains("at") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(z({2, 3}).size(2), Contains("size") && Contains("[2, 3]"));
}

TEST_CASE("errors: reductions and softmax with dim out of range", "[errors]") {
  REQUIRE_SHAPE_ERROR(softmax(z({2, 3}), 2), Contains("softmax") && Contains("2") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(softmax(z({2, 3}), -3), Contains("softmax") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(log_softmax(z({2, 3}), 5), Contains("log_softmax") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(sum(z({2, 3}), 2), Contains("sum") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(mean(z({2, 3}), -3), Contains("mean") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(max(z({2, 3}), 2), Contains("max") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(var(z({2, 1}), 1), Contains("var") && Contains("[2, 1]"));
  REQUIRE_SHAPE_ERROR(max(z({2, 0}), 1), Contains("max") && Contains("[2, 0]"));
}

TEST_CASE("errors: linear, layer_norm, losses", "[errors]") {
  REQUIRE_SHAPE_ERROR(linear(z({2, 3}), z({4, 5}), z({4})),
                      Contains("linear") && Contains("[2, 3]") && Contains("[4, 5]"));
  REQUIRE_SHAPE_ERROR(linear(z({2, 5}), z({4, 5}), z({3})), Contains("linear") && Contains("[3]") && Contains("[4, 5]"));
  REQUIRE_SHAPE_ERROR(linear(z({2, 5}), z({5}), Tensor()), Contains("linear") && Contains("[2, 5]") && Contains("[5]"));
  nn::Linear lin(3, 2);
  REQUIRE_SHAPE_ERROR(lin.forward(z({4, 4})), Contains("linear") && Contains("[4, 4]") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(layer_norm(z({2, 3}), {4}, Tensor(), Tensor()),
                      Contains("layer_norm") && Contains("[2, 3]") && Contains("[4]"));
  REQUIRE_SHAPE_ERROR(layer_norm(z({2, 3}), {3}, z({4}), Tensor()), Contains("layer_norm") && Contains("[4]"));
  REQUIRE_SHAPE_ERROR(mse_loss(z({2, 3}), z({3, 2})), Contains("mse_loss") && Contains("[2, 3]") && Contains("[3, 2]"));
  REQUIRE_SHAPE_ERROR(l1_loss(z({2}), z({3})), Contains("l1_loss") && Contains("[2]") && Contains("[3]"));
  REQUIRE_SHAPE_ERROR(binary_cross_entropy_with_logits(z({2}), z({2, 1})),
                      Contains("binary_cross_entropy_with_logits") && Contains("[2]") && Contains("[2, 1]"));
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{0, 3});
  REQUIRE_SHAPE_ERROR(cross_entropy(z({2, 3}), t), Contains("nll_loss") && Contains("3") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(cross_entropy(z({3, 3}), t), Contains("nll_loss") && Contains("[3, 3]") && Contains("[2]"));
  REQUIRE_SHAPE_ERROR(nll_loss(z({2, 3}), z({2})), Contains("nll_loss") && Contains("float32"));
  REQUIRE_SHAPE_ERROR(dropout(z({2}), 1.5, true), Contains("dropout") && Contains("1.5"));
  REQUIRE_SHAPE_ERROR(clamp(z({2}), 1.0, 0.0), Contains("clamp"));
}

TEST_CASE("errors: factories and element access", "[errors]") {
  REQUIRE_SHAPE_ERROR(Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5}, {2, 3}),
                      Contains("from_vector") && Contains("5") && Contains("[2, 3]"));
  REQUIRE_SHAPE_ERROR(Tensor::from_vector(std::vector<bool>{true}, {2}), Contains("from_vector") && Contains("[2]"));
  REQUIRE_SHAPE_ERROR(z({2}).item<float>(), Contains("item") && Contains("[2]"));
  REQUIRE_SHAPE_ERROR(z({2, 2}).item<double>(), Contains("item") && Contains("[2, 2]"));
  REQUIRE_SHAPE_ERROR(Tensor::arange(0.0, 1.0, -1.0), Contains("arange"));
  Tensor dst = z({3});
  REQUIRE_SHAPE_ERROR(dst.copy_(z({2, 2})), Contains("copy_") && Contains("[2, 2]") && Contains("[3]"));
  REQUIRE_THROWS_AS(z({2}).data<double>(), std::invalid_argument);
}

TEST_CASE("errors: modules, optimizers and schedules reject bad options", "[errors]") {
  REQUIRE_SHAPE_ERROR(nn::Linear(0, 3), Contains("Linear"));
  REQUIRE_SHAPE_ERROR(nn::Dropout(-0.1), Contains("Dropout"));
  REQUIRE_SHAPE_ERROR(nn::Embedding(3, 0), Contains("Embedding"));
  std::vector<Tensor> ps{Tensor::zeros({2}).requires_grad_()};
  REQUIRE_SHAPE_ERROR(optim::SGD(ps, optim::SGDOptions(-1.0)), Contains("learning rate"));
  REQUIRE_SHAPE_ERROR(optim::SGD(ps, optim::SGDOptions(0.1).nesterov(true)), Contains("nesterov"));
  REQUIRE_SHAPE_ERROR(optim::Adam(ps, optim::AdamOptions(0.1).betas(1.0, 0.9)), Contains("Adam"));
  optim::SGD opt(ps, optim::SGDOptions(0.1));
  REQUIRE_SHAPE_ERROR(optim::StepLR(opt, 0), Contains("StepLR"));
  REQUIRE_SHAPE_ERROR(optim::CosineAnnealingLR(opt, 0), Contains("CosineAnnealingLR"));
  REQUIRE_SHAPE_ERROR(optim::ReduceLROnPlateau(opt, 1.5), Contains("ReduceLROnPlateau"));
  REQUIRE_SHAPE_ERROR(optim::SGD({Tensor::zeros({1}, kInt64)}, optim::SGDOptions(0.1)), Contains("optimizer"));
}

// Element counts and byte sizes that overflow int64 used to wrap around: a tiny buffer was made,
// then read and written past its end. Each is now refused before any allocation.
TEST_CASE("errors: shapes whose element count or byte size overflows int64", "[errors][overflow]") {
  const int64_t big = int64_t(1) << 32;
  REQUIRE_SHAPE_ERROR(Tensor::zeros({(int64_t(1) << 62) + 1, 4}),
                      Contains("zeros") && Contains("[4611686018427387905, 4]") && Contains("2^63 - 1 elements"));
  REQUIRE_SHAPE_ERROR(Tensor::empty({big, big}), Contains("empty") && Contains("[4294967296, 4294967296]"));
  REQUIRE_SHAPE_ERROR(Tensor::ones({int64_t(1) << 61}, kFloat64),
                      Contains("ones") && Contains("float64") && Contains("2^63 - 1 bytes"));
  REQUIRE_SHAPE_ERROR(Tensor::randn({big, big, 2}), Contains("randn") && Contains("[4294967296, 4294967296, 2]"));
  REQUIRE_SHAPE_ERROR(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {(int64_t(1) << 62) + 1, 4}),
                      Contains("from_vector"));
  REQUIRE_SHAPE_ERROR(Tensor::arange(0.0, 1e300), Contains("arange") && Contains("end=1e+300"));
  // An empty tensor "viewed" as 2^64 elements (the product wraps to 0 = its own count).
  REQUIRE_SHAPE_ERROR(z({0}).reshape({big, big}), Contains("reshape") && Contains("[4294967296, 4294967296]"));
  REQUIRE_SHAPE_ERROR(z({0}).view({big, -1, big}), Contains("reshape"));
  REQUIRE_SHAPE_ERROR(z({1, 1}).expand({big, big}), Contains("expand") && Contains("[4294967296, 4294967296]"));
  // Empty operands whose product is not empty: [2^32, 0] @ [0, 2^32] is 2^64 zeros.
  REQUIRE_SHAPE_ERROR(matmul(z({big, 0}), z({0, big})), Contains("matmul") && Contains("[4294967296, 4294967296]"));
  REQUIRE_SHAPE_ERROR(cat({z({int64_t(1) << 62, 0}), z({int64_t(1) << 62, 0}), z({int64_t(1) << 62, 0})}, 0),
                      Contains("cat"));
  // Zero-size shapes with huge other dims are fine (a zero makes the count 0, as in PyTorch).
  CHECK(Tensor::zeros({int64_t(1) << 62, 4, 0}).numel() == 0);
}

TEST_CASE("errors: optimizers refuse a non-finite learning rate", "[errors]") {
  std::vector<Tensor> ps{Tensor::zeros({2}).requires_grad_()};
  for (double lr : {std::nan(""), double(INFINITY), -1.0}) {
    REQUIRE_SHAPE_ERROR(optim::Adam(ps, optim::AdamOptions(lr)), Contains("Adam optimizer: learning rate"));
    optim::SGD opt(ps, optim::SGDOptions(0.1));
    REQUIRE_SHAPE_ERROR(opt.set_lr(lr), Contains("SGD optimizer: learning rate"));
    CHECK(opt.lr() == 0.1);
  }
}
