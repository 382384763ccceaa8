// AVX-512 KQ kernels (kernels_kquants.h), included by kernels_kquants_avx512.cc
// (KESTREL_CPU_KQ_VNNI=0: vpmaddubsw + vpmaddwd dots) and kernels_kquants_vnni.cc (=1: vpdpbusd).
// Internal linkage only, so the two translation units never share a definition.
#ifndef KESTREL_CPU_KQ_VNNI
#error "define KESTREL_CPU_KQ_VNNI (0 or 1) before including kernels_kquants_avx512_impl.h"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kestrel/plugin_api.h"
#include "cpu_features.h"
#include "kernels.h"
#include "kernels_kquants.h"

namespace kestrel::plugins::cpu {
namespace {

// Prefill tile: rows x tokens. 4 x 3 measured best of 4x3, 3x4, 2x6, 2x8 (Q4_K 2048x2048x128 as a
// ratio to the Q4_0 GEMM in the same run, 2026-12-07, loaded machine: 0.82-0.96 vs 0.51-0.72
// for the 2-row tiles; 3x4 was as good but noisier); 4 x 4 spills accumulators.
constexpr int kTileRows = 4;
constexpr int kTileTokens = 3;

inline int LoadU32(const uint8_t* p) {
  int v;
  std::memcpy(&v, p, 4);
  return v;
}

inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// The 4 quant registers of a nibble plane's two 64-byte halves (kernels_kquants.h).
inline void SplitNibbles(__m512i l0, __m512i l1, __m512i q[4]) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  q[0] = _mm512_and_si512(l0, m4);
  q[1] = _mm512_and_si512(_mm512_srli_epi16(l0, 4), m4);
  q[2] = _mm512_and_si512(l1, m4);
  q[3] = _mm512_and_si512(_mm512_srli_epi16(l1, 4), m4);
}

// Adds bit 4 (Q5_0/Q5_1, Q5_K) from the 32-byte 1-bit plane at `plane`.
inline void AddBit4Plane(const uint8_t* plane, __m512i q[4]) {
  const __m512i b4 = _mm512_set1_epi8(0x10);
  uint64_t bits[4];
  std::memcpy(bits, plane, 32);
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) q[r] = _mm512_mask_add_epi8(q[r], _cvtu64_mask64(bits[r]), q[r], b4);
}

// The 4 registers of one super-block's quants (u8, order p; kernels_kquants.h).
template <int kBits>
inline void LoadQuants(const uint8_t* p, __m512i q[4]) {
  if constexpr (kBits >= 4) {
    SplitNibbles(_mm512_loadu_si512(p), _mm512_loadu_si512(p + 64), q);
    if constexpr (kBits == 5) {
      AddBit4Plane(p + 128, q);
    } else if constexpr (kBits == 6) {
      const __m512i m30 = _mm512_set1_epi8(0x30);
      const __m512i h = _mm512_loadu_si512(p + 128);
      q[0] = _mm512_or_si512(q[0], _mm512_and_si512(_mm512_slli_epi16(h, 4), m30));
      q[1] = _mm512_or_si512(q[1], _mm512_and_si512(_mm512_slli_epi16(h, 2), m30));
      q[2] = _mm512_or_si512(q[2], _mm512_and_si512(h, m30));
      q[3] = _mm512_or_si512(q[3], _mm512_and_si512(_mm512_srli_epi16(h, 2), m30));
    }
  } else {
    const __m512i m3 = _mm512_set1_epi8(0x03);
    const __m512i l = _mm512_loadu_si512(p);
    q[0] = _mm512_and_si512(l, m3);
    q[1] = _mm512_and_si512(_mm512_srli_epi16(l, 2), m3);
    q[2] = _mm512_and_si512(_mm512_srli_epi16(l, 4), m3);
    q[3] = _mm512_and_si512(_mm512_srli_epi16(l, 6), m3);
    if constexpr (kBits == 3) {
      const __m512i b2 = _mm512_set1_epi8(0x04);
      uint64_t bits[4];
      std::memcpy(bits, p + 64, 32);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) q[r] = _mm512_mask_add_epi8(q[r], _cvtu64_mask64(bits[r]), q[r], b2);
    }
  }
}

