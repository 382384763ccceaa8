// Q8_0 / Q4_0 encoders: byte-identical to the reference plugin's copy of llama.cpp's quantizers,
// exact block layout, and the round trip within the format's error bound.
#include "tools/synth/quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kestrel/plugin_sdk/dtype.h"
#include "runtime/gguf/half.h"

namespace kestrel::synth {
namespace {

// Blocks of varied scale and sign, including an all-zero block, a block whose largest element is
// negative, and a constant block.
std::vector<float> TestData(size_t n_blocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n_blocks * kQuantBlockElems);
  for (size_t b = 0; b < n_blocks; ++b) {
    const float scale = std::pow(10.0f, static_cast<float>(static_cast<int>(b % 5) - 2));
    for (size_t j = 0; j < kQuantBlockElems; ++j) x[b * 32 + j] = normal(rng) * scale;
  }
  std::fill(x.begin(), x.begin() + 32, 0.0f);
  x[32 + 5] = -50.0f;
  std::fill(x.begin() + 64, x.begin() + 96, 0.25f);
  return x;
}

TEST(QuantizeTest, Q8_0MatchesReferenceAndBound) {
  const std::vector<float> x = TestData(64, 1);
  const size_t n = x.size();
  std::vector<uint8_t> mine(n / 32 * kQ8_0BlockBytes), ref(mine.size());
  QuantizeQ8_0(x.data(), n, mine.data());
  plugin_sdk::QuantizeRowQ8_0(x.data(), static_cast<int64_t>(n), ref.data());
  EXPECT_EQ(mine, ref);

  std::vector<float> back(n), ref_back(n);
  DequantizeQ8_0(mine.data(), n, back.data());
  plugin_sdk::DequantizeRow(KESTREL_DTYPE_Q8_0, mine.data(), static_cast<int64_t>(n), ref_back.data());
  EXPECT_EQ(back, ref_back);
  for (size_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f;
    // Half a step, plus the f16 rounding of d (relative 2^-11) times at most 127 steps.
    const float bound = 0.5f * d + 127.0f * d * std::ldexp(1.0f, -11) + 1e-30f;
    for (size_t j = 0; j < 32; ++j) {
      EXPECT_LE(std::fabs(back[b * 32 + j] - x[b * 32 + j]), bound) << "block " << b << " elem " << j;
    }
  }
}

TEST(QuantizeTest, Q4_0MatchesReferenceAndBound) {
  const std::vector<float> x = TestData(64, 2);
  const size_t n = x.size();
  std::vector<uint8_t> mine(n / 32 * kQ4_0BlockBytes), ref(mine.size());
  QuantizeQ4_0(x.data(), n, mine.data());
  plugin_sdk::QuantizeRowQ4_0(x.data(), static_cast<int64_t>(n), ref.data());
  EXPECT_EQ(mine, ref);

  std::vector<float> back(n), ref_back(n);
  DequantizeQ4_0(mine.data(), n, back.data());
  plugin_sdk::DequantizeRow(KESTREL_DTYPE_Q4_0, mine.data(), static_cast<int64_t>(n), ref_back.data());
  EXPECT_EQ(back, ref_back);
  for (size_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 8.0f;
    // Half a step inside the range; a full step at the end opposite the largest element, where
    // +8 is clamped to +7; plus the f16 rounding of d times at most 8 steps.
    const float bound = d + 8.0f * d * std::ldexp(1.0f, -11) + 1e-30f;
    double sum_err = 0;
    for (size_t j = 0; j < 32; ++j) {
      const float err = std::fabs(back[b * 32 + j] - x[b * 32 + j]);
      EXPECT_LE(err, bound) << "block " << b << " elem " << j;
      sum_err += err;
    }
    EXPECT_LE(sum_err / 32, 0.5 * d + 1e-30) << "block " << b;  // typical error is below half a step
  }
}

TEST(QuantizeTest, Q4_0BlockLayout) {
  // x_j = j - 16: the largest magnitude is x_0 = -16, so d = -16 / -8 = 2 and q = trunc(x/2 + 8.5).
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  uint8_t block[kQ4_0BlockBytes];
  QuantizeQ4_0(x, 32, block);
  uint16_t d;
  std::memcpy(&d, block, 2);
  EXPECT_EQ(d, runtime::F32ToF16(2.0f));
  EXPECT_EQ(block[2 + 0], 0x80);   // element 0 -> 0 (low nibble), element 16 -> 8 (high nibble)
  EXPECT_EQ(block[2 + 1], 0x91);   // element 1 -> 1, element 17 -> 9
  EXPECT_EQ(block[2 + 15], 0xF8);  // element 15 -> 8, element 31 -> trunc(16) clamped to 15
  float back[32];
  DequantizeQ4_0(block, 32, back);
  EXPECT_EQ(back[0], -16.0f);
  EXPECT_EQ(back[16], 0.0f);
  EXPECT_EQ(back[31], 14.0f);  // 15 clamps to (15 - 8) * 2
}

TEST(QuantizeTest, Q8_0BlockLayout) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  uint8_t block[kQ8_0BlockBytes];
  QuantizeQ8_0(x, 32, block);
  uint16_t d;
  std::memcpy(&d, block, 2);
  EXPECT_EQ(d, runtime::F32ToF16(16.0f / 127.0f));
  EXPECT_EQ(static_cast<int8_t>(block[2 + 0]), -127);
  EXPECT_EQ(static_cast<int8_t>(block[2 + 16]), 0);
  EXPECT_EQ(static_cast<int8_t>(block[2 + 31]), static_cast<int8_t>(std::round(15.0f * 127.0f / 16.0f)));
  uint8_t zero_block[kQ8_0BlockBytes];
  float zeros[32] = {};
  QuantizeQ8_0(zeros, 32, zero_block);
  float back[32];
  DequantizeQ8_0(zero_block, 32, back);
  for (float v : back) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace kestrel::synth
