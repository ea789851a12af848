// A rank that fails while the others train (tests/distributed/failure_test.sh): rank 1 hits bad
// input, a missing file, or an uncaught exception while rank 0 is inside DDP's gradient
// allreduce. Every rank must exit non-zero with the message within seconds, never hang; the
// collective timeout is set far above the test's limit, so the timeout is not what ends the job.
#include <attn/attn.hpp>
#include <attn/distributed/distributed.hpp>

#include <cstdio>
#include <string>

using namespace attn;
namespace dist = attn::distributed;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "bad_input";
  dist::Environment env(&argc, &argv);
  dist::set_timeout(600);
  nn::Linear model(4, 1);
  dist::DistributedDataParallel ddp(model);
  auto step = [&](const Tensor& x) {
    model.zero_grad();
    sum(model.forward(x)).backward();  // ends in the gradient allreduce
  };
  if (mode == "uncaught" && dist::rank() == 1) {
    step(Tensor::randn({2, 5}));  // throws out of main: std::terminate on this rank
  }
  try {
    step(Tensor::randn({2, 4}));  // one good step everywhere
    if (dist::rank() == 1) {
      if (mode == "bad_input") step(Tensor::randn({2, 5}));  // linear: 5 features for 4
      if (mode == "missing_file") load(model, "no-such-dir/model.safetensors");
    }
    step(Tensor::randn({2, 4}));  // rank 0 waits here for rank 1
    std::printf("rank %d finished\n", dist::rank());
  } catch (const std::exception& e) {
    dist::abort(std::string("distributed_failure: error: ") + e.what());
  }
  return 0;
}
