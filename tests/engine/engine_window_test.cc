// Sliding-window KV in the engine (issue 12): over gemma3-tiny (window 8 on layers 0 and 1, layer
// 2 global) on the reference plugin, the engine keeps the local layers' KV in a pool of its own
// whose use per sequence stops growing at the window (steps capped at one window), while its
// greedy ids equal sessions' (which trim too) and an engine that keeps every position
// (EngineConfig::window_kv = false), for contexts ~10x the window: concurrent sequences with
// chunked prefill, forks sharing window blocks copy-on-write, preemption by KV swap and by
// recompute, and speculative verify steps; prefix-cache hits restore the window layers' rows (the
// cache keeps their blocks while the pools have room, gives them up under pressure, and a hit
// goes only as far as they are held). Label `engine`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hal/src/plugin_registry.h"
#include "runtime/engine/engine.h"
#include "runtime/kv_cache/window_tables.h"
#include "runtime/model/model.h"
#include "runtime/session/session.h"
#include "tests/arch/arch_test_util.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

namespace kestrel::testing {
namespace {

constexpr uint32_t kWindow = 8, kBlock = 4, kContext = 256;
// Window 8, steps of at most 8 tokens: positions [n - 7, n + 8) span at most 5 blocks of 4.
constexpr uint32_t kWindowBlocksPerSeq = 5;
constexpr uint32_t kTop = 4;

std::vector<int32_t> Prompt(uint32_t n, uint32_t salt) {
  std::vector<int32_t> p(n);
  for (uint32_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>((i * 37 + salt * 101 + 5) % 500);
  return p;
}

struct Req {
  std::vector<int32_t> prompt;
  uint32_t max_new = 40;
  uint32_t n = 1;
  float temperature = 0.0f;
  runtime::SpecMethod spec = runtime::SpecMethod::kOff;
  uint32_t wave = 0;  // submitted once every request of the earlier waves has finished
};

struct Served {
  std::vector<std::vector<std::vector<int32_t>>> tokens;  // [request][sample]
  // Per generated token, the log-probabilities of the kTop likeliest tokens (the model is very
  // sure of its first choice, so the runners-up are what shows an error in the attention).
  std::vector<std::vector<std::vector<float>>> logprobs;  // [request][sample][token * kTop + k]
  runtime::EngineStats stats;
  // ceil(blocks used by sequences / sequences running), worst step (the prefix cache's own
  // window blocks do not count).
  uint32_t max_window_blocks_per_running_seq = 0;
  std::vector<uint32_t> cached_prompt_tokens;  // per request: prompt tokens the cache gave
  uint64_t drafted = 0;  // speculative decoding: draft tokens verified, over the requests
};

// Same shape, and every log-probability within `tol` (the trimmed KV holds the same values, so
// the reference plugin gives the same logits up to summation order).
void ExpectSameLogprobs(const Served& a, const Served& b, double tol = 1e-3) {
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size());
  for (size_t r = 0; r < a.logprobs.size(); ++r) {
    ASSERT_EQ(a.logprobs[r].size(), b.logprobs[r].size());
    for (size_t s = 0; s < a.logprobs[r].size(); ++s) {
      ASSERT_EQ(a.logprobs[r][s].size(), b.logprobs[r][s].size()) << "request " << r << " sample " << s;
      for (size_t i = 0; i < a.logprobs[r][s].size(); ++i) {
        EXPECT_NEAR(a.logprobs[r][s][i], b.logprobs[r][s][i], tol)
            << "request " << r << " sample " << s << " token " << i / kTop << " rank " << i % kTop;
      }
    }
  }
}

class EngineWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = SynthModel("gemma3-tiny");
    registry_ = hal::PluginRegistry::Create(PluginDir() + "/libkestrel_plugin_ref.so", nullptr);
    ref_ = registry_->ReferenceDevice();
    ASSERT_NE(ref_, nullptr);
    auto m = runtime::Model::Load(path_, ref_, {});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    ASSERT_EQ(model_->config().layers[0].sliding_window, kWindow);
    ASSERT_EQ(model_->config().layers[2].sliding_window, 0u);
  }

  runtime::EngineConfig Config(bool window_kv) const {
    runtime::EngineConfig c;
    c.context_length = kContext;
    c.block_size = kBlock;
    c.max_sequences = 4;
    c.max_batch_tokens = 64;
    c.window_kv = window_kv;
    return c;
  }

