// runtime/gguf/half.h: portable conversions between float32 and the two 16-bit float formats that
// GGUF tensors use (IEEE binary16 "F16" and bfloat16 "BF16"). Header-only, no intrinsics, so every
// plugin and test can use the same bit-exact reference.
//
// Rounding: float32 -> 16-bit uses IEEE round-to-nearest-even. Inf stays inf, NaN stays NaN (payload
// truncated, quiet bit forced so a NaN never turns into inf), f16 subnormals are produced and read exactly.
#ifndef KESTREL_RUNTIME_GGUF_HALF_H_
#define KESTREL_RUNTIME_GGUF_HALF_H_

#include <cstdint>
#include <cstring>

namespace kestrel {
namespace runtime {

inline uint32_t FloatBits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  return x;
}

inline float BitsToFloat(uint32_t x) {
  float f;
  std::memcpy(&f, &x, sizeof(f));
  return f;
}

// IEEE binary16 bits -> float32. Exact for every input (every f16 is representable in f32).
inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return BitsToFloat(sign);
    // Subnormal: renormalise so the leading 1 becomes the implicit bit.
    int32_t e = -14;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    mant &= 0x3ffu;
    return BitsToFloat(sign | (static_cast<uint32_t>(e + 127) << 23) | (mant << 13));
  }
  if (exp == 31) return BitsToFloat(sign | 0x7f800000u | (mant << 13));
  return BitsToFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

// float32 -> IEEE binary16 bits, round-to-nearest-even. Values >= 65520 in magnitude become inf.
inline uint16_t F32ToF16(float f) {
  const uint32_t x = FloatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {
    if (abs == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // quiet NaN
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // below the smallest f16 normal (2^-14): subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25 rounds (to even) to 0
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24: result is m * 2^(e-126) in units of 2^-24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal: correct
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t h = (abs - 0x38000000u) >> 13;  // rebias exponent 127 -> 15, drop 13 mantissa bits
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is correct
  return static_cast<uint16_t>(sign | h);
}

// bfloat16 bits -> float32 (exact).
inline float Bf16ToF32(uint16_t b) { return BitsToFloat(static_cast<uint32_t>(b) << 16); }

// float32 -> bfloat16 bits, round-to-nearest-even; NaN stays a (quiet) NaN.
inline uint16_t F32ToBf16(float f) {
  const uint32_t x = FloatBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GGUF_HALF_H_
