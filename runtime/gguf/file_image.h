// runtime/gguf/file_image.h: a whole model file held read-only in memory, mapped (mmap) or read
// into a 4096-byte-aligned heap buffer. GgufFile parses one; the .kpkg package reader
// (runtime/package) maps one and hands GgufFile a view of it. Shared between the two through a
// shared_ptr, so tensor pointers stay valid as long as any view lives.
//
// Thread-safety: immutable after creation; every const method may be called concurrently.
#ifndef KESTREL_RUNTIME_GGUF_FILE_IMAGE_H_
#define KESTREL_RUNTIME_GGUF_FILE_IMAGE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kestrel {
namespace runtime {

class FileImage {
 public:
  // Maps (use_mmap) or reads `path`. Errors start with `prefix` and name the failing step
  // (errno-mapped codes; RESOURCE_EXHAUSTED when the heap buffer cannot be allocated; DATA_LOSS
  // when the file shrinks while being read).
  static absl::StatusOr<std::shared_ptr<const FileImage>> Open(const std::string& path,
                                                               bool use_mmap,
                                                               absl::string_view prefix);
  // A copy of `bytes` in an aligned heap buffer.
  static absl::StatusOr<std::shared_ptr<const FileImage>> Copy(absl::string_view bytes);

  ~FileImage();
  FileImage(const FileImage&) = delete;
  FileImage& operator=(const FileImage&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  bool mmapped() const { return mmapped_; }
  // With mmap: drops the whole pages inside [ptr, ptr + bytes) from the resident set (they are
  // read back from the file on the next access, so pointers stay valid). No-op otherwise.
  void ReleaseResidentRange(const uint8_t* ptr, uint64_t bytes) const;
  void ReleaseResidentPages() const { ReleaseResidentRange(data_, size_); }

 private:
  FileImage() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mmapped_ = false;
  void* heap_ = nullptr;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_GGUF_FILE_IMAGE_H_
