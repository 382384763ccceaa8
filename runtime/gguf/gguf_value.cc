#include "runtime/gguf/gguf_value.h"

#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {
namespace {

uint64_t LoadLe(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

void StoreLe(uint64_t v, size_t n, uint8_t* p) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

bool IsUnsignedInt(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64;
}

bool IsSignedInt(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}

GgufValue MakeScalar(GgufValueType t, uint64_t v) {
  uint8_t le[8];
  StoreLe(v, 8, le);
  GgufValue out;
  GgufValueBuilder::SetScalar(&out, t, le);
  return out;
}

template <typename T>
GgufValue MakeArray(GgufValueType elem, absl::Span<const T> v, uint64_t (*to_bits)(T)) {
  const size_t sz = GgufScalarSize(elem);
  std::vector<uint8_t> raw(v.size() * sz);
  for (size_t i = 0; i < v.size(); ++i) StoreLe(to_bits(v[i]), sz, raw.data() + i * sz);
  return GgufValue::NumericArray(elem, std::move(raw));
}

uint64_t F32Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
uint64_t F64Bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

}  // namespace

bool IsValidGgufValueType(uint32_t raw) { return raw <= 12; }

const char* GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: return "UINT8";
    case GgufValueType::INT8: return "INT8";
    case GgufValueType::UINT16: return "UINT16";
    case GgufValueType::INT16: return "INT16";
    case GgufValueType::UINT32: return "UINT32";
    case GgufValueType::INT32: return "INT32";
    case GgufValueType::FLOAT32: return "FLOAT32";
    case GgufValueType::BOOL: return "BOOL";
    case GgufValueType::STRING: return "STRING";
    case GgufValueType::ARRAY: return "ARRAY";
    case GgufValueType::UINT64: return "UINT64";
    case GgufValueType::INT64: return "INT64";
    case GgufValueType::FLOAT64: return "FLOAT64";
  }
  return "unknown";
}

size_t GgufScalarSize(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY: return 0;
  }
  return 0;
}

// ---- builder ---------------------------------------------------------------------------------

uint64_t GgufValue::LoadScalarBits(GgufValueType t, const uint8_t* p) {
  const size_t n = GgufScalarSize(t);
  uint64_t v = LoadLe(p, n);
  if (IsSignedInt(t) && n < 8) {
    const uint64_t sign = uint64_t{1} << (8 * n - 1);
    v = (v ^ sign) - sign;  // sign-extend
  }
  if (t == GgufValueType::BOOL) v = (v != 0) ? 1 : 0;
  return v;
}

void GgufValueBuilder::SetScalar(GgufValue* v, GgufValueType t, const uint8_t* le_bytes) {
  v->type_ = t;
  v->bits_ = GgufValue::LoadScalarBits(t, le_bytes);
  v->payload_ = std::monostate();
}

void GgufValueBuilder::SetString(GgufValue* v, std::string s) {
  v->type_ = GgufValueType::STRING;
  v->bits_ = 0;
  v->payload_ = std::move(s);
}

std::string* GgufValueBuilder::MutableString(GgufValue* v) {
  v->type_ = GgufValueType::STRING;
  v->bits_ = 0;
  return &v->payload_.emplace<std::string>();
}

std::vector<uint8_t>* GgufValueBuilder::MutableRawArray(GgufValue* v, GgufValueType elem) {
  v->type_ = GgufValueType::ARRAY;
  v->array_type_ = elem;
  v->bits_ = 0;
  return &v->payload_.emplace<std::vector<uint8_t>>();
}

std::vector<std::string>* GgufValueBuilder::MutableStringArray(GgufValue* v) {
  v->type_ = GgufValueType::ARRAY;
  v->array_type_ = GgufValueType::STRING;
  v->bits_ = 0;
  return &v->payload_.emplace<std::vector<std::string>>();
}

std::vector<GgufValue>* GgufValueBuilder::MutableArrayOfArrays(GgufValue* v) {
  v->type_ = GgufValueType::ARRAY;
  v->array_type_ = GgufValueType::ARRAY;
  v->bits_ = 0;
  return &v->payload_.emplace<std::vector<GgufValue>>();
}

// ---- factories -------------------------------------------------------------------------------

