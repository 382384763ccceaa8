// Kestrel C++ wrapper: a header-only C++17 layer over the stable C ABI (kestrel/kestrel.h).
//
// It adds nothing to the ABI: every call goes through the exported kestrel_* functions, so a
// program built with this header links only libkestrel.so and keeps working with any newer
// libkestrel of the same major version.
//
//   kestrel::Runtime runtime;                                  // loads the plugins
//   kestrel::Model model = runtime.LoadModel("stories260K.gguf");
//   kestrel::SessionOptions so;
//   so.sampler = kestrel::SamplerOptions::Greedy();
//   kestrel::Session session(model, so);
//   kestrel::GenerateOptions go;
//   go.max_new_tokens = 32;
//   session.Generate("Once upon a time", go, [](int32_t token, std::string_view text) {
//     std::cout << text << std::flush;                        // return false to stop early
//   });
//
// The serving engine, kestrel::Engine (many concurrent requests over one model), is in
// kestrel/engine.hpp, which this header includes.
//
// Errors: every failing call throws kestrel::Error (a std::runtime_error) carrying the library's
// status code and message. Ownership: Runtime and Session are move-only owners; Model is a
// shared, copyable reference (kestrel_model_retain/release). A model and a session keep alive
// what they need (the runtime's plugins and the log callback), so objects may be destroyed in
// any order. Threads: Runtime and Model may be used from any number of threads; a Session by one
// thread at a time, except Session::Cancel (any thread). Callbacks run on the calling thread of
// the function that triggered them, except the log callback (see RuntimeOptions::log).
#ifndef KESTREL_KESTREL_HPP_
#define KESTREL_KESTREL_HPP_

#if !defined(__cplusplus) || (__cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L))
#error "kestrel/kestrel.hpp needs C++17 or newer; C programs include kestrel/kestrel.h"
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "kestrel/kestrel.h"

namespace kestrel {

// ---- Status codes and errors ---------------------------------------------------------------

// The canonical codes of kestrel_status_code_t (same values).
enum class StatusCode : int {
  kOk = KESTREL_STATUS_OK,
  kCancelled = KESTREL_STATUS_CANCELLED,
  kUnknown = KESTREL_STATUS_UNKNOWN,
  kInvalidArgument = KESTREL_STATUS_INVALID_ARGUMENT,
  kDeadlineExceeded = KESTREL_STATUS_DEADLINE_EXCEEDED,
  kNotFound = KESTREL_STATUS_NOT_FOUND,
  kAlreadyExists = KESTREL_STATUS_ALREADY_EXISTS,
  kPermissionDenied = KESTREL_STATUS_PERMISSION_DENIED,
  kResourceExhausted = KESTREL_STATUS_RESOURCE_EXHAUSTED,
  kFailedPrecondition = KESTREL_STATUS_FAILED_PRECONDITION,
  kAborted = KESTREL_STATUS_ABORTED,
  kOutOfRange = KESTREL_STATUS_OUT_OF_RANGE,
  kUnimplemented = KESTREL_STATUS_UNIMPLEMENTED,
  kInternal = KESTREL_STATUS_INTERNAL,
  kUnavailable = KESTREL_STATUS_UNAVAILABLE,
  kDataLoss = KESTREL_STATUS_DATA_LOSS,
};

// "INVALID_ARGUMENT", ... ("UNKNOWN_CODE" for a value outside the enum).
inline const char* StatusCodeName(StatusCode code) noexcept {
  return kestrel_status_code_name(static_cast<kestrel_status_code_t>(code));
}

// A failed Kestrel call. what() is "<CODE_NAME>: <message>"; message() is the library's message
// alone (it names the bad argument, field, file offset or value).
class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message)
      : std::runtime_error(std::string(StatusCodeName(code)) + ": " + message),
        code_(code),
        message_(message) {}

  StatusCode code() const noexcept { return code_; }
  const char* code_name() const noexcept { return StatusCodeName(code_); }
  const std::string& message() const noexcept { return message_; }

 private:
  StatusCode code_;
  std::string message_;
};

namespace detail {

// Takes ownership of `status` (non-NULL): copies code and message, frees it, throws.
[[noreturn]] inline void Throw(kestrel_status_t* status) {
  const StatusCode code = static_cast<StatusCode>(kestrel_status_code(status));
  std::string message = kestrel_status_message(status);
  kestrel_status_free(status);
  throw Error(code, message);
}

inline void Check(kestrel_status_t* status) {
  if (status != nullptr) Throw(status);
}

inline std::string Str(const char* s) { return s != nullptr ? std::string(s) : std::string(); }

// The C API's buffer convention (model.h): `call(buffer, capacity, &required)` always reports the
// required size; a too-small buffer is OUT_OF_RANGE. Measures and fills in at most two calls when
// `guess` is large enough, three otherwise.
template <typename Container, typename Call>
Container FetchBuffer(Call&& call, size_t guess) {
  Container out;
  out.resize(guess);
  for (int attempt = 0; attempt < 3; ++attempt) {
    size_t required = 0;
    kestrel_status_t* status = call(out.empty() ? nullptr : out.data(), out.size(), &required);
    if (status == nullptr) {
      if (required <= out.size()) {
        out.resize(required);
        return out;
      }
      out.resize(required);  // that was a measuring call (empty buffer): fill now
      continue;
    }
    if (kestrel_status_code(status) == KESTREL_STATUS_OUT_OF_RANGE && required > out.size()) {
      kestrel_status_free(status);
      out.resize(required);
      continue;
    }
    Throw(status);
  }
  throw Error(StatusCode::kInternal, "kestrel.hpp: the required buffer size kept growing");
}

}  // namespace detail

// ---- Version -------------------------------------------------------------------------------

// The version of the loaded library ("MAJOR.MINOR.PATCH") and its encoded number; compare with
// KESTREL_VERSION_NUMBER, the version of the headers this program was compiled with.
inline std::string Version() { return kestrel_version(); }
inline uint32_t VersionNumber() noexcept { return kestrel_version_number(); }

// ---- Options and descriptions --------------------------------------------------------------

enum class LogLevel : int {
  kDebug = KESTREL_LOG_DEBUG,
  kInfo = KESTREL_LOG_INFO,
  kWarning = KESTREL_LOG_WARNING,
  kError = KESTREL_LOG_ERROR,
  kOff = KESTREL_LOG_OFF,
};

// Called for every log line at or above the runtime's level, on whichever thread produced it
// (possibly several at once), so it must be thread-safe. `message` is valid during the call only.
// An exception thrown by it is swallowed (it must not cross the C boundary).
using LogCallback = std::function<void(LogLevel level, std::string_view message)>;

