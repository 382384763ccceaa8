#include "command_queue.h"

#include <exception>
#include <utility>

namespace kestrel::plugins::npu {

CommandQueue::CommandQueue() : worker_([this] { Serve(); }) {}

CommandQueue::~CommandQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

uint64_t CommandQueue::Submit(Command command) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back(std::move(command));
  const uint64_t seq = ++submitted_;
  changed_.notify_all();
  return seq;
}

uint64_t CommandQueue::Mark() const {
  std::lock_guard<std::mutex> lock(mu_);
  return submitted_;
}

void CommandQueue::WaitFor(uint64_t seq) const {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [&] { return completed_ >= seq; });
}

plugin_sdk::Status CommandQueue::Synchronize() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t seq = submitted_;
  changed_.wait(lock, [&] { return completed_ >= seq; });
  plugin_sdk::Status s = std::move(first_error_);
  first_error_ = plugin_sdk::Status();
  return s;
}

void CommandQueue::Serve() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping, and nothing left to run
    Command command = std::move(pending_.front());
    pending_.pop_front();
    lock.unlock();
    plugin_sdk::Status s;
    try {
      s = command();
    } catch (const std::exception& e) {
      s = plugin_sdk::Internal("npu command queue: unexpected exception: ", e.what());
    } catch (...) {
      s = plugin_sdk::Internal("npu command queue: unexpected exception");
    }
    lock.lock();
    if (!s.ok() && first_error_.ok()) first_error_ = std::move(s);
    ++completed_;
    changed_.notify_all();
  }
}

}  // namespace kestrel::plugins::npu
