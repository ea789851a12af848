#pragma once
// DistributedSampler: the share of a data set's indices that one rank of a data-parallel run
// trains on, reshuffled each epoch from a seed that all ranks share (PyTorch's
// torch.utils.data.DistributedSampler). Needs no MPI: rank and world size are plain numbers.
#include <cstdint>
#include <numeric>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"

namespace attn::data {

class DistributedSampler {
 public:
  // `size` samples shared by `num_replicas` ranks; this is rank `rank`. With drop_last = false
  // the shuffled order is padded by repeating its first indices up to a multiple of num_replicas,
  // so every rank gets ceil(size / num_replicas) indices (PyTorch's rule); with drop_last = true
  // the tail is dropped and every rank gets floor(size / num_replicas).
  DistributedSampler(int64_t size, int64_t num_replicas, int64_t rank, bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false)
      : size_(size), replicas_(num_replicas), rank_(rank), shuffle_(shuffle), seed_(seed), drop_last_(drop_last) {
    ATTN_CHECK(size >= 0, "DistributedSampler: size ", size, " is negative");
    ATTN_CHECK(num_replicas >= 1, "DistributedSampler: num_replicas ", num_replicas, " must be >= 1");
    ATTN_CHECK(rank >= 0 && rank < num_replicas, "DistributedSampler: rank ", rank, " out of range for ",
               num_replicas, " replicas");
    ATTN_CHECK(!drop_last || size >= num_replicas || size == 0, "DistributedSampler: drop_last with ", size,
               " samples for ", num_replicas, " replicas leaves every rank empty");
  }

  // The epoch whose order indices() returns: order = shuffle(0..size-1) with seed + epoch.
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }

  int64_t num_samples() const { return drop_last_ ? size_ / replicas_ : (size_ + replicas_ - 1) / replicas_; }
  int64_t total_size() const { return num_samples() * replicas_; }

  // This rank's indices for the current epoch: positions rank, rank + R, rank + 2R, ... of the
  // (padded or truncated) epoch order, so ranks hold disjoint shares when nothing is padded.
  std::vector<int64_t> indices() const {
    std::vector<int64_t> order(static_cast<size_t>(size_));
    std::iota(order.begin(), order.end(), int64_t(0));
    if (shuffle_) {
      Generator g(seed_ + uint64_t(epoch_));
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(g.next_u64() % i)]);
    }
    const int64_t total = total_size();
    for (int64_t i = size_; i < total; ++i) order.push_back(order[size_t((i - size_) % size_)]);  // pad
    order.resize(size_t(total));                                                                 // or truncate
    std::vector<int64_t> mine;
    mine.reserve(size_t(num_samples()));
    for (int64_t i = rank_; i < total; i += replicas_) mine.push_back(order[size_t(i)]);
    return mine;
  }

 private:
  int64_t size_, replicas_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t epoch_ = 0;
};

}  // namespace attn::data
