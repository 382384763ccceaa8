// runtime/package/checksum.h: XXH64 (seed 0), the checksum of package sections and session
// states, written from the published algorithm. Streaming, so multi-gigabyte sections are hashed
// as they are written.
#ifndef KESTREL_RUNTIME_PACKAGE_CHECKSUM_H_
#define KESTREL_RUNTIME_PACKAGE_CHECKSUM_H_

#include <cstddef>
#include <cstdint>

namespace kestrel {
namespace runtime {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void Update(const void* data, size_t size);
  uint64_t Digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  uint8_t buf_[32];
  size_t buffered_ = 0;
};

uint64_t Xxh64Of(const void* data, size_t size, uint64_t seed = 0);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_CHECKSUM_H_
