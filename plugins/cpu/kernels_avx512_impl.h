// AVX-512 kernels, included by kernels_avx512.cc (AVX-512 F/BW/VL/DQ: vpmaddubsw dots) and by
// kernels_vnni.cc (KESTREL_CPU_VNNI=1: vpdpbusd dots). Everything here has internal linkage, so
// the two translation units (compiled with different -m flags) never share a definition.
#ifndef KESTREL_CPU_VNNI
#error "define KESTREL_CPU_VNNI (0 or 1) before including kernels_avx512_impl.h"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "kestrel/plugin_api.h"
#include "kernels.h"

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

// R weight rows x C tokens (from token t), all groups. Per group: the weights of each row are
// unpacked once and the scales expanded to one per dword (block b in 128-bit lane b) once per row
// and once per token, so the inner (row, token) step is 2 dot instructions + cvt + mul + fma; the
// results are bit-identical to GemvTileQ's. Q4_0: the next tile's rows are prefetched into L2 as
// one linear stream as in the decode GEMV, spread over the group steps of all the tile's token
// chunks (`pf`, NextTilePrefetch), so the weights stream from DRAM once, while the dots of every
// token run, and serve every token.
// kStream (the first token chunk of TileQTokens) false: each row prefetches its own group 8 ahead
// into L1, as the rows are re-read from L1.
//
// Which group steps of a token chunk prefetch the next tile's lines: with n chunks per tile, step
// s = chunk * G + g prefetches the next tile's group s / n when s % n == 0 (first: this chunk's
// first such g; index: that group). A burst over the first chunk alone (as before, and still with
// KESTREL_CPU_SMALLBATCH=first) made that chunk wait on DRAM while the later chunks left it idle:
// in an 8-token verify the first 3-token chunk took as long as the next 5 tokens (perf samples).
struct NextTilePrefetch {
  int64_t first = 0;
  int64_t every = 1;
  int64_t index = 0;
  bool own_rows = false;  // Q4_0 first chunk too: its own rows 8 groups ahead into L1
};

