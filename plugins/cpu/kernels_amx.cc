// AMX-INT8 kernels (the VNNI flags plus -mamx-tile -mamx-int8): the Q4_0/Q8_0 x 8-bit-activation
// GEMM of prefill on tiles, everything else from the VNNI table (kernels_avx512_impl.h).
//
// One tile step is C[16 weight rows][16 tokens] (int32) = A[16 rows][32] (one 32-block of the
// weights, s8) . B[8][16 tokens x 4] (the same block of 16 tokens' 8-bit activations, s8, in the
// 4-byte interleaved "VNNI" layout), i.e. K = 32 per TDPBSSD, so that every product stays inside
// one block and the per-block scales can be applied exactly as on the VNNI path: the int32 tile
// is stored, converted and multiplied by d_w[row][block] * d_x[token][block] into f32
// accumulators (16 vectors of 16 tokens) in AVX-512. Four result tiles rotate (blocks b, b + 1
// are scaled while b + 2, b + 3 are multiplied), so the tile unit and the vector units overlap;
// the next 16-row panel's weights are prefetched into L2 during the first token tile.
// The activations are quantized exactly like QuantizeRowAct (d = amax / 127, round to nearest
// even, f32 scale), so the integer dots equal the VNNI path's and only the f32 summation order
// differs. Weights are unpacked per 16-row panel into signed bytes in element order (Q4_0:
// nibble - 8, Q8_0: byte ^ 0x80), once per panel for all token tiles.
//
// AMX needs the OS to grant the process the tile data state (arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA)); AmxUsable() asks once per process. Every kernel call loads its tile
// configuration (per thread state) and releases the tiles when done.
#define KESTREL_CPU_VNNI 1
#include "kernels_avx512_impl.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cpuid.h>

#include <vector>

namespace kestrel::plugins::cpu {
namespace {

constexpr int64_t kTileRows = 16;

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

void LoadTileConfig() {
  TileConfig c{};
  c.palette_id = 1;
  for (int t = 0; t < 2; ++t) {  // tmm0, tmm1: weights (16 rows x 32 bytes)
    c.rows[t] = 16;
    c.colsb[t] = 32;
  }
  for (int t = 2; t < 4; ++t) {  // tmm2, tmm3: activations (8 rows x 64 bytes)
    c.rows[t] = 8;
    c.colsb[t] = 64;
  }
  for (int t = 4; t < 8; ++t) {  // tmm4..tmm7: int32 results (16 x 16)
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }
  _tile_loadconfig(&c);
}

bool DetectAmx() {
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  if (!((edx >> 24) & 1) || !((edx >> 25) & 1)) return false;  // AMX-TILE, AMX-INT8
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return false;  // OSXSAVE
  unsigned int lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;  // XTILECFG + XTILEDATA enabled by the OS
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  return true;
#else
  return false;
#endif
}

// Quantizes tokens [16 * tile, 16 * tile + 16) of x (T rows of k floats, stride ldx) into the
// tile layout: qs[b][kk][t][i] = q(x[t][32 b + 4 kk + i]) (512 bytes per block), d[b][t] (f32);
// tokens past T are zero.
void QuantizeActTile(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, int64_t tile,
                     int8_t* qs, float* d) {
  const int64_t nb = k / kBlock;
  const int64_t t0 = tile * kActTileTokens;
  const int64_t nt = std::min<int64_t>(kActTileTokens, n_tokens - t0);
  thread_local std::vector<int8_t> rows;
  if (rows.size() < static_cast<size_t>(kActTileTokens * k)) rows.resize(static_cast<size_t>(kActTileTokens * k));
  if (nt < kActTileTokens) {  // padding tokens: zero quants (and zero scales below)
    std::memset(rows.data() + nt * k, 0, static_cast<size_t>((kActTileTokens - nt) * k));
  }
  std::memset(d, 0, static_cast<size_t>(nb * kActTileTokens) * sizeof(float));
  const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512i lim = _mm512_set1_epi32(127);
  const __m512i nlim = _mm512_set1_epi32(-127);
  for (int64_t t = 0; t < nt; ++t) {
    const float* xr = x + (t0 + t) * ldx;
    int8_t* q = rows.data() + t * k;
    for (int64_t b = 0; b < nb; ++b) {
      const __m512 x0 = _mm512_loadu_ps(xr + b * kBlock);
      const __m512 x1 = _mm512_loadu_ps(xr + b * kBlock + 16);
      const __m512 a = _mm512_max_ps(_mm512_and_ps(x0, sign_mask), _mm512_and_ps(x1, sign_mask));
      const float amax = _mm512_reduce_max_ps(a);
      const float scale = amax / 127.0f;
      const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
      const __m512 vinv = _mm512_set1_ps(inv);
      __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vinv));
      __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vinv));
      i0 = _mm512_max_epi32(_mm512_min_epi32(i0, lim), nlim);
      i1 = _mm512_max_epi32(_mm512_min_epi32(i1, lim), nlim);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kBlock), _mm512_cvtepi32_epi8(i0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kBlock + 16), _mm512_cvtepi32_epi8(i1));
      d[b * kActTileTokens + t] = scale;
    }
  }
  // Transpose to the VNNI layout: dword kk of token t -> row kk, column t.
  const __m512i tok = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(static_cast<int>(k / 4)));
  for (int64_t b = 0; b < nb; ++b) {
    const int32_t* src = reinterpret_cast<const int32_t*>(rows.data() + b * kBlock);
    int8_t* dst = qs + b * kActTileBytesPerBlock;
    for (int kk = 0; kk < 8; ++kk) {
      _mm512_storeu_si512(dst + kk * 64, _mm512_i32gather_epi32(tok, src + kk, 4));
    }
  }
}

