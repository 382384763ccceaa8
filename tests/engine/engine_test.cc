// Serving engine tests over the public C API (kestrel/engine.h) with the reference plugin: batch
// invariance against sessions, prefix cache, forks with copy-on-write, preemption by recompute,
// cancellation, thread mode and bad input. Label `engine`.
#include <algorithm>
#include <cmath>
#include <atomic>
#include <fstream>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

struct EngineDeleter {
  void operator()(kestrel_engine_t* e) const { kestrel_engine_destroy(e); }
};
using EnginePtr = std::unique_ptr<kestrel_engine_t, EngineDeleter>;

// Per-request streamed output (sample 0 unless told), filled by the engine's callback.
struct Stream {
  std::vector<std::vector<int32_t>> tokens{8};
  std::vector<std::string> text{8};
  int flushes = 0;
  static bool OnToken(void* user, kestrel_request_id_t, uint32_t sample, int32_t token,
                      const char* text, size_t len) {
    auto* s = static_cast<Stream*>(user);
    if (token == KESTREL_TOKEN_NONE) {
      ++s->flushes;
    } else {
      s->tokens[sample].push_back(token);
    }
    s->text[sample].append(text, len);
    return true;
  }
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = MakeRuntime();
    ASSERT_NE(rt_, nullptr);
    StatusPtr s = LoadModel(rt_.get(), ModelPath("stories260K.gguf"), TestDevice(), &model_);
    ASSERT_EQ(s, nullptr) << kestrel_status_message(s.get());
  }

  EnginePtr MakeEngine(uint64_t kv_bytes = 0, uint32_t max_batch_tokens = 64,
                       bool prefix_cache = true, uint32_t max_sequences = 16,
                       uint32_t block_size = 16, uint32_t ctx = 128,
                       uint32_t kv_type = KESTREL_KV_F32) {
    kestrel_engine_options_t o;
    kestrel_engine_options_init(&o);
    o.kv_type = kv_type;
    o.kv_cache_bytes = kv_bytes;
    o.max_batch_tokens = max_batch_tokens;
    o.prefix_cache = prefix_cache;
    o.max_sequences = max_sequences;
    o.kv_block_size = block_size;
    o.context_length = ctx;
    kestrel_engine_t* e = nullptr;
    StatusPtr st(kestrel_engine_create(model_.get(), &o, &e));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    return EnginePtr(e);
  }

  // Bytes of `blocks` KV blocks of 16 tokens of stories260K (5 layers x K,V x 4 heads x 8 dims).
  static uint64_t BlocksBytes(uint32_t blocks, uint32_t bs = 16) {
    return uint64_t{blocks} * 5 * 2 * bs * 4 * 8 * sizeof(float);
  }

  std::vector<int32_t> Tokenize(const std::string& text, bool bos = true) {
    size_t n = 0;
    KESTREL_EXPECT_OK(kestrel_tokenize(model_.get(), text.data(), text.size(), bos, nullptr, 0, &n));
    std::vector<int32_t> ids(n);
    KESTREL_EXPECT_OK(
        kestrel_tokenize(model_.get(), text.data(), text.size(), bos, ids.data(), n, &n));
    return ids;
  }

  // What a session produces alone for `prompt` (tokens and streamed text).
  Collected RunAlone(const std::vector<int32_t>& prompt, uint32_t max_new, float temperature = 0,
                     uint64_t seed = 0xC0FFEE, uint32_t ctx = 128,
                     uint32_t kv_type = KESTREL_KV_F32) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = temperature;
    so.seed = seed;
    kestrel_session_options_t o;
    kestrel_session_options_init(&o);
    o.sampler = &so;
    o.context_length = ctx;
    o.kv_type = kv_type;
    kestrel_session_t* raw = nullptr;
    StatusPtr st(kestrel_session_create(model_.get(), &o, &raw));
    EXPECT_EQ(st, nullptr) << kestrel_status_message(st.get());
    SessionPtr s(raw);
    Collected got;
    kestrel_generate_options_t g;
    kestrel_generate_options_init(&g);
    g.max_new_tokens = max_new;
    g.on_token = &Collected::OnToken;
    g.user_data = &got;
    KESTREL_EXPECT_OK(kestrel_session_generate_tokens(s.get(), prompt.data(), prompt.size(), &g,
                                                      nullptr));
    return got;
  }

  kestrel_request_id_t Submit(kestrel_engine_t* e, const std::vector<int32_t>& prompt,
                              uint32_t max_new, Stream* stream = nullptr, float temperature = 0,
                              uint32_t n = 1, int32_t priority = 0, uint64_t seed = 0xC0FFEE) {
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = temperature;
    so.seed = seed;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = max_new;
    ro.sampler = &so;
    ro.n = n;
    ro.priority = priority;
    if (stream != nullptr) {
      ro.on_token = &Stream::OnToken;
      ro.user_data = stream;
    }
    kestrel_request_id_t id = 0;
    KESTREL_EXPECT_OK(kestrel_engine_submit_tokens(e, prompt.data(), prompt.size(), &ro, &id));
    return id;
  }

  static std::vector<int32_t> Tokens(kestrel_engine_t* e, kestrel_request_id_t id,
                                     uint32_t sample = 0) {
    size_t n = 0;
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e, id, sample, nullptr, 0, &n));
    std::vector<int32_t> t(n);
    KESTREL_EXPECT_OK(kestrel_engine_request_tokens(e, id, sample, t.data(), t.size(), &n));
    return t;
  }
  static std::string Text(kestrel_engine_t* e, kestrel_request_id_t id, uint32_t sample = 0) {
    size_t n = 0;
    KESTREL_EXPECT_OK(kestrel_engine_request_text(e, id, sample, nullptr, 0, &n));
    std::string t(n, '\0');
    KESTREL_EXPECT_OK(kestrel_engine_request_text(e, id, sample, t.data(), t.size(), &n));
    return t;
  }
  static kestrel_engine_stats_t Stats(kestrel_engine_t* e) {
    kestrel_engine_stats_t st{};
    st.struct_size = sizeof(st);
    KESTREL_EXPECT_OK(kestrel_engine_get_stats(e, &st));
    return st;
  }
  static kestrel_engine_result_t Result(kestrel_engine_t* e, kestrel_request_id_t id,
                                        uint32_t sample = 0) {
    kestrel_engine_result_t r{};
    r.struct_size = sizeof(r);
    KESTREL_EXPECT_OK(kestrel_engine_request_result(e, id, sample, &r));
    return r;
  }

  // The 6 golden prompts and two more, of different lengths.
  std::vector<std::vector<int32_t>> MixedPrompts() {
    std::ifstream f(ModelPath("stories260K.golden.json"));
    nlohmann::json golden = nlohmann::json::parse(f);
    std::vector<std::vector<int32_t>> p;
    for (const auto& c : golden["cases"]) p.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
    p.push_back(Tokenize("Once upon a time, there was a little girl named Lily. She loved to play"));
    p.push_back(Tokenize("Ben"));
    return p;
  }

  RuntimePtr rt_;
  ModelPtr model_;
};

