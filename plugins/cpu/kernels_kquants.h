// The CPU plugin's kernels for the GGUF formats Q4_1, Q5_0, Q5_1 and the K-quants Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K ("KQ" formats): one repacked layout for all eight, and per ISA level
// (portable, AVX2, AVX-512, AVX-512 VNNI; the AMX level uses VNNI's) an 8-bit activation
// quantizer and a GEMV/GEMM.
//
// Every weight element is written as value = A[s] * q + B[s] with an unsigned quant q of 2..6
// bits and per-sub-block (16 elements) f32 factors A, B that the kernel derives from a compact
// per-super-block scale record. The dot of a row with an activation x (quantized per 32 elements:
// x ~ dx[b] * qx, b = e / 32) is then, per super-block of 256 elements,
//   sum_s dx[s / 2] * A[s] * (sum_{e in s} q_e qx_e)  +  sum_s B[s] * dx[s / 2] * (sum_{e in s} qx_e),
// and the quants are stored in an order that makes the first integer sum come out per sub-block
// with no shuffles: byte p = 64 r + 4 l + j of a super-block holds element e = 16 l + 4 r + j. A
// 512-bit register r then holds 4 elements of each of the 16 sub-blocks, one sub-block per dword
// lane, and 4 chained u8 x s8 dot instructions (vpdpbusd, or vpmaddubsw + vpmaddwd) over r = 0..3
// leave the 16 per-sub-block sums in the 16 lanes (AVX2: bytes [0, 32) of each register for
// sub-blocks 0..7 and [32, 64) for 8..15).
//
// Packed weight (per row, n_sb = ceil(k / 256) super-blocks; the last one of a Q4_1/Q5_0/Q5_1
// row may be partial, see below), two arrays (quants 64-byte aligned where rows are whole
// super-blocks):
//   quants, q_bytes per super-block, in planes over p:
//     bits >= 4: a nibble plane of 128 bytes: byte i < 64 holds p = i (low nibble) and p = 64 + i
//       (high); byte 64 + i holds p = 128 + i and 192 + i. bits < 4: a 2-bit plane of 64 bytes:
//       byte i holds p = 64 r + i in bits 2r, 2r + 1.
//     then for bits 3 and 5 a 1-bit plane of 32 bytes (bit p % 8 of byte p / 8 is the quant's
//       bit 2 (Q3_K) or bit 4), and for bits 6 a 2-bit plane of 64 bytes laid out like the 2-bit
//       base plane (the quant's bits 4-5).
//   scale records, s_bytes per super-block (f16 = binary16):
//     Q4_K, Q5_K (20): f16 d, f16 dmin, u8 sc[8], u8 m[8]; sub-block pair 2i, 2i+1 (32 elements)
//                      has A = d sc[i], B = -dmin m[i]
//     Q2_K (20):       f16 d, f16 dmin, u8 scm[16] (GGUF's: sc low nibble, m high); A = d sc,
//                      B = -dmin m
//     Q3_K, Q6_K (20): f16 d, 2 zero bytes, int8 sc[16]; A = d sc, B = -4 A (Q3_K, sc = the
//                      6-bit scale - 32) or -32 A (Q6_K)
//     Q4_1, Q5_1 (32): f16 d[8], f16 m[8] of the 8 blocks of 32; A = d, B = m
//     Q5_0 (16):       f16 d[8]; A = d, B = -16 A
//   so a row costs what the GGUF row costs (Q4_K/Q5_K: +4 bytes per 256 elements, Q3_K: +4).
//   A row of Q4_1/Q5_0/Q5_1 whose k is not a multiple of 256 ends in a partial super-block of
//   `tail` (1..7) blocks of 32, whose quants are stored compact (KqTailQBytes): its elements
//   e < 32 tail are the bytes p with p % 64 < 8 tail, i.e. bytes [0, 8 tail) and [64, 64 + 8 tail)
//   of the nibble plane, stored as those two runs back to back, then (bits 5) the full 32-byte
//   1-bit plane. Without it a 576-wide Q4_1 row (SmolLM2) would stream 384 quant bytes for 288
//   of data (480 bytes with its scale records instead of 384). The AVX-512 kernels read a tail
//   by masked loads in a peeled last step; the other levels expand it (KqPlanes). Rows are contiguous, q_row quant bytes apart; the scale records stay n_sb * s_bytes per
//   row (the tail's record zero past its blocks).
// Activations (per token, per super-block): int8 qs[256] in p order (per 32 elements
// dx = amax / 127, q = round-to-nearest-even(x / dx), GGUF Q8_0 style with an f32 scale), then
// 32 floats: dx16[16] (dx of sub-block l's 32-block) and xb16[16] = dx16[l] * sum of sub-block l's q.
//
// Thread-safety: everything here is stateless; kernels compute rows [n0, n1) (callers split rows).
#ifndef KESTREL_PLUGINS_CPU_KERNELS_KQUANTS_H_
#define KESTREL_PLUGINS_CPU_KERNELS_KQUANTS_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kestrel/plugin_api.h"
#include "cpu_features.h"

