#include "runtime/gguf/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kestrel {
namespace runtime {
namespace {

#define GGUF_RETURN_IF_ERROR(expr)           \
  do {                                       \
    absl::Status gguf_status_ = (expr);      \
    if (!gguf_status_.ok()) return gguf_status_; \
  } while (0)

// Smallest encodings, used to reject counts that the remaining bytes cannot possibly hold before
// anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // key length, value type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name length, rank, 1 dim, type, offset
constexpr uint64_t kMinStringBytes = 8;
constexpr uint64_t kMinArrayBytes = 4 + 8;
// Up-front reservations are capped; vectors grow past this only as elements are really parsed.
constexpr uint64_t kMaxReserve = 1 << 16;

uint32_t LoadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

uint64_t LoadU64(const uint8_t* p) {
  return static_cast<uint64_t>(LoadU32(p)) | static_cast<uint64_t>(LoadU32(p + 4)) << 32;
}

// Names from a hostile file go into messages escaped and shortened.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 96;
  if (s.size() > kMax) return absl::StrCat("'", absl::CHexEscape(s.substr(0, kMax)), "...'");
  return absl::StrCat("'", absl::CHexEscape(s), "'");
}

std::string DimsString(const std::vector<uint64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

absl::Status WithPrefix(const absl::Status& s, absl::string_view prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

// Checks a tensor's rank, dims, type and offset alignment and fills n_elements and size_bytes
// (the parser's and FromParts' one copy of these rules).
absl::Status CompleteTensorInfo(uint32_t raw_type, uint32_t alignment, GgufTensorInfo* info) {
  const std::string tname = absl::StrCat("tensor ", Quote(info->name));
  if (info->dims.empty() || info->dims.size() > GgufFile::kMaxDims) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: rank %u is outside 1..%u", tname,
                                                      info->dims.size(), GgufFile::kMaxDims));
  }
  uint64_t n_elements = 1;
  bool overflow = false;
  for (size_t d = 0; d < info->dims.size(); ++d) {
    const uint64_t dim = info->dims[d];
    if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: dim[%u] = %u is outside 1..INT64_MAX", tname, d, dim));
    }
    if (__builtin_mul_overflow(n_elements, dim, &n_elements)) overflow = true;
  }
  if (overflow || n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: element count of dims %s overflows int64", tname, DimsString(info->dims)));
  }
  info->n_elements = n_elements;
  absl::StatusOr<GgmlTypeTraits> traits = GgmlTypeTraitsOf(raw_type);
  if (!traits.ok()) return WithPrefix(traits.status(), absl::StrCat(tname, ": "));
  info->type = traits->type;
  if (info->dims[0] % traits->block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: row length dims[0] = %u is not a multiple of the %s block size %u", tname,
        info->dims[0], traits->name, traits->block_elems));
  }
  if (__builtin_mul_overflow(n_elements / traits->block_elems,
                             static_cast<uint64_t>(traits->block_bytes), &info->size_bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: byte size of %u %s elements overflows uint64", tname, n_elements, traits->name));
  }
  if (info->offset_in_data % alignment != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: offset %u is not a multiple of the alignment %u", tname, info->offset_in_data,
        alignment));
  }
  return absl::OkStatus();
}

