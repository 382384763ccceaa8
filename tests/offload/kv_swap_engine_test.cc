// KV swap through the public C API (kestrel/engine.h) on stories260K: an engine whose KV pool is
// too small for its requests preempts; with the victim's KV swapped to host memory (policy
// ALWAYS, AUTO) or recomputed (NEVER), and with a swap space too small for every victim (some
// preemptions fall back to recompute), every request's greedy tokens equal those of an engine
// large enough never to preempt; the swap space's own accounting never exceeds its budget and is
// empty at the end. The model's memory plan supplies the swap space when the engine names none.
// Runs on ref and cpu, and on opencl when an OpenCL device exists (else that case is skipped with
// the reason). Label `offload`.
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

constexpr uint32_t kBlock = 16;
constexpr uint32_t kMaxNew = 80;
// stories260K: 5 layers x K, V x 4 KV heads x 8 dims x f32, per token.
constexpr uint64_t kKvBytesPerToken = 5 * 2 * 4 * 8 * 4;

std::vector<std::vector<int32_t>> Prompts() {
  std::ifstream f(ModelPath("stories260K.golden.json"));
  nlohmann::json golden = nlohmann::json::parse(f);
  std::vector<std::vector<int32_t>> p;
  for (const auto& c : golden["cases"]) p.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
  return p;
}

struct EngineRun {
  std::vector<std::vector<int32_t>> tokens;
  kestrel_engine_stats_t stats{};
};

// Every prompt submitted at once (priorities 0, 1, 2 in turn, so later arrivals preempt earlier
// ones), greedy, stepped until all are done.
EngineRun RunEngine(kestrel_model_t* model, uint32_t pool_blocks, bool prefix_cache,
              uint64_t swap_bytes, uint32_t policy) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  o.kv_cache_bytes = uint64_t{pool_blocks} * kBlock * kKvBytesPerToken;
  o.kv_block_size = kBlock;
  o.max_batch_tokens = 64;
  o.prefix_cache = prefix_cache;
  o.context_length = 128;
  o.kv_swap_bytes = swap_bytes;
  o.kv_swap_policy = policy;
  kestrel_engine_t* raw = nullptr;
  EngineRun run;
  StatusPtr s(kestrel_engine_create(model, &o, &raw));
  EXPECT_EQ(s, nullptr) << kestrel_status_message(s.get());
  if (raw == nullptr) return run;
  EnginePtr e(raw);
  const auto prompts = Prompts();
  std::vector<kestrel_request_id_t> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = 0;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = kMaxNew;
    ro.sampler = &so;
    ro.priority = static_cast<int32_t>(i % 3);
    kestrel_request_id_t id = 0;
    KESTREL_EXPECT_OK(kestrel_engine_submit_tokens(e.get(), prompts[i].data(), prompts[i].size(),
                                                   &ro, &id));
    ids.push_back(id);
  }
  // Stepped here (not waited on) so that the swap space's accounting is checked after each step.
  uint32_t active = 1;
  while (active > 0) {
    StatusPtr st(kestrel_engine_step(e.get(), &active));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    if (st != nullptr) break;
    kestrel_engine_stats_t now{};
    now.struct_size = sizeof(now);
    KESTREL_EXPECT_OK(kestrel_engine_get_stats(e.get(), &now));
    EXPECT_LE(now.kv_swap_held_bytes, now.kv_swap_budget_bytes);
    EXPECT_LE(now.kv_swap_peak_bytes, now.kv_swap_budget_bytes);
  }
  for (kestrel_request_id_t id : ids) {
    size_t n = 0;
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e.get(), id, 0, nullptr, 0, &n));
    std::vector<int32_t> t(n);
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e.get(), id, 0, t.data(), t.size(), &n));
    run.tokens.push_back(t);
  }
  run.stats.struct_size = sizeof(run.stats);
  KESTREL_EXPECT_OK(kestrel_engine_get_stats(e.get(), &run.stats));
  return run;
}

class KvSwapEngineTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), GetParam(), &model_);
    if (s != nullptr && std::string(GetParam()) == "opencl") {
      GTEST_SKIP() << "no OpenCL device: " << kestrel_status_message(s.get());
    }
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  }
  RuntimePtr rt_;
  ModelPtr model_;
};

