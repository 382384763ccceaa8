// The GGUF weight formats beyond Q8_0/Q4_0: Q4_1, Q5_0, Q5_1 (blocks of 32) and the K-quants
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (super-blocks of 256). Layouts are documented at kestrel_dtype_t
// (plugin_api.h).
//
// This file owns their sizes and their dequantization, which is the numerical definition every
// plugin is tested against: it is bit-exact with the gguf Python package's NumPy reference
// (gguf.quants.dequantize), i.e. the same f32 operations in the same order (no fused
// multiply-add: the file is compiled with -ffp-contract=off). A ctest checks this against gguf-py
// on random blocks (quants_gguf_test). It also unpacks the formats into plain integers
// (UnpackBlock) so that other plugins can repack them without re-deriving the bit layouts.
// Thread-safe (no state).
#ifndef KESTREL_PLUGIN_SDK_QUANTS_H_
#define KESTREL_PLUGIN_SDK_QUANTS_H_

#include <cstddef>
#include <cstdint>
#include <random>

namespace kestrel::plugin_sdk {

inline constexpr int64_t kSuperBlock = 256;  // QK_K

// True for Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool IsExtraQuant(uint32_t dtype);
// True for the K-quants (super-blocks of 256).
bool IsKQuant(uint32_t dtype);
// Elements / bytes per block of an extra quant (0 for any other dtype).
int64_t ExtraQuantBlockElements(uint32_t dtype);
size_t ExtraQuantBlockBytes(uint32_t dtype);
// "Q4_1", ...; nullptr for any other dtype.
const char* ExtraQuantName(uint32_t dtype);

// Dequantizes n elements (a multiple of the block) of an extra quant at `src` into out.
void DequantizeExtraRow(uint32_t dtype, const void* src, int64_t n, float* out);

// One block decoded into integers, so that value[e] = a[s] * q[e] + b[s] for e in sub-block
// s = e / sub (up to f32 rounding; DequantizeExtraRow is the exact definition). q is unsigned
// (0 .. 2^bits - 1). The scales are given as the format's integer fields times f32 factors:
//   a[s] = d * sc[s],  b[s] = -dmin * m[s]         (K-quants; d, dmin are block-wide)
//   a[s] = d[s],       b[s] = m[s]                 (Q4_1, Q5_1: per-block f16 values; Q5_0:
//                                                   m = -16 d)
struct UnpackedBlock {
  int bits = 0;            // 2..6
  int sub = 0;             // elements per sub-block: 16 or 32
  uint8_t q[kSuperBlock];  // only the first ExtraQuantBlockElements(dtype) are set
  // K-quants: integer scales and mins per sub-block (Q3_K, Q6_K: signed scales; their offset is
  // folded into m: Q3_K m = 4 * sc with dmin = d; Q6_K m = sc with dmin = 32 d).
  int32_t sc[16];
  int32_t m[16];
  float d = 0.0f;
  float dmin = 0.0f;
  // Blocks of 32: the block's f32 scale and offset (one sub-block).
  float a32 = 0.0f;
  float b32 = 0.0f;
};
void UnpackBlock(uint32_t dtype, const uint8_t* block, UnpackedBlock* out);

// The values of one unpacked block (ExtraQuantBlockElements(dtype) floats), computed exactly as
// DequantizeExtraRow does (bit-identical), for plugins that keep the integers in their own layout.
// Only the fields UnpackBlock sets for `dtype` are read (K-quants: Q3_K / Q6_K read sc and d).
void DequantizeUnpacked(uint32_t dtype, const UnpackedBlock& u, float* out);

// Fills `n_blocks` blocks of `dtype` with random bytes whose f16 scales are finite and, when
// `moderate` is set, drawn so that values stay in about [-2, 2] (weights for op tests); otherwise
// any finite f16 (subnormals included), for bit-exactness tests. `dst` holds n_blocks * bytes.
void RandomExtraBlocks(uint32_t dtype, int64_t n_blocks, bool moderate, std::mt19937_64& rng,
                       uint8_t* dst);

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_QUANTS_H_
