// AlignedBuffer: alignment (64 bytes; 2 MiB for huge-page buffers), every byte usable, moves.
// Packed Q4_0 / Q8_0: the decode GEMV's rows equal the multi-token GEMM's bit for bit.
#include "packed_weight.h"

#include <cstdint>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "cpu_features.h"
#include "kernels.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/half.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::plugins::cpu {
namespace {

TEST(AlignedBufferTest, SmallBuffersAre64ByteAligned) {
  AlignedBuffer b(100);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_FALSE(b.huge_pages());
  std::memset(b.data(), 0xAB, 100);
}

TEST(AlignedBufferTest, LargeBuffersStartOnA2MiBBoundary) {
  const uint64_t size = AlignedBuffer::kHugePageBytes * 2 + 12345;  // a 4 KiB-page tail
  AlignedBuffer b(size);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % AlignedBuffer::kHugePageBytes, 0u);
#if defined(__linux__)
  // The advice is best effort (a kernel without THP refuses it); report what happened.
  std::printf("huge-page advice accepted: %s\n", b.huge_pages() ? "yes" : "no");
#endif
  auto* p = static_cast<uint8_t*>(b.data());
  std::memset(p, 0x5A, size);
  EXPECT_EQ(p[0], 0x5A);
  EXPECT_EQ(p[size - 1], 0x5A);

  AlignedBuffer moved(std::move(b));
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(moved.size(), size);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state
  AlignedBuffer assigned(64);
  assigned = std::move(moved);   // frees the small buffer, takes the large one
  EXPECT_EQ(assigned.data(), p);
  EXPECT_EQ(moved.data(), nullptr);  // NOLINT(bugprone-use-after-move)
}

// Speculative greedy identity needs a row's decode (one token) result to equal its verify/prefill
// (GEMM) result, on the AVX-512 levels whichever GEMV form this CPU's GemvStyle picks: n = 37
// (8- and 4-row groups and single rows), k = 576 (SmolLM2's logits: a half group at the end) and 1024.
TEST(PackedQTest, DecodeGemvRowsEqualGemmRowsBitForBit) {
  std::mt19937_64 gen(plugin_sdk::testing_util::TestSeed());
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(1e-4f, 0.05f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (IsaLevel level : {IsaLevel::kAvx512, IsaLevel::kVnni}) {
    if (!IsaLevelSupported(level)) {
      std::printf("level %s: not on this CPU, skipped\n", IsaLevelName(level));
      continue;
    }
    const KernelTable& kt = GetKernels(level);
    for (uint32_t dt : {KESTREL_DTYPE_Q4_0, KESTREL_DTYPE_Q8_0}) {
      for (int64_t k : {int64_t{576}, int64_t{1024}}) {
        SCOPED_TRACE(std::string(IsaLevelName(level)) + (dt == KESTREL_DTYPE_Q8_0 ? " Q8_0 k " : " Q4_0 k ") +
                     std::to_string(k));
        const int64_t n = 37, T = 5;
        const size_t block = dt == KESTREL_DTYPE_Q8_0 ? 34 : 18;
        std::vector<uint8_t> w(static_cast<size_t>(n * k / 32) * block);
        for (size_t b = 0; b < w.size(); b += block) {
          const uint16_t d = plugin_sdk::FloatToHalf(scale(gen));
          std::memcpy(&w[b], &d, 2);
          for (size_t i = 2; i < block; ++i) w[b + i] = static_cast<uint8_t>(byte(gen));
        }
        std::unique_ptr<PackedQ> packed = RepackQ(plugin_sdk::testing_util::Desc(dt, {n, k}), w.data());
        const QWeightView& v = packed->view;
        const int64_t G = v.n_groups;
        std::vector<float> x(static_cast<size_t>(T * k));
        for (float& e : x) e = normal(gen);
        std::vector<int8_t> qs(static_cast<size_t>(T * G * kActGroupBytes));
        std::vector<int32_t> bias(static_cast<size_t>(T * G * 16));
        std::vector<float> ad(static_cast<size_t>(T * G * 4));
        for (int64_t t = 0; t < T; ++t) {
          kt.quantize_row_act(x.data() + t * k, k, G, v.offset, qs.data() + t * G * kActGroupBytes,
                              bias.data() + t * G * 16, ad.data() + t * G * 4);
        }
        const QActView act{G, qs.data(), bias.data(), ad.data()};
        std::vector<float> y1(n, NAN), yt(static_cast<size_t>(T * n), NAN);
        kt.gemm_q(v, act, 1, 0, n, y1.data(), n);
        kt.gemm_q(v, act, T, 0, n, yt.data(), n);
        for (int64_t j = 0; j < n; ++j) {
          ASSERT_TRUE(std::isfinite(y1[j])) << "row " << j;
          ASSERT_EQ(std::memcmp(&y1[j], &yt[j], sizeof(float)), 0) << "row " << j << ": " << y1[j] << " vs " << yt[j];
        }
      }
    }
  }
}

}  // namespace
}  // namespace kestrel::plugins::cpu
