// A command queue served by a thread of its own, as an NPU's hardware queue: commands run one
// after the other in submission order, off the caller's thread; an event is a point in a queue
// (the sequence number of the last command before it). A failed command's status is kept and
// returned by the next Synchronize (the commands after it still run). Thread-safe.
#ifndef KESTREL_PLUGINS_NPU_STUB_COMMAND_QUEUE_H_
#define KESTREL_PLUGINS_NPU_STUB_COMMAND_QUEUE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "kestrel/plugin_sdk/status.h"

namespace kestrel::plugins::npu {

class CommandQueue {
 public:
  using Command = std::function<plugin_sdk::Status()>;

  CommandQueue();
  // Runs what is queued, then stops the thread.
  ~CommandQueue();
  CommandQueue(const CommandQueue&) = delete;
  CommandQueue& operator=(const CommandQueue&) = delete;

  // Queues `command`; returns its sequence number (1, 2, ...).
  uint64_t Submit(Command command);
  // The sequence number of the last command submitted (0: none): an event recorded now.
  uint64_t Mark() const;
  // Blocks until command `seq` (and every one before it) has run.
  void WaitFor(uint64_t seq) const;
  // WaitFor(Mark()), then returns and clears the first error of the commands run so far.
  plugin_sdk::Status Synchronize();

 private:
  void Serve();

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::deque<Command> pending_;
  uint64_t submitted_ = 0;
  uint64_t completed_ = 0;
  bool stopping_ = false;
  plugin_sdk::Status first_error_;
  std::thread worker_;  // last: started once the members above exist
};

}  // namespace kestrel::plugins::npu

#endif  // KESTREL_PLUGINS_NPU_STUB_COMMAND_QUEUE_H_