struct RuntimeOptions {
  // ':'-separated plugin folders and/or files. Empty: KESTREL_PLUGIN_PATH if set, else the
  // plugin folder next to libkestrel.so (<libdir>/kestrel/plugins).
  std::string plugin_path;
  LogCallback log;  // empty: no logging
  LogLevel log_level = LogLevel::kWarning;
};

struct PluginInfo {
  std::string name;
  std::string path;
  std::string version;
  bool loaded = false;
  std::string skip_reason;  // empty when loaded
  uint16_t api_major = 0;
  uint16_t api_minor = 0;
  uint32_t device_count = 0;
};

enum class DeviceKind : int {
  kCpu = KESTREL_DEVICE_CPU,
  kGpu = KESTREL_DEVICE_GPU,
  kNpu = KESTREL_DEVICE_NPU,
  kAccelerator = KESTREL_DEVICE_ACCELERATOR,
};

struct DeviceInfo {
  std::string name;  // as used in ModelOptions::device, e.g. "ref", "cuda:0"
  std::string plugin;
  std::string description;
  DeviceKind kind = DeviceKind::kCpu;
  uint64_t memory_bytes = 0;
  bool host_visible = false;
  bool async = false;
  uint64_t dtype_mask = 0;         // KESTREL_DTYPE_MASK_* bits it computes with
  uint64_t weight_dtype_mask = 0;  // KESTREL_DTYPE_MASK_* bits it accepts as weights
};

// Load progress in [0, 1], called on the loading thread; return false to cancel the load (the
// load then throws Error with StatusCode::kCancelled). An exception thrown by it cancels the load
// and is rethrown by Runtime::LoadModel.
using ProgressCallback = std::function<bool(float progress)>;

struct ModelOptions {
  std::string device;  // empty: the default device (first of the preferred order cpu, ref)
  bool use_mmap = true;
  ProgressCallback progress;  // empty: none
  // Metadata only (kestrel_model_options_t.metadata_only): any readable GGUF loads, no weights
  // are prepared, ModelInfo::runnable / unsupported say what this build cannot run; the tokenizer
  // and chat-template calls work when its tokenizer is supported; sessions and engines refuse
  // such a model.
  bool metadata_only = false;
  // Memory offload (kestrel/offload.h): budgets "DEVICE=SIZE[,...]" ("" = none), which cached
  // expert a miss replaces, the KV the plan reserves, KESTREL_OFFLOAD_FLAG_* bits.
  std::string memory_budget;
  kestrel_expert_cache_policy_t expert_cache_policy = KESTREL_EXPERT_CACHE_LRU;
  uint32_t plan_context_length = 0;  // 0: the trained context
  uint32_t plan_sequences = 0;       // 0 or 1: one
  uint32_t offload_flags = 0;
};

// The plan of a model loaded with a memory budget (kestrel_memory_plan_info_t).
struct MemoryPlan {
  std::string device;
  uint64_t device_budget_bytes = 0, host_budget_bytes = 0, resident_bytes = 0;
  uint32_t resident_tensors = 0, offloaded_tensors = 0;
  bool experts_offloaded = false;
  uint64_t expert_bytes = 0, expert_slot_bytes = 0;
  uint32_t experts_total = 0, expert_slots = 0;
  uint64_t expert_cache_bytes = 0, kv_bytes = 0;
  uint32_t kv_tokens = 0, n_streamed_layers = 0;
  uint64_t host_swap_bytes = 0, device_total_bytes = 0, streamed_bytes = 0, stream_ring_bytes = 0;
  uint32_t stream_slots = 0, stream_prefetch_distance = 0;
  uint64_t host_resident_bytes = 0;
  uint32_t host_resident_tensors = 0;
};

// Hits and misses of one MoE layer (kestrel_model_get_expert_layer_stats).
struct ExpertLayerStats {
  uint64_t hits = 0, misses = 0;
};

// The expert cache's statistics (kestrel_offload_stats_t) with every layer's counts.
struct OffloadStats {
  uint64_t expert_hits = 0, expert_misses = 0, disk_bytes_read = 0;
  double disk_read_seconds = 0;
  uint64_t expert_cache_bytes = 0, expert_cache_peak_bytes = 0, expert_cache_budget_bytes = 0;
  uint32_t n_layers = 0;
  kestrel_expert_cache_policy_t policy = KESTREL_EXPERT_CACHE_LRU;
  std::string io_mode;
  uint32_t expert_slots = 0, expert_prefetch_buffers = 0;
  uint64_t expert_prefetches = 0, expert_prefetch_hits = 0;
  double expert_prefetch_wait_seconds = 0;
  uint64_t expert_host_runs = 0;
  double expert_host_seconds = 0;
  std::vector<ExpertLayerStats> layers;  // n_layers entries
};

// What moved through the model's device (kestrel_memory_stats_t).
struct MemoryStats {
  std::string device;
  uint64_t device_bytes = 0, device_peak_bytes = 0, host_to_device_bytes = 0,
           device_to_host_bytes = 0, expert_bytes_read = 0;
  double expert_read_seconds = 0;
  uint64_t streamed_bytes_copied = 0;
  double stream_copy_wait_seconds = 0;
};

// One message of a conversation for Model::ApplyChatTemplate.
struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = true;  // end with what opens the assistant's turn
  // Empty: the model's tokenizer.chat_template; otherwise this Jinja template is rendered instead.
  std::string template_text;
};

struct TokenizerInfo {
  std::string kind;           // "spm" or "bpe"
  std::string pre_tokenizer;  // BPE: tokenizer.ggml.pre as used
  uint32_t vocab_size = 0;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  uint32_t n_end_of_generation = 0;
  std::string chat_template;         // "" if none
  std::string chat_template_family;  // "chatml", "llama3", "gemma", "mistral", "phi3", "other", ""
  std::string chat_template_error;   // "" if the template renders
};

struct ModelInfo {
  std::string architecture;
  std::string name;
  std::string device;
  uint64_t n_params = 0;
  uint64_t weight_bytes = 0;
  uint32_t n_layers = 0;
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;
  uint32_t n_embd = 0;
  uint32_t n_ff = 0;
  uint32_t head_dim = 0;
  uint32_t context_length = 0;  // trained context
  uint32_t vocab_size = 0;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = false;
  float rope_freq_base = 0.0f;
  float rms_norm_eps = 0.0f;
  uint32_t n_tensors = 0;
  uint32_t n_experts = 0;       // 0: dense
  uint32_t n_experts_used = 0;
  std::string tokenizer_model;  // tokenizer.ggml.model ("llama", "gpt2", ...)
  std::string tokenizer_pre;    // tokenizer.ggml.pre
  bool has_chat_template = false;
  bool runnable = true;                  // false only for a metadata-only model this build cannot run
  std::vector<std::string> unsupported;  // why not, one reason each
};

struct TensorTypeSummary {
  std::string type_name;  // "F32", "Q4_0", ...
  uint32_t n_tensors = 0;
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
};

