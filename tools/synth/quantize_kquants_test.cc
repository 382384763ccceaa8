// The Q4_1..Q6_K encoders of kestrel-synth, decoded by the reference plugin (an independent
// decoder, bit-exact with gguf-py): the round trip of N(0, 1) data stays within each format's
// expected error, all-zero blocks decode to zeros, and the stored quants use the formats' range.
#include "tools/synth/quantize_kquants.h"

#include <cmath>
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/plugin_api.h"
#include "kestrel/plugin_sdk/reference_kernels.h"
#include "tools/synth/synth_writer.h"

namespace kestrel::synth {
namespace {

using runtime::GgmlType;

struct Case {
  GgmlType type;
  uint32_t dtype;
  double max_rel_rms;  // ||dequant - x|| / ||x|| for N(0, 1) data
};

// Bounds ~1.3x the errors measured for these encoders (2026-12-07, 64 Ki values: Q4_1 0.073,
// Q5_0 0.040, Q5_1 0.036, Q2_K 0.300, Q3_K 0.142, Q4_K 0.075, Q5_K 0.037, Q6_K 0.018); each
// format's error is set by its bits: about halving per extra bit.
const Case kCases[] = {
    {GgmlType::Q4_1, KESTREL_DTYPE_Q4_1, 0.095}, {GgmlType::Q5_0, KESTREL_DTYPE_Q5_0, 0.052},
    {GgmlType::Q5_1, KESTREL_DTYPE_Q5_1, 0.047}, {GgmlType::Q2_K, KESTREL_DTYPE_Q2_K, 0.39},
    {GgmlType::Q3_K, KESTREL_DTYPE_Q3_K, 0.185}, {GgmlType::Q4_K, KESTREL_DTYPE_Q4_K, 0.097},
    {GgmlType::Q5_K, KESTREL_DTYPE_Q5_K, 0.048}, {GgmlType::Q6_K, KESTREL_DTYPE_Q6_K, 0.023},
};

TEST(QuantizeKquantsTest, RoundTripErrorPerFormat) {
  constexpr size_t kN = 1 << 16;
  std::vector<float> x(kN), y(kN);
  uint64_t state = TensorSeed(7, "round-trip");
  FillNormal(&state, 1.0f, x.data(), kN);
  for (const Case& c : kCases) {
    SCOPED_TRACE(runtime::GgmlTypeName(c.type));
    const runtime::GgmlTypeTraits t = runtime::GgmlTypeTraitsOf(c.type);
    std::vector<uint8_t> bytes(kN / t.block_elems * t.block_bytes);
    ASSERT_EQ(QuantizeExtra(c.type, x.data(), kN, bytes.data()), bytes.size());
    plugin_sdk::DequantizeRow(c.dtype, bytes.data(), kN, y.data());
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < kN; ++i) {
      ASSERT_TRUE(std::isfinite(y[i])) << i;
      num += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
      den += double(x[i]) * x[i];
    }
    const double rel = std::sqrt(num / den);
    std::printf("%s: relative RMS error %.4f\n", runtime::GgmlTypeName(c.type), rel);
    EXPECT_LE(rel, c.max_rel_rms);
    EXPECT_GT(rel, c.max_rel_rms / 4) << "suspiciously exact";
  }
}

TEST(QuantizeKquantsTest, ZerosAndConstantsSurvive) {
  std::vector<float> zeros(256, 0.0f), ones(256, 0.75f), y(256);
  for (const Case& c : kCases) {
    SCOPED_TRACE(runtime::GgmlTypeName(c.type));
    const runtime::GgmlTypeTraits t = runtime::GgmlTypeTraitsOf(c.type);
    std::vector<uint8_t> bytes(256 / t.block_elems * t.block_bytes);
    QuantizeExtra(c.type, zeros.data(), 256, bytes.data());
    plugin_sdk::DequantizeRow(c.dtype, bytes.data(), 256, y.data());
    for (float v : y) ASSERT_EQ(v, 0.0f);
    QuantizeExtra(c.type, ones.data(), 256, bytes.data());
    plugin_sdk::DequantizeRow(c.dtype, bytes.data(), 256, y.data());
    for (float v : y) ASSERT_NEAR(v, 0.75f, 0.75f * c.max_rel_rms);
  }
  EXPECT_FALSE(IsExtraQuantType(GgmlType::Q4_0));
  EXPECT_EQ(QuantizeExtra(GgmlType::Q8_0, zeros.data(), 256, nullptr), 0u);
}

}  // namespace
}  // namespace kestrel::synth