TEST_F(EngineTest, BatchedGreedyEqualsSessionsTokenForToken) {
  const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
  ASSERT_EQ(prompts.size(), 8u);
  // 16-token blocks and the default (2): same tokens, same text.
  for (uint32_t bs : {16u, 2u}) {
    SCOPED_TRACE(::testing::Message() << "block size " << bs);
    // A small step budget, so long prompts are chunked and decodes ride along with prefill chunks.
    EnginePtr e = MakeEngine(0, /*max_batch_tokens=*/12, true, 16, bs);
    std::vector<Stream> streams(prompts.size());
    std::vector<kestrel_request_id_t> ids;
    for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(Submit(e.get(), prompts[i], 48, &streams[i]));
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
    for (size_t i = 0; i < prompts.size(); ++i) {
      SCOPED_TRACE("prompt " + std::to_string(i));
      Collected alone = RunAlone(prompts[i], 48);
      KESTREL_EXPECT_OK(kestrel_engine_wait(e.get(), ids[i], 0));
      EXPECT_EQ(Tokens(e.get(), ids[i]), alone.tokens);
      EXPECT_EQ(streams[i].tokens[0], alone.tokens);
      EXPECT_EQ(streams[i].text[0], alone.text);
      EXPECT_EQ(Text(e.get(), ids[i]), alone.text);
      kestrel_engine_result_t r = Result(e.get(), ids[i]);
      EXPECT_EQ(r.state, KESTREL_REQUEST_FINISHED);
      EXPECT_EQ(r.n_prompt_tokens, prompts[i].size());
    }
    // The golden ids too (the first 6 prompts).
    std::ifstream f(ModelPath("stories260K.golden.json"));
    nlohmann::json golden = nlohmann::json::parse(f);
    for (size_t i = 0; i < 6; ++i) {
      EXPECT_EQ(Tokens(e.get(), ids[i]),
                golden["cases"][i]["generated_ids"].get<std::vector<int32_t>>());
    }
    kestrel_engine_stats_t st = Stats(e.get());
    EXPECT_EQ(st.n_running + st.n_waiting, 0u);
    EXPECT_EQ(st.n_finished, 8u);
    EXPECT_EQ(st.generated_tokens, 8u * 48);
    EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached);  // only evictable prefix-cache blocks left
    // Several sequences per step: far fewer steps than a sequential run would take.
    EXPECT_LT(st.steps, 8u * 48 / 2);
  }
}

