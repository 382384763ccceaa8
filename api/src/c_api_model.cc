// Model loading and model info (the tokenizer entry points: c_api_tokenizer.cc).
#include "api/src/c_api_internal.h"
#include "kestrel/offload.h"

#include <utility>


using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

// Parses tokenizer.chat_template once; a model without one (or with one this build cannot parse)
// still loads, and kestrel_model_apply_chat_template reports why.
void LoadChatTemplate(kestrel_model* handle) {
  const kestrel::runtime::Model& m = *handle->model;
  if (!m.has_tokenizer()) {
    handle->chat_template_status = kestrel::api::CheckTokenizer("kestrel_model_apply_chat_template", handle);
    handle->chat_template_error = std::string(handle->chat_template_status.message());
    return;
  }
  handle->tokenizer_kind = std::string(m.tokenizer().kind());
  handle->tokenizer_pre = std::string(m.tokenizer().pre_tokenizer());
  absl::StatusOr<std::unique_ptr<kestrel::runtime::ChatTemplate>> t =
      kestrel::runtime::LoadChatTemplate(m.file(), m.tokenizer());
  if (t.ok()) {
    handle->chat_template = std::move(*t);
  } else {
    handle->chat_template_status = t.status();
    handle->chat_template_error = std::string(t.status().message());
    if (!absl::IsNotFound(t.status())) {
      handle->runtime->Log(KESTREL_LOG_WARNING, std::string(t.status().message()));
    }
  }
}

}  // namespace

extern "C" {

KESTREL_API void kestrel_model_options_init_sized(kestrel_model_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_model_options_t& o) {
    o.use_mmap = true;
  });
}

KESTREL_API kestrel_status_t* kestrel_model_load(kestrel_runtime_t* runtime, const char* path,
                                                 size_t path_length,
                                                 const kestrel_model_options_t* options,
                                                 kestrel_model_t** out_model) {
  return Guard("kestrel_model_load", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_load";
    if (runtime == nullptr) return NullArgument(fn, "runtime");
    if (path == nullptr) return NullArgument(fn, "path");
    if (out_model == nullptr) return NullArgument(fn, "out_model");
    if (path_length == 0) return absl::InvalidArgumentError(absl::StrCat(fn, ": path is empty"));
    std::string p(path, path_length);
    if (p.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(fn, ": path contains a NUL byte"));
    }
    kestrel_model_options_t o;
    kestrel_model_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options,
                                           KESTREL_MODEL_OPTIONS_MIN_SIZE, &o);
        !s.ok()) {
      return s;
    }
    const auto& state = runtime->state;
    absl::StatusOr<kestrel::hal::Device*> device =
        o.device != nullptr ? state->registry->FindDevice(o.device) : state->registry->DefaultDevice();
    // Metadata only prepares nothing: without a device asked for, none is needed (kestrel info
    // works where no plugin loads).
    if (!device.ok() && o.metadata_only && o.device == nullptr) device = nullptr;
    if (!device.ok()) return device.status();
    const std::string device_name = *device != nullptr ? (*device)->name() : "";
    kestrel::runtime::ModelLoadOptions lo;
    lo.use_mmap = o.use_mmap;
    lo.metadata_only = o.metadata_only;
    if (o.memory_budget != nullptr && o.memory_budget[0] != '\0') {
      lo.memory_budgets = {o.memory_budget};
    }
    if (o.expert_cache_policy > KESTREL_EXPERT_CACHE_LFU) {
      return absl::InvalidArgumentError(absl::StrCat(
          fn, ": options->expert_cache_policy = ", o.expert_cache_policy,
          " is not a kestrel_expert_cache_policy_t (0 = LRU, 1 = LFU)"));
    }
    lo.expert_policy = static_cast<kestrel::runtime::offload::EvictionKind>(o.expert_cache_policy);
    lo.plan_context = o.plan_context_length;
    lo.plan_sequences = o.plan_sequences;
    lo.allow_direct_io = (o.offload_flags & KESTREL_OFFLOAD_FLAG_NO_DIRECT_IO) == 0;
    lo.expert_prefetch = (o.offload_flags & KESTREL_OFFLOAD_FLAG_NO_PREFETCH) == 0;
    const bool miss_fetch = (o.offload_flags & KESTREL_OFFLOAD_FLAG_MISS_FETCH) != 0;
    const bool miss_host = (o.offload_flags & KESTREL_OFFLOAD_FLAG_MISS_ON_HOST) != 0;
    if (miss_fetch && miss_host) {
      return absl::InvalidArgumentError(absl::StrCat(
          fn, ": options->offload_flags sets both KESTREL_OFFLOAD_FLAG_MISS_FETCH and "
              "KESTREL_OFFLOAD_FLAG_MISS_ON_HOST"));
    }
    lo.miss_policy = miss_fetch  ? kestrel::runtime::offload::MissPolicy::kFetch
                     : miss_host ? kestrel::runtime::offload::MissPolicy::kHost
                                 : kestrel::runtime::offload::MissPolicy::kAuto;
    // A model whose experts may stay in the file can run misses on the host device: find it
    // (loading the cpu plugin) only then.
    if (!lo.memory_budgets.empty() && !o.metadata_only && *device != nullptr && !miss_fetch &&
        ((*device)->caps().kind != KESTREL_DEVICE_KIND_CPU || miss_host)) {
      absl::StatusOr<kestrel::hal::Device*> host = state->registry->FindDevice("cpu");
      if (host.ok() && *host != *device) lo.host_device = *host;
    }
    if (o.progress_callback != nullptr) {
      lo.progress = [&o](float f) { return o.progress_callback(o.progress_user_data, f); };
    }
    state->Log(KESTREL_LOG_INFO, absl::StrCat("loading '", p, "' on device '", device_name, "'"));
    absl::StatusOr<std::unique_ptr<kestrel::runtime::Model>> m =
        kestrel::runtime::Model::Load(p, *device, lo);
    if (!m.ok()) {
      return absl::Status(m.status().code(), absl::StrCat("'", p, "': ", m.status().message()));
    }
    auto* handle = new kestrel_model;
    handle->runtime = state;
    handle->model = std::move(*m);
    handle->unsupported = absl::StrJoin(handle->model->unsupported(), "\n");
    handle->device_name = device_name;
    LoadChatTemplate(handle);
    *out_model = handle;
    return absl::OkStatus();
  });
}