GgufValue GgufValue::U8(uint8_t v) { return MakeScalar(GgufValueType::UINT8, v); }
GgufValue GgufValue::I8(int8_t v) {
  return MakeScalar(GgufValueType::INT8, static_cast<uint64_t>(static_cast<int64_t>(v)));
}
GgufValue GgufValue::U16(uint16_t v) { return MakeScalar(GgufValueType::UINT16, v); }
GgufValue GgufValue::I16(int16_t v) {
  return MakeScalar(GgufValueType::INT16, static_cast<uint64_t>(static_cast<int64_t>(v)));
}
GgufValue GgufValue::U32(uint32_t v) { return MakeScalar(GgufValueType::UINT32, v); }
GgufValue GgufValue::I32(int32_t v) {
  return MakeScalar(GgufValueType::INT32, static_cast<uint64_t>(static_cast<int64_t>(v)));
}
GgufValue GgufValue::F32(float v) { return MakeScalar(GgufValueType::FLOAT32, F32Bits(v)); }
GgufValue GgufValue::Bool(bool v) { return MakeScalar(GgufValueType::BOOL, v ? 1 : 0); }
GgufValue GgufValue::U64(uint64_t v) { return MakeScalar(GgufValueType::UINT64, v); }
GgufValue GgufValue::I64(int64_t v) {
  return MakeScalar(GgufValueType::INT64, static_cast<uint64_t>(v));
}
GgufValue GgufValue::F64(double v) { return MakeScalar(GgufValueType::FLOAT64, F64Bits(v)); }
GgufValue GgufValue::String(std::string v) {
  GgufValue out;
  GgufValueBuilder::SetString(&out, std::move(v));
  return out;
}

GgufValue GgufValue::NumericArray(GgufValueType elem, std::vector<uint8_t> raw_le) {
  GgufValue out;
  const size_t sz = GgufScalarSize(elem);
  if (sz == 0 || raw_le.size() % sz != 0) {
    GgufValueBuilder::MutableRawArray(&out, GgufValueType::UINT8);
    return out;
  }
  *GgufValueBuilder::MutableRawArray(&out, elem) = std::move(raw_le);
  return out;
}

GgufValue GgufValue::StringArray(std::vector<std::string> v) {
  GgufValue out;
  *GgufValueBuilder::MutableStringArray(&out) = std::move(v);
  return out;
}

GgufValue GgufValue::ArrayOfArrays(std::vector<GgufValue> v) {
  GgufValue out;
  *GgufValueBuilder::MutableArrayOfArrays(&out) = std::move(v);
  return out;
}

GgufValue GgufValue::U8Array(absl::Span<const uint8_t> v) {
  return MakeArray<uint8_t>(GgufValueType::UINT8, v, [](uint8_t x) -> uint64_t { return x; });
}
GgufValue GgufValue::I32Array(absl::Span<const int32_t> v) {
  return MakeArray<int32_t>(GgufValueType::INT32, v,
                            [](int32_t x) { return static_cast<uint64_t>(static_cast<int64_t>(x)); });
}
GgufValue GgufValue::U32Array(absl::Span<const uint32_t> v) {
  return MakeArray<uint32_t>(GgufValueType::UINT32, v, [](uint32_t x) -> uint64_t { return x; });
}
GgufValue GgufValue::I64Array(absl::Span<const int64_t> v) {
  return MakeArray<int64_t>(GgufValueType::INT64, v,
                            [](int64_t x) { return static_cast<uint64_t>(x); });
}
GgufValue GgufValue::F32Array(absl::Span<const float> v) {
  return MakeArray<float>(GgufValueType::FLOAT32, v, F32Bits);
}
GgufValue GgufValue::F64Array(absl::Span<const double> v) {
  return MakeArray<double>(GgufValueType::FLOAT64, v, F64Bits);
}
GgufValue GgufValue::BoolArray(absl::Span<const bool> v) {
  return MakeArray<bool>(GgufValueType::BOOL, v, [](bool x) -> uint64_t { return x ? 1 : 0; });
}

// ---- accessors -------------------------------------------------------------------------------

absl::optional<uint64_t> GgufValue::ScalarToU64(GgufValueType t, uint64_t bits) const {
  if (IsUnsignedInt(t)) return bits;
  if (IsSignedInt(t)) {
    if (static_cast<int64_t>(bits) < 0) return absl::nullopt;
    return bits;
  }
  return absl::nullopt;
}

absl::optional<uint64_t> GgufValue::ToU64() const { return ScalarToU64(type_, bits_); }