TEST_F(EngineTest, F16KvCacheHoldsTwiceTheBlocksAndMatchesF16Sessions) {
  // The same byte budget holds twice the blocks with 2-byte elements.
  EnginePtr e32 = MakeEngine(BlocksBytes(40), 64, true, 16, 16, 128, KESTREL_KV_F32);
  EnginePtr e16 = MakeEngine(BlocksBytes(40), 64, true, 16, 16, 128, KESTREL_KV_F16);
  EXPECT_EQ(Stats(e32.get()).kv_blocks_total, 40u);
  EXPECT_EQ(Stats(e16.get()).kv_blocks_total, 80u);
  // Batched requests on an F16 cache equal F16-cache sessions token for token.
  const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
  std::vector<kestrel_request_id_t> ids;
  for (size_t i = 0; i < 4; ++i) ids.push_back(Submit(e16.get(), prompts[i], 32));
  KESTREL_ASSERT_OK(kestrel_engine_wait(e16.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("prompt " + std::to_string(i));
    EXPECT_EQ(Tokens(e16.get(), ids[i]),
              RunAlone(prompts[i], 32, 0, 0xC0FFEE, 128, KESTREL_KV_F16).tokens);
  }
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  EXPECT_EQ(o.kv_type, KESTREL_KV_F32);  // the default
}

TEST_F(EngineTest, LongPromptPrefilledInChunksEqualsSession) {
  // 8-token steps: the first steps are prefill chunks only (no logits wanted).
  std::vector<int32_t> prompt = Tokenize(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park with her big red ball");
  ASSERT_GT(prompt.size(), 24u);
  EnginePtr e = MakeEngine(0, /*max_batch_tokens=*/8);
  kestrel_request_id_t id = Submit(e.get(), prompt, 20);
  uint32_t active = 1;
  KESTREL_ASSERT_OK(kestrel_engine_step(e.get(), &active));
  EXPECT_EQ(active, 1u);
  EXPECT_EQ(Stats(e.get()).prefill_tokens_computed, 8u);
  EXPECT_EQ(Result(e.get(), id).state, KESTREL_REQUEST_RUNNING);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
  EXPECT_EQ(Tokens(e.get(), id), RunAlone(prompt, 20).tokens);
  EXPECT_EQ(Stats(e.get()).prefill_tokens_computed, prompt.size());
}

TEST_F(EngineTest, SampledRequestsEqualSessionsWithTheSameSeed) {
  const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
  EnginePtr e = MakeEngine();
  std::vector<kestrel_request_id_t> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ids.push_back(Submit(e.get(), prompts[i], 40, nullptr, 0.8f, 1, 0, 77 + i));
  }
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(Tokens(e.get(), ids[i]), RunAlone(prompts[i], 40, 0.8f, 77 + i).tokens) << i;
  }
}

TEST_F(EngineTest, PrefixCacheComputesSharedBlocksOnceWithSameOutputs) {
  // A 40-token shared prefix (2 full blocks of 16) + a different suffix per request.
  std::vector<int32_t> prefix = Tokenize(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park with her big red ball and her dog");
  ASSERT_GE(prefix.size(), 40u);
  prefix.resize(40);
  const char* suffixes[] = {" Tom", " The sun", " One day", " Mom said"};
  std::vector<std::vector<int32_t>> prompts;
  uint64_t total = 0;
  for (const char* s : suffixes) {
    std::vector<int32_t> p = prefix;
    std::vector<int32_t> tail = Tokenize(s, false);
    p.insert(p.end(), tail.begin(), tail.end());
    total += p.size();
    prompts.push_back(p);
  }
  std::vector<std::vector<int32_t>> with(4), without(4);
  for (bool cache : {true, false}) {
    EnginePtr e = MakeEngine(0, 64, cache);
    // The first request alone fills the cache; the other three then run concurrently.
    kestrel_request_id_t first = Submit(e.get(), prompts[0], 24);
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), first, -1));
    std::vector<kestrel_request_id_t> ids = {first};
    for (size_t i = 1; i < 4; ++i) ids.push_back(Submit(e.get(), prompts[i], 24));
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
    kestrel_engine_stats_t st = Stats(e.get());
    for (size_t i = 0; i < 4; ++i) (cache ? with : without)[i] = Tokens(e.get(), ids[i]);
    if (cache) {
      // The 2 shared blocks (32 tokens) are computed by the first request only.
      EXPECT_EQ(st.prefill_tokens_computed, total - 3 * 32);
      EXPECT_EQ(st.prefill_tokens_reused, 3u * 32);
      EXPECT_EQ(st.prefix_cache_hits, 3u * 2);
      EXPECT_GT(st.prefix_cache_hit_rate, 0.0);
      kestrel_engine_result_t r = Result(e.get(), ids[2]);
      EXPECT_EQ(r.n_cached_prompt_tokens, 32u);
    } else {
      EXPECT_EQ(st.prefill_tokens_computed, total);
      EXPECT_EQ(st.prefill_tokens_reused, 0u);
      EXPECT_EQ(st.kv_blocks_used, 0u);  // no cache: everything is free again
    }
  }
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(with[i], without[i]) << i;
    EXPECT_EQ(with[i], RunAlone(prompts[i], 24).tokens) << i;
  }
}

