// Sessions: create, generate (text or tokens), cancel, and the low-level decode/logits/truncate.
#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "api/src/c_api_internal.h"
#include "runtime/gguf/file_image.h"
#include "runtime/package/container.h"

#include <cmath>
#include <limits>

using kestrel::api::Guard;
using kestrel::api::NullArgument;

namespace kestrel::api {

absl::Status SamplerConfigFrom(const char* function, const char* name,
                               const kestrel_sampler_options_t& so,
                               const kestrel::runtime::Model& model,
                               kestrel::runtime::SamplerConfig* out) {
  out->temperature = so.temperature;
  out->top_k = so.top_k;
  out->top_p = so.top_p;
  out->min_p = so.min_p;
  out->repetition_penalty = so.repetition_penalty;
  out->repetition_window = so.repetition_window;
  out->seed = so.seed;
  out->logit_bias.clear();
  if (so.n_logit_bias > 0 && so.logit_bias == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s->logit_bias is NULL with n_logit_bias = %u", function, name, so.n_logit_bias));
  }
  const uint32_t n_vocab = model.config().n_vocab;
  for (size_t i = 0; i < so.n_logit_bias; ++i) {
    const kestrel_logit_bias_t& b = so.logit_bias[i];
    if (b.token < 0 || static_cast<uint32_t>(b.token) >= n_vocab) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: %s->logit_bias[%u].token = %d is outside the vocabulary [0, %u)", function, name, i,
          b.token, n_vocab));
    }
    if (std::isnan(b.bias) || b.bias == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: %s->logit_bias[%u].bias = %f for token %d must be finite or -inf", function, name,
          i, b.bias, b.token));
    }
    out->logit_bias.emplace_back(b.token, b.bias);
  }
  if (so.ignore_eos != 0) {
    for (int32_t id : model.tokenizer().EndOfGenerationIds()) {
      out->logit_bias.emplace_back(id, -std::numeric_limits<float>::infinity());
    }
  }
  return absl::OkStatus();
}

void CallLogprobs(const kestrel::runtime::TokenLogprobs& lp,
                  std::vector<kestrel_token_logprob_t>* scratch,
                  const std::function<void(const kestrel_token_logprob_t*,
                                           const kestrel_token_logprob_t*, size_t)>& fn) {
  scratch->clear();
  for (const kestrel::runtime::TokenLogprob& t : lp.top) scratch->push_back({t.token, t.logprob});
  const kestrel_token_logprob_t chosen{lp.chosen.token, lp.chosen.logprob};
  fn(&chosen, scratch->data(), scratch->size());
}

}  // namespace kestrel::api

namespace {

absl::Status FillConfig(const char* fn, const kestrel_session_options_t* options,
                        const kestrel::runtime::Model& model, kestrel::runtime::SessionConfig* config,
                        kestrel_model_t** draft) {
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
  return kestrel::api::SamplerConfigFrom(fn, "options->sampler", so, model, &config->sampler);
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
    std::vector<kestrel_token_logprob_t> scratch;
    if (o.on_logprobs != nullptr) {
      req.n_probs = o.n_probs;
      req.on_logprobs = [&o, &scratch](const kestrel::runtime::TokenLogprobs& lp) {
        kestrel::api::CallLogprobs(lp, &scratch,
                                   [&o](const kestrel_token_logprob_t* chosen,
                                        const kestrel_token_logprob_t* top, size_t n_top) {
                                     o.on_logprobs(o.user_data, chosen, top, n_top);
                                   });
      };
    }
    absl::StatusOr<std::shared_ptr<const kestrel::runtime::grammar::Grammar>> grammar =
        kestrel::api::GrammarFrom(fn, o.grammar, o.json_schema);
    if (!grammar.ok()) return grammar.status();
    req.grammar = *std::move(grammar);
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
    if (auto s = FillConfig(fn, options, *model->model, &config, &draft); !s.ok()) return s;
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

KESTREL_API void kestrel_embed_options_init_sized(kestrel_embed_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_embed_options_t& o) {
    o.pooling = KESTREL_POOLING_MEAN;
    o.add_bos = true;
  });
}

