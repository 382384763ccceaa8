#include "runtime/gguf/half.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include <gtest/gtest.h>

namespace kestrel {
namespace runtime {
namespace {

// Reference f32 -> f16 by search over the (monotonic) positive f16 codes, in double arithmetic.
uint16_t RefF32ToF16(float x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (std::isinf(x)) return sign | 0x7c00;
  uint32_t lo = 0, hi = 0x7bff;  // largest code with value <= a
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (static_cast<double>(F16ToF32(static_cast<uint16_t>(mid))) <= a) lo = mid; else hi = mid - 1;
  }
  const double below = F16ToF32(static_cast<uint16_t>(lo));
  const double above = lo == 0x7bff ? 65536.0 : F16ToF32(static_cast<uint16_t>(lo + 1));
  const double d_lo = a - below, d_hi = above - a;
  uint32_t code = lo;
  if (d_hi < d_lo || (d_hi == d_lo && (lo & 1))) code = lo + 1;  // ties to even
  return static_cast<uint16_t>(sign | code);                        // 0x7c00 = inf on overflow
}

TEST(HalfTest, F16RoundTripsExhaustively) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (is_nan) {
      EXPECT_TRUE(std::isnan(f)) << h;
      EXPECT_EQ(F32ToF16(f) & 0x7c00, 0x7c00) << h;
      EXPECT_NE(F32ToF16(f) & 0x3ff, 0) << h;
      EXPECT_EQ(F32ToF16(f) & 0x8000, h & 0x8000) << h;
      if (h & 0x200) {
        EXPECT_EQ(F32ToF16(f), h) << h;  // quiet NaNs keep their payload
      }
    } else {
      EXPECT_EQ(F32ToF16(f), h) << h;
    }
  }
}

TEST(HalfTest, F16KnownValues) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_TRUE(std::isinf(F16ToF32(0x7c00)));
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);  // ties to even -> overflow
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);                   // tie -> even (0)
  EXPECT_EQ(F32ToF16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 1);  // just above the tie
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);                   // 1.5 ulp -> even (2)
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(std::numeric_limits<float>::quiet_NaN()))));
  // A signalling NaN whose payload lives only in the low bits must not become inf.
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(BitsToFloat(0x7f800001u)))));
}

TEST(HalfTest, F32ToF16MatchesReference) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<uint32_t> bits;
  int checked = 0;
  for (int i = 0; i < 200000; ++i) {
    // Bias towards the f16 range: random sign/mantissa, exponent in [-30, 17].
    uint32_t x = bits(rng);
    if (i % 2 == 0) {
      const uint32_t e = 127 - 30 + (bits(rng) % 48);
      x = (x & 0x807fffffu) | (e << 23);
    }
    const float f = BitsToFloat(x);
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), RefF32ToF16(f)) << std::hex << x;
    ++checked;
  }
  // Every midpoint between adjacent f16 values (exact in f32), and its neighbours.
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    const double mid = (static_cast<double>(F16ToF32(h)) + F16ToF32(h + 1)) / 2;
    const float m = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(m), mid);
    for (float f : {m, std::nextafter(m, 0.0f), std::nextafter(m, 1e9f)}) {
      ASSERT_EQ(F32ToF16(f), RefF32ToF16(f)) << h;
      ASSERT_EQ(F32ToF16(-f), RefF32ToF16(-f)) << h;
    }
  }
  EXPECT_GT(checked, 190000);
}

TEST(HalfTest, Bf16) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToF32(0xc040), -3.0f);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(F32ToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(BitsToFloat(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(BitsToFloat(0xffc00000u)))));
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = Bf16ToF32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToBf16(f), b);
  }
}

}  // namespace
}  // namespace runtime
}  // namespace kestrel