  // Submits the requests wave by wave (stepping until idle after each) and checks the window
  // pools' use after each step.
  Served Serve(const runtime::EngineConfig& config, const std::vector<Req>& reqs) {
    Served out;
    auto e = runtime::Engine::Create(model_.get(), nullptr, config);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return out;
    runtime::Engine& engine = **e;
    std::vector<uint64_t> ids(reqs.size(), 0);
    out.logprobs.resize(reqs.size());
    uint32_t last_wave = 0;
    for (const Req& r : reqs) last_wave = std::max(last_wave, r.wave);
    for (uint32_t wave = 0; wave <= last_wave; ++wave) {
      if (!SubmitWave(engine, reqs, wave, &ids, &out) || !StepUntilIdle(engine, reqs, ids, &out)) return out;
    }
    for (uint64_t id : ids) {
      auto res = engine.Result(id);
      EXPECT_TRUE(res.ok()) << res.status();
      if (!res.ok()) return out;
      EXPECT_EQ(res->state, runtime::RequestState::kFinished) << res->status;
      std::vector<std::vector<int32_t>> samples;
      for (const auto& s : res->samples) samples.push_back(s.tokens);
      out.tokens.push_back(samples);
      out.drafted += res->spec.drafted;
      out.cached_prompt_tokens.push_back(res->n_cached_prompt_tokens);
    }
    out.stats = engine.Stats();
    EXPECT_EQ(out.stats.kv_window_blocks_used, out.stats.kv_window_blocks_cached)
        << "blocks left to sequences after every request ended";
    return out;
  }

  bool SubmitWave(runtime::Engine& engine, const std::vector<Req>& reqs, uint32_t wave,
                  std::vector<uint64_t>* ids, Served* served) {
    Served& out = *served;
    for (size_t r = 0; r < reqs.size(); ++r) {
      if (reqs[r].wave != wave) continue;
      out.logprobs[r].resize(reqs[r].n);
      runtime::EngineRequest q;
      q.prompt = reqs[r].prompt;
      q.max_new_tokens = reqs[r].max_new;
      q.n = reqs[r].n;
      q.sampler.temperature = reqs[r].temperature;
      q.sampler.top_k = 0;
      q.sampler.top_p = 1.0f;
      q.sampler.min_p = 0.0f;
      // Hot sampling (the synthetic model is sure of its first choice) would end early on EOS.
      const int32_t eos = model_->tokenizer().eos_id();
      if (reqs[r].temperature > 0 && eos >= 0) q.sampler.logit_bias = {{eos, -INFINITY}};
      q.sampler.seed = 11 + static_cast<uint64_t>(r);
      q.spec.method = reqs[r].spec;
      q.n_probs = kTop;
      q.on_logprobs = [&out, r](uint64_t, uint32_t sample, const runtime::TokenLogprobs& lp) {
        for (uint32_t k = 0; k < kTop; ++k) {
          out.logprobs[r][sample].push_back(k < lp.top.size() ? lp.top[k].logprob : 0.0f);
        }
      };
      auto id = engine.Submit(std::move(q));
      EXPECT_TRUE(id.ok()) << id.status();
      if (!id.ok()) return false;
      (*ids)[r] = *id;
    }
    return true;
  }

