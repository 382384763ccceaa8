// Prefill GEMM for the KQ formats (kernels_kquants.h) at level vnni with one 32-element block of
// a row per 32-bit lane: lane r of a register is row r of a 16-row tile. Included by
// kernels_kquants_avx512_impl.h when KESTREL_CPU_KQ_VNNI (internal linkage only, like it).
//
// Why: the row tiles (GemmTile / GemmTileUnpacked) keep a super-block's dot spread over 16
// sub-block lanes, so each (row, token, super-block) costs 4 vpdpbusd + cvt + mul + 2 fma: per 32
// elements of 16 rows that is 16 pipe operations. Here a lane accumulates a whole 32-block of its
// row (8 vpdpbusd with the token's activation dwords broadcast), and the float work is paid once
// per block for the 16 rows:
//   formats with one A, B per 32 elements (Q4_K, Q5_K, Q4_1, Q5_1, Q5_0): cvt, A * dx, 2 fma
//     (the B term against the block's activation sum) = 12 operations;
//   Q6_K, Q3_K (B = c A, c = -32 / -4 per 16-element sub-block): the c * sum(qx) term enters the
//     integer accumulator as its start value (per token, the same for all rows), the two
//     sub-blocks' dots are combined in f32 before one fma by dx = 13 operations.
// Q2_K (independent A, B per 16 elements) would gain ~1 of 16 and keeps the row tiles.
//
// The summation order differs from the decode GEMV's (whole block dots in int32, sub-blocks
// combined before the activation scale), so GemmFormat takes this path only for n_tokens >=
// kKqLaneMinTokens: decode, speculative verification and batched decode keep the row tiles,
// bit-identical with the GEMV. KESTREL_CPU_PREFILL=groups turns it off (same-build baseline).

constexpr int kKqLaneRows = 16;
constexpr int64_t kKqLaneMinTokens = 64;
// Per (16-row tile, 32-block): 8 vectors of 16 dwords (vector k, lane r: the 4 quants of row r at
// k < 4: elements 4k..4k+3 of the block's first 16, k >= 4: 16 + 4 (k - 4)..), then F0[16], F1[16]:
// A, B of the block (pair formats) or A of its two 16-element sub-blocks (Q6_K, Q3_K).
constexpr int64_t kKqLaneBlockBytes = 8 * 64 + 2 * 64;

template <uint32_t kDt>
constexpr bool kKqLanesPair = kDt == KESTREL_DTYPE_Q4_K || kDt == KESTREL_DTYPE_Q5_K ||
                              kDt == KESTREL_DTYPE_Q4_1 || kDt == KESTREL_DTYPE_Q5_1 ||
                              kDt == KESTREL_DTYPE_Q5_0;
template <uint32_t kDt>
constexpr bool kKqLanesOffset = kDt == KESTREL_DTYPE_Q6_K || kDt == KESTREL_DTYPE_Q3_K;
template <uint32_t kDt>
constexpr bool kKqLanes = kKqLanesPair<kDt> || kKqLanesOffset<kDt>;

inline bool KqLanesDisabled() {
  static const bool off = [] {
    const char* v = std::getenv("KESTREL_CPU_PREFILL");
    return v != nullptr && std::strcmp(v, "groups") == 0;
  }();
  return off;
}

