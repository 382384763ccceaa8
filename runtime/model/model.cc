#include "runtime/model/model.h"

#include <algorithm>
#include <cstdlib>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hal/src/op_desc.h"
#include "runtime/arch/common/metadata.h"
#include "runtime/arch/fused_weights.h"
#include "runtime/arch/registry.h"
#include "runtime/offload/model_memory.h"
#include "runtime/package/fingerprint.h"
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
  expert_cache_.reset();
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

const PreparedSet* Model::MatchingPreparedSet() {
  if (package_ == nullptr) return nullptr;
  const PackageModel& pm = package_draft_ ? package_->draft() : package_->model();
  if (pm.prepared.empty()) return nullptr;
  if (!use_prepared_) {
    prepared_skip_reason_ = "prepared weights not used (use_prepared is off)";
    return nullptr;
  }
  absl::StatusOr<std::string> layout = device_->WeightLayoutId();
  if (!layout.ok() || layout->empty()) {
    prepared_skip_reason_ = absl::StrCat("plugin '", device_->plugin_name(),
                                         "' cannot import prepared weights");
    return nullptr;
  }
  const PreparedSet* set =
      pm.FindPrepared(device_->plugin_name(), device_->plugin_version(), *layout);
  if (set == nullptr) {
    std::string have;
    for (const PreparedSet& p : pm.prepared) {
      absl::StrAppend(&have, have.empty() ? "" : ", ", p.plugin, " ", p.plugin_version, " [",
                      p.device_fingerprint, "]");
    }
    prepared_skip_reason_ = absl::StrCat("no prepared weights for plugin '", device_->plugin_name(),
                                         "' ", device_->plugin_version(), " [", *layout,
                                         "] (the package has: ", have, "): repacking");
  }
  return set;
}

bool Model::ImportPrepared(const PreparedSet& set, int id) {
  const WeightTensor& w = weights_.tensors[id];
  auto it = set.weights.find(w.name);
  if (it == set.weights.end()) return false;
  absl::StatusOr<hal::PreparedWeight> p =
      device_->ImportWeight(w.desc, it->second.data, it->second.size, /*borrow=*/true);
  if (!p.ok()) {
    if (prepared_skip_reason_.empty()) {
      prepared_skip_reason_ = absl::StrCat("prepared weight '", w.name, "' refused (",
                                           p.status().message(), "): repacked");
    }
    return false;
  }
  std::lock_guard<std::mutex> lock(prepared_mu_);
  prepared_[std::make_pair(id, device_)] = std::move(*p);
  return true;
}

uint64_t Model::fingerprint() const {
  std::lock_guard<std::mutex> lock(fingerprint_mu_);
  if (!has_fingerprint_) {
    fingerprint_ = package_ != nullptr
                       ? (package_draft_ ? package_->draft() : package_->model()).fingerprint
                       : ModelFingerprint(*file_);
    has_fingerprint_ = true;
  }
  return fingerprint_;
}