  bool StepUntilIdle(runtime::Engine& engine, const std::vector<Req>& reqs,
                     const std::vector<uint64_t>& ids, Served* out) {
    uint32_t n_active = 1;
    for (int step = 0; n_active > 0 && step < 10000; ++step) {
      absl::Status s = engine.Step(&n_active);
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) return false;
      const runtime::EngineStats st = engine.Stats();
      EXPECT_LE(st.kv_window_blocks_used, st.kv_window_blocks_total);
      EXPECT_LE(st.kv_window_blocks_cached, st.kv_window_blocks_used);
      // Sequences holding KV: every sample of a running request (forks share, so this bounds).
      uint32_t seqs = 0;
      for (size_t r = 0; r < ids.size(); ++r) {
        if (ids[r] == 0) continue;
        auto res = engine.Result(ids[r]);
        if (res.ok() && res->state == runtime::RequestState::kRunning) seqs += reqs[r].n;
      }
      if (seqs > 0) {
        const uint32_t by_seqs = st.kv_window_blocks_used - st.kv_window_blocks_cached;
        out->max_window_blocks_per_running_seq =
            std::max(out->max_window_blocks_per_running_seq, (by_seqs + seqs - 1) / seqs);
      }
    }
    EXPECT_EQ(n_active, 0u);
    return n_active == 0;
  }

  // A session's greedy ids (it trims its window layers too), up to end of generation, and the
  // top log-probabilities of each step (*top, as Served::logprobs).
  std::vector<int32_t> SessionGreedy(const std::vector<int32_t>& prompt, uint32_t max_new,
                                     std::vector<float>* top) {
    runtime::SessionConfig c;
    c.context_length = kContext;
    c.block_size = kBlock;
    c.sampler.temperature = 0.0f;
    auto s = runtime::Session::Create(model_.get(), nullptr, c);
    EXPECT_TRUE(s.ok()) << s.status();
    std::vector<int32_t> ids;
    if (!s.ok() || !(*s)->Decode(prompt).ok()) return ids;
    for (uint32_t i = 0; i < max_new; ++i) {
      const std::vector<float>& logits = (*s)->logits();
      const int32_t next = ArgMax(logits);
      if (model_->tokenizer().IsEndOfGeneration(next)) break;
      double sum = 0;
      for (float l : logits) sum += std::exp(double{l} - logits[next]);
      std::vector<float> sorted = logits;
      std::partial_sort(sorted.begin(), sorted.begin() + kTop, sorted.end(), std::greater<float>());
      for (uint32_t k = 0; k < kTop; ++k) {
        top->push_back(static_cast<float>(sorted[k] - logits[next] - std::log(sum)));
      }
      ids.push_back(next);
      if (i + 1 < max_new && !(*s)->Decode({&next, 1}).ok()) break;
    }
    return ids;
  }

  std::string path_;
  std::unique_ptr<hal::PluginRegistry> registry_;
  hal::Device* ref_ = nullptr;
  std::unique_ptr<runtime::Model> model_;
};

