// Sliding-window KV and the prefix cache on the real Gemma 3 270M (window 512 on its local layers)
// through the public C API on the cpu plugin: a request whose prompt hits the prefix cache (the
// window layers' rows come back from the cache's window blocks) generates the greedy ids of the
// same request on an engine without a prefix cache, and kestrel_engine_get_stats reports the
// window pools. Labels `engine`, `models`; skips without the model unless
// KESTREL_REQUIRE_MODELS=1.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.h"
#include "tests/models/real_model_util.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

// Greedy ids of `prompt` (max_new tokens), and the prompt tokens the prefix cache gave.
std::vector<int32_t> Generate(kestrel_engine_t* engine, const std::vector<int32_t>& prompt,
                              uint32_t max_new, uint32_t* cached) {
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0.0f;
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.max_new_tokens = max_new;
  ro.sampler = &so;
  kestrel_request_id_t id = 0;
  std::vector<int32_t> out;
  KESTREL_EXPECT_OK(kestrel_engine_submit_tokens(engine, prompt.data(), prompt.size(), &ro, &id));
  KESTREL_EXPECT_OK(kestrel_engine_wait(engine, id, -1));
  kestrel_engine_result_t r;
  r.struct_size = sizeof(r);
  KESTREL_EXPECT_OK(kestrel_engine_request_result(engine, id, 0, &r));
  *cached = r.n_cached_prompt_tokens;
  out.resize(r.n_generated_tokens);
  size_t n = 0;
  KESTREL_EXPECT_OK(kestrel_engine_request_tokens(engine, id, 0, out.data(), out.size(), &n));
  KESTREL_EXPECT_OK(kestrel_engine_release_request(engine, id));
  return out;
}

TEST(EngineWindowRealTest, Gemma3PrefixCacheHitKeepsGreedyIdsAndStatsShowTheWindowPools) {
  const std::string path = ModelCache() + "/gemma-3-270m-q4_k_m.gguf";
  KESTREL_REAL_MODEL_OR_SKIP(path);
  RuntimePtr rt = MakeRuntime();
  ModelPtr model;
  StatusPtr s = LoadModel(rt.get(), path, "cpu", &model);
  ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  const std::vector<int32_t> prompt = Tokenize(
      model.get(),
      "The lighthouse keeper climbed the stairs every evening at dusk, counting the steps as his "
      "father had taught him, and at the top he lit the lamp and watched the ships.",
      true, false);
  ASSERT_GT(prompt.size(), 24u);
  std::vector<int32_t> other = prompt;
  other.resize(prompt.size() * 2 / 3);
  for (int32_t t : Tokenize(model.get(), " Then the storm came in from the west.", false, false)) {
    other.push_back(t);
  }
  constexpr uint32_t kNew = 6;
  // One engine with the cache: the prompt (a miss), again (a hit up to its last block), then a
  // prompt sharing its first two thirds (a partial hit); the last against an engine without it.
  auto make_engine = [&](bool cache) {
    kestrel_engine_options_t o;
    kestrel_engine_options_init(&o);
    // Above window + one step (512 + 512): the window layers get pools of their own.
    o.context_length = 2048;
    o.max_sequences = 2;
    o.prefix_cache = cache;
    kestrel_engine_t* raw = nullptr;
    StatusPtr st(kestrel_engine_create(model.get(), &o, &raw));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    return EnginePtr(raw);
  };
  EnginePtr engine = make_engine(true);
  ASSERT_NE(engine, nullptr);
  uint32_t cached = 0;
  const std::vector<int32_t> miss = Generate(engine.get(), prompt, kNew, &cached);
  EXPECT_EQ(cached, 0u);
  EXPECT_EQ(miss.size(), kNew);
  const std::vector<int32_t> hit = Generate(engine.get(), prompt, kNew, &cached);
  EXPECT_GT(cached, prompt.size() - 4) << "the repeated prompt missed the cache";
  EXPECT_EQ(hit, miss);
  const std::vector<int32_t> partial = Generate(engine.get(), other, kNew, &cached);
  EXPECT_GE(cached, prompt.size() * 2 / 3 - 2) << "the shared part missed the cache";
  kestrel_engine_stats_t st{};
  st.struct_size = sizeof(st);
  KESTREL_ASSERT_OK(kestrel_engine_get_stats(engine.get(), &st));
  engine.reset();
  EnginePtr plain = make_engine(false);
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(partial, Generate(plain.get(), other, kNew, &cached));
  EXPECT_EQ(cached, 0u);
  // Gemma 3 270M: 15 of its 18 layers have a 512-token window (one group), 1 KV head x 256 dims.
  EXPECT_EQ(st.kv_window_groups, 1u);
  EXPECT_EQ(st.kv_window_step_tokens, 512u);
  EXPECT_GT(st.kv_window_blocks_total, 0u);
  EXPECT_GT(st.kv_window_blocks_used, 0u) << "the prefix cache keeps window blocks";
  EXPECT_EQ(st.kv_window_blocks_cached, st.kv_window_blocks_used) << "no request is running";
  EXPECT_GE(st.kv_window_blocks_peak, st.kv_window_blocks_used);
  EXPECT_EQ(st.kv_window_bytes,
            uint64_t{st.kv_window_blocks_total} * st.kv_block_size * 15 * 2 * 256 * sizeof(float));
  EXPECT_GT(st.prefill_tokens_reused, 0u);
}

}  // namespace
}  // namespace kestrel::testing
