// Glue between the CLI and the public C API: owning handles, error reporting, runtime creation
// with the stderr log sink, and model loading with the progress bar. Uses only kestrel/kestrel.h.
#ifndef KESTREL_TOOLS_CLI_API_UTIL_H_
#define KESTREL_TOOLS_CLI_API_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {

// Exit statuses of the tool.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;  // the library reported an error
constexpr int kExitUsage = 2;  // bad command line

struct StatusDeleter {
  void operator()(kestrel_status_t* s) const { kestrel_status_free(s); }
};
struct RuntimeDeleter {
  void operator()(kestrel_runtime_t* r) const { kestrel_runtime_destroy(r); }
};
struct ModelDeleter {
  void operator()(kestrel_model_t* m) const { kestrel_model_release(m); }
};
struct SessionDeleter {
  void operator()(kestrel_session_t* s) const { kestrel_session_destroy(s); }
};
using StatusPtr = std::unique_ptr<kestrel_status_t, StatusDeleter>;
using RuntimePtr = std::unique_ptr<kestrel_runtime_t, RuntimeDeleter>;
using ModelPtr = std::unique_ptr<kestrel_model_t, ModelDeleter>;
using SessionPtr = std::unique_ptr<kestrel_session_t, SessionDeleter>;

// Prints "kestrel: error: <CODE_NAME>: <message>" on stderr. `status` must not be NULL.
void PrintStatusError(const kestrel_status_t* status);

// Creates the runtime with a log callback that writes to stderr ("kestrel: warning: ..."):
// WARNING and above by default, INFO with verbosity 1, DEBUG with 2 or more. On failure prints
// the error and returns NULL.
RuntimePtr CreateRuntime(int verbosity);

struct LoadOptions {
  std::string path;
  std::string device;  // "" = library default
  bool use_mmap = true;
  // Metadata only (kestrel_model_options_t.metadata_only): no weights, works on any readable GGUF.
  bool metadata_only = false;
  std::vector<std::string> mem;  // --mem DEVICE=SIZE specs (memory_budget)
  std::string expert_policy = "lru";
  bool expert_prefetch = true;   // false: KESTREL_OFFLOAD_FLAG_NO_PREFETCH
  uint32_t plan_context = 0;     // KV tokens the plan reserves (--ctx)
};

// LoadOptions from the command line's model flags (-m, --device, --no-mmap, --mem, --ctx).
struct Options;
LoadOptions LoadOptionsFrom(const Options& o);

// Loads a model, drawing a progress bar on stderr when it is a terminal. A Ctrl-C during the load
// (see interrupt.h) cancels it. On failure prints the error, sets *exit_code (1, or 130 when
// cancelled by Ctrl-C) and returns NULL.
ModelPtr LoadModel(kestrel_runtime_t* runtime, const LoadOptions& options, int* exit_code);

// Fills `info` (struct_size set here). On failure prints the error and returns false.
bool GetModelInfo(const kestrel_model_t* model, kestrel_model_info_t* info);

// What a command that runs a model starts with: the runtime (CreateRuntime), the model
// (LoadModel) and its info. On failure the error is printed, *exit_code set (1, or 130 when Ctrl-C
// cancelled the load) and false returned.
struct OpenedModel {
  RuntimePtr runtime;
  ModelPtr model;
  kestrel_model_info_t info{};
};
bool OpenModel(int verbosity, const LoadOptions& options, OpenedModel* out, int* exit_code);
// The same for a command's options (-v, -m, --device, --no-mmap).
bool OpenModel(const Options& o, OpenedModel* out, int* exit_code);

// Token ids of `text` (kestrel_tokenize_with_options). On failure prints the error and returns false.
bool Tokenize(const kestrel_model_t* model, const std::string& text, bool add_special, bool parse_special,
              std::vector<int32_t>* ids);

// A token's piece; with `special`, control tokens give their text. "" on error.
std::string TokenPiece(const kestrel_model_t* model, int32_t token, bool special);

// (role, content) messages rendered with the model's chat template
// (kestrel_model_apply_chat_template). On failure prints the error and returns false.
using ChatMessages = std::vector<std::pair<std::string, std::string>>;
bool ApplyChatTemplate(const kestrel_model_t* model, const ChatMessages& messages, bool add_generation_prompt,
                       std::string* text);

// Whether a rendered chat prompt already begins with the BOS token's text (then the prompt is
// tokenized without adding BOS again).
bool StartsWithBosText(const kestrel_model_t* model, const std::string& text);

// "F32 F16 Q8_0" for a KESTREL_DTYPE_MASK_* combination; unknown bits as "bit<N>".
std::string DtypeMaskToString(uint64_t mask);

// "cpu", "gpu", "npu", "accelerator", or "unknown(<n>)".
std::string DeviceKindName(int kind);

// "1.5 GiB", "512 B", ...
std::string FormatBytes(uint64_t bytes);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_API_UTIL_H_
