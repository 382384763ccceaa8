#include "runtime/model/model_packer.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/arch/common/metadata.h"
#include "runtime/model/model.h"
#include "runtime/package/fingerprint.h"
#include "runtime/package/package_reader.h"
#include "runtime/package/package_writer.h"

namespace kestrel {
namespace runtime {
namespace {

std::string BaseName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

absl::StatusOr<std::unique_ptr<GgufFile>> OpenGguf(const std::string& path, const char* what) {
  if (PackageReader::IsPackage(path)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s '%s' is already a .kpkg package; pack from the GGUF it was made from", what, path));
  }
  return GgufFile::Open(path);
}

// The prepared layout of `model`'s weights on its device, exported weight by weight as the
// writer asks for them.
absl::StatusOr<PreparedExport> ExportFor(const Model& model) {
  hal::Device* device = model.device();
  absl::StatusOr<std::string> layout = device->WeightLayoutId();
  if (!layout.ok()) return layout.status();
  if (layout->empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device '%s' (plugin '%s' %s) cannot export prepared weights (no plugin ABI 1.4 "
        "weight_export), so a package cannot carry them",
        device->name(), device->plugin_name(), device->plugin_version()));
  }
  PreparedExport e;
  e.plugin = device->plugin_name();
  e.plugin_version = device->plugin_version();
  e.device_fingerprint = *layout;
  // Not the parts of a fused matrix (runtime/arch/fused_weights.h): plans use the fused one, and
  // a load that runs them alone (no fusion) prepares them then.
  std::vector<int> ids;
  const std::vector<WeightTensor>& tensors = model.weights().tensors;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].fused_into >= 0) continue;
    ids.push_back(static_cast<int>(i));
    e.weight_names.push_back(tensors[i].name);
  }
  e.export_weight = [&model, device, ids](size_t i) -> absl::StatusOr<std::vector<uint8_t>> {
    absl::StatusOr<const hal::PreparedWeight*> p = model.Prepared(ids[i], device);
    if (!p.ok()) return p.status();
    return device->ExportWeight(**p);
  };
  return e;
}

}  // namespace

absl::Status PackModel(const PackOptions& options) {
  if (options.model_path.empty() || options.output_path.empty()) {
    return absl::InvalidArgumentError("pack: the model path and the output path are required");
  }
  auto cancelled = [&](float f) -> absl::Status {
    if (options.progress && !options.progress(f)) {
      return absl::CancelledError(absl::StrFormat("pack cancelled at %.0f%%", f * 100));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::unique_ptr<GgufFile>> gguf = OpenGguf(options.model_path, "model");
  if (!gguf.ok()) return gguf.status();
  PackageModelSource main;
  main.file = gguf->get();
  main.role = "main";
  main.source_name = BaseName(options.model_path);
  main.source_size = (*gguf)->file_size();
  main.fingerprint = ModelFingerprint(**gguf);

  // Loaded models must outlive the write: their prepared weights are exported during it.
  std::vector<std::unique_ptr<Model>> loaded;
  for (hal::Device* device : options.devices) {
    absl::StatusOr<std::unique_ptr<Model>> m = Model::Load(options.model_path, device, {});
    if (!m.ok()) return m.status();
    loaded.push_back(std::move(*m));
    absl::StatusOr<PreparedExport> e = ExportFor(*loaded.back());
    if (!e.ok()) return e.status();
    main.prepared.push_back(std::move(*e));
  }
  std::unique_ptr<GgufFile> draft_file;
  PackageModelSource draft;
  if (!options.draft_path.empty()) {
    absl::StatusOr<std::unique_ptr<GgufFile>> d = OpenGguf(options.draft_path, "draft");
    if (!d.ok()) return d.status();
    draft_file = std::move(*d);
    draft.file = draft_file.get();
    draft.role = "draft";
    draft.source_name = BaseName(options.draft_path);
    draft.source_size = draft_file->file_size();
    draft.fingerprint = ModelFingerprint(*draft_file);
  }
  KESTREL_RETURN_IF_ERROR(cancelled(0.0f));
  KESTREL_RETURN_IF_ERROR(WritePackage(options.output_path, main,
                                       draft_file != nullptr ? &draft : nullptr, cancelled));
  return cancelled(1.0f);
}

}  // namespace runtime
}  // namespace kestrel