// Defaults equal kestrel_sampler_options_init's.
struct SamplerOptions {
  float temperature = 0.8f;  // 0 = greedy (argmax, ties to the lowest id)
  int32_t top_k = 40;        // 0 = off
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.05f;       // 0 = off
  float repetition_penalty = 1.0f;
  int32_t repetition_window = 64;
  uint64_t seed = 0xC0FFEE;
  // Added to the token's logit before sampling; -INFINITY bans it (kestrel_logit_bias_t).
  std::vector<kestrel_logit_bias_t> logit_bias;
  bool ignore_eos = false;  // ban the end-of-generation tokens

  static SamplerOptions Greedy() {
    SamplerOptions o;
    o.temperature = 0.0f;
    return o;
  }
};

class Model;

// Speculative decoding (kestrel/speculative.h). Greedy output stays token-identical, sampled
// output keeps the model's distribution; only the speed changes.
enum class SpecMethod : uint32_t {
  kOff = KESTREL_SPEC_OFF,
  kAuto = KESTREL_SPEC_AUTO,
  kDraft = KESTREL_SPEC_DRAFT,
  kSelf = KESTREL_SPEC_SELF,
  kNgram = KESTREL_SPEC_NGRAM,
  kLookahead = KESTREL_SPEC_LOOKAHEAD,
  kMedusa = KESTREL_SPEC_MEDUSA,
  kEagle = KESTREL_SPEC_EAGLE,
};

// Defaults equal kestrel_speculative_options_init's.
struct SpeculativeOptions {
  SpecMethod method = SpecMethod::kOff;
  uint32_t max_draft_tokens = 0;  // 0: 5
  uint32_t tree_budget = 0;       // 0: the method's own
  const Model* draft_model = nullptr;  // kDraft (same vocab); the session keeps it alive
  std::string heads_path;              // kMedusa / kEagle
  uint32_t self_draft_layers = 0;      // kSelf; 0: half the layers
};

struct SpeculativeStats {
  SpecMethod method = SpecMethod::kOff;  // the controller's current choice
  uint32_t draft_tokens = 0;
  uint64_t steps = 0, plain_steps = 0, drafted = 0, accepted = 0;
  double mean_accepted = 0.0;
  double propose_ms = 0.0, verify_ms = 0.0;
  uint64_t steps_by_method[8] = {}, drafted_by_method[8] = {}, accepted_by_method[8] = {};
};

// A token id and its log-probability (kestrel_token_logprob_t).
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

// Defaults equal kestrel_session_options_init's.
struct SessionOptions {
  uint32_t context_length = 0;  // 0: the model's trained context
  uint32_t kv_block_size = 16;
  SamplerOptions sampler;
  uint32_t n_threads = 0;  // 0: the plugin decides
  uint64_t kv_type = KESTREL_KV_F32;  // or KESTREL_KV_F16: half the KV memory
  SpeculativeOptions speculative;     // off by default
};

// Defaults equal kestrel_embed_options_init's.
struct EmbedOptions {
  uint32_t pooling = KESTREL_POOLING_MEAN;  // or KESTREL_POOLING_LAST
  bool add_bos = true;
  bool parse_special = false;
};

// Defaults equal kestrel_generate_options_init's.
struct GenerateOptions {
  uint32_t max_new_tokens = 128;
  std::vector<std::string> stop_strings;
  bool add_bos = true;        // prepend BOS when the model asks for it (text prompts only)
  bool keep_context = false;  // true: continue after what the session holds
  bool parse_special = false;  // control-token texts in a text prompt become those tokens
  // Constrained output (docs/CONSTRAINED_OUTPUT.md): a GBNF grammar or a JSON schema (at most
  // one; empty: none). A bad one throws kestrel::Error (INVALID_ARGUMENT naming the position).
  std::string grammar;
  std::string json_schema;
};

enum class StopReason : int {
  kNone = KESTREL_STOP_NONE,
  kEos = KESTREL_STOP_EOS,
  kMaxTokens = KESTREL_STOP_MAX_TOKENS,
  kStopString = KESTREL_STOP_STOP_STRING,
  kCallback = KESTREL_STOP_CALLBACK,
  kContextFull = KESTREL_STOP_CONTEXT_FULL,
  kCancelled = KESTREL_STOP_CANCELLED,
};

struct GenerateStats {
  uint32_t n_prompt_tokens = 0;
  uint32_t n_generated_tokens = 0;
  double prefill_ms = 0.0;
  double decode_ms = 0.0;
  double prefill_tokens_per_s = 0.0;
  double decode_tokens_per_s = 0.0;
  StopReason stop_reason = StopReason::kNone;
};

// What Session::Complete returns: the generated text and token ids (the final flush call with
// kTokenNone contributes text but no id).
struct GenerateResult {
  std::string text;
  std::vector<int32_t> tokens;
  GenerateStats stats;
};

// The token id of the final flush call of a streaming callback (see kestrel_token_fn).
inline constexpr int32_t kTokenNone = KESTREL_TOKEN_NONE;

class Model;
class Session;

namespace detail {

struct LogSink {
  LogCallback fn;
};

inline void LogTrampoline(void* user_data, kestrel_log_level_t level, const char* message,
                          size_t length) {
  try {
    static_cast<LogSink*>(user_data)->fn(
        static_cast<LogLevel>(level),
        message != nullptr ? std::string_view(message, length) : std::string_view());
  } catch (...) {
    // A log callback must not throw into the library; the line is dropped.
  }
}

struct ProgressSink {
  const ProgressCallback* fn;
  std::exception_ptr error;
};

inline bool ProgressTrampoline(void* user_data, float progress) {
  auto* sink = static_cast<ProgressSink*>(user_data);
  try {
    return (*sink->fn)(progress);
  } catch (...) {
    sink->error = std::current_exception();
    return false;
  }
}

// A token callback of any callable type, called through one C trampoline. An exception thrown by
// the callable stops the generation and is rethrown by the Generate call.
struct TokenSink {
  void* callable;
  bool (*invoke)(void* callable, int32_t token, std::string_view text);
  std::exception_ptr error;
};

template <typename F>
bool InvokeCallable(void* callable, int32_t token, std::string_view text) {
  F& f = *static_cast<F*>(callable);
  if constexpr (std::is_void_v<std::invoke_result_t<F&, int32_t, std::string_view>>) {
    f(token, text);
    return true;
  } else {
    return static_cast<bool>(f(token, text));
  }
}

inline bool TokenTrampoline(void* user_data, int32_t token, const char* text, size_t length) {
  auto* sink = static_cast<TokenSink*>(user_data);
  try {
    return sink->invoke(sink->callable, token,
                        text != nullptr ? std::string_view(text, length) : std::string_view());
  } catch (...) {
    sink->error = std::current_exception();
    return false;
  }
}

}  // namespace detail

