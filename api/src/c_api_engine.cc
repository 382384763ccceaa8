// The serving engine's C boundary: options of any released size, status conversion, buffers.
// Built into libkestrel from runtime/engine/CMakeLists.txt.
#include "api/src/c_api_internal.h"
#include "absl/strings/match.h"
#include "kestrel/engine.h"
#include "runtime/engine/engine.h"

using kestrel::api::Guard;
using kestrel::api::NullArgument;

struct kestrel_engine {
  kestrel_model_t* model = nullptr;  // retained
  std::unique_ptr<kestrel::runtime::Engine> engine;
};

namespace {

absl::Status Prefixed(const char* fn, const absl::Status& s) {
  if (s.ok()) return s;
  if (absl::StartsWith(s.message(), "kestrel_")) return s;
  return absl::Status(s.code(), absl::StrCat(fn, ": ", s.message()));
}

kestrel_status_t* Submit(const char* fn, kestrel_engine_t* engine, std::vector<int32_t> tokens,
                         const char* text, size_t text_length, bool from_text,
                         const kestrel_engine_request_options_t* options,
                         kestrel_request_id_t* out_request_id) {
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    if (out_request_id == nullptr) return NullArgument(fn, "out_request_id");
    kestrel_engine_request_options_t o;
    kestrel_engine_request_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options,
                                           KESTREL_ENGINE_REQUEST_OPTIONS_MIN_SIZE, &o);
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
    if (o.n_stop_strings > 0 && o.stop_strings == nullptr) {
      return NullArgument(fn, "options->stop_strings (with n_stop_strings > 0)");
    }
    kestrel::runtime::EngineRequest req;
    for (size_t i = 0; i < o.n_stop_strings; ++i) {
      if (o.stop_strings[i] == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: options->stop_strings[%u] is NULL", fn, i));
      }
      req.stop_strings.emplace_back(o.stop_strings[i]);
    }
    if (from_text) {
      if (text == nullptr && text_length > 0) return NullArgument(fn, "prompt");
      if (text_length == 0) {
        return absl::InvalidArgumentError(absl::StrCat(fn, ": the prompt is empty (0 bytes)"));
      }
      tokens = engine->model->model->tokenizer().Encode(absl::string_view(text, text_length), o.add_bos,
                                                 /*parse_special=*/o.parse_special != 0);
    }
    req.prompt = std::move(tokens);
    req.max_new_tokens = o.max_new_tokens;
    req.priority = o.priority;
    req.n = o.n;
    if (auto s = kestrel::api::SamplerConfigFrom(fn, "options->sampler", so, *engine->model->model,
                                                 &req.sampler);
        !s.ok()) {
      return s;
    }
    kestrel_model_t* draft = nullptr;
    if (auto st = kestrel::api::ReadSpeculative(fn, o.speculative, &req.spec, &draft); !st.ok()) {
      return st;
    }
    if (draft != nullptr) {
      kestrel_model_retain(draft);  // released with the request
      req.keep_alive = std::shared_ptr<void>(draft, [](void* m) {
        kestrel_model_release(static_cast<kestrel_model_t*>(m));
      });
    }
    if (o.on_token != nullptr) {
      kestrel_engine_token_fn fn_ptr = o.on_token;
      void* user_data = o.user_data;
      req.on_token = [fn_ptr, user_data](uint64_t id, uint32_t sample, int32_t token,
                                         absl::string_view piece) {
        return fn_ptr(user_data, id, sample, token, piece.data(), piece.size());
      };
    }
    if (o.on_logprobs != nullptr) {
      kestrel_engine_logprobs_fn lp_ptr = o.on_logprobs;
      void* user_data = o.user_data;
      req.n_probs = o.n_probs;
      // Called on the engine thread only, so one scratch per request suffices.
      auto scratch = std::make_shared<std::vector<kestrel_token_logprob_t>>();
      req.on_logprobs = [lp_ptr, user_data, scratch](uint64_t id, uint32_t sample,
                                                     const kestrel::runtime::TokenLogprobs& lp) {
        kestrel::api::CallLogprobs(lp, scratch.get(),
                                   [&](const kestrel_token_logprob_t* chosen,
                                       const kestrel_token_logprob_t* top, size_t n_top) {
                                     lp_ptr(user_data, id, sample, chosen, top, n_top);
                                   });
      };
    }
    absl::StatusOr<std::shared_ptr<const kestrel::runtime::grammar::Grammar>> grammar =
        kestrel::api::GrammarFrom(fn, o.grammar, o.json_schema);
    if (!grammar.ok()) return grammar.status();
    req.grammar = *std::move(grammar);
    absl::StatusOr<uint64_t> id = engine->engine->Submit(std::move(req));
    if (!id.ok()) return Prefixed(fn, id.status());
    *out_request_id = *id;
    return absl::OkStatus();
  });
}

