// Weight streaming through the public C API on stories260K (5 layers, F32): device budgets
// that cannot hold every weight make the planner stream layers through a ring of device buffers;
// greedy tokens must equal the fully resident run's at every budget, on ref and cpu (synchronous:
// each layer copied before its use) and on opencl (queued copies on a stream of their own,
// prefetched ahead; skipped without an OpenCL device). The device's tracked allocations never
// exceed the budget plus the activations the resident run needs too, and a budget that cannot
// hold even a streamed model fails with RESOURCE_EXHAUSTED naming the numbers.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "nlohmann/json.hpp"
#include "tests/offload/offload_test_util.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

constexpr uint32_t kCtx = 96;

std::string BudgetName(const std::string& device) {
  return device == "opencl" ? "opencl" : "host";  // ref and cpu compute in host memory
}

StatusPtr Load(kestrel_runtime_t* rt, const std::string& device, const std::string& budget,
               bool metadata_only, ModelPtr* out) {
  return LoadBudgeted(rt, {"stories260K.gguf", device, budget, 0, metadata_only, kCtx}, out);
}

std::vector<int32_t> Greedy(kestrel_model_t* m, const std::vector<int32_t>& prompt, int n) {
  return GreedyIds(m, kCtx, prompt, n);
}

std::vector<std::vector<int32_t>> Prompts() { return GoldenPrompts("stories260K.golden.json", 2); }

class WeightStreamingTest : public ::testing::TestWithParam<const char*> {};

TEST_P(WeightStreamingTest, BudgetsGiveTheResidentTokensWithinTheBudget) {
  const std::string device = GetParam();
  const std::string who = BudgetName(device);
  // Each model in a runtime of its own, so each device's counters are that model's alone.
  RuntimePtr rt = MakeRuntime();
  ModelPtr resident;
  StatusPtr s = Load(rt.get(), device, who + "=unlimited", false, &resident);
  if (s != nullptr && device == "opencl") {
    GTEST_SKIP() << "no OpenCL device: " << kestrel_status_message(s.get());
  }
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t full = Plan(resident.get());
  EXPECT_EQ(full.n_streamed_layers, 0u);
  const auto prompts = Prompts();
  ASSERT_EQ(prompts.size(), 2u);
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts) want.push_back(Greedy(resident.get(), p, 24));
  // What the device holds besides the plan (activations, workspace): the same in every run.
  const kestrel_memory_stats_t r = MemoryStats(resident.get());
  ASSERT_GE(r.device_peak_bytes, full.device_total_bytes);
  const uint64_t overhead = r.device_peak_bytes - full.device_total_bytes;
  resident.reset();
  rt.reset();

  uint32_t last_streamed = 0;
  for (double f : {0.9, 0.7, 0.55}) {
    const uint64_t budget =
        full.kv_bytes + static_cast<uint64_t>(f * static_cast<double>(full.resident_bytes));
    SCOPED_TRACE(device + ", budget " + std::to_string(budget) + " (" + std::to_string(f) +
                 " of the weights)");
    RuntimePtr rt_budget = MakeRuntime();
    ModelPtr m;
    s = Load(rt_budget.get(), device, who + "=" + std::to_string(budget), false, &m);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    const kestrel_memory_plan_info_t p = Plan(m.get());
    EXPECT_GT(p.n_streamed_layers, 0u);
    EXPECT_GE(p.n_streamed_layers, last_streamed);  // a smaller budget streams no fewer layers
    last_streamed = p.n_streamed_layers;
    EXPECT_LT(p.resident_bytes, full.resident_bytes);
    EXPECT_GT(p.streamed_bytes, 0u);
    // A device with streams (PoCL) prefetches at least one layer ahead; ref and cpu copy each
    // layer just before its use, into one slot.
    if (device == "opencl") {
      EXPECT_GE(p.stream_prefetch_distance, 1u);
    } else {
      EXPECT_EQ(p.stream_prefetch_distance, 0u);
    }
    EXPECT_EQ(p.stream_slots, p.stream_prefetch_distance + 1);
    EXPECT_LT(p.stream_slots, p.n_streamed_layers);  // else the ring would hold them all
    EXPECT_GT(p.stream_ring_bytes, 0u);
    EXPECT_LE(p.device_total_bytes, budget);
    EXPECT_EQ(p.device_budget_bytes, budget);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(Greedy(m.get(), prompts[i], 24), want[i]) << "prompt " << i;
    }
    const kestrel_memory_stats_t b = MemoryStats(m.get());
    // Every step (2 x (prefill + 24 decode)) copied every streamed layer but those the ring
    // still held from the step before (at most its slots' worth).
    EXPECT_GT(b.streamed_bytes_copied, 0u);
    EXPECT_GE(b.streamed_bytes_copied,
              2 * 25 * (p.streamed_bytes - std::min(p.streamed_bytes, p.stream_ring_bytes)));
    if (device == "opencl") {
      EXPECT_EQ(b.stream_copy_wait_seconds, 0.0);  // queued, not waited for on the host
    } else {
      EXPECT_GT(b.stream_copy_wait_seconds, 0.0);
    }
    EXPECT_LE(b.device_peak_bytes, budget + overhead)
        << "peak " << b.device_peak_bytes << ", activations etc. " << overhead;
    // Every step copied the streamed layers again (a ring that held them all would save
    // nothing, so the planner never picks one): more bytes moved than loading everything once.
    EXPECT_GT(b.host_to_device_bytes, r.host_to_device_bytes);
  }
}

TEST_P(WeightStreamingTest, ABudgetTooSmallEvenToStreamNamesTheNumbers) {
  const std::string device = GetParam();
  RuntimePtr rt = MakeRuntime();
  ModelPtr m;
  StatusPtr s = Load(rt.get(), device, BudgetName(device) + "=200K", false, &m);
  if (s != nullptr && device == "opencl" &&
      kestrel_status_code(s.get()) != KESTREL_STATUS_RESOURCE_EXHAUSTED) {
    GTEST_SKIP() << "no OpenCL device: " << kestrel_status_message(s.get());
  }
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_RESOURCE_EXHAUSTED);
  const std::string msg = kestrel_status_message(s.get());
  EXPECT_NE(msg.find("204800 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("every streamable layer (5) streamed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bytes too many"), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Devices, WeightStreamingTest, ::testing::Values("ref", "cpu", "opencl"));

}  // namespace
}  // namespace kestrel::testing
