// aarch64 KQ kernels (kernels_kquants.h), included by kernels_kquants_neon.cc
// (KESTREL_CPU_DOTPROD=0) and kernels_kquants_dotprod.cc (KESTREL_CPU_DOTPROD=1, sdot). A
// 128-bit register holds chunk c of a 64-byte quant register r: 4 elements of each of the
// sub-blocks 4c..4c+3, one per dword lane, so 4 chained Dot16 over r = 0..3 leave those 4
// sub-blocks' integer sums in the 4 lanes. Quants are < 64, so they multiply as signed bytes.
// The activation quantizer is the portable one (as on every level).
#ifndef KESTREL_CPU_DOTPROD
#error "define KESTREL_CPU_DOTPROD (0 or 1) before including kernels_kquants_neon_impl.h"
#endif

#include <arm_neon.h>

#include <cstring>

#include "kestrel/plugin_api.h"
#include "kernels_kquants.h"
#include "kernels_neon_common.h"

namespace kestrel::plugins::cpu {
namespace {

using neon::Dot16;

// 16 bits (bit i of p[i / 8]) expanded to bytes holding `value` where the bit is set, else 0.
inline uint8x16_t BitsToBytes(const uint8_t* p, uint8_t value) {
  static const uint8_t kSel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t v = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
  return vandq_u8(vtstq_u8(v, vld1q_u8(kSel)), vdupq_n_u8(value));
}

// Chunk c (sub-blocks 4c..4c+3) of one super-block's 4 quant registers r = 0..3: the quants at
// positions p = 64 r + 16 c + i (kernels_kquants.h, planes).
template <int kBits>
inline void LoadQuants(const uint8_t* p, int c, int8x16_t q[4]) {
  uint8x16_t u[4];
  if constexpr (kBits >= 4) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const uint8x16_t l0 = vld1q_u8(p + 16 * c);
    const uint8x16_t l1 = vld1q_u8(p + 64 + 16 * c);
    u[0] = vandq_u8(l0, m4);
    u[1] = vshrq_n_u8(l0, 4);
    u[2] = vandq_u8(l1, m4);
    u[3] = vshrq_n_u8(l1, 4);
    if constexpr (kBits == 5) {
      for (int r = 0; r < 4; ++r) u[r] = vorrq_u8(u[r], BitsToBytes(p + 128 + 8 * r + 2 * c, 0x10));
    } else if constexpr (kBits == 6) {
      const uint8x16_t m30 = vdupq_n_u8(0x30);
      const uint8x16_t hv = vld1q_u8(p + 128 + 16 * c);
      u[0] = vorrq_u8(u[0], vandq_u8(vshlq_n_u8(hv, 4), m30));
      u[1] = vorrq_u8(u[1], vandq_u8(vshlq_n_u8(hv, 2), m30));
      u[2] = vorrq_u8(u[2], vandq_u8(hv, m30));
      u[3] = vorrq_u8(u[3], vandq_u8(vshrq_n_u8(hv, 2), m30));
    }
  } else {
    const uint8x16_t m3 = vdupq_n_u8(0x03);
    const uint8x16_t l = vld1q_u8(p + 16 * c);
    u[0] = vandq_u8(l, m3);
    u[1] = vandq_u8(vshrq_n_u8(l, 2), m3);
    u[2] = vandq_u8(vshrq_n_u8(l, 4), m3);
    u[3] = vshrq_n_u8(l, 6);
    if constexpr (kBits == 3) {
      for (int r = 0; r < 4; ++r) u[r] = vorrq_u8(u[r], BitsToBytes(p + 64 + 8 * r + 2 * c, 0x04));
    }
  }
  for (int r = 0; r < 4; ++r) q[r] = vreinterpretq_s8_u8(u[r]);
}

// Row j x tokens [t, t + C): per super-block the scales are expanded and each chunk's quants
// unpacked once for the C tokens; per sub-block l the token's sum gains
// isum_l * (A_l dx_l) + B_l * xb_l (kernels_kquants.h).
template <uint32_t kDt, int C>
inline void TileK(const KWeightView& w, const KActView& a, int64_t j, int64_t t, float* y,
                  int64_t ldy) {
  using Tr = KqTraits<kDt>;
  float32x4_t acc[C];
  for (int c = 0; c < C; ++c) acc[c] = vdupq_n_f32(0.0f);
  float A[16], B[16];
  alignas(16) uint8_t tail_buf[kSuperElems];  // >= any q_bytes
  for (int64_t sb = 0; sb < w.n_sb; ++sb) {
    const uint8_t* qp = KqPlanes(w, j, sb, tail_buf);
    __builtin_prefetch(qp + 2 * Tr::kQBytes);
    ExpandKqScales(w.fmt, w.sc + (j * w.n_sb + sb) * Tr::kSBytes, A, B);
    for (int ch = 0; ch < 4; ++ch) {
      int8x16_t q[4];
      LoadQuants<Tr::kBits>(qp, ch, q);
      const float32x4_t av = vld1q_f32(A + 4 * ch);
      const float32x4_t bv = vld1q_f32(B + 4 * ch);
      for (int c = 0; c < C; ++c) {
        const int8_t* xq = a.qs + ((t + c) * a.n_sb + sb) * kActSuperBytes + 16 * ch;
        const float* ds = a.ds + ((t + c) * a.n_sb + sb) * kActSuperFloats + 4 * ch;
        int32x4_t s = vdupq_n_s32(0);
        for (int r = 0; r < 4; ++r) s = Dot16(s, q[r], vld1q_s8(xq + 64 * r));
        acc[c] = vfmaq_f32(acc[c], vcvtq_f32_s32(s), vmulq_f32(av, vld1q_f32(ds)));
        acc[c] = vfmaq_f32(acc[c], bv, vld1q_f32(ds + 16));
      }
    }
  }
  for (int c = 0; c < C; ++c) y[(t + c) * ldy + j] = vaddvq_f32(acc[c]);
}

template <uint32_t kDt>
void GemmImpl(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
              float* y, int64_t ldy) {
  for (int64_t j = n0; j < n1; ++j) {
    int64_t t = 0;
    for (; t + 4 <= n_tokens; t += 4) TileK<kDt, 4>(w, a, j, t, y, ldy);
    switch (n_tokens - t) {
      case 3: TileK<kDt, 3>(w, a, j, t, y, ldy); break;
      case 2: TileK<kDt, 2>(w, a, j, t, y, ldy); break;
      case 1: TileK<kDt, 1>(w, a, j, t, y, ldy); break;
      default: break;
    }
  }
}

void Gemm(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
          float* y, int64_t ldy) {
  DispatchKq(w.fmt.dtype, [&](auto dt) { GemmImpl<decltype(dt)::value>(w, a, n_tokens, n0, n1, y, ldy); });
}

KQuantKernels MakeNeonKQuantTable(IsaLevel level) {
  KQuantKernels t;
  t.level = level;
  t.quantize_act = PortableKQuantKernels().quantize_act;
  t.gemm = &Gemm;
  return t;
}

}  // namespace
}  // namespace kestrel::plugins::cpu