// Rows [p0, p0 + 16) of w (rows >= n1 zero) as signed bytes in element order, wq[r][k], and their
// scales transposed, wd[b][r].
void UnpackPanel(const QWeightView& w, int64_t p0, int64_t n1, int8_t* wq, float* wd) {
  const int64_t G = w.n_groups;
  const int64_t k = w.k;
  const int64_t nb = k / kBlock;
  const bool q8 = w.dtype == KESTREL_DTYPE_Q8_0;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i eight = _mm512_set1_epi8(8);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i i0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
  const __m512i i1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
  for (int64_t r = 0; r < kTileRows; ++r) {
    int8_t* o = wq + r * k;
    const int64_t j = p0 + r;
    if (j >= n1) {
      std::memset(o, 0, static_cast<size_t>(k));
      for (int64_t b = 0; b < nb; ++b) wd[b * kTileRows + r] = 0.0f;
      continue;
    }
    const uint8_t* src = w.qs + j * G * w.group_bytes;
    const uint16_t* sd = w.d + j * G * kGroupBlocks;
    for (int64_t b = 0; b < nb; ++b) wd[b * kTileRows + r] = _cvtsh_ss(sd[b]);
    for (int64_t g = 0; g < G; ++g) {
      __m512i lo, hi;
      if (q8) {
        lo = _mm512_xor_si512(_mm512_loadu_si512(src + g * 128), flip);
        hi = _mm512_xor_si512(_mm512_loadu_si512(src + g * 128 + 64), flip);
      } else {
        const __m512i v = _mm512_loadu_si512(src + g * 64);
        lo = _mm512_sub_epi8(_mm512_and_si512(v, m4), eight);
        hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), eight);
      }
      // lane b of lo / hi = elements 0..15 / 16..31 of block b.
      const __m512i out0 = _mm512_permutex2var_epi64(lo, i0, hi);  // blocks 0, 1
      const __m512i out1 = _mm512_permutex2var_epi64(lo, i1, hi);  // blocks 2, 3
      const int64_t e0 = g * kGroupElems;
      const int64_t left = k - e0;  // elements of this row still to write
      if (left >= 128) {
        _mm512_storeu_si512(o + e0, out0);
        _mm512_storeu_si512(o + e0 + 64, out1);
      } else {  // partial group: 1..3 blocks
        const __mmask64 m0 = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
        _mm512_mask_storeu_epi8(o + e0, m0, out0);
        if (left > 64) {
          _mm512_mask_storeu_epi8(o + e0 + 64, (__mmask64{1} << (left - 64)) - 1, out1);
        }
      }
    }
  }
}

inline void ScaleTile(const int32_t* c, const float* wd_b, const float* dx_b, __m512* acc) {
  const __m512 dx = _mm512_loadu_ps(dx_b);
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) {
    const __m512 s = _mm512_mul_ps(dx, _mm512_set1_ps(wd_b[r]));
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * r)), s, acc[r]);
  }
}