// LoadQuants for a compact partial super-block of `tail` 32-blocks (kernels_kquants.h): the two
// nibble runs by masked loads, zero past them, so the lanes past the tail hold exactly what the
// zero padding held before the tails were compact (bit-identical dots).
template <int kBits>
inline void LoadTailQuants(const uint8_t* p, int tail, __m512i q[4]) {
  if constexpr (kBits == 4 || kBits == 5) {
    const __mmask64 m = _cvtu64_mask64((uint64_t{1} << (8 * tail)) - 1);
    SplitNibbles(_mm512_maskz_loadu_epi8(m, p), _mm512_maskz_loadu_epi8(m, p + 8 * tail), q);
    if constexpr (kBits == 5) AddBit4Plane(p + 16 * tail, q);
  } else {  // K-quant rows are whole super-blocks (w.tail == 0): never reached
    (void)tail;
    LoadQuants<kBits>(p, q);
  }
}

// The quants of a super-block at p: kTail, the row's compact last one (w.tail blocks of 32).
// The kernels run their super-block loop over the whole ones (FullSuperBlocks) and then the
// same step once more with kTail, inline (a test per super-block cost the prefill tiles ~1.3x; an
// out-of-line tail step that took the accumulators' address made GCC keep them in memory).
template <int kBits, bool kTail>
__attribute__((always_inline)) inline void LoadStepQuants(const uint8_t* p, int tail, __m512i q[4]) {
  if constexpr (kTail) {
    LoadTailQuants<kBits>(p, tail, q);
  } else {
    (void)tail;
    LoadQuants<kBits>(p, q);
  }
}

inline int64_t FullSuperBlocks(const KWeightView& w) { return w.n_sb - (w.tail != 0 ? 1 : 0); }

// Runs step(sb, std::false_type) over a row's whole super-blocks, then step(last, std::true_type)
// when the row ends in a compact tail.
template <typename Step>
__attribute__((always_inline)) inline void ForEachSuperBlock(const KWeightView& w, Step&& step) {
  const int64_t n_full = FullSuperBlocks(w);
  for (int64_t sb = 0; sb < n_full; ++sb) step(sb, std::false_type{});
  if (n_full < w.n_sb) step(n_full, std::true_type{});
}

// A (per sub-block scale) and B (per sub-block offset) of a super-block's scale record.
template <uint32_t kDt>
inline void ExpandScales(const uint8_t* rec, __m512* A, __m512* B) {
  const __m512i pairs_lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i pairs_hi = _mm512_add_epi32(pairs_lo, _mm512_set1_epi32(8));
  if constexpr (kDt == KESTREL_DTYPE_Q4_K || kDt == KESTREL_DTYPE_Q5_K) {
    // d and dmin converted together; dmin negated through the sign of the broadcast.
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(LoadU32(rec)));
    const __m512 v = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + 4))));
    *A = _mm512_mul_ps(_mm512_permutexvar_ps(pairs_lo, v), _mm512_broadcastss_ps(dd));
    *B = _mm512_mul_ps(_mm512_permutexvar_ps(pairs_hi, v),
                       _mm512_broadcastss_ps(_mm_sub_ps(_mm_setzero_ps(), _mm_movehdup_ps(dd))));
  } else if constexpr (kDt == KESTREL_DTYPE_Q2_K) {
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(LoadU32(rec)));
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + 4)));
    *A = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15))),
                       _mm512_broadcastss_ps(dd));
    *B = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)),
                       _mm512_broadcastss_ps(_mm_sub_ps(_mm_setzero_ps(), _mm_movehdup_ps(dd))));
  } else if constexpr (kDt == KESTREL_DTYPE_Q3_K || kDt == KESTREL_DTYPE_Q6_K) {
    *A = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                           _mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + 4)))),
                       _mm512_set1_ps(HalfAt(rec)));
    *B = _mm512_mul_ps(*A, _mm512_set1_ps(kDt == KESTREL_DTYPE_Q3_K ? -4.0f : -32.0f));
  } else if constexpr (kDt == KESTREL_DTYPE_Q5_0) {
    const __m512 v = _mm512_castps256_ps512(
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec))));
    *A = _mm512_permutexvar_ps(pairs_lo, v);
    *B = _mm512_mul_ps(*A, _mm512_set1_ps(-16.0f));
  } else {  // Q4_1, Q5_1: f16 d[8], m[8]
    const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec)));
    *A = _mm512_permutexvar_ps(pairs_lo, v);
    *B = _mm512_permutexvar_ps(pairs_hi, v);
  }
}