TEST_F(EngineTest, PrefixCacheHitsAcrossBlockAlignedPromptsAndEvictsUnderPressure) {
  // A prompt of exactly 3 blocks: the last block is recomputed (its logits are needed), the first
  // two are reused. Then a small pool forces evictions of cached blocks.
  std::vector<int32_t> p = Tokenize(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park with her big red ball and her dog and her cat and her mom");
  ASSERT_GE(p.size(), 48u);
  p.resize(48);
  EnginePtr e = MakeEngine(BlocksBytes(8));
  kestrel_request_id_t a = Submit(e.get(), p, 8);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), a, -1));
  kestrel_request_id_t b = Submit(e.get(), p, 8);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), b, -1));
  EXPECT_EQ(Tokens(e.get(), a), Tokens(e.get(), b));
  EXPECT_EQ(Result(e.get(), b).n_cached_prompt_tokens, 32u);
  // Other prompts need the blocks: the cached ones are evicted (LRU), nothing fails.
  const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
  for (int round = 0; round < 2; ++round) {
    for (const auto& q : prompts) Submit(e.get(), q, 60);
  }
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  kestrel_engine_stats_t st = Stats(e.get());
  EXPECT_EQ(st.kv_blocks_total, 8u);
  EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached);
}

// kv_waste_fraction = 1 - (slots holding a computed token) / (slots of used blocks), checked
// against lengths known from the outside after every step, for several block sizes: blocks are
// allocated lazily, so a decoding sequence of n computed tokens holds ceil(n / B) blocks.
TEST_F(EngineTest, KvWasteIsTheUnfilledSlotsOfUsedBlocks) {
  {
    kestrel_engine_options_t o;
    kestrel_engine_options_init(&o);
    EXPECT_EQ(o.kv_block_size, 2u);  // the documented default (engine.h, docs/ENGINE.md)
  }
  const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
  for (uint32_t bs : {1u, 2u, 4u, 16u}) {
    SCOPED_TRACE(::testing::Message() << "block size " << bs);
    // No prefix cache (so no two sequences share a block), every prompt prefilled in step 1.
    EnginePtr e = MakeEngine(0, 512, false, 16, bs);
    std::vector<kestrel_request_id_t> ids;
    for (const auto& q : prompts) ids.push_back(Submit(e.get(), q, 40));
    uint32_t active = 1;
    int steps = 0;
    while (active > 0) {
      KESTREL_ASSERT_OK(kestrel_engine_step(e.get(), &active));
      ++steps;
      // A running sequence that has sampled g tokens has computed prompt + g - 1 of them.
      uint64_t blocks = 0, filled = 0;
      for (size_t i = 0; i < prompts.size(); ++i) {
        const kestrel_engine_result_t r = Result(e.get(), ids[i]);
        if (r.stop_reason != KESTREL_STOP_NONE) continue;  // done: its blocks are free
        const uint64_t g = r.n_generated_tokens;
        ASSERT_GE(g, 1u);
        const uint64_t n = prompts[i].size() + g - 1;
        blocks += (n + bs - 1) / bs;
        filled += n;
      }
      const kestrel_engine_stats_t st = Stats(e.get());
      EXPECT_EQ(st.kv_block_size, bs);
      ASSERT_EQ(st.kv_blocks_used, blocks) << "step " << steps;
      const double want = blocks == 0 ? 0.0 : 1.0 - static_cast<double>(filled) / (blocks * bs);
      EXPECT_NEAR(st.kv_waste_fraction, want, 1e-12) << "step " << steps;
      if (bs == 1) {
        EXPECT_EQ(st.kv_waste_fraction, 0.0);
      }
    }
    EXPECT_GT(steps, 2);
    EXPECT_EQ(Stats(e.get()).kv_waste_fraction, 0.0);  // nothing in use
  }

  // Admission reserves every prompt block: during a chunked prefill the reserved slots count.
  std::vector<int32_t> p = prompts[6];
  ASSERT_GT(p.size(), 9u);
  {
    EnginePtr e = MakeEngine(0, 4, false, 16, 4);
    Submit(e.get(), p, 4);
    KESTREL_ASSERT_OK(kestrel_engine_step(e.get(), nullptr));
    const uint64_t slots = (p.size() + 3) / 4 * 4;
    EXPECT_NEAR(Stats(e.get()).kv_waste_fraction, 1.0 - 4.0 / slots, 1e-12);
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  }

  // Fork samples share the prompt's blocks: a shared block counts once. After the prefill both
  // samples hold the same ceil(L / B) blocks; later each has its own blocks past the last full
  // prompt block (the partial one copied on write).
  {
    const uint32_t bs = 4;
    p.resize(9);  // 2 full blocks + 1 token
    EnginePtr e = MakeEngine(0, 512, false, 16, bs);
    const kestrel_request_id_t id = Submit(e.get(), p, 12, nullptr, 1.0f, 2);
    KESTREL_ASSERT_OK(kestrel_engine_step(e.get(), nullptr));
    EXPECT_EQ(Stats(e.get()).kv_blocks_used, 3u);
    EXPECT_NEAR(Stats(e.get()).kv_waste_fraction, 1.0 - 9.0 / 12.0, 1e-12);
    for (int step = 2; step <= 6; ++step) {
      KESTREL_ASSERT_OK(kestrel_engine_step(e.get(), nullptr));
      const kestrel_engine_result_t r0 = Result(e.get(), id, 0), r1 = Result(e.get(), id, 1);
      // A sample that ended (EOS) freed its blocks: the shapes below no longer hold.
      if (r0.stop_reason != KESTREL_STOP_NONE || r1.stop_reason != KESTREL_STOP_NONE) break;
      const uint64_t full = 8;  // tokens in the shared full blocks
      uint64_t blocks = full / bs, filled = full;
      for (const kestrel_engine_result_t& r : {r0, r1}) {
        const uint64_t n = p.size() + r.n_generated_tokens - 1;
        blocks += (n - full + bs - 1) / bs;
        filled += n - full;
      }
      const kestrel_engine_stats_t st = Stats(e.get());
      EXPECT_EQ(st.kv_blocks_used, blocks) << "step " << step;
      EXPECT_NEAR(st.kv_waste_fraction, 1.0 - static_cast<double>(filled) / (blocks * bs), 1e-12)
          << "step " << step;
    }
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  }

  // With the prefix cache, blocks only the cache holds are full: no waste once all are done.
  {
    EnginePtr e = MakeEngine(0, 512, true, 16, 4);
    for (const auto& q : prompts) Submit(e.get(), q, 20);
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
    const kestrel_engine_stats_t st = Stats(e.get());
    EXPECT_GT(st.kv_blocks_cached, 0u);
    EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached);
    EXPECT_EQ(st.kv_waste_fraction, 0.0);
  }
}