// One 32-block of 16 weight rows x 16 tokens into tile C (A, B: the operand tiles to use).
#define KESTREL_AMX_ISSUE(blk, C, A, B)                            \
  do {                                                             \
    _tile_loadd(A, wq + (blk) * kBlock, k);                        \
    _tile_loadd(B, aq + (blk) * kActTileBytesPerBlock, 64);        \
    _tile_zero(C);                                                 \
    _tile_dpbssd(C, A, B);                                         \
  } while (0)
#define KESTREL_AMX_FINISH(blk, C)                                     \
  do {                                                                 \
    _tile_stored(C, cbuf, 64);                                         \
    ScaleTile(cbuf, wd + (blk) * kTileRows, ad + (blk) * kActTileTokens, acc); \
  } while (0)

void GemmQTiles(const QWeightView& w, const int8_t* act_qs, const float* act_d, int64_t n_tokens,
                int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const int64_t k = w.k;
  const int64_t nb = k / kBlock;
  const int64_t nb4 = nb / 4 * 4;  // blocks of the 4-deep pipelined loop
  const int64_t n_tiles = (n_tokens + kActTileTokens - 1) / kActTileTokens;
  const int64_t row_bytes = w.n_groups * w.group_bytes;
  thread_local std::vector<int8_t> wq_buf;
  thread_local std::vector<float> wd_buf;
  if (wq_buf.size() < static_cast<size_t>(kTileRows * k)) wq_buf.resize(static_cast<size_t>(kTileRows * k));
  if (wd_buf.size() < static_cast<size_t>(kTileRows * nb)) wd_buf.resize(static_cast<size_t>(kTileRows * nb));
  int8_t* wq = wq_buf.data();
  float* wd = wd_buf.data();
  alignas(64) int32_t cbuf[256];
  alignas(64) float out[256];
  LoadTileConfig();
  for (int64_t p0 = n0; p0 < n1; p0 += kTileRows) {
    UnpackPanel(w, p0, n1, wq, wd);
    const int64_t nr = std::min<int64_t>(kTileRows, n1 - p0);
    // The next panel's weights are prefetched into L2 while this one is multiplied (rows are
    // contiguous), spread over the 4-block steps of the first token tile.
    const int64_t next_rows = std::max<int64_t>(0, std::min<int64_t>(kTileRows, n1 - p0 - kTileRows));
    const char* next = reinterpret_cast<const char*>(w.qs + (p0 + kTileRows) * row_bytes);
    const int64_t next_lines = next_rows * row_bytes / 64;
    const int64_t steps = std::max<int64_t>(1, nb4 / 4);
    const int64_t lines_per_step = (next_lines + steps - 1) / steps;
    for (int64_t tt = 0; tt < n_tiles; ++tt) {
      const int8_t* aq = act_qs + tt * nb * kActTileBytesPerBlock;
      const float* ad = act_d + tt * nb * kActTileTokens;
      __m512 acc[16];
      for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
      int64_t pf = tt == 0 ? 0 : next_lines;  // next line to prefetch
      // Tiles: tmm0/tmm1 weights, tmm2/tmm3 activations, tmm4..7 results; blocks b, b+1 are
      // scaled while b+2, b+3 are being multiplied.
      if (nb4 > 0) {
        KESTREL_AMX_ISSUE(0, 4, 0, 2);
        KESTREL_AMX_ISSUE(1, 5, 1, 3);
        for (int64_t b = 0; b < nb4; b += 4) {
          KESTREL_AMX_ISSUE(b + 2, 6, 0, 2);
          KESTREL_AMX_ISSUE(b + 3, 7, 1, 3);
          for (int64_t e = std::min(next_lines, pf + lines_per_step); pf < e; ++pf) {
            _mm_prefetch(next + pf * 64, _MM_HINT_T1);
          }
          KESTREL_AMX_FINISH(b, 4);
          KESTREL_AMX_FINISH(b + 1, 5);
          if (b + 4 < nb4) {
            KESTREL_AMX_ISSUE(b + 4, 4, 0, 2);
            KESTREL_AMX_ISSUE(b + 5, 5, 1, 3);
          }
          KESTREL_AMX_FINISH(b + 2, 6);
          KESTREL_AMX_FINISH(b + 3, 7);
        }
      }
      for (int64_t b = nb4; b < nb; ++b) {
        KESTREL_AMX_ISSUE(b, 4, 0, 2);
        KESTREL_AMX_FINISH(b, 4);
      }
      // acc[r] lane t = y[t][p0 + r]: transpose on the way out.
      for (int r = 0; r < 16; ++r) _mm512_store_ps(out + 16 * r, acc[r]);
      const int64_t t0 = tt * kActTileTokens;
      const int64_t nt = std::min<int64_t>(kActTileTokens, n_tokens - t0);
      for (int64_t t = 0; t < nt; ++t) {
        float* yr = y + (t0 + t) * ldy + p0;
        for (int64_t r = 0; r < nr; ++r) yr[r] = out[16 * r + t];
      }
    }
  }
  _tile_release();
}
#undef KESTREL_AMX_ISSUE
#undef KESTREL_AMX_FINISH

