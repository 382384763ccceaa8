#include "session_setup.h"

#include <cstdio>

namespace kestrel::cli {

kestrel_sampler_options_t SamplerOptionsFrom(const Options& o) {
  kestrel_sampler_options_t sampler;
  kestrel_sampler_options_init(&sampler);
  sampler.temperature = o.temperature;
  if (o.top_k) sampler.top_k = *o.top_k;
  if (o.top_p) sampler.top_p = *o.top_p;
  if (o.min_p) sampler.min_p = *o.min_p;
  if (o.repeat_penalty) sampler.repetition_penalty = *o.repeat_penalty;
  if (o.repeat_last_n) sampler.repetition_window = *o.repeat_last_n;
  if (o.seed) sampler.seed = *o.seed;
  return sampler;
}

SessionPtr CreateSessionFrom(kestrel_model_t* model, const Options& o, const kestrel_sampler_options_t* sampler,
                             const kestrel_speculative_options_t* spec) {
  kestrel_session_options_t session_options;
  kestrel_session_options_init(&session_options);
  session_options.context_length = o.context_length;
  session_options.sampler = sampler;
  session_options.n_threads = o.n_threads;
  session_options.kv_type = o.kv_type;
  session_options.speculative = spec;
  kestrel_session_t* raw_session = nullptr;
  StatusPtr status(kestrel_session_create(model, &session_options, &raw_session));
  if (status) {
    PrintStatusError(status.get());
    return nullptr;
  }
  return SessionPtr(raw_session);
}

void StdoutStream::Write(const char* data, size_t length) {
  if (length == 0) return;
  std::fwrite(data, 1, length, stdout);
  std::fflush(stdout);
  ends_with_newline_ = data[length - 1] == '\n';
  wrote_anything_ = true;
}

void StdoutStream::EndLine() {
  if (wrote_anything_ && !ends_with_newline_) Write("\n", 1);
}

bool CollectToken(void* user_data, int32_t token, const char* text, size_t text_length) {
  auto* c = static_cast<Collector*>(user_data);
  if (token != KESTREL_TOKEN_NONE) c->token_ids.push_back(token);  // NONE: a final flush
  if (text_length > 0) {
    c->text.append(text, text_length);
    c->out->Write(text, text_length);
  }
  return true;
}

std::vector<const char*> StopStringPointers(const Options& o) {
  std::vector<const char*> stops;
  for (const std::string& s : o.stop_strings) stops.push_back(s.c_str());
  return stops;
}

kestrel_generate_options_t GenerateOptionsFrom(const Options& o, const std::vector<const char*>& stops,
                                               Collector* collector) {
  kestrel_generate_options_t gen;
  kestrel_generate_options_init(&gen);
  gen.max_new_tokens = o.max_new_tokens;
  gen.stop_strings = stops.empty() ? nullptr : stops.data();
  gen.n_stop_strings = stops.size();
  gen.on_token = CollectToken;
  gen.user_data = collector;
  return gen;
}

const char* StopReasonName(kestrel_stop_reason_t reason) {
  switch (reason) {
    case KESTREL_STOP_NONE:
      return "none";
    case KESTREL_STOP_EOS:
      return "eos";
    case KESTREL_STOP_MAX_TOKENS:
      return "max_tokens";
    case KESTREL_STOP_STOP_STRING:
      return "stop_string";
    case KESTREL_STOP_CALLBACK:
      return "callback";
    case KESTREL_STOP_CONTEXT_FULL:
      return "context_full";
    case KESTREL_STOP_CANCELLED:
      return "cancelled";
  }
  return "unknown";
}

}  // namespace kestrel::cli
