// Tests of kestrel::Engine (kestrel/engine.hpp) against the real library and stories260K: greedy
// engine output equals a session's, streaming callbacks (text, final flush, early stop,
// exceptions), concurrent requests on the engine thread, cancellation, errors as kestrel::Error,
// the defaults of the plain structs, stats, and moves.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kestrel/kestrel.hpp"

namespace {

std::string ModelPath() {
  const char* d = std::getenv("KESTREL_MODELS_DIR");
  return std::string(d != nullptr ? d : "../shared/models") + "/stories260K.gguf";
}

kestrel::RequestOptions Greedy(uint32_t max_new_tokens) {
  kestrel::RequestOptions o;
  o.sampler = kestrel::SamplerOptions::Greedy();
  o.max_new_tokens = max_new_tokens;
  return o;
}

class KestrelEngineHppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kestrel::ModelOptions mo;
    mo.device = "ref";
    model_ = runtime_.LoadModel(ModelPath(), mo);
  }

  // What a greedy session makes of `prompt`.
  kestrel::GenerateResult SessionGreedy(const std::string& prompt, uint32_t n) {
    kestrel::SessionOptions so;
    so.sampler = kestrel::SamplerOptions::Greedy();
    kestrel::Session session(model_, so);
    kestrel::GenerateOptions go;
    go.max_new_tokens = n;
    return session.Complete(prompt, go);
  }

  kestrel::Runtime runtime_;
  kestrel::Model model_;
};

TEST(KestrelEngineHppOptions, DefaultsEqualTheCInitFunctions) {
  kestrel_engine_options_t ce;
  kestrel_engine_options_init(&ce);
  kestrel::EngineOptions e;
  EXPECT_EQ(e.kv_cache_bytes, ce.kv_cache_bytes);
  EXPECT_EQ(e.kv_block_size, ce.kv_block_size);
  EXPECT_EQ(e.max_batch_tokens, ce.max_batch_tokens);
  EXPECT_EQ(e.max_sequences, ce.max_sequences);
  EXPECT_EQ(e.prefix_cache, ce.prefix_cache);
  EXPECT_EQ(e.context_length, ce.context_length);
  EXPECT_EQ(e.n_threads, ce.n_threads);
  EXPECT_EQ(e.kv_type, ce.kv_type);
  kestrel_engine_request_options_t cr;
  kestrel_engine_request_options_init(&cr);
  kestrel::RequestOptions r;
  EXPECT_EQ(r.max_new_tokens, cr.max_new_tokens);
  EXPECT_EQ(r.priority, cr.priority);
  EXPECT_EQ(r.n, cr.n);
  EXPECT_EQ(r.add_bos, cr.add_bos);
  EXPECT_TRUE(r.stop_strings.empty());
}

TEST_F(KestrelEngineHppTest, GrammarConstrainsEverySample) {
  kestrel::Engine engine(model_);
  kestrel::RequestOptions o = Greedy(20);
  o.grammar = "root ::= [a-c] [0-9] \".\"\n";
  const kestrel::EngineCompletion got = engine.Complete("Once upon a time", o);
  EXPECT_EQ(got.result.stop_reason, kestrel::StopReason::kEos) << got.text;
  ASSERT_EQ(got.text.size(), 3u) << got.text;
  EXPECT_TRUE(got.text[0] >= 'a' && got.text[0] <= 'c' && got.text[1] >= '0' && got.text[1] <= '9' &&
              got.text[2] == '.') << got.text;
}

TEST_F(KestrelEngineHppTest, CompleteEqualsAGreedySession) {
  kestrel::Engine engine(model_);
  const kestrel::GenerateResult want = SessionGreedy("Once upon a time", 24);
  const kestrel::EngineCompletion got = engine.Complete("Once upon a time", Greedy(24));
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.text, want.text);
  EXPECT_EQ(got.result.state, kestrel::RequestState::kFinished);
  EXPECT_EQ(got.result.stop_reason, want.stats.stop_reason);
  EXPECT_EQ(got.result.n_generated_tokens, want.tokens.size());
  EXPECT_TRUE(got.result.done());
  const kestrel::EngineStats stats = engine.Stats();
  EXPECT_EQ(stats.n_finished, 1u);
  EXPECT_EQ(stats.generated_tokens, want.tokens.size());
  EXPECT_GT(stats.steps, 0u);
  EXPECT_EQ(stats.n_running + stats.n_waiting, 0u);
}

TEST_F(KestrelEngineHppTest, ConcurrentStreamingRequestsOnTheEngineThread) {
  const std::vector<std::string> prompts = {"Once upon a time", "The cat", "Lily and Ben",
                                            "One day"};
  kestrel::Engine engine(model_);
  engine.Start();
  std::mutex mu;
  std::vector<std::string> streamed(prompts.size());
  std::vector<int> flushes(prompts.size(), 0);
  std::vector<kestrel::RequestId> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ids.push_back(engine.Submit(prompts[i], Greedy(16),
                                [&, i](uint32_t sample, int32_t token, std::string_view text) {
                                  EXPECT_EQ(sample, 0u);
                                  std::lock_guard<std::mutex> lock(mu);
                                  streamed[i].append(text);
                                  if (token == kestrel::kTokenNone) ++flushes[i];
                                  return true;
                                }));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(engine.Wait(ids[i], 60000));
    const kestrel::GenerateResult want = SessionGreedy(prompts[i], 16);
    EXPECT_EQ(engine.Tokens(ids[i]), want.tokens) << prompts[i];
    EXPECT_EQ(engine.Text(ids[i]), want.text) << prompts[i];
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(streamed[i], want.text) << prompts[i];
    EXPECT_LE(flushes[i], 1);
    engine.Release(ids[i]);
  }
  EXPECT_TRUE(engine.WaitAll(1000));
  engine.Stop();
  EXPECT_EQ(engine.Stats().n_finished, prompts.size());
}

