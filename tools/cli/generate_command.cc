// `kestrel generate`: streams a completion to stdout through kestrel_session_generate. With --chat
// the prompt is a user message (after an optional --system message) rendered with the model's chat
// template, and control-token texts in it become tokens; --special does the latter alone.
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
#include "session_setup.h"
#include "spec_util.h"

namespace kestrel::cli {
namespace {

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

  // The text the model sees: the prompt, or with --chat the prompt as a templated user message.
  std::string prompt = *o.prompt;
  bool parse_special = o.special;
  bool add_bos = true;
  if (o.chat) {
    ChatMessages messages;
    if (o.system_prompt) messages.emplace_back("system", *o.system_prompt);
    messages.emplace_back("user", *o.prompt);
    if (!ApplyChatTemplate(model.get(), messages, /*add_generation_prompt=*/true, &prompt)) return kExitError;
    parse_special = true;
    add_bos = !StartsWithBosText(model.get(), prompt);
  }

  std::vector<int32_t> prompt_ids;
  if (o.json && !Tokenize(model.get(), prompt, add_bos, parse_special, &prompt_ids)) return kExitError;

  kestrel_sampler_options_t sampler = SamplerOptionsFrom(o);
  ModelPtr draft;
  kestrel_speculative_options_t spec;
  if (!MakeSpecOptions(o, opened.runtime.get(), &draft, &spec, &exit_code)) return exit_code;
  SessionPtr session = CreateSessionFrom(model.get(), o, &sampler, o.spec.empty() ? nullptr : &spec);
  if (!session) return kExitError;
  StatusPtr status;
  if (InterruptRequested()) {
    std::fprintf(stderr, "kestrel: interrupted\n");
    return kExitInterrupted;
  }

  StdoutStream out;
  Collector collector{&out, {}, {}};
  const std::vector<const char*> stops = StopStringPointers(o);
  kestrel_generate_options_t gen = GenerateOptionsFrom(o, stops, &collector);
  gen.add_bos = add_bos;
  gen.parse_special = parse_special ? 1 : 0;

  kestrel_generate_stats_t stats = {};
  stats.struct_size = sizeof(stats);
  if (o.echo_prompt) out.Write(prompt.data(), prompt.size());
  {
    SessionCancelWatcher watcher(session.get());
    status.reset(kestrel_session_generate(session.get(), prompt.data(), prompt.size(), &gen, &stats));
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
  kestrel_speculative_stats_t spec_stats{};
  spec_stats.struct_size = sizeof(spec_stats);
  if (!o.spec.empty()) {
    StatusPtr s(kestrel_session_speculative_stats(session.get(), &spec_stats));
    if (s) PrintStatusError(s.get());
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
    w.String(prompt);
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
    if (!o.spec.empty()) {
      w.Key("speculative");
      WriteSpecStatsJson(&w, spec_stats);
    }
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
    if (!o.spec.empty()) PrintSpecStats(spec_stats);
  }
  return cancelled ? kExitInterrupted : kExitOk;
}

}  // namespace kestrel::cli
