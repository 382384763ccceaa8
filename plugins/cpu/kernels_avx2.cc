// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kestrel/plugin_api.h"
#include "kernels.h"

namespace kestrel::plugins::cpu {
namespace {

inline float Hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- activation quantization ---------------------------------------------------------------------
void QuantizeRowAct(const float* x, int64_t k, int64_t n_groups, int32_t offset, int8_t* qs,
                    int32_t* bias, float* d) {
  std::memset(bias, 0, static_cast<size_t>(n_groups * 16) * sizeof(int32_t));
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
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
      __m256 xv[4];
      __m256 m = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        xv[i] = _mm256_loadu_ps(x + e0 + 8 * i);
        m = _mm256_max_ps(m, _mm256_and_ps(xv[i], abs_mask));
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float amax = _mm_cvtss_f32(m4);
      const float scale = amax / 127.0f;
      const __m256 inv = _mm256_set1_ps(scale != 0.0f ? 1.0f / scale : 0.0f);
      alignas(32) int32_t iv[32];
      for (int i = 0; i < 4; ++i) {
        __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(xv[i], inv));
        v = _mm256_max_epi32(_mm256_min_epi32(v, _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
        _mm256_store_si256(reinterpret_cast<__m256i*>(iv + 8 * i), v);
      }
      int32_t sum = 0;
      for (int j = 0; j < 32; ++j) {
        sum += iv[j];
        q[(j < 16 ? 0 : 64) + b * 16 + (j & 15)] = static_cast<int8_t>(iv[j]);
      }
      d[g * kGroupBlocks + b] = scale;
      bias[g * 16 + 4 * b] = -offset * sum;
    }
  }
}

// ---- quantized GEMM ------------------------------------------------------------------------------
// Dot of two blocks' worth of weights (lo: elements 0..15 of 2 blocks, hi: 16..31) with the
// matching activation bytes: int32 lanes, block 0 in dwords 0..3, block 1 in dwords 4..7.
template <bool kQ8>
inline __m256i Dot2Blocks(__m256i lo, __m256i hi, const int8_t* xlo, const int8_t* xhi,
                          const int32_t* bias) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xlo));
  const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xhi));
  if constexpr (kQ8) {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i wl = _mm256_xor_si256(lo, flip);
    const __m256i wh = _mm256_xor_si256(hi, flip);
    const __m256i pl = _mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_sign_epi8(wl, wl), _mm256_sign_epi8(xl, wl)), ones);
    const __m256i ph = _mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_sign_epi8(wh, wh), _mm256_sign_epi8(xh, wh)), ones);
    (void)bias;
    return _mm256_add_epi32(pl, ph);
  } else {
    const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), ones);
    const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), ones);
    return _mm256_add_epi32(_mm256_add_epi32(pl, ph),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias)));
  }
}

template <int R, int C, bool kQ8>
inline void TileQ(const QWeightView& w, const QActView& a, int64_t j, int64_t t, float* y,
                  int64_t ldy) {
  const int64_t G = w.n_groups;
  const int64_t gb = w.group_bytes;
  const __m256i idx01 = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
  const __m256i idx23 = _mm256_set_epi32(3, 3, 3, 3, 2, 2, 2, 2);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc[R][C];
  const uint8_t* wq[R];
  const uint16_t* wd[R];
  for (int r = 0; r < R; ++r) {
    wq[r] = w.qs + (j + r) * G * gb;
    wd[r] = w.d + (j + r) * G * kGroupBlocks;
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  const int8_t* xq = a.qs + t * G * kActGroupBytes;
  const int32_t* xb = a.bias + t * G * 16;
  const float* xd = a.d + t * G * kGroupBlocks;
  // Decode of Q4_0 (one token, DRAM bound): the next tile's rows are contiguous with this
  // tile's, so they are prefetched into L2 as one linear stream spread over the group steps
  // (as in kernels_avx512_impl.h); otherwise each row prefetches 8 groups ahead.
  constexpr bool kLinear = C == 1 && !kQ8;
  const char* next_q = reinterpret_cast<const char*>(w.qs + (j + R) * G * gb);
  const char* next_d = reinterpret_cast<const char*>(w.d + (j + R) * G * kGroupBlocks);
  for (int64_t g = 0; g < G; ++g) {
    __m256i lo0[R], hi0[R], lo1[R], hi1[R];  // blocks 0,1 and 2,3
    __m128 dw[R];
    if constexpr (kLinear) {
      for (int l = 0; l < R; ++l) _mm_prefetch(next_q + (g * R + l) * 64, _MM_HINT_T1);
      if (g % 8 == 0) {  // scales: R * 8 bytes per group, so R lines per 8 groups
        for (int l = 0; l < R; ++l) _mm_prefetch(next_d + ((g / 8) * R + l) * 64, _MM_HINT_T1);
      }
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = wq[r] + g * gb;
      if constexpr (!kLinear) _mm_prefetch(reinterpret_cast<const char*>(p + 8 * gb), _MM_HINT_T0);
      if constexpr (kQ8) {
        lo0[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        lo1[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
        hi0[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64));
        hi1[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 96));
      } else {
        const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
        lo0[r] = _mm256_and_si256(v0, m4);
        hi0[r] = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
        lo1[r] = _mm256_and_si256(v1, m4);
        hi1[r] = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
      }
      dw[r] = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wd[r] + g * 4)));
    }
    for (int c = 0; c < C; ++c) {
      const int8_t* xg = xq + (c * G + g) * kActGroupBytes;
      const int32_t* bg = xb + (c * G + g) * 16;
      const __m128 dx = _mm_loadu_ps(xd + (c * G + g) * kGroupBlocks);
      for (int r = 0; r < R; ++r) {
        const __m256 s4 = _mm256_castps128_ps256(_mm_mul_ps(dw[r], dx));
        const __m256i p01 = Dot2Blocks<kQ8>(lo0[r], hi0[r], xg, xg + 64, bg);
        const __m256i p23 = Dot2Blocks<kQ8>(lo1[r], hi1[r], xg + 32, xg + 96, bg + 8);
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p01), _mm256_permutevar8x32_ps(s4, idx01),
                                    acc[r][c]);
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p23), _mm256_permutevar8x32_ps(s4, idx23),
                                    acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = Hsum(acc[r][c]);
  }
}