TEST_F(EngineWindowTest, WindowPoolStopsGrowingAndGreedyIdsMatchSessionsAndUntrimmed) {
  {
    auto e = runtime::Engine::Create(model_.get(), nullptr, Config(true));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ((*e)->n_window_groups(), 1u) << "layers 0 and 1 share window 8";
    EXPECT_EQ((*e)->max_step(), kWindow);
    EXPECT_EQ((*e)->Stats().kv_window_blocks_total, 4 * kWindowBlocksPerSeq);
    EXPECT_EQ((*e)->Stats().kv_window_step_tokens, kWindow);
    EXPECT_GT((*e)->Stats().kv_window_bytes, 0u);
    // The persistent prefix cache does not carry the window pools: refused, nothing written.
    ScopedTempDir dir("engine_window");
    const std::string file = dir.File("cache.kprefix");
    EXPECT_EQ((*e)->SavePrefixCache(file).code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_FALSE(FileExists(file));
    EXPECT_EQ((*e)->LoadPrefixCache(file).status().code(), absl::StatusCode::kFailedPrecondition);
    auto full = runtime::Engine::Create(model_.get(), nullptr, Config(false));
    ASSERT_TRUE(full.ok()) << full.status();
    EXPECT_EQ((*full)->n_window_groups(), 0u);
    EXPECT_EQ((*full)->max_step(), 0u);
  }
  // Prompts up to 7.5 windows (prefilled in window-sized chunks next to the others' decodes),
  // contexts up to ~12 windows.
  const std::vector<Req> reqs = {{Prompt(60, 1)}, {Prompt(37, 2)}, {Prompt(5, 3)}};
  const Served trimmed = Serve(Config(true), reqs);
  const Served full = Serve(Config(false), reqs);
  ASSERT_EQ(trimmed.tokens.size(), reqs.size());
  ASSERT_EQ(full.tokens.size(), reqs.size());
  for (size_t r = 0; r < reqs.size(); ++r) {
    SCOPED_TRACE(r);
    EXPECT_EQ(trimmed.tokens[r][0], full.tokens[r][0]);
    EXPECT_EQ(trimmed.logprobs[r][0].size(), trimmed.tokens[r][0].size() * kTop);
    std::vector<float> top;
    EXPECT_EQ(trimmed.tokens[r][0], SessionGreedy(reqs[r].prompt, reqs[r].max_new, &top));
    ASSERT_EQ(top.size(), trimmed.logprobs[r][0].size());
    for (size_t i = 0; i < top.size(); ++i) {
      EXPECT_NEAR(top[i], trimmed.logprobs[r][0][i], 1e-3) << "token " << i / kTop << " rank " << i % kTop;
    }
    EXPECT_GE(trimmed.tokens[r][0].size(), 20u) << "too short to leave the window behind";
  }
  ExpectSameLogprobs(trimmed, full);
  EXPECT_LE(trimmed.max_window_blocks_per_running_seq, kWindowBlocksPerSeq);
  EXPECT_GE(trimmed.stats.kv_window_blocks_peak, 3 * 2u) << "three sequences each held a window";
  // The peak counts the prefix cache's window blocks too (it fills the pools' spare room).
  EXPECT_LE(trimmed.stats.kv_window_blocks_peak, trimmed.stats.kv_window_blocks_total);
  EXPECT_EQ(full.stats.kv_window_blocks_total, 0u);
  // The prefix cache is on either way (it computed nothing twice here: no hits).
  EXPECT_GT(trimmed.stats.prefix_cache_lookups, 0u);
  EXPECT_GT(full.stats.prefix_cache_lookups, 0u);
}

TEST_F(EngineWindowTest, PrefixCacheHitsRestoreWindowRowsExactly) {
  // Wave 0 computes a 40-token prompt and 16 tokens past it (the sequence itself drops its window
  // blocks behind it; the cache keeps them). Later waves share 36, 24 and 52 of its tokens (the
  // last reaching into what it generated, read back from the first run), then four sequences
  // fill the window pools (the cache's window blocks give way) and the first prompt comes again.
  // Every hit must give the ids and log-probabilities of an engine without a prefix cache.
  const std::vector<int32_t> base = Prompt(40, 1);
  runtime::EngineConfig nocache = Config(true);
  nocache.prefix_cache = false;
  const Served first = Serve(nocache, {{base, 16}});
  ASSERT_EQ(first.tokens.size(), 1u);
  ASSERT_EQ(first.tokens[0][0].size(), 16u);
  std::vector<int32_t> deep = base;
  deep.insert(deep.end(), first.tokens[0][0].begin(), first.tokens[0][0].begin() + 13);
  std::vector<int32_t> fork = base;
  fork.resize(24);
  for (int32_t t : Prompt(9, 9)) fork.push_back(t);
  std::vector<Req> reqs = {{base, 16, 1, 0.0f, runtime::SpecMethod::kOff, 0},
                           {base, 8, 1, 0.0f, runtime::SpecMethod::kOff, 1},
                           {fork, 8, 1, 0.0f, runtime::SpecMethod::kOff, 2},
                           {deep, 8, 1, 0.0f, runtime::SpecMethod::kOff, 3}};
  for (uint32_t i = 0; i < 4; ++i) reqs.push_back({Prompt(24, 20 + i), 16, 1, 0.0f, runtime::SpecMethod::kOff, 4});
  reqs.push_back({base, 8, 1, 0.0f, runtime::SpecMethod::kOff, 5});
  const Served cached = Serve(Config(true), reqs);
  const Served plain = Serve(nocache, reqs);
  ASSERT_EQ(cached.tokens.size(), reqs.size());
  ASSERT_EQ(plain.tokens.size(), reqs.size());
  EXPECT_EQ(cached.tokens, plain.tokens);
  ExpectSameLogprobs(cached, plain);
  EXPECT_EQ(cached.tokens[0][0], first.tokens[0][0]);
  // Prompt tokens reused: all full blocks before the last token (9 of 4), the shared 6 blocks,
  // and 13 of the deep prompt's 53 tokens' 13 full blocks before its last.
  EXPECT_EQ(cached.cached_prompt_tokens[1], 36u);
  EXPECT_EQ(cached.cached_prompt_tokens[2], 24u);
  EXPECT_EQ(cached.cached_prompt_tokens[3], 52u);
  std::printf("after the pools filled: %u prompt tokens reused\n", cached.cached_prompt_tokens[8]);
  EXPECT_LT(cached.cached_prompt_tokens[8], 36u) << "the full pools took the cache's window blocks";
  EXPECT_GT(cached.stats.prefill_tokens_reused, 0u);
  EXPECT_EQ(plain.stats.prefill_tokens_reused, 0u);
  EXPECT_LE(cached.max_window_blocks_per_running_seq, kWindowBlocksPerSeq);
  EXPECT_GT(cached.stats.kv_window_blocks_cached, 0u);
}

TEST_F(EngineWindowTest, ForksShareWindowBlocksCopyOnWrite) {
  // 21 tokens: the last prompt block (in group 0 and in the window group) is partial and shared
  // by the three samples until each writes into it.
  const std::vector<Req> reqs = {{Prompt(21, 4), 36, 3, 50.0f}, {Prompt(13, 5), 30, 1, 50.0f}};
  const Served trimmed = Serve(Config(true), reqs);
  const Served full = Serve(Config(false), reqs);
  ASSERT_EQ(trimmed.tokens.size(), 2u);
  ASSERT_EQ(full.tokens.size(), 2u);
  EXPECT_EQ(trimmed.tokens, full.tokens);
  ExpectSameLogprobs(trimmed, full);
  ASSERT_EQ(trimmed.tokens[0].size(), 3u);
  EXPECT_NE(trimmed.tokens[0][0], trimmed.tokens[0][1]) << "samples should differ (seed + i)";
  for (const auto& sample : trimmed.tokens[0]) EXPECT_EQ(sample.size(), 36u);
  EXPECT_LE(trimmed.max_window_blocks_per_running_seq, kWindowBlocksPerSeq);
}

TEST_F(EngineWindowTest, PreemptionBySwapAndByRecomputeKeepsGreedyIds) {
  // Sampled (per-request seeds): the preempted samplers must continue where they stopped.
  const std::vector<Req> reqs = {{Prompt(30, 6), 40, 1, 50.0f}, {Prompt(30, 7), 40, 1, 50.0f},
                                 {Prompt(30, 8), 40, 1, 50.0f}};
  const Served roomy = Serve(Config(true), reqs);
  ASSERT_EQ(roomy.stats.preemptions, 0u);
  // Group 0 (the one global layer: K and V of 1 head x 32 dims, F32) gets 40 blocks after the
  // window pools (2 layers x 20 blocks): 3 sequences growing to 70 tokens (18 blocks) each do
  // not fit together.
  const uint64_t layer_block = 2ull * kBlock * 1 * 32 * 4;
  runtime::EngineConfig small = Config(true);
  small.kv_cache_bytes = 2 * 20 * layer_block + 40 * layer_block;
  {
    auto e = runtime::Engine::Create(model_.get(), nullptr, small);
    ASSERT_TRUE(e.ok()) << e.status();
    ASSERT_EQ((*e)->n_blocks(), 40u) << "the test's geometry of gemma3-tiny is off";
  }
  for (runtime::KvSwapPolicy policy : {runtime::KvSwapPolicy::kAlways, runtime::KvSwapPolicy::kNever}) {
    SCOPED_TRACE(static_cast<int>(policy));
    small.kv_swap_bytes = 1u << 20;
    small.kv_swap_policy = policy;
    const Served run = Serve(small, reqs);
    EXPECT_GT(run.stats.preemptions, 0u);
    if (policy == runtime::KvSwapPolicy::kAlways) {
      EXPECT_GT(run.stats.kv_swap_ins, 0u) << "no preempted sequence came back from swap";
    } else {
      EXPECT_EQ(run.stats.kv_swap_outs, 0u);
    }
    EXPECT_EQ(run.tokens, roomy.tokens);
    ExpectSameLogprobs(run, roomy);
    EXPECT_LE(run.max_window_blocks_per_running_seq, kWindowBlocksPerSeq);
  }
}

TEST_F(EngineWindowTest, SpeculativeVerifyStepsStayWithinAWindow) {
  // A repetitive prompt: the n-gram proposer drafts long chains, capped at window - 1 nodes.
  std::vector<int32_t> prompt;
  for (int i = 0; i < 6; ++i) {
    for (int32_t t : {17, 250, 33, 41, 99, 7, 12}) prompt.push_back(t);
  }
  const std::vector<Req> plain = {{prompt, 40}, {Prompt(20, 9), 30}};
  std::vector<Req> spec = plain;
  for (Req& r : spec) r.spec = runtime::SpecMethod::kNgram;
  const Served a = Serve(Config(true), plain);
  const Served b = Serve(Config(true), spec);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_GT(b.drafted, 0u) << "nothing was drafted";
  EXPECT_LE(b.max_window_blocks_per_running_seq, kWindowBlocksPerSeq);
}

}  // namespace
}  // namespace kestrel::testing
