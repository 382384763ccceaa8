#include "runtime/gguf/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel {
namespace runtime {

class GgufWriter::Sink {
 public:
  virtual ~Sink() = default;
  virtual absl::Status Write(const void* data, size_t size) = 0;
  virtual absl::Status Close() = 0;
};

namespace {

#define GGUF_RETURN_IF_ERROR(expr)               \
  do {                                           \
    absl::Status gguf_status_ = (expr);          \
    if (!gguf_status_.ok()) return gguf_status_; \
  } while (0)

class FileSink : public GgufWriter::Sink {
 public:
  FileSink(std::FILE* f, std::string path) : f_(f), path_(std::move(path)) {
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  }
  ~FileSink() override {
    if (f_ != nullptr) std::fclose(f_);
  }
  absl::Status Write(const void* data, size_t size) override {
    if (f_ == nullptr) return absl::FailedPreconditionError("GGUF writer: file already closed");
    if (size != 0 && std::fwrite(data, 1, size, f_) != size) {
      return absl::ErrnoToStatus(errno, absl::StrCat("GGUF writer: writing '", path_, "'"));
    }
    return absl::OkStatus();
  }
  absl::Status Close() override {
    if (f_ == nullptr) return absl::OkStatus();
    const bool flush_ok = std::fflush(f_) == 0;
    const int flush_errno = errno;
    const bool close_ok = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!flush_ok || !close_ok) {
      return absl::ErrnoToStatus(flush_ok ? errno : flush_errno,
                                 absl::StrCat("GGUF writer: closing '", path_, "'"));
    }
    return absl::OkStatus();
  }

 private:
  std::FILE* f_;
  std::string path_;
};

class StringSink : public GgufWriter::Sink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  absl::Status Write(const void* data, size_t size) override {
    out_->append(static_cast<const char*>(data), size);
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }

 private:
  std::string* out_;
};

// Little-endian serialisation of the header into a memory buffer (the header is small compared with
// tensor data; the vocab is the largest part).
class HeaderBuffer {
 public:
  void U32(uint32_t v) { Le(v, 4); }
  void U64(uint64_t v) { Le(v, 8); }
  void Str(absl::string_view s) {
    U64(s.size());
    buf_.append(s.data(), s.size());
  }
  void Bytes(absl::Span<const uint8_t> b) {
    buf_.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void Value(const GgufValue& v) {
    switch (v.type()) {
      case GgufValueType::STRING:
        Str(*v.AsString());
        return;
      case GgufValueType::ARRAY:
        U32(static_cast<uint32_t>(v.array_type()));
        U64(v.array_size());
        if (const auto* s = v.AsStringArray()) {
          for (const std::string& e : *s) Str(e);
        } else if (const auto* a = v.AsArrayOfArrays()) {
          for (const GgufValue& e : *a) Value(e);
        } else {
          Bytes(v.array_raw());
        }
        return;
      default:
        Le(GgufValueBuilder::ScalarBits(v), GgufScalarSize(v.type()));
    }
  }
  const std::string& data() const { return buf_; }
  size_t size() const { return buf_.size(); }

 private:
  void Le(uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) buf_.push_back(static_cast<char>(v >> (8 * i)));
  }
  std::string buf_;
};

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {}

GgufWriter::~GgufWriter() = default;

absl::Status GgufWriter::AddKv(std::string key, GgufValue value) {
  if (opened_) {
    return absl::FailedPreconditionError(
        absl::StrCat("GGUF writer: key '", key, "' added after the header was written"));
  }
  if (key == "general.alignment") {
    absl::optional<uint64_t> a = value.ToU64();
    if (!a.has_value() || *a != alignment_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GGUF writer: general.alignment ", value.DebugString(),
          " does not match the writer's alignment ", alignment_, " (set it in the constructor)"));
    }
  }
  if (!keys_.insert(key).second) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF writer: duplicate key '", key, "'"));
  }
  kvs_.push_back(GgufKeyValue{std::move(key), std::move(value)});
  return absl::OkStatus();
}

absl::Status GgufWriter::AddTensor(std::string name, GgmlType type, std::vector<uint64_t> dims) {
  const std::string tname = absl::StrCat("GGUF writer: tensor '", name, "'");
  if (opened_) {
    return absl::FailedPreconditionError(absl::StrCat(tname, " added after the header was written"));
  }
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF writer: alignment ", alignment_, " is not a nonzero power of two"));
  }
  if (dims.empty() || dims.size() > GgufFile::kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: rank %d is outside 1..%d", tname, dims.size(), GgufFile::kMaxDims));
  }
  const GgmlTypeTraits traits = GgmlTypeTraitsOf(type);
  if (traits.block_elems == 0) {
    return absl::UnimplementedError(absl::StrFormat("%s: unsupported ggml tensor type %u", tname,
                                                    static_cast<uint32_t>(type)));
  }
  uint64_t n = 1;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] == 0) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: dim[%d] is 0", tname, d));
    }
    if (__builtin_mul_overflow(n, dims[d], &n) ||
        n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(tname, ": element count overflows int64"));
    }
  }
  if (dims[0] % traits.block_elems != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: row length %u is not a multiple of the %s block size %u", tname,
                        dims[0], traits.name, traits.block_elems));
  }
  uint64_t bytes;
  uint64_t padded;
  uint64_t end;
  if (__builtin_mul_overflow(n / traits.block_elems, uint64_t{traits.block_bytes}, &bytes) ||
      __builtin_add_overflow(bytes, uint64_t{alignment_ - 1}, &padded) ||
      __builtin_add_overflow(next_offset_, padded / alignment_ * alignment_, &end)) {
    return absl::InvalidArgumentError(absl::StrCat(tname, ": byte size overflows uint64"));
  }
  if (!tensor_names_.insert(name).second) {
    return absl::InvalidArgumentError(absl::StrCat(tname, " declared twice"));
  }
  GgufTensorInfo info;
  info.name = std::move(name);
  info.type = type;
  info.dims = std::move(dims);
  info.n_elements = n;
  info.offset_in_data = next_offset_;
  info.size_bytes = bytes;
  tensors_.push_back(std::move(info));
  next_offset_ = end;
  return absl::OkStatus();
}