// Every tensor lies inside the data section [data_offset, file_size).
absl::Status CheckTensorsInData(const std::vector<GgufTensorInfo>& tensors, uint64_t data_offset,
                                uint64_t file_size) {
  for (const GgufTensorInfo& t : tensors) {
    if (data_offset > file_size) {
      return absl::DataLossError(absl::StrFormat(
          "tensor %s: the data section would start at offset %u, past the end of the file (%u "
          "bytes)",
          Quote(t.name), data_offset, file_size));
    }
    const uint64_t data_size = file_size - data_offset;
    if (t.offset_in_data > data_size || t.size_bytes > data_size - t.offset_in_data) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tensor %s: offset %u + size %u exceeds the data section of %u bytes (file size %u, "
          "data starts at %u)",
          Quote(t.name), t.offset_in_data, t.size_bytes, data_size, file_size, data_offset));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ---- parser ----------------------------------------------------------------------------------

class GgufFile::Parser {
 public:
  explicit Parser(GgufFile* f) : f_(f), p_(f->data_), size_(f->size_) {}

  absl::Status Run() {
    GGUF_RETURN_IF_ERROR(ParseHeader());
    GGUF_RETURN_IF_ERROR(ParseMetadata());
    GGUF_RETURN_IF_ERROR(ResolveAlignment());
    GGUF_RETURN_IF_ERROR(ParseTensorInfos());
    return CheckTensorData();
  }

 private:
  enum class Section { kHeader, kKv, kTensor };

  uint64_t Remaining() const { return size_ - pos_; }

  // "key #5 ('llama.block_count') value" and the like, built only when reporting an error.
  std::string Where() const {
    std::string out;
    switch (section_) {
      case Section::kHeader: out = "header"; break;
      case Section::kKv: out = absl::StrCat("key #", index_); break;
      case Section::kTensor: out = absl::StrCat("tensor #", index_); break;
    }
    if (have_name_) absl::StrAppend(&out, " (", Quote(name_), ")");
    if (field_ != nullptr) absl::StrAppend(&out, " ", field_);
    if (elem_ >= 0) absl::StrAppend(&out, " element ", elem_);
    return out;
  }

  absl::Status Truncated(uint64_t needed, absl::string_view detail = "") const {
    return absl::DataLossError(absl::StrFormat(
        "truncated while reading %s%s: needed %u bytes at offset %u, file has %u", Where(), detail,
        needed, pos_, size_));
  }

  absl::Status Read(uint64_t n, const uint8_t** out, absl::string_view detail = "") {
    if (n > Remaining()) return Truncated(n, detail);
    *out = p_ + pos_;
    pos_ += n;
    return absl::OkStatus();
  }

  absl::Status ReadU32(uint32_t* v) {
    const uint8_t* b = nullptr;
    GGUF_RETURN_IF_ERROR(Read(4, &b));
    *v = LoadU32(b);
    return absl::OkStatus();
  }

  absl::Status ReadU64(uint64_t* v) {
    const uint8_t* b = nullptr;
    GGUF_RETURN_IF_ERROR(Read(8, &b));
    *v = LoadU64(b);
    return absl::OkStatus();
  }

  // A GGUF string: u64 length + bytes. The view points into the file image.
  absl::Status ReadString(absl::string_view* s) {
    uint64_t len = 0;
    GGUF_RETURN_IF_ERROR(ReadU64(&len));
    const uint8_t* b = nullptr;
    if (len > Remaining()) return Truncated(len, absl::StrCat(" (string length ", len, ")"));
    GGUF_RETURN_IF_ERROR(Read(len, &b));
    *s = absl::string_view(reinterpret_cast<const char*>(b), static_cast<size_t>(len));
    return absl::OkStatus();
  }

  absl::Status CheckCount(uint64_t count, uint64_t min_bytes, absl::string_view what) const {
    if (count > Remaining() / min_bytes) {
      return absl::DataLossError(absl::StrFormat(
          "%s: %s %u is impossible: each needs at least %u bytes but only %u bytes remain at offset "
          "%u (file truncated or corrupt)",
          Where(), what, count, min_bytes, Remaining(), pos_));
    }
    return absl::OkStatus();
  }

  absl::Status ParseHeader() {
    section_ = Section::kHeader;
    const uint8_t* magic = nullptr;
    field_ = "magic";
    GGUF_RETURN_IF_ERROR(Read(4, &magic));
    if (std::memcmp(magic, "GGUF", 4) != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "bad magic '%s' (0x%08x), expected 'GGUF'",
          absl::CHexEscape(absl::string_view(reinterpret_cast<const char*>(magic), 4)),
          LoadU32(magic)));
    }
    field_ = "version";
    uint32_t version = 0;
    GGUF_RETURN_IF_ERROR(ReadU32(&version));
    if (version != 2 && version != 3) {
      if ((version & 0xffffu) == 0 && version != 0) {
        const uint32_t swapped = __builtin_bswap32(version);
        return absl::UnimplementedError(absl::StrFormat(
            "GGUF version reads as 0x%08x (%u byte-swapped): big-endian GGUF is unsupported",
            version, swapped));
      }
      if (version == 0) {
        return absl::InvalidArgumentError("GGUF version 0 is invalid (supported: 2, 3)");
      }
      return absl::UnimplementedError(
          absl::StrFormat("GGUF version %u is unsupported (supported: 2, 3)", version));
    }
    f_->version_ = version;
    field_ = "tensor count";
    GGUF_RETURN_IF_ERROR(ReadU64(&n_tensors_));
    field_ = "metadata kv count";
    GGUF_RETURN_IF_ERROR(ReadU64(&n_kv_));
    field_ = "counts";
    GGUF_RETURN_IF_ERROR(CheckCount(n_tensors_, kMinTensorInfoBytes, "tensor count"));
    GGUF_RETURN_IF_ERROR(CheckCount(n_kv_, kMinKvBytes, "metadata kv count"));
    // Both products are now <= Remaining(), so the sum cannot overflow.
    if (n_tensors_ * kMinTensorInfoBytes + n_kv_ * kMinKvBytes > Remaining()) {
      return absl::DataLossError(absl::StrFormat(
          "header: tensor count %u and metadata kv count %u need at least %u bytes but only %u "
          "remain (file truncated or corrupt)",
          n_tensors_, n_kv_, n_tensors_ * kMinTensorInfoBytes + n_kv_ * kMinKvBytes, Remaining()));
    }
    return absl::OkStatus();
  }

  absl::Status ParseMetadata() {
    section_ = Section::kKv;
    f_->kvs_.reserve(static_cast<size_t>(std::min(n_kv_, kMaxReserve)));
    f_->kv_index_.reserve(static_cast<size_t>(std::min(n_kv_, kMaxReserve)));
    for (uint64_t i = 0; i < n_kv_; ++i) {
      index_ = i;
      have_name_ = false;
      elem_ = -1;
      field_ = "name";
      absl::string_view key;
      GGUF_RETURN_IF_ERROR(ReadString(&key));
      name_ = key;
      have_name_ = true;
      auto [it, inserted] = f_->kv_index_.emplace(key, static_cast<size_t>(i));
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "duplicate metadata key %s (key #%u repeats key #%u)", Quote(key), i, it->second));
      }
      field_ = "value type";
      uint32_t raw_type = 0;
      GGUF_RETURN_IF_ERROR(ReadU32(&raw_type));
      if (!IsValidGgufValueType(raw_type)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "key #%u (%s): unknown value type %u", i, Quote(key), raw_type));
      }
      field_ = "value";
      f_->kvs_.push_back(GgufKeyValue{std::string(key), GgufValue()});
      GGUF_RETURN_IF_ERROR(
          ParseValue(static_cast<GgufValueType>(raw_type), &f_->kvs_.back().value, 0));
    }
    return absl::OkStatus();
  }

  absl::Status ParseValue(GgufValueType type, GgufValue* out, uint32_t depth) {
    const size_t scalar = GgufScalarSize(type);
    if (scalar != 0) {
      const uint8_t* b = nullptr;
      GGUF_RETURN_IF_ERROR(Read(scalar, &b));
      GgufValueBuilder::SetScalar(out, type, b);
      return absl::OkStatus();
    }
    if (type == GgufValueType::STRING) {
      absl::string_view s;
      GGUF_RETURN_IF_ERROR(ReadString(&s));
      GgufValueBuilder::MutableString(out)->assign(s.data(), s.size());
      return absl::OkStatus();
    }
    // ARRAY: u32 element type, u64 count, elements.
    if (depth >= kMaxArrayDepth) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: arrays nested deeper than %u levels are not supported", Where(), kMaxArrayDepth));
    }
    uint32_t raw_elem = 0;
    GGUF_RETURN_IF_ERROR(ReadU32(&raw_elem));
    if (!IsValidGgufValueType(raw_elem)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: unknown array element type %u", Where(), raw_elem));
    }
    const GgufValueType elem = static_cast<GgufValueType>(raw_elem);
    uint64_t count = 0;
    GGUF_RETURN_IF_ERROR(ReadU64(&count));
    const size_t elem_size = GgufScalarSize(elem);
    if (elem_size != 0) {
      GGUF_RETURN_IF_ERROR(CheckCount(count, elem_size, "array length"));
      const uint8_t* b = nullptr;
      GGUF_RETURN_IF_ERROR(Read(count * elem_size, &b));
      GgufValueBuilder::MutableRawArray(out, elem)->assign(b, b + count * elem_size);
      return absl::OkStatus();
    }
    const bool outer = depth == 0;
    if (elem == GgufValueType::STRING) {
      GGUF_RETURN_IF_ERROR(CheckCount(count, kMinStringBytes, "array length"));
      std::vector<std::string>* strings = GgufValueBuilder::MutableStringArray(out);
      strings->reserve(static_cast<size_t>(std::min(count, kMaxReserve * 16)));
      for (uint64_t j = 0; j < count; ++j) {
        if (outer) elem_ = static_cast<int64_t>(j);
        absl::string_view s;
        GGUF_RETURN_IF_ERROR(ReadString(&s));
        strings->emplace_back(s.data(), s.size());
      }
      if (outer) elem_ = -1;
      return absl::OkStatus();
    }
    GGUF_RETURN_IF_ERROR(CheckCount(count, kMinArrayBytes, "array length"));
    std::vector<GgufValue>* arrays = GgufValueBuilder::MutableArrayOfArrays(out);
    arrays->reserve(static_cast<size_t>(std::min(count, kMaxReserve)));
    for (uint64_t j = 0; j < count; ++j) {
      if (outer) elem_ = static_cast<int64_t>(j);
      arrays->emplace_back();
      GGUF_RETURN_IF_ERROR(ParseValue(GgufValueType::ARRAY, &arrays->back(), depth + 1));
    }
    if (outer) elem_ = -1;
    return absl::OkStatus();
  }

  absl::Status ResolveAlignment() {
    section_ = Section::kHeader;
    have_name_ = false;
    field_ = nullptr;
    elem_ = -1;
    const GgufValue* v = f_->Find("general.alignment");
    if (v == nullptr) return absl::OkStatus();
    absl::optional<uint64_t> a = v->ToU64();
    if (!a.has_value()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "general.alignment has type %s (%s), expected UINT32", GgufValueTypeName(v->type()),
          v->DebugString()));
    }
    if (*a == 0 || (*a & (*a - 1)) != 0 || *a > (uint64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "general.alignment = %u is not a nonzero power of two (at most 2^30)", *a));
    }
    f_->alignment_ = static_cast<uint32_t>(*a);
    return absl::OkStatus();
  }

  absl::Status ParseTensorInfos() {
    section_ = Section::kTensor;
    f_->tensors_.reserve(static_cast<size_t>(std::min(n_tensors_, kMaxReserve)));
    f_->tensor_index_.reserve(static_cast<size_t>(std::min(n_tensors_, kMaxReserve)));
    for (uint64_t i = 0; i < n_tensors_; ++i) {
      index_ = i;
      have_name_ = false;
      field_ = "name";
      absl::string_view name;
      GGUF_RETURN_IF_ERROR(ReadString(&name));
      name_ = name;
      have_name_ = true;
      auto [it, inserted] = f_->tensor_index_.emplace(name, static_cast<size_t>(i));
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "duplicate tensor name %s (tensor #%u repeats tensor #%u)", Quote(name), i, it->second));
      }
      field_ = "rank";
      uint32_t n_dims = 0;
      GGUF_RETURN_IF_ERROR(ReadU32(&n_dims));
      if (n_dims < 1 || n_dims > kMaxDims) {
        return absl::InvalidArgumentError(absl::StrFormat("tensor %s: rank %u is outside 1..%u",
                                                          Quote(name), n_dims, kMaxDims));
      }
      GgufTensorInfo info;
      info.name.assign(name.data(), name.size());
      info.dims.resize(n_dims);
      field_ = "dims";
      for (uint32_t d = 0; d < n_dims; ++d) GGUF_RETURN_IF_ERROR(ReadU64(&info.dims[d]));
      field_ = "type";
      uint32_t raw_type = 0;
      GGUF_RETURN_IF_ERROR(ReadU32(&raw_type));
      field_ = "offset";
      GGUF_RETURN_IF_ERROR(ReadU64(&info.offset_in_data));
      GGUF_RETURN_IF_ERROR(CompleteTensorInfo(raw_type, f_->alignment_, &info));
      f_->tensors_.push_back(std::move(info));
    }
    return absl::OkStatus();
  }

  absl::Status CheckTensorData() {
    const uint64_t align = f_->alignment_;
    // pos_ <= size_ < 2^63 and align <= 2^30, so this cannot overflow.
    f_->data_offset_ = (pos_ + align - 1) / align * align;
    if (absl::Status s = CheckTensorsInData(f_->tensors_, f_->data_offset_, size_); !s.ok()) {
      return s;
    }
    return CheckNoOverlap();
  }

  // Two tensors sharing bytes are refused (as llama.cpp does): a writer never produces them, and
  // a hostile file could otherwise alias a weight that a plugin repacks in place.
  absl::Status CheckNoOverlap() const {
    std::vector<const GgufTensorInfo*> order;
    order.reserve(f_->tensors_.size());
    for (const GgufTensorInfo& t : f_->tensors_) {
      if (t.size_bytes > 0) order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const GgufTensorInfo* a, const GgufTensorInfo* b) {
      return a->offset_in_data < b->offset_in_data;
    });
    for (size_t i = 1; i < order.size(); ++i) {
      const GgufTensorInfo& a = *order[i - 1];
      const GgufTensorInfo& b = *order[i];
      if (a.offset_in_data + a.size_bytes > b.offset_in_data) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "tensors %s (data bytes %u..%u) and %s (from byte %u) overlap", Quote(a.name),
            a.offset_in_data, a.offset_in_data + a.size_bytes, Quote(b.name), b.offset_in_data));
      }
    }
    return absl::OkStatus();
  }

  GgufFile* f_;
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
  // Error context.
  Section section_ = Section::kHeader;
  uint64_t index_ = 0;
  bool have_name_ = false;
  absl::string_view name_;
  const char* field_ = nullptr;
  int64_t elem_ = -1;
};

