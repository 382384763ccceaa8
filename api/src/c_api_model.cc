// Model loading, model info and the tokenizer entry points.
#include "api/src/c_api_internal.h"

#include <utility>

#include "runtime/tokenizer/tokenizer_loader.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

// Parses tokenizer.chat_template once; a model without one (or with one this build cannot parse)
// still loads, and kestrel_model_apply_chat_template reports why.
void LoadChatTemplate(kestrel_model* handle) {
  handle->tokenizer_kind = std::string(handle->tokenizer().kind());
  handle->tokenizer_pre = std::string(handle->tokenizer().pre_tokenizer());
  absl::StatusOr<std::unique_ptr<kestrel::runtime::ChatTemplate>> t =
      kestrel::runtime::LoadChatTemplate(handle->file(), handle->tokenizer());
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

absl::StatusOr<kestrel_model*> LoadVocabOnly(const std::shared_ptr<RuntimeState>& state, const std::string& path,
                                             bool use_mmap) {
  kestrel::runtime::GgufOpenOptions open;
  open.use_mmap = use_mmap;
  absl::StatusOr<std::unique_ptr<kestrel::runtime::GgufFile>> file = kestrel::runtime::GgufFile::Open(path, open);
  if (!file.ok()) return absl::Status(file.status().code(), absl::StrCat("'", path, "': ", file.status().message()));
  absl::StatusOr<std::unique_ptr<kestrel::runtime::Tokenizer>> tok = kestrel::runtime::LoadTokenizer(**file);
  if (!tok.ok()) return absl::Status(tok.status().code(), absl::StrCat("'", path, "': ", tok.status().message()));
  auto handle = std::make_unique<kestrel_model>();
  handle->runtime = state;
  handle->vocab_file = std::move(*file);
  handle->vocab_tokenizer = std::move(*tok);
  for (auto [key, out] : {std::pair{"general.architecture", &handle->architecture},
                          std::pair{"general.name", &handle->name}}) {
    if (handle->vocab_file->Find(key) == nullptr) continue;
    absl::StatusOr<std::string> v = handle->vocab_file->GetString(key);
    if (v.ok()) *out = std::move(*v);
  }
  LoadChatTemplate(handle.get());
  return handle.release();
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
    if (o.vocab_only) {
      state->Log(KESTREL_LOG_INFO, absl::StrCat("loading the vocab of '", p, "'"));
      absl::StatusOr<kestrel_model*> handle = LoadVocabOnly(state, p, o.use_mmap);
      if (!handle.ok()) return handle.status();
      *out_model = *handle;
      return absl::OkStatus();
    }
    absl::StatusOr<kestrel::hal::Device*> device =
        o.device != nullptr ? state->registry->FindDevice(o.device) : state->registry->DefaultDevice();
    if (!device.ok()) return device.status();
    kestrel::runtime::ModelLoadOptions lo;
    lo.use_mmap = o.use_mmap;
    if (o.progress_callback != nullptr) {
      lo.progress = [&o](float f) { return o.progress_callback(o.progress_user_data, f); };
    }
    state->Log(KESTREL_LOG_INFO, absl::StrCat("loading '", p, "' on device '", (*device)->name(), "'"));
    absl::StatusOr<std::unique_ptr<kestrel::runtime::LlamaModel>> m =
        kestrel::runtime::LlamaModel::Load(p, *device, lo);
    if (!m.ok()) {
      return absl::Status(m.status().code(), absl::StrCat("'", p, "': ", m.status().message()));
    }
    auto* handle = new kestrel_model;
    handle->runtime = state;
    handle->model = std::move(*m);
    handle->device_name = (*device)->name();
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
    const kestrel::runtime::Tokenizer& t = model->tokenizer();
    kestrel_model_info_t info{};
    info.struct_size = sizeof(info);
    if (model->model == nullptr) {  // vocab_only: what the vocab and the file say
      info.architecture = model->architecture.c_str();
      info.name = model->name.c_str();
      info.device = "";
      info.vocab_size = static_cast<uint32_t>(t.vocab_size());
      info.bos_id = t.bos_id();
      info.eos_id = t.eos_id();
      info.unk_id = t.unk_id();
      info.pad_id = t.pad_id();
      info.add_bos = t.add_bos();
      info.n_tensors = static_cast<uint32_t>(model->file().tensors().size());
      return kestrel::api::WriteInfo(fn, "out_info", info, out_info, KESTREL_MODEL_INFO_MIN_SIZE);
    }
    const kestrel::runtime::LlamaModel& m = *model->model;
    const kestrel::runtime::LlamaConfig& c = m.config();
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
    info.bos_id = t.bos_id();
    info.eos_id = t.eos_id();
    info.unk_id = t.unk_id();
    info.pad_id = t.pad_id();
    info.add_bos = t.add_bos();
    info.rope_freq_base = c.rope_freq_base;
    info.rms_norm_eps = c.rms_eps;
    info.n_tensors = static_cast<uint32_t>(m.file().tensors().size());
    info.n_experts = c.n_experts;
    info.n_experts_used = c.n_experts_used;
    return kestrel::api::WriteInfo(fn, "out_info", info, out_info,
                                   KESTREL_MODEL_INFO_MIN_SIZE);
  });
}

