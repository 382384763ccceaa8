// tools/synth/quantize.h: the GGUF Q8_0 and Q4_0 block encoders (llama.cpp's reference
// quantize_row_q8_0_ref / quantize_row_q4_0_ref, bit for bit) and their decoders.
//
//   Q8_0 block (34 bytes, 32 elements): f16 d = max|x| / 127, then 32 x int8 q = roundf(x / d)
//        (x * (1/d), rounded half away from zero). x ~= q * d.
//   Q4_0 block (18 bytes, 32 elements): f16 d = m / -8 where m is the element of largest
//        magnitude (its sign kept), then 16 bytes of nibbles q = min(15, trunc(x / d + 8.5)):
//        element j in the low nibble of byte j, element j + 16 in the high nibble. x ~= (q - 8) * d.
// d is computed in float and only stored as f16; the scaling uses the float value, as llama.cpp
// does. An all-zero block stores d = 0 and decodes to zeros.
#ifndef KESTREL_TOOLS_SYNTH_QUANTIZE_H_
#define KESTREL_TOOLS_SYNTH_QUANTIZE_H_

#include <cstddef>
#include <cstdint>

namespace kestrel::synth {

inline constexpr size_t kQuantBlockElems = 32;
inline constexpr size_t kQ8_0BlockBytes = 34;
inline constexpr size_t kQ4_0BlockBytes = 18;

// n must be a multiple of 32; dst receives n / 32 blocks.
void QuantizeQ8_0(const float* src, size_t n, uint8_t* dst);
void QuantizeQ4_0(const float* src, size_t n, uint8_t* dst);

// Decoders (n a multiple of 32): out[0..n).
void DequantizeQ8_0(const uint8_t* src, size_t n, float* out);
void DequantizeQ4_0(const uint8_t* src, size_t n, float* out);

}  // namespace kestrel::synth

#endif  // KESTREL_TOOLS_SYNTH_QUANTIZE_H_