// ---- open ------------------------------------------------------------------------------------

void GgufFile::ReleaseResidentPages() const { image_->ReleaseResidentRange(data_, size_); }

void GgufFile::ReleaseResidentRange(const uint8_t* ptr, uint64_t bytes) const {
  image_->ReleaseResidentRange(ptr, bytes);
}

GgufFile::~GgufFile() = default;

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Finish(std::shared_ptr<const FileImage> image) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->data_ = image->data();
  file->size_ = image->size();
  file->mmapped_ = image->mmapped();
  file->image_ = std::move(image);
  Parser parser(file.get());
  absl::Status s = parser.Run();
  if (!s.ok()) return s;
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path,
                                                         const GgufOpenOptions& options) {
  const std::string prefix = absl::StrCat("GGUF '", path, "': ");
  absl::StatusOr<std::shared_ptr<const FileImage>> image =
      FileImage::Open(path, options.use_mmap, prefix);
  if (!image.ok()) return image.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> result = Finish(std::move(*image));
  if (!result.ok()) return WithPrefix(result.status(), prefix);
  return result;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::OpenFromMemory(absl::string_view bytes) {
  absl::StatusOr<std::shared_ptr<const FileImage>> image = FileImage::Copy(bytes);
  if (!image.ok()) return image.status();
  return Finish(std::move(*image));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromParts(
    std::shared_ptr<const FileImage> image, uint64_t data_offset, uint64_t data_size,
    uint32_t alignment, std::vector<GgufKeyValue> kvs, std::vector<GgufTensorInfo> tensors,
    const std::vector<uint32_t>& raw_types) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (1u << 30)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("alignment %u is not a nonzero power of two (at most 2^30)", alignment));
  }
  if (raw_types.size() != tensors.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%u tensor types for %u tensors", raw_types.size(), tensors.size()));
  }
  if (data_offset > image->size() || data_size > image->size() - data_offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor data [%u, +%u) lies outside the file of %u bytes", data_offset, data_size,
        image->size()));
  }
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->data_ = image->data();
  file->size_ = data_offset + data_size;  // the view ends with its data section
  file->mmapped_ = image->mmapped();
  file->image_ = std::move(image);
  file->version_ = 3;
  file->alignment_ = alignment;
  file->data_offset_ = data_offset;
  file->kvs_ = std::move(kvs);
  for (size_t i = 0; i < file->kvs_.size(); ++i) {
    auto [it, inserted] = file->kv_index_.emplace(file->kvs_[i].key, i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "duplicate key %s (key #%u repeats key #%u)", Quote(file->kvs_[i].key), i, it->second));
    }
  }
  file->tensors_ = std::move(tensors);
  for (size_t i = 0; i < file->tensors_.size(); ++i) {
    GgufTensorInfo& t = file->tensors_[i];
    auto [it, inserted] = file->tensor_index_.emplace(t.name, i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "duplicate tensor name %s (tensor #%u repeats tensor #%u)", Quote(t.name), i, it->second));
    }
    if (absl::Status s = CompleteTensorInfo(raw_types[i], alignment, &t); !s.ok()) return s;
  }
  if (absl::Status s = CheckTensorsInData(file->tensors_, data_offset, file->size_); !s.ok()) {
    return s;
  }
  return file;
}

