// aarch64 Advanced SIMD kernels, included by kernels_neon.cc (KESTREL_CPU_DOTPROD=0: smull/sadalp
// dots, any Armv8-A) and by kernels_dotprod.cc (KESTREL_CPU_DOTPROD=1: sdot, compiled with
// -march=armv8.2-a+dotprod). Everything here has internal linkage, so the two translation units
// (compiled with different -march flags) never share a definition.
//
// Q4_0/Q8_0 weights are read as signed int8 (Q4_0: nibble - 8, Q8_0: byte ^ 0x80) and multiplied
// with the signed activations directly, so the quantized GEMM needs no bias term (the activation
// quantizer still writes it: it is part of the layout's contract, kernels.h). Both levels sum the
// same integer products into the same lanes (Dot16), so their results are bit-identical.
#ifndef KESTREL_CPU_DOTPROD
#error "define KESTREL_CPU_DOTPROD (0 or 1) before including kernels_neon_impl.h"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kestrel/plugin_api.h"
#include "kernels.h"
#include "kernels_neon_common.h"

namespace kestrel::plugins::cpu {
namespace {

using neon::Dot16;
using neon::HalfToF32x4;

// ---- activation quantization ---------------------------------------------------------------------
// The portable quantizer's arithmetic (x * (1 / d) rounded to nearest-even, clamped to +-127), so
// the bytes are the same.
void QuantizeRowAct(const float* x, int64_t k, int64_t n_groups, int32_t offset, int8_t* qs,
                    int32_t* bias, float* d) {
  std::memset(bias, 0, static_cast<size_t>(n_groups * 16) * sizeof(int32_t));
  const int32x4_t lim = vdupq_n_s32(127);
  const int32x4_t neg_lim = vdupq_n_s32(-127);
  for (int64_t g = 0; g < n_groups; ++g) {
    int8_t* q = qs + g * kActGroupBytes;
    for (int64_t b = 0; b < kGroupBlocks; ++b) {
      const int64_t e0 = (g * kGroupBlocks + b) * kBlock;
      if (e0 >= k) {
        std::memset(q + b * 16, 0, 16);
        std::memset(q + 64 + b * 16, 0, 16);
        d[g * kGroupBlocks + b] = 0.0f;
        continue;
      }
      float32x4_t xv[8];
      float32x4_t m = vdupq_n_f32(0.0f);
      for (int i = 0; i < 8; ++i) {
        xv[i] = vld1q_f32(x + e0 + 4 * i);
        m = vmaxq_f32(m, vabsq_f32(xv[i]));
      }
      const float scale = vmaxvq_f32(m) / 127.0f;
      const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
      int32x4_t sum = vdupq_n_s32(0);
      for (int h = 0; h < 2; ++h) {  // elements 0..15, then 16..31
        int16x4_t n[4];
        for (int i = 0; i < 4; ++i) {
          int32x4_t v = vcvtnq_s32_f32(vmulq_n_f32(xv[4 * h + i], inv));
          v = vmaxq_s32(vminq_s32(v, lim), neg_lim);
          sum = vaddq_s32(sum, v);
          n[i] = vmovn_s32(v);
        }
        const int8x16_t q8 = vcombine_s8(vmovn_s16(vcombine_s16(n[0], n[1])),
                                         vmovn_s16(vcombine_s16(n[2], n[3])));
        vst1q_s8(q + (h == 0 ? 0 : 64) + b * 16, q8);
      }
      d[g * kGroupBlocks + b] = scale;
      bias[g * 16 + 4 * b] = -offset * vaddvq_s32(sum);
    }
  }
}

// ---- quantized GEMM ------------------------------------------------------------------------------
// The signed weights of one group: w[b] = elements 0..15 of block b, w[4 + b] = elements 16..31
// (the activation group's order: vector i at byte 16 i).
template <bool kQ8>
inline void LoadGroup(const uint8_t* p, int8x16_t w[8]) {
  if constexpr (kQ8) {
    const uint8x16_t flip = vdupq_n_u8(0x80);
    for (int i = 0; i < 8; ++i) w[i] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p + 16 * i), flip));
  } else {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int b = 0; b < 4; ++b) {
      const uint8x16_t v = vld1q_u8(p + 16 * b);
      w[b] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), eight);
      w[4 + b] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
    }
  }
}

