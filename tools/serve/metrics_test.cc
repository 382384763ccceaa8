#include "metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace kestrel::serve {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(MetricsTest, PrometheusTextWithCountersHistogramAndEngineGauges) {
  Metrics m;
  m.CountResponse("/v1/completions", 200);
  m.CountResponse("/v1/completions", 200);
  m.CountResponse("/v1/completions", 400);
  m.CountGeneration(5, 16);
  m.CountClientDisconnect();
  m.ObserveTimeToFirstToken(0.02);  // <= 0.025
  m.ObserveTimeToFirstToken(20.0);  // +Inf only
  kestrel::EngineStats g;
  g.n_running = 3;
  g.kv_blocks_total = 100;
  g.generated_tokens = 42;
  const std::string t = m.Render(g);
  EXPECT_TRUE(Has(t, "# TYPE kestrel_http_responses_total counter")) << t;
  EXPECT_TRUE(Has(t, "kestrel_http_responses_total{endpoint=\"/v1/completions\",code=\"200\"} 2"));
  EXPECT_TRUE(Has(t, "kestrel_http_responses_total{endpoint=\"/v1/completions\",code=\"400\"} 1"));
  EXPECT_TRUE(Has(t, "kestrel_prompt_tokens_total 5"));
  EXPECT_TRUE(Has(t, "kestrel_completion_tokens_total 16"));
  EXPECT_TRUE(Has(t, "kestrel_client_disconnects_total 1"));
  EXPECT_TRUE(Has(t, "kestrel_time_to_first_token_seconds_bucket{le=\"0.01\"} 0"));
  EXPECT_TRUE(Has(t, "kestrel_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"));
  EXPECT_TRUE(Has(t, "kestrel_time_to_first_token_seconds_bucket{le=\"10\"} 1"));
  EXPECT_TRUE(Has(t, "kestrel_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"));
  EXPECT_TRUE(Has(t, "kestrel_time_to_first_token_seconds_count 2"));
  EXPECT_TRUE(Has(t, "kestrel_time_to_first_token_seconds_sum 20.02"));
  EXPECT_TRUE(Has(t, "kestrel_engine_requests_running 3"));
  EXPECT_TRUE(Has(t, "kestrel_engine_kv_blocks_total 100"));
  EXPECT_TRUE(Has(t, "kestrel_engine_generated_tokens_total 42"));
  EXPECT_EQ(m.client_disconnects(), 1u);
}

}  // namespace
}  // namespace kestrel::serve
