// The CPU plugin's compute kernels: data layouts shared by every ISA level and one table of
// function pointers per level (portable, AVX2, AVX-512, AVX-512 VNNI, VNNI + AMX-INT8 tiles).
//
// Layouts (see docs/perf/cpu-kernels.md):
//  * Quantized weights (Q4_0, Q8_0) are repacked once at load ("packed weights"): each row is a
//    run of *groups* of 4 GGUF blocks (128 elements), padded with zero blocks to a whole group.
//    The quants of a row ([n_groups] x group bytes) and its f16 scales ([n_groups * 4]) live in
//    two separate arrays, so the quants of every row start 64-byte aligned.
//      Q4_0 group (64 bytes): the 4 blocks' 16 nibble bytes in order. Byte i of block b holds
//        elements i (low nibble) and i + 16 (high nibble), stored unsigned (value + 8).
//      Q8_0 group (128 bytes): elements 0..15 of blocks 0..3 (64 bytes), then elements 16..31 of
//        blocks 0..3, stored unsigned (value + 128).
//    So the low nibbles of a Q4_0 group and the first half of a Q8_0 group hold the same elements,
//    and a 512-bit register of either has one block per 128-bit lane.
//  * Quantized activations (the default path for Q4_0/Q8_0 weights): each row of x is quantized
//    to 8 bits per 32-block, GGUF Q8_0 style but with an f32 scale (d = amax / 127, q = round(x/d)),
//    in the Q8_0 group order above (signed). Per group we also keep a bias vector of 16 int32
//    (dword 4b = -offset * sum(q of block b), others 0) so that a u8 x s8 dot of the unsigned
//    weights needs no correction, and the 4 block scales.
// Every kernel computes rows [n0, n1) of y for all tokens; the caller splits rows across threads.
#ifndef KESTREL_PLUGINS_CPU_KERNELS_H_
#define KESTREL_PLUGINS_CPU_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cpu_features.h"

namespace kestrel::plugins::cpu {

inline constexpr int64_t kBlock = 32;        // elements per GGUF block
inline constexpr int64_t kGroupBlocks = 4;   // blocks per group
inline constexpr int64_t kGroupElems = 128;  // elements per group
inline constexpr int64_t kActGroupBytes = 128;

inline int64_t GroupsFor(int64_t k) { return (k + kGroupElems - 1) / kGroupElems; }

// A packed Q4_0 / Q8_0 weight [n, k].
struct QWeightView {
  uint32_t dtype = 0;      // KESTREL_DTYPE_Q4_0 or KESTREL_DTYPE_Q8_0
  int64_t n = 0;           // rows
  int64_t k = 0;           // logical row length (multiple of 32)
  int64_t n_groups = 0;    // GroupsFor(k)
  int64_t group_bytes = 0; // 64 (Q4_0) or 128 (Q8_0)
  int32_t offset = 0;      // 8 (Q4_0) or 128 (Q8_0): stored = value + offset
  const uint8_t* qs = nullptr;  // [n][n_groups * group_bytes]
  const uint16_t* d = nullptr;  // [n][n_groups * 4] f16 scales (0 for padding blocks)
};

// Activations [T, k] quantized for a QWeightView (same n_groups).
struct QActView {
  int64_t n_groups = 0;
  const int8_t* qs = nullptr;    // [T][n_groups * 128]
  const int32_t* bias = nullptr; // [T][n_groups * 16]
  const float* d = nullptr;      // [T][n_groups * 4]
};

struct KernelTable {
  IsaLevel level = IsaLevel::kPortable;

  // Quantizes one row x[0..k) into a group layout of n_groups groups (zero padding), with the
  // bias for weights stored with `offset`. qs: n_groups*128, bias: n_groups*16, d: n_groups*4.
  void (*quantize_row_act)(const float* x, int64_t k, int64_t n_groups, int32_t offset,
                           int8_t* qs, int32_t* bias, float* d) = nullptr;