// Per-sub-block integer dots of one super-block: lane l = sum over sub-block l of q * x.
inline __m512i DotSuper(const __m512i q[4], const __m512i x[4]) {
#if KESTREL_CPU_KQ_VNNI
  __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], x[0]);
  s = _mm512_dpbusd_epi32(s, q[1], x[1]);
  s = _mm512_dpbusd_epi32(s, q[2], x[2]);
  return _mm512_dpbusd_epi32(s, q[3], x[3]);
#else
  // Quants are <= 63 and |x| <= 127: a vpmaddubsw pair is <= 16002, two of them fit in int16.
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i s01 = _mm512_add_epi16(_mm512_maddubs_epi16(q[0], x[0]), _mm512_maddubs_epi16(q[1], x[1]));
  const __m512i s23 = _mm512_add_epi16(_mm512_maddubs_epi16(q[2], x[2]), _mm512_maddubs_epi16(q[3], x[3]));
  return _mm512_add_epi32(_mm512_madd_epi16(s01, ones), _mm512_madd_epi16(s23, ones));
#endif
}

template <uint32_t kDt>
using Traits = KqTraits<kDt>;

// Decode GEMV: R rows at a time, one token. The activation registers of a super-block are loaded
// once for the R rows; the rows' next super-blocks are prefetched kAhead super-blocks ahead.
template <uint32_t kDt, int R>
inline void GemvRows(const KWeightView& w, const KActView& a, int64_t j, float* y) {
  using T = Traits<kDt>;
  constexpr int64_t kAhead = 4;
  const int64_t nsb = w.n_sb;
  const uint8_t* wq[R];
  const uint8_t* ws[R];
  __m512 acc[R];
  for (int r = 0; r < R; ++r) {
    wq[r] = w.qs + (j + r) * w.q_row;
    ws[r] = w.sc + (j + r) * nsb * T::kSBytes;
    acc[r] = _mm512_setzero_ps();
  }
  ForEachSuperBlock(w, [&](int64_t sb, auto tail_c) __attribute__((always_inline)) {
    const int8_t* xq = a.qs + sb * kActSuperBytes;
    const float* xd = a.ds + sb * kActSuperFloats;
    __m512i x[4];
    for (int i = 0; i < 4; ++i) x[i] = _mm512_loadu_si512(xq + 64 * i);
    const __m512 dx = _mm512_loadu_ps(xd);
    const __m512 xb = _mm512_loadu_ps(xd + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = wq[r] + sb * T::kQBytes;
#pragma GCC unroll 4
      for (int64_t l = 0; l < T::kQBytes; l += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(p + kAhead * T::kQBytes + l), _MM_HINT_T0);
      }
      __m512i q[4];
      LoadStepQuants<T::kBits, decltype(tail_c)::value>(p, w.tail, q);
      __m512 A, B;
      ExpandScales<kDt>(ws[r] + sb * T::kSBytes, &A, &B);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotSuper(q, x)), _mm512_mul_ps(A, dx), acc[r]);
      acc[r] = _mm512_fmadd_ps(B, xb, acc[r]);
    }
  });
  for (int r = 0; r < R; ++r) y[j + r] = _mm512_reduce_add_ps(acc[r]);
}