// ---- F16 weights on AMX-BF16 tiles (prefill) ----
//
// One tile step is C[16 weight rows][16 tokens] (f32) += A[16 rows][32 k] (bf16 weights, row
// major) . B[16][16 tokens x 2] (32 k of 16 tokens' bf16 activations in the pair-interleaved
// "VNNI" layout), three times per 32 k: w_hi.x_hi + w_hi.x_lo + w_lo.x_hi. The weights, converted
// per call, keep their row-major order (binary16 -> hi/lo bf16 needs no transpose); the
// activations, converted once per op, take the interleaved layout. Four result tiles (2 weight
// panels x 2 token tiles) are in flight. K is blocked (256 k): per block, the weights of all the
// caller's rows are converted once (L2-resident), then each token-tile pair's activations
// (L1-resident) meet every panel pair. Every operand tile is 1 KB contiguous, so tile loads do
// not stride (a 4 KB row stride would map all 16 rows of a tile to one L1 set). The f32 results
// live in a per-call buffer of C tiles between K blocks and are transposed into y at the end.

constexpr int64_t kBf16TileTokens = 16;
constexpr int64_t kBf16TileK = 32;        // k per TDPBF16PS
constexpr int64_t kBf16TileElems = 512;   // bf16 per operand tile (16 x 32)
// K block: 8 chunks (256 k), so one token-tile pair's activations for it (hi and lo, 32 KB) sit
// in L1.
constexpr int64_t kBf16KBlockChunks = 8;

void LoadTileConfigBf16() {
  TileConfig c{};
  c.palette_id = 1;
  for (int t = 0; t < 8; ++t) {  // every tile 16 rows x 64 bytes (16 f32 or 32 bf16 per row)
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }
  _tile_loadconfig(&c);
}

// f32 bit patterns of v rounded to the nearest bf16 (ties to even), low 16 bits zero. Finite
// inputs only (activations and binary16 weights are; an Inf/NaN input gives a NaN output).
inline __m512i RoundToBf16Bits(__m512 v) {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
  return _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
}

// hi, lo bf16 bit patterns (in the upper halves of the lanes) with v ~= hi + lo.
inline void SplitBf16(__m512 v, __m512i* hi, __m512i* lo) {
  *hi = RoundToBf16Bits(v);
  *lo = RoundToBf16Bits(_mm512_sub_ps(v, _mm512_castsi512_ps(*hi)));
}

// 32 values (a = elements 0..15, b = 16..31, bf16 in the upper halves) as 32 packed bf16.
inline __m512i PackBf16(__m512i a, __m512i b) {
  const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
                                       31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(a, odd, b);
}

inline __mmask16 FirstLanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

void SplitActBf16(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, int64_t row,
                  uint16_t* hi, uint16_t* lo) {
  const int64_t nck = (k + kBf16TileK - 1) / kBf16TileK;
  const int64_t tile = row / kBf16TileTokens;
  const int64_t t = row % kBf16TileTokens;
  const float* xr = x + row * ldx;
  // Pair j of the chunk (elements 2 j, 2 j + 1) goes to dword j * 16 + t of the tile.
  const __m512i pair_pos = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(16));
  for (int64_t c = 0; c < nck; ++c) {
    const int64_t i = c * kBf16TileK;
    const int64_t left = row < n_tokens ? k - i : 0;
    __m512i h0, l0, h1, l1;
    SplitBf16(_mm512_maskz_loadu_ps(FirstLanes(left), xr + i), &h0, &l0);
    SplitBf16(_mm512_maskz_loadu_ps(FirstLanes(left - 16), xr + i + 16), &h1, &l1);
    const int64_t at = (tile * nck + c) * kBf16TileElems + 2 * t;
    _mm512_i32scatter_epi32(hi + at, pair_pos, PackBf16(h0, h1), 4);
    _mm512_i32scatter_epi32(lo + at, pair_pos, PackBf16(l0, l1), 4);
  }
}

