// api/src/: the C ABI boundary. The only place where absl::Status becomes kestrel_status_t*,
// where C++ exceptions are caught, and where options structs of any released size are read. It
// owns the opaque handle types and may not contain inference logic.
#ifndef KESTREL_API_SRC_C_API_INTERNAL_H_
#define KESTREL_API_SRC_C_API_INTERNAL_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "hal/src/plugin_registry.h"
#include "kestrel/kestrel.h"
#include "absl/status/statusor.h"
#include "runtime/grammar/grammar.h"
#include "runtime/model/model.h"
#include "runtime/session/session.h"
#include "runtime/speculative/spec_config.h"
#include "runtime/tokenizer/chat/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

struct kestrel_status {
  kestrel_status_code_t code;
  std::string message;
};

// Runtime state, shared by the handle and every model created from it (so the user may destroy
// the runtime handle first).
struct RuntimeState {
  std::unique_ptr<kestrel::hal::PluginRegistry> registry;
  kestrel_log_fn log = nullptr;
  void* log_user_data = nullptr;
  kestrel_log_level_t log_level = KESTREL_LOG_WARNING;
  void Log(kestrel_log_level_t level, const std::string& message) const {
    if (log != nullptr && level >= log_level && log_level != KESTREL_LOG_OFF) {
      log(log_user_data, level, message.data(), message.size());
    }
  }
};

struct kestrel_runtime {
  std::shared_ptr<RuntimeState> state;
};

struct kestrel_model {
  std::atomic<int> refs{1};
  std::shared_ptr<RuntimeState> runtime;
  std::unique_ptr<kestrel::runtime::Model> model;
  std::string unsupported;  // model->unsupported() joined by newlines (kestrel_model_info_t)
  std::string device_name;
  // tokenizer.chat_template, parsed once at load; the status says why there is none.
  std::unique_ptr<kestrel::runtime::ChatTemplate> chat_template;
  absl::Status chat_template_status;
  // NUL-terminated strings kestrel_model_get_tokenizer_info hands out.
  std::string tokenizer_kind, tokenizer_pre, chat_template_error;
};

struct kestrel_session {
  kestrel_model_t* model = nullptr;  // retained
  kestrel_model_t* draft_model = nullptr;  // retained when speculative options name one
  std::unique_ptr<kestrel::runtime::Session> session;
};

namespace kestrel::api {

// absl::Status -> caller-owned kestrel_status_t* (NULL for OK). Never throws.
kestrel_status_t* ToC(const absl::Status& status);

// Runs `body` (returning absl::Status) and converts its result; exceptions become statuses.
template <typename F>
kestrel_status_t* Guard(const char* function, F&& body) {
  try {
    return ToC(body());
  } catch (const std::bad_alloc&) {
    return ToC(absl::ResourceExhaustedError(absl::StrFormat("%s: out of memory", function)));
  } catch (const std::exception& e) {
    return ToC(absl::InternalError(absl::StrFormat("%s: %s", function, e.what())));
  } catch (...) {
    return ToC(absl::InternalError(absl::StrFormat("%s: unknown exception", function)));
  }
}

inline absl::Status NullArgument(const char* function, const char* argument) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s is NULL", function, argument));
}

// A metadata-only model whose tokenizer this build cannot load has none: FAILED_PRECONDITION
// for the calls that need it.
// The message carries the load's reasons (the one about the tokenizer names the key at fault).
inline absl::Status CheckTokenizer(const char* fn, const kestrel_model_t* model) {
  if (model->model->has_tokenizer()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      fn, ": the model was loaded metadata-only and this build cannot load its tokenizer ('",
      model->model->tokenizer_model(), "'): ", absl::StrJoin(model->model->unsupported(), "; ")));
}

// Sessions and engines need prepared weights: FAILED_PRECONDITION for a metadata-only model.
inline absl::Status CheckRunnable(const char* function, const kestrel_model* model) {
  if (!model->model->metadata_only()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      function, ": the model was loaded metadata-only (no weights prepared); load it again "
      "without metadata_only to run it"));
}

// Reads a caller's options struct of any released size into `out` (already holding defaults):
// copies the first struct_size bytes, keeps defaults for the tail an older client does not have.
// `min_size` is the smallest size ever released. An input of NULL keeps the defaults.
template <typename T>
absl::Status ReadOptions(const char* function, const char* name, const T* in, size_t min_size,
                         T* out) {
  if (in == nullptr) return absl::OkStatus();
  const uint32_t size = in->struct_size;
  if (size < min_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s->struct_size = %u is smaller than the smallest released size %u (call the "
        "matching _init function first)",
        function, name, size, min_size));
  }
  std::memcpy(static_cast<void*>(out), in, std::min<size_t>(size, sizeof(T)));
  out->struct_size = sizeof(T);
  return absl::OkStatus();
}

