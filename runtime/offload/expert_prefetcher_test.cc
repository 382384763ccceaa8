// Unit test of the expert prefetcher: the bytes it hands out are the file's, requests replace
// earlier ones, a wrong guess is simply not taken, and its counters say so.
#include "runtime/offload/expert_prefetcher.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/offload/expert_cache.h"
#include "tests/temp_dir.h"

namespace kestrel::runtime::offload {
namespace {

// Two layers of 4 experts; gate, up and down stacks of 3000, 2000 and 5000 bytes per expert at
// unaligned offsets.
struct Fixture {
  std::vector<uint8_t> data;
  std::vector<ExpertLayerSource> layers;
  std::vector<uint8_t> Bytes(const ExpertStackSource& s, uint32_t e) const {
    const uint64_t off = s.offset + e * s.expert_bytes;
    return std::vector<uint8_t>(data.begin() + off, data.begin() + off + s.expert_bytes);
  }
};

Fixture Make(const std::string& path) {
  Fixture f;
  uint64_t off = 123;
  for (int l = 0; l < 2; ++l) {
    ExpertLayerSource src;
    for (auto [s, bytes] : {std::pair{&src.gate, 3000u}, std::pair{&src.up, 2000u},
                            std::pair{&src.down, 5000u}}) {
      s->offset = off;
      s->expert_bytes = bytes;
      off += 4u * bytes + 77;
    }
    f.layers.push_back(src);
  }
  f.data.resize(off + 4096);
  for (size_t i = 0; i < f.data.size(); ++i) f.data[i] = static_cast<uint8_t>(i * 131 + i / 251);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(f.data.data()), static_cast<std::streamsize>(f.data.size()));
  return f;
}

class ExpertPrefetcherTest : public ::testing::TestWithParam<bool> {};

TEST_P(ExpertPrefetcherTest, HandsOutTheRequestedExpertsBytes) {
  const kestrel::testing::ScopedTempDir tmp("offload_prefetch");
  const std::string path = tmp.File("experts");
  const Fixture f = Make(path);
  auto p = ExpertPrefetcher::Create(path, &f.layers, 4, 2, GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_GE((*p)->held_bytes(), 2u * (3000 + 2000 + 5000));
  (*p)->Request(1, {2, 0, 3});  // only the first two fit
  ExpertPrefetcher::Bytes b;
  auto taken = (*p)->Take(1, 2, &b);
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_TRUE(*taken);
  EXPECT_EQ(std::vector<uint8_t>(b.gate, b.gate + 3000), f.Bytes(f.layers[1].gate, 2));
  EXPECT_EQ(std::vector<uint8_t>(b.up, b.up + 2000), f.Bytes(f.layers[1].up, 2));
  EXPECT_EQ(std::vector<uint8_t>(b.down, b.down + 5000), f.Bytes(f.layers[1].down, 2));
  (*p)->Release(1, 2);
  EXPECT_FALSE((*p)->Take(1, 3, &b).value());  // beyond the depth: never requested
  EXPECT_FALSE((*p)->Take(0, 2, &b).value());  // another layer
  // A new request replaces the guesses not taken (layer 1 expert 0 here).
  (*p)->Request(0, {1});
  EXPECT_FALSE((*p)->Take(1, 0, &b).value());
  ASSERT_TRUE((*p)->Take(0, 1, &b).value());
  EXPECT_EQ(std::vector<uint8_t>(b.down, b.down + 5000), f.Bytes(f.layers[0].down, 1));
  (*p)->Release(0, 1);
  ExpertPrefetcher::Counters c = (*p)->counters();
  EXPECT_EQ(c.issued, 3u);
  EXPECT_EQ(c.used, 2u);
  (*p)->ResetCounters();
  EXPECT_EQ((*p)->counters().issued, 0u);
}

// Guesses that are never used turn the read-ahead off after the warm-up, but for a periodic probe.
TEST(ExpertPrefetcherGateTest, WrongGuessesTurnItOffButForProbes) {
  const kestrel::testing::ScopedTempDir tmp("offload_prefetch_gate");
  const std::string path = tmp.File("experts");
  const Fixture f = Make(path);
  auto p = ExpertPrefetcher::Create(path, &f.layers, 4, 2, false);
  ASSERT_TRUE(p.ok()) << p.status();
  uint64_t requests = 0;
  while ((*p)->counters().issued_since_load < ExpertPrefetcher::kGateWarmup) {
    EXPECT_TRUE((*p)->Worthwhile());
    (*p)->Request(requests % 2, {static_cast<uint32_t>(requests % 4), 3});
    ++requests;
  }
  int yes = 0;
  for (uint64_t i = 0; i < 4 * ExpertPrefetcher::kGateProbeEvery; ++i) yes += (*p)->Worthwhile();
  EXPECT_EQ(yes, 4);
  // Used guesses turn it back on.
  ExpertPrefetcher::Bytes b;
  for (uint64_t i = 0; i < ExpertPrefetcher::kGateWarmup; ++i) {
    (*p)->Request(0, {1});
    ASSERT_TRUE((*p)->Take(0, 1, &b).value());
    (*p)->Release(0, 1);
  }
  EXPECT_TRUE((*p)->Worthwhile());
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(DirectAndPread, ExpertPrefetcherTest, ::testing::Bool());

}  // namespace
}  // namespace kestrel::runtime::offload
