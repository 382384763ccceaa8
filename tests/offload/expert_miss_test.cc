// Expert-cache misses run on the host device and MoE on a device without MOE. tiny-moe-f32 on
// ref under a host budget that leaves its experts in the file: every miss fetched into the cache
// and every miss run on the cpu device (KESTREL_OFFLOAD_FLAG_MISS_ON_HOST) give the fully resident
// greedy tokens, and the statistics count the host runs. On opencl (PoCL; skipped without one),
// which does not run MOE, the plan keeps the expert stacks on the fallback device in host memory
// (no expert cache) and the tokens are the resident ones.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "tests/offload/offload_test_util.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

constexpr uint32_t kCtx = 64;

StatusPtr Load(kestrel_runtime_t* rt, const std::string& device, const std::string& budget,
               uint32_t flags, bool metadata_only, ModelPtr* out) {
  return LoadBudgeted(rt, {"tiny-moe-f32.gguf", device, budget, 0, metadata_only, kCtx, flags},
                      out);
}

TEST(ExpertMissTest, MissesFetchedOrRunOnTheHostGiveTheResidentTokens) {
  RuntimePtr rt = MakeRuntime();
  ModelPtr meta;
  StatusPtr s = Load(rt.get(), "ref", "host=unlimited", 0, true, &meta);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t full = Plan(meta.get());
  ASSERT_EQ(full.experts_total, 16u);
  const uint64_t slot = full.expert_bytes / full.experts_total;
  const uint64_t host = full.resident_bytes - full.expert_bytes + full.kv_bytes + 6 * slot;

  ModelPtr resident;
  s = Load(rt.get(), "ref", "", 0, false, &resident);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const auto prompts = GoldenPrompts("tiny-moe-f32.golden.json", 2);
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts) want.push_back(GreedyIds(resident.get(), kCtx, p, 16));

  for (uint32_t flags : {0u, KESTREL_OFFLOAD_FLAG_MISS_FETCH, KESTREL_OFFLOAD_FLAG_MISS_ON_HOST}) {
    SCOPED_TRACE("offload_flags " + std::to_string(flags));
    ModelPtr m;
    s = Load(rt.get(), "ref", "host=" + std::to_string(host), flags, false, &m);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    ASSERT_TRUE(Plan(m.get()).experts_offloaded);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(GreedyIds(m.get(), kCtx, prompts[i], 16), want[i]) << "prompt " << i;
    }
    kestrel_offload_stats_t st{};
    st.struct_size = sizeof(st);
    KESTREL_ASSERT_OK(kestrel_model_get_offload_stats(m.get(), &st));
    std::printf("flags %u: %llu hits, %llu misses, %llu run on the host (%.4f s)\n", flags,
                static_cast<unsigned long long>(st.expert_hits),
                static_cast<unsigned long long>(st.expert_misses),
                static_cast<unsigned long long>(st.expert_host_runs), st.expert_host_seconds);
    EXPECT_LE(st.expert_host_runs, st.expert_misses);
    EXPECT_LE(st.expert_cache_peak_bytes, st.expert_cache_budget_bytes);
    if (flags == KESTREL_OFFLOAD_FLAG_MISS_ON_HOST) {
      EXPECT_GT(st.expert_host_runs, 0u);
      EXPECT_GT(st.expert_host_seconds, 0.0);
    } else {
      EXPECT_EQ(st.expert_host_runs, 0u);  // ref computes in host memory: misses are fetched
    }
  }
  ModelPtr both;
  s = Load(rt.get(), "ref", "host=" + std::to_string(host),
           KESTREL_OFFLOAD_FLAG_MISS_FETCH | KESTREL_OFFLOAD_FLAG_MISS_ON_HOST, false, &both);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("MISS_ON_HOST"), std::string::npos);
}

TEST(ExpertMissTest, ADeviceWithoutMoeKeepsTheExpertsOnTheFallback) {
  RuntimePtr rt = MakeRuntime();
  ModelPtr resident;
  StatusPtr s = Load(rt.get(), "opencl", "", 0, false, &resident);
  if (s != nullptr) GTEST_SKIP() << "no OpenCL device: " << kestrel_status_message(s.get());
  const auto prompt = GoldenPrompts("tiny-moe-f32.golden.json", 1)[0];
  const std::vector<int32_t> want = GreedyIds(resident.get(), kCtx, prompt, 16);
  ModelPtr meta;
  s = Load(rt.get(), "opencl", "opencl=unlimited", 0, true, &meta);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t full = Plan(meta.get());
  EXPECT_EQ(full.host_resident_tensors, 12u);  // 4 layers x gate, up, down
  EXPECT_EQ(full.expert_bytes, 0u);
  // A device budget below the experts' bytes: they are not the device's, so it still fits.
  const uint64_t budget = full.resident_bytes + full.kv_bytes;
  ModelPtr m;
  s = Load(rt.get(), "opencl", "opencl=" + std::to_string(budget), 0, false, &m);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t p = Plan(m.get());
  EXPECT_FALSE(p.experts_offloaded);
  EXPECT_EQ(p.host_resident_bytes, full.host_resident_bytes);
  EXPECT_EQ(GreedyIds(m.get(), kCtx, prompt, 16), want);
  kestrel_offload_stats_t st{};
  st.struct_size = sizeof(st);
  StatusPtr none(kestrel_model_get_offload_stats(m.get(), &st));
  ASSERT_NE(none, nullptr);  // no expert cache
  EXPECT_EQ(kestrel_status_code(none.get()), KESTREL_STATUS_FAILED_PRECONDITION);
}

}  // namespace
}  // namespace kestrel::testing
