// Kestrel C++ wrapper, part 2: the serving engine (kestrel/engine.h) as kestrel::Engine.
// Included by kestrel/kestrel.hpp; like it, header-only and nothing but kestrel_* calls.
//
//   kestrel::Engine engine(model);                            // KV pool on the model's device
//   engine.Start();                                           // optional: an engine thread
//   kestrel::RequestOptions ro;
//   ro.max_new_tokens = 32;
//   kestrel::RequestId id = engine.Submit("Once upon a time", ro,
//       [](uint32_t sample, int32_t token, std::string_view text) { ...; return true; });
//   engine.Wait(id);                                          // steps here without Start()
//   std::string text = engine.Text(id);
//   engine.Release(id);
//
// Threads: every member may be called from any thread, except the destructor and move
// assignment (no call may race with them). Streaming callbacks run on the thread that runs the
// step (the engine thread after Start(), else the caller of Step/Wait/Complete); inside one, do not
// call Step, Wait, WaitAll or Complete on the same engine. A callback's exception stops its
// request's samples and is rethrown by Wait on that request.
#ifndef KESTREL_ENGINE_HPP_
#define KESTREL_ENGINE_HPP_

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kestrel/kestrel.hpp"

namespace kestrel {

// Defaults equal kestrel_engine_options_init's.
struct EngineOptions {
  uint64_t kv_cache_bytes = 0;    // 0: enough for max_sequences full contexts
  uint32_t kv_block_size = 2;     // tokens per KV block, a power of two
  uint32_t max_batch_tokens = 512;
  uint32_t max_sequences = 16;
  bool prefix_cache = true;
  uint32_t context_length = 0;    // 0: the model's trained context
  uint32_t n_threads = 0;         // 0: the plugin decides
  uint64_t kv_type = KESTREL_KV_F32;
};

// Defaults equal kestrel_engine_request_options_init's.
struct RequestOptions {
  uint32_t max_new_tokens = 128;  // per sample
  SamplerOptions sampler;         // sample i of n uses seed + i
  std::vector<std::string> stop_strings;
  int32_t priority = 0;  // higher runs first
  uint32_t n = 1;        // samples sharing the prompt's KV blocks
  bool add_bos = true;   // text prompts only
  bool parse_special = false;  // control-token texts in a text prompt become those tokens
  // Log-probabilities (kestrel_engine_logprobs_fn): called on the engine thread per generated
  // token of `sample`, before its token callback; `top` holds the n_probs most likely tokens.
  uint32_t n_probs = 0;
  std::function<void(uint32_t sample, const TokenLogprob& chosen, const std::vector<TokenLogprob>& top)>
      on_logprobs;
  // Constrained output of every sample, as GenerateOptions::grammar / json_schema.
  std::string grammar;
  std::string json_schema;
};

using RequestId = kestrel_request_id_t;

enum class RequestState : int {
  kWaiting = KESTREL_REQUEST_WAITING,
  kRunning = KESTREL_REQUEST_RUNNING,
  kFinished = KESTREL_REQUEST_FINISHED,
  kFailed = KESTREL_REQUEST_FAILED,
  kCancelled = KESTREL_REQUEST_CANCELLED,
};

struct RequestResult {
  RequestState state = RequestState::kWaiting;
  StatusCode status_code = StatusCode::kOk;
  StopReason stop_reason = StopReason::kNone;
  uint32_t n_samples = 0;
  uint32_t n_prompt_tokens = 0;
  uint32_t n_generated_tokens = 0;
  uint32_t n_cached_prompt_tokens = 0;
  uint32_t n_preemptions = 0;
  double queue_ms = 0.0;
  double time_to_first_token_ms = 0.0;
  double total_ms = 0.0;

