// Tensor basics: factories, element access, views vs copies, dtype conversion, and every shape
// op with exact expected values.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "test_util.hpp"

using namespace attn;
using V = std::vector<float>;
using VD = std::vector<double>;
using VI = std::vector<int64_t>;

namespace {
// 0, 1, 2, ... n-1 as float32 with the given shape.
Tensor iota(const Shape& s) { return Tensor::arange(numel_of(s)).reshape(s); }
}  // namespace

TEST_CASE("tensor: zeros, ones, full, empty", "[tensor]") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == kFloat32);
  CHECK(z.numel() == 6);
  CHECK(z.dim() == 2);
  CHECK(z.to_vector() == V(6, 0.f));
  CHECK(Tensor::ones({4}, kFloat64).to_vector<double>() == VD(4, 1.0));
  CHECK(Tensor::full({2, 2}, 2.5).to_vector() == V(4, 2.5f));
  CHECK(Tensor::full({3}, 7, kInt64).to_vector<int64_t>() == VI{7, 7, 7});
  CHECK(Tensor::ones({2}, kBool).to_vector<int>() == std::vector<int>{1, 1});
  CHECK(Tensor::empty({0, 3}).numel() == 0);
  CHECK(Tensor::zeros({}).numel() == 1);
  CHECK(Tensor::zeros({}).dim() == 0);
  CHECK(Tensor::scalar(4.5, kFloat64).item<double>() == 4.5);
  CHECK(Tensor::zeros({2, 5}).size(-1) == 5);
  CHECK(Tensor::zeros({2, 5}).sizes() == Shape{2, 5});
}

TEST_CASE("tensor: randn and rand are reproducible with manual_seed", "[tensor]") {
  manual_seed(42);
  Tensor a = Tensor::randn({1000});
  Tensor u = Tensor::rand({1000}, kFloat64);
  manual_seed(42);
  Tensor b = Tensor::randn({1000});
  Tensor w = Tensor::rand({1000}, kFloat64);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(u.to_vector<double>() == w.to_vector<double>());
  Tensor c = Tensor::randn({1000});
  CHECK(a.to_vector() != c.to_vector());
  // Moments roughly right; uniform stays in [0, 1).
  const auto va = a.to_vector<double>();
  double m = 0, s2 = 0;
  for (double x : va) m += x;
  m /= double(va.size());
  for (double x : va) s2 += (x - m) * (x - m);
  s2 /= double(va.size());
  CHECK(std::abs(m) < 0.1);
  CHECK(std::abs(s2 - 1.0) < 0.15);
  for (double x : u.to_vector<double>()) {
    CHECK(x >= 0.0);
    CHECK(x < 1.0);
  }
  CHECK_THROWS_AS(Tensor::randn({2}, kInt64), std::invalid_argument);
}

TEST_CASE("tensor: arange", "[tensor]") {
  CHECK(Tensor::arange(5).to_vector() == V{0, 1, 2, 3, 4});
  CHECK(Tensor::arange(1.0, 2.0, 0.25, kFloat64).to_vector<double>() == VD{1.0, 1.25, 1.5, 1.75});
  CHECK(Tensor::arange(5.0, 0.0, -2.0, kInt64).to_vector<int64_t>() == VI{5, 3, 1});
  CHECK(Tensor::arange(0.0, 0.0).numel() == 0);
  CHECK_THROWS_AS(Tensor::arange(0.0, 1.0, 0.0), std::invalid_argument);
}

