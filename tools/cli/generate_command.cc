// `kestrel generate`: streams a completion to stdout through kestrel_session_generate.
//
// stdout carries, in order: the prompt (unless --no-echo), the generated text as it is produced
// (flushed per token), a newline if the output did not already end with one, and with --json one
// JSON object on the last line. Everything else (progress bar, logs, the timing summary without
// --json, errors) goes to stderr.
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "api_util.h"
#include "commands.h"
#include "interrupt.h"
#include "json_writer.h"
#include "kestrel/kestrel.h"

namespace kestrel::cli {
namespace {

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

// Writes to stdout and remembers whether the output ends with a newline.
class StdoutStream {
 public:
  void Write(const char* data, size_t length) {
    if (length == 0) return;
    std::fwrite(data, 1, length, stdout);
    std::fflush(stdout);
    ends_with_newline_ = data[length - 1] == '\n';
    wrote_anything_ = true;
  }
  // Ends the current line unless the output is empty or already at a line start.
  void EndLine() {
    if (wrote_anything_ && !ends_with_newline_) Write("\n", 1);
  }

 private:
  bool wrote_anything_ = false;
  bool ends_with_newline_ = false;
};

struct Collector {
  StdoutStream* out;
  std::vector<int32_t> token_ids;
  std::string text;
};

bool OnToken(void* user_data, int32_t token, const char* text, size_t text_length) {
  auto* c = static_cast<Collector*>(user_data);
  if (token != KESTREL_TOKEN_NONE) c->token_ids.push_back(token);  // NONE: a final flush
  if (text_length > 0) {
    c->text.append(text, text_length);
    c->out->Write(text, text_length);
  }
  return true;
}

// The prompt's token ids as generate sees them (with BOS when the model asks for it).
bool TokenizePrompt(const kestrel_model_t* model, const std::string& prompt,
                    std::vector<int32_t>* ids) {
  size_t required = 0;
  StatusPtr status(
      kestrel_tokenize(model, prompt.data(), prompt.size(), true, nullptr, 0, &required));
  if (!status) {
    ids->resize(required);
    status.reset(kestrel_tokenize(model, prompt.data(), prompt.size(), true, ids->data(),
                                  ids->size(), &required));
  }
  if (status) {
    PrintStatusError(status.get());
    return false;
  }
  ids->resize(required);
  return true;
}

void WriteIntArray(JsonWriter* w, const std::vector<int32_t>& values) {
  w->BeginArray();
  for (int32_t v : values) w->Int(v);
  w->EndArray();
}

}  // namespace

int RunGenerate(const Options& o) {
  InstallInterruptHandler();  // before the load, so Ctrl-C also cancels loading
  OpenedModel opened;
  int exit_code = kExitError;
  if (!OpenModel(o, &opened, &exit_code)) return exit_code;
  const ModelPtr& model = opened.model;
  const kestrel_model_info_t& info = opened.info;

  std::vector<int32_t> prompt_ids;
  if (o.json && !TokenizePrompt(model.get(), *o.prompt, &prompt_ids)) return kExitError;

  kestrel_sampler_options_t sampler;
  kestrel_sampler_options_init(&sampler);
  sampler.temperature = o.temperature;
  if (o.top_k) sampler.top_k = *o.top_k;
  if (o.top_p) sampler.top_p = *o.top_p;
  if (o.min_p) sampler.min_p = *o.min_p;
  if (o.repeat_penalty) sampler.repetition_penalty = *o.repeat_penalty;
  if (o.repeat_last_n) sampler.repetition_window = *o.repeat_last_n;
  if (o.seed) sampler.seed = *o.seed;

  kestrel_session_options_t session_options;
  kestrel_session_options_init(&session_options);
  session_options.context_length = o.context_length;
  session_options.sampler = &sampler;
  session_options.n_threads = o.n_threads;
  session_options.kv_type = o.kv_type;
  kestrel_session_t* raw_session = nullptr;
  StatusPtr status(kestrel_session_create(model.get(), &session_options, &raw_session));
  if (status) {
    PrintStatusError(status.get());
    return kExitError;
  }
  SessionPtr session(raw_session);
  if (InterruptRequested()) {
    std::fprintf(stderr, "kestrel: interrupted\n");
    return kExitInterrupted;
  }

  StdoutStream out;
  Collector collector{&out, {}, {}};
  std::vector<const char*> stops;
  for (const std::string& s : o.stop_strings) stops.push_back(s.c_str());
  kestrel_generate_options_t gen;
  kestrel_generate_options_init(&gen);
  gen.max_new_tokens = o.max_new_tokens;
  gen.stop_strings = stops.empty() ? nullptr : stops.data();
  gen.n_stop_strings = stops.size();
  gen.on_token = OnToken;
  gen.user_data = &collector;

  kestrel_generate_stats_t stats = {};
  stats.struct_size = sizeof(stats);
  if (o.echo_prompt) out.Write(o.prompt->data(), o.prompt->size());
  {
    SessionCancelWatcher watcher(session.get());
    status.reset(kestrel_session_generate(session.get(), o.prompt->data(), o.prompt->size(), &gen,
                                          &stats));
  }
  out.EndLine();

  bool cancelled = false;
  if (status) {
    if (kestrel_status_code(status.get()) != KESTREL_STATUS_CANCELLED) {
      PrintStatusError(status.get());
      return kExitError;
    }
    cancelled = true;  // stats are still filled (session.h)
    stats.stop_reason = KESTREL_STOP_CANCELLED;
  }

  if (o.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("model");
    w.String(o.model_path);
    w.Key("model_name");
    w.String(info.name != nullptr ? info.name : "");
    w.Key("device");
    w.String(info.device != nullptr ? info.device : "");
    w.Key("prompt");
    w.String(*o.prompt);
    w.Key("prompt_token_ids");
    WriteIntArray(&w, prompt_ids);
    w.Key("token_ids");
    WriteIntArray(&w, collector.token_ids);
    w.Key("text");
    w.String(collector.text);
    w.Key("n_prompt");
    w.Uint(stats.n_prompt_tokens);
    w.Key("n_generated");
    w.Uint(stats.n_generated_tokens);
    w.Key("prefill_ms");
    w.Double(stats.prefill_ms);
    w.Key("decode_ms");
    w.Double(stats.decode_ms);
    w.Key("prefill_tokens_per_s");
    w.Double(stats.prefill_tokens_per_s);
    w.Key("decode_tokens_per_s");
    w.Double(stats.decode_tokens_per_s);
    w.Key("stop_reason");
    w.String(StopReasonName(stats.stop_reason));
    w.Key("seed");
    w.Uint(sampler.seed);
    w.Key("temperature");
    w.Float(sampler.temperature);
    w.Key("top_k");
    w.Int(sampler.top_k);
    w.Key("top_p");
    w.Float(sampler.top_p);
    w.Key("min_p");
    w.Float(sampler.min_p);
    w.Key("repeat_penalty");
    w.Float(sampler.repetition_penalty);
    w.Key("repeat_last_n");
    w.Int(sampler.repetition_window);
    w.Key("max_new_tokens");
    w.Uint(gen.max_new_tokens);
    w.Key("context_length");  // the effective one: 0 means the model's trained context
    w.Uint(o.context_length != 0 ? o.context_length : info.context_length);
    w.EndObject();
    std::string line = w.str();
    line.push_back('\n');
    out.Write(line.data(), line.size());
  } else {
    std::fprintf(stderr,
                 "kestrel: prompt %" PRIu32 " tokens, %.2f ms (%.1f tok/s); generated %" PRIu32
                 " tokens, %.2f ms (%.1f tok/s); stop: %s\n",
                 stats.n_prompt_tokens, stats.prefill_ms, stats.prefill_tokens_per_s,
                 stats.n_generated_tokens, stats.decode_ms, stats.decode_tokens_per_s,
                 StopReasonName(stats.stop_reason));
  }
  return cancelled ? kExitInterrupted : kExitOk;
}

}  // namespace kestrel::cli