// In place: v[i] lane l becomes the old v[l] lane i (16 x 16 dwords, 64 shuffles).
inline void Transpose16x16(__m512i v[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  // Per 128-bit lane L of v[4 i + m]: column 4 L + m of rows 4 i .. 4 i + 3.
  for (int i = 0; i < 4; ++i) {
    v[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    v[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    v[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    v[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512i a1 = _mm512_shuffle_i32x4(v[m], v[4 + m], 0x88), a2 = _mm512_shuffle_i32x4(v[m], v[4 + m], 0xDD);
    const __m512i b1 = _mm512_shuffle_i32x4(v[8 + m], v[12 + m], 0x88);
    const __m512i b2 = _mm512_shuffle_i32x4(v[8 + m], v[12 + m], 0xDD);
    t[m] = _mm512_shuffle_i32x4(a1, b1, 0x88);
    t[8 + m] = _mm512_shuffle_i32x4(a1, b1, 0xDD);
    t[4 + m] = _mm512_shuffle_i32x4(a2, b2, 0x88);
    t[12 + m] = _mm512_shuffle_i32x4(a2, b2, 0xDD);
  }
  for (int i = 0; i < 16; ++i) v[i] = t[i];
}

// Rows [j, j + 16) of w into the lane layout at s (n_sb * 8 blocks): per super-block, the 16
// rows are unpacked (LoadQuants, ExpandScales) into a small buffer, and each of its 16 x 16
// dword matrices (one quant register of every row, or their A or B) is transposed so that lane r
// holds row r.
template <uint32_t kDt>
inline void PackKqLaneTile(const KWeightView& w, int64_t j, uint8_t* s) {
  using T = Traits<kDt>;
  const int64_t nsb = w.n_sb;
  alignas(64) __m512i unpacked[6][kKqLaneRows];  // quant registers 0..3, A, B of each row
  alignas(64) uint8_t tail_planes[T::kQBytes];     // a compact last super-block, expanded
  for (int64_t sb = 0; sb < nsb; ++sb) {
    for (int r = 0; r < kKqLaneRows; ++r) {
      __m512i q[4];
      // KqPlanes: rows are w.q_row bytes apart, and a Q4_1/Q5_0/Q5_1 row whose k is not a
      // multiple of 256 ends in a compact partial super-block (kernels_kquants.h).
      LoadQuants<T::kBits>(KqPlanes(w, j + r, sb, tail_planes), q);
      for (int i = 0; i < 4; ++i) unpacked[i][r] = q[i];
      __m512 A, B;
      ExpandScales<kDt>(w.sc + ((j + r) * nsb + sb) * T::kSBytes, &A, &B);
      unpacked[4][r] = _mm512_castps_si512(A);
      unpacked[5][r] = _mm512_castps_si512(B);
    }
    uint8_t* const blk = s + sb * 8 * kKqLaneBlockBytes;
    for (int i = 0; i < 6; ++i) {
      if (i == 5 && !kKqLanesPair<kDt>) break;
      Transpose16x16(unpacked[i]);
      // Now unpacked[i][l] is sub-block l (block l / 2) of the 16 rows.
      for (int l = 0; l < 16; ++l) {
        uint8_t* b = blk + (l / 2) * kKqLaneBlockBytes;
        if (i < 4) {
          // Dword l of quant register i: sub-block l's elements 4i..4i+3 (order p).
          _mm512_store_si512(b + 64 * (i + 4 * (l % 2)), unpacked[i][l]);
        } else if (i == 4 && (l % 2 == 0 || !kKqLanesPair<kDt>)) {
          _mm512_store_si512(b + 512 + 64 * (l % 2), unpacked[i][l]);
        } else if (i == 5 && l % 2 == 0) {
          _mm512_store_si512(b + 576, unpacked[i][l]);
        }
      }
    }
  }
}

// Per token and super-block, 16 dwords the lane tiles add per block: pair formats, the f32
// activation sum of 32-block b (xb16[2b] + xb16[2b + 1]) at b < 8; Q6_K / Q3_K, the int32 start
// value c * (sum of sub-block l's quantized activations) at l < 16.
template <uint32_t kDt>
inline void KqLaneTokenTerms(const KActView& a, int64_t n_tokens, uint32_t* out) {
  const int64_t n = n_tokens * a.n_sb;
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (kKqLanesPair<kDt>) {
      const float* xb = a.ds + i * kActSuperFloats + 16;
      float* o = reinterpret_cast<float*>(out + i * 16);
      for (int b = 0; b < 8; ++b) o[b] = xb[2 * b] + xb[2 * b + 1];
    } else {
      const int8_t* xq = a.qs + i * kActSuperBytes;
      const __m512i ones = _mm512_set1_epi8(1);
      __m512i sum = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) sum = _mm512_dpbusd_epi32(sum, ones, _mm512_loadu_si512(xq + 64 * k));
      const int c = kDt == KESTREL_DTYPE_Q6_K ? -32 : -4;
      _mm512_storeu_si512(out + i * 16, _mm512_mullo_epi32(sum, _mm512_set1_epi32(c)));
    }
  }
}

// The 16 rows of a packed tile s x C tokens from token t: y[(t + c) * ldy + j + r].
// next (the first token chunk of a tile, when another tile follows): the next tile's rows, two
// linear ranges of the packed weight, are prefetched into L2 spread over the block steps, so that
// packing it finds them there instead of waiting on 32 row streams from DRAM.
template <uint32_t kDt, int C>
__attribute__((noinline)) void KqLaneTile(const uint8_t* s, const KActView& a, const uint32_t* terms,
                                          int64_t t, int64_t j, float* y, int64_t ldy,
                                          const KWeightView* next) {
  using T = Traits<kDt>;
  static_assert(kKqLaneRows * T::kQBytes % (8 * 64) == 0, "whole lines of quants per block step");
  constexpr int64_t kQLines = kKqLaneRows * T::kQBytes / (8 * 64);
  constexpr int64_t kSLines = (kKqLaneRows * T::kSBytes + 63) / 64;
  static_assert(kSLines <= 8, "a super-block's scale lines fit its 8 block steps");
  const int64_t nsb = a.n_sb;
  const char* nq = nullptr;
  const char* ns = nullptr;
  if (next != nullptr) {
    nq = reinterpret_cast<const char*>(next->qs + (j + kKqLaneRows) * next->q_row);
    ns = reinterpret_cast<const char*>(next->sc + (j + kKqLaneRows) * nsb * T::kSBytes);
  }
  __m512 facc[C];
  for (int c = 0; c < C; ++c) facc[c] = _mm512_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    for (int b = 0; b < 8; ++b) {
      if (nq != nullptr) {
        for (int64_t l = 0; l < kQLines; ++l) _mm_prefetch(nq + ((sb * 8 + b) * kQLines + l) * 64, _MM_HINT_T1);
        if (b < kSLines) _mm_prefetch(ns + (sb * kSLines + b) * 64, _MM_HINT_T1);
      }
      const uint8_t* blk = s + (sb * 8 + b) * kKqLaneBlockBytes;
      __m512i wv[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) wv[k] = _mm512_load_si512(blk + 64 * k);
      const __m512 f0 = _mm512_load_ps(blk + 512), f1 = _mm512_load_ps(blk + 576);
#pragma GCC unroll 16
      for (int c = 0; c < C; ++c) {
        const int64_t base = (t + c) * nsb + sb;
        const int8_t* xq = a.qs + base * kActSuperBytes + 8 * b;
        const float* xd = a.ds + base * kActSuperFloats;
        const uint32_t* tt = terms + base * 16;
        if constexpr (kKqLanesPair<kDt>) {
          __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 8
          for (int k = 0; k < 8; ++k) {
            acc = _mm512_dpbusd_epi32(acc, wv[k], _mm512_broadcastd_epi32(_mm_loadu_si32(xq + 64 * (k % 4) + 4 * (k / 4))));
          }
          facc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(f0, _mm512_set1_ps(xd[2 * b])), facc[c]);
          facc[c] = _mm512_fmadd_ps(f1, _mm512_set1_ps(reinterpret_cast<const float*>(tt)[b]), facc[c]);
        } else {
          __m512i acc0 = _mm512_broadcastd_epi32(_mm_loadu_si32(tt + 2 * b));
          __m512i acc1 = _mm512_broadcastd_epi32(_mm_loadu_si32(tt + 2 * b + 1));
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            acc0 = _mm512_dpbusd_epi32(acc0, wv[k], _mm512_broadcastd_epi32(_mm_loadu_si32(xq + 64 * k)));
            acc1 = _mm512_dpbusd_epi32(acc1, wv[4 + k], _mm512_broadcastd_epi32(_mm_loadu_si32(xq + 64 * k + 4)));
          }
          const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc1), f1,
                                           _mm512_mul_ps(_mm512_cvtepi32_ps(acc0), f0));
          facc[c] = _mm512_fmadd_ps(v, _mm512_set1_ps(xd[2 * b]), facc[c]);
        }
      }
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + (t + c) * ldy + j, facc[c]);
}