  // y[t * ldy + j] = sum_k dequant(w[j]) * xq[t] for t < n_tokens, n0 <= j < n1.
  void (*gemm_q)(const QWeightView& w, const QActView& a, int64_t n_tokens, int64_t n0, int64_t n1,
                 float* y, int64_t ldy) = nullptr;

  // y[t * ldy + j] = sum_i w[j * ldw + i] * x[t * ldx + i] (i < k) for t < n_tokens, n0 <= j < n1,
  // f32 products accumulated in f32 (FMA where the ISA has it). w is F32 or F16 (binary16 bits).
  void (*gemm_f32)(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t k,
                   int64_t n_tokens, int64_t n0, int64_t n1, float* y, int64_t ldy) = nullptr;
  void (*gemm_f16)(const uint16_t* w, int64_t ldw, const float* x, int64_t ldx, int64_t k,
                   int64_t n_tokens, int64_t n0, int64_t n1, float* y, int64_t ldy) = nullptr;

  // Rows [n0, n1) of a packed weight dequantized to f32: out[(j - n0) * ldo + i], i < k.
  void (*dequant_q_rows)(const QWeightView& w, int64_t n0, int64_t n1, float* out,
                         int64_t ldo) = nullptr;

  // Dot product of two f32 vectors (f32 accumulation) and out[i] += a * x[i]; used by attention.
  float (*dot_f32)(const float* a, const float* b, int64_t n) = nullptr;
  void (*axpy_f32)(float a, const float* x, float* out, int64_t n) = nullptr;
  // out[i] = f32(h[i]) for binary16 h.
  void (*f16_to_f32)(const uint16_t* h, float* out, int64_t n) = nullptr;

  // Optional (NULL where the level has none; attention then uses dot_f32 / axpy_f32): one step
  // of online-softmax attention for one query vector q over n >= 1 KV positions (k_o, v_o at
  // k + o * kstride, v + o * vstride; dh elements each): s_o = q.k_o * scale,
  // m' = max(*m, max s_o), c = exp(*m - m') (1 while *l == 0), *l = *l * c + sum exp(s_o - m'),
  // acc = acc * c + sum exp(s_o - m') v_o, *m = m'. scores: scratch of n floats.
  void (*attend_block)(const float* q, const float* k, int64_t kstride, const float* v,
                       int64_t vstride, int64_t n, int64_t dh, float scale, float* m, float* l,
                       float* acc, float* scores) = nullptr;

  // Optional tile GEMM for Q4_0/Q8_0 weights with many tokens (level kAmx only, else NULL).
  // Activations in "tile" layout: per tile of 16 tokens and 32-block b, 512 bytes
  // qs[b][kk][t][i] = q(x[t][32 b + 4 kk + i]) (8-bit, quantized exactly as quantize_row_act)
  // and 16 f32 scales d[b][t]; tokens past n_tokens are zero. quantize_act_tile fills tile
  // `tile` at qs + tile * kActTileBytesPerBlock * (k / 32), d + tile * 16 * (k / 32) (callers
  // pass those pointers); gemm_q_tiles reads all ceil(n_tokens / 16) tiles.
  void (*quantize_act_tile)(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, int64_t tile,
                            int8_t* qs, float* d) = nullptr;
  void (*gemm_q_tiles)(const QWeightView& w, const int8_t* act_qs, const float* act_d,
                       int64_t n_tokens, int64_t n0, int64_t n1, float* y, int64_t ldy) = nullptr;

