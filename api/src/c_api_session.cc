// Sessions: create, generate (text or tokens), cancel, and the low-level decode/logits/truncate.
#include "api/src/c_api_internal.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace {

absl::Status FillConfig(const char* fn, const kestrel_session_options_t* options,
                        kestrel::runtime::SessionConfig* config, kestrel_model_t** draft) {
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  if (auto s = kestrel::api::ReadOptions(fn, "options", options,
                                         KESTREL_SESSION_OPTIONS_MIN_SIZE, &o);
      !s.ok()) {
    return s;
  }
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  if (auto s = kestrel::api::ReadOptions(fn, "options->sampler", o.sampler,
                                         KESTREL_SAMPLER_OPTIONS_MIN_SIZE, &so);
      !s.ok()) {
    return s;
  }
  if (auto s = kestrel::api::KvTypeToDtype(fn, o.kv_type, &config->kv_dtype); !s.ok()) return s;
  if (auto s = kestrel::api::ReadSpeculative(fn, o.speculative, &config->spec, draft); !s.ok()) {
    return s;
  }
  config->context_length = o.context_length;
  config->block_size = o.kv_block_size;
  config->n_threads = o.n_threads;
  config->sampler.temperature = so.temperature;
  config->sampler.top_k = so.top_k;
  config->sampler.top_p = so.top_p;
  config->sampler.min_p = so.min_p;
  config->sampler.repetition_penalty = so.repetition_penalty;
  config->sampler.repetition_window = so.repetition_window;
  config->sampler.seed = so.seed;
  return absl::OkStatus();
}

kestrel_status_t* RunGenerate(const char* fn, kestrel_session_t* session,
                              std::vector<int32_t>* prompt, bool from_text,
                              const kestrel_generate_options_t* options,
                              kestrel_generate_stats_t* out_stats, const char* text,
                              size_t text_length) {
  return Guard(fn, [&]() -> absl::Status {
    if (session == nullptr) return NullArgument(fn, "session");
    kestrel_generate_options_t o;
    kestrel_generate_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options,
                                           KESTREL_GENERATE_OPTIONS_MIN_SIZE, &o);
        !s.ok()) {
      return s;
    }
    if (o.n_stop_strings > 0 && o.stop_strings == nullptr) {
      return NullArgument(fn, "options->stop_strings (with n_stop_strings > 0)");
    }
    kestrel::runtime::GenerateRequest req;
    for (size_t i = 0; i < o.n_stop_strings; ++i) {
      if (o.stop_strings[i] == nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: options->stop_strings[%u] is NULL", fn, i));
      }
      req.stop_strings.emplace_back(o.stop_strings[i]);
    }
    if (from_text) {
      if (text == nullptr && text_length > 0) return NullArgument(fn, "prompt");
      if (text_length == 0) {
        return absl::InvalidArgumentError(absl::StrCat(fn, ": the prompt is empty (0 bytes)"));
      }
      *prompt = session->model->model->tokenizer().Encode(absl::string_view(text, text_length), o.add_bos,
                                                   /*parse_special=*/o.parse_special != 0);
    }
    req.prompt = std::move(*prompt);
    req.max_new_tokens = o.max_new_tokens;
    req.keep_context = o.keep_context;
    if (o.on_token != nullptr) {
      req.on_token = [&o](int32_t token, absl::string_view piece) {
        return o.on_token(o.user_data, token, piece.data(), piece.size());
      };
    }
    absl::StatusOr<kestrel::runtime::GenerateResult> r = session->session->Generate(req);
    if (!r.ok()) return r.status();
    if (out_stats != nullptr) {
      kestrel_generate_stats_t st{};
      st.struct_size = sizeof(st);
      st.n_prompt_tokens = r->n_prompt;
      st.n_generated_tokens = r->n_generated;
      st.prefill_ms = r->prefill_ms;
      st.decode_ms = r->decode_ms;
      st.prefill_tokens_per_s = r->prefill_ms > 0 ? r->n_prompt / (r->prefill_ms / 1000.0) : 0.0;
      st.decode_tokens_per_s = r->decode_ms > 0 ? r->n_decode_steps / (r->decode_ms / 1000.0) : 0.0;
      st.stop_reason = static_cast<kestrel_stop_reason_t>(r->stop_reason);
      if (auto s = kestrel::api::WriteInfo(fn, "out_stats", st, out_stats,
                                           KESTREL_GENERATE_STATS_MIN_SIZE);
          !s.ok()) {
        return s;
      }
    }
    if (r->stop_reason == kestrel::runtime::StopReason::kCancelled) {
      return absl::CancelledError(absl::StrFormat(
          "%s: cancelled by kestrel_session_cancel after %u generated tokens", fn, r->n_generated));
    }
    return absl::OkStatus();
  });
}

}  // namespace

