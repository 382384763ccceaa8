// runtime/package/package_writer.h: writes a .kpkg from a GGUF (already opened and validated) and,
// optionally, a draft model and prepared weights that a plugin exported. The layout
// (container.h): the 64-byte header, the manifest, then 64 KiB-aligned sections: each model's
// tensor data (tensors 64-byte aligned inside), then each prepared set (weights 64-byte aligned).
// The file is written to "<path>.tmp" and renamed into place when complete, so a failed or
// cancelled pack never leaves a half-written package under the final name.
#ifndef KESTREL_RUNTIME_PACKAGE_PACKAGE_WRITER_H_
#define KESTREL_RUNTIME_PACKAGE_PACKAGE_WRITER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_file.h"

namespace kestrel {
namespace runtime {

// One plugin's prepared layout of a model's weights.
struct PreparedExport {
  std::string plugin, plugin_version, device_fingerprint;
  std::vector<std::string> weight_names;  // weight-table names
  // The prepared bytes of weight i (called once per weight, in order).
  std::function<absl::StatusOr<std::vector<uint8_t>>(size_t i)> export_weight;
};

struct PackageModelSource {
  const GgufFile* file = nullptr;
  std::string role;         // "main", "draft"
  std::string source_name;  // file name of the GGUF
  uint64_t source_size = 0;
  uint64_t fingerprint = 0;  // ModelFingerprint(*file)
  std::vector<PreparedExport> prepared;
};

// `progress` gets a fraction in [0, 1]; an error from it (CANCELLED) stops the write.
absl::Status WritePackage(const std::string& path, const PackageModelSource& model,
                          const PackageModelSource* draft,
                          const std::function<absl::Status(float)>& progress = nullptr);

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_PACKAGE_PACKAGE_WRITER_H_