// The 4 blocks' integer dots of one group with activation group xg: lane b = block b.
inline int32x4_t GroupDots(const int8x16_t w[8], const int8_t* xg) {
  int32x4_t s[4];
  for (int b = 0; b < 4; ++b) {
    const int32x4_t lo = Dot16(vdupq_n_s32(0), w[b], vld1q_s8(xg + 16 * b));
    s[b] = Dot16(lo, w[4 + b], vld1q_s8(xg + 64 + 16 * b));
  }
  return vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
}

// Rows [j, j + R) x tokens [t, t + C): each group's weights are unpacked once for the C tokens.
template <int R, int C, bool kQ8>
inline void TileQ(const QWeightView& w, const QActView& a, int64_t j, int64_t t, float* y,
                  int64_t ldy) {
  const int64_t G = w.n_groups;
  const int64_t gb = w.group_bytes;
  float32x4_t acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = vdupq_n_f32(0.0f);
  }
  const int8_t* xq = a.qs + t * G * kActGroupBytes;
  const float* xd = a.d + t * G * kGroupBlocks;
  for (int64_t g = 0; g < G; ++g) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w.qs + ((j + r) * G + g) * gb;
      __builtin_prefetch(p + 8 * gb);
      int8x16_t wv[8];
      LoadGroup<kQ8>(p, wv);
      const float32x4_t dw = HalfToF32x4(w.d + ((j + r) * G + g) * kGroupBlocks);
      for (int c = 0; c < C; ++c) {
        const int32x4_t s = GroupDots(wv, xq + (c * G + g) * kActGroupBytes);
        const float32x4_t dx = vld1q_f32(xd + (c * G + g) * kGroupBlocks);
        acc[r][c] = vfmaq_f32(acc[r][c], vcvtq_f32_s32(s), vmulq_f32(dw, dx));
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = vaddvq_f32(acc[r][c]);
  }
}

template <bool kQ8>
void GemmQImpl(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
               float* y, int64_t ldy) {
  for (int64_t j = n0; j < n1; ++j) {
    int64_t t = 0;
    for (; t + 4 <= n_tokens; t += 4) TileQ<1, 4, kQ8>(w, a, j, t, y, ldy);
    switch (n_tokens - t) {
      case 3: TileQ<1, 3, kQ8>(w, a, j, t, y, ldy); break;
      case 2: TileQ<1, 2, kQ8>(w, a, j, t, y, ldy); break;
      case 1: TileQ<1, 1, kQ8>(w, a, j, t, y, ldy); break;
      default: break;
    }
  }
}

void GemmQ(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
           float* y, int64_t ldy) {
  if (w.dtype == KESTREL_DTYPE_Q8_0) {
    GemmQImpl<true>(w, a, n_tokens, n0, n1, y, ldy);
  } else {
    GemmQImpl<false>(w, a, n_tokens, n0, n1, y, ldy);
  }
}

// ---- float GEMM ----------------------------------------------------------------------------------
inline float32x4_t Load4(const float* p) { return vld1q_f32(p); }
inline float32x4_t Load4(const uint16_t* p) { return HalfToF32x4(p); }
// The last n < 4 elements, zero-filled.
template <typename W>
inline float32x4_t LoadTail(const W* p, int64_t n) {
  W tmp[4] = {0, 0, 0, 0};
  std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(W));
  return Load4(tmp);
}

// Rows [j, j + R) x tokens [t, t + C), 4 f32 lanes per accumulator (R * C independent FMA chains).
template <int R, int C, typename W>
inline void TileF(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t j,
                  int64_t t, float* y, int64_t ldy) {
  float32x4_t acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = vdupq_n_f32(0.0f);
  }
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    float32x4_t wv[R];
    for (int r = 0; r < R; ++r) wv[r] = Load4(w + (j + r) * ldw + i);
    for (int c = 0; c < C; ++c) {
      const float32x4_t xv = vld1q_f32(x + (t + c) * ldx + i);
      for (int r = 0; r < R; ++r) acc[r][c] = vfmaq_f32(acc[r][c], wv[r], xv);
    }
  }
  if (i < k) {
    float32x4_t wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadTail(w + (j + r) * ldw + i, k - i);
    for (int c = 0; c < C; ++c) {
      const float32x4_t xv = LoadTail(x + (t + c) * ldx + i, k - i);
      for (int r = 0; r < R; ++r) acc[r][c] = vfmaq_f32(acc[r][c], wv[r], xv);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = vaddvq_f32(acc[r][c]);
  }
}