// Rows [j, j + 16 * tiles) of y for all n_tokens tokens, one 16-row tile at a time.
template <uint32_t kDt>
inline void GemmKqLanes(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t j,
                        int64_t tiles, float* y, int64_t ldy) {
  // Per thread (the pool's threads are persistent), kept between calls; 64-byte aligned.
  thread_local std::vector<uint8_t> buf;
  const size_t tile_bytes = static_cast<size_t>(w.n_sb * 8 * kKqLaneBlockBytes);
  const size_t terms_bytes = static_cast<size_t>(n_tokens * w.n_sb * 16) * sizeof(uint32_t);
  if (buf.size() < tile_bytes + terms_bytes + 64) buf.resize(tile_bytes + terms_bytes + 64);
  uint8_t* const s = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t{63});
  uint32_t* const terms = reinterpret_cast<uint32_t*>(s + tile_bytes);
  KqLaneTokenTerms<kDt>(a, n_tokens, terms);
  constexpr int kC = 8;
  static_assert(kKqLaneMinTokens >= kC, "the first token chunk is a whole one");
  for (int64_t tile = 0; tile < tiles; ++tile, j += kKqLaneRows) {
    PackKqLaneTile<kDt>(w, j, s);
    // n_tokens >= kC: the first chunk is a whole one and streams the next tile.
    const KWeightView* next = tile + 1 < tiles ? &w : nullptr;
    int64_t t = 0;
    for (; t + kC <= n_tokens; t += kC, next = nullptr) KqLaneTile<kDt, kC>(s, a, terms, t, j, y, ldy, next);
    switch (n_tokens - t) {
      case 7: KqLaneTile<kDt, 7>(s, a, terms, t, j, y, ldy, nullptr); break;
      case 6: KqLaneTile<kDt, 6>(s, a, terms, t, j, y, ldy, nullptr); break;
      case 5: KqLaneTile<kDt, 5>(s, a, terms, t, j, y, ldy, nullptr); break;
      case 4: KqLaneTile<kDt, 4>(s, a, terms, t, j, y, ldy, nullptr); break;
      case 3: KqLaneTile<kDt, 3>(s, a, terms, t, j, y, ldy, nullptr); break;
      case 2: KqLaneTile<kDt, 2>(s, a, terms, t, j, y, ldy, nullptr); break;
      case 1: KqLaneTile<kDt, 1>(s, a, terms, t, j, y, ldy, nullptr); break;
      default: break;
    }
  }
}