// One unpacked row's super-block sb (quants q, factors A, B) against tokens t .. t + C - 1 of a:
// acc[c] += the row's partial dot with token t + c (the prefill tiles' inner step).
template <int C>
__attribute__((always_inline)) inline void DotTokens(const __m512i q[4], __m512 A, __m512 B,
                                                     const KActView& a, int64_t nsb, int64_t sb,
                                                     int64_t t, __m512* acc) {
#pragma GCC unroll 4
  for (int c = 0; c < C; ++c) {
    const int8_t* xq = a.qs + ((t + c) * nsb + sb) * kActSuperBytes;
    const float* xd = a.ds + ((t + c) * nsb + sb) * kActSuperFloats;
    __m512i x[4];
    for (int i = 0; i < 4; ++i) x[i] = _mm512_loadu_si512(xq + 64 * i);
    acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotSuper(q, x)), _mm512_mul_ps(A, _mm512_loadu_ps(xd)),
                             acc[c]);
    acc[c] = _mm512_fmadd_ps(B, _mm512_loadu_ps(xd + 16), acc[c]);
  }
}

// Prefill GEMM tile: R rows x C tokens. Per super-block each row is unpacked once (4 quant
// registers + its A, B) and then met by the C tokens, whose activations are re-read from L1 per
// row: that keeps R * C accumulators (16) plus one row's operands in the 32 registers.
// kStream (the first token chunk of a row tile): the next tile's rows, contiguous with these,
// are prefetched into L2 as one linear stream spread over the super-block steps, so that for a
// few tokens (verify, batched decode) the weights stream from DRAM while the dots run, as in the
// Q4_0 kernels (kernels_avx512_impl.h); the later chunks re-read these rows from L1.
template <uint32_t kDt, int R, int C, bool kStream>
inline void GemmTile(const KWeightView& w, const KActView& a, int64_t j, int64_t t, float* y,
                     int64_t ldy) {
  using T = Traits<kDt>;
  const int64_t nsb = w.n_sb;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  const char* next_q = reinterpret_cast<const char*>(w.qs + (j + R) * w.q_row);
  const char* next_s = reinterpret_cast<const char*>(w.sc + (j + R) * nsb * T::kSBytes);
  constexpr int64_t kQLines = (R * T::kQBytes + 63) / 64;
  constexpr int64_t kSLines = (R * T::kSBytes + 63) / 64;
  ForEachSuperBlock(w, [&](int64_t sb, auto tail_c) __attribute__((always_inline)) {
    if constexpr (kStream) {  // (a compact tail's step prefetches a little past the next tile)
      for (int64_t l = 0; l < kQLines; ++l) _mm_prefetch(next_q + (sb * kQLines + l) * 64, _MM_HINT_T1);
      for (int64_t l = 0; l < kSLines; ++l) _mm_prefetch(next_s + (sb * kSLines + l) * 64, _MM_HINT_T1);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m512i q[4];
      __m512 A, B;
      LoadStepQuants<T::kBits, decltype(tail_c)::value>(w.qs + (j + r) * w.q_row + sb * T::kQBytes,
                                                        w.tail, q);
      ExpandScales<kDt>(w.sc + ((j + r) * nsb + sb) * T::kSBytes, &A, &B);
      DotTokens<C>(q, A, B, a, nsb, sb, t, acc[r]);
    }
  });
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

// One out-of-line instance per tile shape: inlined side by side into one caller, the tiles'
// accumulators and operands compete for the 32 registers (measured on the Q4_0 tiles: 0.58 vs
// 0.78 ns per row, token and group).
template <uint32_t kDt, int R, int C, bool kStream>
__attribute__((noinline)) void GemmTileCall(const KWeightView& w, const KActView& a, int64_t j,
                                            int64_t t, float* y, int64_t ldy) {
  GemmTile<kDt, R, C, kStream>(w, a, j, t, y, ldy);
}

// All n_tokens >= 2 tokens of R rows, in chunks of 3 (ForEachTokenChunk, kernels.h).
template <uint32_t kDt, int R>
inline void GemmRows(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t j,
                     float* y, int64_t ldy) {
  static_assert(kTileTokens == 3, "ForEachTokenChunk makes chunks of up to 3 tokens");
  ForEachTokenChunk(n_tokens, [&](int64_t t, auto c, auto first) {
    GemmTileCall<kDt, R, decltype(c)::value, decltype(first)::value>(w, a, j, t, y, ldy);
  });
}

// Decode GEMV as single-row streams (GemvStyle::kRows, kernels_avx512_gemv.h says why): rows
// [n0, n1) one after the other. Rows are contiguous in both arrays, so the quants and the scale
// records are two linear streams per thread; each is prefetched a fixed distance ahead (across
// row ends) rather than a few super-blocks ahead, which left the DRAM latency exposed at every
// row start and kept too few lines in flight. Same operations in the same order as GemvRows, so
// both styles give bit-identical results.
// Distances measured on the Zen 5 guest (Q4_K 5632 x 2048 and Q6_K 2048 x 5632 streamed from
// DRAM, thread CPU time, 2026-12-07): quants 8 KiB ahead ran 1.2-1.4x the old 4-super-block
// prefetch (2 KiB: 1.1x; 4 and 16 KiB no better than 8); a scale record line is 3 super-blocks.
constexpr int64_t kKqPrefetchQ = 8192;
constexpr int64_t kKqPrefetchS = 1024;

template <uint32_t kDt>
inline void GemvRowStream(const KWeightView& w, const KActView& a, int64_t n0, int64_t n1, float* y) {
  using T = Traits<kDt>;
  const int64_t nsb = w.n_sb;
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* wq = w.qs + j * w.q_row;
    const uint8_t* ws = w.sc + j * nsb * T::kSBytes;
    __m512 acc = _mm512_setzero_ps();
    ForEachSuperBlock(w, [&](int64_t sb, auto tail_c) __attribute__((always_inline)) {
      const uint8_t* p = wq + sb * T::kQBytes;
      const uint8_t* s = ws + sb * T::kSBytes;
#pragma GCC unroll 4
      for (int64_t l = 0; l < T::kQBytes; l += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(p + kKqPrefetchQ + l), _MM_HINT_T0);
      }
      _mm_prefetch(reinterpret_cast<const char*>(s + kKqPrefetchS), _MM_HINT_T0);
      const int8_t* xq = a.qs + sb * kActSuperBytes;
      const float* xd = a.ds + sb * kActSuperFloats;
      __m512i x[4];
      for (int i = 0; i < 4; ++i) x[i] = _mm512_loadu_si512(xq + 64 * i);
      __m512i q[4];
      LoadStepQuants<T::kBits, decltype(tail_c)::value>(p, w.tail, q);
      __m512 A, B;
      ExpandScales<kDt>(s, &A, &B);
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(DotSuper(q, x)), _mm512_mul_ps(A, _mm512_loadu_ps(xd)), acc);
      acc = _mm512_fmadd_ps(B, _mm512_loadu_ps(xd + 16), acc);
    });
    y[j] = _mm512_reduce_add_ps(acc);
  }
}

