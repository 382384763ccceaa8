// Memory offload through the public C API on tiny-moe-f32 (4 layers x 4 experts, top-2): host
// budgets that hold the dense weights, the KV cache and k expert slots (k = 3, 5, 9 of the 16
// experts) must give exactly the fully resident greedy tokens on cpu and on ref, with LRU and
// LFU; the expert cache's own accounting stays within its budget; hit/miss counts add up per
// layer; a budget one expert slot short makes the planner stream attention matrices (same tokens);
// budgets that cannot work fail with RESOURCE_EXHAUSTED naming the numbers.
#include <cstdint>
#include <cstdio>
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

constexpr uint32_t kCtx = 128;

StatusPtr Load(kestrel_runtime_t* rt, const std::string& device, const std::string& budget,
               uint32_t policy, bool metadata_only, ModelPtr* out, uint32_t flags = 0) {
  return LoadBudgeted(
      rt, {"tiny-moe-f32.gguf", device, budget, policy, metadata_only, kCtx, flags}, out);
}

std::vector<int32_t> Greedy(kestrel_model_t* m, const std::vector<int32_t>& prompt, int n) {
  return GreedyIds(m, kCtx, prompt, n);
}

std::vector<std::vector<int32_t>> Prompts() { return GoldenPrompts("tiny-moe-f32.golden.json"); }

struct Sizes {
  uint64_t dense = 0, kv = 0, slot = 0;
  uint32_t experts = 0;
};

// The byte counts the budgets are built from, from an unlimited plan.
Sizes MeasureSizes(kestrel_runtime_t* rt) {
  ModelPtr m;
  StatusPtr s = Load(rt, "ref", "host=unlimited", 0, true, &m);
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  Sizes z;
  if (!m) return z;
  const kestrel_memory_plan_info_t p = Plan(m.get());
  EXPECT_FALSE(p.experts_offloaded);
  EXPECT_EQ(p.experts_total, 16u);
  z.dense = p.resident_bytes - p.expert_bytes;
  z.kv = p.kv_bytes;
  z.experts = p.experts_total;
  z.slot = p.expert_bytes / p.experts_total;
  // tiny-moe-f32: KV of 4 layers x 4 KV heads x head dim 8, K and V in f32, per token.
  EXPECT_EQ(z.kv, uint64_t{kCtx} * 2 * 4 * 4 * 8 * 4);
  // One expert: gate and up [128, 64] and down [64, 128] in f32.
  EXPECT_EQ(z.slot, 3u * 128 * 64 * 4);
  return z;
}

class OffloadModelTest : public ::testing::TestWithParam<const char*> {};