TEST_F(EngineTest, ForkSamplesShareThePromptCopyOnWrite) {
  // A 21-token prompt: one full block + a partially filled block that the 3 samples share and
  // copy on their first write.
  std::vector<int32_t> prompt =
      Tokenize("Once upon a time, there was a little girl named Lily. She loved to play");
  ASSERT_GT(prompt.size() % 16, 0u);
  for (bool cache : {true, false}) {
    SCOPED_TRACE(cache ? "prefix cache on" : "prefix cache off");
    EnginePtr e = MakeEngine(0, 64, cache);
    Stream s3, s1;
    kestrel_request_id_t three = Submit(e.get(), prompt, 30, &s3, 0.0f, 3);
    // Step once: the prompt is prefilled once for all 3 samples.
    uint32_t active = 0;
    KESTREL_ASSERT_OK(kestrel_engine_step(e.get(), &active));
    kestrel_engine_stats_t st = Stats(e.get());
    EXPECT_EQ(st.prefill_tokens_computed, prompt.size());
    const uint32_t prompt_blocks = (static_cast<uint32_t>(prompt.size()) + 15) / 16;
    EXPECT_EQ(st.kv_blocks_used, prompt_blocks);  // shared, not 3 copies
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), three, -1));
    kestrel_request_id_t one = Submit(e.get(), prompt, 30, &s1, 0.0f, 1);
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), one, -1));
    const std::vector<int32_t> alone = RunAlone(prompt, 30).tokens;
    // Greedy: all samples equal each other, n=1, and a session; the shared prefix KV was not
    // corrupted by the copies.
    EXPECT_EQ(Tokens(e.get(), one), alone);
    for (uint32_t k = 0; k < 3; ++k) {
      EXPECT_EQ(Tokens(e.get(), three, k), alone) << "sample " << k;
      EXPECT_EQ(s3.tokens[k], alone) << "sample " << k;
    }
    EXPECT_EQ(Result(e.get(), three).n_samples, 3u);
  }

  // Sampled with different seeds: sample k equals a session with seed + k, and sample 0 of
  // n=3 equals n=1.
  EnginePtr e = MakeEngine();
  kestrel_request_id_t three = Submit(e.get(), prompt, 40, nullptr, 0.9f, 3, 0, 500);
  kestrel_request_id_t one = Submit(e.get(), prompt, 40, nullptr, 0.9f, 1, 0, 500);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  EXPECT_EQ(Tokens(e.get(), three, 0), Tokens(e.get(), one));
  std::vector<std::vector<int32_t>> samples;
  for (uint32_t k = 0; k < 3; ++k) {
    samples.push_back(Tokens(e.get(), three, k));
    EXPECT_EQ(samples.back(), RunAlone(prompt, 40, 0.9f, 500 + k).tokens) << "sample " << k;
  }
  EXPECT_NE(samples[0], samples[1]);
  EXPECT_EQ(Stats(e.get()).kv_blocks_used, Stats(e.get()).kv_blocks_cached);
}