extern "C" {

KESTREL_API void kestrel_sampler_options_init_sized(kestrel_sampler_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_sampler_options_t& o) {
    kestrel::runtime::SamplerConfig d;
    o.temperature = d.temperature;
    o.top_k = d.top_k;
    o.top_p = d.top_p;
    o.min_p = d.min_p;
    o.repetition_penalty = d.repetition_penalty;
    o.repetition_window = d.repetition_window;
    o.seed = d.seed;
  });
}

KESTREL_API void kestrel_session_options_init_sized(kestrel_session_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_session_options_t& o) {
    o.kv_block_size = 16;
  });
}

KESTREL_API void kestrel_generate_options_init_sized(kestrel_generate_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_generate_options_t& o) {
    o.max_new_tokens = 128;
    o.add_bos = true;
  });
}

KESTREL_API kestrel_status_t* kestrel_session_create(kestrel_model_t* model,
                                                     const kestrel_session_options_t* options,
                                                     kestrel_session_t** out_session) {
  return Guard("kestrel_session_create", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_create";
    if (model == nullptr) return NullArgument(fn, "model");
    if (out_session == nullptr) return NullArgument(fn, "out_session");
    if (auto s = kestrel::api::CheckRunnable(fn, model); !s.ok()) return s;
    kestrel::runtime::SessionConfig config;
    kestrel_model_t* draft = nullptr;
    if (auto s = FillConfig(fn, options, &config, &draft); !s.ok()) return s;
    absl::StatusOr<std::unique_ptr<kestrel::runtime::Session>> s = kestrel::runtime::Session::Create(
        model->model.get(), model->runtime->registry->ReferenceDevice(), config);
    if (!s.ok()) return absl::Status(s.status().code(), absl::StrCat(fn, ": ", s.status().message()));
    auto* handle = new kestrel_session;
    kestrel_model_retain(model);
    handle->model = model;
    handle->session = std::move(*s);
    if (draft != nullptr) {
      kestrel_model_retain(draft);
      handle->draft_model = draft;
    }
    *out_session = handle;
    return absl::OkStatus();
  });
}

KESTREL_API void kestrel_session_destroy(kestrel_session_t* session) {
  if (session == nullptr) return;
  kestrel_model_t* model = session->model;
  kestrel_model_t* draft = session->draft_model;
  session->session.reset();
  delete session;
  kestrel_model_release(draft);
  kestrel_model_release(model);
}

KESTREL_API kestrel_status_t* kestrel_session_generate(kestrel_session_t* session,
                                                       const char* prompt, size_t prompt_length,
                                                       const kestrel_generate_options_t* options,
                                                       kestrel_generate_stats_t* out_stats) {
  std::vector<int32_t> ids;
  return RunGenerate("kestrel_session_generate", session, &ids, true, options, out_stats, prompt,
                     prompt_length);
}

KESTREL_API kestrel_status_t* kestrel_session_generate_tokens(
    kestrel_session_t* session, const int32_t* prompt_tokens, size_t n_prompt_tokens,
    const kestrel_generate_options_t* options, kestrel_generate_stats_t* out_stats) {
  if (prompt_tokens == nullptr && n_prompt_tokens > 0) {
    return kestrel::api::ToC(NullArgument("kestrel_session_generate_tokens", "prompt_tokens"));
  }
  std::vector<int32_t> ids(prompt_tokens, prompt_tokens + n_prompt_tokens);
  return RunGenerate("kestrel_session_generate_tokens", session, &ids, false, options, out_stats,
                     nullptr, 0);
}

