// runtime/model/: a loaded model of any supported architecture: the mapped GGUF file, its
// Architecture (runtime/arch) and config, its tokenizer, and its weights prepared on the chosen
// device (and, on demand, on the fallback device for ops the chosen device does not run). It
// builds plans through its architecture; it knows no session, sampler or plugin op.
//
// Thread-safety: immutable after Load except the lazy per-device weight cache, which is guarded.
#ifndef KESTREL_RUNTIME_MODEL_MODEL_H_
#define KESTREL_RUNTIME_MODEL_MODEL_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "runtime/arch/architecture.h"
#include "runtime/arch/model_config.h"
#include "runtime/arch/weight_table.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/plan/execution_plan.h"
#include "runtime/plan/plan_options.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kestrel {
namespace runtime {

struct TensorTypeSummary {
  std::string type_name;
  uint32_t n_tensors = 0;
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
};

struct ModelLoadOptions {
  bool use_mmap = true;
  // Progress in [0, 1]; returning false cancels the load.
  std::function<bool(float)> progress;
  // Read the metadata and judge what this build could run, but prepare no weight (what `kestrel
  // info` needs): an unknown architecture, an unsupported tensor type or tokenizer, a missing
  // tensor is recorded in unsupported() instead of failing the load. Only a file that is not
  // readable GGUF fails. Plans cannot be built from such a model.
  bool metadata_only = false;
};

class Model {
 public:
  // Opens `path`, validates everything, and prepares every weight on `device` (unless
  // metadata_only). Errors name the key, tensor or value at fault.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& path, hal::Device* device,
                                                     const ModelLoadOptions& options);
  ~Model();

  const ModelConfig& config() const { return config_; }
  // nullptr only for a metadata-only model of an architecture this build lacks.
  const Architecture* architecture() const { return architecture_; }
  // False only for a metadata-only model whose tokenizer this build cannot load.
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  hal::Device* device() const { return device_; }
  const GgufFile& file() const { return *file_; }

  const WeightTable& weights() const { return weights_; }
  const WeightTensor& weight(int id) const { return weights_.tensors[id]; }

  // The weight prepared on `device`; prepares it on first use (for the fallback device).
  absl::StatusOr<const hal::PreparedWeight*> Prepared(int id, hal::Device* device) const;

  // The architecture's plan. FAILED_PRECONDITION for a metadata-only model.
  absl::StatusOr<ExecutionPlan> BuildPlan(const PlanOptions& options) const;

  bool metadata_only() const { return metadata_only_; }
  // Whether this build can run the file (true for every model loaded without metadata_only).
  bool runnable() const { return unsupported_.empty(); }
  // Why not: one sentence per problem, each naming the architecture, tensor type, tokenizer,
  // key or tensor at fault.
  const std::vector<std::string>& unsupported() const { return unsupported_; }

  uint64_t n_params() const { return n_params_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  const std::vector<TensorTypeSummary>& tensor_types() const { return tensor_types_; }
  // tokenizer.ggml.model / .pre ("" if absent) and whether tokenizer.chat_template is present.
  const std::string& tokenizer_model() const { return tokenizer_model_; }
  const std::string& tokenizer_pre() const { return tokenizer_pre_; }
  bool has_chat_template() const { return has_chat_template_; }

 private:
  Model() = default;
  absl::Status ReadConfig();
  absl::Status ReadTokenizer();
  absl::Status DeclareWeights();
  void SummarizeTensors();
  void RecordUnsupportedTypes();
  absl::Status PrepareWeights(const std::function<absl::Status(float)>& report);
  // In a metadata-only load, records `s` and carries on; otherwise returns it.
  absl::Status Problem(const absl::Status& s);

  std::unique_ptr<GgufFile> file_;
  const Architecture* architecture_ = nullptr;
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  hal::Device* device_ = nullptr;
  WeightTable weights_;
  bool weights_declared_ = false;
  bool metadata_only_ = false;
  std::vector<std::string> unsupported_;
  uint64_t n_params_ = 0, weight_bytes_ = 0;
  std::vector<TensorTypeSummary> tensor_types_;
  std::string tokenizer_model_, tokenizer_pre_;
  bool has_chat_template_ = false;

  mutable std::mutex prepared_mu_;
  mutable std::map<std::pair<int, hal::Device*>, hal::PreparedWeight> prepared_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_MODEL_MODEL_H_
