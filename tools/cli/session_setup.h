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

// The sampler options of the flags (--temp, --top-k, ..., --logit-bias, --ignore-eos; unset ones
// keep the library defaults). The options point into `bias`, which must outlive them.
kestrel_sampler_options_t SamplerOptionsFrom(const Options& o, std::vector<kestrel_logit_bias_t>* bias);

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
// The log-probabilities of one generated token (generate --n-probs).
struct TokenProbs {
  kestrel_token_logprob_t chosen;
  std::vector<kestrel_token_logprob_t> top;
};

struct Collector {
  StdoutStream* out;
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<TokenProbs> probs;  // with on_logprobs = CollectLogprobs
  // Written before the first generated text (generate echoes its prompt only once generation
  // produced something, so a failing run prints nothing); null: no echo.
  const std::string* echo = nullptr;

  void EchoOnce() {
    if (echo != nullptr) out->Write(echo->data(), echo->size());
    echo = nullptr;
  }
};
bool CollectToken(void* user_data, int32_t token, const char* text, size_t text_length);
void CollectLogprobs(void* user_data, const kestrel_token_logprob_t* chosen,
                     const kestrel_token_logprob_t* top, size_t n_top);

// Generate options for the flags (-n, --stop) that stream into `collector`. `stops` holds the
// --stop strings as C pointers and must outlive the options.
std::vector<const char*> StopStringPointers(const Options& o);
kestrel_generate_options_t GenerateOptionsFrom(const Options& o, const std::vector<const char*>& stops,
                                               Collector* collector);

const char* StopReasonName(kestrel_stop_reason_t reason);

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_SESSION_SETUP_H_
