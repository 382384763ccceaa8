// Prefill GEMM for Q4_0 / Q8_0 on AVX-512 VNNI with one whole 32-block per 32-bit lane, included
// by kernels_avx512_impl.h (internal linkage only, like it).
//
// Why: the group kernels (StreamTileQ) keep each block's integer dot spread over 4 dword lanes,
// so every (row, token, 128 elements) costs 2 vpdpbusd + cvt + mul + fma, all on the two
// FMA-class pipes of Zen 5: 5 x 0.119 ns = 0.595 ns, exactly what they measure (docs/perf/cpu.md
// session 6). Here lane r of a register is row r of a 16-row tile and accumulates a whole block's
// dot (8 vpdpbusd with the token's 4 activation bytes broadcast), so the float work (cvt, scale
// product, fma) is paid once per block instead of once per 4 elements: 11 pipe operations per
// (16 rows, token, block), i.e. 2.75 instead of 5 per (row, token, group).
//
// The rows are re-laid out per call into a per-thread scratch (a 16 x 16 dword transpose per
// group, amortized over the many tokens of a prefill). The summation order differs from the
// decode GEMV's (exact integer block dots, then one f32 product per block), so GemmQImpl takes
// this path only for n_tokens >= kLaneMinTokens: decode, speculative verification and the
// engine's batched decode keep the group kernels, bit-identical to the GEMV.

// Scratch per 32-block of the 16-row tile: 8 vectors of 16 dwords (vector k, lane r: elements
// 4k..4k+3 of the block in row r, stored u8 = value + offset), then the 16 rows' f32 scales.
constexpr int kLaneRows = 16;
constexpr int64_t kLaneBlockBytes = 8 * 64 + 64;
constexpr int64_t kLaneMinTokens = 64;

// Rows [j, j + 16) of w into the lane layout at s (n_groups * 4 blocks; padding blocks stay zero
// weights with a zero scale, as in the packed layout).
inline void PackLaneTile(const QWeightView& w, int64_t j, uint8_t* s) {
  const int64_t G = w.n_groups, gb = w.group_bytes;
  const bool q8 = w.dtype == KESTREL_DTYPE_Q8_0;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int r = 0; r < kLaneRows; ++r) {
    const uint8_t* wq = w.qs + (j + r) * G * gb;
    const uint16_t* wd = w.d + (j + r) * G * kGroupBlocks;
    for (int64_t g = 0; g < G; ++g) {
      alignas(64) uint32_t lo[16], hi[16];
      if (q8) {
        _mm512_store_si512(lo, _mm512_loadu_si512(wq + g * gb));
        _mm512_store_si512(hi, _mm512_loadu_si512(wq + g * gb + 64));
      } else {
        const __m512i v = _mm512_loadu_si512(wq + g * gb);
        _mm512_store_si512(lo, _mm512_and_si512(v, m4));
        _mm512_store_si512(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
      }
      // Dword d of lo / hi: block d / 4, elements 4 (d % 4) .. +3 (lo) or 16 + 4 (d % 4) .. (hi).
      for (int d = 0; d < 16; ++d) {
        uint32_t* blk = reinterpret_cast<uint32_t*>(s + (g * kGroupBlocks + d / 4) * kLaneBlockBytes);
        blk[(d % 4) * 16 + r] = lo[d];
        blk[(4 + d % 4) * 16 + r] = hi[d];
      }
      for (int b = 0; b < kGroupBlocks; ++b) {
        float* sd = reinterpret_cast<float*>(s + (g * kGroupBlocks + b) * kLaneBlockBytes + 512);
        sd[r] = _cvtsh_ss(wd[g * kGroupBlocks + b]);
      }
    }
  }
}

// The 16 rows of a packed tile s x C tokens from token t: y[(t + c) * ldy + j + r].
template <int C>
__attribute__((noinline)) void LaneTileQ(const uint8_t* s, const QActView& a, int64_t t, int64_t j,
                                         float* y, int64_t ldy) {
  const int64_t G = a.n_groups;
  const int64_t n_blocks = G * kGroupBlocks;
  __m512 facc[C];
  for (int c = 0; c < C; ++c) facc[c] = _mm512_setzero_ps();
  for (int64_t bb = 0; bb < n_blocks; ++bb) {
    const uint8_t* blk = s + bb * kLaneBlockBytes;
    __m512i wv[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) wv[k] = _mm512_load_si512(blk + 64 * k);
    const __m512 dw = _mm512_load_ps(blk + 512);
    const int64_t g = bb / kGroupBlocks, b = bb % kGroupBlocks;
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
      const int64_t base = (t + c) * G + g;
      const int8_t* xg = a.qs + base * kActGroupBytes + b * 16;
      // The activation bytes are broadcast straight from memory: through a general register
      // (GCC's code for _mm512_set1_epi32 of a loaded int) the kernel was slower than the group
      // one; an embedded {1to16} operand of vpdpbusd (inline asm) measured no better than this.
      __m512i acc = _mm512_broadcastd_epi32(_mm_loadu_si32(a.bias + base * 16 + 4 * b));
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const int8_t* p = xg + (k < 4 ? 4 * k : 64 + 4 * (k - 4));
        acc = _mm512_dpbusd_epi32(acc, wv[k], _mm512_broadcastd_epi32(_mm_loadu_si32(p)));
      }
      facc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc),
                                _mm512_mul_ps(dw, _mm512_set1_ps(a.d[base * kGroupBlocks + b])),
                                facc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + (t + c) * ldy + j, facc[c]);
}

// Rows [j, j + 16 * tiles) of y for all n_tokens tokens, one 16-row tile at a time.
inline void GemmLanesQ(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t j,
                       int64_t tiles, float* y, int64_t ldy) {
  uint8_t* s = UnpackScratch(w.n_groups * kGroupBlocks * kLaneBlockBytes);
  constexpr int kC = 8;
  for (int64_t tile = 0; tile < tiles; ++tile, j += kLaneRows) {
    PackLaneTile(w, j, s);
    int64_t t = 0;
    for (; t + kC <= n_tokens; t += kC) LaneTileQ<kC>(s, a, t, j, y, ldy);
    switch (n_tokens - t) {
      case 7: LaneTileQ<7>(s, a, t, j, y, ldy); break;
      case 6: LaneTileQ<6>(s, a, t, j, y, ldy); break;
      case 5: LaneTileQ<5>(s, a, t, j, y, ldy); break;
      case 4: LaneTileQ<4>(s, a, t, j, y, ldy); break;
      case 3: LaneTileQ<3>(s, a, t, j, y, ldy); break;
      case 2: LaneTileQ<2>(s, a, t, j, y, ldy); break;
      case 1: LaneTileQ<1>(s, a, t, j, y, ldy); break;
      default: break;
    }
  }
}