absl::StatusOr<kestrel::runtime::RequestOutput> SampleOf(const char* fn,
                                                         const kestrel_engine_t* engine,
                                                         kestrel_request_id_t id,
                                                         uint32_t sample_index) {
  absl::StatusOr<kestrel::runtime::RequestOutput> r = engine->engine->Result(id);
  if (!r.ok()) return Prefixed(fn, r.status());
  if (sample_index >= r->samples.size()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: sample_index %u is not below the request's %u samples", fn, sample_index,
        r->samples.size()));
  }
  return r;
}

}  // namespace

extern "C" {

KESTREL_API void kestrel_engine_options_init_sized(kestrel_engine_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_engine_options_t& o) {
    kestrel::runtime::EngineConfig d;
    o.kv_cache_bytes = d.kv_cache_bytes;
    o.kv_block_size = d.block_size;
    o.max_batch_tokens = d.max_batch_tokens;
    o.max_sequences = d.max_sequences;
    o.prefix_cache = d.prefix_cache;
    o.context_length = d.context_length;
    o.n_threads = d.n_threads;
    o.kv_swap_bytes = d.kv_swap_bytes;
    o.kv_swap_policy = static_cast<uint32_t>(d.kv_swap_policy);
  });
}

KESTREL_API void kestrel_engine_request_options_init_sized(kestrel_engine_request_options_t* out, size_t struct_size) {
  kestrel::api::InitOptions(out, struct_size, [](kestrel_engine_request_options_t& o) {
    o.max_new_tokens = 128;
    o.n = 1;
    o.add_bos = true;
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_create(kestrel_model_t* model,
                                                    const kestrel_engine_options_t* options,
                                                    kestrel_engine_t** out_engine) {
  constexpr const char* fn = "kestrel_engine_create";
  return Guard(fn, [&]() -> absl::Status {
    if (model == nullptr) return NullArgument(fn, "model");
    if (out_engine == nullptr) return NullArgument(fn, "out_engine");
    if (auto s = kestrel::api::CheckRunnable(fn, model); !s.ok()) return s;
    kestrel_engine_options_t o;
    kestrel_engine_options_init(&o);
    if (auto s = kestrel::api::ReadOptions(fn, "options", options,
                                           KESTREL_ENGINE_OPTIONS_MIN_SIZE, &o);
        !s.ok()) {
      return s;
    }
    kestrel::runtime::EngineConfig c;
    if (auto s = kestrel::api::KvTypeToDtype(fn, o.kv_type, &c.kv_dtype); !s.ok()) return s;
    c.kv_cache_bytes = o.kv_cache_bytes;
    c.block_size = o.kv_block_size;
    c.max_batch_tokens = o.max_batch_tokens;
    c.max_sequences = o.max_sequences;
    c.prefix_cache = o.prefix_cache;
    c.context_length = o.context_length;
    c.n_threads = o.n_threads;
    if (o.kv_swap_policy > KESTREL_KV_SWAP_NEVER) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: options->kv_swap_policy = %u is not a kestrel_kv_swap_policy_t (0..2)", fn,
          o.kv_swap_policy));
    }
    c.kv_swap_bytes = o.kv_swap_bytes;
    c.kv_swap_policy = static_cast<kestrel::runtime::KvSwapPolicy>(o.kv_swap_policy);
    absl::StatusOr<std::unique_ptr<kestrel::runtime::Engine>> e = kestrel::runtime::Engine::Create(
        model->model.get(), model->runtime->registry->ReferenceDevice(), c);
    if (!e.ok()) return Prefixed(fn, e.status());
    auto* handle = new kestrel_engine;
    kestrel_model_retain(model);
    handle->model = model;
    handle->engine = std::move(*e);
    *out_engine = handle;
    return absl::OkStatus();
  });
}

KESTREL_API void kestrel_engine_destroy(kestrel_engine_t* engine) {
  if (engine == nullptr) return;
  kestrel_model_t* model = engine->model;
  engine->engine.reset();
  delete engine;
  kestrel_model_release(model);
}

KESTREL_API kestrel_status_t* kestrel_engine_submit(kestrel_engine_t* engine, const char* prompt,
                                                    size_t prompt_length,
                                                    const kestrel_engine_request_options_t* options,
                                                    kestrel_request_id_t* out_request_id) {
  return Submit("kestrel_engine_submit", engine, {}, prompt, prompt_length, true, options,
                out_request_id);
}