absl::optional<int64_t> GgufValue::ToI64() const {
  if (IsSignedInt(type_)) return static_cast<int64_t>(bits_);
  if (IsUnsignedInt(type_)) {
    if (bits_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return absl::nullopt;
    return static_cast<int64_t>(bits_);
  }
  return absl::nullopt;
}

absl::optional<double> GgufValue::ToF64() const {
  if (type_ == GgufValueType::FLOAT32) {
    const uint32_t b = static_cast<uint32_t>(bits_);
    float f;
    std::memcpy(&f, &b, 4);
    return static_cast<double>(f);
  }
  if (type_ == GgufValueType::FLOAT64) {
    double d;
    std::memcpy(&d, &bits_, 8);
    return d;
  }
  return absl::nullopt;
}

absl::optional<bool> GgufValue::ToBool() const {
  if (type_ != GgufValueType::BOOL) return absl::nullopt;
  return bits_ != 0;
}

const std::string* GgufValue::AsString() const {
  if (type_ != GgufValueType::STRING) return nullptr;
  return std::get_if<std::string>(&payload_);
}

uint64_t GgufValue::array_size() const {
  if (type_ != GgufValueType::ARRAY) return 0;
  if (auto* raw = std::get_if<std::vector<uint8_t>>(&payload_)) {
    const size_t sz = GgufScalarSize(array_type_);
    return sz == 0 ? 0 : raw->size() / sz;
  }
  if (auto* s = std::get_if<std::vector<std::string>>(&payload_)) return s->size();
  if (auto* a = std::get_if<std::vector<GgufValue>>(&payload_)) return a->size();
  return 0;
}

const std::vector<std::string>* GgufValue::AsStringArray() const {
  if (type_ != GgufValueType::ARRAY) return nullptr;
  return std::get_if<std::vector<std::string>>(&payload_);
}

const std::vector<GgufValue>* GgufValue::AsArrayOfArrays() const {
  if (type_ != GgufValueType::ARRAY) return nullptr;
  return std::get_if<std::vector<GgufValue>>(&payload_);
}

absl::Span<const uint8_t> GgufValue::array_raw() const {
  if (type_ != GgufValueType::ARRAY) return {};
  if (auto* raw = std::get_if<std::vector<uint8_t>>(&payload_)) return *raw;
  return {};
}

absl::optional<uint64_t> GgufValue::ArrayU64At(size_t i) const {
  absl::Span<const uint8_t> raw = array_raw();
  const size_t sz = GgufScalarSize(array_type_);
  if (sz == 0 || i >= raw.size() / sz) return absl::nullopt;
  return ScalarToU64(array_type_, LoadScalarBits(array_type_, raw.data() + i * sz));
}

absl::optional<int64_t> GgufValue::ArrayI64At(size_t i) const {
  absl::Span<const uint8_t> raw = array_raw();
  const size_t sz = GgufScalarSize(array_type_);
  if (sz == 0 || i >= raw.size() / sz) return absl::nullopt;
  GgufValue elem;
  GgufValueBuilder::SetScalar(&elem, array_type_, raw.data() + i * sz);
  return elem.ToI64();
}

absl::optional<double> GgufValue::ArrayF64At(size_t i) const {
  absl::Span<const uint8_t> raw = array_raw();
  const size_t sz = GgufScalarSize(array_type_);
  if (sz == 0 || i >= raw.size() / sz) return absl::nullopt;
  GgufValue elem;
  GgufValueBuilder::SetScalar(&elem, array_type_, raw.data() + i * sz);
  return elem.ToF64();
}

std::string GgufValue::DebugString() const {
  switch (type_) {
    case GgufValueType::STRING: {
      const std::string& s = *AsString();
      if (s.size() > 40) return absl::StrFormat("STRING \"%s...\" (%d bytes)", s.substr(0, 40), s.size());
      return absl::StrFormat("STRING \"%s\"", s);
    }
    case GgufValueType::ARRAY:
      return absl::StrFormat("ARRAY<%s>[%d]", GgufValueTypeName(array_type_), array_size());
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64:
      return absl::StrFormat("%s %g", GgufValueTypeName(type_), *ToF64());
    case GgufValueType::BOOL:
      return bits_ ? "BOOL true" : "BOOL false";
    default:
      if (IsSignedInt(type_)) return absl::StrFormat("%s %d", GgufValueTypeName(type_), *ToI64());
      return absl::StrFormat("%s %u", GgufValueTypeName(type_), bits_);
  }
}

}  // namespace runtime
}  // namespace kestrel