absl::Status Model::PrepareWeights(const std::function<absl::Status(float)>& report) {
  // Prepare every weight on the device once (the plugin may repack it), or take it from the
  // package's prepared set for this device, used in place in the mapped package.
  uint64_t done = 0, total = 0;
  for (const WeightTensor& w : weights_.tensors) total += w.fused_into < 0 ? w.bytes : 0;
  std::vector<bool> offloaded(weights_.tensors.size(), false);
  if (memory_plan_ != nullptr) {
    for (int id : memory_plan_->offloaded) offloaded[id] = true;
    for (int id : memory_plan_->streamed) offloaded[id] = true;  // copied per step from the file
    // Planned on the fallback device (a dtype this one does not take, or an expert stack beside
    // one): prepared there when an op first needs it.
    for (int id : memory_plan_->host_resident) offloaded[id] = true;
  }
  const PreparedSet* set = MatchingPreparedSet();
  for (size_t i = 0; i < weights_.tensors.size(); ++i) {
    if (offloaded[i]) continue;  // read into the expert cache / the streaming ring on demand
    // A part of a fused matrix: plans use the fused one; a plan that asks for the part alone
    // prepares it then (Prepared).
    if (weights_.tensors[i].fused_into >= 0) continue;
    if (set != nullptr && ImportPrepared(*set, static_cast<int>(i))) {
      ++n_imported_;
      done += weights_.tensors[i].bytes;
      KESTREL_RETURN_IF_ERROR(
          report(0.05f + 0.95f * static_cast<float>(done) / static_cast<float>(total ? total : 1)));
      continue;
    }
    // A dtype the device does not take as a weight (e.g. K-quants on opencl) is prepared on the
    // fallback device when an op first needs it there (Executor::Place -> Prepared).
    const uint32_t dtype = weights_.tensors[i].desc.dtype;
    if ((device_->caps().weight_dtype_mask & KESTREL_DTYPE_BIT(dtype)) == 0) continue;
    ++n_prepared_;
    absl::StatusOr<const hal::PreparedWeight*> p = Prepared(static_cast<int>(i), device_);
    if (!p.ok()) return p.status();
    // The device holds its own copy now: drop this tensor's file pages from the resident set, so
    // peak memory during load is about one copy of the weights, not two.
    const WeightTensor& w = weights_.tensors[i];
    if (w.host_data != nullptr) file_->ReleaseResidentRange(w.host_data, w.bytes);
    for (int part : w.parts) {  // a fused matrix assembled from them
      file_->ReleaseResidentRange(weights_.tensors[part].host_data, weights_.tensors[part].bytes);
    }
    done += weights_.tensors[i].bytes;
    KESTREL_RETURN_IF_ERROR(
        report(0.05f + 0.95f * static_cast<float>(done) / static_cast<float>(total ? total : 1)));
  }
  // Plugins copy (or repack) weights in weight_prepare, so the mapped file pages are no longer
  // needed resident; without this a loaded model costs the file size twice in RSS. Imported
  // weights are read in place from the mapping: their pages stay.
  if (n_imported_ == 0) file_->ReleaseResidentPages();
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
  m->use_prepared_ = options.use_prepared;
  absl::StatusOr<std::unique_ptr<GgufFile>> file;
  if (PackageReader::IsPackage(path)) {
    PackageOpenOptions open;
    open.use_mmap = options.use_mmap;
    absl::StatusOr<std::unique_ptr<PackageReader>> package = PackageReader::Open(path, open);
    if (!package.ok()) return package.status();
    m->package_ = std::move(*package);
    m->package_draft_ = options.package_draft;
    file = options.package_draft ? m->package_->DraftFile() : m->package_->ModelFile();
  } else if (options.package_draft) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not a .kpkg package, so it has no draft model to load"));
  } else {
    GgufOpenOptions open;
    open.use_mmap = options.use_mmap;
    file = GgufFile::Open(path, open);
  }
  if (!file.ok()) return file.status();
  m->file_ = std::move(*file);
  KESTREL_RETURN_IF_ERROR(m->ReadConfig());
  KESTREL_RETURN_IF_ERROR(m->ReadTokenizer());
  KESTREL_RETURN_IF_ERROR(m->DeclareWeights());
  m->SummarizeTensors();
  m->path_ = path;
  if (!options.memory_budgets.empty()) KESTREL_RETURN_IF_ERROR(m->PlanMemory(options));
  // Fused Q/K/V and gate/up matrices replace their parts in the plans (the parts are then
  // prepared only if some plan asks for them). Not with a memory plan: it budgets, streams and
  // offloads the parts. Only on host-memory CPU devices: the split after the fused matmul is one
  // buffer copy per row and part at T > 1, a memmove there but a transfer launch each on a GPU.
  // KESTREL_FUSED_MATMULS=0 turns fusion off (comparisons, debugging).
  const char* fuse = std::getenv("KESTREL_FUSED_MATMULS");
  if (m->weights_declared_ && !m->metadata_only_ && m->memory_plan_ == nullptr &&
      device != nullptr && device->caps().kind == KESTREL_DEVICE_KIND_CPU &&
      device->host_visible() && (fuse == nullptr || std::string(fuse) != "0")) {
    AddFusedWeights(&m->weights_);
  }
  if (m->metadata_only_) {
    m->RecordUnsupportedTypes();
  } else {
    KESTREL_RETURN_IF_ERROR(m->PrepareWeights(report));
    KESTREL_RETURN_IF_ERROR(m->CreateExpertCache(options));
    m->stream_skip_copies_ = options.stream_skip_copies;
    m->allow_direct_io_ = options.allow_direct_io;
    KESTREL_RETURN_IF_ERROR(m->CreateWeightStreamer());
  }
  m->loaded_ = true;
  KESTREL_RETURN_IF_ERROR(report(1.0f));
  return m;
}

