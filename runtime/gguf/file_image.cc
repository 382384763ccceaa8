#include "runtime/gguf/file_image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>

#include "absl/strings/str_cat.h"

namespace kestrel {
namespace runtime {
namespace {

constexpr size_t kBufferAlignment = 4096;

void FreeHeap(void* p) {
  if (p != nullptr) ::operator delete(p, std::align_val_t(kBufferAlignment));
}

void* AllocHeap(uint64_t size) {
  if (size > std::numeric_limits<size_t>::max() - kBufferAlignment) return nullptr;
  const size_t n = size == 0 ? 1 : static_cast<size_t>(size);
  return ::operator new(n, std::align_val_t(kBufferAlignment), std::nothrow);
}

}  // namespace

FileImage::~FileImage() {
  if (mmapped_) munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
  FreeHeap(heap_);
}

void FileImage::ReleaseResidentRange(const uint8_t* ptr, uint64_t bytes) const {
  if (!mmapped_ || size_ == 0 || ptr < data_ || ptr >= data_ + size_) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(ptr) + page - 1) & ~(page - 1);
  const uintptr_t end_raw = reinterpret_cast<uintptr_t>(ptr) +
                            std::min<uint64_t>(bytes, static_cast<uint64_t>(data_ + size_ - ptr));
  const uintptr_t end = end_raw & ~(page - 1);
  // Advice only: on failure the pages simply stay resident.
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

absl::StatusOr<std::shared_ptr<const FileImage>> FileImage::Open(const std::string& path,
                                                                 bool use_mmap,
                                                                 absl::string_view prefix) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(prefix, "cannot open"));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};

  struct stat st;
  if (::fstat(fd, &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat(prefix, "fstat"));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      size > std::numeric_limits<size_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "file size ", size, " is too large"));
  }

  std::shared_ptr<FileImage> image(new FileImage());
  image->size_ = size;
  if (use_mmap && size > 0) {
    void* m = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) return absl::ErrnoToStatus(errno, absl::StrCat(prefix, "mmap"));
    image->data_ = static_cast<const uint8_t*>(m);
    image->mmapped_ = true;
    return std::shared_ptr<const FileImage>(std::move(image));
  }
  image->heap_ = AllocHeap(size);
  if (image->heap_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(prefix, "cannot allocate ", size, " bytes to read the file"));
  }
  uint8_t* dst = static_cast<uint8_t*>(image->heap_);
  uint64_t done = 0;
  while (done < size) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size - done, 1u << 30));
    const ssize_t n = ::pread(fd, dst + done, chunk, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat(prefix, "read at offset ", done));
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(prefix, "file shrank while reading: got ", done,
                                              " of ", size, " bytes"));
    }
    done += static_cast<uint64_t>(n);
  }
  image->data_ = dst;
  return std::shared_ptr<const FileImage>(std::move(image));
}

absl::StatusOr<std::shared_ptr<const FileImage>> FileImage::Copy(absl::string_view bytes) {
  std::shared_ptr<FileImage> image(new FileImage());
  image->heap_ = AllocHeap(bytes.size());
  if (image->heap_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes.size(), " bytes for a file image"));
  }
  if (!bytes.empty()) std::memcpy(image->heap_, bytes.data(), bytes.size());
  image->data_ = static_cast<const uint8_t*>(image->heap_);
  image->size_ = bytes.size();
  return std::shared_ptr<const FileImage>(std::move(image));
}

}  // namespace runtime
}  // namespace kestrel