TEST_F(EngineTest, PreemptionByRecomputeKeepsOutputsIdentical) {
  const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
  // 8 requests of up to 13 + 80 tokens (6 blocks each alone) in a pool of 12 blocks.
  for (bool cache : {false, true}) {
    SCOPED_TRACE(cache ? "prefix cache on" : "prefix cache off");
    EnginePtr e = MakeEngine(BlocksBytes(12), 64, cache);
    std::vector<Stream> streams(prompts.size());
    std::vector<kestrel_request_id_t> ids;
    for (size_t i = 0; i < prompts.size(); ++i) {
      // Mixed priorities: higher first, so later arrivals can preempt.
      ids.push_back(Submit(e.get(), prompts[i], 80, &streams[i], 0.0f, 1,
                           static_cast<int32_t>(i % 3)));
    }
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
    kestrel_engine_stats_t st = Stats(e.get());
    EXPECT_GT(st.preemptions, 0u);
    uint32_t preempted = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      Collected alone = RunAlone(prompts[i], 80);
      EXPECT_EQ(Tokens(e.get(), ids[i]), alone.tokens) << i;
      // The stream continued seamlessly: no token repeated or lost.
      EXPECT_EQ(streams[i].tokens[0], alone.tokens) << i;
      EXPECT_EQ(streams[i].text[0], alone.text) << i;
      preempted += Result(e.get(), ids[i]).n_preemptions;
    }
    EXPECT_EQ(preempted, st.preemptions);
    EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached);
    if (!cache) {
      EXPECT_EQ(st.kv_blocks_used, 0u);
    }
  }
}

TEST_F(EngineTest, RequestLargerThanThePoolFailsWithTheNumbers) {
  EnginePtr e = MakeEngine(BlocksBytes(4));
  std::vector<int32_t> prompt = MixedPrompts()[6];  // 21 tokens
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.max_new_tokens = 100;
  kestrel_request_id_t id = 0;
  StatusPtr s(kestrel_engine_submit_tokens(e.get(), prompt.data(), prompt.size(), &ro, &id));
  ASSERT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_RESOURCE_EXHAUSTED);
  const std::string msg = kestrel_status_message(s.get());
  const size_t tokens = prompt.size() + 99;  // the last generated token is never computed
  EXPECT_NE(msg.find("needs " + std::to_string(tokens) + " tokens"), std::string::npos) << msg;
  EXPECT_NE(msg.find("= " + std::to_string((tokens + 15) / 16) + " blocks of 16 tokens"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("the pool has 4 blocks"), std::string::npos) << msg;
  EXPECT_NE(msg.find("block size 16"), std::string::npos) << msg;
  EXPECT_EQ(id, 0u);  // out-param untouched
  // One that fits alone works in the same engine.
  ro.max_new_tokens = 40;
  KESTREL_ASSERT_OK(kestrel_engine_submit_tokens(e.get(), prompt.data(), prompt.size(), &ro, &id));
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
}

// A text prompt's control-token texts become tokens only with parse_special (appended in 0.2).
TEST_F(EngineTest, ParseSpecialTurnsControlTextIntoTokens) {
  EnginePtr e = MakeEngine();
  const std::string text = "Once upon a time</s>";
  uint32_t n_prompt[2] = {0, 0};
  for (const uint64_t parse : {0u, 1u}) {
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = 1;
    ro.parse_special = parse;
    kestrel_request_id_t id = 0;
    KESTREL_ASSERT_OK(kestrel_engine_submit(e.get(), text.data(), text.size(), &ro, &id));
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
    kestrel_engine_result_t r{};
    r.struct_size = sizeof(r);
    KESTREL_ASSERT_OK(kestrel_engine_request_result(e.get(), id, 0, &r));
    n_prompt[parse] = r.n_prompt_tokens;
  }
  // BOS + "Once upon a time" (4) + EOS as one token, against "</s>" spelled in several pieces.
  EXPECT_EQ(n_prompt[1], 6u);
  EXPECT_GT(n_prompt[0], n_prompt[1]);
}