KESTREL_API void kestrel_session_cancel(kestrel_session_t* session) {
  if (session != nullptr && session->session) session->session->Cancel();
}

KESTREL_API kestrel_status_t* kestrel_session_decode(kestrel_session_t* session,
                                                     const int32_t* tokens, size_t n_tokens) {
  return Guard("kestrel_session_decode", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_decode";
    if (session == nullptr) return NullArgument(fn, "session");
    if (tokens == nullptr) return NullArgument(fn, "tokens");
    absl::Status s = session->session->Decode(absl::MakeConstSpan(tokens, n_tokens));
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(fn, ": ", s.message()));
    return s;
  });
}

KESTREL_API kestrel_status_t* kestrel_session_get_logits(const kestrel_session_t* session,
                                                         float* out_logits, size_t capacity,
                                                         size_t* out_required) {
  return Guard("kestrel_session_get_logits", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_get_logits";
    if (session == nullptr) return NullArgument(fn, "session");
    if (!session->session->has_logits()) {
      return absl::FailedPreconditionError(
          absl::StrCat(fn, ": no logits (nothing decoded since the session was created or truncated)"));
    }
    const std::vector<float>& l = session->session->logits();
    return kestrel::api::CopyOut(fn, "out_logits", l.data(), l.size(), out_logits, capacity, out_required);
  });
}

KESTREL_API size_t kestrel_session_token_count(const kestrel_session_t* session) {
  return session == nullptr ? 0 : session->session->n_tokens();
}

KESTREL_API kestrel_status_t* kestrel_session_truncate(kestrel_session_t* session,
                                                       size_t n_tokens) {
  return Guard("kestrel_session_truncate", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_truncate";
    if (session == nullptr) return NullArgument(fn, "session");
    if (n_tokens > session->session->n_tokens()) {
      return absl::OutOfRangeError(absl::StrFormat("%s: n_tokens %u > the %u tokens the session holds",
                                                   fn, n_tokens, session->session->n_tokens()));
    }
    return session->session->Truncate(static_cast<uint32_t>(n_tokens));
  });
}

KESTREL_API kestrel_status_t* kestrel_session_sample(kestrel_session_t* session,
                                                     int32_t* out_token) {
  return Guard("kestrel_session_sample", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_sample";
    if (session == nullptr) return NullArgument(fn, "session");
    if (out_token == nullptr) return NullArgument(fn, "out_token");
    absl::StatusOr<int32_t> t = session->session->Sample();
    if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(fn, ": ", t.status().message()));
    *out_token = *t;
    return absl::OkStatus();
  });
}

KESTREL_API kestrel_status_t* kestrel_session_expert_stats(const kestrel_session_t* session,
                                                           size_t layer, uint64_t* out_counts,
                                                           size_t capacity,
                                                           size_t* out_required) {
  return Guard("kestrel_session_expert_stats", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_expert_stats";
    if (session == nullptr) return NullArgument(fn, "session");
    const kestrel::runtime::Executor& e = session->session->executor();
    const uint32_t n_layers = e.plan().n_layers;
    if (layer >= n_layers) {
      return absl::OutOfRangeError(
          absl::StrFormat("%s: layer %u >= the model's %u layers", fn, layer, n_layers));
    }
    const size_t n_experts = e.plan().n_experts;
    const std::vector<uint64_t>& counts = e.expert_counts();
    const uint64_t* data = counts.empty() ? nullptr : counts.data() + layer * n_experts;
    return kestrel::api::CopyOut(fn, "out_counts", data, n_experts, out_counts, capacity,
                                 out_required);
  });
}

KESTREL_API void kestrel_session_reset_expert_stats(kestrel_session_t* session) {
  if (session != nullptr && session->session) session->session->ResetExpertStats();
}

}  // extern "C"