// ---- Runtime -------------------------------------------------------------------------------

// The root object: loads the plugins and owns them. Move-only. Thread-safe.
class Runtime {
 public:
  // Throws Error (INVALID_ARGUMENT) only for bad options; a plugin that cannot be used is skipped
  // and listed by Plugins() with the reason.
  explicit Runtime(const RuntimeOptions& options = RuntimeOptions());
  ~Runtime() { kestrel_runtime_destroy(handle_); }
  Runtime(Runtime&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), log_(std::move(other.log_)) {}
  Runtime& operator=(Runtime&& other) noexcept {
    Runtime moved(std::move(other));
    std::swap(handle_, moved.handle_);
    std::swap(log_, moved.log_);
    return *this;
  }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  std::vector<PluginInfo> Plugins() const;  // loaded and skipped
  std::vector<DeviceInfo> Devices() const;  // usable devices over all loaded plugins

  // Loads a GGUF model. Throws Error: NOT_FOUND (file, device), INVALID_ARGUMENT / DATA_LOSS /
  // UNIMPLEMENTED (bad file, the message names the field), RESOURCE_EXHAUSTED, CANCELLED.
  Model LoadModel(std::string_view path, const ModelOptions& options = ModelOptions()) const;

  // The C handle (still owned by this object); nullptr after a move.
  kestrel_runtime_t* get() const noexcept { return handle_; }

 private:
  kestrel_runtime_t* handle_ = nullptr;
  std::shared_ptr<detail::LogSink> log_;  // shared with every model: the library may log later
};

// ---- Model ---------------------------------------------------------------------------------

// A loaded model: immutable, thread-safe, shared. Copies share one model (retain/release); the
// model is freed when the last copy and the last session over it are gone.
class Model {
 public:
  Model() = default;  // empty; every call on it throws INVALID_ARGUMENT
  ~Model() { kestrel_model_release(handle_); }
  Model(const Model& other) : handle_(other.handle_), keepalive_(other.keepalive_) {
    kestrel_model_retain(handle_);
  }
  Model& operator=(const Model& other) {
    Model copy(other);
    Swap(copy);
    return *this;
  }
  Model(Model&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), keepalive_(std::move(other.keepalive_)) {}
  Model& operator=(Model&& other) noexcept {
    Model moved(std::move(other));
    Swap(moved);
    return *this;
  }

  // Adopts one reference of a C model handle (e.g. from code that uses the C API directly).
  static Model Adopt(kestrel_model_t* handle) { return Model(handle, nullptr); }

  explicit operator bool() const noexcept { return handle_ != nullptr; }
  kestrel_model_t* get() const noexcept { return handle_; }

  ModelInfo Info() const;
  std::vector<TensorTypeSummary> TensorTypes() const;

  // Memory offload. MemoryPlan and OffloadStats throw FAILED_PRECONDITION for a model loaded
  // without a budget (OffloadStats: without an expert cache); MemoryStats works for any model.
  MemoryPlan GetMemoryPlan() const;
  OffloadStats GetOffloadStats() const;
  MemoryStats GetMemoryStats() const;
  // Zeroes the hit, miss and read-ahead counts.
  void ResetOffloadStats() const;

  // Token ids of `text`; add_bos prepends BOS when the model's metadata asks for it.
  std::vector<int32_t> Tokenize(std::string_view text, bool add_bos = true) const;
  // Text of a token sequence (control tokens give no text). remove_leading_space drops the space
  // the tokenizer adds in front, so Detokenize(Tokenize(s, false), true) == s. Throws OUT_OF_RANGE
  // for an id outside the vocabulary.
  std::string Detokenize(const int32_t* tokens, size_t n_tokens,
                         bool remove_leading_space = false) const;
  std::string Detokenize(const std::vector<int32_t>& tokens,
                         bool remove_leading_space = false) const {
    return Detokenize(tokens.data(), tokens.size(), remove_leading_space);
  }
  // The bytes one token contributes (may be a partial UTF-8 sequence for byte tokens); with
  // `special`, control tokens give their text ("<|im_end|>") instead of nothing.
  std::string TokenToPiece(int32_t token, bool special = false) const;
  // Token ids with both switches: add_special (BOS/EOS as the vocab asks) and parse_special
  // (control-token texts become those tokens, as in a chat-formatted prompt).
  std::vector<int32_t> Tokenize(std::string_view text, bool add_special, bool parse_special) const;

  TokenizerInfo Tokenizer() const;
  // The ids that end a generation (EOS, <|im_end|>, <end_of_turn>, ...), ascending.
  std::vector<int32_t> EndOfGenerationTokens() const;
  // The prompt text for `messages` with the model's chat template (kestrel_model_apply_chat_template).
  // Tokenize it with parse_special = true. Throws NOT_FOUND (no template), INVALID_ARGUMENT,
  // UNIMPLEMENTED, FAILED_PRECONDITION (the template refuses the conversation).
  std::string ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                const ChatTemplateOptions& options = ChatTemplateOptions()) const;

 private:
  friend class Runtime;
  Model(kestrel_model_t* handle, std::shared_ptr<void> keepalive)
      : handle_(handle), keepalive_(std::move(keepalive)) {}
  void Swap(Model& other) noexcept {
    std::swap(handle_, other.handle_);
    std::swap(keepalive_, other.keepalive_);
  }

  kestrel_model_t* handle_ = nullptr;
  std::shared_ptr<void> keepalive_;  // the runtime's log sink
};

// ---- Package -------------------------------------------------------------------------------

// .kpkg packages (kestrel/package.h). Runtime::LoadModel reads a package like a GGUF.
struct PackOptions {
  std::vector<std::string> devices;  // prepared weights of these devices ("cpu")
  std::string draft_path;            // optional draft model GGUF
};

// Writes `output_path` from the GGUF `model_path`. Throws Error (see kestrel_package_write).
inline void WritePackage(const Runtime& runtime, const std::string& model_path,
                         const std::string& output_path, const PackOptions& options = PackOptions());
// The package's JSON description (kestrel_package_describe); verify_checksums reads it all.
inline std::string DescribePackage(const std::string& path, bool verify_checksums = false) {
  return detail::FetchBuffer<std::string>(
      [&](char* buffer, size_t capacity, size_t* required) {
        return kestrel_package_describe(path.c_str(), verify_checksums, buffer, capacity, required);
      },
      0);
}
// How many of the model's weights came from a package's prepared weights / were prepared by the
// plugin at load.
struct WeightSources {
  uint32_t imported = 0;
  uint32_t prepared = 0;
};
inline WeightSources GetWeightSources(const Model& model) {
  WeightSources w;
  detail::Check(kestrel_model_weight_sources(model.get(), &w.imported, &w.prepared));
  return w;
}

