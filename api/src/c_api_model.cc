// Model loading, model info and the tokenizer entry points.
#include "api/src/c_api_internal.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

// A metadata-only model whose tokenizer this build cannot load has none.
absl::Status CheckTokenizer(const char* fn, const kestrel_model_t* model) {
  if (model->model->has_tokenizer()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      fn, ": the model was loaded metadata-only and this build cannot load its tokenizer ('",
      model->model->tokenizer_model(), "')"));
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

KESTREL_API kestrel_status_t* kestrel_tokenize(const kestrel_model_t* model, const char* text,
                                               size_t text_length, bool add_bos,
                                               int32_t* out_tokens, size_t capacity,
                                               size_t* out_required) {
  return Guard("kestrel_tokenize", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_tokenize";
    if (model == nullptr) return NullArgument(fn, "model");
    if (text == nullptr && text_length > 0) return NullArgument(fn, "text");
    if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
    std::vector<int32_t> ids = model->model->tokenizer().Encode(
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
    if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
    const auto& tok = model->model->tokenizer();
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
    if (auto s = CheckTokenizer(fn, model); !s.ok()) return s;
    const auto& tok = model->model->tokenizer();
    if (token < 0 || token >= tok.vocab_size()) {
      return absl::OutOfRangeError(
          absl::StrFormat("%s: token id %d is outside the vocab [0, %d)", fn, token, tok.vocab_size()));
    }
    absl::string_view piece = tok.PieceView(token);
    return kestrel::api::CopyOut(fn, "out_piece", piece.data(), piece.size(), out_piece, capacity, out_required);
  });
}

}  // extern "C"