KESTREL_API kestrel_status_t* kestrel_session_embed(kestrel_session_t* session, const char* text,
                                                    size_t text_length,
                                                    const kestrel_embed_options_t* options,
                                                    float* out_embedding, size_t capacity,
                                                    size_t* out_required) {
  constexpr const char* fn = "kestrel_session_embed";
  return Guard(fn, [&]() -> absl::Status {
    if (session == nullptr) return NullArgument(fn, "session");
    if (out_required == nullptr) return NullArgument(fn, "out_required");
    if (text == nullptr && text_length > 0) return NullArgument(fn, "text");
    kestrel_embed_options_t o;
    kestrel_embed_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options, KESTREL_EMBED_OPTIONS_MIN_SIZE, &o);
        !s.ok()) {
      return s;
    }
    if (o.pooling != KESTREL_POOLING_MEAN && o.pooling != KESTREL_POOLING_LAST) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: options->pooling = %u is neither KESTREL_POOLING_MEAN (0) nor KESTREL_POOLING_LAST (1)", fn,
          o.pooling));
    }
    const size_t n_embd = session->model->model->config().n_embd;
    *out_required = n_embd;
    if (out_embedding == nullptr && capacity > 0) return NullArgument(fn, "out_embedding (with capacity > 0)");
    if (out_embedding == nullptr) return absl::OkStatus();  // measuring
    if (capacity < n_embd) {
      return absl::OutOfRangeError(absl::StrFormat(
          "%s: capacity %u is smaller than the embedding's %u floats (n_embd)", fn, capacity, n_embd));
    }
    if (text_length == 0) return absl::InvalidArgumentError(absl::StrCat(fn, ": the text is empty (0 bytes)"));
    const std::vector<int32_t> tokens = session->model->model->tokenizer().Encode(
        absl::string_view(text, text_length), o.add_bos, o.parse_special);
    std::vector<float> embedding;
    const kestrel::runtime::Pooling pooling =
        o.pooling == KESTREL_POOLING_LAST ? kestrel::runtime::Pooling::kLast : kestrel::runtime::Pooling::kMean;
    if (auto s = session->session->Embed(tokens, pooling, &embedding); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(fn, ": ", s.message()));
    }
    std::copy(embedding.begin(), embedding.end(), out_embedding);
    return absl::OkStatus();
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

// ---- session state -------------------------------------------------------------------------

extern "C" {

KESTREL_API kestrel_status_t* kestrel_session_save_state(kestrel_session_t* session,
                                                         void* out_state, size_t capacity,
                                                         size_t* out_required) {
  return Guard("kestrel_session_save_state", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_save_state";
    if (session == nullptr) return NullArgument(fn, "session");
    if (out_required == nullptr) return NullArgument(fn, "out_required");
    if (out_state == nullptr && capacity > 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: out_state is NULL but capacity is %u", fn, capacity));
    }
    bool too_small = false;
    absl::StatusOr<uint64_t> size = session->session->SaveState([&](uint64_t n) -> uint8_t* {
      if (out_state == nullptr) return nullptr;
      if (capacity < n) {
        too_small = true;
        return nullptr;
      }
      return static_cast<uint8_t*>(out_state);
    });
    if (!size.ok()) return absl::Status(size.status().code(), absl::StrCat(fn, ": ", size.status().message()));
    *out_required = static_cast<size_t>(*size);
    if (too_small) {
      return absl::OutOfRangeError(absl::StrFormat(
          "%s: the buffer holds %u bytes but the state needs %u", fn, capacity, *size));
    }
    return absl::OkStatus();
  });
}

KESTREL_API kestrel_status_t* kestrel_session_load_state(kestrel_session_t* session,
                                                         const void* state, size_t size) {
  return Guard("kestrel_session_load_state", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_load_state";
    if (session == nullptr) return NullArgument(fn, "session");
    if (state == nullptr) return NullArgument(fn, "state");
    absl::Status s = session->session->LoadState(static_cast<const uint8_t*>(state), size);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(fn, ": ", s.message()));
    return s;
  });
}

KESTREL_API kestrel_status_t* kestrel_session_save_state_file(kestrel_session_t* session,
                                                              const char* path) {
  return Guard("kestrel_session_save_state_file", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_save_state_file";
    if (session == nullptr) return NullArgument(fn, "session");
    if (path == nullptr) return NullArgument(fn, "path");
    std::vector<uint8_t> bytes;
    absl::StatusOr<uint64_t> size = session->session->SaveState([&](uint64_t n) {
      bytes.resize(static_cast<size_t>(n));
      return bytes.data();
    });
    if (!size.ok()) return absl::Status(size.status().code(), absl::StrCat(fn, ": ", size.status().message()));
    absl::Status s = kestrel::runtime::WriteFileAtomically(path, bytes);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(fn, ": ", s.message()));
    return s;
  });
}

KESTREL_API kestrel_status_t* kestrel_session_load_state_file(kestrel_session_t* session,
                                                              const char* path) {
  return Guard("kestrel_session_load_state_file", [&]() -> absl::Status {
    constexpr const char* fn = "kestrel_session_load_state_file";
    if (session == nullptr) return NullArgument(fn, "session");
    if (path == nullptr) return NullArgument(fn, "path");
    const std::string prefix = absl::StrCat(fn, ": '", path, "': ");
    absl::StatusOr<std::shared_ptr<const kestrel::runtime::FileImage>> image =
        kestrel::runtime::FileImage::Open(path, /*use_mmap=*/true, prefix);
    if (!image.ok()) return image.status();
    absl::Status s = session->session->LoadState((*image)->data(), (*image)->size());
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
    return s;
  });
}

}  // extern "C"