// ---- Session -------------------------------------------------------------------------------

// One conversation with its own KV cache and sampler. Move-only; one thread at a time, except
// Cancel. Keeps its model alive.
class Session {
 public:
  // Throws Error: INVALID_ARGUMENT (a bad option, named with its value), RESOURCE_EXHAUSTED.
  explicit Session(const Model& model, const SessionOptions& options = SessionOptions());
  ~Session() { kestrel_session_destroy(handle_); }
  Session(Session&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), model_(std::move(other.model_)) {}
  Session& operator=(Session&& other) noexcept {
    Session moved(std::move(other));
    std::swap(handle_, moved.handle_);
    std::swap(model_, moved.model_);
    return *this;
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  kestrel_session_t* get() const noexcept { return handle_; }
  const Model& model() const noexcept { return model_; }

  // Tokenizes `prompt` and generates, calling `on_token(int32_t token, std::string_view text)`
  // once per generated token (and once more with kTokenNone to flush held-back text; see
  // kestrel_token_fn). The callable returns bool (false stops: StopReason::kCallback) or void
  // (never stops). An exception it throws stops generation and propagates out of this call.
  // Throws Error: INVALID_ARGUMENT (empty prompt, prompt longer than the context), CANCELLED.
  template <typename F>
  GenerateStats Generate(std::string_view prompt, const GenerateOptions& options, F&& on_token);
  GenerateStats Generate(std::string_view prompt,
                         const GenerateOptions& options = GenerateOptions());

  // The same with the prompt given as token ids (used as given: no BOS added).
  template <typename F>
  GenerateStats GenerateTokens(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                               F&& on_token);
  GenerateStats GenerateTokens(const std::vector<int32_t>& prompt,
                               const GenerateOptions& options = GenerateOptions());

  // Generates and collects the text and token ids.
  GenerateResult Complete(std::string_view prompt,
                          const GenerateOptions& options = GenerateOptions());

  // The unit-length embedding of `text` (kestrel_session_embed; n_embd floats). The session's
  // context is dropped.
  std::vector<float> Embed(std::string_view text, const EmbedOptions& options = EmbedOptions()) {
    kestrel_embed_options_t o;
    kestrel_embed_options_init(&o);
    o.pooling = options.pooling;
    o.add_bos = options.add_bos;
    o.parse_special = options.parse_special;
    size_t n = 0;
    detail::Check(kestrel_session_embed(handle_, text.data(), text.size(), &o, nullptr, 0, &n));
    std::vector<float> out(n);
    detail::Check(kestrel_session_embed(handle_, text.data(), text.size(), &o, out.data(), out.size(), &n));
    return out;
  }

  // Asks a running Generate to stop after the current step (it then throws Error kCancelled).
  // Any thread, any time.
  void Cancel() noexcept { kestrel_session_cancel(handle_); }

  // Low level. Appends tokens to the context (one forward step) and computes the last logits.
  void Decode(const int32_t* tokens, size_t n_tokens) {
    detail::Check(kestrel_session_decode(handle_, tokens, n_tokens));
  }
  void Decode(const std::vector<int32_t>& tokens) { Decode(tokens.data(), tokens.size()); }
  // The last decoded position's logits (vocab_size floats). FAILED_PRECONDITION if none.
  std::vector<float> Logits() const {
    return detail::FetchBuffer<std::vector<float>>(
        [this](float* buffer, size_t capacity, size_t* required) {
          return kestrel_session_get_logits(handle_, buffer, capacity, required);
        },
        0);
  }
  size_t TokenCount() const noexcept { return kestrel_session_token_count(handle_); }
  // Keeps the first n_tokens tokens of the context. OUT_OF_RANGE if n_tokens > TokenCount().
  void Truncate(size_t n_tokens) { detail::Check(kestrel_session_truncate(handle_, n_tokens)); }
  // Samples from the last logits with the session's sampler. FAILED_PRECONDITION if none.
  int32_t Sample() {
    int32_t token = KESTREL_TOKEN_NONE;
    detail::Check(kestrel_session_sample(handle_, &token));
    return token;
  }
  // What speculative decoding did in the last Generate (zeros when it is off).
  SpeculativeStats Speculative() const {
    kestrel_speculative_stats_t c{};
    c.struct_size = sizeof(c);
    detail::Check(kestrel_session_speculative_stats(handle_, &c));
    SpeculativeStats s;
    s.method = static_cast<SpecMethod>(c.method);
    s.draft_tokens = c.draft_tokens;
    s.steps = c.steps;
    s.plain_steps = c.plain_steps;
    s.drafted = c.drafted;
    s.accepted = c.accepted;
    s.mean_accepted = c.mean_accepted;
    s.propose_ms = c.propose_ms;
    s.verify_ms = c.verify_ms;
    for (int i = 0; i < 8; ++i) {
      s.steps_by_method[i] = c.steps_by_method[i];
      s.drafted_by_method[i] = c.drafted_by_method[i];
      s.accepted_by_method[i] = c.accepted_by_method[i];
    }
    return s;
  }

  // Session state (kestrel_session_save_state / _load_state): the conversation as bytes or a file,
  // restored in this or another process into a session of the same model and KV type. After
  // LoadState, GenerateTokens({}, options with keep_context) continues where the saved session
  // was. LoadState throws Error (the session unchanged): DATA_LOSS / INVALID_ARGUMENT (damaged,
  // truncated, foreign), UNIMPLEMENTED (another format version), FAILED_PRECONDITION (another
  // model or KV type).
  std::vector<uint8_t> SaveState() {
    return detail::FetchBuffer<std::vector<uint8_t>>(
        [this](uint8_t* buffer, size_t capacity, size_t* required) {
          return kestrel_session_save_state(handle_, buffer, capacity, required);
        },
        0);
  }
  void LoadState(const void* state, size_t size) {
    detail::Check(kestrel_session_load_state(handle_, state, size));
  }
  void LoadState(const std::vector<uint8_t>& state) { LoadState(state.data(), state.size()); }
  void SaveStateFile(const std::string& path) {
    detail::Check(kestrel_session_save_state_file(handle_, path.c_str()));
  }
  void LoadStateFile(const std::string& path) {
    detail::Check(kestrel_session_load_state_file(handle_, path.c_str()));
  }

 private:
  // Runs `call(const kestrel_generate_options_t*, kestrel_generate_stats_t*)` with `options`
  // and an optional token sink.
  template <typename Call>
  GenerateStats Run(const GenerateOptions& options, detail::TokenSink* sink, Call&& call);

  template <typename F>
  static detail::TokenSink MakeSink(F& on_token) {
    using Callable = std::remove_reference_t<F>;
    static_assert(std::is_invocable_v<Callable&, int32_t, std::string_view>,
                  "the token callback must be callable as f(int32_t token, std::string_view text)");
    detail::TokenSink sink;
    sink.callable = const_cast<void*>(static_cast<const void*>(std::addressof(on_token)));
    sink.invoke = &detail::InvokeCallable<Callable>;
    return sink;
  }

  kestrel_session_t* handle_ = nullptr;
  Model model_;
};

// ---- Implementation ------------------------------------------------------------------------

inline void WritePackage(const Runtime& runtime, const std::string& model_path,
                         const std::string& output_path, const PackOptions& options) {
  std::vector<const char*> devices;
  for (const std::string& d : options.devices) devices.push_back(d.c_str());
  kestrel_pack_options_t o;
  kestrel_pack_options_init(&o);
  o.devices = devices.empty() ? nullptr : devices.data();
  o.n_devices = devices.size();
  o.draft_path = options.draft_path.empty() ? nullptr : options.draft_path.c_str();
  detail::Check(kestrel_package_write(runtime.get(), model_path.c_str(), output_path.c_str(), &o));
}

inline Runtime::Runtime(const RuntimeOptions& options) {
  kestrel_runtime_options_t o;
  kestrel_runtime_options_init(&o);
  if (!options.plugin_path.empty()) o.plugin_path = options.plugin_path.c_str();
  if (options.log) {
    log_ = std::make_shared<detail::LogSink>(detail::LogSink{options.log});
    o.log_callback = &detail::LogTrampoline;
    o.log_user_data = log_.get();
  }
  o.log_level = static_cast<kestrel_log_level_t>(options.log_level);
  detail::Check(kestrel_runtime_create(&o, &handle_));
}

inline std::vector<PluginInfo> Runtime::Plugins() const {
  std::vector<PluginInfo> plugins;
  const size_t n = kestrel_runtime_plugin_count(handle_);
  for (size_t i = 0; i < n; ++i) {
    kestrel_plugin_info_t info{};
    info.struct_size = sizeof(info);
    detail::Check(kestrel_runtime_plugin_info(handle_, i, &info));
    PluginInfo p;
    p.name = detail::Str(info.name);
    p.path = detail::Str(info.path);
    p.version = detail::Str(info.version);
    p.loaded = info.loaded;
    p.skip_reason = detail::Str(info.skip_reason);
    p.api_major = info.api_major;
    p.api_minor = info.api_minor;
    p.device_count = info.device_count;
    plugins.push_back(std::move(p));
  }
  return plugins;
}

inline std::vector<DeviceInfo> Runtime::Devices() const {
  std::vector<DeviceInfo> devices;
  const size_t n = kestrel_runtime_device_count(handle_);
  for (size_t i = 0; i < n; ++i) {
    kestrel_device_info_t info{};
    info.struct_size = sizeof(info);
    detail::Check(kestrel_runtime_device_info(handle_, i, &info));
    DeviceInfo d;
    d.name = detail::Str(info.name);
    d.plugin = detail::Str(info.plugin);
    d.description = detail::Str(info.description);
    d.kind = static_cast<DeviceKind>(info.kind);
    d.memory_bytes = info.memory_bytes;
    d.host_visible = info.host_visible;
    d.async = info.async;
    d.dtype_mask = info.dtype_mask;
    d.weight_dtype_mask = info.weight_dtype_mask;
    devices.push_back(std::move(d));
  }
  return devices;
}

inline Model Runtime::LoadModel(std::string_view path, const ModelOptions& options) const {
  kestrel_model_options_t o;
  kestrel_model_options_init(&o);
  if (!options.device.empty()) o.device = options.device.c_str();
  o.use_mmap = options.use_mmap;
  o.metadata_only = options.metadata_only;
  o.memory_budget = options.memory_budget.empty() ? nullptr : options.memory_budget.c_str();
  o.expert_cache_policy = static_cast<uint32_t>(options.expert_cache_policy);
  o.plan_context_length = options.plan_context_length;
  o.plan_sequences = options.plan_sequences;
  o.offload_flags = options.offload_flags;
  detail::ProgressSink progress{&options.progress, nullptr};
  if (options.progress) {
    o.progress_callback = &detail::ProgressTrampoline;
    o.progress_user_data = &progress;
  }
  kestrel_model_t* handle = nullptr;
  kestrel_status_t* status = kestrel_model_load(handle_, path.data(), path.size(), &o, &handle);
  if (progress.error) {
    kestrel_status_free(status);
    kestrel_model_release(handle);
    std::rethrow_exception(progress.error);
  }
  detail::Check(status);
  return Model(handle, log_);
}

inline ModelInfo Model::Info() const {
  kestrel_model_info_t info{};
  info.struct_size = sizeof(info);
  detail::Check(kestrel_model_get_info(handle_, &info));
  ModelInfo m;
  m.architecture = detail::Str(info.architecture);
  m.name = detail::Str(info.name);
  m.device = detail::Str(info.device);
  m.n_params = info.n_params;
  m.weight_bytes = info.weight_bytes;
  m.n_layers = info.n_layers;
  m.n_heads = info.n_heads;
  m.n_kv_heads = info.n_kv_heads;
  m.n_embd = info.n_embd;
  m.n_ff = info.n_ff;
  m.head_dim = info.head_dim;
  m.context_length = info.context_length;
  m.vocab_size = info.vocab_size;
  m.bos_id = info.bos_id;
  m.eos_id = info.eos_id;
  m.unk_id = info.unk_id;
  m.pad_id = info.pad_id;
  m.add_bos = info.add_bos;
  m.rope_freq_base = info.rope_freq_base;
  m.rms_norm_eps = info.rms_norm_eps;
  m.n_tensors = info.n_tensors;
  m.n_experts = info.n_experts;
  m.n_experts_used = info.n_experts_used;
  m.tokenizer_model = detail::Str(info.tokenizer_model);
  m.tokenizer_pre = detail::Str(info.tokenizer_pre);
  m.has_chat_template = info.has_chat_template;
  m.runnable = info.runnable;
  const std::string reasons = detail::Str(info.unsupported);
  for (size_t start = 0; start < reasons.size();) {
    size_t end = reasons.find('\n', start);
    if (end == std::string::npos) end = reasons.size();
    m.unsupported.push_back(reasons.substr(start, end - start));
    start = end + 1;
  }
  return m;
}

inline std::vector<TensorTypeSummary> Model::TensorTypes() const {
  std::vector<TensorTypeSummary> types;
  const size_t n = kestrel_model_tensor_type_count(handle_);
  for (size_t i = 0; i < n; ++i) {
    kestrel_tensor_type_summary_t s{};
    s.struct_size = sizeof(s);
    detail::Check(kestrel_model_tensor_type_summary(handle_, i, &s));
    types.push_back(TensorTypeSummary{detail::Str(s.type_name), s.n_tensors, s.n_elements,
                                      s.n_bytes});
  }
  return types;
}

inline MemoryPlan Model::GetMemoryPlan() const {
  kestrel_memory_plan_info_t p{};
  p.struct_size = sizeof(p);
  detail::Check(kestrel_model_get_memory_plan(handle_, &p));
  MemoryPlan m;
  m.device = detail::Str(p.device);
  m.device_budget_bytes = p.device_budget_bytes;
  m.host_budget_bytes = p.host_budget_bytes;
  m.resident_bytes = p.resident_bytes;
  m.resident_tensors = p.resident_tensors;
  m.offloaded_tensors = p.offloaded_tensors;
  m.experts_offloaded = p.experts_offloaded;
  m.expert_bytes = p.expert_bytes;
  m.expert_slot_bytes = p.expert_slot_bytes;
  m.experts_total = p.experts_total;
  m.expert_slots = p.expert_slots;
  m.expert_cache_bytes = p.expert_cache_bytes;
  m.kv_bytes = p.kv_bytes;
  m.kv_tokens = p.kv_tokens;
  m.n_streamed_layers = p.n_streamed_layers;
  m.host_swap_bytes = p.host_swap_bytes;
  m.device_total_bytes = p.device_total_bytes;
  m.streamed_bytes = p.streamed_bytes;
  m.stream_ring_bytes = p.stream_ring_bytes;
  m.stream_slots = p.stream_slots;
  m.stream_prefetch_distance = p.stream_prefetch_distance;
  m.host_resident_bytes = p.host_resident_bytes;
  m.host_resident_tensors = p.host_resident_tensors;
  return m;
}

inline OffloadStats Model::GetOffloadStats() const {
  kestrel_offload_stats_t s{};
  s.struct_size = sizeof(s);
  detail::Check(kestrel_model_get_offload_stats(handle_, &s));
  OffloadStats o;
  o.expert_hits = s.expert_hits;
  o.expert_misses = s.expert_misses;
  o.disk_bytes_read = s.disk_bytes_read;
  o.disk_read_seconds = s.disk_read_seconds;
  o.expert_cache_bytes = s.expert_cache_bytes;
  o.expert_cache_peak_bytes = s.expert_cache_peak_bytes;
  o.expert_cache_budget_bytes = s.expert_cache_budget_bytes;
  o.n_layers = s.n_layers;
  o.policy = static_cast<kestrel_expert_cache_policy_t>(s.policy);
  o.io_mode = detail::Str(s.io_mode);
  o.expert_slots = s.expert_slots;
  o.expert_prefetch_buffers = s.expert_prefetch_buffers;
  o.expert_prefetches = s.expert_prefetches;
  o.expert_prefetch_hits = s.expert_prefetch_hits;
  o.expert_prefetch_wait_seconds = s.expert_prefetch_wait_seconds;
  o.expert_host_runs = s.expert_host_runs;
  o.expert_host_seconds = s.expert_host_seconds;
  for (uint32_t l = 0; l < s.n_layers; ++l) {
    ExpertLayerStats e;
    detail::Check(kestrel_model_get_expert_layer_stats(handle_, l, &e.hits, &e.misses));
    o.layers.push_back(e);
  }
  return o;
}

inline MemoryStats Model::GetMemoryStats() const {
  kestrel_memory_stats_t s{};
  s.struct_size = sizeof(s);
  detail::Check(kestrel_model_get_memory_stats(handle_, &s));
  MemoryStats m;
  m.device = detail::Str(s.device);
  m.device_bytes = s.device_bytes;
  m.device_peak_bytes = s.device_peak_bytes;
  m.host_to_device_bytes = s.host_to_device_bytes;
  m.device_to_host_bytes = s.device_to_host_bytes;
  m.expert_bytes_read = s.expert_bytes_read;
  m.expert_read_seconds = s.expert_read_seconds;
  m.streamed_bytes_copied = s.streamed_bytes_copied;
  m.stream_copy_wait_seconds = s.stream_copy_wait_seconds;
  return m;
}

inline void Model::ResetOffloadStats() const {
  detail::Check(kestrel_model_reset_offload_stats(handle_));
}

inline std::vector<int32_t> Model::Tokenize(std::string_view text, bool add_bos) const {
  return detail::FetchBuffer<std::vector<int32_t>>(
      [&](int32_t* buffer, size_t capacity, size_t* required) {
        return kestrel_tokenize(handle_, text.data(), text.size(), add_bos, buffer, capacity,
                                required);
      },
      text.size() + 2);
}

inline std::string Model::Detokenize(const int32_t* tokens, size_t n_tokens,
                                     bool remove_leading_space) const {
  return detail::FetchBuffer<std::string>(
      [&](char* buffer, size_t capacity, size_t* required) {
        return kestrel_detokenize(handle_, tokens, n_tokens, remove_leading_space, buffer,
                                  capacity, required);
      },
      n_tokens * 8);
}

inline std::string Model::TokenToPiece(int32_t token, bool special) const {
  return detail::FetchBuffer<std::string>(
      [&](char* buffer, size_t capacity, size_t* required) {
        return kestrel_token_to_piece_special(handle_, token, special, buffer, capacity, required);
      },
      16);
}

inline std::vector<int32_t> Model::Tokenize(std::string_view text, bool add_special, bool parse_special) const {
  kestrel_tokenize_options_t o;
  kestrel_tokenize_options_init(&o);
  o.add_special = add_special;
  o.parse_special = parse_special;
  return detail::FetchBuffer<std::vector<int32_t>>(
      [&](int32_t* buffer, size_t capacity, size_t* required) {
        return kestrel_tokenize_with_options(handle_, text.data(), text.size(), &o, buffer, capacity, required);
      },
      text.size() + 2);
}

inline TokenizerInfo Model::Tokenizer() const {
  kestrel_tokenizer_info_t info{};
  info.struct_size = sizeof(info);
  detail::Check(kestrel_model_get_tokenizer_info(handle_, &info));
  TokenizerInfo t;
  t.kind = detail::Str(info.kind);
  t.pre_tokenizer = detail::Str(info.pre_tokenizer);
  t.vocab_size = info.vocab_size;
  t.bos_id = info.bos_id;
  t.eos_id = info.eos_id;
  t.add_bos = info.add_bos;
  t.add_eos = info.add_eos;
  t.n_end_of_generation = info.n_end_of_generation;
  t.chat_template = detail::Str(info.chat_template);
  t.chat_template_family = detail::Str(info.chat_template_family);
  t.chat_template_error = detail::Str(info.chat_template_error);
  return t;
}

inline std::vector<int32_t> Model::EndOfGenerationTokens() const {
  return detail::FetchBuffer<std::vector<int32_t>>(
      [&](int32_t* buffer, size_t capacity, size_t* required) {
        return kestrel_model_end_of_generation_tokens(handle_, buffer, capacity, required);
      },
      8);
}

inline std::string Model::ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                            const ChatTemplateOptions& options) const {
  std::vector<kestrel_chat_message_t> list;
  list.reserve(messages.size());
  size_t guess = 64;
  for (const ChatMessage& m : messages) {
    list.push_back({m.role.data(), m.role.size(), m.content.data(), m.content.size()});
    guess += m.role.size() + m.content.size() + 32;
  }
  kestrel_chat_template_options_t o;
  kestrel_chat_template_options_init(&o);
  o.add_generation_prompt = options.add_generation_prompt;
  if (!options.template_text.empty()) {
    o.template_text = options.template_text.data();
    o.template_length = options.template_text.size();
  }
  return detail::FetchBuffer<std::string>(
      [&](char* buffer, size_t capacity, size_t* required) {
        return kestrel_model_apply_chat_template(handle_, list.data(), list.size(), &o, buffer, capacity, required);
      },
      guess);
}