template <int R, bool kQ8>
inline void TileQTokens(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t j,
                        float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 2 <= n_tokens; t += 2) TileQ<R, 2, kQ8>(w, a, j, t, y, ldy);
  if (t < n_tokens) TileQ<R, 1, kQ8>(w, a, j, t, y, ldy);
}

template <bool kQ8>
void GemmQImpl(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
               float* y, int64_t ldy) {
  int64_t j = n0;
  if (n_tokens == 1) {
    for (; j + 2 <= n1; j += 2) TileQ<2, 1, kQ8>(w, a, j, 0, y, ldy);
    for (; j < n1; ++j) TileQ<1, 1, kQ8>(w, a, j, 0, y, ldy);
    return;
  }
  for (; j + 2 <= n1; j += 2) TileQTokens<2, kQ8>(w, a, n_tokens, j, y, ldy);
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
inline __m256 LoadW8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 LoadW8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// The last n < 8 elements, zero-filled.
inline __m256 LoadTail(const float* p, int64_t n) {
  alignas(32) float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(float));
  return _mm256_load_ps(tmp);
}
inline __m256 LoadTail(const uint16_t* p, int64_t n) {
  alignas(16) uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(uint16_t));
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(tmp)));
}

template <int R, int C, typename W>
inline void TileF(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t j,
                  int64_t t, float* y, int64_t ldy) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  const W* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (j + r) * ldw;
  const float* xr[C];
  for (int c = 0; c < C; ++c) xr[c] = x + (t + c) * ldx;
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadW8(wr[r] + i);
    for (int c = 0; c < C; ++c) {
      const __m256 xv = _mm256_loadu_ps(xr[c] + i);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  if (i < k) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadTail(wr[r] + i, k - i);
    for (int c = 0; c < C; ++c) {
      const __m256 xv = LoadTail(xr[c] + i, k - i);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = Hsum(acc[r][c]);
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
  const __m256i off = _mm256_set1_epi32(w.offset);
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* wq = w.qs + j * G * w.group_bytes;
    const uint16_t* wd = w.d + j * G * kGroupBlocks;
    float* o = out + (j - n0) * ldo;
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t g = blk / kGroupBlocks, b = blk % kGroupBlocks;
      alignas(16) uint8_t e[32];
      if (w.dtype == KESTREL_DTYPE_Q8_0) {
        std::memcpy(e, wq + g * 128 + b * 16, 16);
        std::memcpy(e + 16, wq + g * 128 + 64 + b * 16, 16);
      } else {
        const uint8_t* p = wq + g * 64 + b * 16;
        for (int i = 0; i < 16; ++i) {
          e[i] = p[i] & 0x0F;
          e[i + 16] = p[i] >> 4;
        }
      }
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(wd[blk]));
      for (int i = 0; i < 4; ++i) {
        const __m256i q = _mm256_sub_epi32(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(e + 8 * i))), off);
        _mm256_storeu_ps(o + blk * kBlock + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
      }
    }
  }
}

float DotF32(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  if (i < n) acc1 = _mm256_fmadd_ps(LoadTail(a + i, n - i), LoadTail(b + i, n - i), acc1);
  return Hsum(_mm256_add_ps(acc0, acc1));
}

void AxpyF32(float a, const float* x, float* out, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(out + i)));
  }
  for (; i < n; ++i) out[i] = std::fma(a, x[i], out[i]);
}

void F16ToF32(const uint16_t* h, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  }
  for (; i < n; ++i) out[i] = _cvtsh_ss(h[i]);
}

}  // namespace

const KernelTable& Avx2Kernels() {
  static const KernelTable table = [] {
    KernelTable t;
    t.level = IsaLevel::kAvx2;
    t.quantize_row_act = &QuantizeRowAct;
    t.gemm_q = &GemmQ;
    t.gemm_f32 = &GemmF32;
    t.gemm_f16 = &GemmF16;
    t.dequant_q_rows = &DequantQRows;
    t.dot_f32 = &DotF32;
    t.axpy_f32 = &AxpyF32;
    t.f16_to_f32 = &F16ToF32;
    return t;
  }();
  return table;
}

}  // namespace kestrel::plugins::cpu
