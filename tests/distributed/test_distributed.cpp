// attn::distributed under `mpirun -np 2` (tests/distributed/CMakeLists.txt): collectives,
// broadcast_parameters, and DistributedDataParallel against one-process training on the whole
// batch, in double precision: parameters within 1e-12 of the reference after every step and
// bitwise identical across ranks; many buckets; uneven shards; parameters without a gradient.
// Every rank runs every test case in the same order (the collectives must match).
#define CATCH_CONFIG_RUNNER
#include <attn/attn.hpp>
#include <attn/distributed/distributed.hpp>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

using namespace attn;
namespace dist = attn::distributed;

namespace {

// BiLSTM -> attention pooling -> Linear, plus `side` (used only where asked) and `never` (never
// used): per-series outputs [B].
struct Net : nn::Module {
  Net()
      : side(2, 1), never(3, 1), lstm(nn::LSTMOptions(2, 5).bidirectional(true).batch_first(true)), pool(10, 10), fc(10, 1) {
    // side and never first: buckets go last parameter first, and a bucket holding a parameter
    // without a gradient (and every bucket after it) can only start at the end of backward.
    register_module("side", side);
    register_module("never", never);
    register_module("lstm", lstm);
    register_module("pool", pool);
    register_module("fc", fc);
    to(kFloat64);
  }
  Tensor forward(const Tensor& x, bool use_side) {
    Tensor out = fc.forward(pool.forward(lstm.forward(x).first).first).reshape({-1});
    if (use_side) out = out + side.forward(x.select(1, 0)).reshape({-1});
    return out;
  }
  nn::Linear side, never;
  nn::LSTM lstm;
  nn::AttentionPooling pool;
  nn::Linear fc;
};

void copy_parameters(const nn::Module& from, nn::Module& to) {
  NoGradGuard ng;
  auto src = from.parameters(), dst = to.parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
}

// max |a - b| over all parameters (or over gradients), infinity when one side's grad is undefined.
double max_diff(const nn::Module& a, const nn::Module& b, bool grads) {
  auto pa = a.parameters(), pb = b.parameters();
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    Tensor x = grads ? pa[i].grad() : pa[i], y = grads ? pb[i].grad() : pb[i];
    if (x.defined() != y.defined()) return INFINITY;
    if (!x.defined()) continue;
    auto u = x.to_vector<double>(), v = y.to_vector<double>();
    for (size_t k = 0; k < u.size(); ++k) worst = std::max(worst, std::abs(u[k] - v[k]));
  }
  return worst;
}

// True when every parameter holds the same bits on every rank (rank 0's copy is broadcast).
bool identical_across_ranks(const nn::Module& m) {
  bool same = true;
  for (const Tensor& p : m.parameters()) {
    Tensor root = p.detach().clone();
    dist::broadcast(root, 0);
    same = same && std::memcmp(root.raw_data(), p.raw_data(), size_t(p.numel()) * sizeof(double)) == 0;
  }
  Tensor flag = Tensor::scalar(same ? 1.0 : 0.0, kFloat64);
  dist::allreduce(flag, dist::ReduceOp::Min);
  return flag.item<double>() == 1.0;
}

// Sum of squared errors of rows [lo, lo + n) divided by the global batch size B, times the
// number of ranks: DDP's average over ranks then equals the mean over the whole batch, for any
// split of the rows (the recipe for uneven shards, docs/distributed.md).
Tensor shard_loss(Net& net, const Tensor& x, const Tensor& y, int64_t lo, int64_t n, int64_t B, bool use_side) {
  Tensor out = net.forward(x.narrow(0, lo, n), use_side);
  return mul(sum(pow(sub(out, y.narrow(0, lo, n)), 2.0)), double(dist::world_size()) / double(B));
}

struct Run {
  int64_t batch = 8;
  std::vector<int64_t> rows;  // rows per rank (sum = batch)
  double bucket_cap_mb = 25;
  bool side_on_last_rank = false;  // `side` used only by the last rank's rows
};

// Trains a DDP replica on this rank's rows and, on every rank, a one-process reference on the
// whole batch; compares after every step. Returns the DDP's statistics.
dist::DistributedDataParallel::Stats train_and_compare(const Run& run, int steps = 5) {
  const int R = dist::world_size(), r = dist::rank();
  REQUIRE(int(run.rows.size()) == R);
  manual_seed(uint64_t(100 + r));  // different inits: the DDP constructor broadcasts rank 0's
  Net net, ref;
  dist::DistributedDataParallel ddp(net, dist::DistributedDataParallelOptions().bucket_cap_mb(run.bucket_cap_mb));
  CHECK(identical_across_ranks(net));
  copy_parameters(net, ref);
  optim::Adam opt(net.parameters(), optim::AdamOptions(1e-2));
  optim::Adam ref_opt(ref.parameters(), optim::AdamOptions(1e-2));
  for (int step = 0; step < steps; ++step) {
    manual_seed(uint64_t(7 + step));  // the same batch on every rank
    Tensor x = Tensor::randn({run.batch, 6, 2}, kFloat64), y = Tensor::randn({run.batch}, kFloat64);
    int64_t lo = 0;
    for (int k = 0; k < r; ++k) lo += run.rows[size_t(k)];
    const bool my_side = run.side_on_last_rank && r == R - 1;
    opt.zero_grad();
    shard_loss(net, x, y, lo, run.rows[size_t(r)], run.batch, my_side).backward();
    // Reference: the whole batch in one process, the same rows with and without `side`.
    ref_opt.zero_grad();
    Tensor ref_loss = Tensor::scalar(0.0, kFloat64);
    int64_t at = 0;
    for (int k = 0; k < R; ++k) {
      const bool side = run.side_on_last_rank && k == R - 1;
      Tensor out = ref.forward(x.narrow(0, at, run.rows[size_t(k)]), side);
      ref_loss = add(ref_loss, sum(pow(sub(out, y.narrow(0, at, run.rows[size_t(k)])), 2.0)));
      at += run.rows[size_t(k)];
    }
    mul(ref_loss, 1.0 / double(run.batch)).backward();
    INFO("step " << step);
    CHECK(max_diff(net, ref, /*grads=*/true) <= 1e-12);
    opt.step();
    ref_opt.step();
    CHECK(max_diff(net, ref, /*grads=*/false) <= 1e-12);
    CHECK(identical_across_ranks(net));
  }
  CHECK_FALSE(net.never.weight.grad().defined());  // no rank used it: as in one process
  CHECK(net.side.weight.grad().defined() == run.side_on_last_rank);
  return ddp.stats();
}

}  // namespace

