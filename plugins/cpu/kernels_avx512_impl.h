// AVX-512 kernels, included by kernels_avx512.cc (AVX-512 F/BW/VL/DQ: vpmaddubsw dots) and by
// kernels_vnni.cc (KESTREL_CPU_VNNI=1: vpdpbusd dots). Everything here has internal linkage, so
// the two translation units (compiled with different -m flags) never share a definition.
#ifndef KESTREL_CPU_VNNI
#error "define KESTREL_CPU_VNNI (0 or 1) before including kernels_avx512_impl.h"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kestrel/plugin_api.h"
#include "plugins/cpu/kernels.h"

namespace kestrel::plugins::cpu {
namespace {

// ---- activation quantization ---------------------------------------------------------------------
void QuantizeRowAct(const float* x, int64_t k, int64_t n_groups, int32_t offset, int8_t* qs,
                    int32_t* bias, float* d) {
  std::memset(bias, 0, static_cast<size_t>(n_groups * 16) * sizeof(int32_t));
  const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
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
      const __m512 x0 = _mm512_loadu_ps(x + e0);
      const __m512 x1 = _mm512_loadu_ps(x + e0 + 16);
      const __m512 a = _mm512_max_ps(_mm512_and_ps(x0, sign_mask), _mm512_and_ps(x1, sign_mask));
      const float amax = _mm512_reduce_max_ps(a);
      const float scale = amax / 127.0f;
      const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
      const __m512 vinv = _mm512_set1_ps(inv);
      __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vinv));  // round to nearest even
      __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vinv));
      const __m512i lim = _mm512_set1_epi32(127);
      i0 = _mm512_max_epi32(_mm512_min_epi32(i0, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
      i1 = _mm512_max_epi32(_mm512_min_epi32(i1, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 16), _mm512_cvtepi32_epi8(i0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 64 + b * 16), _mm512_cvtepi32_epi8(i1));
      const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
      d[g * kGroupBlocks + b] = scale;
      bias[g * 16 + 4 * b] = -offset * sum;
    }
  }
}

// ---- quantized GEMM ------------------------------------------------------------------------------
// Dot of one weight group (lo: elements 0..15 of blocks 0..3 as u8, hi: elements 16..31) with one
// activation group: int32 lanes, block b summed over the 4 dwords of 128-bit lane b.
template <bool kQ8>
inline __m512i DotGroup(__m512i lo, __m512i hi, const int8_t* xg, const int32_t* bias) {
#if KESTREL_CPU_VNNI
  (void)kQ8;  // both formats are stored as u8 = value + offset; the bias removes the offset
  __m512i acc = _mm512_loadu_si512(bias);
  acc = _mm512_dpbusd_epi32(acc, lo, _mm512_loadu_si512(xg));
  acc = _mm512_dpbusd_epi32(acc, hi, _mm512_loadu_si512(xg + 64));
  return acc;
#else
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i xlo = _mm512_loadu_si512(xg);
  const __m512i xhi = _mm512_loadu_si512(xg + 64);
  if constexpr (kQ8) {
    // u8 (value + 128) x s8 could overflow vpmaddubsw: use |w| x sign(w) * x instead.
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i zero = _mm512_setzero_si512();
    const __m512i wlo = _mm512_xor_si512(lo, flip);
    const __m512i whi = _mm512_xor_si512(hi, flip);
    const __m512i slo = _mm512_mask_sub_epi8(xlo, _mm512_movepi8_mask(wlo), zero, xlo);
    const __m512i shi = _mm512_mask_sub_epi8(xhi, _mm512_movepi8_mask(whi), zero, xhi);
    const __m512i plo = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(wlo), slo), ones);
    const __m512i phi = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(whi), shi), ones);
    return _mm512_add_epi32(plo, phi);
  } else {
    const __m512i plo = _mm512_madd_epi16(_mm512_maddubs_epi16(lo, xlo), ones);
    const __m512i phi = _mm512_madd_epi16(_mm512_maddubs_epi16(hi, xhi), ones);
    return _mm512_add_epi32(_mm512_add_epi32(plo, phi), _mm512_loadu_si512(bias));
  }
#endif
}