namespace detail {

// The C sampler options of `s` (sessions and engine requests).
inline void FillSampler(const SamplerOptions& s, kestrel_sampler_options_t* o) {
  kestrel_sampler_options_init(o);
  o->temperature = s.temperature;
  o->top_k = s.top_k;
  o->top_p = s.top_p;
  o->min_p = s.min_p;
  o->repetition_penalty = s.repetition_penalty;
  o->repetition_window = s.repetition_window;
  o->seed = s.seed;
  o->logit_bias = s.logit_bias.empty() ? nullptr : s.logit_bias.data();
  o->n_logit_bias = s.logit_bias.size();
  o->ignore_eos = s.ignore_eos ? 1 : 0;
}

}  // namespace detail

inline Session::Session(const Model& model, const SessionOptions& options) : model_(model) {
  kestrel_sampler_options_t sampler;
  detail::FillSampler(options.sampler, &sampler);
  kestrel_session_options_t o;
  kestrel_session_options_init(&o);
  o.context_length = options.context_length;
  o.kv_block_size = options.kv_block_size;
  o.sampler = &sampler;
  o.n_threads = options.n_threads;
  o.kv_type = options.kv_type;
  kestrel_speculative_options_t spec;
  kestrel_speculative_options_init(&spec);
  spec.method = static_cast<uint32_t>(options.speculative.method);
  spec.max_draft_tokens = options.speculative.max_draft_tokens;
  spec.tree_budget = options.speculative.tree_budget;
  spec.draft_model = options.speculative.draft_model ? options.speculative.draft_model->get() : nullptr;
  spec.heads_path = options.speculative.heads_path.empty() ? nullptr : options.speculative.heads_path.c_str();
  spec.self_draft_layers = options.speculative.self_draft_layers;
  if (options.speculative.method != SpecMethod::kOff) o.speculative = &spec;
  detail::Check(kestrel_session_create(model.get(), &o, &handle_));
}

