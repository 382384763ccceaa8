// The ISA levels' names, availability and dispatch: a level of the other architecture family is
// never available (and dispatches to the portable tables), every available level dispatches to
// its own tables. Runs on x86 here and on aarch64 under QEMU (samples/edge, cpu-conformance).
#include "cpu_features.h"

#include <cstdio>

#include "gtest/gtest.h"
#include "kernels.h"
#include "kernels_kquants.h"

namespace kestrel::plugins::cpu {
namespace {

const IsaLevel kAllLevels[] = {IsaLevel::kPortable, IsaLevel::kAvx2, IsaLevel::kAvx512,
                               IsaLevel::kVnni,     IsaLevel::kAmx,  IsaLevel::kNeon,
                               IsaLevel::kDotprod};

TEST(CpuFeaturesTest, LevelNamesRoundTrip) {
  for (IsaLevel level : kAllLevels) {
    IsaLevel parsed = IsaLevel::kPortable;
    ASSERT_TRUE(ParseIsaLevel(IsaLevelName(level), &parsed)) << IsaLevelName(level);
    EXPECT_EQ(parsed, level) << IsaLevelName(level);
  }
  IsaLevel parsed;
  EXPECT_FALSE(ParseIsaLevel("sve", &parsed));
  ASSERT_TRUE(ParseIsaLevel("best", &parsed));
  EXPECT_EQ(parsed, BestIsaLevel());
}

TEST(CpuFeaturesTest, OnlyThisArchitecturesLevelsAreAvailable) {
  std::printf("best level here: %s\n", IsaLevelName(BestIsaLevel()));
  EXPECT_TRUE(IsaLevelSupported(IsaLevel::kPortable));
  EXPECT_TRUE(IsaLevelSupported(BestIsaLevel()));
#if defined(__x86_64__)
  EXPECT_FALSE(IsaLevelSupported(IsaLevel::kNeon));
  EXPECT_FALSE(IsaLevelSupported(IsaLevel::kDotprod));
#elif defined(__aarch64__)
  EXPECT_TRUE(IsaLevelSupported(IsaLevel::kNeon));  // Advanced SIMD: every aarch64 CPU
  EXPECT_EQ(IsaLevelSupported(IsaLevel::kDotprod), DetectCpuFeatures().dotprod);
  for (IsaLevel x86 : {IsaLevel::kAvx2, IsaLevel::kAvx512, IsaLevel::kVnni, IsaLevel::kAmx}) {
    EXPECT_FALSE(IsaLevelSupported(x86)) << IsaLevelName(x86);
  }
#endif
}

TEST(CpuFeaturesTest, EveryAvailableLevelDispatchesToItsOwnTables) {
  for (IsaLevel level : kAllLevels) {
    SCOPED_TRACE(IsaLevelName(level));
    const KernelTable& kt = GetKernels(level);
    if (!IsaLevelSupported(level)) continue;
    EXPECT_EQ(kt.level, level);
    EXPECT_NE(kt.gemm_q, nullptr);
    EXPECT_NE(kt.quantize_row_act, nullptr);
    // The KQ tables: the AMX level runs VNNI's, every other level its own.
    const IsaLevel kq_level = level == IsaLevel::kAmx ? IsaLevel::kVnni : level;
    EXPECT_EQ(GetKQuantKernels(level).level, kq_level);
  }
}

}  // namespace
}  // namespace kestrel::plugins::cpu