template <int R, typename W>
inline void TileFTokens(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k,
                        int64_t n_tokens, int64_t j, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 3 <= n_tokens; t += 3) TileF<R, 3>(w, ldw, x, ldx, k, j, t, y, ldy);
  switch (n_tokens - t) {
    case 2: TileF<R, 2>(w, ldw, x, ldx, k, j, t, y, ldy); break;
    case 1: TileF<R, 1>(w, ldw, x, ldx, k, j, t, y, ldy); break;
    default: break;
  }
}

template <typename W>
void GemmFloat(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t n_tokens,
               int64_t n0, int64_t n1, float* y, int64_t ldy) {
  int64_t j = n0;
  for (; j + 4 <= n1; j += 4) TileFTokens<4>(w, ldw, x, ldx, k, n_tokens, j, y, ldy);
  for (; j < n1; ++j) TileFTokens<1>(w, ldw, x, ldx, k, n_tokens, j, y, ldy);
}

void GemmF32(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t n_tokens,
             int64_t n0, int64_t n1, float* y, int64_t ldy) {
  GemmFloat(w, ldw, x, ldx, k, n_tokens, n0, n1, y, ldy);
}
void GemmF16(const uint16_t* w, int64_t ldw, const float* x, int64_t ldx, int64_t k,
             int64_t n_tokens, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  GemmFloat(w, ldw, x, ldx, k, n_tokens, n0, n1, y, ldy);
}

// ---- dequantization and small vector helpers ---------------------------------------------------
void DequantQRows(const QWeightView& w, int64_t n0, int64_t n1, float* out, int64_t ldo) {
  const int64_t G = w.n_groups;
  const int64_t n_blocks = w.k / kBlock;
  const bool q8 = w.dtype == KESTREL_DTYPE_Q8_0;
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* wq = w.qs + j * G * w.group_bytes;
    const uint16_t* wd = w.d + j * G * kGroupBlocks;
    float* o = out + (j - n0) * ldo;
    for (int64_t g = 0; g * kGroupBlocks < n_blocks; ++g) {
      int8x16_t wv[8];
      if (q8) {
        LoadGroup<true>(wq + g * w.group_bytes, wv);
      } else {
        LoadGroup<false>(wq + g * w.group_bytes, wv);
      }
      float ds[4];
      vst1q_f32(ds, HalfToF32x4(wd + g * kGroupBlocks));
      const int64_t nb = std::min<int64_t>(kGroupBlocks, n_blocks - g * kGroupBlocks);
      for (int64_t b = 0; b < nb; ++b) {
        const float32x4_t d = vdupq_n_f32(ds[b]);
        float* ob = o + (g * kGroupBlocks + b) * kBlock;
        for (int h = 0; h < 2; ++h) {  // elements 0..15, then 16..31
          const int8x16_t v = wv[4 * h + b];
          const int16x8_t lo = vmovl_s8(vget_low_s8(v));
          const int16x8_t hi = vmovl_high_s8(v);
          const int32x4_t e[4] = {vmovl_s16(vget_low_s16(lo)), vmovl_high_s16(lo),
                                  vmovl_s16(vget_low_s16(hi)), vmovl_high_s16(hi)};
          for (int i = 0; i < 4; ++i) vst1q_f32(ob + 16 * h + 4 * i, vmulq_f32(vcvtq_f32_s32(e[i]), d));
        }
      }
    }
  }
}

float DotF32(const float* a, const float* b, int64_t n) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
  if (i < n) acc1 = vfmaq_f32(acc1, LoadTail(a + i, n - i), LoadTail(b + i, n - i));
  return vaddvq_f32(vaddq_f32(acc0, acc1));
}

void AxpyF32(float a, const float* x, float* out, int64_t n) {
  const float32x4_t va = vdupq_n_f32(a);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vfmaq_f32(vld1q_f32(out + i), va, vld1q_f32(x + i)));
  for (; i < n; ++i) out[i] = std::fma(a, x[i], out[i]);
}

void F16ToF32(const uint16_t* h, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, HalfToF32x4(h + i));
  for (; i < n; ++i) out[i] = neon::HalfAt(h + i);
}

KernelTable MakeNeonTable(IsaLevel level) {
  KernelTable t;
  t.level = level;
  t.quantize_row_act = &QuantizeRowAct;
  t.gemm_q = &GemmQ;
  t.gemm_f32 = &GemmF32;
  t.gemm_f16 = &GemmF16;
  t.dequant_q_rows = &DequantQRows;
  t.dot_f32 = &DotF32;
  t.axpy_f32 = &AxpyF32;
  t.f16_to_f32 = &F16ToF32;
  return t;
}

}  // namespace
}  // namespace kestrel::plugins::cpu
