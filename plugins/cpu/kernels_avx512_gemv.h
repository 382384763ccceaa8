// Decode GEMV (one token) for AVX-512 as single-row streams, included by kernels_avx512_impl.h
// (after DotGroup) for the levels avx512 and vnni.
//
// Why a second GEMV beside the R-row tiles (GemvTileQ): a tile reads R rows at once, i.e. R
// interleaved DRAM streams per thread, R x 2 with two threads. On AMD Zen (measured on an EPYC
// Zen 5 guest, docs/perf/cpu.md) that many streams defeat the hardware prefetchers: one thread
// read Q8_0 weights at 63 % of its plain read rate through the 8-row tiles and at 91 % walking one
// row after the other (one linear stream; the x vector stays in L1). Both forms accumulate in the
// same order, so their results are bit-identical (greedy output must not depend on the vendor).
// The level's choice between the two is GemvStyle (cpu_features.h).
// Internal linkage only (see kernels_avx512_impl.h).

// Q4_0 / Q8_0 weights (packed group layout, kernels.h) x quantized activations, rows [n0, n1).
// Each group's quants are prefetched into L1 a fixed distance ahead in the thread's linear
// stream: Q8_0 2 KiB (+8 % over none on Zen 5; 4-16 KiB measured no better), Q4_0 8 KiB (no
// prefetch before: -10 % CPU time per decode sweep on Zen 5, 12 KiB the same, 0.5-2 KiB worse or
// no better, docs/perf/cpu.md session 5). Past the thread's last row the prefetches touch rows
// another task reads next; a prefetch never faults.
constexpr int64_t kGemvPrefetchQ8 = 2048;
constexpr int64_t kGemvPrefetchQ4 = 8192;

// One group of a row: the int32 block dots of group g, scaled by lanes idx of s, into acc.
template <bool kQ8>
inline __m512 GemvRowGroup(const uint8_t* p, const QActView& a, int64_t g, __m512i idx, __m512 s,
                           __m512 acc) {
  __m512i lo, hi;
  if constexpr (kQ8) {
    _mm_prefetch(reinterpret_cast<const char*>(p + kGemvPrefetchQ8), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + kGemvPrefetchQ8 + 64), _MM_HINT_T0);
    lo = _mm512_loadu_si512(p);
    hi = _mm512_loadu_si512(p + 64);
  } else {
    _mm_prefetch(reinterpret_cast<const char*>(p + kGemvPrefetchQ4), _MM_HINT_T0);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i v = _mm512_loadu_si512(p);
    lo = _mm512_and_si512(v, m4);
    hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
  }
  const __m512i dp = DotGroup<kQ8>(lo, hi, a.qs + g * kActGroupBytes, a.bias + g * 16);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_permutexvar_ps(idx, s), acc);
}

template <bool kQ8>
inline void GemvRowsQ(const QWeightView& w, const QActView& a, int64_t n0, int64_t n1, float* y) {
  const int64_t G = w.n_groups;
  const int64_t gb = w.group_bytes;
  const __m512i i0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(4));
  const __m512i i2 = _mm512_add_epi32(i0, _mm512_set1_epi32(8));
  const __m512i i3 = _mm512_add_epi32(i0, _mm512_set1_epi32(12));
  const int64_t G4 = G / 4 * 4;
  for (int64_t j = n0; j < n1; ++j) {
    const uint8_t* wq = w.qs + j * G * gb;
    const uint16_t* wd = w.d + j * G * kGroupBlocks;
    // One accumulator, groups in order: the same operations in the same order as GemvTileQ, so
    // both styles give bit-identical results (greedy decoding must not depend on the CPU's
    // vendor); the FMA chain (4 cycles per 128-element group) is far from the limit.
    __m512 acc0 = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g < G4; g += 4) {
      // The 16 block scales of 4 groups, weight x activation, once per 4 groups.
      const __m512 s = _mm512_mul_ps(
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wd + g * kGroupBlocks))),
          _mm512_loadu_ps(a.d + g * kGroupBlocks));
      acc0 = GemvRowGroup<kQ8>(wq + g * gb, a, g, i0, s, acc0);
      acc0 = GemvRowGroup<kQ8>(wq + (g + 1) * gb, a, g + 1, i1, s, acc0);
      acc0 = GemvRowGroup<kQ8>(wq + (g + 2) * gb, a, g + 2, i2, s, acc0);
      acc0 = GemvRowGroup<kQ8>(wq + (g + 3) * gb, a, g + 3, i3, s, acc0);
    }
    if (g < G) {
      const __mmask16 m = static_cast<__mmask16>((1u << (4 * (G - g))) - 1u);
      const __m512 s = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wd + g * kGroupBlocks)),
                                     _mm512_maskz_loadu_ps(m, a.d + g * kGroupBlocks));
      const __m512i idx[3] = {i0, i1, i2};
      for (int64_t gi = 0; g + gi < G; ++gi) {
        acc0 = GemvRowGroup<kQ8>(wq + (g + gi) * gb, a, g + gi, idx[gi], s, acc0);
      }
    }
    y[j] = _mm512_reduce_add_ps(acc0);
  }
}

// F32 / F16 weights [n][ldw] x one f32 row x, rows [n0, n1): the one-row tile TileF<1, 1>
// (same accumulation order as the tiles, so bit-identical results; it prefetches the next row
// into L2 as it goes, a linear stream just ahead of this one).
template <typename W>
inline void GemvRowsF(const W* w, int64_t ldw, const float* x, int64_t k, int64_t n0, int64_t n1,
                      float* y) {
  for (int64_t j = n0; j < n1; ++j) TileF<1, 1>(w, ldw, x, 0, k, j, 0, y, 0);
}
