// What lets mutations of a Kestrel container (runtime/package/container.h: .kpkg, .kstate,
// .kprefix) reach the code behind its checksums: the fuzz targets reseal a mutated input (header
// checksum, total size, manifest checksum and, for states and prefix caches, the data checksum
// inside the manifest) before handing it to the reader, as a PNG fuzzer fixes the CRCs; the
// unsealed input is tried first, so the checks themselves are fuzzed too. And the package's
// squeezed form: a .kpkg puts its first section at the next 64 KiB boundary after the manifest;
// the seeds leave those zero bytes out (SqueezePackage) and the target puts them back
// (ExpandPackage), so a seed stays small enough for libFuzzer's -max_len and mutations land on
// the manifest and the data, not on padding. Used by package_fuzzer, session_state_fuzzer and the
// seed generator (fuzz_seeds.cc).
#ifndef KESTREL_TESTS_FUZZ_CONTAINER_RESEAL_H_
#define KESTREL_TESTS_FUZZ_CONTAINER_RESEAL_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"
#include "runtime/package/checksum.h"
#include "runtime/package/container.h"
#include "runtime/package/package_reader.h"

namespace kestrel::fuzz {

// Header fields (container.h).
constexpr size_t kManifestOffsetAt = 16, kManifestSizeAt = 24, kManifestChecksumAt = 32,
                 kTotalSizeAt = 40, kHeaderChecksumAt = 56;

inline uint64_t GetLe64(const std::string& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(b[at + i])} << (8 * i);
  return v;
}
inline void PutLe64(std::string* b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) (*b)[at + i] = static_cast<char>(v >> (8 * i));
}

// The manifest range the header of `b` names, when it lies inside `b`.
inline bool ManifestRange(const std::string& b, uint64_t* offset, uint64_t* size) {
  if (b.size() < runtime::kContainerHeaderSize) return false;
  *offset = GetLe64(b, kManifestOffsetAt);
  *size = GetLe64(b, kManifestSizeAt);
  return *offset >= runtime::kContainerHeaderSize && *offset <= b.size() &&
         *size <= b.size() - *offset;
}

// The manifest checksum (when the manifest range lies inside), the total size and the header
// checksum of the container in `b`, recomputed from its bytes.
inline void ResealContainer(std::string* b) {
  if (b->size() < runtime::kContainerHeaderSize) return;
  uint64_t off = 0, size = 0;
  if (ManifestRange(*b, &off, &size)) {
    PutLe64(b, kManifestChecksumAt, runtime::Xxh64Of(b->data() + off, size));
  }
  PutLe64(b, kTotalSizeAt, b->size());
  PutLe64(b, kHeaderChecksumAt, runtime::Xxh64Of(b->data(), kHeaderChecksumAt));
}

// For a state or prefix cache (Root: kstate::SessionState, kprefix::PrefixCache): writes the
// checksum of the data section the manifest names into its data_checksum field, when the manifest
// passes `verify` (the generated Verify<Root>Buffer) and the range lies inside `b`.
template <typename Root, typename VerifyFn>
void ResealDataChecksum(std::string* b, VerifyFn verify) {
  uint64_t off = 0, size = 0;
  if (!ManifestRange(*b, &off, &size) || size < 8 || off % 8 != 0) return;
  uint8_t* manifest = reinterpret_cast<uint8_t*>(&(*b)[off]);
  flatbuffers::Verifier verifier(manifest, static_cast<size_t>(size), 64, 1'000'000);
  if (!verify(verifier)) return;
  auto* table = flatbuffers::GetMutableRoot<flatbuffers::Table>(manifest);
  const uint64_t data_offset = table->GetField<uint64_t>(Root::VT_DATA_OFFSET, 0);
  const uint64_t data_size = table->GetField<uint64_t>(Root::VT_DATA_SIZE, 0);
  uint8_t* field = table->GetAddressOf(Root::VT_DATA_CHECKSUM);
  if (field == nullptr || data_offset > b->size() || data_size > b->size() - data_offset) return;
  const uint64_t checksum = runtime::Xxh64Of(b->data() + data_offset, data_size);
  for (int i = 0; i < 8; ++i) field[i] = static_cast<uint8_t>(checksum >> (8 * i));
}

// The .kpkg `squeezed` with the zero bytes between the end of its manifest and the next 64 KiB
// boundary put back (unchanged when its header names no manifest inside it).
inline std::string ExpandPackage(absl::string_view squeezed) {
  std::string b(squeezed);
  uint64_t off = 0, size = 0;
  if (!ManifestRange(b, &off, &size)) return b;
  const uint64_t end = off + size;
  const uint64_t data = runtime::AlignUp(end, runtime::kPackageSectionAlignment);
  b.insert(static_cast<size_t>(end), static_cast<size_t>(data - end), '\0');
  return b;
}

// The inverse, for the seeds: false when `file` does not have that layout (then use it whole).
inline bool SqueezePackage(const std::string& file, std::string* out) {
  uint64_t off = 0, size = 0;
  if (!ManifestRange(file, &off, &size)) return false;
  const uint64_t end = off + size;
  const uint64_t data = runtime::AlignUp(end, runtime::kPackageSectionAlignment);
  if (data > file.size()) return false;
  for (uint64_t i = end; i < data; ++i) {
    if (file[i] != '\0') return false;
  }
  *out = file.substr(0, end) + file.substr(data);
  return ExpandPackage(*out) == file;
}

}  // namespace kestrel::fuzz

#endif  // KESTREL_TESTS_FUZZ_CONTAINER_RESEAL_H_