// Prefill from this many tokens on: each row tile is unpacked once (quants to bytes, scale
// records to A and B) into a per-thread scratch that the token chunks then read, instead of every
// token chunk unpacking the rows again (~20 vector ops per row and super-block for Q4_K, more for
// Q6_K, against 8 per row, token and super-block for the dots). Fewer tokens: the packed tiles.
constexpr int64_t kUnpackMinTokens = 12;

// The unpacked form of one row tile: per super-block sb and row r, at (sb * R + r), 256 quant
// bytes (order p) and 32 floats (A[16], B[16]).
struct UnpackedTile {
  const uint8_t* q;
  const float* ab;
};

template <uint32_t kDt, int R>
inline void UnpackTile(const KWeightView& w, int64_t j, uint8_t* q, float* ab) {
  using T = Traits<kDt>;
  const int64_t nsb = w.n_sb;
  // The next tile's rows stream into L2 while this one is unpacked (see GemmTile's kStream).
  const char* next_q = reinterpret_cast<const char*>(w.qs + (j + R) * w.q_row);
  const char* next_s = reinterpret_cast<const char*>(w.sc + (j + R) * nsb * T::kSBytes);
  constexpr int64_t kQLines = (R * T::kQBytes + 63) / 64;
  constexpr int64_t kSLines = (R * T::kSBytes + 63) / 64;
  ForEachSuperBlock(w, [&](int64_t sb, auto tail_c) __attribute__((always_inline)) {
    for (int64_t l = 0; l < kQLines; ++l) _mm_prefetch(next_q + (sb * kQLines + l) * 64, _MM_HINT_T1);
    for (int64_t l = 0; l < kSLines; ++l) _mm_prefetch(next_s + (sb * kSLines + l) * 64, _MM_HINT_T1);
    for (int r = 0; r < R; ++r) {
      __m512i v[4];
      LoadStepQuants<T::kBits, decltype(tail_c)::value>(w.qs + (j + r) * w.q_row + sb * T::kQBytes,
                                                        w.tail, v);
      uint8_t* dq = q + (sb * R + r) * kSuperElems;
      for (int i = 0; i < 4; ++i) _mm512_store_si512(dq + 64 * i, v[i]);
      __m512 A, B;
      ExpandScales<kDt>(w.sc + ((j + r) * nsb + sb) * T::kSBytes, &A, &B);
      float* dab = ab + (sb * R + r) * 32;
      _mm512_store_ps(dab, A);
      _mm512_store_ps(dab + 16, B);
    }
  });
}

