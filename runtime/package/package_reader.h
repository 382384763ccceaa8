// runtime/package/: the Kestrel model package (.kpkg) and session-state (.kstate) formats: the
// FlatBuffers schemas (kpkg.fbs, kstate.fbs), the fixed container header (container.h), the
// reader and writer of packages, the state codec, checksums and the model fingerprint. It knows
// GGUF (runtime/gguf) but no architecture, device or session: runtime/model and runtime/session
// use it.
//
// PackageReader opens a .kpkg: maps it, checks the header and manifest checksums, runs the
// FlatBuffers Verifier on the manifest, then checks every section, tensor and prepared-weight
// range against the file before anything uses it. The model (and the draft, if any) come out as
// GgufFile views over the mapped file (GgufFile::FromParts), so architectures, tokenizers and
// weight tables read a package exactly as they read a GGUF. Errors name the package, the field
// and the bad value. Tensor bytes are not hashed at open (that would cost what mapping saves):
// VerifyData() checks every section's checksum (`kestrel info --verify`).
//
// Thread-safety: immutable after Open.
#ifndef KESTREL_RUNTIME_PACKAGE_PACKAGE_READER_H_
#define KESTREL_RUNTIME_PACKAGE_PACKAGE_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/gguf/file_image.h"
#include "runtime/gguf/gguf_file.h"

namespace kestrel {
namespace runtime {

constexpr char kPackageMagic[] = "KPKG";
constexpr uint16_t kPackageFormatMajor = 1;
constexpr uint16_t kPackageFormatMinor = 0;
constexpr uint64_t kPackageSectionAlignment = 64 * 1024;
constexpr uint64_t kPreparedAlignment = 64;

struct PackageSection {
  uint64_t offset = 0, size = 0, checksum = 0;
};

// One plugin's prepared weights inside a package.
struct PreparedSet {
  std::string plugin, plugin_version, device_fingerprint;
  PackageSection section;
  struct Blob {
    const uint8_t* data = nullptr;  // inside the mapped package
    uint64_t size = 0;
  };
  absl::flat_hash_map<std::string, Blob> weights;  // by weight-table name
};

// One model of a package (the main model or the draft).
struct PackageModel {
  std::string role, architecture, source_name;
  uint64_t fingerprint = 0, source_size = 0;
  PackageSection data;
  uint32_t n_tensors = 0;
  std::vector<PreparedSet> prepared;
  // The prepared set for this plugin name, version and fingerprint, or nullptr.
  const PreparedSet* FindPrepared(absl::string_view plugin, absl::string_view version,
                                  absl::string_view fingerprint) const;
};

struct PackageOpenOptions {
  bool use_mmap = true;
};

class PackageReader {
 public:
  static absl::StatusOr<std::unique_ptr<PackageReader>> Open(const std::string& path,
                                                             const PackageOpenOptions& options = {});
  // Whether the file at `path` starts with the package magic (false when it cannot be read).
  static bool IsPackage(const std::string& path);
  // Over an image already in memory (tests, fuzzing); `what` names it in messages.
  static absl::StatusOr<std::unique_ptr<PackageReader>> FromImage(
      std::shared_ptr<const FileImage> image, const std::string& what);

  uint16_t format_major() const { return major_; }
  uint16_t format_minor() const { return minor_; }
  const std::string& producer() const { return producer_; }
  uint64_t file_size() const { return image_->size(); }

  const PackageModel& model() const { return model_; }
  bool has_draft() const { return has_draft_; }
  const PackageModel& draft() const { return draft_; }

  // The model (or draft) as a GGUF view over the mapped package; each call builds a new view.
  absl::StatusOr<std::unique_ptr<GgufFile>> ModelFile() const { return File(false); }
  absl::StatusOr<std::unique_ptr<GgufFile>> DraftFile() const;

  // Checks every section's checksum: DATA_LOSS naming the first damaged section.
  absl::Status VerifyData() const;

  const std::shared_ptr<const FileImage>& image() const { return image_; }

 private:
  PackageReader() = default;
  absl::Status Parse();
  absl::StatusOr<std::unique_ptr<GgufFile>> File(bool draft) const;

  std::string what_;
  std::shared_ptr<const FileImage> image_;
  const uint8_t* manifest_ = nullptr;
  uint64_t manifest_end_ = 0;
  uint16_t major_ = 0, minor_ = 0;
  std::string producer_;
  PackageModel model_, draft_;
  bool has_draft_ = false;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_PACKAGE_READER_H_
