#include "runtime/package/container.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/package/checksum.h"

namespace kestrel {
namespace runtime {
namespace {

void Put16(std::string* s, size_t at, uint16_t v) {
  for (int i = 0; i < 2; ++i) (*s)[at + i] = static_cast<char>(v >> (8 * i));
}
void Put32(std::string* s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[at + i] = static_cast<char>(v >> (8 * i));
}
void Put64(std::string* s, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) (*s)[at + i] = static_cast<char>(v >> (8 * i));
}
uint64_t Get(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

bool HasMagic(const void* data, uint64_t size, absl::string_view magic) {
  return size >= magic.size() && std::memcmp(data, magic.data(), magic.size()) == 0;
}

std::string EncodeContainerHeader(const ContainerHeader& h) {
  std::string s(kContainerHeaderSize, '\0');
  std::memcpy(&s[0], h.magic, 4);
  Put16(&s, 4, h.major);
  Put16(&s, 6, h.minor);
  Put32(&s, 8, kContainerHeaderSize);
  Put32(&s, 12, 0);
  Put64(&s, 16, h.manifest_offset);
  Put64(&s, 24, h.manifest_size);
  Put64(&s, 32, h.manifest_checksum);
  Put64(&s, 40, h.total_size);
  Put64(&s, 48, 0);
  Put64(&s, 56, Xxh64Of(s.data(), 56));
  return s;
}

absl::StatusOr<ContainerHeader> ReadContainerHeader(const uint8_t* data, uint64_t size,
                                                    absl::string_view magic, uint16_t major,
                                                    absl::string_view what) {
  if (size < 4 || !HasMagic(data, size, magic)) {
    const std::string got(reinterpret_cast<const char*>(data), size < 4 ? size : 4);
    return absl::InvalidArgumentError(absl::StrFormat("%s: not a %s container (magic '%s', expected '%s')",
                                                      what, magic, absl::CHexEscape(got), magic));
  }
  if (size < kContainerHeaderSize) {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated: %u bytes, shorter than the %u-byte header", what, size, kContainerHeaderSize));
  }
  if (Get(data + 56, 8) != Xxh64Of(data, 56)) {
    return absl::DataLossError(absl::StrFormat("%s: header checksum mismatch (the header is damaged)", what));
  }
  ContainerHeader h;
  std::memcpy(h.magic, data, 4);
  h.major = static_cast<uint16_t>(Get(data + 4, 2));
  h.minor = static_cast<uint16_t>(Get(data + 6, 2));
  if (h.major != major) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s: format version %u.%u, this build reads version %u.x", what, h.major, h.minor, major));
  }
  const uint64_t header_size = Get(data + 8, 4);
  h.manifest_offset = Get(data + 16, 8);
  h.manifest_size = Get(data + 24, 8);
  h.manifest_checksum = Get(data + 32, 8);
  h.total_size = Get(data + 40, 8);
  if (header_size != kContainerHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: header size %u, expected %u", what, header_size, kContainerHeaderSize));
  }
  if (h.total_size != size) {
    return absl::DataLossError(absl::StrFormat(
        "%s: %s: the header says %u bytes, there are %u", what,
        size < h.total_size ? "truncated" : "trailing bytes", h.total_size, size));
  }
  if (h.manifest_offset < kContainerHeaderSize || h.manifest_offset % 8 != 0 ||
      h.manifest_offset > size || h.manifest_size > size - h.manifest_offset ||
      h.manifest_size < 8) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: manifest [%u, +%u) does not fit the %u bytes", what, h.manifest_offset,
        h.manifest_size, size));
  }
  if (Xxh64Of(data + h.manifest_offset, h.manifest_size) != h.manifest_checksum) {
    return absl::DataLossError(
        absl::StrFormat("%s: manifest checksum mismatch (the manifest is damaged)", what));
  }
  return h;
}

absl::Status WriteFileAtomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create '", tmp, "'"));
  const size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int err = written == bytes.size() ? 0 : errno;
  if (std::fclose(f) != 0 || err != 0 || written != bytes.size()) {
    std::remove(tmp.c_str());
    return absl::ErrnoToStatus(err != 0 ? err : EIO, absl::StrCat("writing '", tmp, "'"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    return absl::ErrnoToStatus(e, absl::StrCat("renaming '", tmp, "' to '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace kestrel