absl::Status GgufWriter::OpenFile(const std::string& path) {
  if (opened_) return absl::FailedPreconditionError("GGUF writer: already opened");
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("GGUF writer: cannot create '", path, "'"));
  }
  sink_ = std::make_unique<FileSink>(f, path);
  return WriteHeader();
}

absl::Status GgufWriter::OpenString(std::string* out) {
  if (opened_) return absl::FailedPreconditionError("GGUF writer: already opened");
  sink_ = std::make_unique<StringSink>(out);
  return WriteHeader();
}

absl::Status GgufWriter::WriteHeader() {
  opened_ = true;
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF writer: alignment ", alignment_, " is not a nonzero power of two"));
  }
  const bool add_alignment =
      alignment_ != GgufFile::kDefaultAlignment && keys_.count("general.alignment") == 0;
  HeaderBuffer h;
  h.Bytes({reinterpret_cast<const uint8_t*>("GGUF"), 4});
  h.U32(3);
  h.U64(tensors_.size());
  h.U64(kvs_.size() + (add_alignment ? 1 : 0));
  if (add_alignment) {
    h.Str("general.alignment");
    h.U32(static_cast<uint32_t>(GgufValueType::UINT32));
    h.U32(alignment_);
  }
  for (const GgufKeyValue& kv : kvs_) {
    h.Str(kv.key);
    h.U32(static_cast<uint32_t>(kv.value.type()));
    h.Value(kv.value);
  }
  for (const GgufTensorInfo& t : tensors_) {
    h.Str(t.name);
    h.U32(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) h.U64(d);
    h.U32(static_cast<uint32_t>(t.type));
    h.U64(t.offset_in_data);
  }
  GGUF_RETURN_IF_ERROR(sink_->Write(h.data().data(), h.size()));
  const uint64_t pad = (alignment_ - h.size() % alignment_) % alignment_;
  GGUF_RETURN_IF_ERROR(WritePadding(pad));
  current_ = 0;
  current_written_ = 0;
  return absl::OkStatus();
}

absl::Status GgufWriter::WritePadding(uint64_t n) {
  static const uint8_t kZeros[256] = {};
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, sizeof(kZeros)));
    GGUF_RETURN_IF_ERROR(sink_->Write(kZeros, chunk));
    n -= chunk;
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteTensorData(const void* data, size_t size) {
  if (!opened_ || closed_ || sink_ == nullptr) {
    return absl::FailedPreconditionError("GGUF writer: WriteTensorData before Open or after Close");
  }
  if (size == 0) return absl::OkStatus();
  if (current_ >= tensors_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("GGUF writer: ", size, " bytes written after the last tensor"));
  }
  const GgufTensorInfo& t = tensors_[current_];
  const uint64_t left = t.size_bytes - current_written_;
  if (size > left) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "GGUF writer: %u bytes exceed the %u bytes left in tensor '%s'", size, left, t.name));
  }
  GGUF_RETURN_IF_ERROR(sink_->Write(data, size));
  current_written_ += size;
  if (current_written_ == t.size_bytes) {
    GGUF_RETURN_IF_ERROR(WritePadding((alignment_ - t.size_bytes % alignment_) % alignment_));
    ++current_;
    current_written_ = 0;
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteTensor(absl::string_view name, const void* data, size_t size) {
  if (current_ >= tensors_.size() || tensors_[current_].name != name || current_written_ != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GGUF writer: tensor '", name, "' is not the next tensor to write (expected '",
        current_ < tensors_.size() ? tensors_[current_].name : std::string("<none>"), "')"));
  }
  if (size != tensors_[current_].size_bytes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "GGUF writer: tensor '%s' has %u bytes, got %u", tensors_[current_].name,
        tensors_[current_].size_bytes, size));
  }
  return WriteTensorData(data, size);
}

absl::Status GgufWriter::Close() {
  if (!opened_ || sink_ == nullptr) return absl::FailedPreconditionError("GGUF writer: not open");
  if (closed_) return absl::OkStatus();
  closed_ = true;
  absl::Status close_status = sink_->Close();
  if (current_ < tensors_.size()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "GGUF writer: closed with tensor '%s' incomplete (%u of %u bytes); %u tensors not written",
        tensors_[current_].name, current_written_, tensors_[current_].size_bytes,
        tensors_.size() - current_));
  }
  return close_status;
}

#undef GGUF_RETURN_IF_ERROR

}  // namespace runtime
}  // namespace kestrel
