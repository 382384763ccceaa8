// tools/synth/quantize_kquants.h: encoders for the GGUF formats Q4_1, Q5_0, Q5_1 (blocks of 32)
// and the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (super-blocks of 256), byte layouts as GGUF's
// (kestrel_dtype_t in hal/include/kestrel/plugin_api.h documents them).
//
// Kestrel's own quantizers, not llama.cpp's: per (sub-)block round-to-nearest with a small scale
// search (a few candidate scales around the min/max one, the one with the least squared error
// wins), then the K-quants' sub-block scales (and mins) quantized against the super-block's f16
// d (dmin) and the quants recomputed with the stored scales. They need not reproduce llama.cpp's
// bytes; the files they write load in llama.cpp (checked with llama-bench) and in Kestrel.
#ifndef KESTREL_TOOLS_SYNTH_QUANTIZE_KQUANTS_H_
#define KESTREL_TOOLS_SYNTH_QUANTIZE_KQUANTS_H_

#include <cstddef>
#include <cstdint>

#include "runtime/gguf/ggml_type.h"

namespace kestrel::synth {

// True for the types QuantizeExtra encodes.
bool IsExtraQuantType(runtime::GgmlType type);

// Encodes n floats (a multiple of the type's block: 32 or 256) into dst; returns the bytes
// written (n / block * block bytes), 0 for a type IsExtraQuantType rejects.
size_t QuantizeExtra(runtime::GgmlType type, const float* src, size_t n, uint8_t* dst);

}  // namespace kestrel::synth

#endif  // KESTREL_TOOLS_SYNTH_QUANTIZE_KQUANTS_H_