TEST_P(OffloadModelTest, BudgetsGiveTheResidentTokensWithinTheCacheBudget) {
  const std::string device = GetParam();
  RuntimePtr rt = MakeRuntime();
  const Sizes z = MeasureSizes(rt.get());
  ASSERT_GT(z.slot, 0u);
  ModelPtr resident;
  StatusPtr s = Load(rt.get(), device, "", 0, false, &resident);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const auto prompts = Prompts();
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts) want.push_back(Greedy(resident.get(), p, 32));
  resident.reset();

  // Prefetch is on by default; its buffers come out of the slots (3 slots: too few to give any).
  struct Config {
    uint32_t slots;
    bool prefetch;
  };
  for (const Config& c : {Config{3, true}, Config{5, true}, Config{9, true}, Config{9, false}}) {
    const uint32_t slots = c.slots;
    for (uint32_t policy : {KESTREL_EXPERT_CACHE_LRU, KESTREL_EXPERT_CACHE_LFU}) {
      SCOPED_TRACE(device + ", " + std::to_string(slots) + " slots, policy " +
                   std::to_string(policy) + (c.prefetch ? ", prefetch" : ", no prefetch"));
      const uint64_t host = z.dense + z.kv + (slots + 1) * z.slot;
      ModelPtr m;
      s = Load(rt.get(), device, "host=" + std::to_string(host), policy, false, &m,
               c.prefetch ? 0u : KESTREL_OFFLOAD_FLAG_NO_PREFETCH);
      ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
      const kestrel_memory_plan_info_t p = Plan(m.get());
      EXPECT_TRUE(p.experts_offloaded);
      EXPECT_EQ(p.expert_slots, slots);
      EXPECT_EQ(p.offloaded_tensors, 12u);
      EXPECT_EQ(p.device_budget_bytes, host);
      EXPECT_LE(p.device_total_bytes, host);
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(Greedy(m.get(), prompts[i], 32), want[i]) << "prompt " << i;
      }
      kestrel_offload_stats_t st{};
      st.struct_size = sizeof(st);
      s.reset(kestrel_model_get_offload_stats(m.get(), &st));
      ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
      EXPECT_EQ(st.expert_cache_budget_bytes, p.expert_cache_bytes);
      EXPECT_LE(st.expert_cache_peak_bytes, st.expert_cache_budget_bytes);
      EXPECT_LE(st.expert_cache_bytes, st.expert_cache_peak_bytes);
      EXPECT_GT(st.expert_misses, 0u);
      // Every routed miss reads one expert; a layer's first probe may read one more.
      EXPECT_GE(st.disk_bytes_read, st.expert_misses * z.slot);
      EXPECT_EQ(st.disk_bytes_read % z.slot, 0u);
      EXPECT_EQ(st.n_layers, 4u);
      EXPECT_EQ(st.policy, policy);
      uint64_t hits = 0, misses = 0;
      for (uint32_t l = 0; l < st.n_layers; ++l) {
        uint64_t h = 0, mi = 0;
        KESTREL_ASSERT_OK(kestrel_model_get_expert_layer_stats(m.get(), l, &h, &mi));
        EXPECT_GT(h + mi, 0u) << "layer " << l;
        hits += h;
        misses += mi;
      }
      EXPECT_EQ(hits, st.expert_hits);
      EXPECT_EQ(misses, st.expert_misses);
      uint64_t h = 0, mi = 0;
      StatusPtr bad(kestrel_model_get_expert_layer_stats(m.get(), 4, &h, &mi));
      ASSERT_NE(bad, nullptr);
      EXPECT_EQ(kestrel_status_code(bad.get()), KESTREL_STATUS_OUT_OF_RANGE);
      if (slots == 9) {
        EXPECT_GT(st.expert_hits, 0u);
      }
      // Two read-ahead buffers (top-2) and the slots they displace; every read-ahead used was
      // one read (counted in disk_bytes_read).
      const bool prefetching = c.prefetch && slots > 3;
      EXPECT_EQ(st.expert_prefetch_buffers, prefetching ? 2u : 0u);
      EXPECT_EQ(st.expert_slots, prefetching ? slots - 2 : slots);
      EXPECT_LE(st.expert_prefetch_hits, st.expert_prefetches);
      EXPECT_LE(st.expert_prefetch_hits, st.expert_misses);
      if (prefetching) {
        EXPECT_GT(st.expert_prefetches, 0u);
        EXPECT_GT(st.expert_prefetch_hits, 0u);
        std::printf("%s %u slots policy %u: %llu of %llu read-ahead experts used, %llu misses\n",
                    device.c_str(), slots, policy,
                    static_cast<unsigned long long>(st.expert_prefetch_hits),
                    static_cast<unsigned long long>(st.expert_prefetches),
                    static_cast<unsigned long long>(st.expert_misses));
      } else {
        EXPECT_EQ(st.expert_prefetches, 0u);
      }
    }
  }
}

// Each model in a runtime of its own, so each device's counters are that model's alone.
TEST_P(OffloadModelTest, DeviceMemoryStatsShowTheExpertsLeftInTheFile) {
  const std::string device = GetParam();
  RuntimePtr rt_resident = MakeRuntime(), rt_budget = MakeRuntime();
  const Sizes z = MeasureSizes(rt_resident.get());
  ASSERT_GT(z.slot, 0u);
  const auto prompt = Prompts()[0];
  ModelPtr resident;
  StatusPtr s = Load(rt_resident.get(), device, "", 0, false, &resident);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const std::vector<int32_t> want = Greedy(resident.get(), prompt, 16);
  const kestrel_memory_stats_t r = MemoryStats(resident.get());
  EXPECT_EQ(std::string(r.device).rfind(device, 0), 0u) << r.device;
  EXPECT_LE(r.device_bytes, r.device_peak_bytes);
  // Every weight was prepared on the device: the file's tensors at least.
  EXPECT_GE(r.host_to_device_bytes, z.dense + uint64_t{z.experts} * z.slot);
  EXPECT_EQ(r.expert_bytes_read, 0u);

  // 3 expert slots (+ staging) instead of all 16 experts.
  ModelPtr m;
  s = Load(rt_budget.get(), device, "host=" + std::to_string(z.dense + z.kv + 4 * z.slot), 0,
           false, &m);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  EXPECT_EQ(Greedy(m.get(), prompt, 16), want);
  const kestrel_memory_stats_t b = MemoryStats(m.get());
  kestrel_offload_stats_t st{};
  st.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_model_get_offload_stats(m.get(), &st));
  EXPECT_EQ(b.expert_bytes_read, st.disk_bytes_read);
  EXPECT_GT(b.expert_bytes_read, 0u);
  EXPECT_DOUBLE_EQ(b.expert_read_seconds, st.disk_read_seconds);
  EXPECT_LE(b.device_bytes, b.device_peak_bytes);
  // The same activations and KV, but at most 3 experts on the device instead of 16.
  EXPECT_LE(b.device_peak_bytes + 12 * z.slot, r.device_peak_bytes)
      << "budgeted peak " << b.device_peak_bytes << ", resident peak " << r.device_peak_bytes;
  // Each miss prepares one expert on the device: what was read was written.
  EXPECT_GE(b.host_to_device_bytes, z.dense + b.expert_bytes_read);

  StatusPtr bad(kestrel_model_get_memory_stats(m.get(), nullptr));
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(kestrel_status_code(bad.get()), KESTREL_STATUS_INVALID_ARGUMENT);
}

