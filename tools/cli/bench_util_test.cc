// The pure C++ parts of `kestrel bench`: statistics, the synthetic prompt, the membw kernels.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>

#include "bench_util.h"
#include "membw.h"

namespace kestrel::cli {
namespace {

TEST(BenchUtilTest, Summarize) {
  Summary s = Summarize({3, 1, 2});
  EXPECT_EQ(s.median, 2);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 3);
  s = Summarize({4, 1, 3, 2});
  EXPECT_EQ(s.median, 2.5);
  s = Summarize({7});
  EXPECT_EQ(s.median, 7);
  s = Summarize({});
  EXPECT_EQ(s.median, 0);
  EXPECT_EQ(s.max, 0);
}

TEST(BenchUtilTest, ChoosePrefixTokens) {
  // Unset: the preferred length when it fits, else the largest that does.
  PrefixChoice c = ChoosePrefixTokens(std::nullopt, 512, 2048, 20);
  EXPECT_EQ(c.tokens, 512u);
  EXPECT_TRUE(c.fits);
  c = ChoosePrefixTokens(std::nullopt, 512, 512, 20);
  EXPECT_EQ(c.tokens, 492u);
  EXPECT_TRUE(c.fits);
  c = ChoosePrefixTokens(std::nullopt, 512, 532, 20);
  EXPECT_EQ(c.tokens, 512u);
  c = ChoosePrefixTokens(std::nullopt, 512, 20, 20);  // nothing fits: skip
  EXPECT_EQ(c.tokens, 0u);
  EXPECT_TRUE(c.fits);
  c = ChoosePrefixTokens(std::nullopt, 512, 0, 20);  // unknown context: no limit
  EXPECT_EQ(c.tokens, 512u);
  // Given: 0 skips; a length that fits is used as is; one that does not is reported.
  c = ChoosePrefixTokens(0u, 512, 2048, 20);
  EXPECT_EQ(c.tokens, 0u);
  EXPECT_TRUE(c.fits);
  c = ChoosePrefixTokens(1000u, 512, 2048, 20);
  EXPECT_EQ(c.tokens, 1000u);
  EXPECT_TRUE(c.fits);
  c = ChoosePrefixTokens(493u, 512, 512, 20);
  EXPECT_FALSE(c.fits);
  EXPECT_EQ(c.tokens, 492u);  // the largest that fits
  c = ChoosePrefixTokens(492u, 512, 512, 20);
  EXPECT_TRUE(c.fits);
}

TEST(BenchUtilTest, SyntheticPrompt) {
  std::vector<int32_t> ids = SyntheticPromptIds(8, 512, 1);
  ASSERT_EQ(ids.size(), 8u);
  EXPECT_EQ(ids[0], 1);
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_GE(ids[i], 3);
    EXPECT_LT(ids[i], 512);
    EXPECT_NE(ids[i], ids[i - 1]);
  }
  EXPECT_EQ(SyntheticPromptIds(8, 512, 1), ids);  // deterministic
  ids = SyntheticPromptIds(1000, 10, -1);         // no BOS; cycles within a tiny vocab
  ASSERT_EQ(ids.size(), 1000u);
  for (int32_t id : ids) {
    EXPECT_GE(id, 3);
    EXPECT_LT(id, 10);
  }
  EXPECT_TRUE(SyntheticPromptIds(0, 512, 1).empty());
}

TEST(BenchUtilTest, SystemProbes) {
  EXPECT_GT(PeakRssBytes(), 0u);
  EXPECT_GT(PhysicalMemoryBytes(), 0u);
  (void)LastLevelCacheBytes();  // may be 0 in containers; must not crash
}

TEST(MembwTest, KernelsSumEveryElement) {
  const size_t n = 4096 + 32;
  std::unique_ptr<uint64_t, decltype(&std::free)> p(
      static_cast<uint64_t*>(std::aligned_alloc(64, n * sizeof(uint64_t))), &std::free);
  uint64_t expected = 0;
  for (size_t i = 0; i < n; ++i) {
    p.get()[i] = i * 0x9e3779b97f4a7c15ull;  // large values: the sums wrap
    expected += p.get()[i];
  }
  EXPECT_EQ(SumScalar(p.get(), n), expected);
  EXPECT_EQ(SumVec64(p.get(), n), expected);
  EXPECT_EQ(SumVec64Streams(p.get(), n), expected);
  EXPECT_EQ(SumVec64Prefetch(p.get(), n), expected);
  EXPECT_EQ(SumNonTemporal(p.get(), n), expected);
  const std::string isa = Vec64Isa();
  EXPECT_TRUE(isa == "avx512f" || isa == "avx2" || isa == "baseline") << isa;
}

TEST(MembwTest, SmallMeasurement) {
  MembwOptions o;
  o.bytes = 8 << 20;
  o.threads = 2;
  o.reps = 2;
  MembwResult r = MeasureReadBandwidth(o);
  EXPECT_TRUE(r.checksum_ok);
  EXPECT_EQ(r.threads, 2u);
  EXPECT_EQ(r.bytes, 8u << 20);
  ASSERT_EQ(r.kernels.size(), 5u);
  double best = 0;
  std::string best_name;
  for (const MembwKernelResult& k : r.kernels) {
    EXPECT_EQ(k.gb_per_s.size(), 2u) << k.name;
    EXPECT_GT(k.summary.median, 0) << k.name;
    if (k.summary.median > best) {
      best = k.summary.median;
      best_name = k.name;
    }
  }
  EXPECT_EQ(r.best_gb_per_s, best);
  EXPECT_EQ(r.best_kernel, best_name);
}

}  // namespace
}  // namespace kestrel::cli