template <typename Call>
GenerateStats Session::Run(const GenerateOptions& options, detail::TokenSink* sink, Call&& call) {
  std::vector<const char*> stops;
  stops.reserve(options.stop_strings.size());
  for (const std::string& s : options.stop_strings) stops.push_back(s.c_str());
  kestrel_generate_options_t o;
  kestrel_generate_options_init(&o);
  o.max_new_tokens = options.max_new_tokens;
  o.stop_strings = stops.empty() ? nullptr : stops.data();
  o.n_stop_strings = stops.size();
  if (sink != nullptr) {
    o.on_token = &detail::TokenTrampoline;
    o.user_data = sink;
  }
  o.add_bos = options.add_bos;
  o.keep_context = options.keep_context;
  o.parse_special = options.parse_special ? 1 : 0;
  if (!options.grammar.empty()) o.grammar = options.grammar.c_str();
  if (!options.json_schema.empty()) o.json_schema = options.json_schema.c_str();
  kestrel_generate_stats_t st{};
  st.struct_size = sizeof(st);
  kestrel_status_t* status = call(&o, &st);
  if (sink != nullptr && sink->error) {
    kestrel_status_free(status);
    std::rethrow_exception(sink->error);
  }
  detail::Check(status);
  GenerateStats stats;
  stats.n_prompt_tokens = st.n_prompt_tokens;
  stats.n_generated_tokens = st.n_generated_tokens;
  stats.prefill_ms = st.prefill_ms;
  stats.decode_ms = st.decode_ms;
  stats.prefill_tokens_per_s = st.prefill_tokens_per_s;
  stats.decode_tokens_per_s = st.decode_tokens_per_s;
  stats.stop_reason = static_cast<StopReason>(st.stop_reason);
  return stats;
}

