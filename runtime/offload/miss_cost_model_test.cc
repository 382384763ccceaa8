// Unit test of the miss cost model: it tries each way once, then picks the host for few tokens
// and the fetch for many from the rates it observed; the forced policies ignore the rates.
#include "runtime/offload/miss_cost_model.h"

#include "gtest/gtest.h"

namespace kestrel::runtime::offload {
namespace {

TEST(MissCostModelTest, TriesBothThenChoosesByTokens) {
  MissCostModel m;
  constexpr uint64_t kBytes = 1 << 20;
  EXPECT_FALSE(m.RunOnHost(kBytes, 1));  // nothing seen: fetch first
  m.ObserveFetch(kBytes, 1e-3);           // 1 ms per MiB on the device
  EXPECT_TRUE(m.RunOnHost(kBytes, 1));   // the host not seen yet: try it
  m.ObserveHost(kBytes, 1e-4, 2, 4e-4);   // 0.1 ms per MiB to prepare, 0.2 ms per token
  EXPECT_DOUBLE_EQ(m.host_seconds_per_token(), 2e-4);
  // host: 0.1 ms + T x 0.2 ms against 1 ms: the host wins up to 4 tokens.
  EXPECT_TRUE(m.RunOnHost(kBytes, 1));
  EXPECT_TRUE(m.RunOnHost(kBytes, 4));
  EXPECT_FALSE(m.RunOnHost(kBytes, 5));
  EXPECT_FALSE(m.RunOnHost(kBytes, 512));
  // A slower host moves the choice (moving average: 0.75 x 0.2 + 0.25 x 2 = 0.65 ms per token).
  m.ObserveHost(kBytes, 1e-4, 1, 2e-3);
  EXPECT_NEAR(m.host_seconds_per_token(), 6.5e-4, 1e-12);
  EXPECT_TRUE(m.RunOnHost(kBytes, 1));
  EXPECT_FALSE(m.RunOnHost(kBytes, 2));
}

TEST(MissCostModelTest, ForcedPoliciesIgnoreTheRates) {
  MissCostModel fetch(MissPolicy::kFetch), host(MissPolicy::kHost);
  for (MissCostModel* m : {&fetch, &host}) {
    m->ObserveFetch(100, 1.0);
    m->ObserveHost(100, 0, 1, 1e-9);
  }
  EXPECT_FALSE(fetch.RunOnHost(100, 1));
  EXPECT_TRUE(host.RunOnHost(100, 100000));
}

}  // namespace
}  // namespace kestrel::runtime::offload