template <int R, int C, bool kQ8, bool kStream = true>
inline void StreamTileQ(const QWeightView& w, const QActView& a, int64_t j, int64_t t, float* y,
                        int64_t ldy, NextTilePrefetch pf = {}) {
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
  const char* next_q = reinterpret_cast<const char*>(w.qs + (j + R) * G * gb);
  const char* next_d = reinterpret_cast<const char*>(w.d + (j + R) * G * kGroupBlocks);
  constexpr int64_t kLinesPerStep = (R * 64 + 63) / 64;
  constexpr int64_t kScaleLines = (R + 7) / 8;
  for (int64_t g = 0; g < G; ++g) {
    if constexpr (!kQ8) {
      if (g == pf.first) {
        for (int64_t l = 0; l < kLinesPerStep; ++l) {
          _mm_prefetch(next_q + (pf.index * kLinesPerStep + l) * 64, _MM_HINT_T1);
        }
        for (int64_t l = 0; l < kScaleLines; ++l) {
          _mm_prefetch(next_d + (pf.index * kScaleLines + l) * 64, _MM_HINT_T1);
        }
        pf.first += pf.every;
        ++pf.index;
      }
    }
    __m512i lo[R], hi[R];
    __m512 dw[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = wq[r] + g * gb;
      if (!kStream || (!kQ8 && pf.own_rows)) {
        _mm_prefetch(reinterpret_cast<const char*>(p + 8 * gb), _MM_HINT_T0);
      }
      if constexpr (kQ8) {
        if constexpr (kStream) {
          _mm_prefetch(reinterpret_cast<const char*>(p + 512), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(p + 512 + 64), _MM_HINT_T0);
        }
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
      const int8_t* xg = a.qs + ((t + c) * G + g) * kActGroupBytes;
      const int32_t* bg = a.bias + ((t + c) * G + g) * 16;
      const __m512 dx = _mm512_permutexvar_ps(
          idx, _mm512_zextps128_ps512(_mm_loadu_ps(a.d + ((t + c) * G + g) * kGroupBlocks)));
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

// One out-of-line instance per tile shape: inlined side by side into one caller, the tiles'
// constants and accumulators compete for the 32 registers and spill (measured: T = 3 went from
// 0.58 to 0.78 ns per (row, token, group)).
template <int R, int C, bool kQ8, bool kStream>
__attribute__((noinline)) void StreamTileQCall(const QWeightView& w, const QActView& a, int64_t j,
                                               int64_t t, float* y, int64_t ldy,
                                               NextTilePrefetch pf = {}) {
  StreamTileQ<R, C, kQ8, kStream>(w, a, j, t, y, ldy, pf);
}

// KESTREL_CPU_SMALLBATCH=first: the next tile's prefetch in the first token chunk only (the
// former schedule, a same-build baseline for benchmarks).
inline bool PrefetchFirstChunkOnly() {
  static const bool on = [] {
    const char* v = std::getenv("KESTREL_CPU_SMALLBATCH");
    return v != nullptr && std::strcmp(v, "first") == 0;
  }();
  return on;
}

// All n_tokens >= 2 tokens of R rows, in token chunks of 3 (the fastest tile that keeps its
// 12 accumulators, 8 unpacked weight registers and scales in the 32 registers: ~0.59 ns per
// (row, token, group) on Zen 5 with the operands in L2, against 0.78 for the former 2 rows x 8
// tokens and ~0.5 for the bare vpdpbusd pair; docs/perf/cpu-kernels.md), never a 1-token chunk
// (ForEachTokenChunk, kernels.h). The next tile's rows stream from DRAM over all chunks (Q4_0,
// NextTilePrefetch); the later chunks find this tile's rows in L1.
template <int R, bool kQ8>
inline void TileQTokens(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t j,
                        float* y, int64_t ldy) {
  const int64_t G = w.n_groups;
  int64_t chunks = 0;
  ForEachTokenChunk(n_tokens, [&](int64_t, auto, auto) { ++chunks; });
  if (PrefetchFirstChunkOnly()) chunks = 1;
  int64_t ci = 0;
  ForEachTokenChunk(n_tokens, [&](int64_t t, auto c, auto first) {
    NextTilePrefetch pf;
    pf.every = chunks;
    pf.first = ci < chunks ? (chunks - (ci * G) % chunks) % chunks : G;  // G: none
    pf.index = (ci * G + pf.first) / chunks;
    pf.own_rows = !PrefetchFirstChunkOnly();
    ++ci;
    StreamTileQCall<R, decltype(c)::value, kQ8, decltype(first)::value>(w, a, j, t, y, ldy, pf);
  });
}

// Decode GEMV (one token): R weight rows at a time. The rows of a tile and of the next tile are
// contiguous, so the next tile's quants and scales are prefetched into L2 as one linear stream,
// spread evenly over this tile's group steps (Q4_0: +18% DRAM bandwidth over a per-row prefetch
// 512 bytes ahead on 2 threads; Q8_0, twice the bytes per group, keeps the per-row prefetch,
// which measured as good). The scales of 4 groups are converted from f16 and multiplied
// by the activation scales with one cvtph + one mul per row (instead of cvtph + permute + mul per
// group); per group and row only a permute picks them out. Partial sums stay in one vector per
// row and are reduced once at the end of the row.
template <int R, bool kQ8>
inline void GemvTileQ(const QWeightView& w, const QActView& a, int64_t j, float* y) {
  const int64_t G = w.n_groups;
  const int64_t gb = w.group_bytes;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i idx0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  __m512 acc[R];
  const uint8_t* wq[R];
  const uint16_t* wd[R];
  for (int r = 0; r < R; ++r) {
    wq[r] = w.qs + (j + r) * G * gb;
    wd[r] = w.d + (j + r) * G * kGroupBlocks;
    acc[r] = _mm512_setzero_ps();
  }
  // Next tile (rows j + R ...): R * G * gb quant bytes, R * G * 8 scale bytes.
  const char* next_q = reinterpret_cast<const char*>(w.qs + (j + R) * G * gb);
  const char* next_d = reinterpret_cast<const char*>(w.d + (j + R) * G * kGroupBlocks);
  constexpr int64_t kLinesPerStep = (R * 64 + 63) / 64;  // Q4_0: R * 64 quant bytes per group
  for (int64_t g0 = 0; g0 < G; g0 += 4) {
    const int64_t ng = std::min<int64_t>(4, G - g0);
    const __mmask16 m = static_cast<__mmask16>((1u << (4 * ng)) - 1u);
    const __m512 dx = _mm512_maskz_loadu_ps(m, a.d + g0 * kGroupBlocks);
    __m512 s[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      s[r] = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wd[r] + g0 * kGroupBlocks)), dx);
    }
    for (int64_t gi = 0; gi < ng; ++gi) {
      const int64_t g = g0 + gi;
      const __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32(static_cast<int>(4 * gi)));
      const int8_t* xg = a.qs + g * kActGroupBytes;
      const int32_t* bg = a.bias + g * 16;
      if constexpr (!kQ8) {
#pragma GCC unroll 8
        for (int64_t l = 0; l < kLinesPerStep; ++l) {
          _mm_prefetch(next_q + (g * kLinesPerStep + l) * 64, _MM_HINT_T1);
        }
        // R * G * 8 scale bytes: (R + 7) / 8 lines per step cover them.
        constexpr int64_t kScaleLines = (R + 7) / 8;
        for (int64_t l = 0; l < kScaleLines; ++l) {
          _mm_prefetch(next_d + (g * kScaleLines + l) * 64, _MM_HINT_T1);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = wq[r] + g * gb;
        __m512i lo, hi;
        if constexpr (kQ8) {
          _mm_prefetch(reinterpret_cast<const char*>(p + 512), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(p + 512 + 64), _MM_HINT_T0);
          lo = _mm512_loadu_si512(p);
          hi = _mm512_loadu_si512(p + 64);
        } else {
          const __m512i v = _mm512_loadu_si512(p);
          lo = _mm512_and_si512(v, m4);
          hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        const __m512i dp = DotGroup<kQ8>(lo, hi, xg, bg);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_permutexvar_ps(idx, s[r]), acc[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) y[j + r] = _mm512_reduce_add_ps(acc[r]);
}

// A per-thread 64-byte aligned scratch of at least `bytes` (kept between calls: the pool's
// threads are persistent, so it is allocated once per thread and grown only for a larger K).
inline uint8_t* UnpackScratch(int64_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < static_cast<size_t>(bytes + 64)) buf.resize(static_cast<size_t>(bytes + 64));
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<uint8_t*>((p + 63) & ~uintptr_t{63});
}

#if KESTREL_CPU_VNNI
#include "kernels_avx512_lanes.h"
#endif

template <bool kQ8>
inline void GemvRowsQ(const QWeightView& w, const QActView& a, int64_t n0, int64_t n1, float* y);

// KESTREL_CPU_PREFILL=groups turns the lane GEMM off (a same-build baseline for benchmarks).
inline bool LanesDisabled() {
  static const bool off = [] {
    const char* v = std::getenv("KESTREL_CPU_PREFILL");
    return v != nullptr && std::strcmp(v, "groups") == 0;
  }();
  return off;
}

template <bool kQ8>
void GemmQImpl(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
               float* y, int64_t ldy) {
  int64_t j = n0;
  if (n_tokens == 1 && DecodeGemvStyle() == GemvStyle::kRows) {
    GemvRowsQ<kQ8>(w, a, n0, n1, y);
    return;
  }
  if (n_tokens == 1) {
    for (; j + 8 <= n1; j += 8) GemvTileQ<8, kQ8>(w, a, j, y);
    for (; j + 4 <= n1; j += 4) GemvTileQ<4, kQ8>(w, a, j, y);
    for (; j < n1; ++j) GemvTileQ<1, kQ8>(w, a, j, y);
    return;
  }
#if KESTREL_CPU_VNNI
  if (n_tokens >= kLaneMinTokens && !LanesDisabled()) {
    const int64_t tiles = (n1 - j) / kLaneRows;
    GemmLanesQ(w, a, n_tokens, j, tiles, y, ldy);
    j += tiles * kLaneRows;
  }
#endif
  if (n_tokens == 4) {  // 2 rows x 4 tokens: 0.64 ns per (row, token, group) vs 0.70 for 4 x (2 + 2)
    for (; j + 2 <= n1; j += 2) StreamTileQCall<2, 4, kQ8, true>(w, a, j, 0, y, ldy);
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
  // Decode (one token) is DRAM bound: the next tile's rows (contiguous when ldw == k) are
  // prefetched into L2 as one linear stream, spread over this tile's k steps (as GemvTileQ).
  const char* next = reinterpret_cast<const char*>(w + (j + R) * ldw);
  constexpr int64_t kLinesPerStep = (R * 16 * static_cast<int64_t>(sizeof(W)) + 63) / 64;
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    if constexpr (C == 1) {
#pragma GCC unroll 8
      for (int64_t l = 0; l < kLinesPerStep; ++l) {
        _mm_prefetch(next + ((i / 16) * kLinesPerStep + l) * 64, _MM_HINT_T1);
      }
    }
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

#include "kernels_avx512_gemv.h"

template <typename W>
void GemmFloat(const W* w, int64_t ldw, const float* x, int64_t ldx, int64_t k, int64_t n_tokens,
               int64_t n0, int64_t n1, float* y, int64_t ldy) {
  if (n_tokens == 1 && DecodeGemvStyle() == GemvStyle::kRows) {
    GemvRowsF(w, ldw, x, k, n0, n1, y);
    return;
  }
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

// exp(x) for x <= 0 (attention probabilities), Cephes' expf polynomial on x - n ln2 and 2^n
// by vscalefps: within ~2 ulp of std::exp; underflows to 0 below about -103.
inline __m512 ExpNonPositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// attend_block (kernels.h): scores with in-register dots, probabilities 16 at a time, and the
// value sum one 16-wide slice of acc at a time (kept in a register over all n positions).
void AttendBlock(const float* q, const float* k, int64_t kstride, const float* v, int64_t vstride,
                 int64_t n, int64_t dh, float scale, float* m, float* l, float* acc,
                 float* scores) {
  const int64_t full = dh / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (dh - full)) - 1u);
  float bmax = -std::numeric_limits<float>::infinity();
  for (int64_t o = 0; o < n; ++o) {
    const float* kr = k + o * kstride;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 32 <= full; d += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(kr + d), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 16), _mm512_loadu_ps(kr + d + 16), a1);
    }
    if (d < full) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(kr + d), a0);
    if (tail != 0) {
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q + full), _mm512_maskz_loadu_ps(tail, kr + full), a1);
    }
    const float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) * scale;
    scores[o] = s;
    bmax = std::max(bmax, s);
  }
  const float m_old = *m;
  const float m_new = std::max(m_old, bmax);
  const float corr = (m_old != m_new && *l != 0.0f) ? std::exp(m_old - m_new) : 1.0f;
  const __m512 vm = _mm512_set1_ps(m_new);
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 mk = n - o >= 16 ? static_cast<__mmask16>(0xFFFF)
                                     : static_cast<__mmask16>((1u << (n - o)) - 1u);
    const __m512 pr = _mm512_maskz_mov_ps(
        mk, ExpNonPositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, scores + o), vm)));
    _mm512_mask_storeu_ps(scores + o, mk, pr);
    vsum = _mm512_add_ps(vsum, pr);
  }
  *l = *l * corr + _mm512_reduce_add_ps(vsum);
  *m = m_new;
  const __m512 vc = _mm512_set1_ps(corr);
  for (int64_t d = 0; d < dh; d += 16) {
    const __mmask16 mk = dh - d >= 16 ? static_cast<__mmask16>(0xFFFF)
                                      : static_cast<__mmask16>((1u << (dh - d)) - 1u);
    __m512 a = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, acc + d), vc);
    __m512 b = _mm512_setzero_ps();
    int64_t o = 0;
    for (; o + 2 <= n; o += 2) {
      a = _mm512_fmadd_ps(_mm512_set1_ps(scores[o]), _mm512_maskz_loadu_ps(mk, v + o * vstride + d), a);
      b = _mm512_fmadd_ps(_mm512_set1_ps(scores[o + 1]),
                          _mm512_maskz_loadu_ps(mk, v + (o + 1) * vstride + d), b);
    }
    if (o < n) a = _mm512_fmadd_ps(_mm512_set1_ps(scores[o]), _mm512_maskz_loadu_ps(mk, v + o * vstride + d), a);
    _mm512_mask_storeu_ps(acc + d, mk, _mm512_add_ps(a, b));
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
  t.attend_block = &AttendBlock;
  return t;
}

}  // namespace
}  // namespace kestrel::plugins::cpu
