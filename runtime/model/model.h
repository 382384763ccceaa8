// runtime/model/: a loaded model of any supported architecture: the mapped GGUF file, its
// Architecture (runtime/arch) and config, its tokenizer, and its weights prepared on the chosen
// device (and, on demand, on the fallback device for ops the chosen device does not run). It
// builds plans through its architecture; it knows no session, sampler or plugin op.
//
// Thread-safety: immutable after Load except the lazy per-device weight cache, which is guarded.
#ifndef KESTREL_RUNTIME_MODEL_MODEL_H_
#define KESTREL_RUNTIME_MODEL_MODEL_H_

#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hal/src/device.h"
#include "runtime/arch/architecture.h"
#include "runtime/arch/model_config.h"
#include "runtime/arch/weight_table.h"
#include "runtime/gguf/gguf_file.h"
#include "runtime/offload/expert_cache.h"
#include "runtime/offload/memory_planner.h"
#include "runtime/offload/weight_streamer.h"
#include "runtime/package/package_reader.h"
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
  // Memory budgets ("DEVICE=SIZE" specs, runtime/offload/size_spec.h). When any is given the
  // model is planned (runtime/offload/memory_planner.h) before any weight is prepared: a budget
  // that cannot work fails the load with RESOURCE_EXHAUSTED, and expert stacks that do not fit
  // stay in the file behind an expert cache. A metadata-only load plans too (nothing prepared).
  std::vector<std::string> memory_budgets;
  uint32_t plan_context = 0;    // KV tokens per sequence to reserve; 0: the trained context
  uint32_t plan_sequences = 1;  // sequences to reserve KV for
  uint32_t kv_element_bytes = 4;  // 4: F32 KV cache, 2: F16
  offload::EvictionKind expert_policy = offload::EvictionKind::kLru;
  // Weight streaming: streamed layers copied ahead on a device with streams (0: the planner's
  // choice), and, for benchmarks only, a streamer that issues no copies (meaningless outputs).
  uint32_t prefetch_distance = 0;
  bool stream_skip_copies = false;
  bool allow_direct_io = true;
  // Read the experts the next layer's router picks for the current hidden state while this
  // layer computes (runtime/offload/expert_prefetcher.h).
  bool expert_prefetch = true;
  // The host device ("cpu") that may run expert-cache misses when the model's device is not the
  // host, and how a miss chooses (runtime/offload/miss_cost_model.h). nullptr: always fetch.
  hal::Device* host_device = nullptr;
  offload::MissPolicy miss_policy = offload::MissPolicy::kAuto;
  // For a .kpkg package: load its draft model instead of the main one (NOT_FOUND without one).
  bool package_draft = false;
  // For a .kpkg package: use the prepared weights it carries for the device's plugin (name,
  // version and layout id all matching) instead of preparing from the tensors.
  bool use_prepared = true;
};

class Model {
 public:
  // Opens `path` (a GGUF or a .kpkg package, told apart by the magic), validates everything, and
  // prepares every weight on `device` (unless metadata_only): from a package's prepared weights
  // when it carries a matching set, else by the plugin's weight_prepare. Errors name the key,
  // tensor or value at fault.
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
  // The package the model came from, or nullptr for a GGUF.
  const PackageReader* package() const { return package_.get(); }
  // Weights taken from the package's prepared set / prepared by the plugin at load, and why a
  // package's prepared weights were not used ("" when they were or there were none).
  uint32_t n_weights_imported() const { return n_imported_; }
  uint32_t n_weights_prepared() const { return n_prepared_; }
  const std::string& prepared_skip_reason() const { return prepared_skip_reason_; }
  // The content fingerprint (runtime/package/fingerprint.h): stored in a package, hashed from a
  // GGUF's bytes the first time it is asked for.
  uint64_t fingerprint() const;

  const WeightTable& weights() const { return weights_; }
  const WeightTensor& weight(int id) const { return weights_.tensors[id]; }

  // The weight prepared on `device`; prepares it on first use (for the fallback device).
  absl::StatusOr<const hal::PreparedWeight*> Prepared(int id, hal::Device* device) const;

  // The architecture's plan. FAILED_PRECONDITION for a metadata-only model.
  absl::StatusOr<ExecutionPlan> BuildPlan(const PlanOptions& options) const;