// ---- metadata --------------------------------------------------------------------------------

const GgufValue* GgufFile::Find(absl::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

absl::StatusOr<const GgufValue*> GgufFile::FindOrError(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) {
    return absl::NotFoundError(absl::StrCat("metadata key ", Quote(key), " not found"));
  }
  return v;
}

namespace {

absl::Status WrongType(absl::string_view key, const GgufValue& v, absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrFormat("metadata key %s has type %s (%s), expected %s",
                                                    Quote(key), GgufValueTypeName(v.type()),
                                                    v.DebugString(), expected));
}

}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  const std::string* s = (*v)->AsString();
  if (s == nullptr) return WrongType(key, **v, "STRING");
  return *s;
}

absl::StatusOr<uint64_t> GgufFile::GetU64(absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  absl::optional<uint64_t> u = (*v)->ToU64();
  if (!u.has_value()) {
    if ((*v)->ToI64().has_value()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "metadata key %s = %s does not fit uint64", Quote(key), (*v)->DebugString()));
    }
    return WrongType(key, **v, "an unsigned integer");
  }
  return *u;
}

absl::StatusOr<uint32_t> GgufFile::GetU32(absl::string_view key) const {
  absl::StatusOr<uint64_t> u = GetU64(key);
  if (!u.ok()) return u.status();
  if (*u > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrFormat("metadata key %s = %s does not fit uint32",
                                                      Quote(key), Find(key)->DebugString()));
  }
  return static_cast<uint32_t>(*u);
}

