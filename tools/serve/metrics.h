// The server's own counters and their Prometheus text exposition (GET /metrics, format 0.0.4).
// Thread-safe: handlers on any thread count, /metrics renders. Engine figures (running/waiting
// requests, KV blocks, prefix cache, tokens) are passed in at render time from
// kestrel::Engine::Stats(), so this file needs no Kestrel calls and is unit-tested alone.
#ifndef KESTREL_TOOLS_SERVE_METRICS_H_
#define KESTREL_TOOLS_SERVE_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace kestrel::serve {

// The engine figures /metrics shows (a copy of the fields of kestrel::EngineStats it uses).
struct EngineGauges {
  uint32_t requests_running = 0;
  uint32_t requests_waiting = 0;
  uint64_t requests_finished = 0;
  uint32_t kv_blocks_total = 0;
  uint32_t kv_blocks_used = 0;
  uint64_t prefix_cache_hits = 0;
  uint64_t prefix_cache_lookups = 0;
  uint64_t prefill_tokens_computed = 0;
  uint64_t prefill_tokens_reused = 0;
  uint64_t generated_tokens = 0;
  uint64_t preemptions = 0;
  uint64_t steps = 0;
};

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
  std::string Render(const EngineGauges& engine) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  uint64_t prompt_tokens_ = 0, completion_tokens_ = 0, generations_ = 0, disconnects_ = 0;
  std::array<uint64_t, kTtftBuckets.size() + 1> ttft_counts_{};  // last: +Inf
  double ttft_sum_ = 0.0;
};

}  // namespace kestrel::serve

#endif  // KESTREL_TOOLS_SERVE_METRICS_H_