  bool metadata_only() const { return metadata_only_; }
  // The memory plan, when the model was loaded with budgets; nullptr otherwise. Its numbers
  // change when ReserveKv re-plans: read them holding plan_mutex().
  const offload::MemoryPlan* memory_plan() const { return memory_plan_.get(); }
  std::mutex& plan_mutex() const { return plan_mu_; }
  // Re-planning at run time for a KV pool of `kv_bytes` (an engine's): when the plan reserves
  // less, the expert cache gives up slots first (offload::ReplanForKv); when it cannot give
  // enough, resident layers become streamed (their prepared weights freed, the streamer rebuilt).
  // Safe while sessions of the model run: it waits for a step boundary (step_mutex() held
  // exclusively) and bumps weights_generation() so executors drop the weight handles they
  // cached. RESOURCE_EXHAUSTED with the numbers when neither works, the plan and cache
  // unchanged. No-op without a plan.
  absl::Status ReserveKv(uint64_t kv_bytes) const;
  // Held shared by every executor step (Executor::RunOps) and exclusively by a re-plan that
  // changes which weights are streamed: a re-plan happens only between steps.
  std::shared_mutex& step_mutex() const { return step_mu_; }
  // Changes when a re-plan freed prepared weights or replaced the streamer: an executor that
  // cached weight handles of an older generation looks them up again.
  uint64_t weights_generation() const { return weights_generation_.load(); }
  // The expert cache when the plan leaves experts in the file; nullptr otherwise.
  offload::ExpertCache* expert_cache() const { return expert_cache_.get(); }
  // The weight streamer when the plan streams layers; nullptr otherwise.
  offload::WeightStreamer* weight_streamer() const { return weight_streamer_.get(); }
  // The expert-cache layer of the MoE layer whose gate stack is weight `gate_exps_id`, or -1 when
  // that stack is resident (not offloaded).
  int ExpertCacheLayer(int gate_exps_id) const;
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
  absl::Status PlanMemory(const ModelLoadOptions& options);
  absl::Status CreateExpertCache(const ModelLoadOptions& options);
  // Whether device_ runs the model's MOE op (probed with its first MoE layer's shapes).
  bool DeviceRunsMoe() const;
  absl::Status CreateWeightStreamer() const;
  // ReserveKv's streaming re-plan: frees the prepared weights `next` streams, prepares those it
  // no longer streams, and rebuilds the streamer for it.
  absl::Status ApplyStreaming(const offload::MemoryPlan& next) const;
  // The package's prepared set for device_, or nullptr (prepared_skip_reason_ says why).
  const PreparedSet* MatchingPreparedSet();
  // Imports weight `id` from `set`; false when the set has none for it or the plugin refuses it.
  bool ImportPrepared(const PreparedSet& set, int id);
  // In a metadata-only load, records `s` and carries on; otherwise returns it.
  absl::Status Problem(const absl::Status& s);

  std::unique_ptr<PackageReader> package_;
  bool package_draft_ = false;
  std::unique_ptr<GgufFile> file_;
  uint32_t n_imported_ = 0, n_prepared_ = 0;
  bool use_prepared_ = true;
  std::string prepared_skip_reason_;
  mutable std::mutex fingerprint_mu_;
  mutable uint64_t fingerprint_ = 0;
  mutable bool has_fingerprint_ = false;
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
  std::string path_;
  std::unique_ptr<offload::MemoryPlan> memory_plan_;
  std::unique_ptr<offload::PlanRequest> plan_request_;  // what memory_plan_ was made from
  mutable std::mutex plan_mu_;
  std::unique_ptr<offload::ExpertCache> expert_cache_;
  mutable std::unique_ptr<offload::WeightStreamer> weight_streamer_;
  bool stream_skip_copies_ = false, allow_direct_io_ = true;  // ModelLoadOptions
  mutable std::shared_mutex step_mu_;
  mutable std::atomic<uint64_t> weights_generation_{0};
  std::map<int, int> expert_cache_layer_;  // gate_exps weight id -> cache layer

  mutable std::mutex prepared_mu_;
  mutable std::map<std::pair<int, hal::Device*>, hal::PreparedWeight> prepared_;
};

}  // namespace runtime
}  // namespace kestrel

#endif  // KESTREL_RUNTIME_MODEL_MODEL_H_