KESTREL_API void kestrel_model_retain(kestrel_model_t* model) {
  if (model != nullptr) model->refs.fetch_add(1, std::memory_order_relaxed);
}

KESTREL_API void kestrel_model_release(kestrel_model_t* model) {
  if (model != nullptr && model->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete model;
}

KESTREL_API kestrel_status_t* kestrel_model_get_info(const kestrel_model_t* model,
                                                     kestrel_model_info_t* out_info) {
  return Guard("kestrel_model_get_info", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_get_info";
    if (model == nullptr) return NullArgument(fn, "model");
    const kestrel::runtime::Model& m = *model->model;
    const kestrel::runtime::ModelConfig& c = m.config();
    kestrel_model_info_t info{};
    info.struct_size = sizeof(info);
    info.architecture = c.architecture.c_str();
    info.name = c.name.c_str();
    info.device = model->device_name.c_str();
    info.n_params = m.n_params();
    info.weight_bytes = m.weight_bytes();
    info.n_layers = c.n_layers;
    info.n_heads = c.n_heads;
    info.n_kv_heads = c.n_kv_heads;
    info.n_embd = c.n_embd;
    info.n_ff = c.n_ff;
    info.head_dim = c.head_dim;
    info.context_length = c.context_length;
    info.vocab_size = c.n_vocab;
    info.bos_id = info.eos_id = info.unk_id = info.pad_id = -1;
    if (m.has_tokenizer()) {
      const kestrel::runtime::Tokenizer& t = m.tokenizer();
      info.bos_id = t.bos_id();
      info.eos_id = t.eos_id();
      info.unk_id = t.unk_id();
      info.pad_id = t.pad_id();
      info.add_bos = t.add_bos();
    }
    info.rope_freq_base = c.rope_freq_base;
    info.rms_norm_eps = c.rms_eps;
    info.n_tensors = static_cast<uint32_t>(m.file().tensors().size());
    info.n_experts = c.n_experts;
    info.n_experts_used = c.n_experts_used;
    info.tokenizer_model = m.tokenizer_model().c_str();
    info.tokenizer_pre = m.tokenizer_pre().c_str();
    info.has_chat_template = m.has_chat_template();
    info.runnable = m.runnable();
    info.unsupported = model->unsupported.c_str();
    return kestrel::api::WriteInfo(fn, "out_info", info, out_info,
                                   KESTREL_MODEL_INFO_MIN_SIZE);
  });
}

KESTREL_API size_t kestrel_model_tensor_type_count(const kestrel_model_t* model) {
  return model == nullptr ? 0 : model->model->tensor_types().size();
}

KESTREL_API kestrel_status_t* kestrel_model_tensor_type_summary(
    const kestrel_model_t* model, size_t index, kestrel_tensor_type_summary_t* out_summary) {
  return Guard("kestrel_model_tensor_type_summary", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_tensor_type_summary";
    if (model == nullptr) return NullArgument(fn, "model");
    const auto& types = model->model->tensor_types();
    if (index >= types.size()) {
      return absl::OutOfRangeError(
          absl::StrFormat("%s: index %u, but the model has %u tensor types", fn, index, types.size()));
    }
    kestrel_tensor_type_summary_t s{};
    s.struct_size = sizeof(s);
    s.type_name = types[index].type_name.c_str();
    s.n_tensors = types[index].n_tensors;
    s.n_elements = types[index].n_elements;
    s.n_bytes = types[index].n_bytes;
    return kestrel::api::WriteInfo(fn, "out_summary", s, out_summary,
                                   KESTREL_TENSOR_TYPE_SUMMARY_MIN_SIZE);
  });
}

}  // extern "C"