template <typename F>
GenerateStats Session::Generate(std::string_view prompt, const GenerateOptions& options,
                                F&& on_token) {
  detail::TokenSink sink = MakeSink(on_token);
  return Run(options, &sink,
             [&](const kestrel_generate_options_t* o, kestrel_generate_stats_t* st) {
               return kestrel_session_generate(handle_, prompt.data(), prompt.size(), o, st);
             });
}

inline GenerateStats Session::Generate(std::string_view prompt, const GenerateOptions& options) {
  return Run(options, nullptr,
             [&](const kestrel_generate_options_t* o, kestrel_generate_stats_t* st) {
               return kestrel_session_generate(handle_, prompt.data(), prompt.size(), o, st);
             });
}

template <typename F>
GenerateStats Session::GenerateTokens(const std::vector<int32_t>& prompt,
                                      const GenerateOptions& options, F&& on_token) {
  detail::TokenSink sink = MakeSink(on_token);
  return Run(options, &sink,
             [&](const kestrel_generate_options_t* o, kestrel_generate_stats_t* st) {
               return kestrel_session_generate_tokens(handle_, prompt.data(), prompt.size(), o,
                                                      st);
             });
}

inline GenerateStats Session::GenerateTokens(const std::vector<int32_t>& prompt,
                                             const GenerateOptions& options) {
  return Run(options, nullptr,
             [&](const kestrel_generate_options_t* o, kestrel_generate_stats_t* st) {
               return kestrel_session_generate_tokens(handle_, prompt.data(), prompt.size(), o,
                                                      st);
             });
}

inline GenerateResult Session::Complete(std::string_view prompt, const GenerateOptions& options) {
  GenerateResult result;
  result.stats = Generate(prompt, options, [&result](int32_t token, std::string_view text) {
    if (token != kTokenNone) result.tokens.push_back(token);
    result.text.append(text.data(), text.size());
  });
  return result;
}

}  // namespace kestrel

// The serving engine (kestrel::Engine) lives in its own header, part of this one.
#include "kestrel/engine.hpp"  // IWYU pragma: export

#endif  // KESTREL_KESTREL_HPP_