  bool done() const noexcept {
    return state == RequestState::kFinished || state == RequestState::kFailed ||
           state == RequestState::kCancelled;
  }
};

struct EngineStats {
  uint32_t n_running = 0;
  uint32_t n_waiting = 0;
  uint64_t n_finished = 0;
  uint32_t kv_blocks_total = 0;
  uint32_t kv_blocks_used = 0;
  uint32_t kv_blocks_free = 0;
  uint32_t kv_blocks_cached = 0;
  uint32_t kv_block_size = 0;
  uint64_t prefix_cache_lookups = 0;
  uint64_t prefix_cache_hits = 0;
  double prefix_cache_hit_rate = 0.0;
  uint64_t prefill_tokens_computed = 0;
  uint64_t prefill_tokens_reused = 0;
  uint64_t decode_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t steps = 0;
  uint64_t preemptions = 0;
  double busy_ms = 0.0;
  double tokens_per_s = 0.0;
  double kv_waste_fraction = 0.0;
  // Sliding-window KV pools (kestrel_engine_stats_t, all zero without them).
  uint64_t kv_window_bytes = 0;
  uint32_t kv_window_groups = 0;
  uint32_t kv_window_blocks_total = 0;
  uint32_t kv_window_blocks_used = 0;
  uint32_t kv_window_blocks_peak = 0;
  uint32_t kv_window_blocks_cached = 0;
  uint32_t kv_window_step_tokens = 0;
};

// What Engine::Complete returns for one request of one sample.
struct EngineCompletion {
  std::string text;
  std::vector<int32_t> tokens;
  RequestResult result;
};

// Streaming callback of a request: once per generated token of sample `sample`, in order, and once
// more with kTokenNone to flush held-back text (as kestrel_engine_token_fn). Return false to stop
// that sample (StopReason::kCallback).
using EngineTokenCallback =
    std::function<bool(uint32_t sample, int32_t token, std::string_view text)>;

namespace detail {

struct EngineSink {
  EngineTokenCallback fn;
  std::function<void(uint32_t, const TokenLogprob&, const std::vector<TokenLogprob>&)> logprobs_fn;
  std::vector<TokenLogprob> top;  // engine thread only
  std::mutex mu;
  std::exception_ptr error;
};

inline bool EngineTokenTrampoline(void* user_data, kestrel_request_id_t, uint32_t sample,
                                  int32_t token, const char* text, size_t length) {
  auto* sink = static_cast<EngineSink*>(user_data);
  try {
    return sink->fn(sample, token,
                    text != nullptr ? std::string_view(text, length) : std::string_view());
  } catch (...) {
    std::lock_guard<std::mutex> lock(sink->mu);
    if (!sink->error) sink->error = std::current_exception();
    return false;
  }
}

inline void EngineLogprobsTrampoline(void* user_data, kestrel_request_id_t, uint32_t sample,
                                     const kestrel_token_logprob_t* chosen,
                                     const kestrel_token_logprob_t* top, size_t n_top) {
  auto* sink = static_cast<EngineSink*>(user_data);
  try {
    sink->top.clear();
    for (size_t i = 0; i < n_top; ++i) sink->top.push_back(TokenLogprob{top[i].token, top[i].logprob});
    sink->logprobs_fn(sample, TokenLogprob{chosen->token, chosen->logprob}, sink->top);
  } catch (...) {
    std::lock_guard<std::mutex> lock(sink->mu);
    if (!sink->error) sink->error = std::current_exception();
  }
}

}  // namespace detail

// Many concurrent requests over one model (continuous batching, prefix cache, copy-on-write forks,
// preemption). Move-only; keeps its model alive. Requests stay in the engine until Release (or
// until the engine is destroyed).
class Engine {
 public:
  // Throws Error: INVALID_ARGUMENT (a bad option, named with its value), RESOURCE_EXHAUSTED.
  explicit Engine(const Model& model, const EngineOptions& options = EngineOptions());
  ~Engine() { kestrel_engine_destroy(handle_); }  // stops the thread; no callback after it
  Engine(Engine&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)),
        model_(std::move(other.model_)),
        sinks_(std::move(other.sinks_)) {}
  Engine& operator=(Engine&& other) noexcept {
    Engine moved(std::move(other));
    std::swap(handle_, moved.handle_);
    std::swap(model_, moved.model_);
    std::swap(sinks_, moved.sinks_);
    return *this;
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  kestrel_engine_t* get() const noexcept { return handle_; }
  const Model& model() const noexcept { return model_; }

  // Tokenizes `prompt` and queues a request; it runs during later steps. Throws Error:
  // INVALID_ARGUMENT (empty prompt, bad option, prompt too long for the context),
  // RESOURCE_EXHAUSTED (one sample needs more KV blocks than the pool has).
  RequestId Submit(std::string_view prompt, const RequestOptions& options = RequestOptions(),
                   EngineTokenCallback on_token = EngineTokenCallback()) {
    return SubmitImpl(options, std::move(on_token),
                      [&](const kestrel_engine_request_options_t* o, RequestId* id) {
                        return kestrel_engine_submit(handle_, prompt.data(), prompt.size(), o, id);
                      });
  }
  // The prompt as token ids, used as given (no BOS added). Also OUT_OF_RANGE for a bad id.
  RequestId SubmitTokens(const std::vector<int32_t>& prompt,
                         const RequestOptions& options = RequestOptions(),
                         EngineTokenCallback on_token = EngineTokenCallback()) {
    return SubmitImpl(options, std::move(on_token),
                      [&](const kestrel_engine_request_options_t* o, RequestId* id) {
                        return kestrel_engine_submit_tokens(handle_, prompt.data(), prompt.size(),
                                                            o, id);
                      });
  }

  // One scheduling step on this thread; returns the requests still waiting or running.
  // FAILED_PRECONDITION while the engine thread runs.
  uint32_t Step() {
    uint32_t active = 0;
    detail::Check(kestrel_engine_step(handle_, &active));
    return active;
  }
  void Start() { detail::Check(kestrel_engine_start(handle_)); }
  void Stop() noexcept { kestrel_engine_stop(handle_); }

  // Waits until request `id` is done (stepping on this thread unless Start() was called).
  // timeout_ms < 0: no limit. Returns true when done, false on timeout. Throws the exception its
  // callback threw, Error kCancelled if it was cancelled, its failure status (e.g. INTERNAL), or
  // NOT_FOUND for an unknown or released id.
  bool Wait(RequestId id, int64_t timeout_ms = -1) {
    kestrel_status_t* status = kestrel_engine_wait(handle_, id, timeout_ms);
    if (std::exception_ptr error = CallbackError(id)) {
      kestrel_status_free(status);
      std::rethrow_exception(error);
    }
    if (status != nullptr && kestrel_status_code(status) == KESTREL_STATUS_DEADLINE_EXCEEDED) {
      kestrel_status_free(status);
      return false;
    }
    detail::Check(status);
    return true;
  }
  // Waits until no request is waiting or running; false on timeout.
  bool WaitAll(int64_t timeout_ms = -1) { return Wait(KESTREL_ENGINE_ALL_REQUESTS, timeout_ms); }

  // Cancels a request (a no-op once it is done). Any thread, callbacks included.
  void Cancel(RequestId id) { detail::Check(kestrel_engine_cancel(handle_, id)); }
  // Forgets a request (cancelling it first if needed) and frees its callback. After it returns
  // the callback is never called again.
  void Release(RequestId id) {
    detail::Check(kestrel_engine_release_request(handle_, id));
    std::lock_guard<std::mutex> lock(sinks_->mu);
    sinks_->by_id.erase(id);
  }

  RequestResult Result(RequestId id, uint32_t sample = 0) const;
  // Generated token ids (EOS excluded) and text (stop string excluded) of a sample, so far.
  std::vector<int32_t> Tokens(RequestId id, uint32_t sample = 0) const {
    return detail::FetchBuffer<std::vector<int32_t>>(
        [&](int32_t* buffer, size_t capacity, size_t* required) {
          return kestrel_engine_request_tokens(handle_, id, sample, buffer, capacity, required);
        },
        64);
  }
  std::string Text(RequestId id, uint32_t sample = 0) const {
    return detail::FetchBuffer<std::string>(
        [&](char* buffer, size_t capacity, size_t* required) {
          return kestrel_engine_request_text(handle_, id, sample, buffer, capacity, required);
        },
        256);
  }
  EngineStats Stats() const;

  // Submit + Wait + Text/Tokens/Result + Release for one request (sample 0).
  EngineCompletion Complete(std::string_view prompt,
                            const RequestOptions& options = RequestOptions()) {
    const RequestId id = Submit(prompt, options);
    Releaser releaser{this, id};
    Wait(id);
    return EngineCompletion{Text(id), Tokens(id), Result(id)};
  }

 private:
  struct Sinks {
    std::mutex mu;
    std::map<RequestId, std::unique_ptr<detail::EngineSink>> by_id;
  };
  struct Releaser {
    Engine* engine;
    RequestId id;
    ~Releaser() {
      try {
        engine->Release(id);
      } catch (...) {
      }
    }
  };

  template <typename Call>
  RequestId SubmitImpl(const RequestOptions& options, EngineTokenCallback on_token, Call&& call);

  std::exception_ptr CallbackError(RequestId id) {
    std::lock_guard<std::mutex> lock(sinks_->mu);
    auto it = sinks_->by_id.find(id);
    if (it == sinks_->by_id.end()) return nullptr;
    std::lock_guard<std::mutex> sink_lock(it->second->mu);
    return it->second->error;
  }

  kestrel_engine_t* handle_ = nullptr;
  Model model_;
  // The callbacks of live requests: the engine calls them through raw pointers, so they live
  // until Release or destruction (after kestrel_engine_destroy, which makes no further call).
  std::unique_ptr<Sinks> sinks_ = std::make_unique<Sinks>();
};

inline Engine::Engine(const Model& model, const EngineOptions& options) : model_(model) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  o.kv_cache_bytes = options.kv_cache_bytes;
  o.kv_block_size = options.kv_block_size;
  o.max_batch_tokens = options.max_batch_tokens;
  o.max_sequences = options.max_sequences;
  o.prefix_cache = options.prefix_cache;
  o.context_length = options.context_length;
  o.n_threads = options.n_threads;
  o.kv_type = options.kv_type;
  detail::Check(kestrel_engine_create(model.get(), &o, &handle_));
}