// options->kv_type (KESTREL_KV_*) as the plugin dtype of the KV cache.
inline absl::Status KvTypeToDtype(const char* function, uint64_t kv_type, uint32_t* dtype) {
  switch (kv_type) {
    case KESTREL_KV_F32: *dtype = KESTREL_DTYPE_F32; return absl::OkStatus();
    case KESTREL_KV_F16: *dtype = KESTREL_DTYPE_F16; return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: options->kv_type = %u is neither KESTREL_KV_F32 (0) nor KESTREL_KV_F16 (1)",
          function, kv_type));
  }
}

// The runtime sampler config of the C options `so` (read with ReadOptions) for `model`: the
// logit bias checked against its vocabulary, ignore_eos as a -inf bias on its end-of-generation
// tokens. `name` names the options in errors ("options->sampler").
absl::Status SamplerConfigFrom(const char* function, const char* name,
                               const kestrel_sampler_options_t& so,
                               const kestrel::runtime::Model& model,
                               kestrel::runtime::SamplerConfig* out);

// The grammar of a request's constrained-output options: GBNF text `grammar` or a JSON schema
// `json_schema` (NUL-terminated; both NULL: no constraint, null result). INVALID_ARGUMENT naming
// the field and the bad position ("options->grammar: grammar line 2, column 7: ...") or keyword,
// or when both are set.
absl::StatusOr<std::shared_ptr<const kestrel::runtime::grammar::Grammar>> GrammarFrom(
    const char* function, const char* grammar, const char* json_schema);

// Wraps a C log-probability callback for the runtime: (chosen, top) as the C structs.
void CallLogprobs(const kestrel::runtime::TokenLogprobs& lp,
                  std::vector<kestrel_token_logprob_t>* scratch,
                  const std::function<void(const kestrel_token_logprob_t*,
                                           const kestrel_token_logprob_t*, size_t)>& fn);

// For caller-provided output structs: fills only the fields inside the caller's struct_size.
template <typename T>
absl::Status WriteInfo(const char* function, const char* name, const T& full, T* out,
                       size_t min_size) {
  if (out == nullptr) return NullArgument(function, name);
  const uint32_t size = out->struct_size;
  if (size < min_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s->struct_size = %u is smaller than the smallest released size %u", function, name,
        size, min_size));
  }
  std::memcpy(static_cast<void*>(out), &full, std::min<size_t>(size, sizeof(T)));
  out->struct_size = size;
  return absl::OkStatus();
}

// kestrel_X_options_init_sized: writes the defaults into the first `struct_size` bytes of the
// caller's struct only (an older client's struct is smaller than ours) and records that size.
template <typename T>
void WriteDefaults(T* out, T full, size_t struct_size) {
  const size_t n = std::min(struct_size, sizeof(T));
  if (n < sizeof(uint32_t)) return;  // cannot even hold struct_size
  full.struct_size = static_cast<uint32_t>(n);
  std::memcpy(static_cast<void*>(out), &full, n);
}

// kestrel_X_options_init_sized: the defaults (a zeroed struct with its struct_size, then what
// `fill` sets) written into the caller's struct as far as its struct_size reaches.
template <typename T, typename Fill>
void InitOptions(T* out, size_t struct_size, Fill fill) {
  if (out == nullptr) return;
  T full{};
  full.struct_size = sizeof(T);
  fill(full);
  WriteDefaults(out, full, struct_size);
}

// Caller-buffer + required-size convention (see model.h).
template <typename T>
absl::Status CopyOut(const char* function, const char* out_name, const T* data, size_t n, T* out,
                     size_t capacity, size_t* out_required) {
  if (out_required == nullptr) return NullArgument(function, "out_required");
  *out_required = n;
  if (out == nullptr && capacity == 0) return absl::OkStatus();
  if (out == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s is NULL but capacity is %u", function, out_name, capacity));
  }
  if (capacity < n) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: the buffer holds %u elements but %u are needed", function, capacity, n));
  }
  if (n > 0) std::memcpy(out, data, n * sizeof(T));
  return absl::OkStatus();
}

// Reads `options->speculative` (NULL: off) into `config`; *draft receives the draft model handle
// (not retained here). Names the bad field in errors.
absl::Status ReadSpeculative(const char* function, const kestrel_speculative_options_t* in,
                             kestrel::runtime::SpecConfig* config, kestrel_model_t** draft);
// The C view of speculative statistics, written as far as out->struct_size reaches.
absl::Status WriteSpecStats(const char* function, const kestrel::runtime::SpecStats& stats,
                            kestrel_speculative_stats_t* out);

}  // namespace kestrel::api


#endif  // KESTREL_API_SRC_C_API_INTERNAL_H_
