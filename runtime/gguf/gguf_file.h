// runtime/gguf/gguf_file.h: a validating reader for GGUF v2/v3 model files.
//
// This folder (runtime/gguf/) owns the on-disk model formats: parsing, validation and raw tensor
// bytes. It does not interpret architectures, build execution plans or touch devices.
//
// GgufFile::Open maps (or reads) the whole file, parses and checks the header, metadata and tensor
// table, and then exposes them read-only. Validation is the point: a hostile or damaged file yields a
// status, never a crash, an out-of-bounds read or an allocation larger than a small multiple of the
// file size. Every count and length is checked against the bytes that remain before it is used.
//
// Status codes from Open:
//   NOT_FOUND / PERMISSION_DENIED / ...  the file cannot be opened or read (errno mapped).
//   DATA_LOSS         the file ends in the middle of a field ("truncated while reading ...").
//   INVALID_ARGUMENT  a structural error: bad magic, impossible count, bad alignment, duplicate key or
//                     tensor, bad rank or dims, misaligned or out-of-file tensor data, unknown value type.
//   UNIMPLEMENTED     a well-formed file this reader does not support: GGUF version 1 or > 3,
//                     big-endian GGUF, or an unknown ggml tensor type (the message names the number).
//   RESOURCE_EXHAUSTED  the no-mmap buffer could not be allocated.
// Messages name the field and the bad value, e.g.
//   "tensor 'blk.0.attn_q.weight': offset 123456 + size 4096 exceeds data section of 2000 bytes ...".
//
// Lifetime: tensor pointers and metadata references stay valid as long as the GgufFile lives.
// Thread-safety: a GgufFile is immutable after Open; all const methods may be called concurrently.
// Little-endian GGUF only (the format's default and the only one llama.cpp writes in practice).
// With mmap, a file that another process truncates while mapped can still fault (SIGBUS); use
// use_mmap = false where files may change underneath.
#ifndef KESTREL_RUNTIME_GGUF_GGUF_FILE_H_
#define KESTREL_RUNTIME_GGUF_GGUF_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/gguf/file_image.h"
#include "runtime/gguf/ggml_type.h"
#include "runtime/gguf/gguf_value.h"

namespace kestrel {
namespace runtime {

struct GgufOpenOptions {
  // true: mmap the file read-only (pages load lazily, shared with the page cache).
  // false: read the whole file into a 4096-byte-aligned heap buffer.
  bool use_mmap = true;
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  // ggml "ne" order as stored in the file: dims[0] is the innermost (row length), 1..4 entries.
  std::vector<uint64_t> dims;
  uint64_t n_elements = 0;
  uint64_t offset_in_data = 0;  // relative to data_offset(); a multiple of alignment()
  uint64_t size_bytes = 0;      // n_elements / block_elems * block_bytes
};

class GgufFile {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;
  static constexpr uint32_t kMaxDims = 4;        // GGML_MAX_DIMS
  static constexpr uint32_t kMaxArrayDepth = 8;  // nesting limit for arrays of arrays

  // Opens and validates `path`. See the file comment for status codes.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path,
                                                        const GgufOpenOptions& options = {});
  // Parses an in-memory image (copied into an aligned buffer). For tests and embedded models.
  static absl::StatusOr<std::unique_ptr<GgufFile>> OpenFromMemory(absl::string_view bytes);
  // A GGUF view of a model another container holds (the .kpkg package, runtime/package): its
  // metadata and tensor table as given, tensor data at `data_offset` of `image` (offsets in the
  // infos relative to it, `raw_types[i]` the ggml type number of tensors[i]). Checks what the
  // parser checks: unique keys and names, rank, dims, type, alignment, every tensor inside
  // [data_offset, data_offset + data_size); errors name the key or tensor. version() is 3.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromParts(
      std::shared_ptr<const FileImage> image, uint64_t data_offset, uint64_t data_size,
      uint32_t alignment, std::vector<GgufKeyValue> kvs, std::vector<GgufTensorInfo> tensors,
      const std::vector<uint32_t>& raw_types);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t file_size() const { return size_; }
  // Start of the tensor data section: the header end rounded up to alignment(). May equal
  // file_size() (or exceed it by padding that a tensor-less file omits).
  uint64_t data_offset() const { return data_offset_; }
  bool is_mmapped() const { return mmapped_; }
  // With mmap: drops the mapped pages from this process's resident set (they are read back from
  // the file on the next access, so every pointer stays valid). For after the weights were copied
  // to a device, so a loaded model does not hold the file and its copy at once. No-op otherwise.
  void ReleaseResidentPages() const;
  // Same for the whole pages inside [ptr, ptr + bytes) of this file's image (e.g. one tensor).
  void ReleaseResidentRange(const uint8_t* ptr, uint64_t bytes) const;
  // The whole file image.
  const uint8_t* data() const { return data_; }
  // The image this file (or view) lives in; a package keeps it alive for its prepared sections.
  const std::shared_ptr<const FileImage>& image() const { return image_; }

  // ---- metadata ----
  const std::vector<GgufKeyValue>& metadata() const { return kvs_; }  // file order
  const GgufValue* Find(absl::string_view key) const;                // nullptr if absent

  // Typed getters. NOT_FOUND naming the key when it is absent; INVALID_ARGUMENT naming the key and
  // the actual type (or value) when it has the wrong type or does not fit.
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<uint32_t> GetU32(absl::string_view key) const;  // any integer type in range
  absl::StatusOr<uint64_t> GetU64(absl::string_view key) const;  // any integer type >= 0
  absl::StatusOr<int64_t> GetI64(absl::string_view key) const;   // any integer type in range
  absl::StatusOr<float> GetF32(absl::string_view key) const;     // FLOAT32 or FLOAT64
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  // A view of the stored strings (no copy); valid while this GgufFile lives.
  absl::StatusOr<absl::Span<const std::string>> GetStringArray(absl::string_view key) const;
  absl::StatusOr<std::vector<float>> GetF32Array(absl::string_view key) const;    // FLOAT32/64 elems
  absl::StatusOr<std::vector<int32_t>> GetI32Array(absl::string_view key) const;  // ints in range

  // ---- tensors ----
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // file order
  const GgufTensorInfo* FindTensor(absl::string_view name) const;        // nullptr if absent
  // First byte of the tensor's data; the info must come from this file's tensors().
  const uint8_t* TensorData(const GgufTensorInfo& info) const {
    return data_ + data_offset_ + info.offset_in_data;
  }

 private:
  class Parser;
  GgufFile() = default;
  static absl::StatusOr<std::unique_ptr<GgufFile>> Finish(std::shared_ptr<const FileImage> image);
  absl::StatusOr<const GgufValue*> FindOrError(absl::string_view key) const;

  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mmapped_ = false;
  std::shared_ptr<const FileImage> image_;  // owns data_

  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> kvs_;
  std::vector<GgufTensorInfo> tensors_;
  // Keys point into the file image (stable for the lifetime of this object).
  absl::flat_hash_map<absl::string_view, size_t> kv_index_;
  absl::flat_hash_map<absl::string_view, size_t> tensor_index_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GGUF_GGUF_FILE_H_
