// Ctrl-C handling for long-running commands.
//
// The SIGINT handler only does async-signal-safe work: it sets a flag and writes one byte to a
// self-pipe. A watcher thread blocks on that pipe and, when woken, calls kestrel_session_cancel
// (which may be called from any thread); the generate call then returns CANCELLED after the current
// step. The handler is installed with SA_RESETHAND, so a second Ctrl-C kills the process at once.
#ifndef KESTREL_TOOLS_CLI_INTERRUPT_H_
#define KESTREL_TOOLS_CLI_INTERRUPT_H_

#include <thread>

#include "kestrel/session.h"

namespace kestrel::cli {

// Exit status after an interrupt (128 + SIGINT, the shell convention).
constexpr int kExitInterrupted = 130;

// Installs the SIGINT handler (idempotent). Returns false if the pipe or handler could not be
// set up; Ctrl-C then keeps its default behaviour.
bool InstallInterruptHandler();

// True once Ctrl-C was pressed (after InstallInterruptHandler).
bool InterruptRequested();

// While alive, a Ctrl-C cancels `session`. Construct it right before kestrel_session_generate and
// destroy it right after (the destructor stops and joins the thread).
class SessionCancelWatcher {
 public:
  explicit SessionCancelWatcher(kestrel_session_t* session);
  ~SessionCancelWatcher();
  SessionCancelWatcher(const SessionCancelWatcher&) = delete;
  SessionCancelWatcher& operator=(const SessionCancelWatcher&) = delete;

 private:
  void Run();

  kestrel_session_t* session_;
  std::thread thread_;
};

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_INTERRUPT_H_