bool CancelAfterFive(void* user, kestrel_request_id_t id, uint32_t, int32_t token, const char*,
                     size_t) {
  auto* ctx = static_cast<std::pair<kestrel_engine_t*, int>*>(user);
  if (token != KESTREL_TOKEN_NONE && ++ctx->second == 5) {
    // From inside the callback: cancel is allowed, step and wait are not.
    StatusPtr c(kestrel_engine_cancel(ctx->first, id));
    EXPECT_EQ(c, nullptr);
    StatusPtr s(kestrel_engine_step(ctx->first, nullptr));
    EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_FAILED_PRECONDITION);
    StatusPtr w(kestrel_engine_wait(ctx->first, id, 0));
    EXPECT_EQ(kestrel_status_code(w.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  }
  return true;
}

TEST_F(EngineTest, CancelMidStreamFreesEveryBlock) {
  for (bool cache : {false, true}) {
    SCOPED_TRACE(cache ? "prefix cache on" : "prefix cache off");
    EnginePtr e = MakeEngine(0, 64, cache);
    const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
    std::pair<kestrel_engine_t*, int> ctx{e.get(), 0};
    kestrel_sampler_options_t so;
    kestrel_sampler_options_init(&so);
    so.temperature = 0;
    kestrel_engine_request_options_t ro;
    kestrel_engine_request_options_init(&ro);
    ro.max_new_tokens = 100;
    ro.sampler = &so;
    ro.n = 2;
    ro.on_token = &CancelAfterFive;
    ro.user_data = &ctx;
    kestrel_request_id_t victim = 0;
    KESTREL_ASSERT_OK(kestrel_engine_submit_tokens(e.get(), prompts[6].data(), prompts[6].size(),
                                                   &ro, &victim));
    kestrel_request_id_t other = Submit(e.get(), prompts[0], 20);
    kestrel_request_id_t queued = Submit(e.get(), prompts[1], 20);
    StatusPtr c(kestrel_engine_cancel(e.get(), queued));  // cancelled before it ever ran
    EXPECT_EQ(c, nullptr);
    StatusPtr w(kestrel_engine_wait(e.get(), victim, -1));
    EXPECT_EQ(kestrel_status_code(w.get()), KESTREL_STATUS_CANCELLED);
    KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), other, -1));
    StatusPtr wq(kestrel_engine_wait(e.get(), queued, -1));
    EXPECT_EQ(kestrel_status_code(wq.get()), KESTREL_STATUS_CANCELLED);
    kestrel_engine_result_t r = Result(e.get(), victim);
    EXPECT_EQ(r.state, KESTREL_REQUEST_CANCELLED);
    EXPECT_EQ(r.stop_reason, KESTREL_STOP_CANCELLED);
    EXPECT_LT(r.n_generated_tokens, 10u);
    EXPECT_EQ(Result(e.get(), queued).n_generated_tokens, 0u);
    kestrel_engine_stats_t st = Stats(e.get());
    EXPECT_EQ(st.n_running + st.n_waiting, 0u);
    EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_cached);
    if (!cache) {
      EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total);
    }
    // Cancelling a done request is a no-op; released ids are unknown.
    KESTREL_ASSERT_OK(kestrel_engine_cancel(e.get(), victim));
    KESTREL_ASSERT_OK(kestrel_engine_release_request(e.get(), victim));
    StatusPtr gone(kestrel_engine_cancel(e.get(), victim));
    EXPECT_EQ(kestrel_status_code(gone.get()), KESTREL_STATUS_NOT_FOUND);
  }
}

TEST_F(EngineTest, ReleasingARunningRequestCancelsIt) {
  EnginePtr e = MakeEngine(0, 64, false);
  kestrel_request_id_t id = Submit(e.get(), MixedPrompts()[0], 100);
  KESTREL_ASSERT_OK(kestrel_engine_step(e.get(), nullptr));
  KESTREL_ASSERT_OK(kestrel_engine_release_request(e.get(), id));
  StatusPtr gone(kestrel_engine_wait(e.get(), id, 0));
  EXPECT_EQ(kestrel_status_code(gone.get()), KESTREL_STATUS_NOT_FOUND);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, -1));
  EXPECT_EQ(Stats(e.get()).kv_blocks_used, 0u);
}

TEST_F(EngineTest, EngineThreadServesSubmissionsFromManyThreads) {
  EnginePtr e = MakeEngine(BlocksBytes(24), 32);
  KESTREL_ASSERT_OK(kestrel_engine_start(e.get()));
  KESTREL_ASSERT_OK(kestrel_engine_start(e.get()));  // no-op
  StatusPtr manual(kestrel_engine_step(e.get(), nullptr));
  EXPECT_EQ(kestrel_status_code(manual.get()), KESTREL_STATUS_FAILED_PRECONDITION);
  const std::vector<std::vector<int32_t>> prompts = MixedPrompts();
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(RunAlone(p, 32).tokens);
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < prompts.size() * 2; i += kThreads) {
        const size_t k = i % prompts.size();
        kestrel_request_id_t id = Submit(e.get(), prompts[k], 32);
        StatusPtr w(kestrel_engine_wait(e.get(), id, 60000));
        if (w != nullptr || Tokens(e.get(), id) != expected[k]) ++failures;
        StatusPtr r(kestrel_engine_release_request(e.get(), id));
        if (r != nullptr) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), KESTREL_ENGINE_ALL_REQUESTS, 60000));
  kestrel_engine_stop(e.get());
  kestrel_engine_stop(e.get());  // no-op
  // Caller-driven again after stop.
  kestrel_request_id_t id = Submit(e.get(), prompts[0], 8);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
  EXPECT_EQ(Stats(e.get()).n_finished, prompts.size() * 2 + 1);
}

TEST_F(EngineTest, DestroyWithWorkInFlightIsClean) {
  EnginePtr e = MakeEngine(BlocksBytes(16), 16);
  for (const auto& p : MixedPrompts()) Submit(e.get(), p, 100, nullptr, 0.8f, 2);
  KESTREL_ASSERT_OK(kestrel_engine_start(e.get()));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  e.reset();  // stops the thread, drops every request; ASan checks for leaks
}