KESTREL_API kestrel_status_t* kestrel_engine_submit_tokens(
    kestrel_engine_t* engine, const int32_t* prompt_tokens, size_t n_prompt_tokens,
    const kestrel_engine_request_options_t* options, kestrel_request_id_t* out_request_id) {
  constexpr const char* fn = "kestrel_engine_submit_tokens";
  if (prompt_tokens == nullptr && n_prompt_tokens > 0) {
    return kestrel::api::ToC(NullArgument(fn, "prompt_tokens"));
  }
  std::vector<int32_t> ids;
  try {
    ids.assign(prompt_tokens, prompt_tokens + n_prompt_tokens);
  } catch (const std::bad_alloc&) {
    return kestrel::api::ToC(absl::ResourceExhaustedError(absl::StrCat(fn, ": out of memory")));
  }
  return Submit(fn, engine, std::move(ids), nullptr, 0, false, options, out_request_id);
}

KESTREL_API kestrel_status_t* kestrel_engine_step(kestrel_engine_t* engine,
                                                  uint32_t* out_n_active) {
  constexpr const char* fn = "kestrel_engine_step";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    uint32_t n = 0;
    absl::Status s = engine->engine->Step(&n);
    if (out_n_active != nullptr) *out_n_active = n;
    return Prefixed(fn, s);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_start(kestrel_engine_t* engine) {
  constexpr const char* fn = "kestrel_engine_start";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    return engine->engine->Start();
  });
}

KESTREL_API void kestrel_engine_stop(kestrel_engine_t* engine) {
  if (engine != nullptr) engine->engine->Stop();
}