template <typename Call>
RequestId Engine::SubmitImpl(const RequestOptions& options, EngineTokenCallback on_token,
                             Call&& call) {
  kestrel_sampler_options_t sampler;
  detail::FillSampler(options.sampler, &sampler);
  std::vector<const char*> stops;
  stops.reserve(options.stop_strings.size());
  for (const std::string& s : options.stop_strings) stops.push_back(s.c_str());
  kestrel_engine_request_options_t o;
  kestrel_engine_request_options_init(&o);
  o.max_new_tokens = options.max_new_tokens;
  o.sampler = &sampler;
  o.stop_strings = stops.empty() ? nullptr : stops.data();
  o.n_stop_strings = stops.size();
  o.priority = options.priority;
  o.n = options.n;
  o.add_bos = options.add_bos;
  o.parse_special = options.parse_special ? 1 : 0;
  if (!options.grammar.empty()) o.grammar = options.grammar.c_str();
  if (!options.json_schema.empty()) o.json_schema = options.json_schema.c_str();
  std::unique_ptr<detail::EngineSink> sink;
  if (on_token || options.on_logprobs) {
    sink = std::make_unique<detail::EngineSink>();
    o.user_data = sink.get();
  }
  if (on_token) {
    sink->fn = std::move(on_token);
    o.on_token = &detail::EngineTokenTrampoline;
  }
  if (options.on_logprobs) {
    sink->logprobs_fn = options.on_logprobs;
    o.n_probs = options.n_probs;
    o.on_logprobs = &detail::EngineLogprobsTrampoline;
  }
  RequestId id = 0;
  // The engine thread may call the sink before the id is known here; it reaches the sink through
  // user_data, and the table only keeps it alive.
  detail::Check(call(&o, &id));
  if (sink) {
    std::lock_guard<std::mutex> lock(sinks_->mu);
    sinks_->by_id[id] = std::move(sink);
  }
  return id;
}