TEST_F(EngineTest, StopStringsAndEosBehaveLikeSessions) {
  std::vector<int32_t> prompt = MixedPrompts()[0];
  Collected alone = RunAlone(prompt, 48);
  ASSERT_GT(alone.text.size(), 20u);
  const std::string stop = alone.text.substr(10, 4);
  const std::string before_stop = alone.text.substr(0, alone.text.find(stop));
  EnginePtr e = MakeEngine();
  kestrel_sampler_options_t so;
  kestrel_sampler_options_init(&so);
  so.temperature = 0;
  const char* stops[] = {stop.c_str()};
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.max_new_tokens = 48;
  ro.sampler = &so;
  ro.stop_strings = stops;
  ro.n_stop_strings = 1;
  Stream s;
  ro.on_token = &Stream::OnToken;
  ro.user_data = &s;
  kestrel_request_id_t id = 0;
  KESTREL_ASSERT_OK(kestrel_engine_submit_tokens(e.get(), prompt.data(), prompt.size(), &ro, &id));
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
  EXPECT_EQ(Result(e.get(), id).stop_reason, KESTREL_STOP_STOP_STRING);
  EXPECT_EQ(s.text[0], before_stop);
  EXPECT_EQ(Text(e.get(), id), before_stop);
  // A text prompt with BOS gives the same as its tokens.
  kestrel_request_id_t id2 = 0;
  ro.n_stop_strings = 0;
  ro.on_token = nullptr;
  KESTREL_ASSERT_OK(kestrel_engine_submit(e.get(), "Once upon a time", 16, &ro, &id2));
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id2, -1));
  EXPECT_EQ(Tokens(e.get(), id2), alone.tokens);
}

TEST_F(EngineTest, ContextFullMatchesSessions) {
  std::vector<int32_t> prompt = MixedPrompts()[6];
  const uint32_t ctx = static_cast<uint32_t>(prompt.size()) + 10;
  Collected alone = RunAlone(prompt, 100, 0, 0xC0FFEE, ctx);
  EnginePtr e = MakeEngine(0, 64, true, 4, 16, ctx);
  kestrel_request_id_t id = Submit(e.get(), prompt, 100);
  KESTREL_ASSERT_OK(kestrel_engine_wait(e.get(), id, -1));
  EXPECT_EQ(Tokens(e.get(), id), alone.tokens);
  EXPECT_EQ(Result(e.get(), id).stop_reason, KESTREL_STOP_CONTEXT_FULL);
}

TEST_F(EngineTest, BadInputNamesTheArgument) {
  kestrel_engine_options_t o;
  kestrel_engine_options_init(&o);
  kestrel_engine_t* e = nullptr;
  o.kv_block_size = 24;
  StatusPtr s(kestrel_engine_create(model_.get(), &o, &e));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("kv_block_size = 24"), std::string::npos);
  o.kv_block_size = 16;
  o.kv_type = 2;
  s.reset(kestrel_engine_create(model_.get(), &o, &e));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("options->kv_type = 2"), std::string::npos)
      << kestrel_status_message(s.get());
  o.kv_type = KESTREL_KV_F32;
  o.struct_size = 3;
  s.reset(kestrel_engine_create(model_.get(), &o, &e));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  s.reset(kestrel_engine_create(nullptr, nullptr, &e));
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("model is NULL"), std::string::npos);
  EXPECT_EQ(e, nullptr);

  EnginePtr eng = MakeEngine();
  kestrel_request_id_t id = 0;
  s.reset(kestrel_engine_submit(eng.get(), "", 0, nullptr, &id));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  const int32_t bad[] = {1, 9999};
  s.reset(kestrel_engine_submit_tokens(eng.get(), bad, 2, nullptr, &id));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_OUT_OF_RANGE);
  kestrel_engine_request_options_t ro;
  kestrel_engine_request_options_init(&ro);
  ro.n = 0;
  s.reset(kestrel_engine_submit(eng.get(), "Hi", 2, &ro, &id));
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("options->n = 0"), std::string::npos);
  std::vector<int32_t> long_prompt(200, 5);
  s.reset(kestrel_engine_submit_tokens(eng.get(), long_prompt.data(), 200, nullptr, &id));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(id, 0u);
  s.reset(kestrel_engine_wait(eng.get(), 12345, 0));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_NOT_FOUND);
  kestrel_engine_result_t r{};
  r.struct_size = sizeof(r);
  s.reset(kestrel_engine_request_result(eng.get(), 12345, 0, &r));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_NOT_FOUND);
  id = Submit(eng.get(), MixedPrompts()[0], 4);
  s.reset(kestrel_engine_request_result(eng.get(), id, 1, &r));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_OUT_OF_RANGE);
  // A waiting request times out without the engine thread only if steps cannot finish it.
  KESTREL_ASSERT_OK(kestrel_engine_wait(eng.get(), id, 60000));
  kestrel_engine_stats_t st{};
  st.struct_size = 2;
  s.reset(kestrel_engine_get_stats(eng.get(), &st));
  EXPECT_EQ(kestrel_status_code(s.get()), KESTREL_STATUS_INVALID_ARGUMENT);
  s.reset(kestrel_engine_step(nullptr, nullptr));
  EXPECT_NE(std::string(kestrel_status_message(s.get())).find("engine is NULL"), std::string::npos);
  kestrel_engine_destroy(nullptr);
  kestrel_engine_stop(nullptr);
}

}  // namespace
}  // namespace kestrel::testing
