// `kestrel chat`: an interactive conversation in one session. Each line read from stdin is a user
// message; the whole conversation is rendered with the model's chat template, and only the part
// the session has not seen yet is fed (keep_context), so earlier turns are never recomputed. The
// reply streams to stdout. When the rendered conversation no longer starts with what the session
// holds (a template that rewrites earlier turns, or a failed turn), the session starts over from
// the full rendering.
//
// Lines: "/reset" clears the conversation (keeping --system), "/exit" or end of input quits.
// Ctrl-C stops the current reply and ends the chat (exit status 130).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "api_util.h"
#include "commands.h"
#include "interrupt.h"
#include "kestrel/kestrel.h"
#include "session_setup.h"

namespace kestrel::cli {

int RunChat(const Options& o) {
  InstallInterruptHandler();
  RuntimePtr runtime = CreateRuntime(o.verbosity);
  if (!runtime) return kExitError;
  int exit_code = kExitError;
  ModelPtr model = LoadModel(runtime.get(), LoadOptions{o.model_path, o.device, o.use_mmap}, &exit_code);
  if (!model) return exit_code;
  kestrel_sampler_options_t sampler = SamplerOptionsFrom(o);
  SessionPtr session = CreateSessionFrom(model.get(), o, &sampler);
  if (!session) return kExitError;

  const bool interactive = isatty(STDIN_FILENO) != 0;
  if (interactive) {
    std::fprintf(stderr, "kestrel chat: type a message; /reset clears the conversation, /exit or Ctrl-D quits\n");
  }
  ChatMessages base;
  if (o.system_prompt) base.emplace_back("system", *o.system_prompt);
  ChatMessages messages = base;
  std::string fed;  // the text the session holds: what was fed plus what it generated
  const std::vector<const char*> stops = StopStringPointers(o);
  StdoutStream out;
  for (std::string line;;) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line) || line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      messages = base;
      fed.clear();
      continue;
    }
    if (line.empty()) continue;
    messages.emplace_back("user", line);
    std::string full;
    if (!ApplyChatTemplate(model.get(), messages, /*add_generation_prompt=*/true, &full)) {
      messages.pop_back();
      continue;
    }
    const bool keep = !fed.empty() && full.compare(0, fed.size(), fed) == 0;
    const std::string delta = keep ? full.substr(fed.size()) : full;

    Collector collector{&out, {}, {}};
    kestrel_generate_options_t gen = GenerateOptionsFrom(o, stops, &collector);
    gen.keep_context = keep;
    gen.add_bos = !keep && !StartsWithBosText(model.get(), full);
    gen.parse_special = 1;
    kestrel_generate_stats_t stats = {};
    stats.struct_size = sizeof(stats);
    StatusPtr status;
    {
      SessionCancelWatcher watcher(session.get());
      status.reset(kestrel_session_generate(session.get(), delta.data(), delta.size(), &gen, &stats));
    }
    out.EndLine();
    if (status && kestrel_status_code(status.get()) == KESTREL_STATUS_CANCELLED) return kExitInterrupted;
    if (status) {
      PrintStatusError(status.get());
      messages.pop_back();
      fed.clear();  // the session's content is unknown now: start over next turn
      continue;
    }
    fed = (keep ? fed : std::string()) + delta + collector.text;
    messages.emplace_back("assistant", collector.text);
    if (stats.stop_reason == KESTREL_STOP_CONTEXT_FULL) {
      std::fprintf(stderr, "kestrel: the context is full; /reset starts a new conversation\n");
    }
  }
  return kExitOk;
}

}  // namespace kestrel::cli
