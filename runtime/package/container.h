// runtime/package/container.h: the fixed 64-byte header that starts a Kestrel package (.kpkg,
// magic "KPKG") and a session state (.kstate, magic "KSTA"), and its checks. After the header
// comes one FlatBuffer manifest (kpkg.fbs / kstate.fbs), then data sections.
//
//   offset  size  field
//        0     4  magic
//        4     2  format major (a reader refuses another major)
//        6     2  format minor (any minor is read; unknown manifest fields are ignored)
//        8     4  header size (64)
//       12     4  flags (0)
//       16     8  manifest offset (64)
//       24     8  manifest size
//       32     8  manifest checksum (XXH64 of the manifest bytes)
//       40     8  total size (the file or state buffer)
//       48     8  reserved (0)
//       56     8  header checksum (XXH64 of bytes [0, 56))
// All little-endian.
#ifndef KESTREL_RUNTIME_PACKAGE_CONTAINER_H_
#define KESTREL_RUNTIME_PACKAGE_CONTAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kestrel {
namespace runtime {

constexpr uint32_t kContainerHeaderSize = 64;

struct ContainerHeader {
  char magic[4] = {0, 0, 0, 0};
  uint16_t major = 0;
  uint16_t minor = 0;
  uint64_t manifest_offset = kContainerHeaderSize;
  uint64_t manifest_size = 0;
  uint64_t manifest_checksum = 0;
  uint64_t total_size = 0;
};

// Whether `data` starts with `magic` (4 bytes).
bool HasMagic(const void* data, uint64_t size, absl::string_view magic);

// The 64 header bytes of `h` (checksum filled in).
std::string EncodeContainerHeader(const ContainerHeader& h);

// Reads and checks the header of a container of `size` bytes at `data`: the magic, the header
// checksum, the major version (== `major`), the total size (== `size`: a shorter one is a
// truncated file), the manifest range and its checksum. `what` names the container in messages
// ("package 'x.kpkg'", "session state"). Codes: INVALID_ARGUMENT (not this container kind),
// DATA_LOSS (truncated, checksum mismatch), UNIMPLEMENTED (another major version).
absl::StatusOr<ContainerHeader> ReadContainerHeader(const uint8_t* data, uint64_t size,
                                                    absl::string_view magic, uint16_t major,
                                                    absl::string_view what);

// Rounds `v` up to a multiple of `align` (a power of two).
// Writes `bytes` to "<path>.tmp" and renames it to `path` when complete: a failed write leaves
// neither a partial file nor the .tmp behind. Errors carry the errno-mapped code and the path.
absl::Status WriteFileAtomically(const std::string& path, const std::vector<uint8_t>& bytes);

inline uint64_t AlignUp(uint64_t v, uint64_t align) { return (v + align - 1) & ~(align - 1); }

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_CONTAINER_H_