inline RequestResult Engine::Result(RequestId id, uint32_t sample) const {
  kestrel_engine_result_t r{};
  r.struct_size = sizeof(r);
  detail::Check(kestrel_engine_request_result(handle_, id, sample, &r));
  RequestResult out;
  out.state = static_cast<RequestState>(r.state);
  out.status_code = static_cast<StatusCode>(r.status_code);
  out.stop_reason = static_cast<StopReason>(r.stop_reason);
  out.n_samples = r.n_samples;
  out.n_prompt_tokens = r.n_prompt_tokens;
  out.n_generated_tokens = r.n_generated_tokens;
  out.n_cached_prompt_tokens = r.n_cached_prompt_tokens;
  out.n_preemptions = r.n_preemptions;
  out.queue_ms = r.queue_ms;
  out.time_to_first_token_ms = r.time_to_first_token_ms;
  out.total_ms = r.total_ms;
  return out;
}

inline EngineStats Engine::Stats() const {
  kestrel_engine_stats_t s{};
  s.struct_size = sizeof(s);
  detail::Check(kestrel_engine_get_stats(handle_, &s));
  EngineStats out;
  out.n_running = s.n_running;
  out.n_waiting = s.n_waiting;
  out.n_finished = s.n_finished;
  out.kv_blocks_total = s.kv_blocks_total;
  out.kv_blocks_used = s.kv_blocks_used;
  out.kv_blocks_free = s.kv_blocks_free;
  out.kv_blocks_cached = s.kv_blocks_cached;
  out.kv_block_size = s.kv_block_size;
  out.prefix_cache_lookups = s.prefix_cache_lookups;
  out.prefix_cache_hits = s.prefix_cache_hits;
  out.prefix_cache_hit_rate = s.prefix_cache_hit_rate;
  out.prefill_tokens_computed = s.prefill_tokens_computed;
  out.prefill_tokens_reused = s.prefill_tokens_reused;
  out.decode_tokens = s.decode_tokens;
  out.generated_tokens = s.generated_tokens;
  out.steps = s.steps;
  out.preemptions = s.preemptions;
  out.busy_ms = s.busy_ms;
  out.tokens_per_s = s.tokens_per_s;
  out.kv_waste_fraction = s.kv_waste_fraction;
  out.kv_window_bytes = s.kv_window_bytes;
  out.kv_window_groups = s.kv_window_groups;
  out.kv_window_blocks_total = s.kv_window_blocks_total;
  out.kv_window_blocks_used = s.kv_window_blocks_used;
  out.kv_window_blocks_peak = s.kv_window_blocks_peak;
  out.kv_window_blocks_cached = s.kv_window_blocks_cached;
  out.kv_window_step_tokens = s.kv_window_step_tokens;
  return out;
}

}  // namespace kestrel

#endif  // KESTREL_ENGINE_HPP_
