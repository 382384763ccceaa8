#include "interrupt.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace kestrel::cli {
namespace {

volatile sig_atomic_t g_interrupted = 0;
int g_pipe[2] = {-1, -1};  // [0] read by the watcher, [1] written by the handler
bool g_installed = false;

constexpr char kWakeInterrupt = 'i';
constexpr char kWakeQuit = 'q';

extern "C" void OnSigint(int) {
  int saved_errno = errno;
  g_interrupted = 1;
  if (g_pipe[1] >= 0) {
    char c = kWakeInterrupt;
    ssize_t ignored = write(g_pipe[1], &c, 1);  // non-blocking; a full pipe already wakes
    (void)ignored;
  }
  errno = saved_errno;
}

}  // namespace

bool InstallInterruptHandler() {
  if (g_installed) return true;
  if (pipe(g_pipe) != 0) return false;
  for (int fd : g_pipe) fcntl(fd, F_SETFD, FD_CLOEXEC);
  fcntl(g_pipe[1], F_SETFL, fcntl(g_pipe[1], F_GETFL) | O_NONBLOCK);
  struct sigaction sa = {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // the second Ctrl-C terminates
  if (sigaction(SIGINT, &sa, nullptr) != 0) return false;
  g_installed = true;
  return true;
}

bool InterruptRequested() { return g_interrupted != 0; }

SessionCancelWatcher::SessionCancelWatcher(kestrel_session_t* session) : session_(session) {
  if (g_installed) thread_ = std::thread(&SessionCancelWatcher::Run, this);
}

SessionCancelWatcher::~SessionCancelWatcher() {
  if (!thread_.joinable()) return;
  char c = kWakeQuit;
  // The write end is non-blocking; retry the (practically impossible) full-pipe case.
  while (write(g_pipe[1], &c, 1) != 1 && (errno == EINTR || errno == EAGAIN)) {
  }
  thread_.join();
}

void SessionCancelWatcher::Run() {
  if (g_interrupted) kestrel_session_cancel(session_);  // pressed before we started
  for (;;) {
    char c;
    ssize_t n = read(g_pipe[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1 || c == kWakeQuit) return;
    if (c == kWakeInterrupt) kestrel_session_cancel(session_);
  }
}

}  // namespace kestrel::cli
