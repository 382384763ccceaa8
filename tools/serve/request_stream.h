// The hand-over between the engine thread, which produces a request's tokens (its streaming
// callback), and the HTTP thread that answers the request: a queue of pieces with a wait.
// Thread-safe.
#ifndef KESTREL_TOOLS_SERVE_REQUEST_STREAM_H_
#define KESTREL_TOOLS_SERVE_REQUEST_STREAM_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "openai_protocol.h"

namespace kestrel::serve {

struct Piece {
  uint32_t sample = 0;
  int32_t token = 0;  // kestrel::kTokenNone for a final flush
  std::string text;
  std::optional<LogprobEntry> logprob;  // requests with logprobs; not on a final flush
};

class RequestStream {
 public:
  // Engine thread: queues a piece and wakes the waiter. Returns whether it was the first piece.
  bool Push(Piece piece) {
    bool first;
    {
      std::lock_guard<std::mutex> lock(mu_);
      first = !seen_any_;
      seen_any_ = true;
      pieces_.push_back(std::move(piece));
    }
    cv_.notify_one();
    return first;
  }

  // HTTP thread: the queued pieces, waiting up to `timeout` for the first one.
  std::vector<Piece> Take(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return !pieces_.empty(); });
    std::vector<Piece> out(std::make_move_iterator(pieces_.begin()),
                           std::make_move_iterator(pieces_.end()));
    pieces_.clear();
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Piece> pieces_;
  bool seen_any_ = false;
};

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_REQUEST_STREAM_H_