// GemmTile over an unpacked row tile: the same operations in the same order (bit-identical).
template <int R, int C>
__attribute__((noinline)) void GemmTileUnpacked(const UnpackedTile& u, const KActView& a, int64_t nsb,
                                                int64_t j, int64_t t, float* y, int64_t ldy) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t sb = 0; sb < nsb; ++sb) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* pq = u.q + (sb * R + r) * kSuperElems;
      const float* pab = u.ab + (sb * R + r) * 32;
      __m512i q[4];
      for (int i = 0; i < 4; ++i) q[i] = _mm512_load_si512(pq + 64 * i);
      const __m512 A = _mm512_load_ps(pab), B = _mm512_load_ps(pab + 16);
      DotTokens<C>(q, A, B, a, nsb, sb, t, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[(t + c) * ldy + j + r] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

template <uint32_t kDt>
inline void GemmUnpacked(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0,
                         int64_t n1, float* y, int64_t ldy) {
  const int64_t nsb = w.n_sb;
  // Per thread (the pool's threads are persistent), kept between calls; 64-byte aligned.
  thread_local std::vector<uint8_t> buf;
  const size_t q_size = static_cast<size_t>(kTileRows * nsb * kSuperElems);
  const size_t need = q_size + static_cast<size_t>(kTileRows * nsb * 32) * sizeof(float) + 64;
  if (buf.size() < need) buf.resize(need);
  uint8_t* const q = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t{63});
  float* const ab = reinterpret_cast<float*>(q + q_size);
  const UnpackedTile u{q, ab};
  int64_t j = n0;
  for (; j + kTileRows <= n1; j += kTileRows) {
    UnpackTile<kDt, kTileRows>(w, j, q, ab);
    static_assert(kTileTokens == 3, "ForEachTokenChunk makes chunks of up to 3 tokens");
    ForEachTokenChunk(n_tokens, [&](int64_t t, auto c, auto) {
      GemmTileUnpacked<kTileRows, decltype(c)::value>(u, a, nsb, j, t, y, ldy);
    });
  }
  for (; j < n1; ++j) GemmRows<kDt, 1>(w, a, n_tokens, j, y, ldy);
}

#if KESTREL_CPU_KQ_VNNI
#include "kernels_kquants_lanes.h"
#endif

