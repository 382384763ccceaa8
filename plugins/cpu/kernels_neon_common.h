// Helpers of the aarch64 kernels (kernels_neon_impl.h, kernels_kquants_neon_impl.h). Included
// only by translation units that define KESTREL_CPU_DOTPROD; internal linkage, like the kernels.
#ifndef KESTREL_PLUGINS_CPU_KERNELS_NEON_COMMON_H_
#define KESTREL_PLUGINS_CPU_KERNELS_NEON_COMMON_H_

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

namespace kestrel::plugins::cpu {
namespace {
namespace neon {

// acc + the dot of 16 int8 pairs: lane i gets the products of bytes 4i..4i+3 (sdot's lanes). The
// plain-NEON form widens to int16 and adds adjacent pairs twice: a pair of int8 x int8 products
// is at most 2 * 128 * 127 = 32512, within int16.
inline int32x4_t Dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if KESTREL_CPU_DOTPROD
  return vdotq_s32(acc, a, b);
#else
  const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t p1 = vmull_high_s8(a, b);
  return vpadalq_s16(acc, vpaddq_s16(p0, p1));
#endif
}

// 4 binary16 values (bits) to f32; exact, subnormals included.
inline float32x4_t HalfToF32x4(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

inline float HalfAt(const void* p) {
  __fp16 h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(h);
}

}  // namespace neon
}  // namespace
}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_KERNELS_NEON_COMMON_H_
