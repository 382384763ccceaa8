// The KQ kernel tables (kernels_kquants.h) against each other: every level's activation quantizer
// writes the portable one's bytes (same arithmetic), and every level's GEMM agrees with the
// portable GEMM to f32 summation-order rounding. Levels this CPU lacks are skipped. The plugin-level
// comparison with `ref` is cpu_conformance_test.
#include "kernels_kquants.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/plugin_api.h"
#include "cpu_features.h"
#include "packed_kquant.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "kestrel/plugin_sdk/quants.h"
#include "plugin_sdk/src/test_util.h"

namespace kestrel::plugins::cpu {
namespace {

TEST(KQuantKernelsTest, EveryLevelMatchesPortable) {
  SEED_TRACE();
  std::mt19937_64 gen(plugin_sdk::testing_util::TestSeed());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const KQuantKernels& portable = PortableKQuantKernels();
  for (IsaLevel level : {IsaLevel::kAvx2, IsaLevel::kAvx512, IsaLevel::kVnni, IsaLevel::kNeon,
                         IsaLevel::kDotprod}) {
    if (!IsaLevelSupported(level)) {
      std::printf("level %s: not on this CPU, skipped\n", IsaLevelName(level));
      continue;
    }
    const KQuantKernels& kk = GetKQuantKernels(level);
    SCOPED_TRACE(IsaLevelName(level));
    for (uint32_t dt : {KESTREL_DTYPE_Q4_1, KESTREL_DTYPE_Q5_0, KESTREL_DTYPE_Q5_1,
                        KESTREL_DTYPE_Q2_K, KESTREL_DTYPE_Q3_K, KESTREL_DTYPE_Q4_K,
                        KESTREL_DTYPE_Q5_K, KESTREL_DTYPE_Q6_K}) {
      SCOPED_TRACE(plugin_sdk::DtypeName(dt));
      // 32-block formats: rows ending in a compact partial super-block of 1..7 blocks (224 is
      // one partial super-block only; 576 and 640 are SmolLM2's and Gemma 3 270M's widths).
      const std::vector<int64_t> ks = plugin_sdk::IsKQuant(dt)
                                          ? std::vector<int64_t>{512}
                                          : std::vector<int64_t>{288, 224, 576, 640, 416, 704, 992, 1024};
      for (int64_t k : ks) {
      SCOPED_TRACE(k);
      // t = 14: the prefill path that unpacks row tiles once (>= 12 tokens) with chunks of 3 and 2;
      // t = 70 at vnni: the 16-row lane tiles (>= 64 tokens: two tiles, 8 + 6 tokens, 5 rows left).
      // n = 37: the decode GEMV's 8- and 4-row groups and single rows (tiles style), tiles of 4 + 1.
      const int64_t n = 37, t = 70;
      const int64_t nsb = (k + kSuperElems - 1) / kSuperElems;
      std::vector<float> x(t * k);
      for (float& v : x) v = normal(gen);
      std::vector<int8_t> qa(t * nsb * kActSuperBytes), qb(qa.size());
      std::vector<float> da(t * nsb * kActSuperFloats), db(da.size());
      for (int64_t i = 0; i < t; ++i) {
        portable.quantize_act(x.data() + i * k, k, nsb, qa.data() + i * nsb * kActSuperBytes,
                              da.data() + i * nsb * kActSuperFloats);
        kk.quantize_act(x.data() + i * k, k, nsb, qb.data() + i * nsb * kActSuperBytes,
                        db.data() + i * nsb * kActSuperFloats);
      }
      EXPECT_EQ(qa, qb);
      EXPECT_EQ(da, db);

      std::vector<uint8_t> w(plugin_sdk::RowBytes(dt, k) * n);
      plugin_sdk::RandomExtraBlocks(dt, static_cast<int64_t>(w.size() / plugin_sdk::DtypeBlockBytes(dt)), true,
                             gen, w.data());
      const kestrel_tensor_desc_t desc = plugin_sdk::testing_util::Desc(dt, {n, k});
      std::unique_ptr<PackedK> packed = RepackK(desc, w.data());
      if (level == IsaLevel::kAvx2 || level == IsaLevel::kNeon) {  // the layout, once per format
        // DequantKRows reads the planes back (compact tails included) bit for bit as the SDK
        // dequantizes the GGUF row.
        std::vector<float> deq(n * k), want(k);
        DequantKRows(packed->view, 0, n, deq.data(), k);
        for (int64_t j = 0; j < n; ++j) {
          plugin_sdk::DequantizeExtraRow(dt, w.data() + j * plugin_sdk::RowBytes(dt, k), k, want.data());
          ASSERT_EQ(0, std::memcmp(want.data(), deq.data() + j * k, k * sizeof(float))) << "row " << j;
        }
      }
      const KActView act{nsb, qa.data(), da.data()};
      std::vector<float> y1;
      for (int64_t tokens : {int64_t{1}, int64_t{5}, int64_t{14}, t}) {
        std::vector<float> ya(tokens * n, NAN), yb(tokens * n, NAN);
        portable.gemm(packed->view, act, tokens, 0, n, ya.data(), n);
        kk.gemm(packed->view, act, tokens, 0, n, yb.data(), n);
        for (size_t i = 0; i < ya.size(); ++i) {
          ASSERT_TRUE(std::isfinite(yb[i])) << i;
          EXPECT_NEAR(yb[i], ya[i], 1e-4 * (1.0 + std::fabs(ya[i]))) << "tokens " << tokens << " i " << i;
        }
        if ((level == IsaLevel::kAvx512 || level == IsaLevel::kVnni) && tokens < 64) {
          // Decode (GEMV) and verify-sized batches (tiles, unpacked tiles) give bit-identical rows,
          // which speculative decoding's greedy identity relies on; the prefill lane tiles
          // (>= 64 tokens) sum in another order and are held to the tolerance above.
          if (tokens == 1) y1 = yb;
          for (int64_t j = 0; j < n; ++j) ASSERT_EQ(y1[j], yb[j]) << "tokens " << tokens << " row " << j;
        }
      }
      }
    }
  }
}

}  // namespace
}  // namespace kestrel::plugins::cpu
