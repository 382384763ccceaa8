// AVX2 + FMA + F16C KQ kernels (kernels_kquants.h; compiled with -mavx2 -mfma -mf16c). A 256-bit
// register holds half of each 64-byte quant register: bytes [0, 32) carry sub-blocks 0..7 (one per
// dword lane), bytes [32, 64) sub-blocks 8..15, so a super-block is two halves h of 4 chained
// vpmaddubsw/vpmaddwd dots each.
#include <immintrin.h>

#include <cstring>

#include "kestrel/plugin_api.h"
#include "kernels_kquants.h"

namespace kestrel::plugins::cpu {
namespace {

inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float Hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i LoadU(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 32 bits (bit i -> byte i) expanded to bytes holding `value` where the bit is set, else 0.
inline __m256i BitsToBytes(const uint8_t* p, char value) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                         0x0101010101010101, 0x0000000000000000);
  const __m256i sel = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
  return _mm256_and_si256(set, _mm256_set1_epi8(value));
}

// Half h (sub-blocks 8h..8h+7) of one super-block's 4 quant registers.
template <int kBits>
inline void LoadQuantsHalf(const uint8_t* p, int h, __m256i q[4]) {
  if constexpr (kBits >= 4) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i l0 = LoadU(p + 32 * h);
    const __m256i l1 = LoadU(p + 64 + 32 * h);
    q[0] = _mm256_and_si256(l0, m4);
    q[1] = _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4);
    q[2] = _mm256_and_si256(l1, m4);
    q[3] = _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4);
    if constexpr (kBits == 5) {
      for (int r = 0; r < 4; ++r) q[r] = _mm256_or_si256(q[r], BitsToBytes(p + 128 + 8 * r + 4 * h, 0x10));
    } else if constexpr (kBits == 6) {
      const __m256i m30 = _mm256_set1_epi8(0x30);
      const __m256i hv = LoadU(p + 128 + 32 * h);
      q[0] = _mm256_or_si256(q[0], _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30));
      q[1] = _mm256_or_si256(q[1], _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30));
      q[2] = _mm256_or_si256(q[2], _mm256_and_si256(hv, m30));
      q[3] = _mm256_or_si256(q[3], _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30));
    }
  } else {
    const __m256i m3 = _mm256_set1_epi8(0x03);
    const __m256i l = LoadU(p + 32 * h);
    q[0] = _mm256_and_si256(l, m3);
    q[1] = _mm256_and_si256(_mm256_srli_epi16(l, 2), m3);
    q[2] = _mm256_and_si256(_mm256_srli_epi16(l, 4), m3);
    q[3] = _mm256_and_si256(_mm256_srli_epi16(l, 6), m3);
    if constexpr (kBits == 3) {
      for (int r = 0; r < 4; ++r) q[r] = _mm256_or_si256(q[r], BitsToBytes(p + 64 + 8 * r + 4 * h, 0x04));
    }
  }
}

// A and B of the 16 sub-blocks as two halves (lanes 0..7 = sub-blocks 8h..8h+7).
template <uint32_t kDt>
inline void ExpandScales(const uint8_t* rec, __m256 A[2], __m256 B[2]) {
  const __m256i pairs0 = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
  const __m256i pairs1 = _mm256_set_epi32(7, 7, 6, 6, 5, 5, 4, 4);
  if constexpr (kDt == KESTREL_DTYPE_Q4_K || kDt == KESTREL_DTYPE_Q5_K) {
    const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + 4))));
    const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + 12))));
    const __m256 d = _mm256_set1_ps(HalfAt(rec)), nm = _mm256_set1_ps(-HalfAt(rec + 2));
    A[0] = _mm256_mul_ps(_mm256_permutevar8x32_ps(sc, pairs0), d);
    A[1] = _mm256_mul_ps(_mm256_permutevar8x32_ps(sc, pairs1), d);
    B[0] = _mm256_mul_ps(_mm256_permutevar8x32_ps(m, pairs0), nm);
    B[1] = _mm256_mul_ps(_mm256_permutevar8x32_ps(m, pairs1), nm);
  } else if constexpr (kDt == KESTREL_DTYPE_Q2_K) {
    const __m256 d = _mm256_set1_ps(HalfAt(rec)), nm = _mm256_set1_ps(-HalfAt(rec + 2));
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + 4 + 8 * h)));
      A[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15))), d);
      B[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), nm);
    }
  } else if constexpr (kDt == KESTREL_DTYPE_Q3_K || kDt == KESTREL_DTYPE_Q6_K) {
    const __m256 d = _mm256_set1_ps(HalfAt(rec));
    const __m256 off = _mm256_set1_ps(kDt == KESTREL_DTYPE_Q3_K ? -4.0f : -32.0f);
    for (int h = 0; h < 2; ++h) {
      A[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                               _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + 4 + 8 * h)))),
                           d);
      B[h] = _mm256_mul_ps(A[h], off);
    }
  } else {  // blocks of 32: f16 d[8] (and m[8], Q4_1/Q5_1)
    const __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec)));
    A[0] = _mm256_permutevar8x32_ps(dv, pairs0);
    A[1] = _mm256_permutevar8x32_ps(dv, pairs1);
    if constexpr (kDt == KESTREL_DTYPE_Q5_0) {
      B[0] = _mm256_mul_ps(A[0], _mm256_set1_ps(-16.0f));
      B[1] = _mm256_mul_ps(A[1], _mm256_set1_ps(-16.0f));
    } else {
      const __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + 16)));
      B[0] = _mm256_permutevar8x32_ps(mv, pairs0);
      B[1] = _mm256_permutevar8x32_ps(mv, pairs1);
    }
  }
}

