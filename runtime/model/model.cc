#include "runtime/model/model.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/arch/common/metadata.h"
#include "runtime/arch/registry.h"
#include "runtime/tokenizer/tokenizer_loader.h"

namespace kestrel {
namespace runtime {
namespace {

std::string OptionalString(const GgufFile& f, const char* key) {
  if (f.Find(key) == nullptr) return "";
  absl::StatusOr<std::string> v = f.GetString(key);
  return v.ok() ? *v : "";
}

}  // namespace

Model::~Model() {
  std::lock_guard<std::mutex> lock(prepared_mu_);
  prepared_.clear();  // release device weights before the file mapping goes away
}

absl::Status Model::Problem(const absl::Status& s) {
  if (s.ok() || !metadata_only_) return s;
  unsupported_.emplace_back(s.message());
  return absl::OkStatus();
}

absl::Status Model::ReadConfig() {
  absl::StatusOr<std::string> arch = file_->GetString("general.architecture");
  if (!arch.ok()) return Problem(arch.status());
  absl::StatusOr<const Architecture*> a = FindArchitecture(*arch);
  if (a.ok()) {
    absl::StatusOr<ModelConfig> config = (*a)->ReadConfig(*file_);
    if (config.ok()) {
      architecture_ = *a;
      config_ = std::move(*config);
      return absl::OkStatus();
    }
    KESTREL_RETURN_IF_ERROR(Problem(config.status()));
  } else {
    KESTREL_RETURN_IF_ERROR(Problem(a.status()));
  }
  config_ = ReadConfigBestEffort(*file_);  // metadata only: show what the file says
  return absl::OkStatus();
}

absl::Status Model::ReadTokenizer() {
  tokenizer_model_ = OptionalString(*file_, "tokenizer.ggml.model");
  tokenizer_pre_ = OptionalString(*file_, "tokenizer.ggml.pre");
  has_chat_template_ = file_->Find("tokenizer.chat_template") != nullptr;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(*file_);
  if (!tok.ok()) return Problem(tok.status());
  tokenizer_ = std::move(*tok);
  if (architecture_ != nullptr && tokenizer_->vocab_size() != static_cast<int32_t>(config_.n_vocab)) {
    return Problem(absl::InvalidArgumentError(absl::StrFormat(
        "the tokenizer has %d tokens but the model's vocab size is %u", tokenizer_->vocab_size(),
        config_.n_vocab)));
  }
  return absl::OkStatus();
}

absl::Status Model::DeclareWeights() {
  if (architecture_ == nullptr) return absl::OkStatus();
  WeightTableBuilder builder(*file_, /*check_types=*/!metadata_only_);
  absl::Status s = architecture_->DeclareWeights(config_, builder);
  if (!s.ok()) return Problem(s);
  weights_ = builder.Finish();
  weights_declared_ = true;
  return absl::OkStatus();
}

void Model::SummarizeTensors() {
  std::map<std::string, TensorTypeSummary> by_type;
  for (const GgufTensorInfo& t : file_->tensors()) {
    TensorTypeSummary& s = by_type[GgmlTypeName(t.type)];
    s.type_name = GgmlTypeName(t.type);
    ++s.n_tensors;
    s.n_elements += t.n_elements;
    s.n_bytes += t.size_bytes;
    n_params_ += t.n_elements;
    weight_bytes_ += t.size_bytes;
  }
  for (auto& [name, s] : by_type) tensor_types_.push_back(s);
}

// Metadata only: one problem per tensor type no plugin computes with, over the weights the plan
// would use (every tensor of the file when the architecture is unknown or its table incomplete).
void Model::RecordUnsupportedTypes() {
  struct Use {
    uint32_t count = 0;
    std::string first;
  };
  std::map<std::string, Use> bad;
  auto note = [&](GgmlType type, const std::string& name) {
    if (DtypeForGgml(type, name).ok()) return;
    Use& u = bad[GgmlTypeName(type)];
    if (u.count++ == 0) u.first = name;
  };
  if (weights_declared_) {
    for (const WeightTensor& w : weights_.tensors) note(w.ggml_type, w.name);
  } else {
    for (const GgufTensorInfo& t : file_->tensors()) note(t.type, t.name);
  }
  for (const auto& [type, u] : bad) {
    unsupported_.push_back(absl::StrFormat(
        "tensor type %s is not supported (%u tensors, e.g. '%s'; supported: %s)", type, u.count,
        u.first, SupportedGgmlTypes()));
  }
}

absl::Status Model::PrepareWeights(const std::function<absl::Status(float)>& report) {
  // Prepare every weight on the device once (the plugin may repack it).
  uint64_t done = 0, total = 0;
  for (const WeightTensor& w : weights_.tensors) total += w.bytes;
  for (size_t i = 0; i < weights_.tensors.size(); ++i) {
    // A dtype the device does not take as a weight (e.g. K-quants on opencl) is prepared on the
    // fallback device when an op first needs it there (Executor::Place -> Prepared).
    const uint32_t dtype = weights_.tensors[i].desc.dtype;
    if ((device_->caps().weight_dtype_mask & KESTREL_DTYPE_BIT(dtype)) == 0) continue;
    absl::StatusOr<const hal::PreparedWeight*> p = Prepared(static_cast<int>(i), device_);
    if (!p.ok()) return p.status();
    // The device holds its own copy now: drop this tensor's file pages from the resident set, so
    // peak memory during load is about one copy of the weights, not two.
    file_->ReleaseResidentRange(weights_.tensors[i].host_data, weights_.tensors[i].bytes);
    done += weights_.tensors[i].bytes;
    KESTREL_RETURN_IF_ERROR(
        report(0.05f + 0.95f * static_cast<float>(done) / static_cast<float>(total ? total : 1)));
  }
  // Plugins copy (or repack) weights in weight_prepare, so the mapped file pages are no longer
  // needed resident; without this a loaded model costs the file size twice in RSS.
  file_->ReleaseResidentPages();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path, hal::Device* device,
                                                   const ModelLoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->device_ = device;
  m->metadata_only_ = options.metadata_only;
  auto report = [&](float p) -> absl::Status {
    if (options.progress && !options.progress(p)) {
      return absl::CancelledError(
          absl::StrFormat("model load cancelled by the progress callback at %.0f%%", p * 100));
    }
    return absl::OkStatus();
  };
  KESTREL_RETURN_IF_ERROR(report(0.0f));
  GgufOpenOptions open;
  open.use_mmap = options.use_mmap;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path, open);
  if (!file.ok()) return file.status();
  m->file_ = std::move(*file);
  KESTREL_RETURN_IF_ERROR(m->ReadConfig());
  KESTREL_RETURN_IF_ERROR(m->ReadTokenizer());
  KESTREL_RETURN_IF_ERROR(m->DeclareWeights());
  m->SummarizeTensors();
  if (m->metadata_only_) {
    m->RecordUnsupportedTypes();
  } else {
    KESTREL_RETURN_IF_ERROR(m->PrepareWeights(report));
  }
  KESTREL_RETURN_IF_ERROR(report(1.0f));
  return m;
}

absl::StatusOr<ExecutionPlan> Model::BuildPlan(const PlanOptions& options) const {
  if (metadata_only_) {
    return absl::FailedPreconditionError(
        "the model was loaded metadata-only (no weights prepared); load it again without "
        "metadata_only to run it");
  }
  return architecture_->BuildPlan(config_, weights_, options);
}

absl::StatusOr<const hal::PreparedWeight*> Model::Prepared(int id, hal::Device* device) const {
  std::lock_guard<std::mutex> lock(prepared_mu_);
  auto key = std::make_pair(id, device);
  auto it = prepared_.find(key);
  if (it != prepared_.end()) return &it->second;
  const WeightTensor& w = weights_.tensors[id];
  absl::StatusOr<hal::PreparedWeight> p = device->PrepareWeight(w.desc, w.host_data, w.bytes);
  if (!p.ok()) {
    return absl::Status(p.status().code(),
                        absl::StrCat("preparing weight '", w.name, "': ", p.status().message()));
  }
  return &(prepared_[key] = std::move(*p));
}

}  // namespace runtime
}  // namespace kestrel