// Weights rows [p0, p0 + 16) x k [k0, k0 + 32 nc) of w (rows >= n1 and k >= k zero) as hi/lo
// bf16 A tiles: hi tile of chunk c at wb + c * stride, lo tile 512 elements after it, each
// [r][32] row major.
void ConvertPanelBf16(const uint16_t* w, int64_t ldw, int64_t k, int64_t p0, int64_t n1, int64_t k0,
                      int64_t nc, uint16_t* wb, int64_t stride) {
  const int64_t nr = std::min<int64_t>(16, n1 - p0);
  for (int64_t r = 0; r < 16; ++r) {
    const uint16_t* src = w + (p0 + r) * ldw;
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t kb = k0 + c * kBf16TileK;
      const int64_t left = r < nr ? k - kb : 0;
      __m512i h0, l0, h1, l1;
      if (left >= kBf16TileK) {
        const __m512i v = _mm512_loadu_si512(src + kb);
        SplitBf16(_mm512_cvtph_ps(_mm512_castsi512_si256(v)), &h0, &l0);
        SplitBf16(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1)), &h1, &l1);
      } else {
        const __m256i a = _mm256_maskz_loadu_epi16(FirstLanes(left), src + kb);
        const __m256i b = _mm256_maskz_loadu_epi16(FirstLanes(left - 16), src + kb + 16);
        SplitBf16(_mm512_cvtph_ps(a), &h0, &l0);
        SplitBf16(_mm512_cvtph_ps(b), &h1, &l1);
      }
      uint16_t* hi_tile = wb + c * stride;
      _mm512_storeu_si512(hi_tile + r * kBf16TileK, PackBf16(h0, h1));
      _mm512_storeu_si512(hi_tile + kBf16TileElems + r * kBf16TileK, PackBf16(l0, l1));
    }
  }
}

// tmm0..3 += the 2 x 2 products of weight tiles tmm6, tmm7 and activation tiles tmm4, tmm5.
#define KESTREL_BF16_PRODUCTS_2X2() \
  do {                              \
    _tile_dpbf16ps(0, 6, 4);        \
    _tile_dpbf16ps(1, 6, 5);        \
    _tile_dpbf16ps(2, 7, 4);        \
    _tile_dpbf16ps(3, 7, 5);        \
  } while (0)