absl::StatusOr<int64_t> GgufFile::GetI64(absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  absl::optional<int64_t> i = (*v)->ToI64();
  if (!i.has_value()) {
    if ((*v)->ToU64().has_value()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "metadata key %s = %s does not fit int64", Quote(key), (*v)->DebugString()));
    }
    return WrongType(key, **v, "an integer");
  }
  return *i;
}

absl::StatusOr<float> GgufFile::GetF32(absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  absl::optional<double> d = (*v)->ToF64();
  if (!d.has_value()) return WrongType(key, **v, "FLOAT32 or FLOAT64");
  return static_cast<float>(*d);
}

absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  absl::optional<bool> b = (*v)->ToBool();
  if (!b.has_value()) return WrongType(key, **v, "BOOL");
  return *b;
}

absl::StatusOr<absl::Span<const std::string>> GgufFile::GetStringArray(
    absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  const std::vector<std::string>* a = (*v)->AsStringArray();
  if (a == nullptr) {
    return WrongType(key, **v, "ARRAY<STRING>");
  }
  return absl::Span<const std::string>(*a);
}

absl::StatusOr<std::vector<float>> GgufFile::GetF32Array(absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  const GgufValue& val = **v;
  if (!val.is_array() || (val.array_type() != GgufValueType::FLOAT32 &&
                          val.array_type() != GgufValueType::FLOAT64)) {
    return WrongType(key, val, "ARRAY<FLOAT32> or ARRAY<FLOAT64>");
  }
  absl::Span<const uint8_t> raw = val.array_raw();
  std::vector<float> out(static_cast<size_t>(val.array_size()));
  if (val.array_type() == GgufValueType::FLOAT32) {
    for (size_t i = 0; i < out.size(); ++i) {
      const uint32_t bits = LoadU32(raw.data() + 4 * i);
      std::memcpy(&out[i], &bits, 4);
    }
  } else {
    for (size_t i = 0; i < out.size(); ++i) {
      const uint64_t bits = LoadU64(raw.data() + 8 * i);
      double d;
      std::memcpy(&d, &bits, 8);
      out[i] = static_cast<float>(d);
    }
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> GgufFile::GetI32Array(absl::string_view key) const {
  absl::StatusOr<const GgufValue*> v = FindOrError(key);
  if (!v.ok()) return v.status();
  const GgufValue& val = **v;
  const GgufValueType et = val.array_type();
  const bool int_elems = et == GgufValueType::UINT8 || et == GgufValueType::INT8 ||
                         et == GgufValueType::UINT16 || et == GgufValueType::INT16 ||
                         et == GgufValueType::UINT32 || et == GgufValueType::INT32 ||
                         et == GgufValueType::UINT64 || et == GgufValueType::INT64;
  if (!val.is_array() || !int_elems) return WrongType(key, val, "an array of integers");
  std::vector<int32_t> out(static_cast<size_t>(val.array_size()));
  if (et == GgufValueType::INT32) {
    absl::Span<const uint8_t> raw = val.array_raw();
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<int32_t>(LoadU32(raw.data() + 4 * i));
    }
    return out;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    absl::optional<int64_t> e = val.ArrayI64At(i);
    if (!e.has_value() || *e < std::numeric_limits<int32_t>::min() ||
        *e > std::numeric_limits<int32_t>::max()) {
      absl::optional<uint64_t> u = val.ArrayU64At(i);
      return absl::InvalidArgumentError(absl::StrFormat(
          "metadata key %s: element %u = %s does not fit int32", Quote(key), i,
          e.has_value() ? absl::StrCat(*e) : absl::StrCat(u.value_or(0))));
    }
    out[i] = static_cast<int32_t>(*e);
  }
  return out;
}

// ---- tensors ---------------------------------------------------------------------------------

const GgufTensorInfo* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

#undef GGUF_RETURN_IF_ERROR

}  // namespace runtime
}  // namespace kestrel