KESTREL_API size_t kestrel_model_tensor_type_count(const kestrel_model_t* model) {
  return model == nullptr || model->model == nullptr ? 0 : model->model->tensor_types().size();
}

KESTREL_API kestrel_status_t* kestrel_model_tensor_type_summary(
    const kestrel_model_t* model, size_t index, kestrel_tensor_type_summary_t* out_summary) {
  return Guard("kestrel_model_tensor_type_summary", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_model_tensor_type_summary";
    if (model == nullptr) return NullArgument(fn, "model");
    static const std::vector<kestrel::runtime::TensorTypeSummary> kNone;
    const auto& types = model->model != nullptr ? model->model->tensor_types() : kNone;
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

KESTREL_API kestrel_status_t* kestrel_tokenize(const kestrel_model_t* model, const char* text,
                                               size_t text_length, bool add_bos,
                                               int32_t* out_tokens, size_t capacity,
                                               size_t* out_required) {
  return Guard("kestrel_tokenize", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_tokenize";
    if (model == nullptr) return NullArgument(fn, "model");
    if (text == nullptr && text_length > 0) return NullArgument(fn, "text");
    std::vector<int32_t> ids = model->tokenizer().Encode(
        absl::string_view(text == nullptr ? "" : text, text_length), add_bos,
        /*parse_special=*/false);
    return kestrel::api::CopyOut(fn, "out_tokens", ids.data(), ids.size(), out_tokens, capacity, out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_detokenize(const kestrel_model_t* model,
                                                 const int32_t* tokens, size_t n_tokens,
                                                 bool remove_leading_space, char* out_text,
                                                 size_t capacity, size_t* out_required) {
  return Guard("kestrel_detokenize", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_detokenize";
    if (model == nullptr) return NullArgument(fn, "model");
    if (tokens == nullptr && n_tokens > 0) return NullArgument(fn, "tokens");
    const auto& tok = model->tokenizer();
    for (size_t i = 0; i < n_tokens; ++i) {
      if (tokens[i] < 0 || tokens[i] >= tok.vocab_size()) {
        return absl::OutOfRangeError(absl::StrFormat("%s: token #%u has id %d, outside the vocab [0, %d)",
                                                     fn, i, tokens[i], tok.vocab_size()));
      }
    }
    std::string text = tok.Decode(absl::MakeConstSpan(tokens, n_tokens), remove_leading_space);
    return kestrel::api::CopyOut(fn, "out_text", text.data(), text.size(), out_text, capacity, out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_token_to_piece(const kestrel_model_t* model, int32_t token,
                                                     char* out_piece, size_t capacity,
                                                     size_t* out_required) {
  return Guard("kestrel_token_to_piece", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_token_to_piece";
    if (model == nullptr) return NullArgument(fn, "model");
    const auto& tok = model->tokenizer();
    if (token < 0 || token >= tok.vocab_size()) {
      return absl::OutOfRangeError(
          absl::StrFormat("%s: token id %d is outside the vocab [0, %d)", fn, token, tok.vocab_size()));
    }
    absl::string_view piece = tok.PieceView(token);
    return kestrel::api::CopyOut(fn, "out_piece", piece.data(), piece.size(), out_piece, capacity, out_required);
  });
}

}  // extern "C"
