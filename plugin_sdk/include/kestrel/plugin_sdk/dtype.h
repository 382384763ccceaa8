// Dtype and quant-block helpers: names, element and block sizes, row bytes, and the GGUF block
// formats' dequantization (every weight dtype; the formats past Q8_0/Q4_0 are defined in quants.h)
// and reference quantization (Q8_0, Q4_0), for any plugin that reads or writes those layouts. Portable C++17 on host pointers, no state, thread-safe.
#ifndef KESTREL_PLUGIN_SDK_DTYPE_H_
#define KESTREL_PLUGIN_SDK_DTYPE_H_

#include <cstddef>
#include <cstdint>

#include "kestrel/plugin_api.h"

namespace kestrel::plugin_sdk {

// GGUF block formats: 32 elements per block.
inline constexpr int64_t kQuantBlock = 32;
inline constexpr size_t kQ8_0BlockBytes = 34;  // f16 scale + 32 x int8
inline constexpr size_t kQ4_0BlockBytes = 18;  // f16 scale + 16 bytes of nibbles

// True for dtypes a row can be dequantized from: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool IsWeightDtype(uint32_t dtype);
// True for the GGUF block formats (Q8_0, Q4_0 and those of quants.h).
bool IsBlockQuantized(uint32_t dtype);
// Elements per block: 32 or 256 (K-quants) for block-quantized dtypes, 1 otherwise (0 for an
// unknown dtype).
int64_t DtypeBlockElements(uint32_t dtype);
// Bytes per block (per element for plain dtypes); 0 for an unknown dtype.
size_t DtypeBlockBytes(uint32_t dtype);
// Human-readable name ("F32", "Q4_0", ...; "dtype(<n>)" for unknown values).
const char* DtypeName(uint32_t dtype);
// Bytes of `n` consecutive elements (n must be a multiple of the block size for quantized dtypes).
uint64_t RowBytes(uint32_t dtype, int64_t n);

// Dequantizes `n` elements of a row starting at `src` (a row or block boundary) into out[0..n).
// Precondition: IsWeightDtype(dtype) and n % DtypeBlockElements(dtype) == 0.
void DequantizeRow(uint32_t dtype, const void* src, int64_t n, float* out);

// llama.cpp's reference quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref), used by tests
// and conformance suites to make quantized weights. n % 32 == 0; `dst` holds RowBytes(dtype, n).
void QuantizeRowQ8_0(const float* src, int64_t n, void* dst);
void QuantizeRowQ4_0(const float* src, int64_t n, void* dst);

}  // namespace kestrel::plugin_sdk

#endif  // KESTREL_PLUGIN_SDK_DTYPE_H_
