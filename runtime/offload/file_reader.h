// runtime/offload/file_reader.h: reads byte ranges of a model file for the expert cache and the
// weight streamer, with direct I/O (O_DIRECT: no page-cache copy, so a host budget means what it says) where the
// filesystem allows it, else plain pread (tmpfs and some others refuse O_DIRECT; the page cache is
// then told to drop what was read). Reads land in one aligned staging buffer owned here.
#ifndef KESTREL_RUNTIME_OFFLOAD_FILE_READER_H_
#define KESTREL_RUNTIME_OFFLOAD_FILE_READER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kestrel {
namespace runtime {
namespace offload {

class FileReader {
 public:
  // `max_read`: the largest range Read will be asked for (sizes the staging buffer).
  // `allow_direct` false forces pread (for tests and comparisons). `who` starts its messages.
  static absl::StatusOr<std::unique_ptr<FileReader>> Open(const std::string& path,
                                                          uint64_t max_read, bool allow_direct,
                                                          const std::string& who = "expert cache");
  ~FileReader();

  // The staging buffer Open allocates for `max_read` (planners budget it before opening).
  static uint64_t StagingBytes(uint64_t max_read);

  // Bytes [offset, offset + bytes) of the file; the pointer stays valid until the next Read.
  // OUT_OF_RANGE past max_read, DATA_LOSS on a short read, the errno text otherwise.
  absl::StatusOr<const uint8_t*> Read(uint64_t offset, uint64_t bytes);

  // Asks the kernel to drop the range's clean, unmapped pages from the page cache (advice;
  // bytes 0: to the end of the file).
  void Drop(uint64_t offset, uint64_t bytes) const;

  // What the last successful Read returned (nullptr before one).
  const uint8_t* last() const { return last_; }
  bool direct() const { return direct_fd_ >= 0; }
  // "direct I/O (O_DIRECT)" or "pread (O_DIRECT refused: <reason>)".
  const std::string& mode() const { return mode_; }
  // The staging buffer's size: memory this reader holds.
  uint64_t staging_bytes() const { return capacity_; }
  uint64_t bytes_read() const { return bytes_read_; }
  double read_seconds() const { return read_seconds_; }

 private:
  FileReader() = default;
  absl::Status ReadAll(int fd, uint64_t offset, uint64_t bytes, uint8_t* out);

  std::string path_, mode_, who_;
  int fd_ = -1, direct_fd_ = -1;
  uint8_t* buffer_ = nullptr;
  const uint8_t* last_ = nullptr;
  uint64_t capacity_ = 0, max_read_ = 0, file_size_ = 0;
  uint64_t bytes_read_ = 0;
  double read_seconds_ = 0;
};

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_OFFLOAD_FILE_READER_H_