// R weight rows x C tokens, all groups. Per group: the weights of each row are unpacked once and
// the scales expanded to one per dword (block b in 128-bit lane b) once per row and once per
// token, so the inner (row, token) step is 2 dot instructions + cvt + mul + fma.
template <int R, int C, bool kQ8>
inline void TileQ(const QWeightView& w, const QActView& a, int64_t j, int64_t t, float* y,
                  int64_t ldy) {
  const int64_t G = w.n_groups;
  const int64_t gb = w.group_bytes;
  const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512 acc[R][C];
  const uint8_t* wq[R];
  const uint16_t* wd[R];
  for (int r = 0; r < R; ++r) {
    wq[r] = w.qs + (j + r) * G * gb;
    wd[r] = w.d + (j + r) * G * kGroupBlocks;
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  const int8_t* xq = a.qs + t * G * kActGroupBytes;
  const int32_t* xb = a.bias + t * G * 16;
  const float* xd = a.d + t * G * kGroupBlocks;
  for (int64_t g = 0; g < G; ++g) {
    __m512i lo[R], hi[R];
    __m512 dw[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = wq[r] + g * gb;
      _mm_prefetch(reinterpret_cast<const char*>(p + 8 * gb), _MM_HINT_T0);
      if constexpr (kQ8) {
        lo[r] = _mm512_loadu_si512(p);
        hi[r] = _mm512_loadu_si512(p + 64);
      } else {
        const __m512i v = _mm512_loadu_si512(p);
        lo[r] = _mm512_and_si512(v, m4);
        hi[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      }
      dw[r] = _mm512_permutexvar_ps(
          idx, _mm512_zextps128_ps512(_mm_cvtph_ps(
                   _mm_loadl_epi64(reinterpret_cast<const __m128i*>(wd[r] + g * 4)))));
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const int8_t* xg = xq + (c * G + g) * kActGroupBytes;
      const int32_t* bg = xb + (c * G + g) * 16;
      const __m512 dx = _mm512_permutexvar_ps(
          idx, _mm512_zextps128_ps512(_mm_loadu_ps(xd + (c * G + g) * kGroupBlocks)));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i dp = DotGroup<kQ8>(lo[r], hi[r], xg, bg);
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(dw[r], dx), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

template <int R, bool kQ8>
inline void TileQTokens(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t j,
                        float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 3 <= n_tokens; t += 3) TileQ<R, 3, kQ8>(w, a, j, t, y, ldy);
  switch (n_tokens - t) {
    case 2: TileQ<R, 2, kQ8>(w, a, j, t, y, ldy); break;
    case 1: TileQ<R, 1, kQ8>(w, a, j, t, y, ldy); break;
    default: break;
  }
}

template <bool kQ8>
void GemmQImpl(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
               float* y, int64_t ldy) {
  int64_t j = n0;
  if (n_tokens == 1) {
    for (; j + 4 <= n1; j += 4) TileQ<4, 1, kQ8>(w, a, j, 0, y, ldy);
    for (; j < n1; ++j) TileQ<1, 1, kQ8>(w, a, j, 0, y, ldy);
    return;
  }
  for (; j + 4 <= n1; j += 4) TileQTokens<4, kQ8>(w, a, n_tokens, j, y, ldy);
  for (; j < n1; ++j) TileQTokens<1, kQ8>(w, a, n_tokens, j, y, ldy);
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
template <typename W>
inline __m512 LoadW16(const W* p);
template <>
inline __m512 LoadW16<float>(const float* p) { return _mm512_loadu_ps(p); }
template <>
inline __m512 LoadW16<uint16_t>(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
template <typename W>
inline __m512 LoadW16Masked(const W* p, __mmask16 m);
template <>
inline __m512 LoadW16Masked<float>(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
template <>
inline __m512 LoadW16Masked<uint16_t>(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

template <int R, int C, typename W>
inline void TileF(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t j,
                  int64_t t, float* y, int64_t ldy) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  const W* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (j + r) * ldw;
  const float* xr[C];
  for (int c = 0; c < C; ++c) xr[c] = x + (t + c) * ldx;
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) wv[r] = LoadW16(wr[r] + i);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m512 xv = _mm512_loadu_ps(xr[c] + i);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  if (i < k) {
    const __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1u);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadW16Masked(wr[r] + i, m);
    for (int c = 0; c < C; ++c) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, xr[c] + i);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

template <int R, typename W>
inline void TileFTokens(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k,
                        int64_t n_tokens, int64_t j, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) TileF<R, 4>(w, ldw, x, ldx, k, j, t, y, ldy);
  switch (n_tokens - t) {
    case 3: TileF<R, 3>(w, ldw, x, ldx, k, j, t, y, ldy); break;
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
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i off = _mm512_set1_epi32(w.offset);
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* wq = w.qs + j * G * w.group_bytes;
    const uint16_t* wd = w.d + j * G * kGroupBlocks;
    float* o = out + (j - n0) * ldo;
    for (int64_t g = 0; g < G; ++g) {
      __m512i lo, hi;
      if (w.dtype == KESTREL_DTYPE_Q8_0) {
        lo = _mm512_loadu_si512(wq + g * 128);
        hi = _mm512_loadu_si512(wq + g * 128 + 64);
      } else {
        const __m512i v = _mm512_loadu_si512(wq + g * 64);
        lo = _mm512_and_si512(v, m4);
        hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      }
      alignas(64) uint8_t blo[64], bhi[64];
      _mm512_store_si512(blo, lo);
      _mm512_store_si512(bhi, hi);
      for (int64_t b = 0; b < kGroupBlocks && g * kGroupBlocks + b < n_blocks; ++b) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(wd[g * 4 + b]));
        const __m512i q0 = _mm512_sub_epi32(
            _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(blo + 16 * b))), off);
        const __m512i q1 = _mm512_sub_epi32(
            _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(bhi + 16 * b))), off);
        float* ob = o + (g * kGroupBlocks + b) * kBlock;
        _mm512_storeu_ps(ob, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
        _mm512_storeu_ps(ob + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
      }
    }
  }
}

float DotF32(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const int64_t rem = std::min<int64_t>(16, n - i);
    const __mmask16 m = static_cast<__mmask16>((1u << rem) - 1u);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

void AxpyF32(float a, const float* x, float* out, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(out + i)));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(out + i, m,
                          _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i),
                                          _mm512_maskz_loadu_ps(m, out + i)));
  }
}

void F16ToF32(const uint16_t* h, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(out + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + i)));
  }
}

KernelTable MakeAvx512Table(IsaLevel level) {
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