// Per-sub-block dots of half h: lane l = sum over sub-block 8h + l of q * x (x: the 4 activation
// registers' half h). Quants <= 63, |x| <= 127: two vpmaddubsw pairs fit in int16.
inline __m256i DotHalf(const __m256i q[4], const __m256i x[4]) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(q[0], x[0]), _mm256_maddubs_epi16(q[1], x[1]));
  const __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(q[2], x[2]), _mm256_maddubs_epi16(q[3], x[3]));
  return _mm256_add_epi32(_mm256_madd_epi16(s01, ones), _mm256_madd_epi16(s23, ones));
}

template <uint32_t kDt>
using Traits = KqTraits<kDt>;

// R rows x C tokens (C = 1: decode). Per super-block and row: unpack + scales once, then per token
// two halves of 4 dots each, scaled by A * dx, plus B * xb.
template <uint32_t kDt, int R, int C>
inline void Tile(const KWeightView& w, const KActView& a, int64_t j, int64_t t, float* y,
                 int64_t ldy) {
  using T = Traits<kDt>;
  const int64_t nsb = w.n_sb;
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  alignas(32) uint8_t tail_buf[R][kSuperElems];  // >= any q_bytes
  for (int64_t sb = 0; sb < nsb; ++sb) {
    __m256 A[R][2], B[R][2];
    const uint8_t* planes[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = planes[r] = KqPlanes(w, j + r, sb, tail_buf[r]);
      if constexpr (C == 1) {
        for (int64_t l = 0; l < T::kQBytes; l += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(p + 4 * T::kQBytes + l), _MM_HINT_T0);
        }
      }
      ExpandScales<kDt>(w.sc + ((j + r) * nsb + sb) * T::kSBytes, A[r], B[r]);
    }
    for (int h = 0; h < 2; ++h) {
      __m256i q[R][4];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        LoadQuantsHalf<T::kBits>(planes[r], h, q[r]);
      }
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) {
        const int8_t* xq = a.qs + ((t + c) * nsb + sb) * kActSuperBytes;
        const float* xd = a.ds + ((t + c) * nsb + sb) * kActSuperFloats;
        __m256i x[4];
        for (int i = 0; i < 4; ++i) x[i] = LoadU(xq + 64 * i + 32 * h);
        const __m256 dx = _mm256_loadu_ps(xd + 8 * h);
        const __m256 xb = _mm256_loadu_ps(xd + 16 + 8 * h);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DotHalf(q[r], x)), _mm256_mul_ps(A[r][h], dx),
                                      acc[r][c]);
          acc[r][c] = _mm256_fmadd_ps(B[r][h], xb, acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = Hsum(acc[r][c]);
  }
}

template <uint32_t kDt, int R>
inline void Rows(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t j, float* y,
                 int64_t ldy) {
  int64_t t = 0;
  for (; t + 3 <= n_tokens; t += 3) Tile<kDt, R, 3>(w, a, j, t, y, ldy);
  switch (n_tokens - t) {
    case 2: Tile<kDt, R, 2>(w, a, j, t, y, ldy); break;
    case 1: Tile<kDt, R, 1>(w, a, j, t, y, ldy); break;
    default: break;
  }
}

template <uint32_t kDt>
void GemmFormat(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
                float* y, int64_t ldy) {
  int64_t j = n0;
  if (n_tokens == 1) {
    for (; j + 4 <= n1; j += 4) Tile<kDt, 4, 1>(w, a, j, 0, y, ldy);
  } else {
    for (; j + 2 <= n1; j += 2) Rows<kDt, 2>(w, a, n_tokens, j, y, ldy);
  }
  for (; j < n1; ++j) Rows<kDt, 1>(w, a, n_tokens, j, y, ldy);
}

void Gemm(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
          float* y, int64_t ldy) {
  DispatchKq(w.fmt.dtype, [&](auto dt) {
    GemmFormat<decltype(dt)::value>(w, a, n_tokens, n0, n1, y, ldy);
  });
}

}  // namespace

const KQuantKernels& Avx2KQuantKernels() {
  static const KQuantKernels table = [] {
    KQuantKernels t;
    t.level = IsaLevel::kAvx2;
    t.quantize_act = PortableKQuantKernels().quantize_act;
    t.gemm = &Gemm;
    return t;
  }();
  return table;
}

}  // namespace kestrel::plugins::cpu
