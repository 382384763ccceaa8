// Run-time re-planning by streaming (issue 14) through the public C API on stories260K (dense,
// no expert cache to shrink) on cpu: a model planned for one sequence under a host budget of
// exactly its weights and that KV streams nothing; a session runs steps on it (its executor now
// holds weight handles); an engine of three sequences then needs three times the KV, so the plan
// streams resident layers at a step boundary to make room (within the same budget). The
// engine's greedy tokens equal those of an engine on the fully resident model, and the session,
// continuing after the re-plan, produces the resident session's tokens (its cached handles of
// weights now streamed were dropped: under ASan a stale one is a use after free). An engine no
// budget can hold fails with RESOURCE_EXHAUSTED and the numbers, the plan unchanged. Label
// `offload`.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "tests/offload/offload_test_util.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

constexpr uint32_t kCtx = 96;

StatusPtr MakeEngine(kestrel_model_t* m, uint32_t sequences, EnginePtr* out) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  o.kv_block_size = 16;
  o.context_length = kCtx;
  o.max_sequences = sequences;
  o.max_batch_tokens = 64;
  kestrel_engine_t* raw = nullptr;
  StatusPtr s(kestrel_engine_create(m, &o, &raw));
  out->reset(raw);
  return s;
}

// Greedy tokens of each prompt, all submitted at once.
std::vector<std::vector<int32_t>> Serve(kestrel_engine_t* e,
                                        const std::vector<std::vector<int32_t>>& prompts) {
  std::vector<kestrel_request_id_t> ids;
  for (const auto& p : prompts) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = 0;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = 24;
    ro.sampler = &so;
    kestrel_request_id_t id = 0;
    KESTREL_EXPECT_OK(kestrel_engine_submit_tokens(e, p.data(), p.size(), &ro, &id));
    ids.push_back(id);
  }
  uint32_t active = 1;
  while (active > 0) {
    StatusPtr st(kestrel_engine_step(e, &active));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    if (st != nullptr) break;
  }
  std::vector<std::vector<int32_t>> out;
  for (kestrel_request_id_t id : ids) {
    size_t n = 0;
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e, id, 0, nullptr, 0, &n));
    std::vector<int32_t> t(n);
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e, id, 0, t.data(), t.size(), &n));
    out.push_back(t);
  }
  return out;
}

TEST(ReplanStreamTest, AnEngineNeedingMoreKvStreamsLayersAfterTheFirstStep) {
  RuntimePtr rt = MakeRuntime();
  const auto prompts = GoldenPrompts("stories260K.golden.json", 3);
  ModelPtr resident;
  StatusPtr s = LoadBudgeted(rt.get(), {"stories260K.gguf", "cpu", "host=unlimited", 0, false, kCtx},
                             &resident);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t full = Plan(resident.get());
  std::vector<std::vector<int32_t>> want;
  {
    EnginePtr e;
    s = MakeEngine(resident.get(), 3, &e);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
    want = Serve(e.get(), prompts);
  }
  constexpr int kSessionTokens = 16;
  const std::vector<int32_t> session_want =
      GreedyIds(resident.get(), kCtx, prompts[0], kSessionTokens);
  resident.reset();

  const uint64_t budget = full.resident_bytes + full.kv_bytes;
  ModelPtr m;
  s = LoadBudgeted(rt.get(), {"stories260K.gguf", "cpu", "host=" + std::to_string(budget), 0,
                              false, kCtx},
                   &m);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t before = Plan(m.get());
  EXPECT_EQ(before.n_streamed_layers, 0u);
  EXPECT_EQ(before.kv_tokens, kCtx);

  // A session's first half: the model's weights are in use from here on.
  SessionPtr sess = MakeGreedySession(m.get(), kCtx);
  ASSERT_TRUE(sess);
  std::vector<int32_t> got;
  auto greedy = [&](int n) {
    for (int i = 0; i < n; ++i) {
      int32_t t = -1;
      StatusPtr st(kestrel_session_sample(sess.get(), &t));
      ASSERT_EQ(st, nullptr) << kestrel_status_message(st.get());
      got.push_back(t);
      st.reset(kestrel_session_decode(sess.get(), &t, 1));
      ASSERT_EQ(st, nullptr) << kestrel_status_message(st.get());
    }
  };
  s.reset(kestrel_session_decode(sess.get(), prompts[0].data(), prompts[0].size()));
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  greedy(kSessionTokens / 2);

  EnginePtr e;
  s = MakeEngine(m.get(), 3, &e);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const kestrel_memory_plan_info_t after = Plan(m.get());
  EXPECT_GE(after.kv_bytes, 3 * before.kv_bytes);
  EXPECT_GT(after.n_streamed_layers, 0u);
  EXPECT_LT(after.resident_bytes, before.resident_bytes);
  EXPECT_LE(after.device_total_bytes, budget);
  EXPECT_EQ(Serve(e.get(), prompts), want);
  greedy(kSessionTokens - kSessionTokens / 2);
  EXPECT_EQ(got, session_want);
  const kestrel_memory_stats_t st = MemoryStats(m.get());
  EXPECT_GT(st.streamed_bytes_copied, 0u);
  e.reset();

  // No plan holds 64 sequences in this budget: the message has the numbers, the plan unchanged.
  s = MakeEngine(m.get(), 64, &e);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_RESOURCE_EXHAUSTED);
  const std::string msg = kestrel_status_message(s.get());
  EXPECT_NE(msg.find(std::to_string(budget)), std::string::npos) << msg;
  const kestrel_memory_plan_info_t unchanged = Plan(m.get());
  EXPECT_EQ(unchanged.n_streamed_layers, after.n_streamed_layers);
  EXPECT_EQ(unchanged.kv_bytes, after.kv_bytes);
}

}  // namespace
}  // namespace kestrel::testing