  // Optional GEMM for F16 weights with many tokens on AMX-BF16 tiles (level kAmx on a CPU with
  // AMX-BF16, else NULL). Every value is split into two bf16 halves, v = hi + lo (hi = v rounded
  // to bf16, lo = the rest rounded to bf16): exact for a binary16 weight, ~2^-17 relative for an
  // f32 activation; y = x_hi.w_hi + x_hi.w_lo + x_lo.w_hi with f32 accumulation, so the result
  // is within a few 1e-6 (relative norm error) of the f32 GEMM. Activations in "bf16 tile" layout:
  // per tile of 16 tokens and 32-k chunk c (C = ceil(k / 32) chunks), 512 bf16 at
  // (tile * C + c) * 512, pair-interleaved: elements 2j, 2j + 1 of token t at 32 j + 2 t, +1;
  // RoundUp(n_tokens, 32) tokens (tokens >= n_tokens and k past k zero). split_act_bf16 writes
  // token `row` of that layout into hi and lo (whole buffers); gemm_f16_tiles computes rows
  // [n0, n1) of y = x . w^T for binary16 w [n][ldw].
  void (*split_act_bf16)(const float* x, int64_t ldx, int64_t n_tokens, int64_t k, int64_t row,
                         uint16_t* hi, uint16_t* lo) = nullptr;
  void (*gemm_f16_tiles)(const uint16_t* w, int64_t ldw, int64_t k, const uint16_t* act_hi,
                         const uint16_t* act_lo, int64_t n_tokens, int64_t n0, int64_t n1,
                         float* y, int64_t ldy) = nullptr;
};

inline constexpr int64_t kActTileTokens = 16;
inline constexpr int64_t kActTileBytesPerBlock = 512;

// The table for `level`; a level that was not compiled in (non-x86 builds) yields the portable one.
const KernelTable& GetKernels(IsaLevel level);

// Per-ISA tables (defined in kernels_<isa>.cc; only the x86 ones exist on x86 builds).
const KernelTable& PortableKernels();
#if defined(KESTREL_CPU_HAVE_X86_KERNELS)
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();
const KernelTable& VnniKernels();
#endif
#if defined(KESTREL_CPU_HAVE_NEON_KERNELS)
const KernelTable& NeonKernels();     // kernels_neon.cc (aarch64 builds only)
const KernelTable& DotprodKernels();  // kernels_dotprod.cc
#endif
#if defined(KESTREL_CPU_HAVE_AMX)
const KernelTable& AmxKernels();  // defined in kernels_amx.cc
// True when the CPU has AMX-INT8 and the OS granted this process the tile state (asked once).
bool AmxUsable();
// AmxUsable() and the CPU also has AMX-BF16 (CPUID leaf 7 EDX bit 22).
bool AmxBf16Usable();
#endif

// Small-batch / prefill GEMM tiling shared by the Q4_0/Q8_0 and KQ AVX-512 kernels: the tokens
// of a row tile in chunks of 3 (the widest tile whose accumulators fit the registers beside 4
// unpacked rows), never a 1-token chunk when n_tokens >= 2 (4 = 2 + 2, 7 = 3 + 2 + 2). Calls
// f(t, std::integral_constant<int, C>{}, std::bool_constant<first>{}) per chunk [t, t + C):
// `first` marks the chunk that streams the rows from memory (later chunks find them in L1).
template <typename F>
inline void ForEachTokenChunk(int64_t n_tokens, F&& f) {
  bool first = true;
  for (int64_t t = 0; t < n_tokens; first = false) {
    const int64_t left = n_tokens - t;
    const int64_t c = left == 4 ? 2 : (left < 3 ? left : 3);
    switch (c * 2 + (first ? 1 : 0)) {
      case 7: f(t, std::integral_constant<int, 3>{}, std::true_type{}); break;
      case 6: f(t, std::integral_constant<int, 3>{}, std::false_type{}); break;
      case 5: f(t, std::integral_constant<int, 2>{}, std::true_type{}); break;
      case 4: f(t, std::integral_constant<int, 2>{}, std::false_type{}); break;
      case 3: f(t, std::integral_constant<int, 1>{}, std::true_type{}); break;
      default: f(t, std::integral_constant<int, 1>{}, std::false_type{}); break;
    }
    t += c;
  }
}

}  // namespace kestrel::plugins::cpu

#endif  // KESTREL_PLUGINS_CPU_KERNELS_H_