namespace kestrel::plugins::cpu {

inline constexpr int64_t kSuperElems = 256;
inline constexpr int64_t kActSuperBytes = 256;   // int8 quants per super-block
inline constexpr int64_t kActSuperFloats = 32;   // dx16[16], xb16[16]

// The layout parameters of one KQ format (KqFormatOf); bits == 0 for a dtype that is not one.
struct KqFormat {
  uint32_t dtype = 0;
  int bits = 0;         // 2..6
  int64_t q_bytes = 0;  // quant bytes per super-block
  int64_t s_bytes = 0;  // scale-record bytes per super-block
};
KqFormat KqFormatOf(uint32_t dtype);

// A packed KQ weight [n, k].
struct KWeightView {
  KqFormat fmt;
  int64_t n = 0;
  int64_t k = 0;     // logical row length (multiple of the format's block)
  int64_t n_sb = 0;  // super-blocks per row
  int tail = 0;      // 32-blocks of the last, partial super-block (1..7); 0: every one is whole
  int64_t q_row = 0; // quant bytes per row (KqRowQBytes)
  const uint8_t* qs = nullptr;  // [n][q_row]
  const uint8_t* sc = nullptr;  // [n][n_sb * fmt.s_bytes]
};

// Quant bytes of a compact partial super-block of `tail` 32-blocks (kernels_kquants.h, above).
inline int64_t KqTailQBytes(const KqFormat& f, int tail) {
  return 16 * tail + (f.bits == 5 ? 32 : 0);
}

// The geometry of a KQ matrix [n, k] (n_sb, tail, q_row), pointers unset.
KWeightView KqViewFor(uint32_t dtype, int64_t n, int64_t k);

// Writes the full planes (f.q_bytes, zero past the tail's elements) of a compact tail.
inline void ExpandKqTail(const KqFormat& f, int tail, const uint8_t* src, uint8_t* dst) {
  for (int64_t i = 0; i < f.q_bytes; ++i) dst[i] = 0;
  for (int i = 0; i < 8 * tail; ++i) {
    dst[i] = src[i];
    dst[64 + i] = src[8 * tail + i];
  }
  if (f.bits == 5) {
    for (int i = 0; i < 32; ++i) dst[128 + i] = src[16 * tail + i];
  }
}

// The full quant planes of super-block sb of row j: a pointer into w.qs, or for a compact tail
// its planes expanded into `buf` (f.q_bytes bytes).
inline const uint8_t* KqPlanes(const KWeightView& w, int64_t j, int64_t sb, uint8_t* buf) {
  const uint8_t* p = w.qs + j * w.q_row + sb * w.fmt.q_bytes;
  if (w.tail == 0 || sb + 1 < w.n_sb) return p;
  ExpandKqTail(w.fmt, w.tail, p, buf);
  return buf;
}

// Activations [T, k] quantized for a KWeightView (same n_sb).
struct KActView {
  int64_t n_sb = 0;
  const int8_t* qs = nullptr;  // [T][n_sb * 256]
  const float* ds = nullptr;   // [T][n_sb * 32]
};

struct KQuantKernels {
  IsaLevel level = IsaLevel::kPortable;
  // Quantizes x[0..k) into n_sb super-blocks (zero padding past k).
  void (*quantize_act)(const float* x, int64_t k, int64_t n_sb, int8_t* qs, float* ds) = nullptr;
  // y[t * ldy + j] = row j of w . activation t, for t < n_tokens, n0 <= j < n1.
  void (*gemm)(const KWeightView& w, const KActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
               float* y, int64_t ldy) = nullptr;
};

// The kernels of `level` (kAmx: the VNNI ones; levels not compiled in: portable).
const KQuantKernels& GetKQuantKernels(IsaLevel level);

const KQuantKernels& PortableKQuantKernels();
#if defined(KESTREL_CPU_HAVE_X86_KERNELS)
const KQuantKernels& Avx2KQuantKernels();
const KQuantKernels& Avx512KQuantKernels();
const KQuantKernels& VnniKQuantKernels();
#endif
#if defined(KESTREL_CPU_HAVE_NEON_KERNELS)
const KQuantKernels& NeonKQuantKernels();     // kernels_kquants_neon.cc (aarch64 builds only)
const KQuantKernels& DotprodKQuantKernels();  // kernels_kquants_dotprod.cc
#endif

// A[l], B[l] of the 16 sub-blocks of one super-block from its scale record `rec` (portable).
void ExpandKqScales(const KqFormat& f, const uint8_t* rec, float* A, float* B);

// Rows [n0, n1) dequantized to f32, out[(j - n0) * ldo + i] for i < k: bit-identical with the
// reference plugin's dequantization (kestrel/plugin_sdk/quants.h). Portable (not on a hot path:
// embedding rows and the exact-activation mode).
void DequantKRows(const KWeightView& w, int64_t n0, int64_t n1, float* out, int64_t ldo);

// Position in a super-block's quant order of element e (< 256): p = 64 r + 4 l + j.
inline int KqPos(int e) { return 64 * ((e % 16) / 4) + 4 * (e / 16) + (e % 4); }

// The quant at position p of a super-block's planes (scalar; the SIMD kernels unpack 64 at once).
inline int KqQuantAt(const KqFormat& f, const uint8_t* planes, int p) {
  int q;
  if (f.bits >= 4) {
    q = (planes[(p / 128) * 64 + p % 64] >> (4 * ((p / 64) % 2))) & 15;
  } else {
    q = (planes[p % 64] >> (2 * (p / 64))) & 3;
  }
  const uint8_t* hi = planes + (f.bits >= 4 ? 128 : 64);
  if (f.bits == 3 || f.bits == 5) {
    q |= ((hi[p / 8] >> (p % 8)) & 1) << (f.bits - 1);
  } else if (f.bits == 6) {
    q |= ((hi[p % 64] >> (2 * (p / 64))) & 3) << 4;
  }
  return q;
}

// KqFormatOf as compile-time constants, for the SIMD kernels' per-format templates.
template <uint32_t kDt>
struct KqTraits;
#define KESTREL_KQ_TRAITS(DT, BITS, QB, SB) \
  template <>                                \
  struct KqTraits<DT> {                      \
    static constexpr int kBits = BITS;       \
    static constexpr int64_t kQBytes = QB;   \
    static constexpr int64_t kSBytes = SB;   \
  };
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q4_1, 4, 128, 32)
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q5_0, 5, 160, 16)
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q5_1, 5, 160, 32)
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q2_K, 2, 64, 20)
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q3_K, 3, 96, 20)
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q4_K, 4, 128, 20)
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q5_K, 5, 160, 20)
KESTREL_KQ_TRAITS(KESTREL_DTYPE_Q6_K, 6, 192, 20)
#undef KESTREL_KQ_TRAITS

// Calls f(std::integral_constant<uint32_t, dtype>{}) for a KQ dtype (nothing for another one):
// the one switch from a run-time dtype to the kernels' per-format templates.
template <typename F>
void DispatchKq(uint32_t dtype, F&& f) {
  switch (dtype) {
    case KESTREL_DTYPE_Q4_1: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q4_1>{});
    case KESTREL_DTYPE_Q5_0: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q5_0>{});
    case KESTREL_DTYPE_Q5_1: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q5_1>{});
    case KESTREL_DTYPE_Q2_K: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q2_K>{});
    case KESTREL_DTYPE_Q3_K: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q3_K>{});
    case KESTREL_DTYPE_Q4_K: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q4_K>{});
    case KESTREL_DTYPE_Q5_K: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q5_K>{});
    case KESTREL_DTYPE_Q6_K: return f(std::integral_constant<uint32_t, KESTREL_DTYPE_Q6_K>{});
    default: return;
  }
}

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_KERNELS_KQUANTS_H_
