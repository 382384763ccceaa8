#include "metrics.h"

#include <cstdio>

namespace kestrel::serve {
namespace {

void Header(std::string* out, const char* name, const char* type, const char* help) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void Sample(std::string* out, const std::string& name, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", value);
  *out += name + " " + buf + "\n";
}

void Metric(std::string* out, const char* name, const char* type, const char* help, double value) {
  Header(out, name, type, help);
  Sample(out, name, value);
}

}  // namespace

void Metrics::CountResponse(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++responses_[{endpoint, status}];
}

void Metrics::CountGeneration(uint32_t prompt_tokens, uint32_t completion_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generations_;
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
}

void Metrics::CountClientDisconnect() {
  std::lock_guard<std::mutex> lock(mu_);
  ++disconnects_;
}

void Metrics::ObserveTimeToFirstToken(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < kTtftBuckets.size() && seconds > kTtftBuckets[i]) ++i;
  ++ttft_counts_[i];
  ttft_sum_ += seconds;
}

uint64_t Metrics::client_disconnects() const {
  std::lock_guard<std::mutex> lock(mu_);
  return disconnects_;
}

std::string Metrics::Render(const kestrel::EngineStats& e) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  Header(&out, "kestrel_http_responses_total", "counter",
         "HTTP responses sent, by endpoint and status code.");
  for (const auto& [key, n] : responses_) {
    Sample(&out,
           "kestrel_http_responses_total{endpoint=\"" + key.first + "\",code=\"" +
               std::to_string(key.second) + "\"}",
           static_cast<double>(n));
  }
  Metric(&out, "kestrel_generations_total", "counter",
         "Generation requests the engine completed.", static_cast<double>(generations_));
  Metric(&out, "kestrel_prompt_tokens_total", "counter", "Prompt tokens of completed requests.",
         static_cast<double>(prompt_tokens_));
  Metric(&out, "kestrel_completion_tokens_total", "counter",
         "Generated tokens of completed requests.", static_cast<double>(completion_tokens_));
  Metric(&out, "kestrel_client_disconnects_total", "counter",
         "Requests cancelled in the engine because their client disconnected.",
         static_cast<double>(disconnects_));
  Header(&out, "kestrel_time_to_first_token_seconds", "histogram",
         "Time from receiving a request to its first generated token.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= kTtftBuckets.size(); ++i) {
    cumulative += ttft_counts_[i];
    char le[32];
    if (i < kTtftBuckets.size()) {
      std::snprintf(le, sizeof(le), "%g", kTtftBuckets[i]);
    } else {
      std::snprintf(le, sizeof(le), "+Inf");
    }
    Sample(&out, std::string("kestrel_time_to_first_token_seconds_bucket{le=\"") + le + "\"}",
           static_cast<double>(cumulative));
  }
  Sample(&out, "kestrel_time_to_first_token_seconds_sum", ttft_sum_);
  Sample(&out, "kestrel_time_to_first_token_seconds_count", static_cast<double>(cumulative));

  Metric(&out, "kestrel_engine_requests_running", "gauge", "Requests holding KV blocks.",
         e.n_running);
  Metric(&out, "kestrel_engine_requests_waiting", "gauge", "Requests queued in the engine.",
         e.n_waiting);
  Metric(&out, "kestrel_engine_requests_finished_total", "counter",
         "Requests the engine finished, failed or cancelled.",
         static_cast<double>(e.n_finished));
  Metric(&out, "kestrel_engine_kv_blocks_total", "gauge", "KV cache blocks in the pool.",
         e.kv_blocks_total);
  Metric(&out, "kestrel_engine_kv_blocks_used", "gauge", "KV cache blocks in use.",
         e.kv_blocks_used);
  Metric(&out, "kestrel_engine_prefix_cache_hits_total", "counter",
         "Prompt blocks found in the prefix cache.", static_cast<double>(e.prefix_cache_hits));
  Metric(&out, "kestrel_engine_prefix_cache_lookups_total", "counter",
         "Prompt blocks looked up in the prefix cache.",
         static_cast<double>(e.prefix_cache_lookups));
  Metric(&out, "kestrel_engine_prefill_tokens_computed_total", "counter",
         "Prompt tokens run through the model.", static_cast<double>(e.prefill_tokens_computed));
  Metric(&out, "kestrel_engine_prefill_tokens_reused_total", "counter",
         "Prompt tokens taken from the prefix cache.",
         static_cast<double>(e.prefill_tokens_reused));
  Metric(&out, "kestrel_engine_generated_tokens_total", "counter", "Tokens sampled.",
         static_cast<double>(e.generated_tokens));
  Metric(&out, "kestrel_engine_preemptions_total", "counter", "Requests preempted.",
         static_cast<double>(e.preemptions));
  Metric(&out, "kestrel_engine_steps_total", "counter", "Engine steps run.",
         static_cast<double>(e.steps));
  return out;
}

}  // namespace kestrel::serve