template <uint32_t kDt>
void GemmFormat(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
                float* y, int64_t ldy) {
  int64_t j = n0;
  if (n_tokens == 1 && DecodeGemvStyle() == GemvStyle::kRows) {
    // One row after the other: one linear weight stream per thread (the AMD default, see
    // kernels_avx512_gemv.h); each row accumulates exactly as in the R-row form.
    GemvRowStream<kDt>(w, a, n0, n1, y);
    return;
  }
  if (n_tokens == 1) {
    for (; j + 8 <= n1; j += 8) GemvRows<kDt, 8>(w, a, j, y);
    for (; j + 4 <= n1; j += 4) GemvRows<kDt, 4>(w, a, j, y);
    for (; j < n1; ++j) GemvRows<kDt, 1>(w, a, j, y);
    return;
  }
#if KESTREL_CPU_KQ_VNNI
  if constexpr (kKqLanes<kDt>) {
    const int64_t tiles = (n1 - n0) / kKqLaneRows;
    if (n_tokens >= kKqLaneMinTokens && tiles > 0 && !KqLanesDisabled()) {
      GemmKqLanes<kDt>(w, a, n_tokens, n0, tiles, y, ldy);
      j = n0 + tiles * kKqLaneRows;
      if (j < n1) GemmUnpacked<kDt>(w, a, n_tokens, j, n1, y, ldy);
      return;
    }
  }
#endif
  if (n_tokens >= kUnpackMinTokens) {
    GemmUnpacked<kDt>(w, a, n_tokens, n0, n1, y, ldy);
    return;
  }
  for (; j + kTileRows <= n1; j += kTileRows) GemmRows<kDt, kTileRows>(w, a, n_tokens, j, y, ldy);
  for (; j < n1; ++j) GemmRows<kDt, 1>(w, a, n_tokens, j, y, ldy);
}

void Gemm(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
          float* y, int64_t ldy) {
  DispatchKq(w.fmt.dtype, [&](auto dt) {
    GemmFormat<decltype(dt)::value>(w, a, n_tokens, n0, n1, y, ldy);
  });
}

// The portable quantizer's arithmetic (kernels_kquants_portable.cc: amax / 127, x * (1 / d)
// rounded to nearest even, clamped to +-127), 32 elements at a time; the reorder into the kernels'
// order p stays a loop of 4-byte copies (O(k), against the GEMM's O(k N)).
void QuantizeAct(const float* x, int64_t k, int64_t n_sb, int8_t* qs, float* ds) {
  alignas(64) int8_t tmp[kSuperElems];
  const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512i lim = _mm512_set1_epi32(127), neg_lim = _mm512_set1_epi32(-127);
  for (int64_t sb = 0; sb < n_sb; ++sb) {
    float* dx16 = ds + sb * kActSuperFloats;
    float* xb16 = dx16 + 16;
    for (int b = 0; b < 8; ++b) {
      const int64_t e0 = sb * kSuperElems + 32 * b;
      const int64_t n = std::min<int64_t>(std::max<int64_t>(k - e0, 0), 32);
      const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u);
      const __mmask16 m1 = static_cast<__mmask16>(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1u : 0u);
      const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + e0);
      const __m512 x1 = _mm512_maskz_loadu_ps(m1, x + e0 + 16);
      const float amax =
          _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(x0, sign_mask), _mm512_and_ps(x1, sign_mask)));
      const float scale = amax / 127.0f;
      const __m512 inv = _mm512_set1_ps(scale != 0.0f ? 1.0f / scale : 0.0f);
      const __m512i i0 = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), lim), neg_lim);
      const __m512i i1 = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x1, inv)), lim), neg_lim);
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp + 32 * b), _mm512_cvtepi32_epi8(i0));
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp + 32 * b + 16), _mm512_cvtepi32_epi8(i1));
      dx16[2 * b] = dx16[2 * b + 1] = scale;
      xb16[2 * b] = scale * static_cast<float>(_mm512_reduce_add_epi32(i0));
      xb16[2 * b + 1] = scale * static_cast<float>(_mm512_reduce_add_epi32(i1));
    }
    int8_t* q = qs + sb * kActSuperBytes;
    for (int l = 0; l < 16; ++l) {
      for (int r = 0; r < 4; ++r) std::memcpy(q + 64 * r + 4 * l, tmp + 16 * l + 4 * r, 4);
    }
  }
}

KQuantKernels MakeAvx512KQuantTable(IsaLevel level) {
  KQuantKernels t;
  t.level = level;
  t.quantize_act = &QuantizeAct;
  t.gemm = &Gemm;
  return t;
}

}  // namespace
}  // namespace kestrel::plugins::cpu