// Greedy tokens of `prompt` through an engine with a KV pool of `kv_bytes` (16-token blocks).
StatusPtr EngineGreedy(kestrel_model_t* m, uint64_t kv_bytes, const std::vector<int32_t>& prompt,
                       uint32_t n, std::vector<int32_t>* out) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  o.kv_cache_bytes = kv_bytes;
  o.kv_block_size = 16;
  o.context_length = kCtx;
  kestrel_engine_t* e = nullptr;
  StatusPtr s(kestrel_engine_create(m, &o, &e));
  if (s != nullptr) return s;
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0;
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.max_new_tokens = n;
  ro.sampler = &so;
  kestrel_request_id_t id = 0;
  s.reset(kestrel_engine_submit_tokens(e, prompt.data(), prompt.size(), &ro, &id));
  if (s == nullptr) s.reset(kestrel_engine_wait(e, id, -1));
  size_t got = 0;
  if (s == nullptr) s.reset(kestrel_engine_request_tokens(e, id, 0, nullptr, 0, &got));
  out->resize(got);
  if (s == nullptr) s.reset(kestrel_engine_request_tokens(e, id, 0, out->data(), got, &got));
  kestrel_engine_destroy(e);
  return s;
}

// Re-planning at run time: an engine whose KV pool is larger than the plan's takes the bytes from
// the expert cache (whole slots, never below top-2); one that needs more than the cache can give,
// after the model's first steps, gets it from the cache first and then from streaming dense
// layers, at a step boundary, with the same tokens; one no plan holds fails with the numbers and
// changes nothing. (Streaming with a session running across the re-plan: replan_stream_test.)
TEST_P(OffloadModelTest, AnEngineNeedingMoreKvShrinksTheExpertCache) {
  const std::string device = GetParam();
  RuntimePtr rt = MakeRuntime();
  const Sizes z = MeasureSizes(rt.get());
  ASSERT_GT(z.slot, 0u);
  const auto prompt = Prompts()[0];
  ModelPtr resident;
  StatusPtr s = Load(rt.get(), device, "", 0, false, &resident);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const std::vector<int32_t> want = Greedy(resident.get(), prompt, 24);
  resident.reset();

  const uint64_t host = z.dense + z.kv + 10 * z.slot;  // 9 slots + staging
  ModelPtr m;
  s = Load(rt.get(), device, "host=" + std::to_string(host), KESTREL_EXPERT_CACHE_LFU, false, &m);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  ASSERT_EQ(Plan(m.get()).expert_slots, 9u);
  // 3 slots more KV than planned: the cache keeps 6 and the budget still holds.
  std::vector<int32_t> got;
  s = EngineGreedy(m.get(), z.kv + 3 * z.slot, prompt, 24, &got);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  EXPECT_EQ(got, want);
  kestrel_memory_plan_info_t p = Plan(m.get());
  EXPECT_EQ(p.n_streamed_layers, 0u);  // the cache gave enough: nothing streamed
  EXPECT_EQ(p.expert_slots, 6u);
  EXPECT_EQ(p.kv_bytes, z.kv + 3 * z.slot);
  EXPECT_EQ(p.expert_cache_bytes, 7 * z.slot);
  EXPECT_LE(p.device_total_bytes, host);
  kestrel_offload_stats_t st{};
  st.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_model_get_offload_stats(m.get(), &st));
  EXPECT_EQ(st.expert_cache_budget_bytes, 7 * z.slot);
  EXPECT_LE(st.expert_cache_bytes, st.expert_cache_budget_bytes);
  // Sessions of the model run on the smaller cache with the same tokens.
  EXPECT_EQ(Greedy(m.get(), prompt, 24), want);
  KESTREL_ASSERT_OK(kestrel_model_get_offload_stats(m.get(), &st));
  EXPECT_LE(st.expert_cache_bytes, st.expert_cache_budget_bytes);

  // 8 slots more than first planned: the cache can give only 4 more (6 - top-2), so the cache
  // shrinks to its minimum and dense layers are streamed for the rest, although the model's
  // weights are in use: the tokens stay the resident ones, within the budget.
  s = EngineGreedy(m.get(), z.kv + 8 * z.slot, prompt, 24, &got);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  EXPECT_EQ(got, want);
  p = Plan(m.get());
  EXPECT_GT(p.n_streamed_layers, 0u);
  EXPECT_EQ(p.kv_bytes, z.kv + 8 * z.slot);
  EXPECT_LE(p.device_total_bytes, host);
  EXPECT_EQ(Greedy(m.get(), prompt, 24), want);
  KESTREL_ASSERT_OK(kestrel_model_get_offload_stats(m.get(), &st));
  EXPECT_LE(st.expert_cache_bytes, st.expert_cache_budget_bytes);
  EXPECT_LE(st.expert_cache_budget_bytes, p.expert_cache_bytes);

  // A pool larger than the whole budget: the numbers, nothing changed.
  const kestrel_memory_plan_info_t kept = p;
  s = EngineGreedy(m.get(), host, prompt, 24, &got);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_RESOURCE_EXHAUSTED);
  const std::string msg = kestrel_status_message(s.get());
  EXPECT_NE(msg.find(std::to_string(host) + " bytes"), std::string::npos) << msg;
  p = Plan(m.get());
  EXPECT_EQ(p.expert_slots, kept.expert_slots);
  EXPECT_EQ(p.kv_bytes, kept.kv_bytes);
  EXPECT_EQ(p.n_streamed_layers, kept.n_streamed_layers);
}

