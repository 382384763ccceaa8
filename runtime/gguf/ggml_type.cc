#include "runtime/gguf/ggml_type.h"

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {
namespace {

// Block sizes follow ggml's type_traits table (ggml/src/ggml.c); bytes are sizeof(block_*).
constexpr GgmlTypeTraits kTraits[] = {
    {GgmlType::F32, "F32", 1, 4, false},
    {GgmlType::F16, "F16", 1, 2, false},
    {GgmlType::Q4_0, "Q4_0", 32, 18, true},     // f16 d + 16 bytes of nibbles
    {GgmlType::Q4_1, "Q4_1", 32, 20, true},     // f16 d, m + 16
    {GgmlType::Q5_0, "Q5_0", 32, 22, true},     // f16 d + 4 qh + 16
    {GgmlType::Q5_1, "Q5_1", 32, 24, true},     // f16 d, m + 4 qh + 16
    {GgmlType::Q8_0, "Q8_0", 32, 34, true},     // f16 d + 32 int8
    {GgmlType::Q8_1, "Q8_1", 32, 36, true},     // f16 d, s + 32 int8
    {GgmlType::Q2_K, "Q2_K", 256, 84, true},    // 16 scales + 64 qs + f16 d, dmin
    {GgmlType::Q3_K, "Q3_K", 256, 110, true},   // 32 hmask + 64 qs + 12 scales + f16 d
    {GgmlType::Q4_K, "Q4_K", 256, 144, true},   // f16 d, dmin + 12 scales + 128 qs
    {GgmlType::Q5_K, "Q5_K", 256, 176, true},   // f16 d, dmin + 12 scales + 32 qh + 128 qs
    {GgmlType::Q6_K, "Q6_K", 256, 210, true},   // 128 ql + 64 qh + 16 scales + f16 d
    {GgmlType::Q8_K, "Q8_K", 256, 292, true},   // f32 d + 256 qs + 16 int16 bsums
    {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66, true},
    {GgmlType::IQ2_XS, "IQ2_XS", 256, 74, true},
    {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98, true},
    {GgmlType::IQ1_S, "IQ1_S", 256, 50, true},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, true},
    {GgmlType::IQ3_S, "IQ3_S", 256, 110, true},
    {GgmlType::IQ2_S, "IQ2_S", 256, 82, true},
    {GgmlType::IQ4_XS, "IQ4_XS", 256, 136, true},
    {GgmlType::I8, "I8", 1, 1, false},
    {GgmlType::I16, "I16", 1, 2, false},
    {GgmlType::I32, "I32", 1, 4, false},
    {GgmlType::I64, "I64", 1, 8, false},
    {GgmlType::F64, "F64", 1, 8, false},
    {GgmlType::IQ1_M, "IQ1_M", 256, 56, true},
    {GgmlType::BF16, "BF16", 1, 2, false},
    {GgmlType::TQ1_0, "TQ1_0", 256, 54, true},
    {GgmlType::TQ2_0, "TQ2_0", 256, 66, true},
};

const GgmlTypeTraits* Lookup(uint32_t raw) {
  for (const GgmlTypeTraits& t : kTraits) {
    if (static_cast<uint32_t>(t.type) == raw) return &t;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<GgmlTypeTraits> GgmlTypeTraitsOf(uint32_t raw) {
  const GgmlTypeTraits* t = Lookup(raw);
  if (t == nullptr) {
    return absl::UnimplementedError(absl::StrFormat("unsupported ggml tensor type %u", raw));
  }
  return *t;
}

GgmlTypeTraits GgmlTypeTraitsOf(GgmlType type) {
  const GgmlTypeTraits* t = Lookup(static_cast<uint32_t>(type));
  if (t == nullptr) return GgmlTypeTraits{type, "unknown", 0, 0, false};
  return *t;
}

const char* GgmlTypeName(GgmlType type) {
  const GgmlTypeTraits* t = Lookup(static_cast<uint32_t>(type));
  return t == nullptr ? "unknown" : t->name;
}

}  // namespace runtime
}  // namespace kestrel
