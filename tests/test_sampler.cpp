// data::DistributedSampler: shards per rank, reshuffling per epoch from the seed, uneven sizes.
#include <algorithm>
#include <map>
#include <attn/data/sampler.hpp>

#include "test_util.hpp"

using attn::data::DistributedSampler;
using VI = std::vector<int64_t>;

TEST_CASE("sampler: ranks hold disjoint shards that cover the data, reshuffled per epoch", "[sampler]") {
  const int64_t n = 12, p = 3;
  VI epoch0_rank0;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    VI all;
    for (int64_t r = 0; r < p; ++r) {
      DistributedSampler s(n, p, r, /*shuffle=*/true, /*seed=*/7);
      s.set_epoch(epoch);
      const VI mine = s.indices();
      CHECK(int64_t(mine.size()) == 4);
      CHECK(mine == s.indices());  // deterministic
      if (epoch == 0 && r == 0) epoch0_rank0 = mine;
      if (epoch == 1 && r == 0) CHECK(mine != epoch0_rank0);  // a new order each epoch
      all.insert(all.end(), mine.begin(), mine.end());
    }
    std::sort(all.begin(), all.end());
    VI expect(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) expect[size_t(i)] = i;
    CHECK(all == expect);
  }
  // Another seed gives another order; no shuffle gives rank, rank + p, ...
  DistributedSampler other(n, p, 0, true, 8);
  CHECK(other.indices() != epoch0_rank0);
  CHECK(DistributedSampler(n, p, 1, /*shuffle=*/false).indices() == VI{1, 4, 7, 10});
}

TEST_CASE("sampler: uneven sizes are padded by repetition, or dropped with drop_last", "[sampler]") {
  // 7 samples on 3 ranks: 3 each, two indices repeated (PyTorch's padding).
  std::map<int64_t, int> count;
  for (int64_t r = 0; r < 3; ++r) {
    DistributedSampler s(7, 3, r, false);
    CHECK(s.num_samples() == 3);
    CHECK(s.total_size() == 9);
    for (int64_t i : s.indices()) ++count[i];
  }
  CHECK(count.size() == 7);
  CHECK(count[0] == 2);
  CHECK(count[1] == 2);
  CHECK(count[6] == 1);
  CHECK(DistributedSampler(7, 3, 2, false).indices() == VI{2, 5, 1});
  // drop_last: 2 each, index 6 left out; with shuffling the dropped one changes per epoch.
  VI seen;
  for (int64_t r = 0; r < 3; ++r) {
    DistributedSampler s(7, 3, r, false, 0, /*drop_last=*/true);
    CHECK(s.num_samples() == 2);
    for (int64_t i : s.indices()) seen.push_back(i);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen == VI{0, 1, 2, 3, 4, 5});
  // Fewer samples than ranks: every rank still gets one (repeated) index.
  CHECK(DistributedSampler(2, 4, 3, false).indices() == VI{1});
  CHECK(DistributedSampler(0, 2, 1).indices().empty());
}

TEST_CASE("sampler: bad arguments throw std::invalid_argument naming the sampler", "[sampler]") {
  CHECK_THROWS_WITH(DistributedSampler(10, 2, 2), Catch::Contains("DistributedSampler: rank 2 out of range"));
  CHECK_THROWS_WITH(DistributedSampler(10, 0, 0), Catch::Contains("num_replicas 0"));
  CHECK_THROWS_WITH(DistributedSampler(-1, 2, 0), Catch::Contains("size -1"));
  CHECK_THROWS_WITH(DistributedSampler(1, 2, 0, true, 0, true), Catch::Contains("drop_last"));
  CHECK_THROWS_AS(DistributedSampler(10, 2, -1), std::invalid_argument);
}
