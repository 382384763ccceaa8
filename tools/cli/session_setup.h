// Session set-up shared by `kestrel generate` and `kestrel chat`: the sampler and session options
// the command line asks for, and streaming of generated text to stdout.
#ifndef KESTREL_TOOLS_CLI_SESSION_SETUP_H_
#define KESTREL_TOOLS_CLI_SESSION_SETUP_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "api_util.h"
#include "args.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {

// The sampler options of the flags (--temp, --top-k, ...; unset ones keep the library defaults).
kestrel_sampler_options_t SamplerOptionsFrom(const Options& o);

// A session on `model` with the flags' context, threads and KV type, and speculative decoding as
// `spec` says (NULL: off). On failure prints the error and returns NULL.
SessionPtr CreateSessionFrom(kestrel_model_t* model, const Options& o, const kestrel_sampler_options_t* sampler,
                             const kestrel_speculative_options_t* spec = nullptr);

// Writes to stdout and remembers whether the output ends with a newline.
class StdoutStream {
 public:
  void Write(const char* data, size_t length);
  // Ends the current line unless the output is empty or already at a line start.
  void EndLine();

 private:
  bool wrote_anything_ = false;
  bool ends_with_newline_ = false;
};

// on_token target: streams each piece to `out` and collects ids and text.
struct Collector {
  StdoutStream* out;
  std::vector<int32_t> token_ids;
  std::string text;
};
bool CollectToken(void* user_data, int32_t token, const char* text, size_t text_length);

// Generate options for the flags (-n, --stop) that stream into `collector`. `stops` holds the
// --stop strings as C pointers and must outlive the options.
std::vector<const char*> StopStringPointers(const Options& o);
kestrel_generate_options_t GenerateOptionsFrom(const Options& o, const std::vector<const char*>& stops,
                                               Collector* collector);

const char* StopReasonName(kestrel_stop_reason_t reason);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_SESSION_SETUP_H_