TEST_F(KestrelEngineHppTest, CallbackStopsItsSampleAndSamplesFork) {
  kestrel::Engine engine(model_);
  kestrel::RequestOptions o = Greedy(32);
  o.n = 2;
  int calls = 0;
  const kestrel::RequestId id =
      engine.Submit("Once upon a time", o, [&](uint32_t sample, int32_t, std::string_view) {
        if (sample == 1) return true;
        return ++calls < 3;  // sample 0 stops after 3 tokens
      });
  ASSERT_TRUE(engine.Wait(id));
  EXPECT_EQ(engine.Result(id, 0).stop_reason, kestrel::StopReason::kCallback);
  EXPECT_EQ(engine.Tokens(id, 0).size(), 3u);
  EXPECT_EQ(engine.Result(id, 1).n_samples, 2u);
  EXPECT_EQ(engine.Tokens(id, 1), SessionGreedy("Once upon a time", 32).tokens);
  try {
    engine.Result(id, 2);
    ADD_FAILURE() << "sample 2 of 2 accepted";
  } catch (const kestrel::Error& e) {
    EXPECT_EQ(e.code(), kestrel::StatusCode::kOutOfRange) << e.what();
  }
  engine.Release(id);
}

TEST_F(KestrelEngineHppTest, CallbackExceptionIsRethrownByWait) {
  kestrel::Engine engine(model_);
  const kestrel::RequestId id =
      engine.Submit("Once upon a time", Greedy(16), [](uint32_t, int32_t, std::string_view) -> bool {
        throw std::logic_error("callback failed");
      });
  try {
    engine.Wait(id);
    ADD_FAILURE() << "Wait did not rethrow";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "callback failed");
  }
  EXPECT_EQ(engine.Result(id).stop_reason, kestrel::StopReason::kCallback);
  engine.Release(id);
  // The engine keeps working.
  EXPECT_EQ(engine.Complete("Once upon a time", Greedy(4)).tokens.size(), 4u);
}

TEST_F(KestrelEngineHppTest, CancelFromAnotherThreadAndErrors) {
  kestrel::Engine engine(model_);
  engine.Start();
  std::atomic<int> tokens{0};
  const kestrel::RequestId id = engine.Submit(
      "Once upon a time", Greedy(100000), [&](uint32_t, int32_t, std::string_view) {
        ++tokens;
        return true;
      });
  while (tokens.load() < 2) std::this_thread::yield();
  std::thread canceller([&] { engine.Cancel(id); });
  canceller.join();
  try {
    engine.Wait(id);
    ADD_FAILURE() << "Wait on a cancelled request returned";
  } catch (const kestrel::Error& e) {
    EXPECT_EQ(e.code(), kestrel::StatusCode::kCancelled) << e.what();
  }
  EXPECT_EQ(engine.Result(id).state, kestrel::RequestState::kCancelled);
  engine.Release(id);
  try {
    engine.Result(id);
    ADD_FAILURE() << "released id still known";
  } catch (const kestrel::Error& e) {
    EXPECT_EQ(e.code(), kestrel::StatusCode::kNotFound) << e.what();
  }
  try {
    engine.Submit("", Greedy(4));
    ADD_FAILURE() << "empty prompt accepted";
  } catch (const kestrel::Error& e) {
    EXPECT_EQ(e.code(), kestrel::StatusCode::kInvalidArgument) << e.what();
    EXPECT_NE(e.message().find("empty"), std::string::npos) << e.message();
  }
  try {
    engine.Step();  // the engine thread runs
    ADD_FAILURE() << "Step while the engine thread runs";
  } catch (const kestrel::Error& e) {
    EXPECT_EQ(e.code(), kestrel::StatusCode::kFailedPrecondition) << e.what();
  }
  kestrel::EngineOptions bad;
  bad.kv_block_size = 3;
  try {
    kestrel::Engine e(model_, bad);
    ADD_FAILURE() << "kv_block_size 3 accepted";
  } catch (const kestrel::Error& e) {
    EXPECT_EQ(e.code(), kestrel::StatusCode::kInvalidArgument);
    EXPECT_NE(e.message().find("kv_block_size"), std::string::npos) << e.message();
  }
}

TEST_F(KestrelEngineHppTest, StepDrivenTokensAndMoves) {
  kestrel::Engine first(model_);
  const kestrel::GenerateResult want = SessionGreedy("Once upon a time", 8);
  const kestrel::RequestId id = first.SubmitTokens(model_.Tokenize("Once upon a time"), Greedy(8));
  kestrel::Engine engine(std::move(first));
  EXPECT_EQ(first.get(), nullptr);
  while (engine.Step() > 0) {
  }
  EXPECT_EQ(engine.Tokens(id), want.tokens);
  EXPECT_TRUE(engine.Wait(id, 0));
  engine.Release(id);
}

}  // namespace