INSTANTIATE_TEST_SUITE_P(Devices, OffloadModelTest, ::testing::Values("cpu", "ref"));

TEST(OffloadPlanTest, ImpossibleBudgetsNameTheNumbers) {
  RuntimePtr rt = MakeRuntime();
  const Sizes z = MeasureSizes(rt.get());
  // One slot short of the minimum (top-2 experts plus the staging slot) with every dense weight
  // resident: the planner streams attention matrices to make room for the smallest expert
  // cache, and the tokens stay the resident ones.
  const uint64_t host = z.dense + z.kv + 2 * z.slot;
  ModelPtr m;
  StatusPtr s = Load(rt.get(), "ref", "", 0, false, &m);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const std::vector<int32_t> want = Greedy(m.get(), Prompts()[0], 16);
  s = Load(rt.get(), "ref", "host=" + std::to_string(host), 0, false, &m);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t streamed = Plan(m.get());
  EXPECT_GT(streamed.n_streamed_layers, 0u);
  EXPECT_TRUE(streamed.experts_offloaded);
  EXPECT_GE(streamed.expert_slots, 2u);
  EXPECT_LE(streamed.device_total_bytes, host);
  EXPECT_EQ(Greedy(m.get(), Prompts()[0], 16), want);

  s = Load(rt.get(), "ref", "host=1K", 0, true, &m);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_RESOURCE_EXHAUSTED);
  std::string msg = kestrel_status_message(s.get());
  EXPECT_NE(msg.find("1024 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(z.dense) + " bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(z.kv) + " bytes"), std::string::npos) << msg;

  s = Load(rt.get(), "ref", "ref=12Q", 0, true, &m);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("12Q"), std::string::npos);
  s = Load(rt.get(), "ref", "opencl=1G", 0, true, &m);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("opencl"), std::string::npos);

  // A budget that holds everything keeps everything resident; no budget, no plan.
  s = Load(rt.get(), "ref", "ref=200%,host=1G", 0, false, &m);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t p = Plan(m.get());
  EXPECT_FALSE(p.experts_offloaded);
  kestrel_offload_stats_t st{};
  st.struct_size = sizeof(st);
  StatusPtr none(kestrel_model_get_offload_stats(m.get(), &st));
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(kestrel_status_code(none.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  s = Load(rt.get(), "ref", "", 0, true, &m);
  ASSERT_EQ(s, nullptr);
  kestrel_memory_plan_info_t q{};
  q.struct_size = sizeof(q);
  none.reset(kestrel_model_get_memory_plan(m.get(), &q));
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(kestrel_status_code(none.get()), KESTREL_STATUS_FAILED_PRECONDITION);
}

}  // namespace
}  // namespace kestrel::testing
