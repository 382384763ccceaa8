// `kestrel generate`: streams a completion to stdout through kestrel_session_generate. With --chat
// the prompt is a user message (after an optional --system message) rendered with the model's chat
// template, and control-token texts in it become tokens; --special does the latter alone.
//
// stdout carries, in order: the prompt (unless --no-echo), the generated text as it is produced
// (flushed per token), a newline if the output did not already end with one, and with --json one
// JSON object on the last line. --load-state FILE restores a saved conversation first (then -p,
// if given, is appended to it without BOS) and --save-state FILE writes the state after
// generating (kestrel_session_{load,save}_state_file). Everything else (progress bar, logs, the timing summary without
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
#include "prompt_input.h"
#include "session_setup.h"
#include "spec_util.h"

namespace kestrel::cli {
namespace {

void WriteIntArray(JsonWriter* w, const std::vector<int32_t>& values) {
  w->BeginArray();
  for (int32_t v : values) w->Int(v);
  w->EndArray();
}

void WriteLogprob(JsonWriter* w, const kestrel_model_t* model, const kestrel_token_logprob_t& t) {
  w->Key("token");
  w->Int(t.token);
  w->Key("piece");
  w->String(TokenPiece(model, t.token, /*special=*/true));
  w->Key("logprob");
  w->Float(t.logprob);  // -inf (a banned token) prints as null
}

// [{"token", "piece", "logprob", "top_logprobs": [{"token", "piece", "logprob"}, ...]}, ...]: one
// entry per generated token (EOS excluded), top_logprobs holding the --n-probs most likely.
void WriteLogprobs(JsonWriter* w, const kestrel_model_t* model, const std::vector<TokenProbs>& probs) {
  w->BeginArray();
  for (const TokenProbs& p : probs) {
    w->BeginObject();
    WriteLogprob(w, model, p.chosen);
    w->Key("top_logprobs");
    w->BeginArray();
    for (const kestrel_token_logprob_t& t : p.top) {
      w->BeginObject();
      WriteLogprob(w, model, t);
      w->EndObject();
    }
    w->EndArray();
    w->EndObject();
  }
  w->EndArray();
}

}  // namespace

int RunGenerate(const Options& o) {
  std::string user_prompt, error;
  std::string grammar, json_schema;
  if (!ReadPrompt(o, stdin, &user_prompt, &error) || !ReadConstraint(o, &grammar, &json_schema, &error)) {
    std::fprintf(stderr, "kestrel: error: %s\n", error.c_str());
    return kExitError;
  }
  InstallInterruptHandler();  // before the load, so Ctrl-C also cancels loading
  OpenedModel opened;
  int exit_code = kExitError;
  if (!OpenModel(o, &opened, &exit_code)) return exit_code;
  const ModelPtr& model = opened.model;
  const kestrel_model_info_t& info = opened.info;

  // With --load-state the prompt (optional) continues the restored context: no BOS, and the
  // generate call gets the ids (an empty list samples from the restored logits).
  const bool resume = !o.load_state.empty();
  // The text the model sees: the prompt, or with --chat the prompt as a templated user message.
  std::string prompt = user_prompt;
  bool parse_special = o.special;
  bool add_bos = !resume;
  if (o.chat) {
    ChatMessages messages;
    if (o.system_prompt) messages.emplace_back("system", *o.system_prompt);
    messages.emplace_back("user", user_prompt);
    if (!ApplyChatTemplate(model.get(), messages, /*add_generation_prompt=*/true, &prompt)) return kExitError;
    parse_special = true;
    add_bos = !resume && !StartsWithBosText(model.get(), prompt);
  }

  std::vector<int32_t> prompt_ids;
  if ((o.json || resume) && !prompt.empty() &&
      !Tokenize(model.get(), prompt, add_bos, parse_special, &prompt_ids)) {
    return kExitError;
  }

  std::vector<kestrel_logit_bias_t> bias;
  kestrel_sampler_options_t sampler = SamplerOptionsFrom(o, &bias);
  ModelPtr draft;
  kestrel_speculative_options_t spec;
  if (!MakeSpecOptions(o, opened.runtime.get(), &draft, &spec, &exit_code)) return exit_code;
  SessionPtr session = CreateSessionFrom(model.get(), o, &sampler, o.spec.empty() ? nullptr : &spec);
  if (!session) return kExitError;
  StatusPtr status;
  if (resume) {
    status.reset(kestrel_session_load_state_file(session.get(), o.load_state.c_str()));
    if (status) {
      PrintStatusError(status.get());
      return kExitError;
    }
  }
  if (InterruptRequested()) {
    std::fprintf(stderr, "kestrel: interrupted\n");
    return kExitInterrupted;
  }

  StdoutStream out;
  Collector collector{&out, {}, {}, {}, o.echo_prompt ? &prompt : nullptr};
  const std::vector<const char*> stops = StopStringPointers(o);
  kestrel_generate_options_t gen = GenerateOptionsFrom(o, stops, &collector);
  gen.add_bos = add_bos;
  gen.parse_special = parse_special ? 1 : 0;
  if (o.n_probs > 0) {  // O(vocabulary) per token: only when asked
    gen.n_probs = o.n_probs;
    gen.on_logprobs = CollectLogprobs;
  }
  gen.keep_context = resume;
  if (o.grammar_file) gen.grammar = grammar.c_str();
  if (o.json_schema_file || o.json_object) gen.json_schema = json_schema.c_str();

  kestrel_generate_stats_t stats = {};
  stats.struct_size = sizeof(stats);
  {
    SessionCancelWatcher watcher(session.get());
    if (resume) {
      status.reset(kestrel_session_generate_tokens(session.get(), prompt_ids.data(),
                                                   prompt_ids.size(), &gen, &stats));
    } else {
      status.reset(kestrel_session_generate(session.get(), prompt.data(), prompt.size(), &gen, &stats));
    }
  }
  if (!status && !o.save_state.empty()) {
    status.reset(kestrel_session_save_state_file(session.get(), o.save_state.c_str()));
    if (status) {
      out.EndLine();
      PrintStatusError(status.get());
      return kExitError;
    }
  }

  bool cancelled = false;
  if (status) {
    if (kestrel_status_code(status.get()) != KESTREL_STATUS_CANCELLED) {
      out.EndLine();  // after any streamed text; nothing was echoed if nothing was generated
      PrintStatusError(status.get());
      return kExitError;
    }
    cancelled = true;  // stats are still filled (session.h)
    stats.stop_reason = KESTREL_STOP_CANCELLED;
  }
  collector.EchoOnce();  // a run that generated no text still shows its prompt
  out.EndLine();
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
    w.Key("logprobs");
    WriteLogprobs(&w, model.get(), collector.probs);
    w.Key("n_probs");
    w.Uint(o.n_probs);
    w.Key("logit_bias");
    w.BeginArray();
    for (const auto& [token, value] : o.logit_bias) {
      w.BeginArray();
      w.Int(token);
      w.Float(value);  // -inf (a ban) prints as null
      w.EndArray();
    }
    w.EndArray();
    w.Key("ignore_eos");
    w.Bool(o.ignore_eos);
    w.Key("max_new_tokens");
    w.Uint(gen.max_new_tokens);
    w.Key("context_length");  // the effective one: 0 means the model's trained context
    w.Uint(o.context_length != 0 ? o.context_length : info.context_length);
    w.Key("loaded_state");
    if (resume) {
      w.String(o.load_state);
    } else {
      w.Null();
    }
    w.Key("saved_state");
    if (!o.save_state.empty()) {
      w.String(o.save_state);
    } else {
      w.Null();
    }
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
