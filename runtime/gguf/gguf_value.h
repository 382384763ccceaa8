// runtime/gguf/gguf_value.h: one GGUF metadata value (a tagged scalar, string or array), as read
// from a file by GgufFile or built for GgufWriter.
//
// Storage is chosen for load speed: numeric and bool arrays keep the file's little-endian bytes in
// one vector (a 32000-entry score array is one memcpy), string arrays are a vector of std::string,
// and only arrays of arrays hold nested GgufValues. Accessors never abort: asking a value for the
// wrong type yields nullptr / absl::nullopt.
//
// Thread-safety: a const GgufValue may be read from any number of threads.
#ifndef KESTREL_RUNTIME_GGUF_GGUF_VALUE_H_
#define KESTREL_RUNTIME_GGUF_GGUF_VALUE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/types/optional.h"
#include "absl/types/span.h"

namespace kestrel {
namespace runtime {

// GGUF metadata value type ids, exactly as stored in the file.
enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

// True for the 13 ids above.
bool IsValidGgufValueType(uint32_t raw);
// "UINT32", "STRING", ...; "unknown" otherwise. Static storage.
const char* GgufValueTypeName(GgufValueType type);
// Bytes of one element of a fixed-size type (1, 2, 4 or 8); 0 for STRING, ARRAY and unknown ids.
size_t GgufScalarSize(GgufValueType type);

class GgufValue {
 public:
  GgufValue() = default;  // UINT8 zero

  // Scalars.
  static GgufValue U8(uint8_t v);
  static GgufValue I8(int8_t v);
  static GgufValue U16(uint16_t v);
  static GgufValue I16(int16_t v);
  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue F32(float v);
  static GgufValue Bool(bool v);
  static GgufValue U64(uint64_t v);
  static GgufValue I64(int64_t v);
  static GgufValue F64(double v);
  static GgufValue String(std::string v);

  // Arrays. `raw_le` holds count * GgufScalarSize(elem) little-endian bytes; elem must be a fixed-size
  // type (a mismatched size or a STRING/ARRAY elem yields an empty UINT8 array).
  static GgufValue NumericArray(GgufValueType elem, std::vector<uint8_t> raw_le);
  static GgufValue StringArray(std::vector<std::string> v);
  // Every element must itself be an ARRAY (GGUF arrays are homogeneous).
  static GgufValue ArrayOfArrays(std::vector<GgufValue> v);
  static GgufValue U8Array(absl::Span<const uint8_t> v);
  static GgufValue I32Array(absl::Span<const int32_t> v);
  static GgufValue U32Array(absl::Span<const uint32_t> v);
  static GgufValue I64Array(absl::Span<const int64_t> v);
  static GgufValue F32Array(absl::Span<const float> v);
  static GgufValue F64Array(absl::Span<const double> v);
  static GgufValue BoolArray(absl::Span<const bool> v);

  GgufValueType type() const { return type_; }
  bool is_array() const { return type_ == GgufValueType::ARRAY; }

  // Scalar views. Integers: ToU64 succeeds for any integer type holding a value >= 0; ToI64 for any
  // integer value <= INT64_MAX. ToF64 accepts FLOAT32 and FLOAT64 only; ToBool BOOL only.
  absl::optional<uint64_t> ToU64() const;
  absl::optional<int64_t> ToI64() const;
  absl::optional<double> ToF64() const;
  absl::optional<bool> ToBool() const;
  // nullptr unless type() == STRING.
  const std::string* AsString() const;

  // Arrays (all return empty / nullptr / nullopt for non-arrays).
  GgufValueType array_type() const { return array_type_; }
  uint64_t array_size() const;
  const std::vector<std::string>* AsStringArray() const;  // array of STRING
  const std::vector<GgufValue>* AsArrayOfArrays() const;  // array of ARRAY
  absl::Span<const uint8_t> array_raw() const;            // array of a fixed-size type
  // Element i of a fixed-size array, with the same conversion rules as the scalar views.
  absl::optional<uint64_t> ArrayU64At(size_t i) const;
  absl::optional<int64_t> ArrayI64At(size_t i) const;
  absl::optional<double> ArrayF64At(size_t i) const;

  // Short human-readable form for logs and error messages ("UINT32 5", "ARRAY<STRING>[512]").
  std::string DebugString() const;

 private:
  friend class GgufValueBuilder;  // the parser fills values in place

  // For scalars: unsigned ints and bool zero-extended; signed ints sign-extended to 64 bits;
  // FLOAT32 as its 32 bits; FLOAT64 as its 64 bits.
  GgufValueType type_ = GgufValueType::UINT8;
  GgufValueType array_type_ = GgufValueType::UINT8;
  uint64_t bits_ = 0;
  std::variant<std::monostate, std::string, std::vector<uint8_t>, std::vector<std::string>,
               std::vector<GgufValue>>
      payload_;

  absl::optional<uint64_t> ScalarToU64(GgufValueType t, uint64_t bits) const;
  static uint64_t LoadScalarBits(GgufValueType t, const uint8_t* p);
};

// Internal: lets the parser and the writer reach the storage without widening the public API.
class GgufValueBuilder {
 public:
  static void SetScalar(GgufValue* v, GgufValueType t, const uint8_t* le_bytes);
  static void SetString(GgufValue* v, std::string s);
  static std::string* MutableString(GgufValue* v);
  static std::vector<uint8_t>* MutableRawArray(GgufValue* v, GgufValueType elem);
  static std::vector<std::string>* MutableStringArray(GgufValue* v);
  static std::vector<GgufValue>* MutableArrayOfArrays(GgufValue* v);
  static uint64_t ScalarBits(const GgufValue& v) { return v.bits_; }
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GGUF_GGUF_VALUE_H_