KESTREL_API kestrel_status_t* kestrel_engine_wait(kestrel_engine_t* engine,
                                                  kestrel_request_id_t request_id,
                                                  int64_t timeout_ms) {
  constexpr const char* fn = "kestrel_engine_wait";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    return engine->engine->Wait(request_id, timeout_ms);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_cancel(kestrel_engine_t* engine,
                                                    kestrel_request_id_t request_id) {
  constexpr const char* fn = "kestrel_engine_cancel";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    return engine->engine->Cancel(request_id);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_release_request(kestrel_engine_t* engine,
                                                             kestrel_request_id_t request_id) {
  constexpr const char* fn = "kestrel_engine_release_request";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    return engine->engine->Release(request_id);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_request_result(const kestrel_engine_t* engine,
                                                            kestrel_request_id_t request_id,
                                                            uint32_t sample_index,
                                                            kestrel_engine_result_t* out_result) {
  constexpr const char* fn = "kestrel_engine_request_result";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    if (out_result == nullptr) return NullArgument(fn, "out_result");
    absl::StatusOr<kestrel::runtime::RequestOutput> r = SampleOf(fn, engine, request_id, sample_index);
    if (!r.ok()) return r.status();
    const kestrel::runtime::SampleOutput& s = r->samples[sample_index];
    kestrel_engine_result_t full{};
    full.struct_size = sizeof(full);
    full.state = static_cast<kestrel_request_state_t>(r->state);
    full.status_code = static_cast<kestrel_status_code_t>(r->status.code());
    full.stop_reason = static_cast<kestrel_stop_reason_t>(s.stop_reason);
    full.n_samples = static_cast<uint32_t>(r->samples.size());
    full.n_prompt_tokens = r->n_prompt;
    full.n_generated_tokens = static_cast<uint32_t>(s.tokens.size());
    full.n_cached_prompt_tokens = r->n_cached_prompt_tokens;
    full.n_preemptions = r->n_preemptions;
    full.queue_ms = r->queue_ms;
    full.time_to_first_token_ms = r->ttft_ms;
    full.total_ms = r->total_ms;
    return kestrel::api::WriteInfo(fn, "out_result", full, out_result,
                                   KESTREL_ENGINE_RESULT_MIN_SIZE);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_request_tokens(const kestrel_engine_t* engine,
                                                            kestrel_request_id_t request_id,
                                                            uint32_t sample_index,
                                                            int32_t* out_tokens, size_t capacity,
                                                            size_t* out_required) {
  constexpr const char* fn = "kestrel_engine_request_tokens";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    if (out_required == nullptr) return NullArgument(fn, "out_required");
    absl::StatusOr<kestrel::runtime::RequestOutput> r = SampleOf(fn, engine, request_id, sample_index);
    if (!r.ok()) return r.status();
    const std::vector<int32_t>& t = r->samples[sample_index].tokens;
    return kestrel::api::CopyOut(fn, "out_tokens", t.data(), t.size(), out_tokens, capacity,
                                 out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_request_text(const kestrel_engine_t* engine,
                                                          kestrel_request_id_t request_id,
                                                          uint32_t sample_index, char* out_text,
                                                          size_t capacity, size_t* out_required) {
  constexpr const char* fn = "kestrel_engine_request_text";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    if (out_required == nullptr) return NullArgument(fn, "out_required");
    absl::StatusOr<kestrel::runtime::RequestOutput> r = SampleOf(fn, engine, request_id, sample_index);
    if (!r.ok()) return r.status();
    const std::string& t = r->samples[sample_index].text;
    return kestrel::api::CopyOut(fn, "out_text", t.data(), t.size(), out_text, capacity,
                                 out_required);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_get_stats(const kestrel_engine_t* engine,
                                                       kestrel_engine_stats_t* out_stats) {
  constexpr const char* fn = "kestrel_engine_get_stats";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    if (out_stats == nullptr) return NullArgument(fn, "out_stats");
    const kestrel::runtime::EngineStats s = engine->engine->Stats();
    kestrel_engine_stats_t full{};
    full.struct_size = sizeof(full);
    full.n_running = s.n_running;
    full.n_waiting = s.n_waiting;
    full.n_finished = s.n_finished;
    full.kv_blocks_total = s.kv_blocks_total;
    full.kv_blocks_used = s.kv_blocks_used;
    full.kv_blocks_free = s.kv_blocks_free;
    full.kv_blocks_cached = s.kv_blocks_cached;
    full.kv_block_size = s.kv_block_size;
    full.prefix_cache_lookups = s.prefix_cache_lookups;
    full.prefix_cache_hits = s.prefix_cache_hits;
    full.prefix_cache_hit_rate =
        s.prefix_cache_lookups > 0
            ? static_cast<double>(s.prefix_cache_hits) / static_cast<double>(s.prefix_cache_lookups)
            : 0.0;
    full.prefill_tokens_computed = s.prefill_tokens_computed;
    full.prefill_tokens_reused = s.prefill_tokens_reused;
    full.decode_tokens = s.decode_tokens;
    full.generated_tokens = s.generated_tokens;
    full.steps = s.steps;
    full.preemptions = s.preemptions;
    full.busy_ms = s.busy_ms;
    full.tokens_per_s = s.busy_ms > 0 ? s.generated_tokens / (s.busy_ms / 1000.0) : 0.0;
    full.kv_waste_fraction = s.kv_waste_fraction;
    full.kv_swap_outs = s.kv_swap_outs;
    full.kv_swap_ins = s.kv_swap_ins;
    full.kv_swap_fallbacks = s.kv_swap_fallbacks;
    full.kv_swap_out_bytes = s.kv_swap_out_bytes;
    full.kv_swap_in_bytes = s.kv_swap_in_bytes;
    full.kv_swap_ms = s.kv_swap_ms;
    full.kv_swap_held_bytes = s.kv_swap_held_bytes;
    full.kv_swap_peak_bytes = s.kv_swap_peak_bytes;
    full.kv_swap_budget_bytes = s.kv_swap_budget_bytes;
    full.kv_window_bytes = s.kv_window_bytes;
    full.kv_window_groups = s.kv_window_groups;
    full.kv_window_blocks_total = s.kv_window_blocks_total;
    full.kv_window_blocks_used = s.kv_window_blocks_used;
    full.kv_window_blocks_peak = s.kv_window_blocks_peak;
    full.kv_window_blocks_cached = s.kv_window_blocks_cached;
    full.kv_window_step_tokens = s.kv_window_step_tokens;
    return kestrel::api::WriteInfo(fn, "out_stats", full, out_stats, KESTREL_ENGINE_STATS_MIN_SIZE);
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_save_prefix_cache(kestrel_engine_t* engine,
                                                               const char* path) {
  constexpr const char* fn = "kestrel_engine_save_prefix_cache";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    if (path == nullptr) return NullArgument(fn, "path");
    return Prefixed(fn, engine->engine->SavePrefixCache(path));
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_load_prefix_cache(kestrel_engine_t* engine,
                                                               const char* path,
                                                               uint32_t* out_blocks_loaded) {
  constexpr const char* fn = "kestrel_engine_load_prefix_cache";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    if (path == nullptr) return NullArgument(fn, "path");
    absl::StatusOr<uint32_t> n = engine->engine->LoadPrefixCache(path);
    if (!n.ok()) return Prefixed(fn, n.status());
    if (out_blocks_loaded != nullptr) *out_blocks_loaded = *n;
    return absl::OkStatus();
  });
}

KESTREL_API kestrel_status_t* kestrel_engine_request_speculative_stats(
    const kestrel_engine_t* engine, kestrel_request_id_t request_id,
    kestrel_speculative_stats_t* out_stats) {
  constexpr const char* fn = "kestrel_engine_request_speculative_stats";
  return Guard(fn, [&]() -> absl::Status {
    if (engine == nullptr) return NullArgument(fn, "engine");
    absl::StatusOr<kestrel::runtime::RequestOutput> r = engine->engine->Result(request_id);
    if (!r.ok()) return Prefixed(fn, r.status());
    return kestrel::api::WriteSpecStats(fn, r->spec, out_stats);
  });
}

}  // extern "C"