void GemmF16Tiles(const uint16_t* w, int64_t ldw, int64_t k, const uint16_t* act_hi,
                  const uint16_t* act_lo, int64_t n_tokens, int64_t n0, int64_t n1, float* y,
                  int64_t ldy) {
  if (n1 <= n0 || n_tokens <= 0) return;
  const int64_t nck = (k + kBf16TileK - 1) / kBf16TileK;  // 32-k chunks per row
  // Token tiles and 16-row panels, both rounded up to pairs (the padding is zero).
  const int64_t n_tt = (n_tokens + 2 * kBf16TileTokens - 1) / (2 * kBf16TileTokens) * 2;
  const int64_t n_panels = (n1 - n0 + 31) / 32 * 2;
  thread_local std::vector<float> cbuf_store;
  thread_local std::vector<uint16_t> wb_store;
  const size_t c_size = static_cast<size_t>(n_panels * n_tt * 256);
  if (cbuf_store.size() < c_size) cbuf_store.resize(c_size);
  // The weights of every panel for one K block: per panel pair and chunk, panel 0 hi, lo,
  // panel 1 hi, lo (4 tiles).
  const int64_t wstride = 4 * kBf16TileElems;
  const int64_t wb_size = n_panels / 2 * kBf16KBlockChunks * wstride;
  if (wb_store.size() < static_cast<size_t>(wb_size)) wb_store.resize(static_cast<size_t>(wb_size));
  float* cbuf = cbuf_store.data();
  uint16_t* wb = wb_store.data();
  LoadTileConfigBf16();
  for (int64_t c0 = 0; c0 < nck; c0 += kBf16KBlockChunks) {
    const int64_t nc = std::min(kBf16KBlockChunks, nck - c0);
    for (int64_t pi = 0; pi < n_panels; pi += 2) {
      uint16_t* wp = wb + pi / 2 * kBf16KBlockChunks * wstride;
      const int64_t p0 = n0 + pi * 16;
      ConvertPanelBf16(w, ldw, k, p0, n1, c0 * kBf16TileK, nc, wp, wstride);
      ConvertPanelBf16(w, ldw, k, p0 + 16, n1, c0 * kBf16TileK, nc, wp + 2 * kBf16TileElems, wstride);
    }
    for (int64_t tt = 0; tt < n_tt; tt += 2) {
      const uint16_t* xh0 = act_hi + (tt * nck + c0) * kBf16TileElems;
      const uint16_t* xl0 = act_lo + (tt * nck + c0) * kBf16TileElems;
      const uint16_t* xh1 = xh0 + nck * kBf16TileElems;
      const uint16_t* xl1 = xl0 + nck * kBf16TileElems;
      for (int64_t pi = 0; pi < n_panels; pi += 2) {
        const uint16_t* wp = wb + pi / 2 * kBf16KBlockChunks * wstride;
        // Result tiles: tmm0 (pi, tt), tmm1 (pi, tt + 1), tmm2 (pi + 1, tt),
        // tmm3 (pi + 1, tt + 1); cbuf holds tile (panel q, token tile u) at (q * n_tt + u) * 256.
        float* r00 = cbuf + (pi * n_tt + tt) * 256;
        float* r01 = r00 + 256;
        float* r10 = r00 + n_tt * 256;
        float* r11 = r10 + 256;
        if (c0 == 0) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        } else {
          _tile_loadd(0, r00, 64);
          _tile_loadd(1, r01, 64);
          _tile_loadd(2, r10, 64);
          _tile_loadd(3, r11, 64);
        }
        for (int64_t c = 0; c < nc; ++c) {
          const uint16_t* wc = wp + c * wstride;
          const int64_t xo = c * kBf16TileElems;
          // tmm4, tmm5: activations of token tiles tt, tt + 1; tmm6, tmm7: weights of panels
          // pi, pi + 1. w_hi.x_hi, w_hi.x_lo, w_lo.x_hi.
          _tile_loadd(6, wc, 64);
          _tile_loadd(7, wc + 2 * kBf16TileElems, 64);
          _tile_loadd(4, xh0 + xo, 64);
          _tile_loadd(5, xh1 + xo, 64);
          KESTREL_BF16_PRODUCTS_2X2();
          _tile_loadd(4, xl0 + xo, 64);
          _tile_loadd(5, xl1 + xo, 64);
          KESTREL_BF16_PRODUCTS_2X2();
          _tile_loadd(6, wc + kBf16TileElems, 64);
          _tile_loadd(7, wc + 3 * kBf16TileElems, 64);
          _tile_loadd(4, xh0 + xo, 64);
          _tile_loadd(5, xh1 + xo, 64);
          KESTREL_BF16_PRODUCTS_2X2();
        }
        _tile_stored(0, r00, 64);
        _tile_stored(1, r01, 64);
        _tile_stored(2, r10, 64);
        _tile_stored(3, r11, 64);
      }
    }
  }
  _tile_release();
#undef KESTREL_BF16_PRODUCTS_2X2
  // C tile (panel q, token tile u) row r, column t = y[16 u + t][n0 + 16 q + r].
  const __m512i col = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(16));
  for (int64_t q = 0; q * 16 < n1 - n0; ++q) {
    const int64_t p0 = n0 + q * 16;
    const __mmask16 m = FirstLanes(n1 - p0);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* c = cbuf + (q * n_tt + t / 16) * 256 + t % 16;
      _mm512_mask_storeu_ps(y + t * ldy + p0, m, _mm512_i32gather_ps(col, c, 4));
    }
  }
}

}  // namespace

bool AmxUsable() {
  static const bool usable = DetectAmx();
  return usable;
}

bool AmxBf16Usable() {
  static const bool usable = [] {
    unsigned int eax, ebx, ecx, edx;
    return AmxUsable() && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && ((edx >> 22) & 1);
  }();
  return usable;
}

const KernelTable& AmxKernels() {
  static const KernelTable table = [] {
    KernelTable t = MakeAvx512Table(IsaLevel::kAmx);
    t.quantize_act_tile = &QuantizeActTile;
    t.gemm_q_tiles = &GemmQTiles;
    if (AmxBf16Usable()) {
      t.split_act_bf16 = &SplitActBf16;
      t.gemm_f16_tiles = &GemmF16Tiles;
    }
    return t;
  }();
  return table;
}

}  // namespace kestrel::plugins::cpu