absl::Status Model::PlanMemory(const ModelLoadOptions& options) {
  if (!weights_declared_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "memory plan: this build cannot read the model's weights: ",
        unsupported_.empty() ? "unknown architecture" : unsupported_.front()));
  }
  absl::StatusOr<std::vector<offload::MemBudget>> budgets =
      offload::ParseBudgets(options.memory_budgets, weight_bytes_);
  if (!budgets.ok()) return budgets.status();
  offload::PlanRequest r =
      offload::ModelPlanRequest(config_, weights_, weight_bytes_, options.kv_element_bytes);
  r.budgets = std::move(*budgets);
  r.context = options.plan_context != 0 ? options.plan_context : config_.context_length;
  r.sequences = std::max<uint32_t>(1, options.plan_sequences);
  r.prefetch_distance = options.prefetch_distance;
  if (device_ != nullptr) {
    r.device = device_->name();
    r.device_capacity = device_->caps().memory_bytes;
    r.device_is_host = device_->caps().kind == KESTREL_DEVICE_KIND_CPU;
    r.device_async = device_->has_streams();
    r.stream_from_file = !r.device_async;  // read with direct I/O, not from the mapping
    // A tensor of a dtype the device does not take as a weight (nor hold in a buffer, which a
    // streamed matrix is bound as) runs on the fallback device from host memory: the planner
    // keeps it out of the device's budget, its streaming ring and its expert cache.
    const kestrel_device_caps_t& caps = device_->caps();
    for (offload::PlannedTensor& t : r.tensors) {
      t.dtype = weights_.tensors[t.weight_id].desc.dtype;
      const uint64_t bit = KESTREL_DTYPE_BIT(t.dtype);
      t.device_can_hold = (caps.weight_dtype_mask & bit) != 0;
      if (!t.device_can_hold || (caps.dtype_mask & bit) == 0) t.streamable = false;
    }
    r.dtype_name = [](uint32_t dtype) { return std::string(hal::DtypeName(dtype)); };
    // A device that does not run MOE (opencl, cuda today) leaves the op to the fallback device:
    // the experts are used there, so an expert cache on this device would serve nothing.
    if (!DeviceRunsMoe()) {
      for (offload::PlannedTensor& t : r.tensors) {
        if (t.expert_stack) t.device_can_hold = false;
      }
    }
  } else {
    r.device = "(none)";
    r.device_is_host = true;
  }
  absl::StatusOr<offload::MemoryPlan> plan = offload::PlanMemory(r);
  if (!plan.ok()) return plan.status();
  memory_plan_ = std::make_unique<offload::MemoryPlan>(std::move(*plan));
  plan_request_ = std::make_unique<offload::PlanRequest>(std::move(r));
  return absl::OkStatus();
}

bool Model::DeviceRunsMoe() const {
  for (const LayerWeights& l : weights_.layers) {
    if (l.ffn_gate_exps < 0 || l.ffn_gate_inp < 0 || l.ffn_up_exps < 0 || l.ffn_down_exps < 0) {
      continue;
    }
    const kestrel_tensor_desc_t& router = weights_.tensors[l.ffn_gate_inp].desc;
    const kestrel_tensor_arg_t x = hal::TensorArg(KESTREL_DTYPE_F32, {1, router.dims[1]});
    kestrel_tensor_arg_t in[5] = {x, {}, {}, {}, {}};
    in[1].desc = router;
    in[2].desc = weights_.tensors[l.ffn_gate_exps].desc;
    in[3].desc = weights_.tensors[l.ffn_up_exps].desc;
    in[4].desc = weights_.tensors[l.ffn_down_exps].desc;
    const kestrel_tensor_arg_t out[2] = {x, hal::TensorArg(KESTREL_DTYPE_I32, {config_.n_experts})};
    kestrel_op_moe_params_t p{};
    p.struct_size = sizeof(p);
    p.n_experts = config_.n_experts;
    p.top_k = config_.n_experts_used;
    p.n_local_experts = config_.n_experts;
    absl::StatusOr<kestrel_op_support_t> s =
        device_->Query(hal::OpDesc(KESTREL_OP_MOE, 1, in, 5, out, 2, &p, sizeof(p)));
    return s.ok() && s->level != KESTREL_OP_UNSUPPORTED;
  }
  return true;  // no MoE layer
}