TEST_P(KvSwapEngineTest, PreemptedRunsEqualUnpreemptedWithSwapAndRecompute) {
  // 6 requests of up to 13 + 80 tokens (6 blocks each alone): 48 blocks never preempt, 12 do.
  const EngineRun want = RunEngine(model_.get(), 48, false, 0, KESTREL_KV_SWAP_NEVER);
  ASSERT_EQ(want.stats.preemptions, 0u);
  const uint64_t big = uint64_t{1} << 30;
  // Room for one victim of about 40 tokens: the others recompute.
  const uint64_t small = 40 * kKvBytesPerToken;
  struct Case {
    const char* name;
    uint64_t swap_bytes;
    uint32_t policy;
  };
  for (bool cache : {false, true}) {
    for (const Case& c : {Case{"swap always", big, KESTREL_KV_SWAP_ALWAYS},
                          Case{"swap auto", big, KESTREL_KV_SWAP_AUTO},
                          Case{"small swap space", small, KESTREL_KV_SWAP_ALWAYS},
                          Case{"recompute", big, KESTREL_KV_SWAP_NEVER}}) {
      SCOPED_TRACE(std::string(GetParam()) + ", " + c.name + (cache ? ", prefix cache" : ""));
      const EngineRun got = RunEngine(model_.get(), 12, cache, c.swap_bytes, c.policy);
      const kestrel_engine_stats_t& st = got.stats;
      EXPECT_GT(st.preemptions, 0u);
      ASSERT_EQ(got.tokens.size(), want.tokens.size());
      for (size_t i = 0; i < want.tokens.size(); ++i) {
        EXPECT_EQ(got.tokens[i], want.tokens[i]) << "request " << i;
      }
      EXPECT_EQ(st.kv_swap_held_bytes, 0u);  // every swapped sequence resumed or ended
      EXPECT_LE(st.kv_swap_peak_bytes, st.kv_swap_budget_bytes);
      if (c.policy == KESTREL_KV_SWAP_NEVER) {
        EXPECT_EQ(st.kv_swap_budget_bytes, 0u);
        EXPECT_EQ(st.kv_swap_outs, 0u);
        continue;
      }
      EXPECT_EQ(st.kv_swap_budget_bytes, c.swap_bytes);
      EXPECT_LE(st.kv_swap_outs + st.kv_swap_fallbacks, st.preemptions);
      EXPECT_LE(st.kv_swap_ins, st.kv_swap_outs);
      EXPECT_LE(st.kv_swap_in_bytes, st.kv_swap_out_bytes);
      EXPECT_EQ(st.kv_swap_out_bytes % kKvBytesPerToken, 0u);
      if (c.policy == KESTREL_KV_SWAP_ALWAYS) {
        EXPECT_GT(st.kv_swap_outs, 0u);
        EXPECT_GT(st.kv_swap_ins, 0u);
        EXPECT_GT(st.kv_swap_in_bytes, 0u);
        EXPECT_GT(st.kv_swap_ms, 0.0);
        if (!cache) {
          // Without a prefix cache nothing is reused: each resumption writes back all it swapped.
          EXPECT_EQ(st.kv_swap_in_bytes, st.kv_swap_out_bytes);
        }
      }
      if (c.swap_bytes == small) {
        EXPECT_GT(st.kv_swap_fallbacks, 0u);
        EXPECT_GT(st.kv_swap_peak_bytes, 0u);
      } else if (c.policy == KESTREL_KV_SWAP_ALWAYS) {
        EXPECT_EQ(st.kv_swap_fallbacks, 0u);
        EXPECT_EQ(st.kv_swap_outs, st.preemptions);
      }
    }
  }
}

TEST_P(KvSwapEngineTest, TheMemoryPlanGivesTheSwapSpace) {
  const std::string path = ModelPath("stories260K.gguf");
  kestrel_model_options_t o;
  kestrel_model_options_init(&o);
  o.device = GetParam();
  o.memory_budget = "host=64M";
  o.plan_context_length = 128;
  kestrel_model_t* raw = nullptr;
  StatusPtr s(kestrel_model_load(rt_.get(), path.data(), path.size(), &o, &raw));
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  ModelPtr m(raw);
  const EngineRun plain = RunEngine(model_.get(), 48, false, 0, KESTREL_KV_SWAP_NEVER);
  const EngineRun got = RunEngine(m.get(), 12, false, 0, KESTREL_KV_SWAP_ALWAYS);
  // The engine's pool (12 blocks) is more KV than the plan's 128 tokens: it re-planned for it.
  kestrel_memory_plan_info_t p{};
  p.struct_size = sizeof(p);
  KESTREL_ASSERT_OK(kestrel_model_get_memory_plan(m.get(), &p));
  EXPECT_EQ(p.host_budget_bytes, 64u << 20);
  EXPECT_EQ(p.kv_bytes, 12 * kBlock * kKvBytesPerToken);
  // What the host budget leaves: after the device's share when the device computes in host memory
  // (ref, cpu; an OpenCL device may be either).
  const uint64_t host = 64u << 20;
  if (std::string(GetParam()) != "opencl") {
    EXPECT_EQ(p.host_swap_bytes, host - p.device_total_bytes);
  } else {
    EXPECT_TRUE(p.host_swap_bytes == host - p.device_total_bytes || p.host_swap_bytes == host)
        << p.host_swap_bytes;
  }
  EXPECT_EQ(got.stats.kv_swap_budget_bytes, p.host_swap_bytes);
  EXPECT_GT(got.stats.kv_swap_outs, 0u);
  EXPECT_EQ(got.tokens, plain.tokens);
  // Without a budget the model has no plan: no swap space, preemption recomputes.
  const EngineRun none = RunEngine(model_.get(), 12, false, 0, KESTREL_KV_SWAP_ALWAYS);
  EXPECT_EQ(none.stats.kv_swap_budget_bytes, 0u);
  EXPECT_EQ(none.stats.kv_swap_outs, 0u);
  EXPECT_GT(none.stats.preemptions, 0u);
  EXPECT_EQ(none.tokens, plain.tokens);
}

TEST_P(KvSwapEngineTest, ABadPolicyIsNamed) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  EXPECT_EQ(o.kv_swap_bytes, 0u);
  EXPECT_EQ(o.kv_swap_policy, static_cast<uint32_t>(KESTREL_KV_SWAP_AUTO));
  o.kv_swap_policy = 7;
  kestrel_engine_t* e = nullptr;
  StatusPtr s(kestrel_engine_create(model_.get(), &o, &e));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(e, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("kv_swap_policy = 7"),
            std::string::npos)
      << kestrel_status_message(s.get());
}

INSTANTIATE_TEST_SUITE_P(Devices, KvSwapEngineTest, ::testing::Values("ref", "cpu", "opencl"));

}  // namespace
}  // namespace kestrel::testing