TEST_CASE("tensor: from_vector for every dtype, to_vector, item, at, set", "[tensor]") {
  Tensor f = Tensor::from_vector(V{1.5f, -2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
  CHECK(f.dtype() == kFloat32);
  CHECK(f.at({1, 2}) == 6.0);
  CHECK(f.at({0, 1}) == -2.0);
  f.set({0, 0}, 9.0);
  CHECK(f.to_vector()[0] == 9.f);
  CHECK(f.data<float>()[0] == 9.f);
  CHECK_THROWS_AS(f.data<double>(), std::invalid_argument);

  Tensor d = Tensor::from_vector(VD{0.1, 0.2});
  CHECK(d.dtype() == kFloat64);
  CHECK(d.shape() == Shape{2});
  CHECK(d.to_vector<double>() == VD{0.1, 0.2});
  CHECK(d.to_vector<float>() == V{0.1f, 0.2f});

  Tensor i = Tensor::from_vector(VI{3, -1, 4, 1}, {2, 2});
  CHECK(i.dtype() == kInt64);
  CHECK(i.at({1, 0}) == 4.0);
  CHECK(i.to_vector<int64_t>() == VI{3, -1, 4, 1});
  CHECK(i.to_vector<double>() == VD{3, -1, 4, 1});

  Tensor b = Tensor::from_vector(std::vector<bool>{true, false, true}, {3});
  CHECK(b.dtype() == kBool);
  CHECK(b.to_vector<int>() == std::vector<int>{1, 0, 1});
  CHECK(b.at({1}) == 0.0);

  CHECK(Tensor::from_vector(VD{2.5}, {}).item<double>() == 2.5);
  CHECK(Tensor::from_vector(VD{2.5}, {1, 1}).item<float>() == 2.5f);
  CHECK(Tensor::from_vector(VI{7}, {1}).item<int64_t>() == 7);
  CHECK_THROWS_AS(f.at({2, 0}), std::invalid_argument);
  CHECK_THROWS_AS(f.at({0}), std::invalid_argument);
  CHECK_THROWS_AS(f.item<float>(), std::invalid_argument);
}

TEST_CASE("tensor: reshape with -1, view shares storage, clone is deep, detach", "[tensor]") {
  Tensor x = iota({2, 3, 4});
  CHECK(x.reshape({-1}).shape() == Shape{24});
  CHECK(x.reshape({4, -1}).shape() == Shape{4, 6});
  CHECK(x.reshape({-1, 2, 3}).shape() == Shape{4, 2, 3});
  CHECK(x.reshape({4, -1}).to_vector() == x.to_vector());
  CHECK(reshape(Tensor::scalar(3.0), {1, 1}).shape() == Shape{1, 1});

  Tensor v = x.view({6, 4});
  CHECK(v.raw_data() == x.raw_data());
  v.set({0, 0}, 100.0);
  CHECK(x.at({0, 0, 0}) == 100.0);  // writes through the view are visible in the base

  Tensor c = x.clone();
  CHECK(c.raw_data() != x.raw_data());
  CHECK(c.to_vector() == x.to_vector());
  c.set({0, 0, 0}, -1.0);
  CHECK(x.at({0, 0, 0}) == 100.0);

  Tensor w = Tensor::randn({3}).requires_grad_();
  Tensor y = w * 2.0;
  CHECK(y.requires_grad());
  Tensor dy = y.detach();
  CHECK_FALSE(dy.requires_grad());
  CHECK(dy.is_leaf());
  CHECK(dy.raw_data() == y.raw_data());
  CHECK(dy.to_vector() == y.to_vector());

  Tensor h = x;  // a handle: same impl
  CHECK(h.is_same(x));
  CHECK_FALSE(c.is_same(x));
}

TEST_CASE("tensor: to(dtype), copy_, fill_", "[tensor]") {
  Tensor f = Tensor::from_vector(V{1.7f, -2.2f, 0.f}, {3});
  Tensor d = f.to(kFloat64);
  CHECK(d.dtype() == kFloat64);
  CHECK(d.to_vector<double>()[0] == double(1.7f));
  CHECK(f.to(kFloat32).is_same(f));  // same dtype: no copy
  CHECK(f.to(kInt64).to_vector<int64_t>() == VI{1, -2, 0});  // truncation, as static_cast
  CHECK(f.to(kBool).to_vector<int>() == std::vector<int>{1, 1, 0});
  CHECK(Tensor::from_vector(VI{2, 0}).to(kFloat32).to_vector() == V{2.f, 0.f});

  Tensor dst = Tensor::zeros({3}, kFloat64);
  dst.copy_(f);
  CHECK(dst.to_vector<double>() == d.to_vector<double>());
  CHECK_THROWS_AS(dst.copy_(Tensor::zeros({4})), std::invalid_argument);
  Tensor leaf = Tensor::zeros({3}).requires_grad_();
  CHECK_THROWS_AS(leaf.copy_(f), std::invalid_argument);
  {
    NoGradGuard ng;
    leaf.copy_(f);
  }
  CHECK(leaf.to_vector() == f.to_vector());
  dst.fill_(3.0);
  CHECK(dst.to_vector<double>() == VD{3, 3, 3});
}

TEST_CASE("shape: transpose and permute", "[tensor][shape]") {
  Tensor x = iota({2, 3});
  Tensor t = x.t();
  CHECK(t.shape() == Shape{3, 2});
  CHECK(t.to_vector() == V{0, 3, 1, 4, 2, 5});
  CHECK(transpose(x, -1, -2).to_vector() == t.to_vector());
  CHECK(transpose(x, 1, 1).to_vector() == x.to_vector());
  Tensor y = iota({2, 3, 4});
  Tensor p = permute(y, {2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  // p[k, i, j] = y[i, j, k] = 12 i + 4 j + k
  CHECK(p.at({3, 1, 2}) == 12 + 8 + 3);
  CHECK(p.at({1, 0, 1}) == 4 + 1);
  CHECK(p.to_vector()[0] == 0.f);
  CHECK(p.to_vector()[1] == 4.f);
  CHECK(transpose(y, 0, 2).shape() == Shape{4, 3, 2});
  CHECK(transpose(y, 0, 2).at({3, 2, 1}) == 12 + 8 + 3);
  CHECK(permute(permute(y, {2, 0, 1}), {1, 2, 0}).to_vector() == y.to_vector());
  // int64 and bool go through the same copy
  CHECK(Tensor::from_vector(VI{1, 2, 3, 4}, {2, 2}).t().to_vector<int64_t>() == VI{1, 3, 2, 4});
}

TEST_CASE("shape: slice and narrow with steps, select", "[tensor][shape]") {
  Tensor x = iota({3, 8});
  CHECK(slice(x, 1, 1, 7, 2).to_vector() == V{1, 3, 5, 9, 11, 13, 17, 19, 21});
  CHECK(slice(x, 1, 0, 8, 3).to_vector() == V{0, 3, 6, 8, 11, 14, 16, 19, 22});
  CHECK(slice(x, 0, 1, 100).shape() == Shape{2, 8});  // end clamped
  CHECK(slice(x, 1, -2, 8).to_vector() == V{6, 7, 14, 15, 22, 23});
  CHECK(slice(x, 1, 5, 2).numel() == 0);  // empty range
  CHECK(narrow(x, 0, 1, 1).to_vector() == V{8, 9, 10, 11, 12, 13, 14, 15});
  CHECK(x.narrow(1, 6, 2).to_vector() == V{6, 7, 14, 15, 22, 23});
  CHECK(narrow(x, 1, -2, 2).to_vector() == V{6, 7, 14, 15, 22, 23});
  CHECK(select(x, 0, 2).shape() == Shape{8});
  CHECK(select(x, 0, 2).to_vector()[7] == 23.f);
  CHECK(x.select(1, -1).to_vector() == V{7, 15, 23});
  CHECK(select(Tensor::arange(4), 0, 2).dim() == 0);
  CHECK(select(Tensor::arange(4), 0, 2).item() == 2.f);
}

TEST_CASE("shape: cat, stack", "[tensor][shape]") {
  Tensor a = iota({2, 2}), b = Tensor::full({1, 2}, 9), c = Tensor::full({2, 1}, -1);
  CHECK(cat({a, b}, 0).to_vector() == V{0, 1, 2, 3, 9, 9});
  CHECK(cat({a, c}, 1).to_vector() == V{0, 1, -1, 2, 3, -1});
  CHECK(cat({a, c, a}, -1).shape() == Shape{2, 5});
  CHECK(cat({a}, 0).to_vector() == a.to_vector());
  Tensor s = stack({a, a * 10.0}, 0);
  CHECK(s.shape() == Shape{2, 2, 2});
  CHECK(s.to_vector() == V{0, 1, 2, 3, 0, 10, 20, 30});
  Tensor s1 = stack({a, a * 10.0}, 1);
  CHECK(s1.shape() == Shape{2, 2, 2});
  CHECK(s1.to_vector() == V{0, 1, 0, 10, 2, 3, 20, 30});
  Tensor s2 = stack({a, a * 10.0}, -1);
  CHECK(s2.shape() == Shape{2, 2, 2});
  CHECK(s2.to_vector() == V{0, 0, 1, 10, 2, 20, 3, 30});
  CHECK(cat({Tensor::from_vector(VI{1, 2}), Tensor::from_vector(VI{3})}).to_vector<int64_t>() == VI{1, 2, 3});
}

TEST_CASE("shape: split, chunk, unbind", "[tensor][shape]") {
  Tensor x = iota({5, 2});
  auto parts = split(x, 2, 0);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].to_vector() == V{0, 1, 2, 3});
  CHECK(parts[2].shape() == Shape{1, 2});
  CHECK(parts[2].to_vector() == V{8, 9});
  auto ch = chunk(x, 2, 0);  // ceil(5 / 2) = 3 rows per chunk
  REQUIRE(ch.size() == 2);
  CHECK(ch[0].shape() == Shape{3, 2});
  CHECK(ch[1].to_vector() == V{6, 7, 8, 9});
  auto cols = chunk(x, 2, 1);
  REQUIRE(cols.size() == 2);
  CHECK(cols[1].to_vector() == V{1, 3, 5, 7, 9});
  CHECK(chunk(iota({6}), 3, 0).size() == 3);
  auto rows = unbind(x, 0);
  REQUIRE(rows.size() == 5);
  CHECK(rows[3].shape() == Shape{2});
  CHECK(rows[3].to_vector() == V{6, 7});
  auto ub = unbind(x, 1);
  REQUIRE(ub.size() == 2);
  CHECK(ub[0].to_vector() == V{0, 2, 4, 6, 8});
}

TEST_CASE("shape: index_select, flip, expand/broadcast_to", "[tensor][shape]") {
  Tensor x = iota({3, 4});
  Tensor idx = Tensor::from_vector(VI{2, 0, 2});
  CHECK(index_select(x, 0, idx).to_vector() == V{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  CHECK(index_select(x, 1, Tensor::from_vector(VI{3, 1})).to_vector() == V{3, 1, 7, 5, 11, 9});
  CHECK(index_select(x, 0, Tensor::from_vector(VI{}, {0})).shape() == Shape{0, 4});
  CHECK(flip(x, {0}).to_vector() == V{8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3});
  CHECK(flip(x, {1}).to_vector() == V{3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8});
  CHECK(flip(x, {0, 1}).to_vector() == V{11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0});
  CHECK(flip(x, {-1}).to_vector() == flip(x, {1}).to_vector());
  Tensor col = Tensor::from_vector(V{1, 2, 3}, {3, 1});
  CHECK(expand(col, {3, 2}).to_vector() == V{1, 1, 2, 2, 3, 3});
  CHECK(col.expand({2, 3, 2}).shape() == Shape{2, 3, 2});
  CHECK(expand(col, {-1, 4}).shape() == Shape{3, 4});
  CHECK(broadcast_to(Tensor::from_vector(V{1, 2}), {2, 2}).to_vector() == V{1, 2, 1, 2});
  CHECK(broadcast_to(Tensor::scalar(5), {2}).to_vector() == V{5, 5});
  CHECK(repeat_interleave_rows(Tensor::from_vector(V{1, 2, 3, 4}, {2, 2}), 2).to_vector() ==
        V{1, 2, 1, 2, 3, 4, 3, 4});
}

TEST_CASE("shape: squeeze, unsqueeze, flatten", "[tensor][shape]") {
  Tensor x = iota({2, 1, 3, 1});
  CHECK(squeeze(x).shape() == Shape{2, 3});
  CHECK(squeeze(x, 1).shape() == Shape{2, 3, 1});
  CHECK(squeeze(x, -1).shape() == Shape{2, 1, 3});
  CHECK(squeeze(x, 0).shape() == Shape{2, 1, 3, 1});  // size != 1: unchanged
  CHECK(x.squeeze(1).to_vector() == x.to_vector());
  CHECK(unsqueeze(iota({2, 3}), 0).shape() == Shape{1, 2, 3});
  CHECK(unsqueeze(iota({2, 3}), 2).shape() == Shape{2, 3, 1});
  CHECK(unsqueeze(iota({2, 3}), -1).shape() == Shape{2, 3, 1});
  CHECK(iota({2, 3}).unsqueeze(1).shape() == Shape{2, 1, 3});
  Tensor y = iota({2, 3, 4, 5});
  CHECK(flatten(y).shape() == Shape{120});
  CHECK(flatten(y, 1).shape() == Shape{2, 60});
  CHECK(flatten(y, 1, 2).shape() == Shape{2, 12, 5});
  CHECK(y.flatten(0, -2).shape() == Shape{24, 5});
  CHECK(flatten(y, 1, 2).to_vector() == y.to_vector());
  CHECK(flatten(Tensor::scalar(1)).shape() == Shape{1});
}

TEST_CASE("tensor: to_string and printing", "[tensor]") {
  Tensor x = Tensor::from_vector(V{1, 2}, {2});
  CHECK_THAT(x.to_string(), Catch::Contains("[2]") && Catch::Contains("float32"));
  CHECK(Tensor().to_string() == "Tensor(undefined)");
  CHECK_FALSE(Tensor().defined());
  CHECK_THROWS_AS(Tensor().shape(), std::logic_error);
}

TEST_CASE("tanh/sigmoid/exp: same bits for any thread count and buffer alignment", "[tensor][threads]") {
  // 100003 elements: split over threads at an unaligned boundary, with a partial last packet
  attn::manual_seed(3);
  const attn::Tensor x = attn::mul(attn::Tensor::randn({100003}), 4.0);
  for (auto op : {+[](const attn::Tensor& t) { return attn::tanh(t); }, +[](const attn::Tensor& t) { return attn::sigmoid(t); },
                  +[](const attn::Tensor& t) { return attn::exp(t); }}) {
    const auto one = with_threads(1, [&] { return op(x).to_vector<float>(); });
    const auto two = with_threads(2, [&] { return op(x).to_vector<float>(); });
    CHECK(one == two);
  }
  // the span kernels at every offset of a buffer give the bits of an aligned call
  std::vector<float> src = x.to_vector<float>();
  src.resize(64);
  std::vector<float> ref(64), out(80);
  attn::kernels::cpu::tanh_n(src.data(), ref.data(), 64);
  for (int off = 0; off < 16; ++off) {
    std::vector<float> in(80);
    std::copy(src.begin(), src.end(), in.begin() + off);
    attn::kernels::cpu::tanh_n(in.data() + off, out.data() + off, 64);
    INFO("offset " << off);
    CHECK(std::equal(ref.begin(), ref.end(), out.begin() + off));
    attn::kernels::cpu::tanh_n(in.data() + off, out.data() + off, 64 - off);  // a shorter span: its tail packet
    CHECK(std::equal(ref.begin(), ref.begin() + (64 - off), out.begin() + off));
  }
}

TEST_CASE("memory_stats counts CPU tensor storage, current and peak", "[tensor][memory]") {
  const int64_t base = attn::memory_stats().current_bytes;
  attn::reset_peak_memory();
  {
    attn::Tensor a = attn::Tensor::zeros({1 << 18});  // 1 MiB of float
    CHECK(attn::memory_stats().current_bytes - base == int64_t(1) << 20);
    attn::Tensor view = a.reshape({512, 512});  // shares the storage: no new bytes
    CHECK(attn::memory_stats().current_bytes - base == int64_t(1) << 20);
    attn::Tensor b = attn::Tensor::zeros({1 << 17}, attn::kFloat64);  // 1 MiB more
    CHECK(attn::memory_stats().peak_bytes - base == int64_t(2) << 20);
  }
  CHECK(attn::memory_stats().current_bytes == base);
  CHECK(attn::memory_stats().peak_bytes - base == int64_t(2) << 20);
  attn::reset_peak_memory();
  CHECK(attn::memory_stats().peak_bytes == base);
}

TEST_CASE("tensor: mean over no elements is NaN, over all and over an empty dim (as PyTorch)", "[tensor][empty]") {
  attn::Tensor x = attn::Tensor::zeros({0, 3});
  CHECK(std::isnan(x.mean().item<float>()));
  const auto m0 = attn::mean(x, 0).to_vector<float>();
  REQUIRE(m0.size() == 3);
  for (float v : m0) CHECK(std::isnan(v));
  CHECK(attn::mean(x, 1).shape() == attn::Shape({0}));
  CHECK(std::isnan(attn::Tensor::zeros({2, 0}, attn::kFloat64).mean().item<double>()));
}

TEST_CASE("set_cache_limit bounds the cached bytes and drops the excess at once", "[tensor][memory]") {
  if (!attn::detail::BlockCache::kEnabled) return;  // off under AddressSanitizer
  const int64_t keep = attn::cache_limit();
  CHECK(keep == int64_t(1) << 30);  // the documented default
  attn::empty_cache();
  { attn::Tensor a = attn::Tensor::empty({1 << 14}), b = attn::Tensor::empty({1 << 15}); }  // 64 + 128 KiB
  CHECK(attn::memory_stats().cached_bytes == int64_t(3) << 16);
  attn::set_cache_limit(int64_t(1) << 17);  // 128 KiB: one of the two sizes must go now
  CHECK(attn::memory_stats().cached_bytes <= int64_t(1) << 17);
  CHECK(attn::cache_limit() == int64_t(1) << 17);
  attn::set_cache_limit(0);  // off: a freed buffer goes straight back to the system
  CHECK(attn::memory_stats().cached_bytes == 0);
  { attn::Tensor c = attn::Tensor::empty({1 << 14}); }
  CHECK(attn::memory_stats().cached_bytes == 0);
  CHECK_THROWS_WITH(attn::set_cache_limit(-1), Catch::Matchers::Contains("set_cache_limit"));
  attn::set_cache_limit(keep);
  { attn::Tensor d = attn::Tensor::empty({1 << 14}); }
  CHECK(attn::memory_stats().cached_bytes == int64_t(1) << 16);
  attn::empty_cache();
}

TEST_CASE("freed buffers are reused by size (cache and per-thread pool), empty_cache returns them", "[tensor][memory]") {
  if (!attn::detail::BlockCache::kEnabled) return;  // off under AddressSanitizer
  attn::empty_cache();
  CHECK(attn::memory_stats().cached_bytes == 0);
  const int64_t base = attn::memory_stats().current_bytes;
  void* big = nullptr;
  {
    attn::Tensor a = attn::Tensor::empty({1 << 14});  // 64 KiB: the size-keyed cache
    big = a.raw_data();
  }
  CHECK(attn::memory_stats().cached_bytes == int64_t(1) << 16);
  CHECK(attn::memory_stats().current_bytes == base);  // cached bytes are not live bytes
  {
    attn::Tensor b = attn::Tensor::empty({1 << 14});
    CHECK(b.raw_data() == big);  // the same block again, no fresh pages
    CHECK(attn::memory_stats().cached_bytes == 0);
    attn::Tensor c = attn::Tensor::empty({1 << 13});  // another size: a new block
    CHECK(c.raw_data() != big);
  }
  attn::empty_cache();
  CHECK(attn::memory_stats().cached_bytes == 0);
  // small buffers: the calling thread's pool
  void* small = nullptr;
  {
    attn::Tensor s = attn::Tensor::empty({3, 5});
    small = s.raw_data();
    CHECK(reinterpret_cast<uintptr_t>(small) % 64 == 0);
  }
  attn::Tensor s2 = attn::Tensor::empty({15});  // same rounded size (64 bytes)
  CHECK(s2.raw_data() == small);
  // a tensor made on a thread that has exited, freed here; and one made here, freed there
  attn::Tensor from_thread, to_thread = attn::Tensor::ones({7});
  std::thread th([&] {
    from_thread = attn::Tensor::full({5, 5}, 2.0);
    to_thread = attn::Tensor();
  });
  th.join();
  CHECK(from_thread.sum().item<float>() == 50.0f);
  from_thread = attn::Tensor();
  CHECK(attn::memory_stats().current_bytes == base + 15 * 4);  // only s2 is alive
}

#ifndef ATTN_WITH_CUDA
namespace {
// A stand-in for a device backend that keeps "device" memory on the host, so the core's device
// seam (core/device.hpp, core/device_tensor.hpp) runs without a GPU: copies to and from the
// device, device clones, and the backward engine's accumulation into device gradients.
int fake_count() { return 1; }
const char* fake_count_error() { return ""; }
void* fake_malloc(size_t bytes) { return bytes ? std::malloc(bytes) : nullptr; }
void fake_free(void* p) noexcept { std::free(p); }
void fake_empty_cache() {}
void fake_copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void fake_memset_zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}
void fake_strided_copy(const void*, void*, int, bool, int, const int64_t*, const int64_t*, const int64_t*, bool) {
  throw std::logic_error("fake device: strided_copy is not used by this test");
}
void fake_add(float* acc, const float* g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += g[i];
}
void fake_add_f64(double* acc, const double* g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += g[i];
}
const DeviceMemory kFakeDevice = {fake_count, fake_count_error, fake_malloc,       fake_free,
                                  fake_empty_cache, fake_copy, fake_copy,          fake_copy,
                                  fake_memset_zero, fake_strided_copy, fake_add, fake_add_f64};
}  // namespace

TEST_CASE("device: without a registered backend there is no CUDA, and moving a tensor there says why",
          "[tensor][device]") {
  REQUIRE(cuda_memory() == nullptr);
  CHECK(cuda_device_count() == 0);
  CHECK_FALSE(cuda_is_available());
  cuda_empty_cache();  // a no-op
  Tensor x = Tensor::ones({2});
  CHECK(x.to(Device::CPU).is_same(x));
  try {
    x.to(Device::CUDA);
    FAIL("to(Device::CUDA) did not throw");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("attn was built without ATTN_WITH_CUDA") == 0);
  }
}

TEST_CASE("device: a registered backend's memory carries to(), clone, copy_ and backward", "[tensor][device]") {
  REQUIRE(cuda_memory() == nullptr);
  register_cuda_memory(&kFakeDevice);
  struct Unregister {
    ~Unregister() { register_cuda_memory(nullptr); }
  } unregister;
  Tensor x = Tensor::from_vector(VD{1.0, -2.0, 3.0}).requires_grad_();
  Tensor d = x.to(Device::CUDA);
  CHECK(d.device() == Device::CUDA);
  CHECK_THROWS_AS(d.data<double>(), std::invalid_argument);  // device memory is not host-readable
  CHECK(d.to_vector<double>() == VD{1.0, -2.0, 3.0});        // one device-to-host copy
  Tensor c = d.clone();
  CHECK(c.device() == Device::CUDA);
  {
    NoGradGuard ng;
    Tensor host = Tensor::from_vector(VD{4.0, 5.0, 6.0});
    Tensor dev = detail::zeros_on(Device::CUDA, {3}, kFloat64);
    CHECK(dev.to_vector<double>() == VD{0.0, 0.0, 0.0});
    dev.copy_(host);
    CHECK(dev.to_vector<double>() == VD{4.0, 5.0, 6.0});
  }
  // Two paths from x through the device, so the device node's gradient is accumulated there
  // (an empty device slot, then slot += g) before it is copied back to x's CPU gradient.
  Tensor y = mul(d.to(Device::CPU) + c.to(Device::CPU), 1.0);
  y.sum().backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device() == Device::CPU);
  CHECK(x.grad().to_vector<double>() == VD{2.0, 2.0, 2.0});
}
#endif
