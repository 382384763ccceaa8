// The server's own counters and their Prometheus text exposition (GET /metrics, format 0.0.4).
// Thread-safe: handlers on any thread count, /metrics renders. Engine figures (running/waiting
// requests, KV blocks, prefix cache, tokens) are passed in at render time, a
// kestrel::Engine::Stats() value, so this file makes no Kestrel calls and is unit-tested alone.
#ifndef KESTREL_TOOLS_SERVE_METRICS_H_
#define KESTREL_TOOLS_SERVE_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "kestrel/kestrel.hpp"

namespace kestrel::serve {

class Metrics {
 public:
  // Upper bounds (seconds) of the time-to-first-token histogram buckets (+Inf added).
  static constexpr std::array<double, 10> kTtftBuckets = {0.01, 0.025, 0.05, 0.1, 0.25,
                                                          0.5,  1.0,   2.5,  5.0, 10.0};

  // One HTTP response: its route ("/v1/completions", ...; unknown paths as "other") and status.
  void CountResponse(const std::string& endpoint, int status);
  // A generation request the engine finished, with its token counts.
  void CountGeneration(uint32_t prompt_tokens, uint32_t completion_tokens);
  // A request cancelled because its client went away.
  void CountClientDisconnect();
  void ObserveTimeToFirstToken(double seconds);

  uint64_t client_disconnects() const;
  std::string Render(const kestrel::EngineStats& engine) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  uint64_t prompt_tokens_ = 0, completion_tokens_ = 0, generations_ = 0, disconnects_ = 0;
  std::array<uint64_t, kTtftBuckets.size() + 1> ttft_counts_{};  // last: +Inf
  double ttft_sum_ = 0.0;
};

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_METRICS_H_