absl::Status Model::CreateExpertCache(const ModelLoadOptions& options) {
  if (memory_plan_ == nullptr || !memory_plan_->experts_offloaded) return absl::OkStatus();
  absl::StatusOr<std::vector<offload::ExpertLayerSource>> sources =
      offload::ExpertSources(*file_, weights_, config_.n_experts);
  if (!sources.ok()) return sources.status();
  int cache_layer = 0;
  for (const LayerWeights& l : weights_.layers) {
    if (l.ffn_gate_exps >= 0) expert_cache_layer_[l.ffn_gate_exps] = cache_layer++;
  }
  offload::ExpertCacheOptions o;
  o.n_slots = memory_plan_->expert_slots;
  o.budget_bytes = memory_plan_->expert_cache_bytes();
  o.policy = options.expert_policy;
  o.allow_direct_io = options.allow_direct_io;
  // Read ahead what one token of the next layer routes to; the slots a step needs stay.
  o.prefetch_depth = options.expert_prefetch ? config_.n_experts_used : 0;
  o.min_slots = config_.n_experts_used + 1;
  // Misses run on the host by choice where the device is not the host; on a host device (ref)
  // only when asked (KESTREL_OFFLOAD_FLAG_MISS_ON_HOST).
  if (options.host_device != nullptr && options.host_device != device_ &&
      (device_->caps().kind != KESTREL_DEVICE_KIND_CPU ||
       options.miss_policy == offload::MissPolicy::kHost)) {
    o.host_device = options.host_device;
    o.miss_policy = options.miss_policy;
  }
  absl::StatusOr<std::unique_ptr<offload::ExpertCache>> cache = offload::ExpertCache::Create(
      path_, std::move(*sources), config_.n_experts, o, device_);
  if (!cache.ok()) return cache.status();
  expert_cache_ = std::move(*cache);
  return absl::OkStatus();
}

absl::Status Model::CreateWeightStreamer() const {
  if (memory_plan_ == nullptr || memory_plan_->streamed_layers.empty()) return absl::OkStatus();
  std::vector<offload::StreamedLayer> layers;
  // Streamed matrices are read from the file when the plan budgets the staging buffer; each
  // must then be a range of the file (it is, unless the file image was not mapped from it).
  bool from_file = memory_plan_->stream_staging_bytes > 0;
  const uint8_t* base = file_->data();
  for (uint32_t l : memory_plan_->streamed_layers) {
    const LayerWeights& lw = weights_.layers[l];
    offload::StreamedLayer layer;
    for (int id : {lw.wq, lw.wk, lw.wv, lw.wo, lw.w_gate, lw.w_up, lw.w_down}) {
      if (id < 0 || !std::binary_search(memory_plan_->streamed.begin(),
                                        memory_plan_->streamed.end(), id)) {
        continue;
      }
      const WeightTensor& w = weights_.tensors[id];
      if (base == nullptr || w.host_data < base || w.host_data + w.bytes > base + file_->file_size()) {
        from_file = false;
      }
      layer.push_back({id, w.host_data, w.bytes,
                       from_file ? static_cast<uint64_t>(w.host_data - base) : 0});
    }
    layers.push_back(std::move(layer));
  }
  offload::WeightStreamerOptions o;
  o.prefetch_distance = memory_plan_->prefetch_distance;
  o.budget_bytes = memory_plan_->stream_buffers_bytes();
  o.skip_copies = stream_skip_copies_;
  if (from_file) o.file_path = path_;
  o.allow_direct_io = allow_direct_io_;
  absl::StatusOr<std::unique_ptr<offload::WeightStreamer>> s =
      offload::WeightStreamer::Create(std::move(layers), o, device_);
  if (!s.ok()) return s.status();
  weight_streamer_ = std::move(*s);
  return absl::OkStatus();
}

