// runtime/gguf/ggml_type.h: the GGML tensor element types that GGUF files name by number, and the
// block geometry (elements per block, bytes per block) needed to size a tensor without decoding it.
//
// The numeric ids are part of the GGUF file format and never change; ids that ggml retired
// (4, 5, 31..33) are deliberately absent, so a file using them is reported as unimplemented.
#ifndef KESTREL_RUNTIME_GGUF_GGML_TYPE_H_
#define KESTREL_RUNTIME_GGUF_GGML_TYPE_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace kestrel {
namespace runtime {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

struct GgmlTypeTraits {
  GgmlType type;
  const char* name;      // "Q4_0", "F16", ... (static storage)
  uint32_t block_elems;  // elements per block: 1 for plain types, 32 for Q4_0/Q8_0, 256 for K quants
  uint32_t block_bytes;  // bytes per block: F32 4, F16 2, Q4_0 18, Q8_0 34, Q4_K 144, ...
  bool is_quantized;     // true for block formats (block_elems > 1)
};

// Traits of the raw type id read from a file. Unknown or retired ids: UNIMPLEMENTED naming the number.
absl::StatusOr<GgmlTypeTraits> GgmlTypeTraitsOf(uint32_t raw);

// Traits of a known enum value (every enumerator has traits, so this cannot fail for them).
// For a value cast from an unknown number returns traits named "unknown" with a zero block size.
GgmlTypeTraits GgmlTypeTraitsOf(GgmlType type);

// "Q4_0", "F16", ...; "unknown" for a value that is not an enumerator. Static storage.
const char* GgmlTypeName(GgmlType type);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GGUF_GGML_TYPE_H_
