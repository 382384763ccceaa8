// runtime/gguf/gguf_writer.h: a streaming GGUF v3 writer.
//
// Usage: declare all metadata (AddKv / Add*) and tensors (AddTensor), then Open a destination, which
// writes the header and tensor table; then stream each tensor's bytes in declaration order with
// WriteTensorData (any number of chunks per tensor), then Close. Only the header lives in memory, so
// a generator can write a model far larger than RAM. Alignment padding (zeros) follows every tensor,
// as llama.cpp writes it.
//
// Errors: INVALID_ARGUMENT for a bad declaration (duplicate key/tensor, bad rank, dims or row
// length, alignment not a power of two); FAILED_PRECONDITION for calls out of order or byte counts
// that do not match the declared tensors; the errno-mapped code for I/O failures.
// Thread-safety: none; one writer per thread.
#ifndef KESTREL_RUNTIME_GGUF_GGUF_WRITER_H_
#define KESTREL_RUNTIME_GGUF_GGUF_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/gguf/ggml_type.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/gguf/gguf_value.h"

namespace kestrel {
namespace runtime {

class GgufWriter {
 public:
  // `alignment` must be a nonzero power of two; when it differs from 32 the writer records it as
  // general.alignment (UINT32), first in the metadata.
  explicit GgufWriter(uint32_t alignment = GgufFile::kDefaultAlignment);
  ~GgufWriter();  // closes an open destination without checking completeness
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // ---- declaration (before Open) ----
  absl::Status AddKv(std::string key, GgufValue value);
  absl::Status AddString(std::string key, std::string v) {
    return AddKv(std::move(key), GgufValue::String(std::move(v)));
  }
  absl::Status AddU32(std::string key, uint32_t v) { return AddKv(std::move(key), GgufValue::U32(v)); }
  absl::Status AddI32(std::string key, int32_t v) { return AddKv(std::move(key), GgufValue::I32(v)); }
  absl::Status AddU64(std::string key, uint64_t v) { return AddKv(std::move(key), GgufValue::U64(v)); }
  absl::Status AddF32(std::string key, float v) { return AddKv(std::move(key), GgufValue::F32(v)); }
  absl::Status AddBool(std::string key, bool v) { return AddKv(std::move(key), GgufValue::Bool(v)); }
  absl::Status AddStringArray(std::string key, std::vector<std::string> v) {
    return AddKv(std::move(key), GgufValue::StringArray(std::move(v)));
  }
  absl::Status AddF32Array(std::string key, absl::Span<const float> v) {
    return AddKv(std::move(key), GgufValue::F32Array(v));
  }
  absl::Status AddI32Array(std::string key, absl::Span<const int32_t> v) {
    return AddKv(std::move(key), GgufValue::I32Array(v));
  }

  // dims in ggml ne order (dims[0] = row length), rank 1..4, each >= 1, dims[0] a multiple of the
  // type's block size.
  absl::Status AddTensor(std::string name, GgmlType type, std::vector<uint64_t> dims);

  // Declared tensors with their final offsets and sizes (valid once added).
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  // ---- output ----
  // Creates/truncates `path` and writes the header. The file is complete only after Close() is OK.
  absl::Status OpenFile(const std::string& path);
  // Appends the file image to *out (for tests and in-memory models); *out must outlive the writer.
  absl::Status OpenString(std::string* out);

  // Appends bytes of the current tensor (declaration order); a chunk may not cross into the next
  // tensor. Padding is written automatically when a tensor is complete.
  absl::Status WriteTensorData(const void* data, size_t size);
  // Whole-tensor convenience: `name` must be the current tensor and `size` its full size.
  absl::Status WriteTensor(absl::string_view name, const void* data, size_t size);

  // Checks that every tensor was fully written, flushes and closes the destination.
  absl::Status Close();

  class Sink;  // internal

 private:
  absl::Status WriteHeader();
  absl::Status WritePadding(uint64_t n);

  uint32_t alignment_;
  std::vector<GgufKeyValue> kvs_;
  absl::flat_hash_set<std::string> keys_;
  std::vector<GgufTensorInfo> tensors_;
  absl::flat_hash_set<std::string> tensor_names_;
  uint64_t next_offset_ = 0;  // running padded data size

  std::unique_ptr<Sink> sink_;
  bool opened_ = false;
  bool closed_ = false;
  size_t current_ = 0;           // index of the tensor being written
  uint64_t current_written_ = 0;  // bytes of it written so far
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GGUF_GGUF_WRITER_H_