TEST_CASE("distributed: rank, world size and collectives", "[distributed]") {
  const int R = dist::world_size(), r = dist::rank();
  REQUIRE(R >= 2);
  CHECK(r >= 0);
  CHECK(r < R);
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor t = Tensor::from_vector(std::vector<double>{double(r), 1.0, -double(r)}).to(dt);
    Tensor s = t.clone(), a = t.clone(), mx = t.clone(), mn = t.clone();
    dist::allreduce(s);
    dist::allreduce(a, dist::ReduceOp::Avg);
    dist::allreduce(mx, dist::ReduceOp::Max);
    dist::allreduce(mn, dist::ReduceOp::Min);
    const double total = R * (R - 1) / 2.0;
    CHECK(s.to_vector<double>() == std::vector<double>{total, double(R), -total});
    CHECK(a.to_vector<double>() == std::vector<double>{total / R, 1.0, -total / R});
    CHECK(mx.to_vector<double>() == std::vector<double>{double(R - 1), 1.0, 0.0});
    CHECK(mn.to_vector<double>() == std::vector<double>{0.0, 1.0, -double(R - 1)});
    Tensor b = Tensor::full({2}, double(r + 3), dt);
    dist::broadcast(b, 1);
    CHECK(b.to_vector<double>() == std::vector<double>{4.0, 4.0});
  }
  dist::barrier();
  Tensor ints = Tensor::zeros({2}, kInt64);
  CHECK_THROWS_WITH(dist::allreduce(ints), Catch::Contains("distributed::allreduce") && Catch::Contains("int64"));
  Tensor f = Tensor::zeros({2});
  CHECK_THROWS_AS(dist::broadcast(f, R), std::invalid_argument);
  CHECK_THROWS_AS(dist::set_timeout(0), std::invalid_argument);
}

TEST_CASE("distributed: broadcast_parameters copies rank 0's weights, refuses different models", "[distributed]") {
  manual_seed(uint64_t(dist::rank()));
  Net net;
  CHECK_FALSE(identical_across_ranks(net));
  dist::broadcast_parameters(net, 0);
  CHECK(identical_across_ranks(net));
  // A rank-dependent architecture: every rank throws, none exchanges mismatched buffers.
  nn::Linear lin(dist::rank() == 0 ? 3 : 4, 2);
  CHECK_THROWS_WITH(dist::broadcast_parameters(lin, 0), Catch::Contains("the ranks hold different models"));
  CHECK_THROWS_AS(dist::DistributedDataParallel(net, dist::DistributedDataParallelOptions().bucket_cap_mb(0)),
                  std::invalid_argument);
}

TEST_CASE("distributed: DDP on halves of each batch equals one process on the whole batch", "[distributed]") {
  const int R = dist::world_size();
  Run run;
  run.batch = 4 * R;
  run.rows.assign(size_t(R), 4);
  auto stats = train_and_compare(run);
  CHECK(stats.steps == 5);
}

TEST_CASE("distributed: DDP with small buckets starts allreduces during backward", "[distributed]") {
  const int R = dist::world_size();
  Run run;
  run.batch = 4 * R;
  run.rows.assign(size_t(R), 4);
  run.bucket_cap_mb = 1e-4;  // ~100 bytes: about one parameter per bucket
  auto stats = train_and_compare(run);
  CHECK(stats.steps == 5);
  // fc, pool and LSTM buckets start during backward; the last one (side's and never's four
  // small tensors, 56 bytes) only at its end.
  CHECK(stats.buckets_early >= 5 * 6);
  CHECK(stats.buckets_late == 5);
}

TEST_CASE("distributed: DDP with uneven shards equals one process", "[distributed]") {
  const int R = dist::world_size();
  Run run;
  run.rows.assign(size_t(R), 3);
  run.rows[0] = 4;  // 7 rows on 2 ranks: 4 + 3
  run.batch = 0;
  for (int64_t n : run.rows) run.batch += n;
  train_and_compare(run);
}

TEST_CASE("distributed: DDP with a parameter used on one rank only and one never used", "[distributed]") {
  const int R = dist::world_size();
  Run run;
  run.batch = 3 * R;
  run.rows.assign(size_t(R), 3);
  run.side_on_last_rank = true;
  run.bucket_cap_mb = 1e-4;
  train_and_compare(run);
}

int main(int argc, char** argv) {
  dist::Environment env(&argc, &argv);
  dist::set_timeout(60);  // a rank stuck in a collective fails the test instead of hanging it
  return Catch::Session().run(argc, argv);
}