absl::Status Model::ReserveKv(uint64_t kv_bytes) const {
  std::lock_guard<std::mutex> lock(plan_mu_);
  if (memory_plan_ == nullptr || kv_bytes <= memory_plan_->kv_bytes) return absl::OkStatus();
  const bool may_stream = !weights_in_use_.load() && !metadata_only_;
  absl::StatusOr<offload::MemoryPlan> next =
      offload::ReplanForKv(*memory_plan_, kv_bytes, may_stream ? plan_request_.get() : nullptr);
  if (!next.ok()) {
    if (may_stream) return next.status();
    return absl::Status(next.status().code(),
                        absl::StrCat(next.status().message(),
                                     " (streaming more layers is possible only before the "
                                     "model's first step: its weights are in use)"));
  }
  if (next->streamed != memory_plan_->streamed) {
    KESTREL_RETURN_IF_ERROR(ApplyStreaming(*next));
  }
  if (expert_cache_ != nullptr && next->expert_slots < expert_cache_->n_slots()) {
    std::lock_guard<std::mutex> cache_lock(expert_cache_->mutex());
    KESTREL_RETURN_IF_ERROR(expert_cache_->Shrink(next->expert_slots, next->top_k,
                                                  next->expert_cache_bytes()));
  }
  *memory_plan_ = std::move(*next);
  return absl::OkStatus();
}

absl::Status Model::ApplyStreaming(const offload::MemoryPlan& next) const {
  // The old ring goes first (it waits for the device), then the weights newly streamed, so that
  // the device never holds both; then the ones no longer streamed are prepared again.
  // Preparing here is not a step's use of the weights (Prepared would mark them in use).
  const bool in_use = weights_in_use_.load();
  const offload::MemoryPlan old = *memory_plan_;
  weight_streamer_.reset();
  // Makes the weights `from` streams and `to` does not resident again, and `to`'s streamer.
  auto move_to = [&](const offload::MemoryPlan& from, const offload::MemoryPlan& to) {
    {
      std::lock_guard<std::mutex> lock(prepared_mu_);
      for (int id : to.streamed) prepared_.erase(std::make_pair(id, device_));
    }
    for (int id : from.streamed) {
      if (std::binary_search(to.streamed.begin(), to.streamed.end(), id)) continue;
      absl::StatusOr<const hal::PreparedWeight*> p = Prepared(id, device_);
      if (!p.ok()) return p.status();
    }
    *memory_plan_ = to;
    return CreateWeightStreamer();
  };
  absl::Status s = move_to(old, next);
  if (!s.ok()) {
    // Back to the plan the model had (best effort: it held it before).
    weight_streamer_.reset();
    move_to(next, old).IgnoreError();
  }
  weights_in_use_ = in_use;
  return s;
}

int Model::ExpertCacheLayer(int gate_exps_id) const {
  auto it = expert_cache_layer_.find(gate_exps_id);
  return it == expert_cache_layer_.end() ? -1 : it->second;
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
  if (loaded_) weights_in_use_ = true;
  auto key = std::make_pair(id, device);
  auto it = prepared_.find(key);
  if (it != prepared_.end()) return &it->second;
  const WeightTensor& w = weights_.tensors[id];
  std::vector<uint8_t> assembled;  // a fused matrix's parts, only while the plugin copies them
  absl::StatusOr<hal::PreparedWeight> p =
      device->PrepareWeight(w.desc, AssembleHostData(weights_, id, &assembled), w.bytes);
  if (!p.ok()) {
    return absl::Status(p.status().code(),
                        absl::StrCat("preparing weight '", w.name, "': ", p.status().message()));
  }
  return &(prepared_[key] = std::move(*p));
}

}  // namespace runtime
}  // namespace kestrel
