#include "runtime/offload/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kestrel {
namespace runtime {
namespace offload {
namespace {

// O_DIRECT needs offsets, lengths and the buffer aligned to the logical block size; 4096 covers
// every common device.
constexpr uint64_t kAlign = 4096;

uint64_t RoundUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

}  // namespace

uint64_t FileReader::StagingBytes(uint64_t max_read) {
  return RoundUp(max_read) + kAlign;  // an unaligned range spans one more block
}

absl::StatusOr<std::unique_ptr<FileReader>> FileReader::Open(const std::string& path,
                                                             uint64_t max_read, bool allow_direct,
                                                             const std::string& who) {
  std::unique_ptr<FileReader> r(new FileReader());
  r->who_ = who + ": ";
  r->path_ = path;
  r->max_read_ = max_read;
  r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (r->fd_ < 0) {
    return absl::NotFoundError(absl::StrCat(r->who_, "cannot open '", path, "': ",
                                            std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(r->fd_, &st) != 0) {
    return absl::InternalError(absl::StrCat(r->who_, "cannot stat '", path, "': ",
                                            std::strerror(errno)));
  }
  r->file_size_ = static_cast<uint64_t>(st.st_size);
  // Buffered reads (the fallback) fetch what is asked, no readahead the drop after each would miss.
  ::posix_fadvise(r->fd_, 0, 0, POSIX_FADV_RANDOM);
  r->capacity_ = StagingBytes(max_read);
  r->buffer_ = static_cast<uint8_t*>(std::aligned_alloc(kAlign, r->capacity_));
  if (r->buffer_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(r->who_, "cannot allocate a ", r->capacity_, "-byte staging buffer"));
  }
  std::string why = "disabled by the caller";
  if (allow_direct) {
    r->direct_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (r->direct_fd_ < 0) {
      why = std::strerror(errno);
    } else {
      // Some filesystems accept the flag at open and refuse the read: try one block.
      const ssize_t n = ::pread(r->direct_fd_, r->buffer_, kAlign, 0);
      if (n < 0) {
        why = std::strerror(errno);
        ::close(r->direct_fd_);
        r->direct_fd_ = -1;
      }
    }
  }
  r->mode_ = r->direct_fd_ >= 0 ? "direct I/O (O_DIRECT)"
                                : absl::StrCat("pread (O_DIRECT refused: ", why, ")");
  return r;
}

FileReader::~FileReader() {
  if (fd_ >= 0) ::close(fd_);
  if (direct_fd_ >= 0) ::close(direct_fd_);
  std::free(buffer_);
}

absl::Status FileReader::ReadAll(int fd, uint64_t offset, uint64_t bytes, uint8_t* out) {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd, out + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(absl::StrCat(who_, "reading '", path_, "' at ",
                                              offset + done, ": ", std::strerror(errno)));
    }
    if (n == 0) {
      // Direct reads of the last block stop at the end of the file; callers check their range.
      if (fd == direct_fd_) return absl::OkStatus();
      return absl::DataLossError(absl::StrCat(who_, "'", path_, "' ends at ",
                                              offset + done, ", before ", offset + bytes));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

void FileReader::Drop(uint64_t offset, uint64_t bytes) const {
  ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes), POSIX_FADV_DONTNEED);
}

absl::StatusOr<const uint8_t*> FileReader::Read(uint64_t offset, uint64_t bytes) {
  if (bytes > max_read_) {
    return absl::OutOfRangeError(absl::StrCat(who_, "a read of ", bytes,
                                              " bytes exceeds the staging size ", max_read_));
  }
  if (offset > file_size_ || bytes > file_size_ - offset) {
    return absl::OutOfRangeError(absl::StrCat(who_, "bytes [", offset, ", ",
                                              offset + bytes, ") lie past the end of '", path_,
                                              "' (", file_size_, " bytes)"));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const uint8_t* result;
  if (direct_fd_ >= 0) {
    const uint64_t start = offset / kAlign * kAlign;
    const uint64_t len = RoundUp(offset + bytes) - start;
    if (auto s = ReadAll(direct_fd_, start, len, buffer_); !s.ok()) return s;
    result = buffer_ + (offset - start);
  } else {
    if (auto s = ReadAll(fd_, offset, bytes, buffer_); !s.ok()) return s;
    // Keep the page cache from holding a second copy of what the budgeted cache now holds (the
    // whole pages the range touches: a partial page is cached whole).
    const uint64_t start = offset / kAlign * kAlign;
    Drop(start, RoundUp(offset + bytes) - start);
    result = buffer_;
  }
  read_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bytes_read_ += bytes;
  last_ = result;
  return result;
}

}  // namespace offload
}  // namespace runtime
}  // namespace kestrel
